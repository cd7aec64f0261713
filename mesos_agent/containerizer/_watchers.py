"""The isolators' watch loops: one poller task per watching isolator and Containerizer, started on demand."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from ._container import Container
from ._tasks import BackgroundTasks, Spawn
from .isolators import Isolator


class Watchers:
    """Runs each isolator's ``watch`` every ``watch_interval`` over the containers it watches.

    A poller ends when no container is left to watch and starts again with the next one (``watch``).  The
    tasks go through ``spawn`` when lent (``BackgroundTasks``); ``stop`` cancels them.
    """

    def __init__(self, containers: Callable[[], Iterable[Container]], spawn: Spawn | None = None) -> None:
        self._containers = containers
        self.tasks = BackgroundTasks(spawn)
        self._poller_of: dict[int, asyncio.Task[None]] = {}  # id(isolator) -> its poller

    def watch(self, container: Container) -> None:
        """Start the pollers the container's isolators need."""
        if container.done:
            return
        for isolator in container.isolators:
            if isolator.watch_interval is not None and isolator.watches(container):
                self._ensure_poller(isolator)

    def _ensure_poller(self, isolator: Isolator) -> None:
        task = self._poller_of.get(id(isolator))
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            self._poller_of[id(isolator)] = self.tasks.start(
                self._poll(isolator), f"containerizer-{isolator.name}-poller"
            )

    async def _poll(self, isolator: Isolator) -> None:
        assert isolator.watch_interval is not None
        while True:
            await asyncio.sleep(isolator.watch_interval)
            watched = [
                container
                for container in self._containers()
                if container.watchable and isolator in container.isolators and isolator.watches(container)
            ]
            if not watched:
                return
            for reached, limitation in await isolator.watch(watched):
                if isinstance(reached, Container):
                    reached._limit_reached(limitation)

    async def stop(self) -> None:
        self._poller_of.clear()
        await self.tasks.cancel()
