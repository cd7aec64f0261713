"""cgroups/mem: a hard memory limit of ``mem_mb`` with swap off; the kernel OOM killer enforces it, this
isolator notices its kills (``oom_kill`` in memory.oom_control on v1, memory.events on v2)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Sequence
from pathlib import Path

import structlog

from .._cgroupfs import read_counter, read_int, read_keyed
from .._names import MEM, MEMORY, MiB
from .._types import LaunchSpec, Limitation
from ._interface import CgroupIsolator, CgroupWrite, ContainerView

log = structlog.get_logger(__name__)

UNLIMITED_V1 = 1 << 62  # v1 reports "no limit" as a page-rounded LONG_MAX
# The kernel bumps oom_kill right after signalling its victim: how often, and how long, to look again.
OOM_RECHECKS = 10
OOM_RECHECK_DELAY = 0.01


def memory_limitation(mem_mb: float | None) -> Limitation:
    message = f"memory limit {mem_mb:g} MiB exceeded" if mem_mb is not None else "killed by the OOM killer"
    return Limitation(MEMORY, message)


class CgroupsMemory(CgroupIsolator):
    name = MEM

    def __init__(self, version: int, slot: int, *, swap_limit: bool, watch_interval: float) -> None:
        super().__init__(version, slot)
        self.swap_limit = swap_limit
        self.watch_interval = watch_interval

    def limits(self, spec: LaunchSpec) -> list[CgroupWrite]:
        if spec.mem_mb is None:
            return []
        limit = str(int(spec.mem_mb * MiB))
        if self.version == 1:
            writes = [CgroupWrite("memory.limit_in_bytes", limit)]
            if self.swap_limit:
                writes.append(CgroupWrite("memory.memsw.limit_in_bytes", limit, required=False))
            writes.append(CgroupWrite("memory.swappiness", "0", required=False))
            return writes
        writes = [CgroupWrite("memory.max", limit)]
        if self.swap_limit:
            writes.append(CgroupWrite("memory.swap.max", "0", required=False))
        return writes

    def events_file(self, cgroup_paths: Sequence[Path]) -> str:
        """The file whose ``oom_kill`` counter says the OOM killer struck in the container."""
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        return f"{self.directory(cgroup_paths)}/{name}"

    def oom_killed(self, container: ContainerView) -> bool:
        return read_counter(self.events_file(container.cgroup_paths), b"oom_kill") > 0

    def watches(self, container: ContainerView) -> bool:
        return container.spec.mem_mb is not None

    async def watch(self, containers: Sequence[ContainerView]) -> list[tuple[ContainerView, Limitation]]:
        reached: list[tuple[ContainerView, Limitation]] = []
        for container in containers:
            if self.oom_killed(container):
                log.warning("container.oom", container_id=container.container_id, mem_mb=container.spec.mem_mb)
                reached.append((container, memory_limitation(container.spec.mem_mb)))
        return reached

    async def ended(self, container: ContainerView, returncode: int | None) -> Limitation | None:
        oom = self.oom_killed(container)
        if not oom and returncode == -signal.SIGKILL and not container.sigkill_sent:
            for _ in range(OOM_RECHECKS):
                await asyncio.sleep(OOM_RECHECK_DELAY)
                if oom := self.oom_killed(container):
                    break
        return memory_limitation(container.spec.mem_mb) if oom else None

    def usage(self, container: ContainerView) -> dict[str, float]:
        directory = self.directory(container.cgroup_paths)
        figures: dict[str, float] = {}
        with contextlib.suppress(OSError):
            memory_stat = read_keyed(directory / "memory.stat")
            if self.version == 1:
                figures["mem_rss_bytes"] = float(memory_stat.get("total_rss", memory_stat.get("rss", 0)))
                figures["mem_cache_bytes"] = float(memory_stat.get("total_cache", memory_stat.get("cache", 0)))
            else:
                figures["mem_rss_bytes"] = float(memory_stat.get("anon", 0))
                figures["mem_cache_bytes"] = float(memory_stat.get("file", 0))
        current = read_int(directory / ("memory.usage_in_bytes" if self.version == 1 else "memory.current"))
        if current is not None:
            figures["mem_total_bytes"] = float(current)
        limit = read_int(directory / ("memory.limit_in_bytes" if self.version == 1 else "memory.max"))
        if limit is not None and (self.version == 2 or limit < UNLIMITED_V1):
            figures["mem_limit_bytes"] = float(limit)
        return figures
