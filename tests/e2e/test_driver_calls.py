"""The SDK driver against a real master: a callback that raises aborts the driver (run() raises it, the framework
and its tasks stay for a failover, which is told the unacknowledged update again), and the public offer
operations (reserve, unreserve) change what the agent has reserved. One cluster for the module."""

from __future__ import annotations

import asyncio

import pytest

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.driver import SchedulerDriver
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.operator import OperatorClient
from scheduler_sdk.resources import Resources
from scheduler_sdk.states import TERMINAL_STATES
from tests.e2e.harness import Recorder, eventually, framework, task

pytestmark = pytest.mark.e2e


@pytest.fixture
def cluster(module_cluster: LocalCluster) -> LocalCluster:
    return module_cluster


class Boom(Exception):
    pass


class CrashesOnRunning(Recorder):
    async def status_update(self, driver: SchedulerDriver, status: tpb.TaskStatus) -> None:
        await super().status_update(driver, status)
        if status.state == tpb.TASK_RUNNING:
            raise Boom(f"cannot handle {status.task_id}")


async def test_a_callback_that_raises_aborts_and_a_failover_is_told_again(cluster: LocalCluster) -> None:
    crashing = CrashesOnRunning()
    info = rpb.FrameworkInfo(name="crashes", failover_timeout=60)
    driver = SchedulerDriver(cluster.master_address, info, crashing, backoff_max=0.5)
    runner = asyncio.create_task(driver.run())
    offer = await crashing.next_offer()
    driver.launch(offer.id, [task("crash", "exec sleep 60", offer.agent_id)])
    with pytest.raises(Boom, match="cannot handle crash"):
        await asyncio.wait_for(runner, 20)
    (running,) = [s for s in crashing.statuses if s.state == tpb.TASK_RUNNING]

    # Aborted, not torn down: the master keeps the framework (disconnected) and its task runs on.
    async def disconnected() -> bool:
        async with OperatorClient(cluster.master_address) as op:
            fws = [f for f in (await op.frameworks()).frameworks if f.framework_info.id == driver.framework_id]
        return bool(fws) and not fws[0].connected and fws[0].task_count == 1

    await eventually(disconnected, what="the aborted framework kept, disconnected, with its task")

    # A new driver fails over to it and is told the update the crash left unacknowledged (the same uuid).
    again = Recorder()
    async with framework(cluster.master_address, again, framework_id=driver.framework_id, failover_timeout=60) as d:
        redelivered = await again.wait_state("crash", {tpb.TASK_RUNNING})
        assert redelivered.uuid == running.uuid
        d.kill("crash", offer.agent_id)
        await again.wait_state("crash", TERMINAL_STATES)


async def test_reserve_and_unreserve_are_driver_calls(cluster: LocalCluster) -> None:
    rec = Recorder()
    eng = Resources.of(role="eng", cpus=0.5, mem=64)
    async with framework(cluster.master_address, rec, roles=["eng"]) as driver:
        offer = await rec.next_offer()
        agent_id = offer.agent_id
        driver.reserve([offer.id], eng, refuse_seconds=0)
        await eventually(lambda: reserved(cluster, agent_id, eng), what="eng's reservation on the agent")

        # Offered back under the role; a bad UNRESERVE is an error event; a good one gives it back.
        back = await rec.next_offer(agent_id=agent_id)
        assert Resources.from_proto(back.resources).reserved("eng") == eng
        driver.unreserve([back.id], Resources.of(role="eng", cpus=5), refuse_seconds=0)
        await eventually(lambda: any("UNRESERVE" in e for e in rec.errors), what="the refused UNRESERVE")
        again = await rec.next_offer(agent_id=agent_id)
        driver.unreserve([again.id], Resources.from_proto(again.resources).reserved("eng"))
        await eventually(lambda: reserved(cluster, agent_id, Resources.empty()), what="the reservation given back")


async def reserved(cluster: LocalCluster, agent_id: str, expected: Resources) -> bool:
    async with OperatorClient(cluster.master_address) as op:
        (agent,) = [a for a in (await op.agents()).agents if a.agent_info.id == agent_id]
    return Resources.from_proto(agent.total).reserved() == expected
