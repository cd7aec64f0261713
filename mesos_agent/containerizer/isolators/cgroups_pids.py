"""cgroups/pids: at most ``max_task_processes`` processes (and threads) per container."""

from __future__ import annotations

from .._cgroupfs import read_int
from .._names import PIDS
from .._types import LaunchSpec
from ._interface import CgroupIsolator, CgroupWrite, ContainerView


class CgroupsPids(CgroupIsolator):
    name = PIDS

    def __init__(self, version: int, slot: int, *, max_task_processes: int) -> None:
        super().__init__(version, slot)
        self.max_task_processes = max_task_processes

    def limits(self, spec: LaunchSpec) -> list[CgroupWrite]:
        return [CgroupWrite("pids.max", str(self.max_task_processes))]

    def usage(self, container: ContainerView) -> dict[str, float]:
        current = read_int(self.directory(container.cgroup_paths) / "pids.current")
        return {} if current is None else {"processes": float(current)}
