"""cgroups/cpuacct: the cpu time a container used (v1 cpuacct.stat; v2 accounts it in every cgroup's cpu.stat,
which the hierarchy reads, so this isolator only asks for the cpu controller there)."""

from __future__ import annotations

import contextlib

from .._cgroupfs import CLK_TCK, read_keyed
from .._names import CPUACCT
from ._interface import CgroupIsolator, ContainerView


class CgroupsCpuacct(CgroupIsolator):
    name = CPUACCT

    def usage(self, container: ContainerView) -> dict[str, float]:
        figures: dict[str, float] = {}
        if self.version == 1:
            with contextlib.suppress(OSError):
                cpuacct_stat = read_keyed(self.directory(container.cgroup_paths) / "cpuacct.stat")
                figures["cpus_user_time_secs"] = cpuacct_stat.get("user", 0) / CLK_TCK
                figures["cpus_system_time_secs"] = cpuacct_stat.get("system", 0) / CLK_TCK
        return figures
