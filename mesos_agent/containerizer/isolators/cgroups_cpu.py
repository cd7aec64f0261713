"""cgroups/cpu: cpu shares (v2: the equivalent weight) and, with CFS enabled, a hard quota of ``cpus`` periods."""

from __future__ import annotations

import contextlib

from .._cgroupfs import CFS_PERIOD_US, read_bytes, read_int, read_keyed
from .._names import CPU
from .._types import LaunchSpec
from ._interface import CgroupIsolator, CgroupWrite, ContainerView

MIN_SHARES = 2  # the kernel's floor for cpu.shares
MIN_QUOTA_US = 1000  # the kernel's floor for a CFS quota


def cpu_shares(cpus: float) -> int:
    """cgroup v1 ``cpu.shares`` for cpus (1024 a cpu, as Mesos)."""
    return max(MIN_SHARES, int(cpus * 1024))


def cpu_weight(shares: int) -> int:
    """cgroup v2 ``cpu.weight`` (1-10000) equivalent to v1 shares (2-262144), as systemd and runc map it."""
    return 1 + ((shares - MIN_SHARES) * 9999) // 262142


def cfs_quota_us(cpus: float) -> int:
    """The CFS quota, per period of CFS_PERIOD_US, that holds the task to cpus."""
    return max(MIN_QUOTA_US, int(cpus * CFS_PERIOD_US))


class CgroupsCpu(CgroupIsolator):
    name = CPU

    def __init__(self, version: int, slot: int, *, enable_cfs: bool) -> None:
        super().__init__(version, slot)
        self.enable_cfs = enable_cfs

    def limits(self, spec: LaunchSpec) -> list[CgroupWrite]:
        if spec.cpus is None:
            return []
        shares = cpu_shares(spec.cpus)
        if self.version == 1:
            writes = [CgroupWrite("cpu.shares", str(shares))]
            if self.enable_cfs:
                writes.append(CgroupWrite("cpu.cfs_quota_us", str(cfs_quota_us(spec.cpus))))
            return writes
        writes = [CgroupWrite("cpu.weight", str(cpu_weight(shares)))]
        if self.enable_cfs:
            writes.append(CgroupWrite("cpu.max", f"{cfs_quota_us(spec.cpus)} {CFS_PERIOD_US}"))
        return writes

    def usage(self, container: ContainerView) -> dict[str, float]:
        """The quota as ``cpus_limit``; on v1 the throttling figures too (v2 has them in the core cpu.stat)."""
        directory = self.directory(container.cgroup_paths)
        figures: dict[str, float] = {}
        if self.version == 2:
            with contextlib.suppress(OSError, ValueError):
                quota, period = read_bytes(directory / "cpu.max").split()
                if quota != b"max":
                    figures["cpus_limit"] = int(quota) / int(period)
            return figures
        with contextlib.suppress(OSError):
            cpu_stat = read_keyed(directory / "cpu.stat")
            figures["cpus_nr_periods"] = float(cpu_stat.get("nr_periods", 0))
            figures["cpus_nr_throttled"] = float(cpu_stat.get("nr_throttled", 0))
            figures["cpus_throttled_time_secs"] = cpu_stat.get("throttled_time", 0) / 1e9
        quota_us = read_int(directory / "cpu.cfs_quota_us")
        if quota_us is not None and quota_us > 0:
            figures["cpus_limit"] = quota_us / CFS_PERIOD_US
        return figures
