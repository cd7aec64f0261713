"""An agent the master loses touch with, with real daemons: after --agent-unreachable-timeout its tasks are
TASK_UNREACHABLE to PARTITION_AWARE frameworks and TASK_LOST to the others (Mesos 1.1+ semantics), frameworks
hear FAILURE (agent_lost), and when the agent comes back the partition-aware framework's task is RUNNING again
while the other framework's task, already reported lost, is killed rather than silently adopted."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.operator import OperatorClient
from tests.e2e.conftest import FAST_AGENT, FAST_MASTER
from tests.e2e.harness import Recorder, alive, eventually, framework, task, task_pid

pytestmark = [pytest.mark.e2e, pytest.mark.cgroups]
PARTITION_AWARE = rpb.FrameworkInfo.Capability.PARTITION_AWARE


async def _agent_view(master: str, agent_id: str) -> tuple[bool, int] | None:
    async with OperatorClient(master) as op:
        for a in (await op.agents()).agents:
            if a.agent_info.id == agent_id:
                return a.active, a.task_count
    return None


async def test_unreachable_agent_and_its_return(tmp_path: Path) -> None:
    c = LocalCluster(
        tmp_path,
        agents=1,
        master_flags=[*FAST_MASTER, "--agent-unreachable-timeout", "1"],
        agent_flags=list(FAST_AGENT),
    )
    await c.start()
    try:
        aware, plain = Recorder(), Recorder()
        async with (
            framework(c.master_address, aware, name="aware", checkpoint=True, capabilities=[PARTITION_AWARE]) as da,
            framework(c.master_address, plain, name="plain", checkpoint=True) as dp,
        ):
            offer = await aware.next_offer()
            agent_id = offer.agent_id
            da.accept([offer.id], [task("aware-task", "sleep 600", agent_id)])
            await aware.wait_state("aware-task", {tpb.TASK_RUNNING})
            offer = await plain.next_offer()
            dp.accept([offer.id], [task("plain-task", "sleep 600", agent_id)])
            await plain.wait_state("plain-task", {tpb.TASK_RUNNING})
            aware_pid = await eventually(lambda: task_pid("aware-task", c.work_dir), what="aware-task's process")
            plain_pid = await eventually(lambda: task_pid("plain-task", c.work_dir), what="plain-task's process")

            # The agent dies (its checkpointed tasks run on) and stays away past the unreachable timeout.
            c.agent_daemons[0].signal(signal.SIGKILL)
            await c.agent_daemons[0].wait(10)
            s = await aware.wait_state("aware-task", {tpb.TASK_UNREACHABLE}, timeout=20)
            assert s.source == tpb.TaskStatus.SOURCE_MASTER and "unreachable" in s.message
            s = await plain.wait_state("plain-task", {tpb.TASK_LOST}, timeout=20)
            assert s.reason == tpb.TaskStatus.REASON_AGENT_REMOVED
            await eventually(lambda: agent_id in aware.lost_agents and agent_id in plain.lost_agents, what="FAILURE")
            assert await _agent_view(c.master_address, agent_id) == (False, 1)  # unreachable, one task kept
            # Reconciliation agrees with what each framework was told.
            da.reconcile([("aware-task", agent_id)])
            dp.reconcile([("plain-task", agent_id)])
            await eventually(
                lambda: aware.latest("aware-task").reason == tpb.TaskStatus.REASON_RECONCILIATION,  # type: ignore[union-attr]
                what="aware's reconciliation",
            )
            assert aware.latest("aware-task").state == tpb.TASK_UNREACHABLE  # type: ignore[union-attr]
            await eventually(
                lambda: plain.latest("plain-task").reason == tpb.TaskStatus.REASON_RECONCILIATION,  # type: ignore[union-attr]
                what="plain's reconciliation",
            )
            assert plain.latest("plain-task").state == tpb.TASK_LOST  # type: ignore[union-attr]

            # The agent comes back with the same id: the partition-aware task is running again; the other task,
            # already reported lost, is killed, not adopted behind its framework's back.
            c.add_agent(0)
            s = await aware.wait_state("aware-task", {tpb.TASK_RUNNING}, timeout=30)
            assert s.agent_id == agent_id
            await eventually(lambda: not alive(plain_pid), timeout=30, what="the lost task to be killed")
            assert alive(aware_pid)
            assert plain.states("plain-task")[-1] == tpb.TASK_LOST  # nothing after LOST: it stays lost
            assert await eventually(lambda: _agent_view(c.master_address, agent_id)) == (True, 1)
            async with OperatorClient(c.master_address) as op:
                running = [(t.task.task_id, t.state) for t in (await op.tasks()).tasks]
            assert running == [("aware-task", tpb.TASK_RUNNING)]
            da.kill("aware-task")
            await aware.wait_state("aware-task", {tpb.TASK_KILLED})
    finally:
        assert await c.stop() == []
