"""The containerizer's isolators: one object per isolation concern behind one interface (see ``_interface``).

=================== ==========================================================================
``cgroups/cpu``     cpu shares (v2 weight) and the CFS quota                 ``cgroups_cpu``
``cgroups/cpuacct`` cpu time used                                            ``cgroups_cpuacct``
``cgroups/mem``     hard memory limit, swap off, OOM kills noticed           ``cgroups_mem``
``cgroups/pids``    at most ``max_task_processes`` processes                 ``cgroups_pids``
``cgroups/devices`` other GPUs' device nodes denied (v1 file, v2 eBPF)       ``cgroups_devices``
``namespaces/pid``  own pid and mount namespaces                             ``namespaces_pid``
``disk/du``         sandbox size measured, quota enforced                    ``disk_du``
``gpu/nvidia``      the task's GPUs in its environment                       ``gpu_nvidia``
``posix/cpu``       cpu time from /proc (no cgroup)                          ``posix_cpu``
``posix/mem``       resident memory polled and enforced (no cgroup)          ``posix_mem``
``posix/rlimits``   the wrapper's rlimits in posix mode (not listed)         ``posix_rlimits``
=================== ==========================================================================

A new isolator is a subclass of ``Isolator`` (``CgroupIsolator`` for one that writes cgroup files) in a
module of its own, composed in ``_isolation.compose``.
"""

from ._interface import CgroupIsolator, CgroupWrite, ContainerView, Isolator, LaunchInfo, write_limits
from .cgroups_cpu import CgroupsCpu
from .cgroups_cpuacct import CgroupsCpuacct
from .cgroups_devices import CgroupsDevices
from .cgroups_mem import CgroupsMemory
from .cgroups_pids import CgroupsPids
from .disk_du import DiskDu
from .gpu_nvidia import NvidiaGpu
from .namespaces_pid import PidNamespace
from .posix_cpu import PosixCpu, process_tree_usage
from .posix_mem import PosixMemory
from .posix_rlimits import PosixRlimits

__all__ = [
    "CgroupIsolator",
    "CgroupWrite",
    "CgroupsCpu",
    "CgroupsCpuacct",
    "CgroupsDevices",
    "CgroupsMemory",
    "CgroupsPids",
    "ContainerView",
    "DiskDu",
    "Isolator",
    "LaunchInfo",
    "NvidiaGpu",
    "PidNamespace",
    "PosixCpu",
    "PosixMemory",
    "PosixRlimits",
    "process_tree_usage",
    "write_limits",
]
