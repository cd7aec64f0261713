"""The run state machine of the jobs service, driven with plain times: arrays, retries and backoff, timeouts,
dropped tasks, gangs, workflows, stop, stale statuses, and its JSON round trip (the property test is in
test_job_run_more.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.frameworks.jobs.run import MAX_RELAUNCHES, Action, Kill, Launch, Run, TaskLaunch, retry_delay
from scheduler_sdk.frameworks.jobs.spec import JobSpec, RetryPolicy, StepSpec, TaskResources

REFUSED = tpb.TaskStatus.REASON_INVALID_OFFERS


def step(
    name: str = "job",
    *,
    count: int = 1,
    attempts: int = 0,
    backoff: float = 5.0,
    max_backoff: float = 300.0,
    timeout: float | None = None,
    gang: bool = False,
    depends_on: Sequence[str] = (),
    env: tuple[tuple[str, str], ...] = (),
    user: str = "",
    resources: TaskResources | None = None,
) -> StepSpec:
    return StepSpec(
        name=name,
        command="true",
        count=count,
        resources=resources or TaskResources(),
        retries=RetryPolicy(attempts, backoff, max_backoff),
        timeout=timeout,
        gang=gang,
        env=env,
        depends_on=tuple(depends_on),
        user=user,
    )


def batch(**kw: Any) -> JobSpec:
    return JobSpec(name="job", type="batch", steps=(step("job", **kw),), role="ml")


def workflow(*steps: StepSpec, on_failure: str = "fail") -> JobSpec:
    return JobSpec(name="wf", type="workflow", steps=steps, on_failure=on_failure)


def launched(actions: Sequence[Action]) -> list[TaskLaunch]:
    return [a.task for a in actions if isinstance(a, Launch)]


def kills(actions: Sequence[Action]) -> list[Kill]:
    return [a for a in actions if isinstance(a, Kill)]


def ids(actions: Sequence[Action]) -> list[str]:
    return [t.task_id for t in launched(actions)]


def report(run: Run, task_id: str, now: float, *states: int, **kw: Any) -> list[Action]:
    """Send each state in turn; the actions of all of them."""
    out: list[Action] = []
    for state in states:
        out += run.on_status(task_id, state, now, **kw)
    return out


def run_it(run: Run, task_id: str, now: float) -> None:
    assert report(run, task_id, now, tpb.TASK_STAGING, tpb.TASK_RUNNING, agent_id="a1", hostname="h1") == []


# -- batch: arrays, retries, backoff ----------------------------------------------------------------------------


def test_an_array_launches_count_tasks_with_their_index_in_the_environment() -> None:
    spec = batch(count=3, env=(("MODE", "fast"),), user="alice", resources=TaskResources(cpus=1, mem=512))
    run = Run("j1", "r1", spec, created_at=10.0)
    tasks = launched(run.start(11.0))
    assert [t.task_id for t in tasks] == ["j1.r1.job.0.0", "j1.r1.job.1.0", "j1.r1.job.2.0"]
    for i, t in enumerate(tasks):
        env = dict(t.env)
        assert env["AIOMESOS_TASK_INDEX"] == str(i) and env["MODE"] == "fast"
        assert (env["AIOMESOS_JOB"], env["AIOMESOS_RUN"], env["AIOMESOS_STEP"], env["AIOMESOS_ATTEMPT"]) == (
            "j1",
            "r1",
            "job",
            "0",
        )
        assert list(t.env) == sorted(t.env)
        assert (t.role, t.user, t.group, t.gang, t.gang_size, t.ready_at) == ("ml", "alice", "j1.r1.job", "", 0, 0.0)
        assert t.resources.cpus == 1 and (t.step, t.index, t.attempt) == ("job", i, 0)
    assert run.state == "running" and run.start(12.0) == []  # started once
    for t in tasks:
        run_it(run, t.task_id, 20.0)
        assert not run.done
        assert report(run, t.task_id, 30.0 + t.index, tpb.TASK_FINISHED, exit_code=0) == []
    assert (run.state, run.ended_at, run.step_state("job")) == ("succeeded", 32.0, "succeeded")
    assert [s.exit_code for s in run.slots()] == [0, 0, 0]


def test_a_failed_task_is_retried_after_its_backoff_then_succeeds() -> None:
    run = Run("j", "r", batch(attempts=2, backoff=5.0), 0.0)
    (first,) = ids(run.start(1.0))
    run_it(run, first, 2.0)
    (retry,) = launched(report(run, first, 3.0, tpb.TASK_FAILED, exit_code=3, message="boom"))
    assert (retry.task_id, retry.attempt, retry.ready_at) == ("j.r.job.0.1", 1, 8.0)
    assert dict(retry.env)["AIOMESOS_ATTEMPT"] == "1"
    (slot,) = run.slots()
    assert (slot.state, slot.retries, slot.exit_code) == ("queued", 1, None)
    (old,) = slot.attempts
    assert (old.task_id, old.state, old.exit_code, old.message) == (first, "TASK_FAILED", 3, "boom")
    assert (old.started_at, old.ended_at, old.agent_id, old.hostname) == (2.0, 3.0, "a1", "h1")
    run_it(run, retry.task_id, 9.0)
    report(run, retry.task_id, 10.0, tpb.TASK_FINISHED, exit_code=0)
    assert run.state == "succeeded" and slot.state == "succeeded"


def test_retries_exhausted_fail_the_slot_with_its_exit_code() -> None:
    run = Run("j", "r", batch(attempts=1, count=2), 0.0)
    a, b = ids(run.start(0.0))
    (a1,) = ids(report(run, a, 1.0, tpb.TASK_RUNNING, tpb.TASK_FAILED, exit_code=1))
    assert report(run, a1, 2.0, tpb.TASK_RUNNING, tpb.TASK_FAILED, exit_code=7, message="oom") == []
    slot_a, slot_b = run.slots()
    assert (slot_a.state, slot_a.exit_code, slot_a.message, len(slot_a.attempts)) == ("failed", 7, "oom", 1)
    assert run.step_state("job") == "failed" and not run.done  # b still runs
    report(run, b, 3.0, tpb.TASK_RUNNING, tpb.TASK_FINISHED, exit_code=0)
    assert (run.state, run.ended_at, slot_b.state) == ("failed", 3.0, "succeeded")


def test_backoff_doubles_for_each_retry_up_to_its_maximum() -> None:
    assert [retry_delay(5.0, 12.0, n) for n in range(1, 6)] == [5.0, 10.0, 12.0, 12.0, 12.0]
    run = Run("j", "r", batch(attempts=4, backoff=5.0, max_backoff=12.0), 0.0)
    (task,) = launched(run.start(0.0))
    waits = []
    for now in (100.0, 200.0, 300.0, 400.0):
        (task,) = launched(report(run, task.task_id, now, tpb.TASK_RUNNING, tpb.TASK_FAILED))
        waits.append(task.ready_at - now)
    assert waits == [5.0, 10.0, 12.0, 12.0]
    assert report(run, task.task_id, 500.0, tpb.TASK_FAILED) == [] and run.state == "failed"


# -- timeouts and dropped tasks ---------------------------------------------------------------------------------


def test_a_task_past_its_timeout_is_killed_saying_so_and_retried() -> None:
    run = Run("j", "r", batch(timeout=1800.0, attempts=1, backoff=1.0), 0.0)
    (task,) = ids(run.start(0.0))
    assert run.next_deadline() is None  # queued: the timeout counts from RUNNING
    report(run, task, 50.0, tpb.TASK_STAGING)
    assert run.tick(5000.0) == [] and run.next_deadline() is None
    report(run, task, 100.0, tpb.TASK_RUNNING, agent_id="a7")
    report(run, task, 150.0, tpb.TASK_RUNNING)  # a repeat does not move the start
    assert run.next_deadline() == 1900.0 and run.tick(1899.0) == []
    assert run.tick(1900.0) == [Kill(task, "a7", "timed out after 30m")]
    assert run.tick(1901.0) == [] and run.next_deadline() is None  # asked once
    (retry,) = launched(report(run, task, 1902.0, tpb.TASK_KILLED))
    assert retry.ready_at == 1903.0
    (old,) = run.slots()[0].attempts
    assert (old.state, old.message) == ("TASK_KILLED", "timed out after 30m")
    report(run, retry.task_id, 2000.0, tpb.TASK_RUNNING)
    assert run.tick(5600.0) == [Kill(retry.task_id, "", "timed out after 30m")]
    report(run, retry.task_id, 5601.0, tpb.TASK_KILLED)
    assert (run.state, run.slots()[0].message) == ("failed", "timed out after 30m")


def test_a_task_that_finishes_as_its_timeout_kill_lands_succeeded() -> None:
    run = Run("j", "r", batch(timeout=2.5), 0.0)
    (task,) = ids(run.start(0.0))
    report(run, task, 1.0, tpb.TASK_RUNNING)
    assert [k.reason for k in kills(run.tick(4.0))] == ["timed out after 2.5s"]
    report(run, task, 4.1, tpb.TASK_FINISHED)
    assert run.state == "succeeded"


def test_a_dropped_task_is_relaunched_without_using_a_retry_at_most_five_times() -> None:
    run = Run("j", "r", batch(attempts=0), 0.0)
    (task,) = ids(run.start(0.0))
    for n in range(MAX_RELAUNCHES):
        (again,) = launched(run.on_status(task, tpb.TASK_DROPPED, float(n), reason=REFUSED))
        assert (again.attempt, again.ready_at) == (n + 1, 0.0)
        task = again.task_id
    slot = run.slots()[0]
    assert (slot.retries, slot.relaunches) == (0, MAX_RELAUNCHES)
    assert run.on_status(task, tpb.TASK_DROPPED, 9.0) == []  # the sixth counts as a failure: none left
    assert (run.state, slot.state, slot.task_state) == ("failed", "failed", "TASK_DROPPED")


def test_a_launch_refused_before_running_is_free_but_the_same_reason_after_running_is_a_failure() -> None:
    run = Run("j", "r", batch(attempts=1), 0.0)
    (task,) = ids(run.start(0.0))
    (again,) = ids(run.on_status(task, tpb.TASK_LOST, 1.0, reason=REFUSED))
    assert run.slots()[0].retries == 0
    report(run, again, 2.0, tpb.TASK_RUNNING)
    (third,) = ids(run.on_status(again, tpb.TASK_LOST, 3.0, reason=REFUSED))
    assert run.slots()[0].retries == 1 and third.endswith(".2")
    assert run.on_status(third, tpb.TASK_ERROR, 4.0, reason=REFUSED) == []  # invalid: never free
    assert run.state == "failed"


def test_unreachable_is_not_an_end() -> None:
    run = Run("j", "r", batch(), 0.0)
    (task,) = ids(run.start(0.0))
    report(run, task, 1.0, tpb.TASK_RUNNING, tpb.TASK_UNREACHABLE, tpb.TASK_KILLING)
    assert (run.slots()[0].state, run.done, run.live_tasks()) == ("running", False, [(task, "")])
    report(run, task, 2.0, tpb.TASK_LOST)
    assert run.state == "failed"


# -- gangs ------------------------------------------------------------------------------------------------------


def gang_run(attempts: int) -> tuple[Run, list[str]]:
    run = Run("j", "r", batch(count=3, gang=True, attempts=attempts, backoff=4.0), 0.0)
    tasks = launched(run.start(0.0))
    assert {(t.gang, t.gang_size) for t in tasks} == {("j.r.job", 3)}
    for t in tasks:
        report(run, t.task_id, 1.0, tpb.TASK_RUNNING, agent_id=f"a{t.index}")
    return run, [t.task_id for t in tasks]


def test_a_gang_member_failing_kills_the_others_and_the_whole_gang_relaunches_together() -> None:
    run, (t0, t1, t2) = gang_run(attempts=1)
    actions = run.on_status(t1, tpb.TASK_FAILED, 10.0, exit_code=2)
    assert actions == [Kill(t0, "a0", "gang member 1 failed"), Kill(t2, "a2", "gang member 1 failed")]
    assert run.step_state("job") == "running" and not run.done
    assert report(run, t0, 11.0, tpb.TASK_KILLED) == []  # the gang relaunches once all have ended
    relaunch = launched(report(run, t2, 12.0, tpb.TASK_KILLED))
    assert [(t.index, t.attempt) for t in relaunch] == [(0, 1), (1, 1), (2, 1)]
    assert {t.ready_at for t in relaunch} == {16.0}  # one shared backoff
    assert [s.attempts[0].message for s in run.slots()] == ["gang member 1 failed", "", "gang member 1 failed"]
    for t in relaunch:
        report(run, t.task_id, 20.0, tpb.TASK_RUNNING, tpb.TASK_FINISHED)
    assert run.state == "succeeded"


def test_a_gang_relaunches_members_that_had_finished_and_fails_when_its_retries_are_out() -> None:
    run, (t0, t1, t2) = gang_run(attempts=0)
    report(run, t0, 5.0, tpb.TASK_FINISHED)
    assert kills(run.on_status(t1, tpb.TASK_FAILED, 6.0, exit_code=9)) == [Kill(t2, "a2", "gang member 1 failed")]
    assert run.step_state("job") == "failed" and not run.done
    assert report(run, t2, 7.0, tpb.TASK_KILLED) == []
    assert [(s.state, s.exit_code) for s in run.slots()] == [("succeeded", None), ("failed", 9), ("failed", None)]
    assert run.state == "failed"

    run, (t0, t1, t2) = gang_run(attempts=1)
    report(run, t0, 5.0, tpb.TASK_FINISHED)
    run.on_status(t1, tpb.TASK_FAILED, 6.0)
    assert [t.index for t in launched(report(run, t2, 7.0, tpb.TASK_KILLED))] == [0, 1, 2]  # 0 too


def test_a_dropped_gang_is_relaunched_whole_without_using_a_retry() -> None:
    run = Run("j", "r", batch(count=2, gang=True), 0.0)
    t0, t1 = ids(run.start(0.0))
    assert run.on_status(t0, tpb.TASK_DROPPED, 1.0, reason=REFUSED) == [Kill(t1, "", "gang member 0 failed")]
    actions = run.on_status(t1, tpb.TASK_KILLED, 2.0)  # the placement dropped the queued one
    assert [(t.index, t.attempt, t.ready_at) for t in launched(actions)] == [(0, 1, 0.0), (1, 1, 0.0)]
    assert [(s.retries, s.relaunches) for s in run.slots()] == [(0, 1), (0, 1)]


def test_a_gang_member_timing_out_fails_the_gang() -> None:
    run = Run("j", "r", batch(count=2, gang=True, timeout=60.0), 0.0)
    t0, t1 = ids(run.start(0.0))
    report(run, t0, 1.0, tpb.TASK_RUNNING, agent_id="a0")
    report(run, t1, 2.0, tpb.TASK_RUNNING, agent_id="a1")
    assert run.tick(61.5) == [Kill(t0, "a0", "timed out after 1m")]
    assert run.on_status(t0, tpb.TASK_KILLED, 62.0) == [Kill(t1, "a1", "gang member 0 failed")]
    report(run, t1, 63.0, tpb.TASK_KILLED)
    assert run.state == "failed" and run.slots()[0].message == "timed out after 1m"


# -- workflows --------------------------------------------------------------------------------------------------


def diamondless() -> list[StepSpec]:
    return [step("a"), step("b", depends_on=["a"]), step("c"), step("d", depends_on=["c"], count=2)]


def finish(run: Run, task_id: str, now: float) -> list[Action]:
    return report(run, task_id, now, tpb.TASK_RUNNING, tpb.TASK_FINISHED)


def test_a_workflow_launches_each_step_once_its_dependencies_succeeded() -> None:
    run = Run("w", "r", workflow(*diamondless()), 0.0)
    assert ids(run.start(0.0)) == ["w.r.a.0.0", "w.r.c.0.0"]
    assert [run.step_state(s) for s in "abcd"] == ["running", "waiting", "running", "waiting"]
    report(run, "w.r.a.0.0", 1.0, tpb.TASK_RUNNING)
    assert ids(report(run, "w.r.a.0.0", 2.0, tpb.TASK_FINISHED)) == ["w.r.b.0.0"]
    assert ids(finish(run, "w.r.c.0.0", 3.0)) == ["w.r.d.0.0", "w.r.d.1.0"]
    assert finish(run, "w.r.b.0.0", 4.0) == [] and finish(run, "w.r.d.0.0", 5.0) == []
    assert not run.done and run.step_state("d") == "running"
    finish(run, "w.r.d.1.0", 6.0)
    assert (run.state, [run.step_state(s) for s in "abcd"]) == ("succeeded", ["succeeded"] * 4)


def test_a_failed_step_is_retried_before_its_dependents_run() -> None:
    steps = [step("a", attempts=1, backoff=1.0), step("b", depends_on=["a"])]
    run = Run("w", "r", workflow(*steps), 0.0)
    run.start(0.0)
    assert ids(report(run, "w.r.a.0.0", 1.0, tpb.TASK_RUNNING, tpb.TASK_FAILED)) == ["w.r.a.0.1"]
    assert ids(finish(run, "w.r.a.0.1", 3.0)) == ["w.r.b.0.0"]


def test_on_failure_fail_cancels_every_step_not_started_and_lets_running_ones_end() -> None:
    run = Run("w", "r", workflow(*diamondless()), 0.0)
    run.start(0.0)
    assert report(run, "w.r.a.0.0", 1.0, tpb.TASK_RUNNING, tpb.TASK_FAILED, exit_code=1) == []
    assert [run.step_state(s) for s in "abcd"] == ["failed", "cancelled", "running", "cancelled"]
    assert not run.done
    assert finish(run, "w.r.c.0.0", 2.0) == []  # d stays cancelled
    assert (run.state, run.step_state("d")) == ("failed", "cancelled")


def test_on_failure_continue_cancels_only_the_dependents_and_runs_the_rest() -> None:
    steps = [*diamondless(), step("e", depends_on=["b"]), step("f", depends_on=["d", "e"]), step("g")]
    run = Run("w", "r", workflow(*steps, on_failure="continue"), 0.0)
    assert ids(run.start(0.0)) == ["w.r.a.0.0", "w.r.c.0.0", "w.r.g.0.0"]
    report(run, "w.r.a.0.0", 1.0, tpb.TASK_RUNNING, tpb.TASK_FAILED)
    assert [run.step_state(s) for s in "abcdefg"] == [
        "failed",
        "cancelled",
        "running",
        "waiting",
        "cancelled",
        "cancelled",
        "running",
    ]
    assert ids(finish(run, "w.r.c.0.0", 2.0)) == ["w.r.d.0.0", "w.r.d.1.0"]
    finish(run, "w.r.d.0.0", 3.0)
    finish(run, "w.r.d.1.0", 3.0)
    assert not run.done
    finish(run, "w.r.g.0.0", 4.0)
    assert (run.state, run.step_state("d"), run.step_state("f")) == ("failed", "succeeded", "cancelled")


# -- stop, stale statuses, reading ------------------------------------------------------------------------------


def test_stop_kills_live_tasks_stops_the_rest_and_ends_once_they_ended() -> None:
    run = Run("w", "r", workflow(step("a", count=2, attempts=3), step("b", depends_on=["a"])), 0.0)
    run.start(0.0)
    report(run, "w.r.a.0.0", 1.0, tpb.TASK_RUNNING, agent_id="x")
    actions = run.stop(2.0, "stopped by alice")
    assert actions == [Kill("w.r.a.0.0", "x", "stopped by alice"), Kill("w.r.a.1.0", "", "stopped by alice")]
    assert [s.state for s in run.slots()] == ["running", "queued", "stopped"] and not run.done
    assert run.stop(3.0) == [] and run.tick(99.0) == []
    assert report(run, "w.r.a.1.0", 3.5, tpb.TASK_KILLED) == []  # the placement dropped the queued one
    assert report(run, "w.r.a.0.0", 4.0, tpb.TASK_KILLED) == []  # no retry, b never starts
    assert (run.state, run.ended_at, run.step_state("a"), run.step_state("b")) == ("stopped", 4.0, "stopped", "stopped")
    assert run.stop(5.0) == []


def test_stop_before_start_ends_at_once() -> None:
    run = Run("j", "r", batch(count=2), 0.0)
    assert run.stop(1.0) == [] and run.state == "stopped" and run.start(2.0) == []


def test_statuses_for_old_attempts_unknown_tasks_and_repeats_are_ignored() -> None:
    run = Run("j", "r", batch(attempts=2), 0.0)
    (t0,) = ids(run.start(0.0))
    (t1,) = ids(report(run, t0, 1.0, tpb.TASK_RUNNING, tpb.TASK_FAILED))
    before = run.to_dict()
    for task_id, state in [
        (t0, tpb.TASK_RUNNING),
        (t0, tpb.TASK_FINISHED),
        (t0, tpb.TASK_FAILED),
        ("j.r.job.5.0", tpb.TASK_FAILED),
        ("j.r.job.0.9", tpb.TASK_FAILED),
        ("other.r.job.0.0", tpb.TASK_FAILED),
        ("j.r.nope.0.0", tpb.TASK_FAILED),
        ("", 0),
    ]:
        assert run.on_status(task_id, state, 2.0) == []
    assert run.to_dict() == before
    assert run.owns(t0) and run.owns(t1) and not run.owns("j.r.job.0.9") and not run.owns("j.r.job.1.0")
    finish(run, t1, 3.0)
    assert run.state == "succeeded"
    assert run.on_status(t1, tpb.TASK_FAILED, 4.0) == [] and run.state == "succeeded"
    assert run.slots()[0].state == "succeeded"


def test_waiting_reasons_live_tasks_and_launches_for_a_restart() -> None:
    run = Run("j", "r", batch(count=2), 0.0)
    t0, t1 = ids(run.start(0.0))
    run.waiting(t1, "no offers yet")
    run.waiting("j.r.job.0.7", "ignored")
    report(run, t0, 1.0, tpb.TASK_STAGING, agent_id="a1")
    assert run.live_tasks() == [(t0, "a1")]
    assert [t.task_id for t in run.queued()] == [t1]
    assert [s.why_waiting for s in run.slots()] == ["", "no offers yet"]
    launch = run.launch_for(t0)
    assert launch is not None and launch.task_id == t0 and run.launch_for("j.r.job.0.3") is None


# -- persistence ------------------------------------------------------------------------------------------------


def script(run: Run, reload: bool) -> list[object]:
    """A workflow with a retry, a gang and a timeout; with `reload`, the run goes through JSON after each step."""
    out: list[object] = []
    events: list[tuple[str, float]] = [
        ("start", 0.0),
        ("w.r.a.0.0", tpb.TASK_RUNNING),
        ("w.r.a.0.0", tpb.TASK_FAILED),
        ("w.r.a.0.1", tpb.TASK_RUNNING),
        ("tick", 40.0),
        ("w.r.a.0.1", tpb.TASK_KILLED),
        ("w.r.a.0.2", tpb.TASK_RUNNING),
        ("w.r.a.0.2", tpb.TASK_FINISHED),
        ("w.r.g.0.0", tpb.TASK_RUNNING),
        ("w.r.g.1.0", tpb.TASK_FAILED),
        ("w.r.g.0.0", tpb.TASK_KILLED),
        ("w.r.g.0.1", tpb.TASK_RUNNING),
        ("w.r.g.1.1", tpb.TASK_RUNNING),
        ("w.r.g.0.1", tpb.TASK_FINISHED),
        ("w.r.g.1.1", tpb.TASK_FINISHED),
    ]
    for n, (what, arg) in enumerate(events):
        now = float(n)
        if what == "start":
            out.append(run.start(now))
        elif what == "tick":
            out.append(run.tick(arg))
        else:
            out.append(run.on_status(what, int(arg), now, agent_id="ag"))
        if reload:
            data = json.loads(json.dumps(run.to_dict()))
            run = Run.from_dict(data, run.spec)
            assert run.to_dict() == data
        out.append((run.state, run.next_deadline(), run.live_tasks()))
    assert run.state == "succeeded"
    return out


def test_a_run_through_json_after_every_event_behaves_as_one_that_never_was() -> None:
    steps = (
        step("a", attempts=2, timeout=30.0, backoff=1.0),
        step("g", count=2, gang=True, attempts=1, depends_on=["a"]),
    )
    spec = workflow(*steps)
    assert script(Run("w", "r", spec, 0.0), reload=True) == script(Run("w", "r", spec, 0.0), reload=False)


def test_from_dict_refuses_slots_of_another_spec() -> None:
    data = Run("j", "r", batch(count=2), 0.0).to_dict()
    with pytest.raises(ValueError, match="slots"):
        Run.from_dict(data, batch(count=3))
