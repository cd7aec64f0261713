"""Isolator names (Mesos' spelling), the cgroup controllers they need, and the limitations they report."""

from __future__ import annotations

# cgroup isolators, in canonical order.
CPU = "cgroups/cpu"
CPUACCT = "cgroups/cpuacct"
MEM = "cgroups/mem"
PIDS = "cgroups/pids"
CGROUP_ISOLATORS: tuple[str, ...] = (CPU, CPUACCT, MEM, PIDS)
# Device control, used only to confine tasks to their GPUs: the devices controller on v1, an eBPF
# program per container cgroup on v2 (which has no devices files; see _bpf_devices).
DEVICES = "cgroups/devices"

# posix isolators: what stands in where no cgroup hierarchy serves.
POSIX_CPU = "posix/cpu"
POSIX_MEM = "posix/mem"
# The wrapper's rlimits in posix mode (RLIMIT_CORE, RLIMIT_FSIZE, RLIMIT_DATA): always on there, so not
# listed in Containerizer.isolators (they come with posix/mem, disk/du and posix mode).
POSIX_RLIMITS = "posix/rlimits"

DISK_DU = "disk/du"
PID_NS = "namespaces/pid"
GPU_NVIDIA = "gpu/nvidia"

# Which v1 subsystem each cgroup isolator needs.
V1_SUBSYSTEM: dict[str, str] = {CPU: "cpu", CPUACCT: "cpuacct", MEM: "memory", PIDS: "pids", DEVICES: "devices"}
# Which v2 controller each isolator needs (cpu accounting comes with the cpu controller's cpu.stat; device
# control is an eBPF program, no controller).
V2_CONTROLLER: dict[str, str] = {CPU: "cpu", CPUACCT: "cpu", MEM: "memory", PIDS: "pids"}

# The resources a limitation names (Termination.limitation).
MEMORY = "memory"
DISK = "disk"

MiB = 1024 * 1024
