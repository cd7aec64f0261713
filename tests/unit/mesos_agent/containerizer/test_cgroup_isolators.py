"""The cgroup isolators' file values for a spec (pure), and what they read back (a fake cgroup dir)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesos_agent.containerizer import LaunchError, LaunchSpec
from mesos_agent.containerizer.isolators import (
    CgroupsCpu,
    CgroupsCpuacct,
    CgroupsDevices,
    CgroupsMemory,
    CgroupsPids,
    CgroupWrite,
    LaunchInfo,
)
from mesos_agent.containerizer.isolators.cgroups_cpu import cfs_quota_us, cpu_shares, cpu_weight
from mesos_agent.containerizer.isolators.cgroups_mem import memory_limitation

MiB = 1024 * 1024


def spec(**limits: object) -> LaunchSpec:
    return LaunchSpec("c1", ["true"], {}, Path("/tmp"), Path("/tmp/o"), Path("/tmp/e"), **limits)  # type: ignore[arg-type]


@dataclass
class FakeContainer:
    """A ContainerView over cgroup dirs made in a temporary directory."""

    cgroup_paths: list[Path]
    spec: LaunchSpec = field(default_factory=spec)
    container_id: str = "c1"
    pid: int = 1
    done: bool = False
    sigkill_sent: bool = False


def test_cpu_limits() -> None:
    half = spec(cpus=0.5)
    assert CgroupsCpu(1, 0, enable_cfs=True).limits(half) == [
        CgroupWrite("cpu.shares", "512"),
        CgroupWrite("cpu.cfs_quota_us", "50000"),
    ]
    assert CgroupsCpu(1, 0, enable_cfs=False).limits(half) == [CgroupWrite("cpu.shares", "512")]
    assert CgroupsCpu(2, 0, enable_cfs=True).limits(half) == [
        CgroupWrite("cpu.weight", str(1 + (510 * 9999) // 262142)),
        CgroupWrite("cpu.max", "50000 100000"),
    ]
    assert CgroupsCpu(2, 0, enable_cfs=True).limits(spec()) == []
    # The kernel's floors.
    assert cpu_shares(0.0001) == 2 and cfs_quota_us(0.001) == 1000


@given(st.integers(min_value=2, max_value=262144), st.integers(min_value=2, max_value=262144))
def test_cpu_weight_maps_the_share_range_onto_the_weight_range_in_order(a: int, b: int) -> None:
    assert 1 <= cpu_weight(a) <= 10000
    assert (cpu_weight(a) <= cpu_weight(b)) == (a <= b) or cpu_weight(a) == cpu_weight(b)
    assert cpu_weight(2) == 1 and cpu_weight(262144) == 10000 and cpu_weight(1024) == 39


def test_memory_limits() -> None:
    limit = str(64 * MiB)
    assert CgroupsMemory(1, 0, swap_limit=True, watch_interval=1).limits(spec(mem_mb=64)) == [
        CgroupWrite("memory.limit_in_bytes", limit),
        CgroupWrite("memory.memsw.limit_in_bytes", limit, required=False),
        CgroupWrite("memory.swappiness", "0", required=False),
    ]
    assert CgroupsMemory(1, 0, swap_limit=False, watch_interval=1).limits(spec(mem_mb=64))[1:] == [
        CgroupWrite("memory.swappiness", "0", required=False)
    ]
    assert CgroupsMemory(2, 0, swap_limit=True, watch_interval=1).limits(spec(mem_mb=64)) == [
        CgroupWrite("memory.max", limit),
        CgroupWrite("memory.swap.max", "0", required=False),
    ]
    assert CgroupsMemory(2, 0, swap_limit=True, watch_interval=1).limits(spec()) == []


def test_pids_and_devices_limits() -> None:
    assert CgroupsPids(2, 0, max_task_processes=64).limits(spec()) == [CgroupWrite("pids.max", "64")]
    devices = CgroupsDevices(1, 0, gpu_minors={0: 0, 1: 3, 2: 5})
    assert devices.denied_devices(spec(gpus=(1,))) == [(195, 0), (195, 5)]
    assert devices.limits(spec(gpus=(1,))) == [
        CgroupWrite("devices.deny", "c 195:0 rwm"),
        CgroupWrite("devices.deny", "c 195:5 rwm"),
    ]
    assert CgroupsDevices(2, 0, gpu_minors={0: 0}).limits(spec()) == []  # v2: an eBPF program, no file


def test_prepare_writes_into_the_controllers_dir_and_reports_what_it_cannot(tmp_path: Path) -> None:
    cpu_dir, memory_dir = tmp_path / "cpu", tmp_path / "memory"
    cpu_dir.mkdir()
    memory_dir.mkdir()
    for name in ("cpu.shares", "cpu.cfs_quota_us", "memory.limit_in_bytes", "memory.swappiness"):
        (cpu_dir if name.startswith("cpu") else memory_dir).joinpath(name).write_text("")
    launch = LaunchInfo([cpu_dir, memory_dir], {})
    CgroupsCpu(1, 0, enable_cfs=True).prepare(spec(cpus=2), launch)
    assert (cpu_dir / "cpu.shares").read_text() == "2048" and (cpu_dir / "cpu.cfs_quota_us").read_text() == "200000"
    # memsw is optional: its file missing is only logged.
    CgroupsMemory(1, 1, swap_limit=True, watch_interval=1).prepare(spec(mem_mb=1), launch)
    assert (memory_dir / "memory.limit_in_bytes").read_text() == str(MiB)
    with pytest.raises(LaunchError, match=r"cannot write '64' to .*pids\.max"):
        CgroupsPids(1, 1, max_task_processes=64).prepare(spec(), launch)


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def test_usage_v1(tmp_path: Path) -> None:
    cpu = write(
        tmp_path / "cpu",
        {
            "cpuacct.stat": "user 200\nsystem 100\n",
            "cpu.stat": "nr_periods 10\nnr_throttled 4\nthrottled_time 2000000000\n",
            "cpu.cfs_quota_us": "50000\n",
        },
    )
    memory = write(
        tmp_path / "memory",
        {
            "memory.stat": "rss 5\ncache 6\ntotal_rss 7\ntotal_cache 8\n",
            "memory.usage_in_bytes": "20\n",
            "memory.limit_in_bytes": str(1 << 63) + "\n",
        },
    )
    container = FakeContainer([cpu, memory])
    ticks = CgroupsCpuacct(1, 0).usage(container)
    assert ticks["cpus_user_time_secs"] > ticks["cpus_system_time_secs"] > 0
    assert CgroupsCpu(1, 0, enable_cfs=True).usage(container) == {
        "cpus_nr_periods": 10.0,
        "cpus_nr_throttled": 4.0,
        "cpus_throttled_time_secs": 2.0,
        "cpus_limit": 0.5,
    }
    # An unlimited v1 limit is not reported as one.
    assert CgroupsMemory(1, 1, swap_limit=False, watch_interval=1).usage(container) == {
        "mem_rss_bytes": 7.0,
        "mem_cache_bytes": 8.0,
        "mem_total_bytes": 20.0,
    }


def test_usage_v2(tmp_path: Path) -> None:
    leaf = write(
        tmp_path / "leaf",
        {
            "cpu.max": "max 100000\n",
            "memory.stat": "anon 3\nfile 4\n",
            "memory.current": "9\n",
            "memory.max": "max\n",
            "pids.current": "3\n",
        },
    )
    container = FakeContainer([leaf])
    assert CgroupsCpu(2, 0, enable_cfs=False).usage(container) == {}
    assert CgroupsCpuacct(2, 0).usage(container) == {}  # v2 accounts cpu time in the core cpu.stat
    assert CgroupsMemory(2, 0, swap_limit=False, watch_interval=1).usage(container) == {
        "mem_rss_bytes": 3.0,
        "mem_cache_bytes": 4.0,
        "mem_total_bytes": 9.0,
    }
    assert CgroupsPids(2, 0, max_task_processes=9).usage(container) == {"processes": 3.0}
    (leaf / "cpu.max").write_text("25000 100000\n")
    assert CgroupsCpu(2, 0, enable_cfs=True).usage(container) == {"cpus_limit": 0.25}


@pytest.mark.parametrize(("version", "events_file"), [(1, "memory.oom_control"), (2, "memory.events")])
def test_oom_kills_are_noticed(tmp_path: Path, version: int, events_file: str) -> None:
    leaf = write(tmp_path / "leaf", {events_file: "oom 0\noom_kill 0\n"})
    memory = CgroupsMemory(version, 0, swap_limit=False, watch_interval=1)
    container = FakeContainer([leaf], spec=spec(mem_mb=32))
    assert memory.watches(container) and not memory.watches(FakeContainer([leaf]))
    assert asyncio.run(memory.watch([container])) == []
    # A SIGKILL it did not send: looked at again for a moment (the counter trails the kill).
    assert asyncio.run(memory.ended(container, -9)) is None
    (leaf / events_file).write_text("oom 1\noom_kill 1\n")
    assert asyncio.run(memory.watch([container])) == [(container, memory_limitation(32))]
    assert asyncio.run(memory.ended(container, 0)) == memory_limitation(32)
    assert memory_limitation(32).message == "memory limit 32 MiB exceeded"
    assert memory_limitation(None).message == "killed by the OOM killer"
