"""cancel_and_wait: the task ends, its error is raised, and a cancellation of the caller is never taken for the
task's (as `with suppress(CancelledError): await task` does)."""

from __future__ import annotations

import asyncio

import pytest

from scheduler_sdk._daemon.tasks import cancel_and_wait


async def slow_to_end(ended: asyncio.Event, release: asyncio.Event) -> None:
    try:
        await asyncio.Event().wait()
    finally:
        await release.wait()  # cleanup that takes a while
        ended.set()


async def test_the_task_is_cancelled_and_waited_for() -> None:
    ended, release = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(slow_to_end(ended, release))
    await asyncio.sleep(0)
    waiter = asyncio.create_task(cancel_and_wait(task))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    release.set()
    await waiter
    assert ended.is_set() and task.cancelled()


async def test_a_cancellation_of_the_caller_while_it_waits_is_the_callers() -> None:
    ended, release = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(slow_to_end(ended, release))
    await asyncio.sleep(0)
    caller_went_on = asyncio.Event()

    async def caller() -> None:
        await cancel_and_wait(task)
        caller_went_on.set()

    outer = asyncio.create_task(caller())
    await asyncio.sleep(0.01)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert not caller_went_on.is_set()
    release.set()
    await asyncio.wait([task])
    assert task.cancelled()


async def test_the_tasks_own_error_is_raised() -> None:
    async def failing() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            raise ValueError("broken on the way out")

    task = asyncio.create_task(failing())
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="broken on the way out"):
        await cancel_and_wait(task)


async def test_a_task_already_done_is_fine() -> None:
    task = asyncio.create_task(asyncio.sleep(0))
    await task
    await cancel_and_wait(task)
