"""Agent drain with real daemons: no offers from a draining agent, frameworks told, tasks killed at the deadline
(TASK_KILLED, REASON_AGENT_DRAINING), DRAINED when empty, mark-gone, `agent up`, a master restart, and a
placement-SDK framework that moves its tasks off by itself."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from aiomesos.v1 import operator_pb2 as opb
from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.driver import SchedulerDriver
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.operator import OperatorClient, OperatorError
from scheduler_sdk.placement import BinPacking, PlacementEngine, TaskRequest
from scheduler_sdk.placement.service import PlacementScheduler, run_framework
from tests.e2e.harness import Recorder, concurrently, eventually, framework, task
from tests.e2e.test_cli import aiomesos

pytestmark = [pytest.mark.e2e, pytest.mark.cgroups]
S = tpb.TaskStatus


class DrainRecorder(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.draining: list[tuple[str, float | None]] = []

    async def agent_draining(self, driver: SchedulerDriver, agent_id: str, deadline: float | None) -> None:
        self.draining.append((agent_id, deadline))


async def drain_of(master: str, agent_id: str) -> opb.AgentSummary | None:
    async with OperatorClient(master) as client:
        return next((a for a in (await client.agents()).agents if a.agent_info.id == agent_id), None)


async def wait_drain_state(master: str, agent_id: str, state: int, timeout: float = 20.0) -> opb.AgentSummary:
    async def check() -> opb.AgentSummary | None:
        agent = await drain_of(master, agent_id)
        return agent if agent is not None and agent.drain.state == state else None

    return await eventually(check, timeout, what=f"agent {agent_id} {opb.DrainState.Name(state)}")  # type: ignore[arg-type]


async def launch_on_first_offer(rec: Recorder, driver: SchedulerDriver, *tasks: tpb.TaskInfo) -> str:
    offer = await rec.next_offer()
    driver.launch(offer.id, [_on(t, offer.agent_id) for t in tasks])
    for t in tasks:
        await rec.wait_state(t.task_id, {tpb.TASK_RUNNING})
    return offer.agent_id


def _on(info: tpb.TaskInfo, agent_id: str) -> tpb.TaskInfo:
    info.agent_id = agent_id
    return info


async def only_offers_from(rec: Recorder, driver: SchedulerDriver, allowed: str, forbidden: str) -> None:
    """Decline what is held, revive, and see the next offer come from `allowed`; none from `forbidden` meanwhile."""
    while not rec.offer_queue.empty():
        driver.decline([rec.offer_queue.get_nowait().id], refuse_seconds=0)
    driver.revive()
    started = len(rec.statuses)
    offer = await rec.next_offer()
    seen = [offer.agent_id]
    deadline = time.monotonic() + 2.0  # several allocation cycles (0.2 s each)
    while time.monotonic() < deadline:
        driver.decline([offer.id], refuse_seconds=0)
        driver.revive()
        offer = await rec.next_offer()
        seen.append(offer.agent_id)
    assert forbidden not in seen and allowed in seen, (seen, started)


async def test_drain_without_deadline_waits_for_the_tasks_then_drained(cluster: LocalCluster, tmp_path: Path) -> None:
    m = cluster.master_address
    flag = tmp_path / "done"
    rec = DrainRecorder()
    async with framework(m, rec) as driver:
        agent_id = await launch_on_first_offer(
            rec, driver, task("waits", f"while [ ! -e {flag} ]; do sleep 0.1; done", cpus=0.5)
        )
        async with OperatorClient(m) as client:
            other = next(a.agent_info.id for a in (await client.agents()).agents if a.agent_info.id != agent_id)
            info = await client.drain_agent(agent_id)
        assert info.state == opb.DRAINING and not info.HasField("deadline")
        await eventually(lambda: rec.draining, what="AGENT_DRAINING")
        assert rec.draining[0] == (agent_id, None)
        await only_offers_from(rec, driver, other, agent_id)
        assert rec.latest("waits").state == tpb.TASK_RUNNING  # type: ignore[union-attr]
        assert (await drain_of(m, agent_id)).drain.state == opb.DRAINING  # type: ignore[union-attr]
        flag.touch()
        await rec.wait_state("waits", {tpb.TASK_FINISHED})
        drained = await wait_drain_state(m, agent_id, opb.DRAINED)
        assert drained.drain.drained_at >= drained.drain.since > 0


async def test_drain_with_a_deadline_kills_what_still_runs(cluster: LocalCluster) -> None:
    m = cluster.master_address
    rec = DrainRecorder()
    async with framework(m, rec) as driver:
        agent_id = await launch_on_first_offer(rec, driver, task("long", "sleep 60", grace=1))
        code, out, err = await aiomesos("agent", "drain", agent_id, "--deadline", "2s", "--wait", "--master", m)
        assert code == 0, (out, err)
        assert "DRAINING (deadline" in out and "DRAINED after" in out
        status = await rec.wait_state("long", {tpb.TASK_KILLED})
        assert status.reason == S.REASON_AGENT_DRAINING
        assert "draining" in status.message and "deadline" in status.message
        assert [d for d, _ in rec.draining] == [agent_id] and rec.draining[0][1] is not None
        (_, out, _), (_, table, _) = await concurrently(
            aiomesos("agents", "--master", m, "--json"), aiomesos("agents", "--master", m)
        )
        [row] = [a for a in json.loads(out) if a["id"] == agent_id]
        assert row["drain"]["state"] == "DRAINED"
        assert "DRAINED" in table


async def test_mark_gone_removes_the_agent_and_agent_up_resumes_offers(cluster: LocalCluster) -> None:
    m = cluster.master_address
    rec = DrainRecorder()
    async with framework(m, rec) as driver, OperatorClient(m) as client:
        first, second = sorted(a.agent_info.id for a in (await client.agents()).agents)
        # agent up: an empty agent is DRAINED at once, offered again once reactivated
        await client.drain_agent(second)
        await wait_drain_state(m, second, opb.DRAINED)
        await only_offers_from(rec, driver, first, second)
        code, out, err = await aiomesos("agent", "up", second, "--master", m)
        assert code == 0 and "reactivated" in out, err
        assert (await drain_of(m, second)).drain.state == opb.DRAIN_NONE  # type: ignore[union-attr]
        await only_offers_from(rec, driver, second, "none")
        code, out, err = await aiomesos("agent", "up", second, "--master", m)
        assert code == 2 and "not draining" in err
        # mark gone: removed, the daemon told to stop, frameworks hear it is lost
        hostname = await _hostname(m, first)
        gone = next(d for d in cluster.agent_daemons if f"{d.name}.local" == hostname)
        await client.drain_agent(first, 0, mark_gone=True)
        await eventually(lambda: _absent(m, first), what="agent gone")
        await eventually(lambda: not gone.alive, what="the gone agent's daemon to stop")
        assert gone.process is not None and gone.process.poll() == 2, gone.log_tail()
        assert "marked gone" in gone.log_tail()
        gone.signalled = True  # it stopped as told to: not a crash
        await eventually(lambda: first in rec.lost_agents, what="agent_lost")
        with pytest.raises(OperatorError, match="marked gone"):
            await client.drain_agent(first)


async def _hostname(master: str, agent_id: str) -> str:
    agent = await drain_of(master, agent_id)
    return agent.agent_info.hostname if agent is not None else ""


async def _absent(master: str, agent_id: str) -> bool:
    return await drain_of(master, agent_id) is None


async def test_bad_drain_calls(cluster: LocalCluster) -> None:
    m = cluster.master_address
    unknown, bad_deadline = await concurrently(
        aiomesos("agent", "drain", "no-such-agent", "--master", m),
        aiomesos("agent", "drain", "x", "--deadline", "tomorrow", "--master", m),
    )
    code, _, err = unknown
    assert code == 2 and "unknown agent" in err and len(err.strip().splitlines()) == 1
    code, _, err = bad_deadline
    assert code == 2 and "--deadline" in err and len(err.strip().splitlines()) == 1


async def test_a_drain_survives_a_master_restart(cluster: LocalCluster) -> None:
    m = cluster.master_address
    rec = DrainRecorder()
    async with framework(m, rec, failover_timeout=120) as driver:
        agent_id = await launch_on_first_offer(rec, driver, task("long", "sleep 60", grace=1))
        async with OperatorClient(m) as client:
            before = await client.drain_agent(agent_id, 300)
        await eventually(lambda: rec.draining, what="AGENT_DRAINING")
        await cluster.restart_master()
        m = cluster.master_address
        after = await wait_drain_state(m, agent_id, opb.DRAINING)
        assert after.drain.deadline == before.deadline and after.drain.since == before.since
        # told again by the new master once the agent is back with its task
        await eventually(lambda: len(rec.draining) >= 2, timeout=30, what="AGENT_DRAINING again after the restart")
        assert rec.latest("long").state == tpb.TASK_RUNNING  # type: ignore[union-attr]
        async with OperatorClient(m) as client:
            await client.drain_agent(agent_id, 0)  # bring the deadline forward: killed now
        status = await rec.wait_state("long", {tpb.TASK_KILLED})
        assert status.reason == S.REASON_AGENT_DRAINING
        await wait_drain_state(m, agent_id, opb.DRAINED)


async def test_a_placement_framework_moves_its_tasks_off_a_draining_agent(cluster: LocalCluster) -> None:
    m = cluster.master_address
    ends: list[tpb.TaskStatus] = []
    scheduler = PlacementScheduler(
        PlacementEngine(BinPacking("cpus")),
        on_update=lambda t, s: ends.append(s) if s.state in (tpb.TASK_KILLED, tpb.TASK_FAILED) else None,
    )
    scheduler.submit(*(TaskRequest(f"svc-{i}", cpus=0.5, mem=32, payload="sleep 120") for i in range(2)))
    done = asyncio.Event()
    info = rpb.FrameworkInfo(name="svc")
    runner = asyncio.create_task(run_framework(m, info, scheduler, until=done, timeout=120))
    try:
        await eventually(lambda: len(scheduler._where) == 2 and not scheduler.pending(), what="both placed")
        first = dict(scheduler._where)
        [busy] = set(first.values())  # bin packing: both on one agent
        async with OperatorClient(m) as client:
            drain = await client.drain_agent(busy, 60)

        def moved() -> bool:
            where = scheduler._where
            return len(where) == 2 and busy not in where.values() and scheduler.metrics.drain_migrations == 2

        await eventually(moved, timeout=30, what="both tasks relaunched on the other agent")
        assert time.time() < drain.deadline  # well before the deadline
        await wait_drain_state(m, busy, opb.DRAINED)
        assert ends == []  # the moves are not ends: on_update never heard a kill
    finally:
        done.set()
        await runner
