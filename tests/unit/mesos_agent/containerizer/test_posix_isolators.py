"""The non-cgroup isolators' pure parts: posix memory and disk limits, rlimits, GPU environment, pid namespace."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mesos_agent.containerizer import LaunchError, LaunchSpec, Limitation
from mesos_agent.containerizer._procfs import ProcInfo
from mesos_agent.containerizer.isolators import DiskDu, LaunchInfo, NvidiaGpu, PidNamespace, PosixRlimits
from mesos_agent.containerizer.isolators.disk_du import disk_exceeded
from mesos_agent.containerizer.isolators.posix_mem import memory_exceeded, resident_bytes
from mesos_agent.gpus import Gpu

MiB = 1024 * 1024


def spec(cwd: Path = Path("/tmp"), **limits: object) -> LaunchSpec:
    return LaunchSpec("c1", ["true"], {"PATH": "/bin"}, cwd, cwd / "o", cwd / "e", **limits)  # type: ignore[arg-type]


def test_resident_memory_of_a_tree_and_its_group() -> None:
    table = {
        10: ProcInfo(ppid=1, pgid=10, rss_bytes=1 * MiB),
        11: ProcInfo(ppid=10, pgid=10, rss_bytes=2 * MiB),
        12: ProcInfo(ppid=11, pgid=12, rss_bytes=4 * MiB),  # a grandchild in a group of its own
        13: ProcInfo(ppid=1, pgid=10, rss_bytes=8 * MiB),  # an orphan still in the task's group
        20: ProcInfo(ppid=1, pgid=20, rss_bytes=16 * MiB),  # a stranger
    }
    assert resident_bytes(table, 10) == 15 * MiB
    assert resident_bytes(table, 99) == 0
    assert memory_exceeded(15, 15 * MiB) is None
    assert memory_exceeded(14.5, 15 * MiB) == Limitation("memory", "memory limit 14.5 MiB exceeded (resident 15.0 MiB)")


def test_disk_quota() -> None:
    assert disk_exceeded(2, 2 * MiB) is None
    assert disk_exceeded(2, 3 * MiB + MiB // 10) == Limitation(
        "disk", "disk limit 2 MiB exceeded (sandbox uses 3.1 MiB)"
    )


def test_disk_du_measures_enforces_and_forgets(tmp_path: Path) -> None:
    class Sandbox:
        container_id = "c1"
        pid = 1
        cgroup_paths: list[Path] = []
        done = False
        sigkill_sent = False
        spec = spec(tmp_path, disk_mb=0.001)

    (tmp_path / "f").write_bytes(b"x" * 100_000)
    sandbox = Sandbox()
    measuring = DiskDu(1.0, enforce=False)
    assert asyncio.run(measuring.watch([sandbox])) == []
    assert measuring.usage(sandbox)["disk_used_bytes"] >= 100_000
    measuring.cleanup(sandbox)
    measuring.cleanup(sandbox)  # idempotent
    assert measuring.usage(sandbox) == {}
    enforcing = DiskDu(1.0, enforce=True)
    ((limited, limitation),) = asyncio.run(enforcing.watch([sandbox]))
    assert limited is sandbox and limitation.resource == "disk"


def test_rlimit_steps() -> None:
    limited = spec(mem_mb=64, disk_mb=1)
    assert PosixRlimits(data=True, fsize=True, no_core=True).steps(limited) == [
        "ulimit -c 0",
        f"ulimit -d {64 * 1024}",
        "ulimit -f 2049",  # the disk and a block: a file stopped by it leaves the sandbox over its disk
    ]
    assert PosixRlimits(data=True, fsize=False, no_core=False).steps(limited) == [f"ulimit -d {64 * 1024}"]
    assert PosixRlimits(data=True, fsize=True, no_core=False).steps(spec()) == []
    assert PosixRlimits(data=False, fsize=True, no_core=False).fsize_limit(limited) == MiB + 512
    launch = LaunchInfo([], {})
    PosixRlimits(data=False, fsize=False, no_core=True).prepare(limited, launch)
    assert launch.rlimits == ["ulimit -c 0"]


GPUS = {0: Gpu(0, "GPU-a", "H100", 1, minor=0), 1: Gpu(1, "GPU-b", "H100", 1, minor=1)}


def test_gpu_environment() -> None:
    plain = spec()
    assert NvidiaGpu({}, enabled=False, confined=False).environment(plain) is plain.env  # nothing to add
    assert NvidiaGpu({}, enabled=True, confined=False).environment(plain) == {
        "PATH": "/bin",
        "CUDA_VISIBLE_DEVICES": "",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "NVIDIA_VISIBLE_DEVICES": "void",
    }
    second = spec(gpus=(1,))
    assert NvidiaGpu(GPUS, enabled=True, confined=False).environment(second)["CUDA_VISIBLE_DEVICES"] == "1"
    # Behind the devices cgroup CUDA numbers the GPUs it sees from 0: named by UUID (by position if unknown).
    assert NvidiaGpu(GPUS, enabled=True, confined=True).environment(second)["CUDA_VISIBLE_DEVICES"] == "GPU-b"
    assert NvidiaGpu({}, enabled=True, confined=True).environment(spec(gpus=(3, 5)))["CUDA_VISIBLE_DEVICES"] == "0,1"
    # A spec asking for GPUs is checked even where gpu/nvidia is not enabled.
    with pytest.raises(LaunchError, match="bad GPU indices"):
        NvidiaGpu({}, enabled=False, confined=False).environment(spec(gpus=(0, 0)))
    with pytest.raises(LaunchError, match=r"no GPU with index \[2\]"):
        NvidiaGpu(GPUS, enabled=False, confined=False).environment(spec(gpus=(2,)))


def test_pid_namespace_prepare() -> None:
    launch = LaunchInfo([], {})
    PidNamespace("/usr/bin/unshare", None).prepare(spec(), launch)
    assert launch.unshare == "/usr/bin/unshare"
