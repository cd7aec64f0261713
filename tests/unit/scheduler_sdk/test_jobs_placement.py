"""The jobs service's placement (scheduler_sdk/frameworks/jobs/placement.py) as pure logic: a fake driver records
every call, a fake clock drives time; launches are a test-only dataclass with TaskLaunch's fields."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import scheduler_pb2 as spb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.driver import SchedulerDriver
from scheduler_sdk.frameworks.jobs.placement import (
    GANG_RELEASE_REFUSE_SECONDS,
    JobsScheduler,
    RoleDriver,
    launch_task_info,
    placement_constraint,
    task_request,
)
from scheduler_sdk.frameworks.jobs.spec import ConstraintSpec, HealthCheckSpec, TaskResources
from scheduler_sdk.placement import AttributeValue, BalancedByAttribute, UniqueByAttribute
from scheduler_sdk.placement.model import Assignment
from tests.unit.scheduler_sdk.placement.test_service import Clock, FakeDriver, offer, until

HOLD = 10.0


@dataclass(frozen=True)
class Launch:
    """TaskLaunch's fields (run.py), for these tests only."""

    task_id: str
    job_id: str = "j"
    run_id: str = "r"
    step: str = "s"
    index: int = 0
    attempt: int = 0
    role: str = "*"
    command: str = "true"
    user: str = ""
    env: tuple[tuple[str, str], ...] = ()
    resources: TaskResources = field(default_factory=lambda: TaskResources(cpus=1, mem=10))
    constraints: tuple[ConstraintSpec, ...] = ()
    group: str = ""
    gang: str = ""
    gang_size: int = 0
    ready_at: float = 0.0
    health_check: HealthCheckSpec | None = None
    lifecycle: str = ""
    version: int = 0


def gang(name: str, size: int, cpus: float = 1, role: str = "*") -> list[Launch]:
    res = TaskResources(cpus=cpus, mem=10)
    return [
        Launch(f"{name}.{i}", index=i, role=role, resources=res, group=name, gang=name, gang_size=size)
        for i in range(size)
    ]


class RolesDriver(FakeDriver):
    """FakeDriver that also records the roles of SUPPRESS/REVIVE, UPDATE_FRAMEWORK and the TaskInfos launched."""

    def __init__(self) -> None:
        super().__init__()
        self.framework = rpb.FrameworkInfo(name="jobs", roles=["*"])
        self.infos: dict[str, tpb.TaskInfo] = {}

    def accept(self, offer_ids: list[str], tasks: list[tpb.TaskInfo], refuse_seconds: float | None = None) -> None:
        tasks = list(tasks)
        self.infos.update({t.task_id: t for t in tasks})
        super().accept(offer_ids, tasks, refuse_seconds)

    def revive(self, roles: tuple[str, ...] = ()) -> None:
        self.calls.append(("revive", list(roles)))

    def suppress(self, roles: tuple[str, ...] = ()) -> None:
        self.calls.append(("suppress", list(roles)))

    def reconcile(self, tasks: tuple[tuple[str, str], ...] = ()) -> None:
        self.calls.append(("reconcile", list(tasks)))

    def update_framework(self, info: rpb.FrameworkInfo) -> None:
        self.framework.CopyFrom(info)
        self.calls.append(("update_framework", list(info.roles)))


@dataclass
class World:
    js: JobsScheduler
    fake: RolesDriver
    d: SchedulerDriver
    clock: Clock
    updates: list[tuple[str, int]]
    unknown: list[str]

    def run(self, role: str = "*") -> None:
        """One scheduling run of a role, through its RoleDriver."""
        self.js.schedulers[role].schedule_once(cast(SchedulerDriver, RoleDriver(self.d, role)))

    async def status(self, task_id: str, state: int, agent: str = "") -> None:
        await self.js.status_update(self.d, tpb.TaskStatus(task_id=task_id, state=state, agent_id=agent))  # type: ignore[arg-type]


async def world(**kw: Any) -> World:
    clock = Clock()
    fake = RolesDriver()
    d = cast(SchedulerDriver, fake)
    updates: list[tuple[str, int]] = []
    unknown: list[str] = []
    js = JobsScheduler(
        on_update=lambda launch, st: updates.append((launch.task_id, st.state)),
        on_unknown=lambda st: unknown.append(st.task_id),
        clock=clock,
        wall_clock=lambda: clock.now + 1000.0,
        gang_hold=HOLD,
        rng=random.Random(7),
        **kw,
    )
    await js.registered(d, "F1", "M1")
    return World(js, fake, d, clock, updates, unknown)


def role_offer(oid: str, agent: str, host: str, role: str = "*", **kw: Any) -> spb.Offer:
    o = offer(oid, agent, host, **kw)
    o.allocation_role = role
    return o


# ---------------------------------------------------------------------- roles
async def test_offers_and_updates_go_to_their_role_and_a_new_role_joins_the_framework() -> None:
    w = await world()
    w.js.submit([Launch("a"), Launch("b", role="ml")])
    assert w.fake.take() == [("update_framework", ["*", "ml"])]
    caps = [c.type for c in w.fake.framework.capabilities]
    assert rpb.FrameworkInfo.Capability.MULTI_ROLE in caps
    assert w.js.roles() == ["*", "ml"]
    await w.js.offers(w.d, [role_offer("o1", "a1", "h1", "ml", cpus=2, mem=100)])
    w.run("*")  # "*" has no lease: nothing to do
    assert w.fake.take() == []
    w.run("ml")
    assert w.fake.take() == [("accept", ["o1"], ["b"], 5.0)]
    assert w.js.waiting_reasons() == {"a": "no offers yet"}
    await w.status("b", tpb.TASK_RUNNING, "a1")
    await w.status("zz", tpb.TASK_RUNNING, "a1")
    assert w.updates == [("b", tpb.TASK_RUNNING)]
    assert w.unknown == ["zz"]
    # a role already in the framework's roles is not added again
    w.js.submit([Launch("c", role="ml")])
    assert ("update_framework", ["*", "ml"]) not in w.fake.take()


async def test_suppress_and_revive_name_the_role() -> None:
    w = await world()
    w.js.submit([Launch("a", role="ml")])
    w.fake.take()
    # offers in "*", where nothing is queued: declined for long, and "*" alone is suppressed
    await w.js.offers(w.d, [role_offer("o1", "a1", "h1", "*", cpus=2, mem=100)])
    w.run("*")
    assert w.fake.take() == [("decline", ["o1"], 60.0), ("suppress", ["*"])]
    w.js.submit([Launch("b")])
    assert w.fake.take() == [("revive", ["*"])]
    # offers in a role the framework has but no task of ours asked for yet: that role's scheduler takes them
    w.fake.framework.roles.append("idle")
    await w.js.offers(w.d, [role_offer("o2", "a1", "h1", "idle", cpus=2, mem=100)])
    w.run("idle")
    assert w.fake.take() == [("decline", ["o2"], 60.0), ("suppress", ["idle"])]


async def test_a_resubscription_reconciles_our_tasks_and_revives_the_roles_with_work() -> None:
    w = await world()
    w.js.submit([Launch("a"), Launch("b", role="ml"), Launch("c", role="ml")])
    await w.js.offers(w.d, [role_offer("o1", "a1", "h1", "ml", cpus=1, mem=100)])
    w.run("ml")
    w.fake.take()
    again: list[bool] = []

    async def on_registered(driver: SchedulerDriver, fid: str, re: bool) -> None:
        again.append(re)

    w.js.on_registered = on_registered
    await w.js.disconnected(w.d)
    await w.js.reregistered(w.d, "F1", "M2")
    assert w.fake.take() == [("reconcile", [("b", "a1")]), ("revive", ["*"]), ("revive", ["ml"])]
    assert again == [True]


async def test_the_loops_of_every_role_run_and_a_new_role_gets_one() -> None:
    w = await world(loop_interval=0.0)
    w.clock.now = 0.0
    runner = asyncio.create_task(w.js.run(w.d))
    try:
        w.js.submit([Launch("a")])
        await w.js.offers(w.d, [role_offer("o1", "a1", "h1", "*", cpus=1, mem=100)])
        await until(lambda: ("accept", ["o1"], ["a"], 5.0) in w.fake.calls, what="a launched")
        w.js.submit([Launch("b", role="ml")])
        await w.js.offers(w.d, [role_offer("o2", "a1", "h1", "ml", cpus=1, mem=100)])
        await until(lambda: ("accept", ["o2"], ["b"], 5.0) in w.fake.calls, what="b launched by ml's loop")
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner


# ---------------------------------------------------------------------- launches
def test_a_launch_becomes_a_request_and_a_task_info() -> None:
    launch = Launch(
        "t",
        command="echo $AIOMESOS_TASK_INDEX",
        user="alice",
        env=(("AIOMESOS_TASK_INDEX", "3"), ("X", "1")),
        resources=TaskResources(cpus=2, mem=256, disk=100, gpus=1, ports=2),
        constraints=(
            ConstraintSpec("unique", "zone"),
            ConstraintSpec("attribute", "rack", ("r1", "r2")),
            ConstraintSpec("hostname", "hostname", ("h1",), soft=True),
            ConstraintSpec("balanced", "zone", soft=True),
        ),
        group="j.r.s",
        ready_at=1005.0,
    )
    req = task_request(launch, ready_at=105.0)
    assert (req.id, req.cpus, req.mem, req.disk, req.ports, dict(req.scalars), req.group, req.ready_at) == (
        "t",
        2,
        256,
        100,
        2,
        {"gpus": 1},
        "j.r.s",
        105.0,
    )
    assert [type(c) for c in req.hard_constraints] == [UniqueByAttribute, AttributeValue]
    assert [type(c) for c in req.soft_constraints] == [AttributeValue, BalancedByAttribute]
    assert [c.name for c in req.hard_constraints + req.soft_constraints] == [  # type: ignore[attr-defined]
        "unique(zone)",
        "attribute(rack)",
        "attribute(hostname)",
        "balanced(zone)",
    ]
    assert repr(req.hard_constraints[1]) == "AttributeValue('rack', one of 'r1', 'r2')"
    assert req.payload is launch
    info = launch_task_info(req, Assignment(req, "h1", "a1", ("o1",), ports=(31001, 31000)))
    assert (info.task_id, info.agent_id, info.command.shell, info.command.value, info.command.user) == (
        "t",
        "a1",
        True,
        "echo $AIOMESOS_TASK_INDEX",
        "alice",
    )
    env = {v.name: v.value for v in info.command.environment.variables}
    assert env == {
        "AIOMESOS_TASK_INDEX": "3",
        "X": "1",
        "AIOMESOS_PORT0": "31000",
        "AIOMESOS_PORT1": "31001",
        "PORT0": "31000",
        "PORT1": "31001",
    }
    names = sorted((r.name, r.scalar.value) for r in info.resources if r.name != "ports")
    assert names == [("cpus", 2.0), ("disk", 100.0), ("gpus", 1.0), ("mem", 256.0)]
    with pytest.raises(ValueError, match="unknown constraint kind 'near'"):
        placement_constraint(ConstraintSpec("near", "zone"))


async def test_ready_at_is_unix_time_mapped_to_the_scheduler_clock() -> None:
    w = await world()  # wall clock = scheduler clock + 1000
    w.js.submit([Launch("later", ready_at=w.clock.now + 1000.0 + 5.0), Launch("now")])
    assert w.js.schedulers["*"].tasks["later"].ready_at == pytest.approx(w.clock.now + 5.0)
    assert w.js.schedulers["*"].tasks["now"].ready_at == 0.0
    await w.js.offers(w.d, [role_offer("o1", "a1", "h1", cpus=4, mem=100)])
    w.run()
    assert w.fake.take() == [("accept", ["o1"], ["now"], 0)]
    assert w.js.waiting_reasons() == {"later": "retry backoff: ready in 5s"}
    w.clock.now += 5.0
    await w.js.offers(w.d, [role_offer("o2", "a1", "h1", cpus=3, mem=90)])
    w.run()
    assert w.fake.take() == [("accept", ["o2"], ["later"], 5.0)]


async def test_waiting_reasons_name_what_the_hosts_lack() -> None:
    w = await world()
    w.js.submit([Launch("big", resources=TaskResources(cpus=8, mem=10))])
    assert w.js.waiting_reasons() == {"big": "no offers yet"}
    await w.js.offers(w.d, [role_offer("o1", "a1", "h1", cpus=2, mem=100)])
    w.run()
    assert w.js.waiting_reasons() == {"big": "h1: cpus needs 8, has 2"}


async def test_a_resubmitted_id_is_refused_and_nothing_is_queued() -> None:
    w = await world()
    w.js.submit([Launch("a")])
    with pytest.raises(ValueError, match="task a was already submitted"):
        w.js.submit([Launch("b"), Launch("a", role="ml")])
    with pytest.raises(ValueError, match="task c was already submitted"):
        w.js.submit([Launch("c"), Launch("c")])
    assert sorted(w.js.schedulers["*"].tasks) == ["a"]
    assert w.js.roles() == ["*"]


# ---------------------------------------------------------------------- kill and adopt
async def test_kill_drops_a_queued_task_and_kills_a_launched_one() -> None:
    w = await world()
    w.js.submit([Launch("q", resources=TaskResources(cpus=8, mem=1)), Launch("l")])
    await w.js.offers(w.d, [role_offer("o1", "a1", "h1", cpus=1, mem=100)])
    w.run()
    w.fake.take()
    w.js.kill("q")
    assert w.updates == [("q", tpb.TASK_KILLED)]
    w.js.kill("l")
    w.js.kill("nobody")
    assert w.fake.take() == [("kill", "l", "a1")]
    # the killed queued id is free again (a relaunch may reuse it)
    w.js.submit([Launch("q")])
    await w.status("l", tpb.TASK_KILLED, "a1")
    assert w.updates[-1] == ("l", tpb.TASK_KILLED)
    w.js.submit([Launch("l")])


async def test_an_adopted_task_is_tracked_not_launched() -> None:
    w = await world()
    w.js.adopt(Launch("run", role="ml", resources=TaskResources(cpus=3, mem=10)), "a1")
    w.js.adopt(Launch("maybe"), "")  # handed to the placement before a restart: launched or not, unknown
    assert w.fake.take() == [("update_framework", ["*", "ml"])]
    with pytest.raises(ValueError, match="already submitted"):
        w.js.adopt(Launch("run"), "a1")
    await w.status("run", tpb.TASK_RUNNING, "a1")
    await w.status("maybe", tpb.TASK_LOST)  # the reconciliation's answer: never launched
    assert w.updates == [("run", tpb.TASK_RUNNING), ("maybe", tpb.TASK_LOST)]
    w.js.submit([Launch("maybe")])  # launched now under the same id
    # the adopted task's use counts on its host: a1 (4 cpus) has 1 left for a 2-cpu task in the same role
    w.js.submit([Launch("next", role="ml", resources=TaskResources(cpus=2, mem=10))])
    await w.js.offers(w.d, [role_offer("o1", "a1", "h1", "ml", cpus=1, mem=100)])
    w.run("ml")
    assert w.js.waiting_reasons()["next"] == "h1: cpus needs 2, has 1"
    w.js.kill("run")
    assert w.fake.take()[-1] == ("kill", "run", "a1")
    assert w.js.waiting_reasons() == {"maybe": "no offers yet", "next": "h1: cpus needs 2, has 1"}


# ---------------------------------------------------------------------- gangs
async def test_a_gang_that_does_not_fit_launches_nothing_and_leaves_the_room_to_others() -> None:
    w = await world()
    w.js.submit([*gang("g", 3), Launch("solo")])  # the gang first in the queue
    await w.js.offers(w.d, [role_offer("o1", "a1", "h1", cpus=2, mem=100)])
    w.run()
    # the first pass placed 2 of the gang and not solo; the run redone without the gang places solo; the lease
    # is used (accepted whole), so nothing is held
    assert w.fake.take() == [("accept", ["o1"], ["solo"], 0)]
    assert w.js.waiting_reasons() == {f"g.{i}": "gang of 3: 2 fit in the offers held" for i in range(3)}
    # the rest of h1 comes back: 1 cpu, the gang still does not fit; the lease is kept (held for the gang)
    await w.js.offers(w.d, [role_offer("o2", "a1", "h1", cpus=1, mem=90)])
    w.run()
    assert w.fake.take() == []
    assert w.js.waiting_reasons()["g.0"] == "gang of 3: 1 fit in the offers held"
    # another agent: held with o2, now the whole gang fits, across both agents, in one run
    await w.js.offers(w.d, [role_offer("o3", "a2", "h2", cpus=2, mem=100)])
    w.run()
    calls = w.fake.take()
    assert calls == [("accept", ["o2"], ["g.0"], 0), ("accept", ["o3"], ["g.1", "g.2"], 5.0)]
    assert w.js.waiting_reasons() == {}
    assert w.js.schedulers["*"].gangs == {}


async def test_a_gang_is_launched_whole_across_two_agents_in_one_run() -> None:
    w = await world()
    w.js.submit(gang("g", 4))
    await w.js.offers(
        w.d, [role_offer("o1", "a1", "h1", cpus=2, mem=100), role_offer("o2", "a2", "h2", cpus=2, mem=100)]
    )
    w.run()
    # one ACCEPT per agent, all in one scheduling run (the driver sends them in one message)
    assert w.fake.take() == [("accept", ["o1"], ["g.0", "g.1"], 0), ("accept", ["o2"], ["g.2", "g.3"], 5.0)]


async def test_a_gang_not_yet_wholly_submitted_waits() -> None:
    w = await world()
    w.js.submit(gang("g", 3)[:2])
    await w.js.offers(w.d, [role_offer("o1", "a1", "h1", cpus=4, mem=100)])
    w.run()
    assert w.fake.take() == []
    w.js.submit(gang("g", 3)[2:])
    w.run()
    assert w.fake.take() == [("accept", ["o1"], ["g.0", "g.1", "g.2"], 5.0)]


async def test_a_held_gang_lets_go_after_the_hold_and_holds_nothing_while_it_backs_off() -> None:
    w = await world(lease_expiry=30.0)  # leases outlive the hold: what ends it is the gang's bound
    w.js.submit(gang("g", 3))
    await w.js.offers(w.d, [role_offer("o1", "a1", "h1", cpus=2, mem=100)])
    w.run()
    rs = w.js.schedulers["*"]
    assert w.fake.take() == []  # held
    assert rs.next_wake(w.clock.now) == pytest.approx(HOLD + 0.001)  # the loop wakes when the hold ends
    w.clock.now += HOLD - 0.5
    w.run()
    assert w.fake.take() == []  # still within the hold
    w.clock.now += 0.5
    w.run()
    assert w.fake.take() == [("decline", ["o1"], GANG_RELEASE_REFUSE_SECONDS)]
    wait = rs.gangs["g"]
    assert wait.backoff_until is not None
    backoff = wait.backoff_until - w.clock.now
    assert 0.5 * HOLD <= backoff <= 1.5 * HOLD
    assert rs.next_wake(w.clock.now) == pytest.approx(backoff + 0.001)  # ... and when the back-off ends
    reason = w.js.waiting_reasons()["g.1"]
    assert reason.startswith("gang of 3: 2 fit in the offers held; released after 10s (the role is not offered")
    assert reason.endswith(f"holding again in {backoff:.0f}s")
    # during the back-off the gang takes no offer, even one where it would fit: it goes back (and the
    # filter is lifted when the back-off ends)
    await w.js.offers(w.d, [role_offer("o2", "a2", "h2", cpus=4, mem=100)])
    w.run()
    assert w.fake.take() == [("decline", ["o2"], 30.0)]
    w.clock.now += backoff
    w.run()
    assert w.fake.take() == [("revive", ["*"])]
    assert rs.gangs["g"].backoff_until is None and rs.gangs["g"].since is None
    await w.js.offers(w.d, [role_offer("o3", "a2", "h2", cpus=4, mem=100)])
    w.run()
    assert w.fake.take() == [("accept", ["o3"], ["g.0", "g.1", "g.2"], 5.0)]
    assert rs.gangs == {}


async def test_a_new_hold_starts_at_the_first_incomplete_run_after_the_back_off() -> None:
    w = await world()
    w.js.submit(gang("g", 3))
    await w.js.offers(w.d, [role_offer("o1", "a1", "h1", cpus=2, mem=100)])
    w.run()
    w.clock.now += HOLD
    w.run()
    w.fake.take()
    rs = w.js.schedulers["*"]
    w.clock.now = cast(float, rs.gangs["g"].backoff_until) + 30.0  # no offers for long after the back-off
    w.run()
    assert w.fake.take() == [("revive", ["*"])]
    await w.js.offers(w.d, [role_offer("o2", "a1", "h1", cpus=2, mem=100)])
    w.run()
    assert rs.gangs["g"].since == w.clock.now
    w.clock.now += HOLD - 1
    w.run()
    assert w.fake.take() == []  # held: the new hold counts from its first incomplete run


async def test_two_gangs_of_70_percent_in_one_role_run_one_after_the_other() -> None:
    w = await world()
    a, b = gang("a", 7), gang("b", 7)
    w.js.submit([*a, *b])
    await w.js.offers(
        w.d, [role_offer("o1", "a1", "h1", cpus=5, mem=100), role_offer("o2", "a2", "h2", cpus=5, mem=100)]
    )
    w.run()
    launched = [t for c in w.fake.take() if c[0] == "accept" for t in c[2]]
    assert sorted(launched) == [t.task_id for t in a]
    assert w.js.waiting_reasons()["b.0"] == "gang of 7: 3 fit in the offers held"
    for t in a:
        await w.status(t.task_id, tpb.TASK_RUNNING, "a1" if int(t.task_id[-1]) < 5 else "a2")
    # what a left comes back; b still does not fit (3 of 7)
    await w.js.offers(
        w.d, [role_offer("o3", "a1", "h1", cpus=0.5, mem=50), role_offer("o4", "a2", "h2", cpus=3, mem=80)]
    )
    w.run()
    assert [c for c in w.fake.take() if c[0] == "accept"] == []
    # a ends; its room comes back; b is launched whole
    for t in a:
        await w.status(t.task_id, tpb.TASK_FINISHED, "a1" if int(t.task_id[-1]) < 5 else "a2")
    await w.js.offers(w.d, [role_offer("o5", "a1", "h1", cpus=5, mem=50), role_offer("o6", "a2", "h2", cpus=2, mem=20)])
    w.run()
    launched = [t for c in w.fake.take() if c[0] == "accept" for t in c[2]]
    assert sorted(launched) == [t.task_id for t in b]
    assert w.js.waiting_reasons() == {}


async def test_a_killed_gang_member_leaves_the_gang_waiting_for_a_whole_gang_again() -> None:
    w = await world()
    w.js.submit(gang("g", 3))
    await w.js.offers(w.d, [role_offer("o1", "a1", "h1", cpus=2, mem=100)])
    w.run()
    w.js.kill("g.2")  # queued: dropped; the other two are not launched alone
    await w.js.offers(w.d, [role_offer("o2", "a2", "h2", cpus=2, mem=100)])
    w.run()
    assert [c for c in w.fake.take() if c[0] == "accept"] == []
    assert w.js.waiting_reasons() == {"g.0": "no offers yet", "g.1": "no offers yet"}


async def test_two_gangs_in_two_roles_holding_halves_let_go_and_one_completes() -> None:
    w = await world()
    w.js.submit([*gang("x", 3, role="x"), *gang("y", 3, role="y")])
    w.fake.take()
    # the allocator shares the cluster: each role is offered one of the two 2-cpu agents; each gang holds half
    await w.js.offers(w.d, [role_offer("o1", "a1", "h1", "x", cpus=2, mem=100)])
    await w.js.offers(w.d, [role_offer("o2", "a2", "h2", "y", cpus=2, mem=100)])
    w.run("x")
    w.run("y")
    assert w.fake.take() == []
    w.clock.now += HOLD
    w.run("x")
    w.run("y")
    assert w.fake.take() == [("decline", ["o1"], 1.0), ("decline", ["o2"], 1.0)]
    ends = {r: cast(float, w.js.schedulers[r].gangs[r].backoff_until) for r in ("x", "y")}
    first, second = sorted(ends, key=ends.__getitem__)
    assert ends[first] != ends[second]  # random back-offs: one gang holds again while the other still waits
    w.clock.now = ends[first]
    w.run(first)
    w.run(second)
    assert w.fake.take() == [("revive", [first])]
    # what both let go is offered to the role that asks again: its gang completes; the other's turn comes later
    await w.js.offers(
        w.d,
        [role_offer("o3", "a1", "h1", first, cpus=2, mem=100), role_offer("o4", "a2", "h2", first, cpus=2, mem=100)],
    )
    w.run(first)
    launched = sorted(t for c in w.fake.take() if c[0] == "accept" for t in c[2])
    assert launched == [f"{first}.{i}" for i in range(3)]
    assert w.js.waiting_reasons()[f"{second}.0"].startswith("gang of 3: 2 fit in the offers held; released after")


async def test_the_hostname_of_an_agent_is_what_its_offers_said() -> None:
    w = await world()
    w.js.submit([Launch("a", role="ml")])
    await w.js.offers(w.d, [role_offer("o1", "a1", "h1.example", "ml", cpus=1, mem=100)])
    assert (w.js.hostname("a1"), w.js.hostname("a2")) == ("h1.example", "")
