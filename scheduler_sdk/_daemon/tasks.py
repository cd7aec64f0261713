"""Ending asyncio tasks without swallowing a cancellation: the daemons' shutdown relies on every task ending
when it is cancelled.

Two idioms look right and are not, on Python 3.11: `asyncio.wait_for(aw, t)` returns `aw`'s result when the
task running it is cancelled in the loop turn in which `aw` completes (the cancellation is lost; fixed in 3.12),
and `with suppress(CancelledError): await task` after `task.cancel()` also takes a cancellation of the *caller*,
arriving meanwhile, for the task's. A task that loses its cancellation runs on, and whoever waits for it (a
TaskGroup, `server.stop`) waits for ever. Use `asyncio.timeout` and `cancel_and_wait` instead."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait until it has ended; raise what it raised other than its cancellation. A
    cancellation of the caller while it waits is the caller's: it propagates (the task, cancelled, ends anyway)."""
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        task.result()
