"""The single-master restart with an agent slow to come back (issue 10): no false TASK_LOST. The master is
killed -9 while an agent is down (its checkpointed tasks keep running); the restarted master knows the agent from
its registry but none of its tasks, and answers nothing for them until the agent re-attaches (then their real
states) or its --agent-reregister-timeout passes (then TASK_LOST, or TASK_UNREACHABLE for a partition-aware
framework, saying why). Answering TASK_LOST for a task still running is how a framework comes to run it twice."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.driver import SchedulerDriver
from scheduler_sdk.local_cluster import LocalCluster
from tests.e2e.harness import Recorder, eventually, framework, task
from tests.e2e.test_agent_recovery import _attached, _daemon_for, _kill_agent, _settled

pytestmark = [pytest.mark.e2e, pytest.mark.cgroups]

S = tpb.TaskStatus
AWARE = rpb.FrameworkInfo.Capability.PARTITION_AWARE
WAITING = [f"wait{i}" for i in range(3)]  # run until the test lets them finish
ENDING = [f"end{i}" for i in range(3)]  # end while their agent is down


async def _kill_and_restart_master(cluster: LocalCluster, extra_flags: Sequence[str] = ()) -> float:
    """kill -9 the master and start it again, same work dir and port; returns when it was started (time.time)."""
    assert cluster.master is not None
    port = int(cluster.master_address.rsplit(":", 1)[1])
    token_port = int(cluster.token_address.rsplit(":", 1)[1]) if cluster.token_address else 0
    cluster.master.signal(signal.SIGKILL)
    await cluster.master.wait(10)
    assert not cluster.master.alive
    cluster.master_flags.extend(extra_flags)
    started = time.time()
    await cluster.start_master(port=port, token_port=token_port)
    return started


@contextlib.asynccontextmanager
async def _cleaned_up(cluster: LocalCluster, *files: Path) -> AsyncIterator[None]:
    """Whatever happens, the tasks end (their files appear) and every agent runs at the end, so that the cluster
    stops them all and leaves nothing behind."""
    try:
        yield
    finally:
        for f in files:
            f.touch()
        dead = [i for i, d in enumerate(cluster.agent_daemons) if not d.alive]
        for i in dead:
            cluster.add_agent(i)
        if dead:  # attached, its tasks recovered: it can kill them when the cluster stops
            await cluster.wait_for_agents(len(cluster.agent_daemons))


def _after(rec: Recorder, mark: int, task_ids: list[str]) -> list[tpb.TaskStatus]:
    return [s for s in rec.statuses[mark:] if s.task_id in task_ids]


def _reconciled(rec: Recorder, mark: int, task_id: str, n: int = 1) -> bool:
    return sum(s.reason == S.REASON_RECONCILIATION for s in _after(rec, mark, [task_id])) >= n


async def _launch(cluster: LocalCluster, rec: Recorder, driver: SchedulerDriver, go: Path, end: Path) -> str:
    """The tasks on one agent (returned): WAITING until `go` exists, ENDING until `end` does; all RUNNING."""
    offer = await rec.next_offer()
    wait = f"while [ ! -e {go} ]; do sleep 0.1; done"
    ending = f"while [ ! -e {end} ]; do sleep 0.1; done"
    tasks = [task(t, wait, offer.agent_id, cpus=0.05, mem=16) for t in WAITING]
    tasks += [task(t, ending, offer.agent_id, cpus=0.05, mem=16) for t in ENDING]
    driver.accept([offer.id], tasks)
    for t in WAITING + ENDING:
        await rec.wait_state(t, {tpb.TASK_RUNNING}, timeout=30)
    return offer.agent_id


async def test_restarted_master_answers_nothing_for_an_absent_agent_until_it_is_back(cluster: LocalCluster) -> None:
    rec = Recorder()
    go, end = cluster.work_dir / "go", cluster.work_dir / "end"  # the work dir is traversable by tasks
    async with (
        _cleaned_up(cluster, go, end),
        framework(cluster.master_address, rec, checkpoint=True, failover_timeout=300) as driver,
    ):
        agent_id = await _launch(cluster, rec, driver, go, end)
        other_offer = await eventually(lambda: _offer_not_on(rec, agent_id), what="an offer of the other agent")
        other = other_offer.agent_id
        driver.accept([other_offer.id], [task("sentinel", "sleep 300", other, cpus=0.05, mem=16)])
        await rec.wait_state("sentinel", {tpb.TASK_RUNNING}, timeout=30)

        daemon = _daemon_for(cluster, agent_id)
        index = cluster.agent_daemons.index(daemon)
        await _kill_agent(daemon)  # its tasks keep running (checkpoint)
        await _kill_and_restart_master(cluster)
        end.touch()  # the ENDING tasks end while nobody watches them
        await eventually(lambda: len(rec.registrations) >= 2, timeout=30, what="the framework to resubscribe")
        await eventually(lambda: _attached(cluster, other), timeout=30, what="the other agent to re-attach")

        # Explicitly with the agent's id, explicitly without one, and implicitly; the sentinel (on the attached
        # agent) is answered in the same turn as the others would be: once it is, nothing else came.
        mark = len(rec.statuses)
        ours = WAITING + ENDING
        driver.reconcile([(t, agent_id) for t in ours] + [(t, "") for t in ours] + [("sentinel", other)])
        driver.reconcile()
        await eventually(lambda: _reconciled(rec, mark, "sentinel", 2), timeout=20, what="the sentinel's answers")
        assert _after(rec, mark, ours) == [], "an answer for a task whose agent has not re-attached"
        driver.kill("wait0", agent_id)  # a kill of a task the master cannot know yet: no answer either
        driver.reconcile([("sentinel", other)])
        await eventually(lambda: _reconciled(rec, mark, "sentinel", 3), timeout=20, what="the sentinel's answer")
        assert _after(rec, mark, ours) == [], "an answer for a task whose agent has not re-attached"

        cluster.add_agent(index)  # the agent is back: now the truth
        await eventually(lambda: _attached(cluster, agent_id), timeout=30, what="the agent to re-attach")
        for t in ENDING:
            assert (await rec.wait_state(t, {tpb.TASK_FINISHED}, timeout=30)).state == tpb.TASK_FINISHED
        assert (await rec.wait_state("wait0", {tpb.TASK_KILLED}, timeout=30)).state == tpb.TASK_KILLED
        for t in WAITING[1:]:
            await eventually(lambda t=t: _reconciled(rec, mark, t), timeout=30, what=f"{t}'s answer")  # type: ignore[misc]
            assert rec.latest(t).state == tpb.TASK_RUNNING  # type: ignore[union-attr]
        go.touch()
        for t in WAITING[1:]:
            assert (await rec.wait_state(t, {tpb.TASK_FINISHED}, timeout=30)).state == tpb.TASK_FINISHED
        for t in ours:
            states = rec.states(t)
            assert tpb.TASK_LOST not in states and tpb.TASK_GONE not in states, (t, states)
            assert states[-1] in (tpb.TASK_FINISHED, tpb.TASK_KILLED), (t, states)
            # Nothing after the end but the end again (a reconciliation's answer, or the agent's update itself).
            first_end = next(i for i, s in enumerate(states) if s in (tpb.TASK_FINISHED, tpb.TASK_KILLED))
            assert set(states[first_end:]) == {states[-1]}, (t, states)


def _offer_not_on(rec: Recorder, agent_id: str):  # type: ignore[no-untyped-def]
    """The next offer in the queue from another agent than `agent_id` (the others are dropped), or None."""
    while not rec.offer_queue.empty():
        offer = rec.offer_queue.get_nowait()
        if offer.agent_id != agent_id and offer.id not in rec.rescinded:
            return offer
    return None


@pytest.mark.parametrize("aware", [False, True], ids=["plain", "partition-aware"])
async def test_agent_that_never_comes_back_is_answered_after_the_reregister_timeout(
    cluster: LocalCluster, aware: bool
) -> None:
    rec = Recorder()
    go, end = cluster.work_dir / "go", cluster.work_dir / "end"
    timeout = 4.0
    capabilities = [AWARE] if aware else []
    master = cluster.master_address
    async with (
        _cleaned_up(cluster, go, end),
        framework(master, rec, checkpoint=True, failover_timeout=300, capabilities=capabilities) as driver,
    ):
        agent_id = await _launch(cluster, rec, driver, go, end)
        daemon = _daemon_for(cluster, agent_id)
        index = cluster.agent_daemons.index(daemon)
        await _kill_agent(daemon)
        started = await _kill_and_restart_master(cluster, ["--agent-reregister-timeout", str(timeout)])
        await eventually(lambda: len(rec.registrations) >= 2, timeout=30, what="the framework to resubscribe")
        mark = len(rec.statuses)
        driver.reconcile([(t, agent_id) for t in WAITING])
        told = tpb.TASK_UNREACHABLE if aware else tpb.TASK_LOST
        for t in WAITING:
            status = await rec.wait_state(t, {told}, timeout=30)
            assert status.reason == S.REASON_AGENT_REMOVED, status
            assert "did not re-attach to the new master" in status.message, status.message
            assert status.timestamp >= started + timeout, "answered before the agent's re-register timeout passed"
        assert [s.state for s in _after(rec, mark, WAITING)] == [told] * len(WAITING)

        # The agent comes back after all: a partition-aware framework finds its tasks again; for the other one
        # TASK_LOST stays the last word (the tasks are killed, nothing more is heard of them).
        end.touch()
        new = cluster.add_agent(index)
        await eventually(lambda: _attached(cluster, agent_id), timeout=30, what="the agent to re-attach")
        if aware:
            go.touch()
            for t in WAITING:
                assert (await rec.wait_state(t, {tpb.TASK_FINISHED}, timeout=30)).state == tpb.TASK_FINISHED
        else:
            mark = len(rec.statuses)
            driver.reconcile()
            driver.reconcile([(t, agent_id) for t in WAITING])
            for t in WAITING:
                await eventually(lambda t=t: _reconciled(rec, mark, t), timeout=20, what=f"{t}'s answer")  # type: ignore[misc]
            address = (new.work_dir / "agent.addr").read_text().strip()
            await eventually(lambda: _settled(address), timeout=30, what="the lost tasks killed, their updates acked")
            assert all(rec.states(t)[-1] == tpb.TASK_LOST for t in WAITING), [rec.states(t) for t in WAITING]
