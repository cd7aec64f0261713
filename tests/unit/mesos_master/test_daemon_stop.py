"""The master's loops end when cancelled, even in the loop turn in which their wake-up event is set: on Python
3.11 `asyncio.wait_for` returned the event's result then, losing the cancellation, and the master hung at SIGTERM
(its TaskGroup waiting for the allocation loop)."""

from __future__ import annotations

import argparse
import asyncio

from mesos_master.daemon import MasterDaemon


class FakeDispatcher:
    def __init__(self) -> None:
        self.allocation_wanted = asyncio.Event()
        self.flushes = 0

    async def flush(self) -> None:
        self.flushes += 1


class FakeMaster:
    def allocate(self) -> bool:
        return False


async def test_the_allocation_loop_ends_when_cancelled_as_allocation_is_wanted() -> None:
    daemon = MasterDaemon(argparse.Namespace(allocation_interval=30.0))
    dispatcher = FakeDispatcher()
    loop = asyncio.create_task(daemon._allocation_loop(FakeMaster(), dispatcher))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)  # waiting for allocation_wanted
    dispatcher.allocation_wanted.set()  # a stream detached...
    await asyncio.sleep(0)  # ...and, one turn later, SIGTERM: the loop is cancelled
    loop.cancel()
    done, _ = await asyncio.wait([loop], timeout=2.0)
    assert loop in done, "the allocation loop ran on after it was cancelled"
    assert loop.cancelled()
