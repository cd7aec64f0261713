"""The service run state machine, driven with plain times: the first deployment, health, restarts with backoff and
crash loops, failures forgotten, lost/gone/dropped/drained tasks, fatal refusals, drains, scaling and stop (the
rollouts are in test_service_run_rollout.py, streams and persistence in test_service_run_stream.py). `Sim` plays
the placement and the agents: it runs what was launched and answers kills when told."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.frameworks.jobs.run import Run
from scheduler_sdk.frameworks.jobs.service_run import ServiceRun
from scheduler_sdk.frameworks.jobs.spec import (
    HealthCheckSpec,
    JobSpec,
    RestartPolicy,
    StepSpec,
    TaskResources,
    UpdatePolicy,
)
from scheduler_sdk.frameworks.jobs.tasks import Action, Kill, Launch, Message, Revert, TaskLaunch

HTTP = HealthCheckSpec(type="http", path="/health")
RESTART = RestartPolicy(backoff=1.0, max_backoff=60.0, reset_after=60.0, crash_loop=3)
UPDATE = UpdatePolicy(max_parallel=1, min_healthy_time=10.0, healthy_deadline=300.0)
RES = TaskResources(ports=1)


def service(
    instances: int = 3,
    *,
    command: str = "serve v1",
    health: HealthCheckSpec | None = HTTP,
    restart: RestartPolicy = RESTART,
    update: UpdatePolicy = UPDATE,
    name: str = "web",
) -> JobSpec:
    step = StepSpec(name=name, command=command, count=instances, resources=RES, health_check=health)
    return JobSpec(name=name, type="service", steps=(step,), role="web", restart=restart, update=update)


def stream(
    *stages: tuple[str, int],
    command: str = "work",
    update: UpdatePolicy = UPDATE,
    lifecycle: str = "perpetual",
) -> JobSpec:
    steps = tuple(StepSpec(name=n, command=f"{command} {n}", count=c, resources=RES) for n, c in stages)
    return JobSpec(name="wc", type="stream", steps=steps, restart=RESTART, update=update, lifecycle=lifecycle)


class Sim:
    """Placement and agents for a ServiceRun: `run_queued` runs what was launched (STAGING, RUNNING with a port),
    `answer_kills` ends what was killed; `check` is called after every event."""

    def __init__(self, run: ServiceRun, check: Callable[[ServiceRun], None] | None = None) -> None:
        self.run = run
        self.check = check
        self.queued: dict[str, TaskLaunch] = {}  # launched, not yet running
        self.kills: list[Kill] = []
        self.messages: list[Message] = []
        self.reverts: list[Revert] = []
        self.launched: list[TaskLaunch] = []
        self.port = 31000
        self.events = 0

    def apply(self, actions: Sequence[Action]) -> list[Action]:
        for a in actions:
            if isinstance(a, Launch):
                self.queued[a.task.task_id] = a.task
                self.launched.append(a.task)
            elif isinstance(a, Kill):
                self.kills.append(a)
            elif isinstance(a, Message):
                self.messages.append(a)
            elif isinstance(a, Revert):
                self.reverts.append(a)
        self.events += 1
        if self.check is not None:
            self.check(self.run)
        return list(actions)

    def status(self, task_id: str, state: int, now: float, **kw: Any) -> list[Action]:
        if state != tpb.TASK_STAGING and state != tpb.TASK_RUNNING:
            self.queued.pop(task_id, None)
        return self.apply(self.run.on_status(task_id, state, now, **kw))

    def start(self, task_id: str, now: float, *, agent: str = "a0", healthy: bool | None = True) -> None:
        """The queued task `task_id` runs on `agent` (host "h-<agent>") with a new port."""
        self.queued.pop(task_id)
        self.port += 1
        where: dict[str, Any] = {"agent_id": agent, "hostname": f"h-{agent}", "ports": (self.port,)}
        self.apply(self.run.on_status(task_id, tpb.TASK_STAGING, now, **where))
        self.apply(self.run.on_status(task_id, tpb.TASK_RUNNING, now, healthy=healthy, **where))

    def run_queued(self, now: float, *, healthy: bool | None = True, agents: int = 3) -> list[str]:
        """Every queued task whose backoff is over runs (on agents a0..a<agents-1>, by index)."""
        ready = [t for t in self.queued.values() if t.ready_at <= now]
        for t in ready:
            self.start(t.task_id, now, agent=f"a{t.index % agents}", healthy=healthy)
        return [t.task_id for t in ready]

    def answer_kills(self, now: float) -> int:
        kills, self.kills = self.kills, []
        for kill in kills:
            self.status(kill.task_id, tpb.TASK_KILLED, now, reason=tpb.TaskStatus.REASON_TASK_KILLED_DURING_LAUNCH)
        return len(kills)

    def tick(self, now: float) -> list[Action]:
        return self.apply(self.run.tick(now))

    def settle(self, now: float, *, step: float = 1.0, limit: float = 10_000.0) -> float:
        """Run, answer and tick until the latest deployment is over (or `limit`); the time then."""
        end = now + limit
        while now < end:
            self.run_queued(now)
            self.answer_kills(now)
            self.tick(now)
            dep = self.run.deployment()
            if dep is not None and not dep.active and not self.kills and not self.queued:
                return now
            now += step
        raise AssertionError(f"not settled by {end}: {self.run.deployment()}")


def started(spec: JobSpec, now: float = 0.0, **kw: Any) -> tuple[ServiceRun, Sim]:
    run = ServiceRun("web" if spec.type == "service" else "wc", "1", spec, now)
    sim = Sim(run, **kw)
    sim.apply(run.start(now))
    return run, sim


def steady(spec: JobSpec) -> tuple[ServiceRun, Sim, float]:
    """A run of `spec` whose first deployment succeeded: every instance healthy."""
    run, sim = started(spec)
    now = sim.settle(0.0)
    assert run.deployment() is not None and run.deployment().state == "succeeded"  # type: ignore[union-attr]
    return run, sim, now


def slot_of(run: ServiceRun, index: int, step: str = "web") -> Any:
    return next(s for s in run.slots() if s.step == step and s.index == index)


# -- the first version ------------------------------------------------------------------------------------------


def test_the_first_version_launches_every_instance_at_once_and_succeeds_once_all_are_healthy_long_enough() -> None:
    run, sim = started(service(3))
    assert run.state == "running" and len(sim.queued) == 3
    launch = sim.launched[0]
    env = dict(launch.env)
    assert env["AIOMESOS_VERSION"] == "1" and env["AIOMESOS_STEP"] == "web" and env["AIOMESOS_TASK_INDEX"] == "0"
    assert launch.health_check == HTTP and launch.lifecycle == "perpetual" and launch.version == 1
    assert launch.group == "web.1.web" and launch.role == "web" and launch.gang == ""
    dep = run.deployment()
    assert dep is not None and (dep.version, dep.from_version, dep.state) == (1, 0, "running")
    sim.run_queued(5.0)
    assert run.healthy_count() == 3 and run.wanted_count() == 3
    assert [s.ports for s in run.endpoints()] == [[31001], [31002], [31003]]
    assert run.next_deadline() == 15.0  # healthy for min_healthy_time (10s)
    sim.tick(14.9)
    assert dep.state == "running" and dep.healthy == 0
    sim.tick(15.0)
    assert (dep.state, dep.healthy, dep.placed, dep.wanted) == ("succeeded", 3, 3, 3)
    assert run.stable_versions() == {1} and run.next_deadline() is None


def test_without_a_health_check_an_instance_is_healthy_once_running() -> None:
    run, sim = started(service(1, health=None))
    sim.run_queued(1.0, healthy=None)
    assert run.healthy_count() == 1 and slot_of(run, 0).healthy_since == 1.0


def test_with_a_health_check_an_instance_is_healthy_only_when_its_status_says_so() -> None:
    run, sim = started(service(1))
    (task,) = sim.run_queued(1.0, healthy=None)
    assert run.healthy_count() == 0 and slot_of(run, 0).healthy is None
    sim.status(task, tpb.TASK_RUNNING, 2.0, healthy=True)
    assert run.healthy_count() == 1 and slot_of(run, 0).healthy_since == 2.0
    sim.status(task, tpb.TASK_RUNNING, 3.0, healthy=False)
    assert run.healthy_count() == 0 and run.endpoints() == [] and slot_of(run, 0).healthy_since is None


def test_a_first_version_never_healthy_fails_at_its_deadline_with_nothing_to_revert_to() -> None:
    run, sim = started(service(2, update=UpdatePolicy(healthy_deadline=60.0, auto_revert=True)))
    sim.run_queued(1.0, healthy=False)
    assert run.next_deadline() == 60.0
    sim.tick(60.0)
    dep = run.deployment()
    assert dep is not None and dep.state == "failed" and "not healthy within 1m" in dep.message
    assert "no stable version" in dep.message and sim.reverts == [] and run.stable_versions() == set()
    assert run.state == "running" and len(run.slots()) == 2  # the instances go on


# -- restarts ---------------------------------------------------------------------------------------------------


def test_a_failed_instance_is_relaunched_with_backoff_and_shown_crash_looping() -> None:
    run, sim, now = steady(service(2))
    delays = []
    for n in range(1, 6):
        task = slot_of(run, 0).task_id
        actions = sim.status(task, tpb.TASK_FAILED, now, exit_code=1)
        (launch,) = [a.task for a in actions if isinstance(a, Launch)]
        assert (launch.index, launch.attempt, launch.version) == (0, n, 1)
        delays.append(launch.ready_at - now)
        slot = slot_of(run, 0)
        assert slot.failures == n and slot.state == "queued"
        assert run.crash_looping(slot) == (n >= 3)
        if n >= 3:
            assert slot.why_waiting.startswith(f"crash-looping: {n} failures in a row; restarting in")
        now = launch.ready_at
        sim.run_queued(now)
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert slot_of(run, 1).failures == 0 and slot_of(run, 1).attempt == 0


def test_a_crash_looping_instance_keeps_saying_so_beside_the_placements_reason() -> None:
    run, sim, now = steady(service(1))
    for n in range(3):
        if n:
            now += 100.0
            sim.run_queued(now)
        sim.status(slot_of(run, 0).task_id, tpb.TASK_FAILED, now)
    slot = slot_of(run, 0)
    run.waiting(slot.task_id, "no agent has 4 cpus")
    assert slot.why_waiting == "crash-looping: 3 failures in a row; no agent has 4 cpus"


def test_an_instance_keeps_few_earlier_attempts() -> None:
    run, sim, now = steady(service(1, restart=RestartPolicy(backoff=0.0, max_backoff=0.0)))
    for _ in range(25):
        sim.status(slot_of(run, 0).task_id, tpb.TASK_FAILED, now)
        sim.run_queued(now)
    slot = slot_of(run, 0)
    assert slot.attempt == 25 and len(slot.attempts) == 10 and slot.attempts[-1].task_id == "web.1.web.0.24"


def test_failures_are_forgotten_once_healthy_for_reset_after() -> None:
    run, sim, now = steady(service(1))
    sim.status(slot_of(run, 0).task_id, tpb.TASK_FAILED, now)
    now += 1.0
    sim.run_queued(now)
    assert slot_of(run, 0).failures == 1
    assert run.next_deadline() == now + 60.0
    sim.tick(now + 59.0)
    assert slot_of(run, 0).failures == 1
    sim.tick(now + 60.0)
    assert slot_of(run, 0).failures == 0 and run.next_deadline() is None


def test_a_service_task_that_finishes_or_is_killed_unhealthy_has_failed() -> None:
    run, sim, now = steady(service(2))
    sim.status(slot_of(run, 0).task_id, tpb.TASK_FINISHED, now, exit_code=0)
    killed = tpb.TaskStatus.REASON_TASK_HEALTH_CHECK_STATUS_UPDATED
    sim.status(slot_of(run, 1).task_id, tpb.TASK_KILLED, now, reason=killed)
    assert [s.failures for s in run.slots()] == [1, 1]
    assert all(s.ready_at == now + 1.0 for s in run.slots())


@pytest.mark.parametrize(
    ("state", "reason", "counted"),
    [
        (tpb.TASK_LOST, tpb.TaskStatus.REASON_AGENT_DISCONNECTED, True),
        (tpb.TASK_GONE, tpb.TaskStatus.REASON_AGENT_REMOVED_BY_OPERATOR, True),
        (tpb.TASK_DROPPED, tpb.TaskStatus.REASON_INVALID_OFFERS, False),
        (tpb.TASK_KILLED, tpb.TaskStatus.REASON_AGENT_DRAINING, False),
    ],
)
def test_lost_and_gone_instances_are_failures_dropped_and_drained_ones_are_relaunched_at_once(
    state: int, reason: int, counted: bool
) -> None:
    run, sim, now = steady(service(1))
    if state == tpb.TASK_DROPPED:  # dropped before it ran
        sim.status(slot_of(run, 0).task_id, tpb.TASK_FAILED, now)
        now += 1.0
    actions = sim.status(slot_of(run, 0).task_id, state, now, reason=reason)
    (launch,) = [a.task for a in actions if isinstance(a, Launch)]
    failures = slot_of(run, 0).failures
    if counted:
        assert failures == 1 and launch.ready_at == now + 1.0
    else:
        assert launch.ready_at == 0.0 and failures == (1 if state == tpb.TASK_DROPPED else 0)


def test_an_unreachable_instance_is_replaced_at_once_without_a_backoff() -> None:
    # As Marathon does: the master may take long to give the agent up; the service keeps its instances meanwhile
    # (the shell kills the old task if its agent comes back).
    run, sim, now = steady(service(1))
    old = slot_of(run, 0).task_id
    actions = sim.status(old, tpb.TASK_UNREACHABLE, now, message="agent unreachable")
    (launch,) = [a.task for a in actions if isinstance(a, Launch)]
    assert launch.index == 0 and launch.ready_at == 0.0 and launch.task_id != old
    slot = slot_of(run, 0)
    assert slot.attempt == 1 and slot.failures == 0 and slot.attempts[-1].state == "TASK_UNREACHABLE"
    assert run.launch_for(old) is None  # superseded: the shell kills it if it shows up again
    assert run.on_status(old, tpb.TASK_RUNNING, now) == []


def test_an_instance_refused_as_unauthorized_fails_for_good() -> None:
    run, sim = started(service(1))
    task = next(iter(sim.queued))
    actions = sim.status(task, tpb.TASK_ERROR, 1.0, reason=tpb.TaskStatus.REASON_TASK_UNAUTHORIZED)
    assert actions == [] and slot_of(run, 0).state == "failed"
    assert run.step_state("web") == "failed" and run.state == "running"
    assert sim.tick(1000.0) == [] and slot_of(run, 0).state == "failed"


def test_stale_and_unknown_statuses_change_nothing() -> None:
    run, sim, now = steady(service(1))
    old = slot_of(run, 0).task_id
    sim.status(old, tpb.TASK_FAILED, now)
    assert run.on_status(old, tpb.TASK_RUNNING, now) == []
    assert run.on_status("web.1.web.7.0", tpb.TASK_FAILED, now) == []
    assert run.on_status("other.1.web.0.0", tpb.TASK_FAILED, now) == []
    assert run.owns(old) and not run.owns("web.1.nope.0.0")


# -- drains -----------------------------------------------------------------------------------------------------


def test_instances_on_a_draining_agent_move_off_max_parallel_at_a_time() -> None:
    run, sim = started(service(3))
    for t in list(sim.queued):
        sim.start(t, 1.0, agent="a1" if not t.startswith("web.1.web.2.") else "a2")
    now = sim.settle(1.0)
    actions = sim.apply(run.draining("a1", now))
    (kill,) = [a for a in actions if isinstance(a, Kill)]
    assert kill.reason == "agent draining" and kill.agent_id == "a1"
    assert sim.tick(now + 50.0) == [] and len(sim.kills) == 1  # the next one waits for the replacement
    sim.answer_kills(now)
    moved = next(s for s in run.slots() if s.state == "queued")
    assert moved.failures == 0 and moved.ready_at == 0.0 and moved.attempt == 1
    assert not [a for a in sim.tick(now) if isinstance(a, Kill)]
    sim.start(moved.task_id, now + 1.0, agent="a3", healthy=None)
    assert sim.kills == []  # running, not healthy yet
    sim.status(moved.task_id, tpb.TASK_RUNNING, now + 2.0, healthy=True)
    assert len(sim.kills) == 1 and sim.kills[0].agent_id == "a1"
    sim.answer_kills(now + 2.0)
    sim.run_queued(now + 3.0, agents=1)  # a0: not a1
    assert sorted(s.agent_id for s in run.slots()) == ["a0", "a2", "a3"] and sim.kills == []


# -- scale ------------------------------------------------------------------------------------------------------


def test_scale_up_adds_the_lowest_free_indexes_and_scale_down_retires_the_highest() -> None:
    run, sim, now = steady(service(3))
    actions = sim.apply(run.scale(5, now))
    assert sorted(a.task.index for a in actions if isinstance(a, Launch)) == [3, 4]
    assert run.wanted_count() == 5 and run.spec.steps[0].count == 5
    now = sim.settle(now)
    actions = sim.apply(run.scale(2, now))
    kills = [a for a in actions if isinstance(a, Kill)]
    assert sorted(k.task_id.split(".")[3] for k in kills) == ["2", "3", "4"]
    assert all(k.reason == "scaled down" for k in kills) and len(run.slots()) == 5
    assert run.healthy_count() == 2  # the ones going are no endpoints
    sim.answer_kills(now)
    assert [s.index for s in run.slots()] == [0, 1] and sim.queued == {}
    # the index comes back with its attempts going on: no task id twice
    actions = sim.apply(run.scale(3, now + 1.0))
    (launch,) = [a.task for a in actions if isinstance(a, Launch)]
    assert (launch.index, launch.attempt) == (2, 1) and launch.task_id == "web.1.web.2.1"


def test_scale_to_zero_and_back() -> None:
    run, sim, now = steady(service(2))
    sim.apply(run.scale(0, now))
    sim.answer_kills(now)
    assert run.slots() == [] and run.healthy_count() == 0 and run.state == "running"
    sim.apply(run.scale(1, now))
    assert len(sim.queued) == 1


def test_a_retired_instance_that_fails_on_its_own_is_not_relaunched() -> None:
    run, sim, now = steady(service(2))
    sim.apply(run.scale(1, now))
    assert sim.status(slot_of(run, 1).task_id, tpb.TASK_FAILED, now) == []
    assert [s.index for s in run.slots()] == [0]


@pytest.mark.parametrize(
    ("count", "step", "message"),
    [
        (-1, "", "instances must be a whole number from 0 to 1000, not -1"),
        (1001, "", "instances must be a whole number from 0 to 1000"),
        (2, "gen", "a service has no stages"),
    ],
)
def test_a_bad_scale_is_refused_and_changes_nothing(count: int, step: str, message: str) -> None:
    run, _, now = steady(service(2))
    with pytest.raises(ValueError, match=message):
        run.scale(count, now, step)
    assert run.wanted_count() == 2 and len(run.slots()) == 2


# -- stop -------------------------------------------------------------------------------------------------------


def test_stop_kills_everything_and_ends_stopped_once_all_ended() -> None:
    run, sim, now = steady(service(3))
    sim.apply(run.update(service(3, command="serve v2"), 2, now))
    sim.apply(run.stop(now, "stopped by alice"))
    # one was being replaced already (its kill is not sent twice), the others are killed now
    assert [k.reason for k in sim.kills] == ["replaced by version 2", "stopped by alice", "stopped by alice"]
    dep = run.deployment()
    assert dep is not None and dep.state == "cancelled" and run.state == "running" and not run.done
    assert {k.task_id for k in run.kills_outstanding()} == {k.task_id for k in sim.kills}
    sim.answer_kills(now + 1.0)
    assert run.state == "stopped" and run.done and run.ended_at == now + 1.0 and sim.queued == {}
    assert {s.state for s in run.slots()} == {"stopped"} and run.step_state("web") == "stopped"
    with pytest.raises(ValueError, match="stopped"):
        run.scale(4, now)
    with pytest.raises(ValueError):
        run.update(service(3, command="serve v3"), 3, now)
    assert run.stop(now) == [] and run.next_deadline() is None


def test_a_run_stopped_before_it_started_ends_at_once() -> None:
    run = ServiceRun("web", "1", service(2), 0.0)
    assert run.step_state("web") == "waiting"
    assert run.stop(1.0) == [] and run.state == "stopped" and run.start(2.0) == []


def test_a_batch_run_takes_health_and_ports_too_and_records_the_ports() -> None:
    spec = JobSpec(name="b", type="batch", steps=(StepSpec(name="b", command="true"),))
    run = Run("b", "1", spec, 0.0)
    (launch,) = [a.task for a in run.start(0.0) if isinstance(a, Launch)]
    assert run.on_status(launch.task_id, tpb.TASK_RUNNING, 1.0, healthy=True, ports=(8080,)) == []
    assert run.slots()[0].ports == [8080] and run.draining("a0", 1.0) == []


def test_only_services_and_streams_make_a_service_run() -> None:
    spec = JobSpec(name="b", type="batch", steps=(StepSpec(name="b", command="true"),))
    with pytest.raises(ValueError, match="not a service or a stream"):
        ServiceRun("b", "1", spec, 0.0)
