"""Which isolators a Containerizer runs: ``--isolation`` parsed, the cgroup hierarchy chosen, the isolators composed.

``parse_isolation`` and ``choose_isolators`` are pure (what is asked, what the chosen hierarchy serves ->
the isolator names in effect and the warnings); ``select_backend`` probes the host's cgroup mounts;
``compose`` builds the isolator objects for the names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from . import _bpf_devices
from . import _cgroups as cg
from ._delegation import PROC_SELF_CGROUP, place_v2, read_own_cgroup
from ._names import (
    CGROUP_ISOLATORS,
    CPU,
    CPUACCT,
    DEVICES,
    DISK_DU,
    GPU_NVIDIA,
    MEM,
    PID_NS,
    PIDS,
    POSIX_CPU,
    POSIX_MEM,
    V1_SUBSYSTEM,
    V2_CONTROLLER,
)
from .isolators import (
    CgroupIsolator,
    CgroupsCpu,
    CgroupsCpuacct,
    CgroupsDevices,
    CgroupsMemory,
    CgroupsPids,
    DiskDu,
    Isolator,
    NvidiaGpu,
    PidNamespace,
    PosixCpu,
    PosixMemory,
    PosixRlimits,
)

if TYPE_CHECKING:
    from mesos_agent.gpus import Gpu

_EXTRAS = (DISK_DU, PID_NS, GPU_NVIDIA)
_POSIX_FOR = {CPU: POSIX_CPU, CPUACCT: POSIX_CPU, MEM: POSIX_MEM}
_ALIASES: dict[str, tuple[str, ...]] = {
    "cgroups/all": CGROUP_ISOLATORS,
    "cgroups/memory": (MEM,),
    "posix": (POSIX_CPU, POSIX_MEM),
}
KNOWN_ISOLATORS: tuple[str, ...] = (*CGROUP_ISOLATORS, POSIX_CPU, POSIX_MEM, *_EXTRAS, *_ALIASES)


@dataclass(frozen=True)
class IsolationRequest:
    """What ``--isolation`` asks for: cgroup isolators, posix ones, the others, and whether it said "auto"."""

    cgroups: list[str]
    posix: list[str]
    extras: list[str]
    auto: bool = False


def parse_isolation(isolation: str) -> IsolationRequest:
    """``auto``, ``posix`` or a comma list of KNOWN_ISOLATORS (ValueError for anything else)."""
    text = isolation.strip()
    if text == "auto":
        return IsolationRequest(list(CGROUP_ISOLATORS), [], [DISK_DU], auto=True)
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError(f"isolation {isolation!r} names no isolator; use 'auto', 'posix' or a comma list")
    unknown = [name for name in names if name not in KNOWN_ISOLATORS]
    if unknown:
        raise ValueError(
            f"unknown isolator(s) {', '.join(map(repr, unknown))} in isolation={isolation!r}; "
            f"known: auto, {', '.join(KNOWN_ISOLATORS)}"
        )
    expanded: list[str] = []
    for name in names:
        expanded.extend(_ALIASES.get(name, (name,)))
    return IsolationRequest(
        cgroups=[name for name in CGROUP_ISOLATORS if name in expanded],
        posix=[name for name in (POSIX_CPU, POSIX_MEM) if name in expanded],
        extras=[name for name in _EXTRAS if name in expanded],
    )


@dataclass(frozen=True)
class Choice:
    """The isolator names in effect (Containerizer.isolators) and the warnings about what stands in."""

    names: list[str]
    warnings: list[str] = field(default_factory=list)


def choose_isolators(
    request: IsolationRequest,
    backend: cg.Backend | None,
    unavailable_reason: str,
    memory_poll_interval: float,
    gpus: Mapping[int, Gpu],
    gpu_minors: Mapping[int, int],
) -> Choice:
    """The isolators in effect given the hierarchy chosen (None: none usable, for unavailable_reason).

    What the cgroup hierarchy lacks, posix stands in for ("auto" included: memory polled beats unbounded).
    """
    warnings: list[str] = []
    missing: list[str] = []
    if backend is None:
        if request.cgroups:
            warnings.append(
                f"cgroups isolation unavailable ({unavailable_reason}); falling back to posix isolation: "
                "task cpu and process limits are NOT enforced, memory only by polling and rlimits"
            )
        missing = list(request.cgroups)
    else:
        missing = [name for name in request.cgroups if name not in backend.isolators]
        if missing:
            warnings.append(_missing_warning(backend, missing, memory_poll_interval))
    names = list(backend.isolators) if backend is not None else []
    for name in [*missing, *request.posix]:
        stand_in = _POSIX_FOR.get(name, name if name.startswith("posix/") else "")
        if stand_in and stand_in not in names:
            names.append(stand_in)
    names.extend(request.extras)
    confined = backend is not None and DEVICES in backend.isolators
    if GPU_NVIDIA in request.extras and gpus and not confined:
        warnings.append(_gpu_warning(gpus, gpu_minors))
    return Choice(names, warnings)


def select_backend(
    root: PurePosixPath,
    wanted: list[str],
    base: Path,
    enable_cfs: bool,
    max_task_processes: int,
    devices: bool = False,
    gpu_minors: dict[int, int] | None = None,
    *,
    cgroups_parent: str = "auto",
    mounts: list[cg.Mount] | None = None,
    proc_self_cgroup: Path = PROC_SELF_CGROUP,
) -> tuple[cg.Backend | None, str]:
    """The backend to use for the wanted cgroup isolators, or None and why not.

    devices: add device control (GPU confinement): the devices controller when the v1 backend is chosen, an
    eBPF device program per container when the v2 one is (where the kernel loads it). cgroups_parent: where
    the v2 cgroups go (``_delegation.place_v2``: auto, own, root); v1 ones always go under each hierarchy's
    root. mounts (default: this host's) and proc_self_cgroup are for tests with a fake hierarchy.
    """
    mounts = cg.detect_mounts() if mounts is None else mounts
    v1 = cg.v1_mounts(mounts, base)
    v1_served = [name for name in wanted if V1_SUBSYSTEM[name] in v1]
    v2_mount = cg.v2_mount(mounts, base)
    place = place_v2(v2_mount, cgroups_parent, read_own_cgroup(proc_self_cgroup)) if v2_mount is not None else None
    v2_controllers = cg.v2_controllers(place.base) if place is not None else set()
    v2_served = [name for name in wanted if V2_CONTROLLER[name] in v2_controllers]

    candidates: list[cg.Backend] = []
    if v1_served or (devices and "devices" in v1 and not v2_served):
        with_devices = [*v1_served, DEVICES] if devices and "devices" in v1 else v1_served
        v1_backend = cg.V1Backend(root, with_devices, v1, enable_cfs, max_task_processes)
        v1_backend.gpu_minors = dict(gpu_minors or {})
        candidates.append(v1_backend)
    if v2_served and place is not None:
        bpf = devices and _bpf_devices.supported()
        isolators = [*v2_served, DEVICES] if bpf else v2_served
        v2_backend = cg.V2Backend(root, isolators, place.base, enable_cfs, max_task_processes, place.agent_leaf)
        v2_backend.gpu_minors = dict(gpu_minors or {}) if bpf else {}
        if len(v2_served) >= len(v1_served):
            candidates.insert(0, v2_backend)
        else:
            candidates.append(v2_backend)
    if not candidates:
        return None, f"no cgroup v1 or v2 hierarchy with cpu, memory or pids controllers under {base}"

    reasons = []
    for backend in candidates:
        try:
            backend.setup()
            return backend, ""
        except OSError as e:
            backend.teardown()
            what = f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
            reasons.append(f"cgroup v{backend.version}: {what}")
    if os.geteuid() != 0:
        reasons.append("not running as root")
    return None, "; ".join(reasons)


_STAND_INS = {
    CPU: "posix/cpu (cpu time read from /proc; cpu NOT limited)",
    CPUACCT: "posix/cpu (cpu time read from /proc)",
    PIDS: "nothing (task process counts NOT limited)",
}


def _missing_warning(backend: cg.Backend, missing: list[str], memory_poll_interval: float) -> str:
    """One line: which isolators the chosen hierarchy cannot serve, and what stands in for each."""
    if isinstance(backend, cg.V2Backend):
        controllers = sorted({V2_CONTROLLER[name] for name in missing})
        where = (
            f"the cgroup v2 hierarchy at {backend.base} does not delegate the {', '.join(controllers)} controller(s)"
        )
    else:
        subsystems = sorted({V1_SUBSYSTEM[name] for name in missing})
        where = f"cgroup v1 has no {', '.join(subsystems)} hierarchy mounted"
    stand_ins = dict(_STAND_INS)
    stand_ins[MEM] = (
        f"posix/mem (memory enforced by polling the tasks' resident size every {memory_poll_interval:g} s, "
        "plus RLIMIT_DATA per process)"
    )
    parts = [f"{name} -> {stand_ins[name]}" for name in missing]
    return f"{where}: {'; '.join(parts)}"


def _gpu_warning(gpus: Mapping[int, Gpu], minors: Mapping[int, int]) -> str:
    if len(minors) < len(gpus):
        why = f"the device minor of GPU(s) {sorted(set(gpus) - set(minors))} is unknown"
    else:
        why = "neither a cgroup v1 devices controller nor eBPF device programs on cgroup v2 are usable here"
    return (
        f"GPU isolation is by environment only ({why}): tasks are shown their GPUs through "
        "CUDA_VISIBLE_DEVICES / NVIDIA_VISIBLE_DEVICES but can open every /dev/nvidia* device"
    )


# --------------------------------------------------------------------------- composition


@dataclass
class Isolators:
    """The isolator objects of one Containerizer.

    ``launched``: those of every container it launches (GPU checks first, then the cgroup isolators, in
    name order, then the rest); ``outside_hierarchy``: those of a recovered container whose cgroups are not
    this hierarchy's (no cgroup isolator; its memory polled).  ``rlimits`` and ``pid_namespace`` also
    shape the commands run in a container.
    """

    launched: list[Isolator]
    outside_hierarchy: list[Isolator]
    rlimits: PosixRlimits | None
    pid_namespace: PidNamespace | None

    def watching(self) -> list[Isolator]:
        """Every isolator with something to watch."""
        unique = {id(isolator): isolator for isolator in [*self.launched, *self.outside_hierarchy]}
        return [isolator for isolator in unique.values() if isolator.watch_interval is not None]


@dataclass(frozen=True)
class IsolatorSettings:
    """The Containerizer's knobs the isolators take."""

    memory_poll_interval: float
    disk_poll_interval: float
    enforce_disk: bool
    gpus: Mapping[int, Gpu]


def cgroup_isolators(backend: cg.Backend, memory_poll_interval: float) -> list[CgroupIsolator]:
    """The cgroup isolators backend serves, configured as it is (slots, swap, CFS, process cap, GPU minors)."""
    made: list[CgroupIsolator] = []
    for name in backend.isolators:
        slot = backend.slot(name)
        if name == CPU:
            made.append(CgroupsCpu(backend.version, slot, enable_cfs=backend.enable_cfs))
        elif name == CPUACCT:
            made.append(CgroupsCpuacct(backend.version, slot))
        elif name == MEM:
            made.append(
                CgroupsMemory(
                    backend.version, slot, swap_limit=backend.has_swap_limit, watch_interval=memory_poll_interval
                )
            )
        elif name == PIDS:
            made.append(CgroupsPids(backend.version, slot, max_task_processes=backend.max_task_processes))
        elif name == DEVICES:
            made.append(CgroupsDevices(backend.version, slot, gpu_minors=backend.gpu_minors))
    return made


def compose(
    names: Sequence[str],
    backend: cg.Backend | None,
    settings: IsolatorSettings,
    pid_namespace: PidNamespace | None,
) -> Isolators:
    """The isolator objects for the names in effect (see Isolators)."""
    cgroups = cgroup_isolators(backend, settings.memory_poll_interval) if backend is not None else []
    memory_cgroup = backend is not None and MEM in backend.isolators
    posix_mode = not any(name in CGROUP_ISOLATORS for name in names)
    posix_memory = PosixMemory(settings.memory_poll_interval)
    others: list[Isolator] = []
    if POSIX_CPU in names:
        others.append(PosixCpu())
    if POSIX_MEM in names and not memory_cgroup:
        others.append(posix_memory)
    rlimits: PosixRlimits | None = None
    data_limit = POSIX_MEM in names and not memory_cgroup
    # RLIMIT_FSIZE whatever the isolation (no cgroup limits a file's size): disk/du then sees a file grown past
    # the disk at its next poll, not once the task has written far past it.
    fsize = settings.enforce_disk and DISK_DU in names
    if posix_mode or data_limit or fsize:
        rlimits = PosixRlimits(data=data_limit, fsize=fsize, no_core=posix_mode)
        others.append(rlimits)
    if DISK_DU in names:
        others.append(DiskDu(settings.disk_poll_interval, enforce=settings.enforce_disk))
    if pid_namespace is not None:
        others.append(pid_namespace)
    confined = backend is not None and DEVICES in backend.isolators
    gpu = NvidiaGpu(settings.gpus, enabled=GPU_NVIDIA in names, confined=confined)
    outside = [gpu, *others] if posix_memory in others else [gpu, *others, posix_memory]
    return Isolators([gpu, *cgroups, *others], outside, rlimits, pid_namespace)
