"""Reconciliation that never lies: after a master restart (or while an agent is away) the master answers nothing
for a task it cannot know yet, and answers once the agent re-attaches, is marked unreachable or is removed; a
terminal state is final. Effects are read from the outbox, as in test_cluster."""

from __future__ import annotations

import pytest

from aiomesos.v1 import agent_pb2
from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_master import reconciliation
from mesos_master.records import PendingReconciliations
from mesos_master.registry import RegistryState
from tests.unit.mesos_master.test_cluster import AGENT_RES, M, P, S, World, messages, task, updates
from tests.unit.mesos_master.test_cluster import Call as C

AWARE = rpb.FrameworkInfo.Capability(type=rpb.FrameworkInfo.Capability.PARTITION_AWARE)


def restarted(*, aware: bool = False, agents: tuple[str, ...] = ("S1", "S2")) -> tuple[World, str]:
    """A master just restarted: agents and the framework "F1" known from the registry, no task known; the
    framework has resubscribed (the agents have not re-attached)."""
    infos = {a: rpb.AgentInfo(id=a, hostname=a.lower(), resources=P(AGENT_RES).to_proto()) for a in agents}
    fw = rpb.FrameworkInfo(id="F1", name="fw", failover_timeout=60, capabilities=[AWARE] if aware else [])
    w = World(recovered=RegistryState(agents=infos, frameworks={"F1": fw}))
    w.subscribe("fw", fid="F1", capabilities=[AWARE] if aware else [])
    w.drain()
    return w, "F1"


def running(fid: str, *task_ids: str, state: int = tpb.TASK_RUNNING) -> list[agent_pb2.AgentTask]:
    return [agent_pb2.AgentTask(framework_id=fid, task=task(t), state=state) for t in task_ids]


def reconcile(w: World, fid: str, *items: tuple[str, str]) -> None:
    w.master.reconcile(fid, [C.Reconcile.Task(task_id=t, agent_id=a) for t, a in items])


def answers(w: World, fid: str) -> list[tuple[str, int, int]]:
    return [(s.task_id, s.state, s.reason) for s in updates(w.drain(), fid)]


def _kills(d: object, aid: str) -> list[tuple[str, str]]:
    return [(k.framework_id, k.task_id) for m in messages(d, aid, M.KILL_TASKS) for k in m.kill_tasks.tasks]  # type: ignore[arg-type]


def _acks(d: object, aid: str) -> list[tuple[str, bytes]]:
    return [(a.task_id, a.uuid) for m in messages(d, aid, M.ACKNOWLEDGE) for a in m.acknowledge.acknowledgements]  # type: ignore[arg-type]


# ============================================================================================ after a restart
@pytest.mark.parametrize("aware", [False, True])
def test_no_answer_for_a_task_on_a_recovering_agent_until_it_reattaches(aware: bool) -> None:
    w, fid = restarted(aware=aware)
    reconcile(w, fid, ("t1", "S1"), ("t9", "S1"))
    w.master.reconcile(fid, [])  # implicit: what the master knows, nothing yet
    assert answers(w, fid) == []  # the bug: TASK_LOST "task unknown to the master" for a running task
    assert len(w.master.pending_reconciliations) == 2
    w.register("s1", aid="S1", tasks=running(fid, "t1"))
    d = w.drain()
    got = {s.task_id: s for s in updates(d, fid)}
    assert (got["t1"].state, got["t1"].reason) == (tpb.TASK_RUNNING, S.REASON_RECONCILIATION)
    gone = tpb.TASK_GONE if aware else tpb.TASK_LOST
    assert (got["t9"].state, got["t9"].reason) == (gone, S.REASON_RECONCILIATION)
    assert "re-attached without" in got["t9"].message and got["t9"].agent_id == "S1"
    assert len(w.master.pending_reconciliations) == 0
    # Once attached, an answer comes at once.
    reconcile(w, fid, ("t1", "S1"), ("t8", "S1"))
    assert answers(w, fid) == [("t1", tpb.TASK_RUNNING, S.REASON_RECONCILIATION), ("t8", gone, S.REASON_RECONCILIATION)]


def test_a_task_that_ended_while_the_master_was_down_is_answered_with_its_end() -> None:
    w, fid = restarted()
    reconcile(w, fid, ("t1", "S1"))
    w.register("s1", aid="S1", tasks=running(fid, "t1", state=tpb.TASK_FINISHED))
    assert answers(w, fid) == [("t1", tpb.TASK_FINISHED, S.REASON_RECONCILIATION)]


@pytest.mark.parametrize("aware", [False, True])
def test_reregister_timeout_answers_unreachable_or_lost_with_the_reason(aware: bool) -> None:
    w, fid = restarted(aware=aware, agents=("S1",))
    reconcile(w, fid, ("t1", "S1"))
    w.clock.now += w.master.agent_reregister_timeout - 1
    w.master.tick()
    assert answers(w, fid) == []
    w.clock.now += 1
    w.master.tick()
    [st] = updates(w.drain(), fid)
    assert st.task_id == "t1" and st.state == (tpb.TASK_UNREACHABLE if aware else tpb.TASK_LOST)
    assert st.reason == S.REASON_AGENT_REMOVED and st.source == S.SOURCE_MASTER
    assert "did not re-attach to the new master" in st.message, st.message
    # From now on the answer is the unreachable agent's, at once.
    reconcile(w, fid, ("t1", "S1"))
    assert [s for _, s, _ in answers(w, fid)] == [tpb.TASK_UNREACHABLE if aware else tpb.TASK_LOST]


def test_removal_of_the_agent_answers_what_waited_for_it() -> None:
    w, fid = restarted(aware=True)
    reconcile(w, fid, ("t1", "S1"))
    w.master.remove_agent("S1", S.REASON_AGENT_REMOVED_BY_OPERATOR, "removed by the operator")
    [st] = updates(w.drain(), fid)
    assert (st.state, st.reason, st.message) == (
        tpb.TASK_GONE,
        S.REASON_AGENT_REMOVED_BY_OPERATOR,
        "removed by the operator",
    )


def test_without_an_agent_id_the_answer_waits_for_every_recovering_agent() -> None:
    w, fid = restarted()
    reconcile(w, fid, ("t1", ""), ("t2", ""))
    w.register("s1", aid="S1", tasks=running(fid, "t1"))
    # t1 turned up: answered; t2 might still be on S2.
    assert answers(w, fid) == [("t1", tpb.TASK_RUNNING, S.REASON_RECONCILIATION)]
    w.clock.now += w.master.agent_reregister_timeout
    w.master.tick()  # S2 never comes back: nobody can have t2 now
    assert answers(w, fid) == [("t2", tpb.TASK_LOST, S.REASON_RECONCILIATION)]


def test_without_an_agent_id_a_task_found_on_the_last_agent_is_answered_with_its_state() -> None:
    w, fid = restarted(aware=True)
    reconcile(w, fid, ("t2", ""), ("t3", ""))
    w.register("s1", aid="S1")
    assert answers(w, fid) == []
    w.register("s2", aid="S2", tasks=running(fid, "t2"))
    got = answers(w, fid)
    assert sorted(got) == [
        ("t2", tpb.TASK_RUNNING, S.REASON_RECONCILIATION),
        ("t3", tpb.TASK_UNKNOWN, S.REASON_RECONCILIATION),
    ]


def test_reconcile_after_the_agents_register_is_answered_at_once() -> None:
    """REGISTER racing RECONCILE: whichever comes first, the answer is the agent's truth."""
    w, fid = restarted(agents=("S1",))
    w.register("s1", aid="S1", tasks=running(fid, "t1"))
    w.drain()
    reconcile(w, fid, ("t1", "S1"), ("t1", ""))
    assert answers(w, fid) == [("t1", tpb.TASK_RUNNING, S.REASON_RECONCILIATION)] * 2


def test_status_update_of_a_task_the_new_master_learns_from_its_agent_reaches_the_framework() -> None:
    w, fid = restarted(agents=("S1",))
    w.register("s1", aid="S1", tasks=running(fid, "t1"))
    w.drain()
    w.agent_update("S1", fid, "t1", tpb.TASK_FINISHED, b"u1")
    assert answers(w, fid) == [("t1", tpb.TASK_FINISHED, S.REASON_NONE)]


def test_kill_of_a_task_on_a_recovering_agent_is_delivered_when_the_task_turns_up() -> None:
    w, fid = restarted()
    w.master.kill(fid, C.Kill(task_id="t1", agent_id="S1"))
    w.master.kill(fid, C.Kill(task_id="t9", agent_id="S1"))
    assert answers(w, fid) == []  # not TASK_LOST: it may be running
    w.register("s1", aid="S1", tasks=running(fid, "t1"))
    d = w.drain()
    assert _kills(d, "S1") == [(fid, "t1")]
    assert {(s.task_id, s.state) for s in updates(d, fid)} == {("t1", tpb.TASK_RUNNING), ("t9", tpb.TASK_LOST)}
    assert w.master.frameworks[fid].tasks["t1"].kill_requested


def test_a_disconnecting_framework_drops_what_it_waited_for() -> None:
    w, fid = restarted()
    reconcile(w, fid, ("t1", "S1"), ("t2", ""))
    w.master.disconnect_framework(fid)
    assert len(w.master.pending_reconciliations) == 0
    w.subscribe("fw", fid=fid)
    w.drain()
    w.register("s1", aid="S1", tasks=running(fid, "t1"))
    assert answers(w, fid) == []  # it reconciles again now that it is back


def test_teardown_drops_what_the_framework_waited_for() -> None:
    w, fid = restarted()
    reconcile(w, fid, ("t1", "S1"))
    w.master.teardown(fid)
    assert len(w.master.pending_reconciliations) == 0


def test_pending_requests_are_bounded_per_framework(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconciliation, "MAX_PENDING_RECONCILIATIONS", 2)
    w, fid = restarted()
    reconcile(w, fid, ("t1", "S1"), ("t1", "S1"), ("t2", "S1"), ("t3", "S1"))  # t1 twice counts once; t3: over
    assert len(w.master.pending_reconciliations) == 2
    w.register("s1", aid="S1")
    assert sorted(t for t, _, _ in answers(w, fid)) == ["t1", "t2"]


def test_pending_reconciliations_bookkeeping() -> None:
    p = PendingReconciliations()
    assert p.add("S1", ("F", "a"), False, 3) and p.add("S1", ("F", "a"), True, 3) and p.add("", ("F", "b"), False, 3)
    assert p.add("S2", ("G", "c"), False, 3) and len(p) == 3
    assert p.take_one("", ("F", "b")) is False and p.take_one("", ("F", "b")) is None
    p.drop_framework("G")
    assert p.take("S1") == {("F", "a"): True} and len(p) == 0 and p.by_agent == {} and not p.per_framework


# ============================================================================================ an agent away
def test_no_answer_for_an_unknown_task_on_a_disconnected_agent_until_it_is_back() -> None:
    w = World()
    aid = w.register()
    fid = w.subscribe()
    w.master.disconnect_agent(aid)
    w.drain()
    reconcile(w, fid, ("t1", aid))
    assert answers(w, fid) == []
    w.register(aid=aid)
    assert answers(w, fid) == [("t1", tpb.TASK_LOST, S.REASON_RECONCILIATION)]


def test_reconciliation_of_a_task_back_from_unreachable_is_not_stale() -> None:
    w = World()
    aid = w.register()
    fid = w.master.subscribe(rpb.FrameworkInfo(name="aware", capabilities=[AWARE]))
    w.launch(fid, "a1")
    w.agent_update(aid, fid, "a1", tpb.TASK_RUNNING, b"u1")
    w.master.disconnect_agent(aid)
    w.clock.now += w.master.agent_unreachable_timeout
    w.master.tick()
    w.drain()
    w.register(aid=aid, tasks=running(fid, "a1"))
    w.drain()
    reconcile(w, fid, ("a1", aid))
    [st] = updates(w.drain(), fid)
    assert st.state == tpb.TASK_RUNNING and "unreachable" not in st.message, st.message
    assert "reachable again" in st.message


# ============================================================================================ terminal is final
def test_nothing_reaches_the_framework_after_a_terminal_state() -> None:
    w = World()
    aid = w.register()
    fid = w.subscribe()
    w.launch(fid, "t1")
    w.agent_update(aid, fid, "t1", tpb.TASK_RUNNING, b"u1")
    w.agent_update(aid, fid, "t1", tpb.TASK_FINISHED, b"u2")
    w.drain()
    w.agent_update(aid, fid, "t1", tpb.TASK_RUNNING, b"u1")  # an old update, resent
    w.agent_update(aid, fid, "t1", tpb.TASK_FAILED, b"u3")  # another end
    d = w.drain()
    assert updates(d, fid) == []
    assert _acks(d, aid) == [("t1", b"u1"), ("t1", b"u3")]  # the master acknowledges, nothing lingers
    w.agent_update(aid, fid, "t1", tpb.TASK_FINISHED, b"u2")  # the end itself, resent: its framework acks it
    assert answers(w, fid) == [("t1", tpb.TASK_FINISHED, S.REASON_NONE)]
    w.master.acknowledge(fid, [tpb.Acknowledgement(agent_id=aid, task_id="t1", uuid=b"u2")])
    w.drain()
    assert "t1" not in w.master.frameworks[fid].tasks
    w.agent_update(aid, fid, "t1", tpb.TASK_FINISHED, b"u2")  # acknowledged, and yet resent
    d = w.drain()
    assert updates(d, fid) == [] and _acks(d, aid) == [("t1", b"u2")]


def test_a_task_reported_lost_is_not_resurrected_by_its_agent() -> None:
    w = World()
    aid = w.register()
    fid = w.subscribe()
    w.launch(fid, "t1")
    w.agent_update(aid, fid, "t1", tpb.TASK_RUNNING, b"u1")
    w.master.disconnect_agent(aid)
    w.drain()
    w.register(aid=aid)  # re-attached without it: TASK_LOST
    assert answers(w, fid) == [("t1", tpb.TASK_LOST, S.REASON_AGENT_RESTARTED)]
    w.master.disconnect_agent(aid)
    w.register(aid=aid, tasks=running(fid, "t1"))  # and now it has it again
    d = w.drain()
    assert updates(d, fid) == [] and _kills(d, aid) == [(fid, "t1")]
    w.agent_update(aid, fid, "t1", tpb.TASK_KILLED, b"k")
    d = w.drain()
    assert updates(d, fid) == [] and _acks(d, aid) == [("t1", b"k")]
    reconcile(w, fid, ("t1", aid))
    assert [s for _, s, _ in answers(w, fid)] == [tpb.TASK_LOST]


@pytest.mark.parametrize("aware", [False, True])
def test_an_agent_back_after_its_reregister_timeout_keeps_what_reconciliation_said(aware: bool) -> None:
    w, fid = restarted(aware=aware, agents=("S1",))
    reconcile(w, fid, ("t1", "S1"))
    w.clock.now += w.master.agent_reregister_timeout
    w.master.tick()
    told = tpb.TASK_UNREACHABLE if aware else tpb.TASK_LOST
    assert [s for _, s, _ in answers(w, fid)] == [told]
    w.register("s1", aid="S1", tasks=running(fid, "t1"))
    d = w.drain()
    assert updates(d, fid) == []
    if aware:  # not over: the task is back, as reconciliation says now
        assert _kills(d, "S1") == []
        w.master.reconcile(fid, [])
        assert answers(w, fid) == [("t1", tpb.TASK_RUNNING, S.REASON_RECONCILIATION)]
        return
    # TASK_LOST was the last word: killed, its updates end at the master, and it stays lost.
    assert _kills(d, "S1") == [(fid, "t1")]
    w.agent_update("S1", fid, "t1", tpb.TASK_KILLED, b"k")
    d = w.drain()
    assert updates(d, fid) == [] and _acks(d, "S1") == [("t1", b"k")]
    reconcile(w, fid, ("t1", "S1"))
    w.master.reconcile(fid, [])
    assert [s for _, s, _ in answers(w, fid)] == [tpb.TASK_LOST]


def test_an_end_the_agent_reports_at_its_reattach_still_reaches_the_framework_with_its_update() -> None:
    """The report at REGISTER says the task is over; the update that says how (exit code) follows, and is news."""
    w = World()
    aid = w.register()
    fid = w.subscribe()
    w.launch(fid, "t1")
    w.master.disconnect_agent(aid)
    w.register(aid=aid, tasks=running(fid, "t1", state=tpb.TASK_FAILED))
    w.drain()
    w.agent_update(aid, fid, "t1", tpb.TASK_RUNNING, b"u1")  # not acknowledged before the agent went away
    w.agent_update(aid, fid, "t1", tpb.TASK_FAILED, b"u2", exit_code=3)
    d = w.drain()
    assert [(s.state, s.uuid) for s in updates(d, fid)] == [(tpb.TASK_RUNNING, b"u1"), (tpb.TASK_FAILED, b"u2")]
    assert _acks(d, aid) == []  # the framework acknowledges them
    assert w.master.frameworks[fid].tasks["t1"].state == tpb.TASK_FAILED


def test_reconciliation_never_runs_ahead_of_the_updates_the_framework_has_yet_to_hear() -> None:
    """The agent re-attaches saying t1 FINISHED, with RUNNING still unacknowledged in its stream (Mesos'
    status_update_state): reconciliation answers RUNNING, not FINISHED, until the framework has heard the end, so
    it never hears FINISHED and then RUNNING."""
    w = World()
    aid = w.register()
    fid = w.subscribe()
    w.launch(fid, "t1")
    w.master.disconnect_agent(aid)
    report = running(fid, "t1", state=tpb.TASK_FINISHED)
    report[0].status_update_state = tpb.TASK_RUNNING
    w.register(aid=aid, tasks=report)
    w.drain()
    reconcile(w, fid, ("t1", aid))
    assert answers(w, fid) == [("t1", tpb.TASK_RUNNING, tpb.TaskStatus.REASON_RECONCILIATION)]
    w.agent_update(aid, fid, "t1", tpb.TASK_RUNNING, b"u1")
    w.agent_update(aid, fid, "t1", tpb.TASK_FINISHED, b"u2")
    w.drain()
    reconcile(w, fid, ("t1", aid))
    assert answers(w, fid) == [("t1", tpb.TASK_FINISHED, tpb.TaskStatus.REASON_RECONCILIATION)]


def test_a_report_with_nothing_unacknowledged_answers_its_state() -> None:
    w = World()
    aid = w.register()
    fid = w.subscribe()
    w.launch(fid, "t1")
    w.master.disconnect_agent(aid)
    w.register(aid=aid, tasks=running(fid, "t1"))
    w.drain()
    reconcile(w, fid, ("t1", aid))
    assert answers(w, fid) == [("t1", tpb.TASK_RUNNING, tpb.TaskStatus.REASON_RECONCILIATION)]


def test_a_launch_rejected_while_its_reconciliation_waits_has_one_terminal_answer() -> None:
    """After a restart the framework asks about t1 on S2 (still away: no answer yet), then launches t1 with an
    offer of the old master (TASK_DROPPED): when S2 comes back without t1, the framework must not hear a second,
    different terminal state (TASK_LOST) for it. Seen in bench.chaos (after_terminal)."""
    w, fid = restarted()
    reconcile(w, fid, ("t1", "S2"))
    assert answers(w, fid) == []
    w.accept(fid, ["stale-offer"], [task("t1", "cpus:1;mem:128")])
    [(task_id, state, _)] = answers(w, fid)
    assert (task_id, state) == ("t1", tpb.TASK_DROPPED)
    w.register(aid="S2", tasks=[])
    assert [a for a in answers(w, fid) if a[0] == "t1"] == []
