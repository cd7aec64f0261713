"""Which isolators a Containerizer runs: --isolation parsing, the names in effect, the objects composed (pure)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from mesos_agent.containerizer import _cgroups as cg
from mesos_agent.containerizer._isolation import (
    KNOWN_ISOLATORS,
    IsolationRequest,
    IsolatorSettings,
    choose_isolators,
    compose,
    parse_isolation,
)
from mesos_agent.containerizer.isolators import (
    CgroupIsolator,
    CgroupsDevices,
    CgroupsMemory,
    DiskDu,
    NvidiaGpu,
    PosixCpu,
    PosixMemory,
    PosixRlimits,
)
from mesos_agent.gpus import Gpu

ROOT = PurePosixPath("aiomesos/agent-1")
BASE = Path("/sys/fs/cgroup")
ALL = ["cgroups/cpu", "cgroups/cpuacct", "cgroups/mem", "cgroups/pids"]
GPUS = {0: Gpu(0, "GPU-a", "H100", 81559, minor=0), 1: Gpu(1, "GPU-b", "H100", 81559, minor=1)}
SETTINGS = IsolatorSettings(memory_poll_interval=0.5, disk_poll_interval=15.0, enforce_disk=True, gpus={})


def v1(isolators: list[str]) -> cg.V1Backend:
    mounts = {"cpu": BASE / "cpu,cpuacct", "cpuacct": BASE / "cpu,cpuacct", "memory": BASE / "memory"}
    mounts |= {"pids": BASE / "pids", "devices": BASE / "devices"}
    return cg.V1Backend(ROOT, isolators, mounts, True, 64)


def v2(isolators: list[str]) -> cg.V2Backend:
    return cg.V2Backend(ROOT, isolators, BASE / "unified", True, 64)


def test_parse_isolation() -> None:
    assert parse_isolation("auto") == IsolationRequest(ALL, [], ["disk/du"], auto=True)
    assert parse_isolation("posix") == IsolationRequest([], ["posix/cpu", "posix/mem"], [])
    assert parse_isolation(" cgroups/memory , disk/du,namespaces/pid") == IsolationRequest(
        ["cgroups/mem"], [], ["disk/du", "namespaces/pid"]
    )
    assert parse_isolation("cgroups/all,gpu/nvidia").cgroups == ALL
    with pytest.raises(ValueError, match="names no isolator"):
        parse_isolation(" , ")
    with pytest.raises(ValueError, match=r"unknown isolator.*'cgroups/net'"):
        parse_isolation("cgroups/cpu,cgroups/net")
    assert all(parse_isolation(name) for name in KNOWN_ISOLATORS)


def test_no_hierarchy_falls_back_to_posix_and_says_why() -> None:
    choice = choose_isolators(parse_isolation("auto"), None, "not running as root", 0.5, {}, {})
    assert choice.names == ["posix/cpu", "posix/mem", "disk/du"]
    (warning,) = choice.warnings
    assert "cgroups isolation unavailable (not running as root)" in warning and "NOT enforced" in warning


def test_posix_only_says_nothing() -> None:
    assert choose_isolators(parse_isolation("posix,disk/du"), None, "", 0.5, {}, {}).warnings == []


def test_what_a_hierarchy_lacks_posix_stands_in_for() -> None:
    choice = choose_isolators(parse_isolation("auto"), v2(["cgroups/cpu", "cgroups/cpuacct"]), "", 0.25, {}, {})
    assert choice.names == ["cgroups/cpu", "cgroups/cpuacct", "posix/mem", "disk/du"]
    (warning,) = choice.warnings
    assert "does not delegate the memory, pids controller(s)" in warning
    assert "cgroups/mem -> posix/mem (memory enforced by polling the tasks' resident size every 0.25 s" in warning
    assert "cgroups/pids -> nothing" in warning
    v1_choice = choose_isolators(parse_isolation("cgroups/cpu,cgroups/pids"), v1(["cgroups/cpu"]), "", 0.5, {}, {})
    assert v1_choice.names == ["cgroups/cpu"]
    assert v1_choice.warnings == [
        "cgroup v1 has no pids hierarchy mounted: cgroups/pids -> nothing (task process counts NOT limited)"
    ]


def test_gpus_without_device_control_are_warned_about() -> None:
    request = IsolationRequest(ALL, [], ["disk/du", "gpu/nvidia"], auto=True)
    confined = choose_isolators(request, v1([*ALL, "cgroups/devices"]), "", 0.5, GPUS, {0: 0, 1: 1})
    assert confined.names[-3:] == ["cgroups/devices", "disk/du", "gpu/nvidia"] and confined.warnings == []
    unconfined = choose_isolators(request, v2(ALL), "", 0.5, GPUS, {0: 0, 1: 1})
    assert "GPU isolation is by environment only" in unconfined.warnings[0]
    assert "eBPF" in unconfined.warnings[0]
    minors_unknown = choose_isolators(request, v2(ALL), "", 0.5, GPUS, {0: 0})
    assert "the device minor of GPU(s) [1] is unknown" in minors_unknown.warnings[0]


def test_compose_cgroups_v1_slots_follow_the_joint_mounts() -> None:
    backend = v1([*ALL, "cgroups/devices"])
    backend.gpu_minors = {0: 0, 1: 1}
    names = [*ALL, "cgroups/devices", "disk/du"]
    isolators = compose(names, backend, SETTINGS, None)
    cgroups = [i for i in isolators.launched if isinstance(i, CgroupIsolator)]
    assert [(i.name, i.slot) for i in cgroups] == [
        ("cgroups/cpu", 0),
        ("cgroups/cpuacct", 0),
        ("cgroups/mem", 2),
        ("cgroups/pids", 3),
        ("cgroups/devices", 1),
    ]
    assert backend.root_dirs[2] == BASE / "memory" / ROOT
    devices = next(i for i in cgroups if isinstance(i, CgroupsDevices))
    assert devices.gpu_minors == {0: 0, 1: 1}
    assert isinstance(isolators.launched[0], NvidiaGpu) and not isolators.launched[0].enabled
    # No posix pieces where cgroups limit the task but the size of a file (--enforce-disk: no cgroup limits that);
    # a container outside the hierarchy has its memory polled.
    rlimits = isolators.rlimits
    assert rlimits is not None and (rlimits.data, rlimits.fsize, rlimits.no_core) == (False, True, False)
    assert isinstance(isolators.launched[-1], DiskDu) and isolators.launched[-2] is rlimits
    assert not any(isinstance(i, PosixMemory) for i in isolators.launched)
    assert any(isinstance(i, PosixMemory) for i in isolators.outside_hierarchy)
    assert not any(isinstance(i, CgroupIsolator) for i in isolators.outside_hierarchy)
    assert {i.name for i in isolators.watching()} == {"cgroups/mem", "disk/du", "posix/mem"}


def test_compose_v2_puts_every_isolator_in_the_one_dir() -> None:
    isolators = compose(ALL, v2(ALL), SETTINGS, None)
    assert {i.slot for i in isolators.launched if isinstance(i, CgroupIsolator)} == {0}
    memory = next(i for i in isolators.launched if isinstance(i, CgroupsMemory))
    assert memory.version == 2 and memory.watch_interval == 0.5


def test_compose_posix_mode_rlimits() -> None:
    isolators = compose(["posix/cpu", "posix/mem", "disk/du"], None, SETTINGS, None)
    rlimits = isolators.rlimits
    assert rlimits is not None and (rlimits.data, rlimits.fsize, rlimits.no_core) == (True, True, True)
    kinds = [type(i) for i in isolators.launched]
    assert kinds == [NvidiaGpu, PosixCpu, PosixMemory, PosixRlimits, DiskDu]
    # Without disk/du files are not limited; without posix/mem, data is not.
    only_cpu = compose(["posix/cpu"], None, SETTINGS, None).rlimits
    assert only_cpu is not None and (only_cpu.data, only_cpu.fsize, only_cpu.no_core) == (False, False, True)
    no_disk = compose(["posix/mem"], None, SETTINGS, None).rlimits
    assert no_disk is not None and (no_disk.data, no_disk.fsize, no_disk.no_core) == (True, False, True)
    # posix/mem standing in for a missing memory cgroup: RLIMIT_DATA only (cgroups limit the rest).
    partial = compose(["cgroups/cpu", "posix/mem"], v2(["cgroups/cpu"]), SETTINGS, None).rlimits
    assert partial is not None and (partial.data, partial.fsize, partial.no_core) == (True, False, False)
    # With cgroups and disk/du, --enforce-disk still limits the size of a file (no cgroup does): RLIMIT_FSIZE only.
    cgroups = compose(["cgroups/cpu", "cgroups/mem", "disk/du"], v2(["cgroups/cpu", "cgroups/mem"]), SETTINGS, None)
    assert cgroups.rlimits is not None
    assert (cgroups.rlimits.data, cgroups.rlimits.fsize, cgroups.rlimits.no_core) == (False, True, False)
    measured = IsolatorSettings(memory_poll_interval=0.5, disk_poll_interval=15.0, enforce_disk=False, gpus={})
    assert compose(["cgroups/cpu", "disk/du"], v2(["cgroups/cpu"]), measured, None).rlimits is None
