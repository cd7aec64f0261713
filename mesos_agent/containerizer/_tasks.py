"""The owner of a Containerizer's background tasks (structured concurrency: no fire-and-forget create_task)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

log = structlog.get_logger(__name__)

#: How a caller lends its task group: ``asyncio.TaskGroup.create_task`` or the like.
Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]


class BackgroundTasks:
    """Tracks every task it starts until it ends; ``cancel()`` cancels and awaits those left.

    With a ``spawn`` (the caller's TaskGroup.create_task), tasks are started through it, so that the caller's
    group owns them too (and a crash of the group cancels them); without one, on the running loop.  A task
    that fails is logged, never left to kill its group: a poller's bug must not take the agent down.
    """

    def __init__(self, spawn: Spawn | None = None, *, guard: bool = True) -> None:
        self.spawn = spawn
        self._guard = guard
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        body = _logged(coro, name) if self._guard else coro
        if self.spawn is not None:
            task = self.spawn(body)
            task.set_name(name)
        else:
            task = asyncio.get_running_loop().create_task(body, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if body is not coro:
            # Cancelled before it ran, the guard never awaited coro: close it (a no-op once it has finished).
            task.add_done_callback(lambda _task: coro.close())
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    async def cancel(self) -> None:
        """Cancel every task still running on this loop and wait for them to end (those of a loop that has
        gone, as in tests that run several, are dropped: they cannot run again)."""
        loop = asyncio.get_running_loop()
        mine = [task for task in self._tasks if task.get_loop() is loop]
        self._tasks.clear()
        for task in mine:
            task.cancel()
        if mine:
            await asyncio.gather(*mine, return_exceptions=True)


async def _logged(coro: Coroutine[Any, Any, None], name: str) -> None:
    try:
        await coro
    except Exception:
        log.exception("containerizer.background_task_failed", task=name)
