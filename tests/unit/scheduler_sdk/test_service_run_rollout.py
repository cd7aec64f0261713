"""Rolling updates of a service run: max_parallel with healthy capacity checked after every event, min_healthy_time,
healthy_deadline, auto_revert, canaries and promote, a change of counts only, an update cancelling another."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.frameworks.jobs.service_run import ServiceRun
from scheduler_sdk.frameworks.jobs.spec import UpdatePolicy
from scheduler_sdk.frameworks.jobs.tasks import Kill, Launch, Revert
from tests.unit.scheduler_sdk.test_service_run import Sim, service, steady


def versions(run: ServiceRun) -> list[int]:
    return [s.version for s in run.slots()]


def capacity_kept(max_parallel: int) -> Callable[[ServiceRun], None]:
    def check(run: ServiceRun) -> None:
        assert run.healthy_count() >= run.wanted_count() - max_parallel, [
            (s.index, s.version, s.state, s.healthy, s.killing) for s in run.slots()
        ]

    return check


@pytest.mark.parametrize("max_parallel", [1, 2])
def test_a_rolling_update_keeps_healthy_capacity_and_ends_all_on_the_new_version(max_parallel: int) -> None:
    policy = UpdatePolicy(max_parallel=max_parallel, min_healthy_time=10.0, healthy_deadline=300.0)
    run, sim, now = steady(service(5, update=policy))
    sim.check = capacity_kept(max_parallel)
    events = sim.events
    actions = sim.apply(run.update(service(5, command="serve v2", update=policy), 2, now))
    kills = [a for a in actions if isinstance(a, Kill)]
    assert len(kills) == max_parallel and all(k.reason == "replaced by version 2" for k in kills)
    dep = run.deployment()
    assert dep is not None and (dep.version, dep.from_version, dep.state, dep.max_parallel) == (
        2,
        1,
        "running",
        max_parallel,
    )
    in_flight_max = 0
    while dep.active:
        sim.answer_kills(now)
        sim.run_queued(now)
        sim.tick(now)
        in_flight = sum(1 for s in run.slots() if s.killing or (s.version == 2 and s.launched_at is not None))
        in_flight_max = max(in_flight_max, in_flight)
        now += 1.0
        assert now < 1000.0
    assert dep.state == "succeeded" and versions(run) == [2] * 5 and run.healthy_count() == 5
    assert in_flight_max == max_parallel and sim.events - events > 20
    assert all(t.version == 2 and "v2" in t.command for t in sim.launched[-5:])
    assert run.stable_versions() == {1, 2} and [d.version for d in run.deployments()] == [1, 2]
    assert {s.index for s in run.slots()} == set(range(5)) and all(s.failures == 0 for s in run.slots())


def test_the_next_instance_waits_until_the_new_one_is_healthy_for_min_healthy_time() -> None:
    run, sim, now = steady(service(2))
    sim.apply(run.update(service(2, command="serve v2"), 2, now))
    sim.answer_kills(now)
    sim.run_queued(now + 1.0)
    assert run.next_deadline() == now + 11.0 and sim.kills == []
    sim.tick(now + 10.9)
    assert sim.kills == []
    sim.tick(now + 11.0)
    assert [k.task_id for k in sim.kills] == ["web.1.web.1.0"]


def test_unhealthy_old_instances_are_replaced_first() -> None:
    run, sim, now = steady(service(3))
    sim.status(run.slots()[2].task_id, tpb.TASK_RUNNING, now, healthy=False)
    actions = sim.apply(run.update(service(3, command="serve v2"), 2, now))
    assert [a.task_id for a in actions if isinstance(a, Kill)] == ["web.1.web.2.0"]


def test_an_old_instance_that_fails_mid_rollout_comes_back_at_its_version() -> None:
    run, sim, now = steady(service(3))
    sim.apply(run.update(service(3, command="serve v2"), 2, now))
    actions = sim.status(run.slots()[2].task_id, tpb.TASK_FAILED, now)
    (launch,) = [a.task for a in actions if isinstance(a, Launch)]
    assert launch.version == 1 and launch.index == 2


# -- deadlines and reverts --------------------------------------------------------------------------------------


def failing_update(auto_revert: bool) -> tuple[ServiceRun, Sim, float]:
    policy = UpdatePolicy(max_parallel=1, min_healthy_time=10.0, healthy_deadline=60.0, auto_revert=auto_revert)
    run, sim, now = steady(service(3, update=policy))
    sim.apply(run.update(service(3, command="serve broken", update=policy), 2, now))
    sim.answer_kills(now)
    sim.run_queued(now + 1.0, healthy=False)  # it runs, its health check fails
    assert run.next_deadline() == now + 60.0
    sim.tick(now + 59.0)
    assert run.deployment().state == "running"  # type: ignore[union-attr]
    sim.tick(now + 60.0)
    return run, sim, now + 60.0


def test_an_update_not_healthy_within_its_deadline_fails_and_auto_reverts() -> None:
    run, sim, now = failing_update(auto_revert=True)
    dep = run.deployment()
    assert dep is not None and dep.state == "reverted"
    assert sim.reverts == [Revert(1, "instance 0 of version 2 not healthy within 1m (for 10s)")]
    assert run.pending_revert() == sim.reverts[0]
    assert sim.kills == [] and versions(run) == [2, 1, 1]  # replacing stopped
    # the shell makes version 3 with version 1's spec: the v1 instances take it as they are, the v2 one goes
    v1 = service(3, update=UpdatePolicy(max_parallel=1, min_healthy_time=10.0, healthy_deadline=60.0, auto_revert=True))
    actions = sim.apply(run.update(v1, 3, now))
    assert [a.task_id for a in actions if isinstance(a, Kill)] == ["web.1.web.0.1"]
    assert versions(run) == [2, 3, 3] and run.pending_revert() is None
    now = sim.settle(now)
    assert run.deployment().state == "succeeded" and versions(run) == [3, 3, 3]  # type: ignore[union-attr]
    assert run.stable_versions() == {1, 3} and run.slots()[1].attempt == 0  # never restarted
    assert [d.state for d in run.deployments()] == ["succeeded", "reverted", "succeeded"]


def test_without_auto_revert_a_failed_update_leaves_what_runs() -> None:
    run, sim, now = failing_update(auto_revert=False)
    dep = run.deployment()
    assert dep is not None and dep.state == "failed" and dep.ended_at == now
    assert dep.message == "instance 0 of version 2 not healthy within 1m (for 10s)"
    assert sim.reverts == [] and run.pending_revert() is None
    sim.tick(now + 1000.0)
    assert sim.kills == [] and versions(run) == [2, 1, 1] and run.state == "running"


def test_a_new_instance_that_crash_loops_fails_the_update_at_its_deadline() -> None:
    policy = UpdatePolicy(max_parallel=1, min_healthy_time=0.0, healthy_deadline=30.0, auto_revert=True)
    run, sim, now = steady(service(2, update=policy))
    sim.apply(run.update(service(2, command="crash", update=policy), 2, now))
    sim.answer_kills(now)
    t = now
    while not sim.reverts:
        sim.run_queued(t, healthy=None)
        for s in run.slots():
            if s.version == 2 and s.state == "running":
                sim.status(s.task_id, tpb.TASK_FAILED, t, exit_code=1)
        sim.tick(t)
        t += 1.0
        assert t < now + 100.0
    assert t - 1.0 == now + 30.0 and sim.reverts[0].version == 1


# -- canaries ---------------------------------------------------------------------------------------------------


def test_canaries_start_beside_the_old_instances_then_promote_replaces_the_rest() -> None:
    policy = UpdatePolicy(max_parallel=1, min_healthy_time=10.0, healthy_deadline=300.0, canary=1)
    run, sim, now = steady(service(3, update=policy))
    sim.check = capacity_kept(1)
    actions = sim.apply(run.update(service(3, command="serve v2", update=policy), 2, now))
    (launch,) = [a.task for a in actions if isinstance(a, Launch)]
    assert (launch.index, launch.version) == (3, 2) and sim.kills == []
    canary = run.slots()[3]
    assert canary.canary and run.wanted_count() == 3
    dep = run.deployment()
    assert dep is not None and dep.canaries == 1 and dep.state == "running"
    with pytest.raises(ValueError, match=r"no canary waits for promotion \(the canaries of version 2 are not all"):
        run.promote(now)
    sim.run_queued(now + 1.0)
    sim.tick(now + 11.0)
    assert dep.state == "paused" and "aiomesos job promote web" in dep.message and sim.kills == []
    assert sim.tick(now + 500.0) == [] and dep.state == "paused"  # it waits, past the deadline too
    now += 500.0
    actions = sim.apply(run.promote(now))
    kills = [a for a in actions if isinstance(a, Kill)]
    assert [k.task_id for k in kills] == ["web.1.web.2.0", "web.1.web.0.0"]  # retired, then replaced
    assert kills[0].reason == "replaced by version 2" and not canary.canary and dep.promoted
    now = sim.settle(now)
    assert dep.state == "succeeded" and [s.index for s in run.slots()] == [0, 1, 3]
    assert versions(run) == [2, 2, 2] and run.healthy_count() == 3 and not any(s.canary for s in run.slots())


def test_canaries_that_never_get_healthy_fail_the_update() -> None:
    policy = UpdatePolicy(min_healthy_time=0.0, healthy_deadline=30.0, canary=2)
    run, sim, now = steady(service(3, update=policy))
    sim.apply(run.update(service(3, command="bad", update=policy), 2, now))
    sim.run_queued(now, healthy=False)
    sim.tick(now + 30.0)
    assert run.deployment().state == "failed"  # type: ignore[union-attr]
    # the canaries go; the old instances serve on, all of them
    assert {k.reason for k in sim.kills} == {"canary of version 2, whose update failed"} and len(sim.kills) == 2
    sim.answer_kills(now + 30.0)
    assert versions(run) == [1, 1, 1] and sim.queued == {} and run.healthy_count() == 3


def test_promote_with_nothing_waiting_is_refused() -> None:
    run, _, now = steady(service(2))
    with pytest.raises(ValueError, match=r"no canary waits for promotion \(the deployment of version 1 is succeeded"):
        run.promote(now)
    fresh = ServiceRun("web", "1", service(2), 0.0)
    with pytest.raises(ValueError, match="there is no deployment"):
        fresh.promote(0.0)


def test_a_new_update_retires_the_canaries_of_the_one_it_cancels() -> None:
    policy = UpdatePolicy(canary=1, min_healthy_time=0.0)
    run, sim, now = steady(service(2, update=policy))
    sim.apply(run.update(service(2, command="v2", update=policy), 2, now))
    sim.run_queued(now)
    sim.tick(now)
    actions = sim.apply(run.update(service(2, command="v3", update=UpdatePolicy(min_healthy_time=0.0)), 3, now))
    assert next(a.reason for a in actions if isinstance(a, Kill)).startswith("canary of version 2")
    assert [d.state for d in run.deployments()] == ["succeeded", "cancelled", "running"]
    now = sim.settle(now)
    assert versions(run) == [3, 3] and [s.index for s in run.slots()] == [0, 1]


# -- scale, not a rollout; one update after another -------------------------------------------------------------


def test_a_change_of_instances_only_is_a_scale() -> None:
    run, sim, now = steady(service(3))
    actions = sim.apply(run.update(service(5, update=UpdatePolicy(max_parallel=3)), 2, now))
    assert not [a for a in actions if isinstance(a, Kill)]
    assert sorted(a.task.index for a in actions if isinstance(a, Launch)) == [3, 4]
    dep = run.deployment()
    assert dep is not None and dep.state == "succeeded" and dep.ended_at == now
    assert versions(run) == [2] * 5 and run.stable_versions() == {1, 2}
    assert all(s.attempt == 0 for s in run.slots())


def test_a_scale_during_a_rollout_applies_to_the_new_version() -> None:
    run, sim, now = steady(service(3))
    sim.apply(run.update(service(3, command="serve v2"), 2, now))
    actions = sim.apply(run.scale(4, now))
    assert [(a.task.index, a.task.version) for a in actions if isinstance(a, Launch)] == [(3, 2)]
    sim.apply(run.scale(2, now))
    now = sim.settle(now)
    assert versions(run) == [2, 2] and run.spec.steps[0].count == 2


def test_a_new_update_cancels_the_one_running_and_starts_from_what_runs() -> None:
    run, sim, now = steady(service(3))
    sim.check = capacity_kept(1)
    sim.apply(run.update(service(3, command="serve v2"), 2, now))
    sim.answer_kills(now)
    sim.run_queued(now)
    now += 10.0
    sim.tick(now)
    assert versions(run) == [2, 1, 1]
    sim.apply(run.update(service(3, command="serve v3"), 3, now))
    v2, v3 = run.deployments()[1:]
    assert (v2.state, v2.message, v3.state, v3.from_version) == ("cancelled", "replaced by version 3", "running", 2)
    now = sim.settle(now)
    assert versions(run) == [3, 3, 3] and v3.state == "succeeded" and run.stable_versions() == {1, 3}


@pytest.mark.parametrize(
    ("version", "kind", "message"),
    [(2, "stream", "type: job web is a service job"), (1, "service", "version 1 is not newer than version 1")],
)
def test_a_bad_update_is_refused_and_the_run_goes_on(version: int, kind: str, message: str) -> None:
    run, _, now = steady(service(2))
    spec = dataclasses.replace(service(2, command="other"), type=kind)
    with pytest.raises(ValueError, match=message):
        run.update(spec, version, now)
    assert run.version == 1 and versions(run) == [1, 1] and len(run.deployments()) == 1
