"""Restarts: agents keep their ids, a restarted master keeps its agents and frameworks and rebuilds tasks."""

from __future__ import annotations

import signal

import psutil
import pytest

from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.operator import OperatorClient
from tests.e2e.harness import Recorder, agents, eventually, framework, task

pytestmark = [pytest.mark.e2e, pytest.mark.cgroups]


async def _active_ids(master: str) -> set[str]:
    return {a.agent_info.id for a in await agents(master) if a.active}


async def test_restarted_agent_reattaches_with_the_same_id(cluster: LocalCluster) -> None:
    before = await _active_ids(cluster.master_address)
    assert len(before) == 2
    agent0 = cluster.agent_daemons[0]
    assert await agent0.stop() == 0, agent0.log_tail()
    await eventually(lambda: _count_active(cluster, 1), what="the master to see the agent go")
    cluster.add_agent(0)
    after = await eventually(lambda: _ids_if_count(cluster, 2), what="the agent to re-attach")
    assert after == before
    # Still one entry per agent, no duplicate.
    assert len(await agents(cluster.master_address)) == 2


async def _count_active(cluster: LocalCluster, n: int) -> bool:
    return len(await _active_ids(cluster.master_address)) == n


async def _ids_if_count(cluster: LocalCluster, n: int) -> set[str] | None:
    ids = await _active_ids(cluster.master_address)
    return ids if len(ids) == n else None


async def test_killed_agent_leaves_no_orphans_and_its_tasks_are_reported_lost(cluster: LocalCluster) -> None:
    rec = Recorder()
    async with framework(cluster.master_address, rec) as driver:
        offer = await rec.next_offer()
        daemon = next(d for d in cluster.agent_daemons if d.alive and _agent_id(d) == offer.agent_id)
        driver.accept([offer.id], [task("orphan", "sleep 300", offer.agent_id)])
        await rec.wait_state("orphan", {tpb.TASK_RUNNING})
        children = [p for p in psutil.Process(daemon.process.pid).children(recursive=True)]  # type: ignore[union-attr]
        assert children, "the task's process should be running"
        daemon.signal(signal.SIGKILL)
        await daemon.wait(10)
        index = cluster.agent_daemons.index(daemon)
        cluster.add_agent(index)
        status = await rec.wait_state("orphan", {tpb.TASK_LOST, tpb.TASK_GONE}, timeout=30)
        assert status.reason == tpb.TaskStatus.REASON_AGENT_RESTARTED
        for child in children:
            assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, "an orphan survived"
        assert offer.agent_id in await _active_ids(cluster.master_address)


def _agent_id(daemon) -> str:  # type: ignore[no-untyped-def]
    path = daemon.work_dir / "meta" / "agent_id"
    return path.read_text().strip() if path.exists() else ""


async def test_restarted_master_keeps_agents_frameworks_and_running_tasks(cluster: LocalCluster) -> None:
    rec = Recorder()
    agent_ids = await _active_ids(cluster.master_address)
    async with framework(cluster.master_address, rec, name="survivor", failover_timeout=120) as driver:
        framework_id = driver.framework_id
        offer = await rec.next_offer()
        driver.accept([offer.id], [task("long", "sleep 60", offer.agent_id)])
        await rec.wait_state("long", {tpb.TASK_RUNNING})

        await cluster.restart_master()

        # Agents re-attach with their ids; the framework resubscribes with its id.
        assert await eventually(lambda: _ids_if_count(cluster, 2), timeout=30) == agent_ids
        await eventually(lambda: len(rec.registrations) >= 2, timeout=30, what="the framework to resubscribe")
        assert rec.registrations == [framework_id, framework_id]
        async with OperatorClient(cluster.master_address) as client:
            frameworks = (await client.frameworks()).frameworks
            assert [f.framework_info.id for f in frameworks] == [framework_id]
            assert frameworks[0].framework_info.name == "survivor"
            tasks = (await client.tasks()).tasks
        (t,) = [t for t in tasks if t.task.task_id == "long"]
        assert t.state == tpb.TASK_RUNNING and t.framework_id == framework_id
        # The rebuilt task can still be killed through the new master.
        driver.kill("long")
        await rec.wait_state("long", {tpb.TASK_KILLED})


async def test_master_restart_with_the_same_work_dir_remembers_agents_before_they_return(cluster: LocalCluster) -> None:
    agent_ids = await _active_ids(cluster.master_address)
    for d in cluster.agent_daemons:
        await d.stop()
    await cluster.restart_master()
    async with OperatorClient(cluster.master_address) as client:
        known = {a.agent_info.id: a.active for a in (await client.agents()).agents}
    assert known == {i: False for i in agent_ids}, "admitted agents persist in the registry"


async def test_framework_without_failover_timeout_survives_a_master_restart(cluster: LocalCluster) -> None:
    rec = Recorder()
    async with framework(cluster.master_address, rec, name="brief", failover_timeout=0) as driver:
        framework_id = driver.framework_id
        await cluster.restart_master()
        await eventually(lambda: len(rec.registrations) >= 2, timeout=30, what="the framework to resubscribe")
        assert rec.registrations == [framework_id, framework_id]
        offer = await rec.next_offer(timeout=30)
        driver.accept([offer.id], [task("after-restart", "true", offer.agent_id)])
        assert (await rec.wait_state("after-restart", {tpb.TASK_FINISHED})).state == tpb.TASK_FINISHED
