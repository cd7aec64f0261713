"""Tasks through the whole path: framework → master → agent → process → status updates → acknowledgements."""

from __future__ import annotations

import os
import time

import psutil
import pytest

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.frameworks.batch import TaskSpec, run_batch
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.operator import OperatorClient
from tests.e2e.harness import Recorder, agent_state, agents, alive, eventually, framework, task

pytestmark = [pytest.mark.e2e, pytest.mark.cgroups]
S = tpb.TaskStatus


@pytest.fixture(scope="module")
def cluster(module_cluster: LocalCluster) -> LocalCluster:
    """One cluster for the module: no test here kills, restarts or drains an agent or the master, and each one's
    tasks have ended (or are killed with its framework) when it is done."""
    return module_cluster


async def test_fifty_tasks_over_two_agents_all_finish_and_every_update_is_acknowledged(cluster: LocalCluster) -> None:
    specs = [TaskSpec(task_id=f"t{i}", command="echo $MESOS_TASK_ID", cpus=0.1, mem=16) for i in range(50)]
    scheduler = await run_batch(cluster.master_address, specs, timeout=60)

    assert {r.state for r in scheduler.records.values()} == {tpb.TASK_FINISHED}
    assert all(r.exit_code == 0 for r in scheduler.records.values())
    used_agents = {r.agent_id for r in scheduler.records.values()}
    assert len(used_agents) == 2, "tasks should spread over both agents"
    for record in scheduler.records.values():
        assert record.states[-2:] == [tpb.TASK_RUNNING, tpb.TASK_FINISHED] or record.states[-1] == tpb.TASK_FINISHED

    # Every update was acknowledged: nothing pending at either agent, no task left there.
    for a in await agents(cluster.master_address):
        state = await eventually(
            lambda addr=a.agent_info.address: _settled(addr), what=f"agent {a.agent_info.id} to settle"
        )
        assert state.pending_updates == 0
        assert len(state.tasks) == 0
    # The sandboxes hold each task's output (the tasks t0..t49; the module's other tests name theirs otherwise).
    outputs = sorted(
        p.read_text().strip()
        for d in cluster.agent_daemons
        for p in d.work_dir.glob("agents/*/frameworks/*/executors/t[0-9]*/runs/latest/stdout")
    )
    assert outputs == sorted(f"t{i}" for i in range(50))


async def _settled(address: str):  # type: ignore[no-untyped-def]
    state = await agent_state(address)
    return state if state.pending_updates == 0 and not state.tasks else None


async def test_failing_command_reports_task_failed_with_its_exit_code(cluster: LocalCluster) -> None:
    rec = Recorder()
    async with framework(cluster.master_address, rec) as driver:
        offer = await rec.next_offer()
        driver.accept([offer.id], [task("fail", "echo oops >&2; exit 7", offer.agent_id)])
        status = await rec.wait_state("fail", {tpb.TASK_FAILED, tpb.TASK_FINISHED})
        assert status.state == tpb.TASK_FAILED
        assert status.HasField("exit_code") and status.exit_code == 7
        assert status.reason == S.REASON_COMMAND_EXECUTOR_FAILED
        assert "7" in status.message
        assert rec.states("fail")[:2] == [tpb.TASK_STARTING, tpb.TASK_RUNNING]


async def test_kill_sends_sigterm_then_sigkill_within_the_grace_period(cluster: LocalCluster) -> None:
    rec = Recorder()
    async with framework(
        cluster.master_address, rec, capabilities=[rpb.FrameworkInfo.Capability.TASK_KILLING_STATE]
    ) as driver:
        offer = await rec.next_offer()
        # Ignores SIGTERM: only SIGKILL after the 1 s grace period ends it. It writes its pid first.
        driver.accept(
            [offer.id],
            [
                task(
                    "stubborn", "trap '' TERM; echo $$ > pid; while true; do sleep 0.1; done", offer.agent_id, grace=1.0
                )
            ],
        )
        await rec.wait_state("stubborn", {tpb.TASK_RUNNING})
        pid_file = await eventually(lambda: _pid_file(cluster, "stubborn"), what="pid file")
        pid = int(pid_file.read_text())
        assert psutil.pid_exists(pid)
        started = time.monotonic()
        driver.kill("stubborn", offer.agent_id)
        status = await rec.wait_state("stubborn", {tpb.TASK_KILLED, tpb.TASK_FAILED, tpb.TASK_FINISHED})
        elapsed = time.monotonic() - started
        assert status.state == tpb.TASK_KILLED
        # The framework declared TASK_KILLING_STATE: it saw the task in KILLING first.
        assert rec.states("stubborn")[-2:] == [tpb.TASK_KILLING, tpb.TASK_KILLED]
        assert 0.9 <= elapsed < 5.0, f"kill took {elapsed:.2f} s with a 1 s grace period"
        assert not alive(pid), "the task's process survived its kill"

        # A task that exits on SIGTERM dies at once, well within its grace period.
        offer = await rec.next_offer()
        driver.accept([offer.id], [task("polite", "sleep 60", offer.agent_id, grace=10.0)])
        await rec.wait_state("polite", {tpb.TASK_RUNNING})
        started = time.monotonic()
        driver.kill("polite")
        status = await rec.wait_state("polite", {tpb.TASK_KILLED})
        assert time.monotonic() - started < 5.0


def _pid_file(cluster: LocalCluster, task_id: str):  # type: ignore[no-untyped-def]
    for d in cluster.agent_daemons:
        for p in d.work_dir.glob(f"agents/*/frameworks/*/executors/{task_id}/runs/latest/pid"):
            if p.read_text().strip():
                return p
    return None


async def test_kill_of_an_unknown_task_answers_with_task_lost(cluster: LocalCluster) -> None:
    rec = Recorder(auto_decline=True)
    async with framework(cluster.master_address, rec) as driver:
        driver.kill("no-such-task")
        status = await rec.wait_state("no-such-task", {tpb.TASK_LOST, tpb.TASK_UNKNOWN})
        assert status.reason == S.REASON_RECONCILIATION


async def test_memory_hog_fails_with_memory_limitation_and_neighbours_live_on(cluster: LocalCluster) -> None:
    rec = Recorder()
    async with framework(cluster.master_address, rec) as driver:
        offer = await rec.next_offer()
        hog = "python3 -c 'import time; a = bytearray(400 << 20); time.sleep(30)'"
        driver.accept(
            [offer.id],
            [
                task("hog", hog, offer.agent_id, mem=64),
                task("neighbour", "sleep 1.5; echo fine", offer.agent_id, mem=32),
            ],
        )
        status = await rec.wait_state("hog", {tpb.TASK_FAILED, tpb.TASK_FINISHED, tpb.TASK_KILLED}, timeout=30)
        assert status.state == tpb.TASK_FAILED
        assert status.reason == S.REASON_CONTAINER_LIMITATION_MEMORY, S.Reason.Name(status.reason)
        neighbour = await rec.wait_state("neighbour", {tpb.TASK_FINISHED, tpb.TASK_FAILED, tpb.TASK_KILLED})
        assert neighbour.state == tpb.TASK_FINISHED
        # The agent is unharmed: still attached and running tasks.
        assert all(a.active for a in await agents(cluster.master_address))
        offer = await rec.next_offer()
        driver.accept([offer.id], [task("after", "true", offer.agent_id)])
        assert (await rec.wait_state("after", {tpb.TASK_FINISHED, tpb.TASK_FAILED})).state == tpb.TASK_FINISHED


async def test_task_environment_and_sandbox(cluster: LocalCluster) -> None:
    rec = Recorder()
    async with framework(cluster.master_address, rec) as driver:
        offer = await rec.next_offer()
        driver.accept(
            [offer.id],
            [task("env", 'echo "$MESOS_TASK_ID|$MESOS_AGENT_ID|$PWD|$MESOS_SANDBOX"', offer.agent_id)],
        )
        await rec.wait_state("env", {tpb.TASK_FINISHED})
    out = next(
        p
        for d in cluster.agent_daemons
        for p in d.work_dir.glob("agents/*/frameworks/*/executors/env/runs/latest/stdout")
    )
    task_id, agent_id, cwd, sandbox = out.read_text().strip().split("|")
    assert (task_id, agent_id) == ("env", offer.agent_id)
    assert cwd == sandbox and os.path.realpath(cwd) == os.path.realpath(out.parent)


async def test_operator_views_show_tasks_and_resources(cluster: LocalCluster) -> None:
    rec = Recorder()
    async with framework(cluster.master_address, rec, name="viewer") as driver:
        offer = await rec.next_offer()
        driver.accept([offer.id], [task("long", "sleep 30", offer.agent_id, cpus=0.5, mem=100)])
        await rec.wait_state("long", {tpb.TASK_RUNNING})
        async with OperatorClient(cluster.master_address) as client:
            tasks = (await client.tasks()).tasks
            frameworks = (await client.frameworks()).frameworks
            agent_list = (await client.agents()).agents
        (t,) = [t for t in tasks if t.task.task_id == "long"]
        assert t.state == tpb.TASK_RUNNING and t.task.agent_id == offer.agent_id
        (f,) = [f for f in frameworks if f.framework_info.name == "viewer"]
        assert f.connected and f.task_count == 1
        (a,) = [a for a in agent_list if a.agent_info.id == offer.agent_id]
        assert a.task_count == 1
