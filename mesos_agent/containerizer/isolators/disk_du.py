"""disk/du: every ``watch_interval`` seconds each sandbox (the task's cwd) is measured like ``du -s``
(allocated blocks, hard links once), all in one worker thread; the figure is ``disk_used_bytes`` in the
container's stats.  With ``enforce`` a task past ``disk_mb`` is killed (``limitation="disk"``)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from .._disk import disk_usage_many
from .._names import DISK, DISK_DU, MiB
from .._types import Limitation
from ._interface import ContainerView, Isolator


def disk_exceeded(disk_mb: float, used: int) -> Limitation | None:
    """The limitation of a sandbox using used bytes under a quota of disk_mb MiB, if over it."""
    if used <= disk_mb * MiB:
        return None
    return Limitation(DISK, f"disk limit {disk_mb:g} MiB exceeded (sandbox uses {used / MiB:.1f} MiB)")


class DiskDu(Isolator):
    name = DISK_DU

    def __init__(self, watch_interval: float, *, enforce: bool) -> None:
        self.watch_interval = watch_interval
        self.enforce = enforce
        # container id -> the sandbox's size at the last measurement
        self._used: dict[str, int] = {}

    def watches(self, container: ContainerView) -> bool:
        return True

    async def watch(self, containers: Sequence[ContainerView]) -> list[tuple[ContainerView, Limitation]]:
        sandboxes = [os.path.abspath(container.spec.cwd) for container in containers]
        measured = await asyncio.to_thread(disk_usage_many, sandboxes)
        reached: list[tuple[ContainerView, Limitation]] = []
        for container, used in zip(containers, measured, strict=True):
            if used is None or container.done:  # (over while measured: cleaned up already)
                continue
            self._used[container.container_id] = used
            disk_mb = container.spec.disk_mb
            if self.enforce and disk_mb is not None and (limitation := disk_exceeded(disk_mb, used)) is not None:
                reached.append((container, limitation))
        return reached

    def usage(self, container: ContainerView) -> dict[str, float]:
        used = self._used.get(container.container_id)
        return {} if used is None else {"disk_used_bytes": float(used)}

    def cleanup(self, container: ContainerView) -> None:
        self._used.pop(container.container_id, None)
