"""Agent drain in the master's core (mesos_master.drain): effects read from the outbox and the allocator."""

from __future__ import annotations

import pytest

from aiomesos.v1 import agent_pb2
from aiomesos.v1 import operator_pb2 as opb
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_master.cluster import CallError, UnknownIdError
from mesos_master.drain import drain_info
from mesos_master.errors import DeniedError, PreconditionError
from mesos_master.registry import MarkAgentGone, RegistryState, RemoveAgent, RemoveDrain, UpdateDrain
from tests.unit.mesos_master.test_cluster import AGENT_RES, E, M, P, S, World, events, messages, task, updates


@pytest.fixture
def w() -> World:
    return World()


def running(w: World, *task_ids: str) -> tuple[str, str, str]:
    """A framework with `task_ids` running on the one agent h1 (and a second, idle agent h2)."""
    fid = w.subscribe()
    aid = w.register("h1", "cpus:4;mem:4096")
    aid, _ = w.launch(fid, *task_ids)
    for task_id in task_ids:
        w.agent_update(aid, fid, task_id, tpb.TASK_RUNNING, uuid=task_id.encode())
    other = w.register("h2", "cpus:4;mem:4096")
    w.drain()
    return fid, aid, other


def offered_agents(w: World, fid: str) -> set[str]:
    w.master.revive(fid)
    return {o.agent_id for o in w.offers().get(fid, [])}


def test_drain_rescinds_the_agents_offers_and_stops_new_ones(w: World) -> None:
    fid = w.subscribe()
    aid = w.register("h1")
    [offer] = w.offers()[fid]
    w.master.drain_agent(aid, None, False)
    d = w.drain()
    [rescind] = events(d, fid, E.RESCIND)
    assert list(rescind.rescind.offer_ids) == [offer.id]
    assert offer.id not in w.master.offers
    assert not w.allocator._agents[aid].active  # the allocator keeps its books but offers nothing
    assert offered_agents(w, fid) == set()
    # Empty at once: drained, and written so.
    assert w.master.drains[aid].state == "DRAINED"
    assert [type(op) for op in d.writes] == [UpdateDrain, UpdateDrain]
    assert d.writes[-1].state == "DRAINED"  # type: ignore[union-attr]


def test_drain_without_deadline_waits_for_the_tasks_to_end(w: World) -> None:
    fid, aid, other = running(w, "t1")
    w.master.drain_agent(aid, None, False)
    d = w.drain()
    [event] = events(d, fid, E.AGENT_DRAINING)
    assert event.agent_draining.agent_id == aid and not event.agent_draining.HasField("deadline")
    assert offered_agents(w, fid) == {other}
    w.clock.now += 10_000
    w.master.tick()
    d = w.drain()
    assert messages(d, aid, M.KILL_TASKS) == []  # no deadline: never killed
    assert w.master.drains[aid].state == "DRAINING"
    w.agent_update(aid, fid, "t1", tpb.TASK_FINISHED, uuid=b"end")
    w.master.tick()
    d = w.drain()
    assert w.master.drains[aid].state == "DRAINED"
    assert drain_info(w.master.drains[aid]).state == opb.DRAINED
    [write] = [op for op in d.writes if isinstance(op, UpdateDrain)]
    assert write.state == "DRAINED" and write.drained_at == w.clock.now
    assert aid not in offered_agents(w, fid)  # drained: still no offers


def test_at_the_deadline_what_still_runs_is_killed_with_the_drain_reason(w: World) -> None:
    fid, aid, _ = running(w, "t1", "t2")
    w.agent_update(aid, fid, "t2", tpb.TASK_FINISHED, uuid=b"t2-end")
    w.master.drain_agent(aid, 30.0, False)
    [event] = events(w.drain(), fid, E.AGENT_DRAINING)
    assert event.agent_draining.HasField("deadline") and event.agent_draining.deadline == w.clock.now + 30
    w.clock.now += 29
    w.master.tick()
    assert messages(w.drain(), aid, M.KILL_TASKS) == []
    w.clock.now += 1
    w.master.tick()
    [kills] = messages(w.drain(), aid, M.KILL_TASKS)
    [kill] = kills.kill_tasks.tasks
    assert (kill.framework_id, kill.task_id) == (fid, "t1")  # only the non-terminal one
    assert kill.reason == S.REASON_AGENT_DRAINING and "draining" in kill.message
    w.master.tick()
    assert messages(w.drain(), aid, M.KILL_TASKS) == []  # once per attachment
    w.agent_update(aid, fid, "t1", tpb.TASK_KILLED, uuid=b"t1-end", reason=S.REASON_AGENT_DRAINING)
    w.master.tick()
    assert w.master.drains[aid].state == "DRAINED"


def test_a_connected_framework_hears_at_once_and_again_when_it_resubscribes(w: World) -> None:
    fid, aid, _ = running(w, "t1")
    bystander = w.subscribe("other")
    w.drain()
    w.master.drain_agent(aid, 60.0, False)
    d = w.drain()
    assert len(events(d, fid, E.AGENT_DRAINING)) == 1
    assert events(d, bystander, E.AGENT_DRAINING) == []  # no task there
    w.master.disconnect_framework(fid)
    w.master.subscribe(w.master.frameworks[fid].info)
    d = w.drain()
    kinds = [e.type for e in events(d, fid)]
    assert kinds.index(E.SUBSCRIBED) < kinds.index(E.AGENT_DRAINING)


def test_a_draining_agent_that_reattaches_stays_out_of_offers_and_is_killed_again(w: World) -> None:
    fid, aid, other = running(w, "t1")
    w.master.drain_agent(aid, 5.0, False)
    w.clock.now += 5
    w.master.tick()
    assert messages(w.drain(), aid, M.KILL_TASKS)
    w.master.disconnect_agent(aid)
    reported = agent_pb2.AgentTask(framework_id=fid, task=task("t1", agent_id=aid), state=tpb.TASK_RUNNING)
    w.register("h1", "cpus:4;mem:4096", aid=aid, tasks=[reported])
    d = w.drain()
    assert len(events(d, fid, E.AGENT_DRAINING)) == 1
    assert offered_agents(w, fid) == {other}
    w.master.tick()
    [kills] = messages(w.drain(), aid, M.KILL_TASKS)
    assert kills.kill_tasks.tasks[0].reason == S.REASON_AGENT_DRAINING


def test_mark_gone_removes_the_drained_agent_for_good(w: World) -> None:
    fid, aid, _ = running(w, "t1")
    w.master.drain_agent(aid, 0.0, True)
    assert messages(w.drain(), aid, M.KILL_TASKS)  # deadline 0: killed at once
    w.agent_update(aid, fid, "t1", tpb.TASK_KILLED, uuid=b"t1-end", reason=S.REASON_AGENT_DRAINING)
    w.master.tick()
    d = w.drain()
    [shutdown] = messages(d, aid, M.SHUTDOWN)
    assert "marked gone" in shutdown.shutdown.message
    assert aid not in w.master.agents and aid not in w.master.drains
    assert [type(op) for op in d.writes][-2:] == [RemoveAgent, MarkAgentGone]
    with pytest.raises(DeniedError, match="marked gone"):
        w.register("h1", aid=aid)
    with pytest.raises(UnknownIdError, match="marked gone"):
        w.master.drain_agent(aid, None, False)


def test_reactivate_ends_the_drain_and_offers_resume(w: World) -> None:
    fid, aid, other = running(w, "t1")
    w.master.drain_agent(aid, 60.0, False)
    w.drain()
    w.master.reactivate_agent(aid)
    d = w.drain()
    assert d.writes == [RemoveDrain(aid)]
    assert aid not in w.master.drains
    assert offered_agents(w, fid) == {aid, other}
    w.clock.now += 120
    w.master.tick()
    assert messages(w.drain(), aid, M.KILL_TASKS) == []  # the deadline went with the drain


def test_bad_drain_calls_are_clear_errors(w: World) -> None:
    aid = w.register("h1")
    with pytest.raises(UnknownIdError, match="unknown agent 'nope'"):
        w.master.drain_agent("nope", None, False)
    with pytest.raises(UnknownIdError):
        w.master.reactivate_agent("nope")
    with pytest.raises(PreconditionError, match="not draining"):
        w.master.reactivate_agent(aid)
    for bad in (-1.0, float("nan"), float("inf"), 1e12):
        with pytest.raises(CallError, match="deadline_seconds"):
            w.master.drain_agent(aid, bad, False)
    assert w.master.drains == {}


def test_draining_again_replaces_the_deadline(w: World) -> None:
    fid, aid, _ = running(w, "t1")
    w.master.drain_agent(aid, None, False)
    w.drain()
    since = w.master.drains[aid].since
    w.clock.now += 1
    w.master.drain_agent(aid, 10.0, True)
    drain = w.master.drains[aid]
    assert (drain.since, drain.deadline, drain.mark_gone) == (since, w.clock.now + 10, True)
    [event] = events(w.drain(), fid, E.AGENT_DRAINING)
    assert event.agent_draining.deadline == w.clock.now + 10


def recovered_world(deadline: float | None, state: str = "DRAINING") -> tuple[World, str]:
    from aiomesos.v1 import resources_pb2 as rpb

    aid = "S1"
    info = rpb.AgentInfo(id=aid, hostname="h1", resources=P(AGENT_RES).to_proto())
    registry = RegistryState(agents={aid: info}, drains={aid: UpdateDrain(aid, state, deadline, False, 900.0)})
    return World(recovered=registry), aid


@pytest.mark.parametrize("deadline", [500.0, 5_000.0])
def test_a_drain_survives_a_master_restart(deadline: float) -> None:
    w, aid = recovered_world(deadline)
    fid = w.subscribe()
    w.master.tick()
    d = w.drain()
    assert w.master.drains[aid].state == "DRAINING"  # not re-attached yet: its tasks are unknown
    reported = agent_pb2.AgentTask(framework_id=fid, task=task("t1", agent_id=aid), state=tpb.TASK_RUNNING)
    w.register("h1", aid=aid, tasks=[reported])
    d = w.drain()
    [event] = events(d, fid, E.AGENT_DRAINING)
    assert event.agent_draining.deadline == deadline
    assert offered_agents(w, fid) == set()
    w.master.tick()
    kills = messages(w.drain(), aid, M.KILL_TASKS)
    past = deadline < w.clock.now
    assert bool(kills) == past  # a deadline that passed while the master was down: killed at once
    if not past:
        w.clock.now = deadline
        w.master.tick()
        assert messages(w.drain(), aid, M.KILL_TASKS)


def test_a_drained_agent_recovered_from_the_registry_stays_drained() -> None:
    w, aid = recovered_world(None, state="DRAINED")
    fid = w.subscribe()
    w.register("h1", aid=aid)
    w.master.tick()
    w.drain()
    assert w.master.drains[aid].state == "DRAINED"
    assert offered_agents(w, fid) == set()
    w.master.reactivate_agent(aid)
    assert offered_agents(w, fid) == {aid}


def test_gone_agents_are_recovered_and_refused() -> None:
    w = World(recovered=RegistryState(gone={"S9": 100.0}))
    with pytest.raises(DeniedError):
        w.register("h9", aid="S9")


def test_an_update_after_drain_reaches_the_framework(w: World) -> None:
    fid, aid, _ = running(w, "t1")
    w.master.drain_agent(aid, 0.0, False)
    w.drain()
    w.agent_update(aid, fid, "t1", tpb.TASK_KILLED, uuid=b"k", reason=S.REASON_AGENT_DRAINING)
    [status] = updates(w.drain(), fid)
    assert status.reason == S.REASON_AGENT_DRAINING
