"""The run state machine, continued: kills that wait for their answer (gang, stop, re-sent kills), the end states
a master or agent may report (unknown, reconciliation, drain, unauthorized), persistence in pieces (a header
and one row per slot, written only when it changed), and a property test over all of it."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.frameworks.jobs.run import MAX_RELAUNCHES, Action, Kill, Run
from scheduler_sdk.frameworks.jobs.spec import JobSpec
from scheduler_sdk.frameworks.jobs.tasks import KILL_GANG, KILL_STOP
from tests.unit.scheduler_sdk.test_job_run import batch, ids, kills, launched, report, run_it, step, workflow

RECONCILED = tpb.TaskStatus.REASON_RECONCILIATION
DRAINING = tpb.TaskStatus.REASON_AGENT_DRAINING

# -- kills wait for the killed task's end ------------------------------------------------------------------------


def test_a_queued_gang_member_killed_for_the_gang_stays_live_until_its_end_comes() -> None:
    run = Run("j", "r", batch(count=2, gang=True, attempts=1, backoff=0.0), 0.0)
    t0, t1 = ids(run.start(0.0))
    report(run, t0, 1.0, tpb.TASK_RUNNING)
    actions = run.on_status(t0, tpb.TASK_FAILED, 2.0)  # t1's first update has not come: it may run already
    assert actions == [Kill(t1, "", "gang member 0 failed")]  # nothing relaunched while t1 may run
    slot1 = run.slots()[1]
    assert (slot1.state, slot1.killing, slot1.task_id) == ("queued", KILL_GANG, t1)
    assert run.kills_outstanding() == [Kill(t1, "", "gang member 0 failed")]
    relaunch = launched(run.on_status(t1, tpb.TASK_KILLED, 3.0))  # the placement dropped it: now the gang goes
    assert [(t.index, t.attempt, t.ready_at) for t in relaunch] == [(0, 1, 3.0), (1, 1, 3.0)]
    assert run.kills_outstanding() == []


def test_a_queued_gang_member_that_ran_after_all_is_killed_before_the_gang_relaunches() -> None:
    run = Run("j", "r", batch(count=2, gang=True, attempts=1, backoff=0.0), 0.0)
    t0, t1 = ids(run.start(0.0))
    run.on_status(t0, tpb.TASK_FAILED, 1.0)
    assert report(run, t1, 2.0, tpb.TASK_STAGING, tpb.TASK_RUNNING, agent_id="a1") == []  # it was launched
    assert run.kills_outstanding() == [Kill(t1, "a1", "gang member 0 failed")]
    assert run.live_tasks() == [(t1, "a1")]
    assert len(launched(run.on_status(t1, tpb.TASK_KILLED, 3.0))) == 2


def test_a_gang_failing_for_good_waits_for_its_queued_members_end() -> None:
    run = Run("j", "r", batch(count=3, gang=True), 0.0)
    t0, t1, t2 = ids(run.start(0.0))
    assert kills(run.on_status(t0, tpb.TASK_FAILED, 1.0, exit_code=4)) == [
        Kill(t1, "", "gang member 0 failed"),
        Kill(t2, "", "gang member 0 failed"),
    ]
    assert not run.done and run.step_state("job") == "failed"
    assert report(run, t1, 2.0, tpb.TASK_KILLED) == [] and not run.done
    assert report(run, t2, 3.0, tpb.TASK_KILLED) == []
    assert (run.state, run.ended_at, [s.state for s in run.slots()]) == ("failed", 3.0, ["failed"] * 3)


def test_stop_kills_queued_tasks_and_they_end_stopped_when_their_end_comes() -> None:
    run = Run("j", "r", batch(count=2, attempts=3), 0.0)
    t0, t1 = ids(run.start(0.0))
    report(run, t0, 1.0, tpb.TASK_RUNNING, agent_id="x")
    assert run.stop(2.0, "stopped by bob") == [Kill(t0, "x", "stopped by bob"), Kill(t1, "", "stopped by bob")]
    assert [(s.state, s.killing) for s in run.slots()] == [("running", KILL_STOP), ("queued", KILL_STOP)]
    assert sorted(run.kills_outstanding(), key=lambda k: k.task_id) == [
        Kill(t0, "x", "stopped by bob"),
        Kill(t1, "", "stopped by bob"),
    ]
    assert run.stop(3.0) == []  # asked once
    assert report(run, t1, 4.0, tpb.TASK_KILLED) == [] and not run.done
    assert report(run, t0, 5.0, tpb.TASK_KILLED) == []
    assert (run.state, run.ended_at, [s.state for s in run.slots()]) == ("stopped", 5.0, ["stopped"] * 2)
    assert run.kills_outstanding() == []


def test_stop_while_a_gang_comes_down_keeps_its_kills_and_relaunches_nothing() -> None:
    run = Run("j", "r", batch(count=2, gang=True, attempts=2), 0.0)
    t0, t1 = ids(run.start(0.0))
    run.on_status(t0, tpb.TASK_FAILED, 1.0)
    assert run.stop(2.0) == []  # t1's kill is out already
    assert run.kills_outstanding() == [Kill(t1, "", "gang member 0 failed")]
    assert report(run, t1, 3.0, tpb.TASK_KILLED) == []
    assert (run.state, [s.state for s in run.slots()]) == ("stopped", ["stopped"] * 2)


def test_kills_outstanding_names_every_kill_not_yet_answered() -> None:
    run = Run("j", "r", batch(count=3, timeout=10.0), 0.0)
    t0, t1, _ = ids(run.start(0.0))
    assert run.kills_outstanding() == []
    report(run, t0, 1.0, tpb.TASK_RUNNING, agent_id="a0")
    report(run, t1, 5.0, tpb.TASK_RUNNING, agent_id="a1")
    assert run.tick(11.0) == [Kill(t0, "a0", "timed out after 10s")]
    assert run.kills_outstanding() == [Kill(t0, "a0", "timed out after 10s")]
    back = Run.from_dict(json.loads(json.dumps(run.to_dict())), run.spec)  # after a restart too
    assert back.kills_outstanding() == [Kill(t0, "a0", "timed out after 10s")]
    report(run, t0, 12.0, tpb.TASK_KILLED)
    assert run.kills_outstanding() == []


# -- the end states a master or agent may report -------------------------------------------------------------------


def test_task_unknown_ends_a_live_task_as_a_failure_that_is_retried() -> None:
    run = Run("j", "r", batch(attempts=1), 0.0)
    (t0,) = ids(run.start(0.0))
    run_it(run, t0, 1.0)
    (again,) = launched(run.on_status(t0, tpb.TASK_UNKNOWN, 2.0, message="unknown task"))
    slot = run.slots()[0]
    assert (again.attempt, slot.retries, slot.attempts[0].state) == (1, 1, "TASK_UNKNOWN")
    run_it(run, again.task_id, 10.0)
    assert run.on_status(again.task_id, tpb.TASK_UNKNOWN, 11.0) == []
    assert (run.state, slot.state, slot.task_state) == ("failed", "failed", "TASK_UNKNOWN")


@pytest.mark.parametrize("state", [tpb.TASK_LOST, tpb.TASK_GONE, tpb.TASK_UNKNOWN, tpb.TASK_DROPPED])
def test_a_reconciliation_answer_for_a_task_that_never_ran_relaunches_it_free(state: int) -> None:
    run = Run("j", "r", batch(attempts=1), 0.0)
    (t0,) = ids(run.start(0.0))
    report(run, t0, 1.0, tpb.TASK_STAGING, agent_id="a1")
    (again,) = launched(run.on_status(t0, state, 2.0, reason=RECONCILED))
    slot = run.slots()[0]
    assert (again.attempt, again.ready_at, slot.retries, slot.relaunches) == (1, 0.0, 0, 1)
    if state == tpb.TASK_DROPPED:
        return  # dropped is free whenever it comes
    run_it(run, again.task_id, 3.0)  # it ran: the same answer now is a failure (retried)
    (third,) = launched(run.on_status(again.task_id, state, 4.0, reason=RECONCILED))
    assert (third.attempt, slot.retries, slot.relaunches) == (2, 1, 1)


def test_reconciliation_relaunches_are_bounded_like_drops() -> None:
    run = Run("j", "r", batch(), 0.0)
    (task,) = ids(run.start(0.0))
    for _ in range(MAX_RELAUNCHES):
        (task,) = ids(run.on_status(task, tpb.TASK_LOST, 1.0, reason=RECONCILED))
    assert run.on_status(task, tpb.TASK_LOST, 2.0, reason=RECONCILED) == [] and run.state == "failed"


def test_a_task_killed_by_an_agent_drain_is_relaunched_free() -> None:
    run = Run("j", "r", batch(), 0.0)  # no retries at all
    (t0,) = ids(run.start(0.0))
    run_it(run, t0, 1.0)
    (again,) = launched(run.on_status(t0, tpb.TASK_KILLED, 2.0, reason=DRAINING, message="agent drained"))
    slot = run.slots()[0]
    assert (again.attempt, again.ready_at, slot.retries, slot.state) == (1, 0.0, 0, "queued")
    assert (slot.attempts[0].state, slot.attempts[0].message) == ("TASK_KILLED", "agent drained")
    run_it(run, again.task_id, 3.0)
    report(run, again.task_id, 4.0, tpb.TASK_FINISHED)
    assert run.state == "succeeded"


def test_a_gang_member_killed_by_a_drain_relaunches_the_whole_gang_free() -> None:
    run = Run("j", "r", batch(count=3, gang=True, backoff=9.0), 0.0)  # no retries
    t0, t1, t2 = ids(run.start(0.0))
    for t in (t0, t1):
        report(run, t, 1.0, tpb.TASK_RUNNING, agent_id=f"a{t[-3]}")
    actions = run.on_status(t1, tpb.TASK_KILLED, 2.0, reason=DRAINING)
    assert actions == [Kill(t0, "a0", "gang member 1 failed"), Kill(t2, "", "gang member 1 failed")]
    assert report(run, t2, 3.0, tpb.TASK_KILLED) == []
    relaunch = launched(report(run, t0, 4.0, tpb.TASK_KILLED))
    assert [(t.index, t.attempt, t.ready_at) for t in relaunch] == [(0, 1, 0.0), (1, 1, 0.0), (2, 1, 0.0)]
    assert [s.retries for s in run.slots()] == [0, 0, 0] and not run.done


def test_a_timeout_kill_answered_by_a_drain_is_still_a_timeout() -> None:
    run = Run("j", "r", batch(timeout=5.0), 0.0)
    (t0,) = ids(run.start(0.0))
    run_it(run, t0, 1.0)
    run.tick(6.0)
    assert run.on_status(t0, tpb.TASK_KILLED, 7.0, reason=DRAINING) == []
    assert (run.state, run.slots()[0].message) == ("failed", "timed out after 5s")


@pytest.mark.parametrize("reason", [tpb.TaskStatus.REASON_TASK_UNAUTHORIZED, tpb.TaskStatus.REASON_TASK_INVALID])
def test_an_unauthorized_or_invalid_task_fails_for_good_without_retries(reason: int) -> None:
    run = Run("j", "r", batch(attempts=3), 0.0)
    (t0,) = ids(run.start(0.0))
    assert run.on_status(t0, tpb.TASK_ERROR, 1.0, reason=reason, message="user root not allowed") == []
    slot = run.slots()[0]
    assert (run.state, slot.state, slot.retries, slot.message) == ("failed", "failed", 0, "user root not allowed")


def test_an_unauthorized_gang_member_fails_the_gang_for_good() -> None:
    run = Run("j", "r", batch(count=2, gang=True, attempts=3), 0.0)
    t0, t1 = ids(run.start(0.0))
    run.on_status(t0, tpb.TASK_ERROR, 1.0, reason=tpb.TaskStatus.REASON_TASK_UNAUTHORIZED)
    assert report(run, t1, 2.0, tpb.TASK_KILLED) == []
    assert (run.state, [s.retries for s in run.slots()]) == ("failed", [0, 0])


# -- persistence in pieces --------------------------------------------------------------------------------------


def test_take_dirty_hands_out_only_the_slots_an_event_changed() -> None:
    run = Run("j", "r", batch(count=1000, attempts=1), 0.0)
    tasks = ids(run.start(0.0))
    assert len(run.take_dirty()) == 1000 and run.take_dirty() == []  # new slots, then none
    report(run, tasks[7], 1.0, tpb.TASK_RUNNING, agent_id="a")
    (row,) = run.take_dirty()
    assert (row["step"], row["index"], row["state"]) == ("job", 7, "running")
    assert report(run, tasks[7], 1.5, tpb.TASK_RUNNING, agent_id="a") == [] and run.take_dirty() == []  # a repeat
    launched(report(run, tasks[7], 2.0, tpb.TASK_FAILED))  # a retry: its attempts grew
    (row,) = run.take_dirty()
    assert (row["index"], row["attempt"], len(row["attempts"])) == (7, 1, 1)
    run.waiting(tasks[9], "no offers yet")
    assert [r["index"] for r in run.take_dirty()] == [9]
    run.waiting(tasks[9], "no offers yet")
    run.on_status("j.r.job.5.3", tpb.TASK_FAILED, 3.0)  # not ours: changes nothing
    assert run.take_dirty() == []
    report(run, tasks[3], 4.0, tpb.TASK_RUNNING)
    run.mark_clean()
    assert run.take_dirty() == []


def test_take_dirty_hands_out_the_whole_gang_when_a_member_fails() -> None:
    run = Run("j", "r", workflow(step("a", count=500), step("g", count=4, gang=True, attempts=1)), 0.0)
    gang = [t for t in ids(run.start(0.0)) if ".g." in t]
    run.mark_clean()
    run.on_status(gang[2], tpb.TASK_FAILED, 1.0)
    assert sorted((r["step"], r["index"]) for r in run.take_dirty()) == [("g", i) for i in range(4)]


def test_a_header_and_every_slot_in_any_order_make_the_run_again() -> None:
    spec = workflow(step("a", count=30, attempts=2), step("b", count=3, gang=True, depends_on=["a"]))
    run = Run("w", "r", spec, 0.0)
    tasks = ids(run.start(0.0))
    for n, t in enumerate(tasks):
        report(run, t, 1.0, tpb.TASK_RUNNING, agent_id="x")
        report(run, t, 2.0, tpb.TASK_FAILED if n % 3 else tpb.TASK_FINISHED, exit_code=n)
    header = run.header()
    assert "slots" not in header and header["state"] == "running"
    rows = json.loads(json.dumps([s.to_dict() for s in run.slots()]))
    random.Random(7).shuffle(rows)
    back = Run.from_parts(json.loads(json.dumps(header)), rows, spec)
    assert back.to_dict() == run.to_dict() == {**header, "slots": [s.to_dict() for s in run.slots()]}
    assert Run.from_dict(run.to_dict(), spec).to_dict() == run.to_dict()


def test_a_store_kept_from_take_dirty_alone_stays_the_run() -> None:
    spec = workflow(step("a", count=4, attempts=1, timeout=5.0), step("g", count=2, gang=True, depends_on=["a"]))
    run = Run("w", "r", spec, 0.0)
    rows: dict[tuple[str, int], dict[str, object]] = {}

    def save() -> None:
        rows.update({(r["step"], r["index"]): r for r in run.take_dirty()})
        assert Run.from_parts(run.header(), list(rows.values()), spec).to_dict() == run.to_dict()

    todo = ids(run.start(0.0))
    save()
    now = 0.0
    while todo:
        now += 1.0
        task = todo.pop(0)
        todo += ids(report(run, task, now, tpb.TASK_RUNNING))
        save()
        todo += ids(run.tick(now + 10.0)) + ids(report(run, task, now, tpb.TASK_KILLED))
        save()
    assert run.done


@pytest.mark.parametrize(
    "rows",
    [
        lambda rows: rows[:-1],  # one missing
        lambda rows: [*rows, rows[0]],  # one twice
        lambda rows: [*rows[:-1], {**rows[-1], "index": 9}],  # one not of the spec
    ],
)
def test_from_parts_refuses_slots_that_are_not_the_specs(rows: object) -> None:
    run = Run("j", "r", batch(count=3), 0.0)
    slots = [s.to_dict() for s in run.slots()]
    with pytest.raises(ValueError, match="slots"):
        Run.from_parts(run.header(), rows(slots), run.spec)  # type: ignore[operator]


# -- properties -------------------------------------------------------------------------------------------------

STATES = [
    tpb.TASK_STAGING,
    tpb.TASK_RUNNING,
    tpb.TASK_FINISHED,
    tpb.TASK_FAILED,
    tpb.TASK_KILLED,
    tpb.TASK_DROPPED,
    tpb.TASK_LOST,
    tpb.TASK_GONE,
    tpb.TASK_UNKNOWN,
    tpb.TASK_UNREACHABLE,
    tpb.TASK_ERROR,
]
ENDS = frozenset(STATES) - {tpb.TASK_STAGING, tpb.TASK_RUNNING, tpb.TASK_UNREACHABLE}
FATAL = (tpb.TaskStatus.REASON_TASK_UNAUTHORIZED, tpb.TaskStatus.REASON_TASK_INVALID)
REASONS = [0, 0, 0, RECONCILED, DRAINING, *FATAL, tpb.TaskStatus.REASON_INVALID_OFFERS]


@st.composite
def workflows(draw: st.DrawFn) -> JobSpec:
    n = draw(st.integers(1, 4))
    steps = []
    for i in range(n):
        deps = draw(st.lists(st.sampled_from([f"s{j}" for j in range(i)]), unique=True)) if i else []
        steps.append(
            step(
                f"s{i}",
                count=draw(st.integers(1, 3)),
                attempts=draw(st.integers(0, 2)),
                gang=draw(st.booleans()),
                timeout=draw(st.sampled_from([None, 5.0])),
                backoff=1.0,
                depends_on=deps,
            )
        )
    return workflow(*steps, on_failure=draw(st.sampled_from(["fail", "continue"])))


class Checked:
    """A run, what it launched and a store kept from its pieces, checking each launch as it comes."""

    def __init__(self, spec: JobSpec) -> None:
        self.run = Run("w", "r", spec, 0.0)
        self.seen: set[tuple[str, int, int]] = set()
        self.outstanding: list[str] = []  # launched, not yet answered with a terminal state
        self.old: list[str] = []
        self.rows: dict[tuple[str, int], dict[str, Any]] = {}
        self.fatal: set[str] = set()  # steps a task of which was refused for good

    def take(self, actions: list[Action]) -> None:
        for t in launched(actions):
            key = (t.step, t.index, t.attempt)
            assert key not in self.seen, f"{key} launched twice"
            self.seen.add(key)
            if t.attempt:  # never a new attempt while the one before may still run
                before = f"w.r.{t.step}.{t.index}.{t.attempt - 1}"
                assert before in self.old and before not in self.outstanding, f"{t.task_id} before {before} ended"
            deps = self.run.spec.step(t.step).depends_on
            assert all(self.run.step_state(d) == "succeeded" for d in deps), f"{t.step} before {deps}"
            self.outstanding.append(t.task_id)
        assert {k.task_id for k in self.run.kills_outstanding()} <= set(self.outstanding)
        self.rows.update({(r["step"], r["index"]): r for r in self.run.take_dirty()})
        assert [self.rows[(s.step, s.index)] for s in self.run.slots()] == self.run.to_dict()["slots"]

    def send(self, pick: int, state: int, now: float, reason: int = 0) -> None:
        pool = self.outstanding if pick >= 0 or not self.old else self.old
        if not pool:
            return
        task_id = pool[abs(pick) % len(pool)]
        if pool is self.outstanding and state in ENDS:
            self.outstanding.remove(task_id)
            self.old.append(task_id)
            if state == tpb.TASK_ERROR and reason in FATAL:
                self.fatal.add(task_id.split(".")[2])
        self.take(self.run.on_status(task_id, state, now, exit_code=1, reason=reason))

    def reload(self, seed: int) -> None:
        """Through JSON, from the header and the stored rows in any order."""
        rows = json.loads(json.dumps(list(self.rows.values())))
        random.Random(seed).shuffle(rows)
        back = Run.from_parts(json.loads(json.dumps(self.run.header())), rows, self.run.spec)
        assert back.to_dict() == self.run.to_dict()
        self.run = back
        self.take([])


events = st.lists(
    st.one_of(
        st.tuples(st.just("status"), st.integers(-3, 20), st.sampled_from(STATES), st.sampled_from(REASONS)),
        st.tuples(st.just("tick"), st.integers(0, 10), st.just(0), st.just(0)),
        st.tuples(st.just("stop"), st.just(0), st.just(0), st.just(0)),
        st.tuples(st.just("reload"), st.integers(0, 9), st.just(0), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(workflows(), events, st.lists(st.booleans(), min_size=1, max_size=50))
def test_no_double_launch_no_early_step_no_early_attempt_and_the_run_always_ends(
    spec: JobSpec, script: list[tuple[str, int, int, int]], outcomes: list[bool]
) -> None:
    c = Checked(spec)
    c.take(c.run.start(0.0))
    now = 0.0
    for what, a, b, reason in script:
        now += 1.0
        if what == "status":
            c.send(a, b, now, reason)
        elif what == "tick":
            now += a
            c.take(c.run.tick(now))
        elif what == "stop" and len(c.seen) % 3 == 0:  # now and then
            c.take(c.run.stop(now))
        elif what == "reload":
            c.reload(a)
    # every launched task now ends, one after another: finished or failed as drawn; the run must end
    for n in range(2000):
        if not c.outstanding:
            break
        now += 1.0
        c.send(0, tpb.TASK_FINISHED if outcomes[n % len(outcomes)] else tpb.TASK_FAILED, now)
    assert not c.outstanding
    assert c.run.done and c.run.ended_at is not None
    assert c.run.live_tasks() == [] and c.run.next_deadline() is None and c.run.kills_outstanding() == []
    assert all(s.ended for s in c.run.slots())
    launched_steps = {key[0] for key in c.seen}
    for s in c.run.slots():  # cancelled: only what never started; failed: only with every retry used (or refused)
        if s.step in launched_steps:
            assert s.state != "cancelled"
        else:
            assert s.state in (("stopped", "cancelled") if c.run.state == "stopped" else ("cancelled",))
        assert s.state != "failed" or s.retries == spec.step(s.step).retries.attempts or s.step in c.fatal
    succeeded = all(c.run.step_state(s.name) == "succeeded" for s in spec.steps)
    assert (c.run.state == "succeeded") == succeeded
