"""posix/mem: where no memory cgroup holds the task, its resident memory is polled and enforced.

Every ``watch_interval`` seconds the process table is read once (in a worker thread) and the resident
size of each watched task's process tree and process group summed; past ``mem_mb`` the task is killed
(``Termination.oom_killed``, ``limitation="memory"``).  Each process is also held to ``mem_mb`` by
RLIMIT_DATA (see ``posix_rlimits``)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from .._names import MEMORY, POSIX_MEM, MiB
from .._procfs import ProcInfo, process_table, tree_members
from .._types import Limitation
from ._interface import ContainerView, Isolator


def resident_bytes(table: dict[int, ProcInfo], pid: int) -> int:
    """The resident memory of pid's process tree and process group (orphans included)."""
    return sum(table[member].rss_bytes for member in tree_members(table, pid) if member in table)


def memory_exceeded(mem_mb: float, resident: int) -> Limitation | None:
    """The limitation of a task resident in resident bytes under a limit of mem_mb MiB, if over it."""
    if resident <= mem_mb * MiB:
        return None
    return Limitation(MEMORY, f"memory limit {mem_mb:g} MiB exceeded (resident {resident / MiB:.1f} MiB)")


class PosixMemory(Isolator):
    name = POSIX_MEM

    def __init__(self, watch_interval: float) -> None:
        self.watch_interval = watch_interval

    def watches(self, container: ContainerView) -> bool:
        return container.spec.mem_mb is not None

    async def watch(self, containers: Sequence[ContainerView]) -> list[tuple[ContainerView, Limitation]]:
        table = await asyncio.to_thread(process_table)
        reached: list[tuple[ContainerView, Limitation]] = []
        for container in containers:
            mem_mb = container.spec.mem_mb
            if mem_mb is None:
                continue
            limitation = memory_exceeded(mem_mb, resident_bytes(table, container.pid))
            if limitation is not None:
                reached.append((container, limitation))
        return reached
