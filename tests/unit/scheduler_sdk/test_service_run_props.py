"""A property test of the service run: any sequence of events (instances running, failing, lost, dropped,
unhealthy; kills answered; time passing; scale, update, promote, drain, reverts carried out) keeps it consistent:
no task id twice, a kill only of a live task, the store's copy equal to the run, `tick` never asked again at once,
and once the cluster is calm every wanted instance is healthy (all on the target version when its rollout
succeeded)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.frameworks.jobs.service_run import ServiceRun
from scheduler_sdk.frameworks.jobs.spec import JobSpec, RestartPolicy, UpdatePolicy
from tests.unit.scheduler_sdk.test_service_run import service, started
from tests.unit.scheduler_sdk.test_service_run_stream import Store

OPS = ("run", "run", "kills", "tick", "fail", "health", "scale", "update", "promote", "drain")
ENDS = (
    (tpb.TASK_FAILED, 0),
    (tpb.TASK_LOST, tpb.TaskStatus.REASON_AGENT_DISCONNECTED),
    (tpb.TASK_DROPPED, tpb.TaskStatus.REASON_INVALID_OFFERS),
    (tpb.TASK_KILLED, tpb.TaskStatus.REASON_AGENT_DRAINING),
    (tpb.TASK_FINISHED, 0),
)


class World:
    def __init__(self, canary: int, max_parallel: int) -> None:
        self.policy = UpdatePolicy(
            max_parallel=max_parallel, min_healthy_time=5.0, healthy_deadline=40.0, canary=canary, auto_revert=True
        )
        restart = RestartPolicy(backoff=1.0, max_backoff=8.0, reset_after=20.0, crash_loop=3)
        self.restart = restart
        spec = service(3, update=self.policy, restart=restart)
        self.specs: dict[int, JobSpec] = {1: spec}
        self.store = Store()
        self.run, self.sim = started(spec, check=self.check)
        self.now = 0.0

    def check(self, run: ServiceRun) -> None:
        self.store.save(run)
        slots = run.slots()
        assert len({s.task_id for s in slots if s.task_id}) == len([s for s in slots if s.task_id])
        assert all(s.live for s in slots if s.killing)
        assert run.healthy_count() <= len(slots)

    def carry_out_reverts(self) -> None:
        while self.sim.reverts:
            revert = self.sim.reverts.pop(0)
            version = self.run.version + 1
            self.specs[version] = self.specs[revert.version]
            self.sim.apply(self.run.update(self.specs[version], version, self.now))

    def step(self, op: str, n: int) -> None:
        run, sim = self.run, self.sim
        self.now += 1.0
        live = [s for s in run.slots() if s.state in ("staging", "running")]
        if op == "run":
            sim.run_queued(self.now, healthy=n % 4 != 0)
        elif op == "kills":
            sim.answer_kills(self.now)
        elif op == "tick":
            self.now += 5.0 * n
            sim.tick(self.now)
            deadline = run.next_deadline()
            assert deadline is None or deadline > self.now  # tick is not asked again at once
        elif op == "fail" and live:
            state, reason = ENDS[n % len(ENDS)]
            sim.status(live[n % len(live)].task_id, state, self.now, reason=reason)
        elif op == "health" and live:
            sim.status(live[n % len(live)].task_id, tpb.TASK_RUNNING, self.now, healthy=n % 2 == 0)
        elif op == "scale":
            sim.apply(run.scale(n % 5, self.now))
        elif op == "update":
            version = run.version + 1
            command = f"serve v{version}" if n % 3 else run.spec.steps[0].command  # sometimes a scale only
            self.specs[version] = service(n % 5, command=command, update=self.policy, restart=self.restart)
            sim.apply(run.update(self.specs[version], version, self.now))
        elif op == "promote" and (dep := run.deployment()) is not None and dep.state == "paused":
            sim.apply(run.promote(self.now))
        elif op == "drain":
            sim.apply(run.draining(f"a{n % 3}", self.now))
        self.carry_out_reverts()
        copy = self.store.load(self.specs)
        assert copy.to_dict() == run.to_dict()

    def calm(self) -> None:
        """No more trouble: everything runs healthy, kills are answered, canaries promoted."""
        for _ in range(300):
            self.now += 10.0
            self.sim.answer_kills(self.now)
            self.sim.run_queued(self.now)
            for s in self.run.slots():
                if s.state == "running" and not s.healthy:  # its checks pass now
                    self.sim.status(s.task_id, tpb.TASK_RUNNING, self.now, healthy=True)
            self.sim.tick(self.now)
            dep = self.run.deployment()
            if dep is not None and dep.state == "paused":
                self.sim.apply(self.run.promote(self.now))
            self.carry_out_reverts()
            if not self.sim.kills and not self.sim.queued and (dep is None or not dep.active):
                return
        raise AssertionError(f"never calm: {self.run.deployment()}")


@settings(max_examples=120, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 11)), max_size=50),
    st.integers(0, 2),
    st.integers(1, 3),
)
def test_any_sequence_of_events_keeps_a_service_run_consistent(
    events: list[tuple[str, int]], canary: int, max_parallel: int
) -> None:
    world = World(canary, max_parallel)
    for op, n in events:
        world.step(op, n)
    world.calm()
    run = world.run
    slots = run.slots()
    assert len([s for s in slots if s.state != "failed"]) == run.wanted_count()
    assert run.healthy_count() == run.wanted_count() and not any(s.canary for s in slots)
    dep = run.deployment()
    assert dep is not None
    if dep.state == "succeeded":
        assert {s.version for s in slots} <= {run.version} and run.version in run.stable_versions()
    launched = [t.task_id for t in world.sim.launched]
    assert len(launched) == len(set(launched))  # no task id twice, even where indexes came back
    assert world.store.load(world.specs).to_dict() == run.to_dict()
