"""The operator's long lists come in pages (GetAgents, GetFrameworks, GetTasks, GetState): with a small page size,
many frameworks and tasks are listed completely across pages, each once, even when frameworks come and go between
pages; OperatorClient follows the pages itself; a token that is not one of the master's is INVALID_ARGUMENT."""

from __future__ import annotations

import contextlib
from collections import Counter

import grpc
import pytest

from aiomesos.v1 import operator_pb2 as opb
from aiomesos.v1 import operator_pb2_grpc
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.frameworks.batch import TaskSpec, run_batch
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.operator import OperatorClient
from tests.e2e.harness import Recorder, framework, master_channel, task

pytestmark = [pytest.mark.e2e, pytest.mark.cgroups]
FRAMEWORKS = 12
DONE_TASKS = 20
RUNNING_TASKS = 5


def framework_ids(resp: opb.GetFrameworksResponse) -> list[str]:
    return [f.framework_info.id for f in (*resp.frameworks, *resp.completed_frameworks)]


def task_keys(resp: opb.GetTasksResponse) -> list[tuple[str, str, int]]:
    return [(t.framework_id, t.task.task_id, t.state) for t in (*resp.tasks, *resp.completed_tasks)]


async def test_many_frameworks_and_tasks_are_listed_completely_across_small_pages(cluster: LocalCluster) -> None:
    master = cluster.master_address
    await run_batch(
        master, [TaskSpec(task_id=f"done-{i}", command="true", cpus=0.1, mem=16) for i in range(DONE_TASKS)]
    )
    async with contextlib.AsyncExitStack() as stack:
        rec = Recorder()
        driver = await stack.enter_async_context(framework(master, rec, name="runner"))
        offer = await rec.next_offer()
        driver.accept([offer.id], [task(f"run-{i}", "sleep 60", offer.agent_id, mem=16) for i in range(RUNNING_TASKS)])
        for i in range(RUNNING_TASKS):
            await rec.wait_state(f"run-{i}", {tpb.TASK_RUNNING})
        for i in range(FRAMEWORKS):
            await stack.enter_async_context(framework(master, Recorder(auto_decline=True), name=f"idle-{i}"))

        async with OperatorClient(master) as client:
            whole = await client.state()  # small enough for one page
            assert whole.continue_token == ""
            paged = await client.state(page_size=3)
            assert len(paged.frameworks.frameworks) == FRAMEWORKS + 1
            assert len(paged.frameworks.completed_frameworks) == 1  # the batch framework, torn down
            assert len(paged.tasks.tasks) == RUNNING_TASKS and len(paged.tasks.completed_tasks) == DONE_TASKS
            assert len(paged.agents.agents) == 2
            # Paged or not, the same answer (the tasks' latest statuses aside: they are the same tasks).
            assert framework_ids(paged.frameworks) == framework_ids(whole.frameworks)
            assert task_keys(paged.tasks) == task_keys(whole.tasks)
            assert [a.agent_info.id for a in paged.agents.agents] == [a.agent_info.id for a in whole.agents.agents]
            assert paged.master_id == whole.master_id and paged.continue_token == ""

            assert framework_ids(await client.frameworks(page_size=2)) == framework_ids(whole.frameworks)
            assert task_keys(await client.tasks(page_size=4)) == task_keys(whole.tasks)
            mine = await client.tasks(driver.framework_id, page_size=2)
            assert sorted(t.task.task_id for t in mine.tasks) == [f"run-{i}" for i in range(RUNNING_TASKS)]
            assert len((await client.agents(page_size=1)).agents) == 2


async def test_frameworks_that_come_and_go_between_pages_are_listed_once_and_what_stays_is_listed(
    cluster: LocalCluster,
) -> None:
    master = cluster.master_address
    async with contextlib.AsyncExitStack() as stack:
        drivers = [
            await stack.enter_async_context(framework(master, Recorder(auto_decline=True), name=f"fw-{i}"))
            for i in range(8)
        ]
        ids = sorted(d.framework_id for d in drivers)
        async with master_channel(master) as channel:
            stub = operator_pb2_grpc.OperatorStub(channel)
            first = await stub.GetFrameworks(opb.GetFrameworksRequest(limit=3), timeout=5)
            assert framework_ids(first) == ids[:3] and first.continue_token
            # Between pages: one listed framework and one not yet listed go, one new one comes.
            async with OperatorClient(master) as client:
                await client.teardown(ids[0])
                await client.teardown(ids[5])
            await stack.enter_async_context(framework(master, Recorder(auto_decline=True), name="late"))
            listed = framework_ids(first)
            request = opb.GetFrameworksRequest(limit=3, continue_token=first.continue_token)
            while request.continue_token:
                page = await stub.GetFrameworks(request, timeout=5)
                assert len(page.frameworks) + len(page.completed_frameworks) <= 3
                listed += framework_ids(page)
                request.continue_token = page.continue_token
            counts = Counter(listed)
            assert all(n == 1 for n in counts.values()), f"listed twice: {counts}"
            assert set(ids) <= set(counts), "a framework that stayed was not listed"

            # A token that is not the master's, or is another request's, is refused and names the field.
            refusals = (
                stub.GetFrameworks(opb.GetFrameworksRequest(continue_token="garbage"), timeout=5),
                stub.GetTasks(opb.GetTasksRequest(continue_token=first.continue_token), timeout=5),
                stub.GetState(opb.GetStateRequest(continue_token=first.continue_token), timeout=5),
            )
            for call in refusals:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await call
                assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "continue_token" in (refused.value.details() or "")
