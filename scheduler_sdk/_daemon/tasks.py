"""Ending asyncio tasks without swallowing a cancellation: the daemons' shutdown relies on every task ending
when it is cancelled.

Two idioms look right and are not, on Python 3.11: `asyncio.wait_for(aw, t)` returns `aw`'s result when the
task running it is cancelled in the loop turn in which `aw` completes (the cancellation is lost; fixed in 3.12),
and `with suppress(CancelledError): await task` after `task.cancel()` also takes a cancellation of the *caller*,
arriving meanwhile, for the task's. A task that loses its cancellation runs on, and whoever waits for it (a
TaskGroup, `server.stop`) waits for ever. Use `asyncio.timeout` and `cancel_and_wait` instead."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait until it has ended; raise what it raised other than its cancellation. A
    cancellation of the caller while it waits is the caller's: it propagates (the task, cancelled, ends anyway)."""
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        task.result()


async def race(**awaitables: Awaitable[Any]) -> str:
    """Run the awaitables until the first of them ends; cancel the others and wait for them; return the name of
    the first (raising what it raised). A cancellation of the caller cancels them all."""
    tasks = {name: asyncio.ensure_future(aw) for name, aw in awaitables.items()}
    try:
        done, _ = await asyncio.wait(tasks.values(), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks.values():
            if not task.done():
                await cancel_and_wait(task)
    first = next(name for name, task in tasks.items() if task in done)
    tasks[first].result()
    return first
