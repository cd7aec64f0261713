"""The Containerizer's background tasks have an owner: the caller's task group when lent, cancelled on shutdown."""

from __future__ import annotations

import asyncio
import gc
import warnings

from mesos_agent.containerizer._tasks import BackgroundTasks


async def forever() -> None:
    await asyncio.Event().wait()


async def fails() -> None:
    raise RuntimeError("a poller's bug")


def test_tasks_run_in_the_callers_task_group_and_cancel_ends_them() -> None:
    async def main() -> None:
        async with asyncio.TaskGroup() as group:
            tasks = BackgroundTasks(group.create_task)
            task = tasks.start(forever(), "poller")
            failing = tasks.start(fails(), "failing")
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert failing.done() and failing.exception() is None  # logged, the group lives on
            assert task.get_name() == "poller" and len(tasks) == 1
            await tasks.cancel()
            assert task.cancelled() and len(tasks) == 0
        # The group ended: nothing of ours was left for it to wait for.

    asyncio.run(main())


def test_without_a_group_tasks_are_owned_and_a_task_cancelled_before_it_ran_leaves_no_warning() -> None:
    async def main() -> None:
        tasks = BackgroundTasks()
        tasks.start(forever(), "never-ran")
        await tasks.cancel()

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        asyncio.run(main())
        gc.collect()


def test_cancel_drops_the_tasks_of_a_loop_that_is_gone() -> None:
    tasks = BackgroundTasks(guard=False)

    async def start() -> None:
        tasks.start(asyncio.sleep(0), "done")
        tasks.start(forever(), "orphaned")

    asyncio.run(start())  # (asyncio.run cancels the leftover itself)

    async def stop() -> None:
        await tasks.cancel()

    asyncio.run(stop())
    assert len(tasks) == 0
