"""Autoscaling rules with exact expected actions (fake clock, fake provider), and hypothesis properties."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import scheduler_pb2 as spb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.driver import SchedulerDriver
from scheduler_sdk.placement.autoscale import Action, Autoscaler, AutoscaleRule, natural_key
from scheduler_sdk.placement.constraints import AttributeValue, UniqueByAttribute
from scheduler_sdk.placement.engine import PlacementEngine
from scheduler_sdk.placement.model import (
    Assignment,
    Failure,
    Host,
    OfferSlice,
    RunningTask,
    SchedulingResult,
    TaskRequest,
)
from scheduler_sdk.placement.providers import CallbackProvider, ClusterProvider, ProviderPerGroup
from scheduler_sdk.placement.service import PlacementScheduler
from scheduler_sdk.resources import Resources


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeProvider:
    def __init__(self, named: bool = True) -> None:
        self.named = named
        self.up: list[tuple[str, int]] = []
        self.down: list[tuple[str, list[str]]] = []
        self.started = 0
        self.fail_down = False

    async def scale_up(self, group: str, count: int) -> list[str]:
        self.up.append((group, count))
        names = [f"{group}-new{self.started + i + 1}" for i in range(count)]
        self.started += count
        return names if self.named else []

    async def scale_down(self, group: str, hostnames: Sequence[str]) -> None:
        if self.fail_down:
            raise RuntimeError("the cloud said no")
        self.down.append((group, list(hostnames)))


def host(
    name: str,
    group: str = "g",
    zone: str = "a",
    busy: bool = False,
    disabled: bool = False,
    cpus: float = 4.0,
    mem: float = 4096.0,
) -> Host:
    return Host(
        name,
        agent_id=f"id-{name}",
        attributes={"asg": group, "zone": zone},
        offers=(OfferSlice(f"{name}-offer", cpus=cpus, mem=mem),) if cpus or mem else (),
        running=(RunningTask(f"{name}-task", cpus=1),) if busy else (),
        disabled=disabled,
    )


def make(*rules: AutoscaleRule, named: bool = True, **kw: object) -> tuple[Autoscaler, FakeProvider, Clock]:
    clock = Clock()
    provider = FakeProvider(named)
    return Autoscaler(list(rules), "asg", provider, clock, **kw), provider, clock  # type: ignore[arg-type]


def tasks(n: int, cpus: float, prefix: str = "t", **kw: object) -> list[TaskRequest]:
    return [TaskRequest(f"{prefix}{i}", cpus=cpus, mem=100, **kw) for i in range(n)]  # type: ignore[arg-type]


# ---------------------------------------------------------------------- max idle: disable, then release
async def test_excess_idle_hosts_are_disabled_then_released_once_confirmed_idle() -> None:
    a, p, clock = make(AutoscaleRule("g", min_idle=0, max_idle=1, cooldown=0))
    hosts = [host(f"h{i}") for i in range(1, 5)]
    assert await a.evaluate(hosts) == [Action("disable", "g", 3, ("h4", "h3", "h2"), "max_idle")]
    assert a.disabled == {"h2", "h3", "h4"}
    assert p.down == []
    # The next view does not show them disabled yet (the run did not know): no release.
    clock.now = 1
    assert await a.evaluate(hosts) == []
    # A run that honoured the disable: still idle, so they go.
    clock.now = 2
    assert await a.evaluate(a.mark_disabled(hosts)) == [Action("release", "g", 3, ("h2", "h3", "h4"), "drained")]
    assert p.down == [("g", ["h2", "h3", "h4"])]
    assert a.disabled == {"h2", "h3", "h4"}  # released hosts stay off while they are still reported
    clock.now = 3
    assert await a.evaluate([hosts[0]]) == []
    clock.now = 100  # not seen for forget_after (60 s): forgotten
    assert await a.evaluate([hosts[0]]) == []
    assert a.disabled == frozenset()


async def test_a_drained_host_that_got_a_task_is_enabled_again_never_released() -> None:
    a, p, clock = make(AutoscaleRule("g", min_idle=0, max_idle=1, cooldown=0))
    hosts = [host(f"h{i}") for i in range(1, 5)]
    await a.evaluate(hosts)  # disables h4, h3, h2
    clock.now = 1
    view = a.mark_disabled([host("h1"), host("h2"), host("h3", busy=True), host("h4")])
    # h2 was assigned a task in this very run: busy too
    assert await a.evaluate(view, busy=["h2"]) == [
        Action("enable", "g", 2, ("h2", "h3"), "busy"),
        Action("release", "g", 1, ("h4",), "drained"),
    ]
    assert p.down == [("g", ["h4"])]
    assert a.disabled == {"h4"}


async def test_scale_down_never_goes_below_min_size() -> None:
    a, p, clock = make(AutoscaleRule("g", min_idle=0, max_idle=0, cooldown=0, min_size=3))
    hosts = [host(f"h{i}") for i in range(1, 5)]
    assert await a.evaluate(hosts) == [Action("disable", "g", 1, ("h4",), "max_idle")]
    clock.now = 1
    # h4 is released; the other three stay (a draining host already counts as gone)
    assert await a.evaluate(a.mark_disabled(hosts)) == [Action("release", "g", 1, ("h4",), "drained")]
    clock.now = 2
    assert await a.evaluate(hosts[:3]) == []
    assert p.down == [("g", ["h4"])]


async def test_hosts_being_released_count_as_gone_for_min_size() -> None:
    a, _, clock = make(AutoscaleRule("g", min_idle=0, max_idle=0, cooldown=0, min_size=2))
    hosts = [host(f"h{i}") for i in range(1, 5)]
    assert await a.evaluate(hosts) == [Action("disable", "g", 2, ("h4", "h3"), "max_idle")]
    clock.now = 1
    # h3 and h4 go now; h1 and h2 are idle above max idle, but min size keeps them
    assert await a.evaluate(a.mark_disabled(hosts)) == [Action("release", "g", 2, ("h3", "h4"), "drained")]


async def test_busy_hosts_are_never_chosen_and_too_small_hosts_are_neither_idle_nor_released() -> None:
    rule = AutoscaleRule("g", min_idle=1, max_idle=1, cooldown=0, min_idle_resources={"cpus": 1, "mem": 512})
    a, _p, _ = make(rule)
    hosts = [
        host("h1", busy=True),
        host("h2", cpus=0.5),  # idle but too small (something else holds the rest)
        host("h3", mem=100),  # too small too
        host("h4", busy=True),
    ]
    # No idle host at all: scale up one; nothing is disabled
    assert a.decide(hosts) == [Action("scale_up", "g", 1, (), "min_idle")]
    hosts.append(host("h5"))
    hosts.append(host("h6"))
    assert a.decide(hosts) == [Action("disable", "g", 1, ("h6",), "max_idle")]


async def test_a_custom_too_small_predicate() -> None:
    rule = AutoscaleRule("g", min_idle=0, max_idle=0, cooldown=0, idle_host_too_small=lambda h: h.hostname == "h2")
    a, _, _ = make(rule)
    assert a.decide([host("h1"), host("h2")]) == [Action("disable", "g", 1, ("h1",), "max_idle")]


# ---------------------------------------------------------------------- balance across zones
def test_scale_down_is_balanced_across_zones() -> None:
    a, _, _ = make(AutoscaleRule("g", min_idle=0, max_idle=2, cooldown=0))
    hosts = [
        host("a1", zone="a"),
        host("a2", zone="a"),
        host("a3", zone="a"),
        host("b1", zone="b"),
        host("b2", zone="b", busy=True),
        host("b3", zone="b", busy=True),
        host("c1", zone="c"),
    ]
    # 5 idle, max 2: 3 go. a and b both have 3 hosts (a has more idle: a3); then b (3 left vs a's 2): b1;
    # then a and b have 2 each, b has no idle left: a2. Left: a1 | b2 b3 | c1.
    assert a.decide(hosts) == [Action("disable", "g", 3, ("a3", "b1", "a2"), "max_idle")]


def test_balance_attribute_none_takes_the_last_names_first() -> None:
    a, _, _ = make(AutoscaleRule("g", min_idle=0, max_idle=0, cooldown=0), balance_attribute=None)
    hosts = [host("h9", zone="a"), host("h10", zone="b"), host("h2", zone="c")]
    assert a.decide(hosts) == [Action("disable", "g", 3, ("h10", "h9", "h2"), "max_idle")]
    assert sorted(["h10", "h9", "h2"], key=natural_key) == ["h2", "h9", "h10"]


# ---------------------------------------------------------------------- min idle, cool-down, min/max size
async def test_min_idle_scales_up_after_the_cooldown_counting_hosts_still_starting() -> None:
    a, p, clock = make(AutoscaleRule("g", min_idle=2, max_idle=3, cooldown=60))
    assert await a.evaluate([host("b1", busy=True)]) == [Action("scale_up", "g", 2, ("g-new1", "g-new2"), "min_idle")]
    assert a.starting("g") == 2
    clock.now = 10
    assert await a.evaluate([host("b1", busy=True)]) == []  # two hosts are on their way
    clock.now = 20
    assert await a.evaluate([host("b1", busy=True), host("g-new1"), host("g-new2")]) == []
    assert a.starting("g") == 0
    clock.now = 30  # the new hosts filled up: 0 idle, but within the cool-down
    busy = [host("b1", busy=True), host("g-new1", busy=True), host("g-new2", busy=True)]
    assert await a.evaluate(busy) == []
    clock.now = 60
    assert await a.evaluate(busy) == [Action("scale_up", "g", 2, ("g-new3", "g-new4"), "min_idle")]
    assert p.up == [("g", 2), ("g", 2)]


async def test_scale_down_waits_for_the_cooldown() -> None:
    a, _, clock = make(AutoscaleRule("g", min_idle=0, max_idle=1, cooldown=60))
    hosts = [host("h1"), host("h2"), host("h3")]
    assert await a.evaluate(hosts) == [Action("disable", "g", 2, ("h3", "h2"), "max_idle")]
    clock.now = 1  # releasing is the end of that action: no cool-down for it
    assert await a.evaluate(a.mark_disabled(hosts)) == [Action("release", "g", 2, ("h2", "h3"), "drained")]
    clock.now = 10
    two_idle = [host("h1"), host("h4")]
    assert await a.evaluate(two_idle) == []
    clock.now = 60
    assert await a.evaluate(two_idle) == [Action("disable", "g", 1, ("h4",), "max_idle")]


def test_min_size_and_max_size() -> None:
    a, _, _ = make(AutoscaleRule("g", min_idle=0, max_idle=5, cooldown=0, min_size=2))
    assert a.decide([]) == [Action("scale_up", "g", 2, (), "min_size")]
    a, _, _ = make(AutoscaleRule("g", min_idle=3, max_idle=5, cooldown=0, min_size=1, max_size=2))
    assert a.decide([]) == [Action("scale_up", "g", 2, (), "min_idle")]  # 3 wanted, capped at 2
    assert a.decide([host("h1"), host("h2")]) == []  # at max size
    a, _, _ = make(AutoscaleRule("g", min_idle=1, max_idle=5, cooldown=0, min_size=4))
    # 1 for min idle, then 2 more to reach min size 4 (with h1 busy)
    assert a.decide([host("h1", busy=True)]) == [Action("scale_up", "g", 3, (), "min_idle+min_size")]


async def test_launches_expire_and_anonymous_launches_are_matched_by_new_hosts() -> None:
    a, p, clock = make(AutoscaleRule("g", min_idle=2, max_idle=2, cooldown=0), named=False, launch_timeout=100)
    assert await a.evaluate([]) == [Action("scale_up", "g", 2, (), "min_idle")]
    assert a.starting("g") == 2
    clock.now = 5
    assert await a.evaluate([host("x1")]) == []  # one arrived (any new host of the group counts)
    assert a.starting("g") == 1
    clock.now = 101  # the other never came
    assert await a.evaluate([host("x1")]) == [Action("scale_up", "g", 1, (), "min_idle")]
    assert p.up == [("g", 2), ("g", 1)]


def test_hosts_of_other_groups_and_without_a_rule_are_ignored() -> None:
    a, _, _ = make(AutoscaleRule("g", min_idle=0, max_idle=0, cooldown=0))
    assert a.decide([host("o1", group="other"), Host("bare")]) == []


def test_rule_validation() -> None:
    with pytest.raises(ValueError, match="min_idle <= max_idle"):
        AutoscaleRule("g", min_idle=3, max_idle=1)
    with pytest.raises(ValueError, match="min_size <= max_size"):
        AutoscaleRule("g", min_size=3, max_size=1)
    with pytest.raises(ValueError, match="one rule per group"):
        Autoscaler([AutoscaleRule("g"), AutoscaleRule("g")])


# ---------------------------------------------------------------------- shortfall
SHAPE = {"cpus": 8, "mem": 8192}


def test_shortfall_10_tasks_of_3_cpus_on_hosts_of_8_cpus_need_5_hosts() -> None:
    a, _, _ = make(AutoscaleRule("g", min_idle=0, max_idle=10, cooldown=600, shape=SHAPE))
    assert a.decide([host("b1", busy=True)], tasks(10, 3)) == [Action("scale_up", "g", 5, (), "shortfall")]


def test_shortfall_is_capped_by_max_size() -> None:
    a, _, _ = make(AutoscaleRule("g", min_idle=0, max_idle=10, cooldown=0, max_size=4, shape=SHAPE))
    assert a.decide([host("b1", busy=True)], tasks(10, 3)) == [Action("scale_up", "g", 3, (), "shortfall")]


async def test_shortfall_ignores_the_cooldown_and_counts_hosts_starting() -> None:
    a, _p, clock = make(AutoscaleRule("g", min_idle=0, max_idle=10, cooldown=600, shape=SHAPE))
    busy = [host("b1", busy=True)]
    assert await a.evaluate(busy, tasks(10, 3)) == [
        Action("scale_up", "g", 5, tuple(f"g-new{i}" for i in range(1, 6)), "shortfall")
    ]
    clock.now = 1
    assert await a.evaluate(busy, tasks(10, 3)) == []  # the 5 hosts starting will hold them
    clock.now = 2  # more tasks: 14 need 7; 5 are starting
    assert await a.evaluate(busy, tasks(14, 3)) == [Action("scale_up", "g", 2, ("g-new6", "g-new7"), "shortfall")]


def test_shortfall_adds_to_min_idle() -> None:
    a, _, _ = make(AutoscaleRule("g", min_idle=1, max_idle=10, cooldown=0, shape=SHAPE))
    assert a.decide([host("b1", busy=True)], tasks(10, 3)) == [Action("scale_up", "g", 6, (), "shortfall+min_idle")]


def test_shortfall_uses_the_engine_so_constraints_count() -> None:
    a, _, _ = make(AutoscaleRule("g", min_idle=0, max_idle=10, cooldown=0, shape=SHAPE))
    spread = tasks(3, 1, group="svc", hard_constraints=(UniqueByAttribute("hostname"),))
    # three 1-cpu tasks would fit one host, but one per host is wanted
    assert a.decide([], spread) == [Action("scale_up", "g", 3, (), "shortfall")]


def test_shortfall_picks_the_first_group_that_holds_each_task() -> None:
    small = AutoscaleRule("small", min_idle=0, max_idle=10, cooldown=0, shape={"cpus": 2, "mem": 2048})
    big = AutoscaleRule("big", min_idle=0, max_idle=10, cooldown=0, shape={"cpus": 16, "mem": 16384})
    a, _, _ = make(small, big)
    unplaced = [
        *tasks(4, 1, prefix="s"),
        *tasks(2, 10, prefix="b"),
        TaskRequest("pinned", cpus=1, hard_constraints=(AttributeValue("asg", equals="big"),)),
        TaskRequest("huge", cpus=32),
    ]
    # small: 4 x 1 cpu -> 2 hosts; big: 2 x 10 cpus -> 2 hosts (the pinned 1-cpu task joins one of them)
    assert a.decide([], unplaced) == [
        Action("scale_up", "small", 2, (), "shortfall"),
        Action("scale_up", "big", 2, (), "shortfall"),
    ]
    assert a.unfit == ("huge",)


async def test_shortfall_first_takes_back_drained_hosts() -> None:
    a, p, clock = make(AutoscaleRule("g", min_idle=0, max_idle=1, cooldown=0, shape=SHAPE))
    hosts = [host(f"h{i}", cpus=8, mem=8192) for i in range(1, 4)]
    assert await a.evaluate(hosts) == [Action("disable", "g", 2, ("h3", "h2"), "max_idle")]
    clock.now = 1
    # 6 tasks of 3 cpus need 3 hosts: h2 and h3 come back, and 1 new one
    assert await a.evaluate(a.mark_disabled(hosts), tasks(6, 3)) == [
        Action("enable", "g", 2, ("h2", "h3"), "capacity"),
        Action("scale_up", "g", 1, ("g-new1",), "shortfall"),
    ]
    assert a.disabled == frozenset()
    assert p.down == []


def test_hosts_needed_grows_rounds_and_stops_when_nothing_fits() -> None:
    rule = AutoscaleRule("g", shape={"cpus": 8, "mem": 8192})
    a, _, _ = make(rule)
    used, placed = a.hosts_needed(rule, tasks(10, 3), limit=100)
    assert (used, len(placed)) == (5, 10)
    one_each = tasks(20, 1, group="x", hard_constraints=(UniqueByAttribute("hostname"),))
    assert a.hosts_needed(rule, one_each, limit=100) == (20, {t.id for t in one_each})
    assert a.hosts_needed(rule, one_each, limit=7)[0] == 7
    assert a.hosts_needed(rule, [TaskRequest("x", cpus=9)], limit=10) == (0, set())


# ---------------------------------------------------------------------- provider failures
async def test_a_failed_release_keeps_the_hosts_disabled_and_is_retried() -> None:
    a, p, clock = make(AutoscaleRule("g", min_idle=0, max_idle=0, cooldown=0))
    hosts = [host("h1")]
    await a.evaluate(hosts)
    p.fail_down = True
    clock.now = 1
    [release] = await a.evaluate(a.mark_disabled(hosts))
    assert release.kind == "release" and "the cloud said no" in release.error
    assert a.disabled == {"h1"}
    p.fail_down = False
    clock.now = 2
    assert await a.evaluate(a.mark_disabled(hosts)) == [Action("release", "g", 1, ("h1",), "drained")]
    assert p.down == [("g", ["h1"])]


async def test_a_failed_scale_up_records_no_launch() -> None:
    async def fail(group: str, count: int) -> list[str]:
        raise RuntimeError("quota")

    clock = Clock()
    a = Autoscaler(
        [AutoscaleRule("g", min_idle=1, max_idle=1, cooldown=10)],
        "asg",
        CallbackProvider(fail, lambda g, h: None),
        clock,
    )
    [up] = await a.evaluate([])
    assert up.kind == "scale_up" and "quota" in up.error and a.starting("g") == 0
    clock.now = 10
    assert [x.kind for x in await a.evaluate([])] == ["scale_up"]


# ---------------------------------------------------------------------- providers
async def test_callback_provider_takes_plain_and_async_functions_and_routing_by_group() -> None:
    calls: list[tuple[str, object]] = []

    def up(group: str, count: int) -> list[str]:
        calls.append((group, count))
        return [f"{group}{i}" for i in range(count)]

    async def down(group: str, hostnames: list[str]) -> None:
        calls.append((group, hostnames))

    cb = CallbackProvider(up, down)
    assert isinstance(cb, ClusterProvider)
    router = ProviderPerGroup({"x": cb})
    assert await router.scale_up("x", 2) == ["x0", "x1"]
    await router.scale_down("x", ["x0"])
    assert calls == [("x", 2), ("x", ["x0"])]
    with pytest.raises(ValueError, match="no provider"):
        await router.scale_up("y", 1)


# ---------------------------------------------------------------------- wiring to a scheduler
@dataclass
class FakeScheduler:
    tasks: dict[str, TaskRequest] = field(default_factory=dict)
    disabled_hosts: set[str] = field(default_factory=set)
    after_run: object = None


async def test_attach_evaluates_after_each_run_and_keeps_disabled_hosts_in_sync() -> None:
    a, _p, clock = make(AutoscaleRule("g", min_idle=0, max_idle=0, cooldown=0, shape=SHAPE))
    sched = FakeScheduler()
    a.attach(sched)
    assert sched.after_run == a.after_run
    placed, left = TaskRequest("p", cpus=1), TaskRequest("u", cpus=3)
    sched.tasks = {"p": placed, "u": left}
    result = SchedulingResult(
        assignments=(Assignment(placed, "h1", "id-h1", ("o",)),),
        failures={"u": (Failure("h1", "resource", "cpus", "needs 3, has 1"),)},
    )
    job = a.after_run(result, [host("h1"), host("h2")])
    assert job is not None
    assert a.after_run(result, []) is None  # one evaluation at a time
    actions = await job
    # h1 got a task in this run: not idle; the unplaced 3-cpu task needs a new host; no scale down in that group
    assert actions == [Action("scale_up", "g", 1, ("g-new1",), "shortfall")]
    clock.now = 1
    job = a.after_run(SchedulingResult((), {}), [host("h1", busy=True), host("h2"), host("g-new1")])
    assert job is not None
    assert await job == [Action("disable", "g", 2, ("h2", "g-new1"), "max_idle")]
    assert sched.disabled_hosts == set(a.disabled) and sched.disabled_hosts


# ---------------------------------------------------------------------- properties
@st.composite
def rules(draw: st.DrawFn) -> AutoscaleRule:
    min_idle = draw(st.integers(0, 3))
    max_idle = draw(st.integers(min_idle, 4))
    min_size = draw(st.integers(0, 4))
    max_size = draw(st.none() | st.integers(min_size, 8))
    return AutoscaleRule(
        "g",
        min_idle=min_idle,
        max_idle=max_idle,
        cooldown=draw(st.sampled_from([0.0, 5.0, 20.0])),
        min_size=min_size,
        max_size=max_size,
        min_idle_resources={"cpus": 1},
        shape={"cpus": 4, "mem": 4096},
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules(), st.data())
def test_property_never_releases_a_busy_host_and_keeps_within_min_and_max_size(
    rule: AutoscaleRule, data: st.DataObject
) -> None:
    asyncio.run(_simulate(rule, data))


class NullDriver:
    """Takes the calls a PlacementScheduler makes while it is only fed offers and status updates."""

    def decline(self, offer_ids: Sequence[str], refuse_seconds: float | None = None) -> None:
        pass

    def revive(self) -> None:
        pass


def agent_offer(oid: str, name: str, zone: str, cpus: float) -> spb.Offer:
    attributes = [
        rpb.Attribute(name=k, type=rpb.Value.TEXT, text=rpb.Value.Text(value=v))
        for k, v in (("asg", "g"), ("zone", zone))
    ]
    resources = Resources.of(cpus=cpus, mem=4096).to_proto()
    return spb.Offer(id=oid, agent_id=f"id-{name}", hostname=name, resources=resources, attributes=attributes)


async def _simulate(rule: AutoscaleRule, data: st.DataObject) -> None:
    """The hosts come from a real PlacementScheduler fed offers and status updates, as in production: an idle host
    always has an offer (with an autoscaler attached, leases are kept until they expire and come straight back),
    a busy host often has none (all its resources used, or its offers declined). The autoscaler forgets a host it
    has not seen for 10 s, and the clock moves by up to 30 s between evaluations."""
    clock = Clock()
    provider = FakeProvider()
    a = Autoscaler([rule], "asg", provider, clock, launch_timeout=1e9, forget_after=10)
    sched = PlacementScheduler(PlacementEngine(), clock=clock)
    a.attach(sched)
    driver = cast(SchedulerDriver, NullDriver())
    zones = "abc"
    # the model: hosts that exist (name -> zone, running tasks, small?), hosts starting (not visible yet)
    present: dict[str, tuple[str, int, bool]] = {}
    for i in range(data.draw(st.integers(0, 7), label="initial hosts")):
        present[f"h{i}"] = (zones[i % 3], data.draw(st.integers(0, 2)), data.draw(st.booleans()) and i % 4 == 0)
    starting: list[str] = []
    task_ids: dict[str, list[str]] = {}
    offered: set[str] = set()
    serial = 0
    for _ in range(data.draw(st.integers(1, 8), label="evaluations")):
        clock.now += data.draw(st.sampled_from([0.0, 1.0, 5.0, 30.0]))
        # some starting hosts show up; tasks come and go, even on disabled hosts (a run racing the disable)
        arrive = data.draw(st.integers(0, len(starting)))
        for name in starting[:arrive]:
            present[name] = (zones[len(present) % 3], 0, False)
        del starting[:arrive]
        for name, (zone, running, small) in list(present.items()):
            delta = data.draw(st.sampled_from([0, 0, 1, -1]))
            present[name] = (zone, max(0, running + delta), small)
        # what the scheduler learns: offers, and status updates of the tasks that start and end
        for name, (zone, running, small) in sorted(present.items()):
            agent = f"id-{name}"
            cpus = 0.5 if small else 4
            serial += 1
            if agent not in offered:  # an agent is first known from its first offer
                offered.add(agent)
                await sched.offers(driver, [agent_offer(f"{name}-o{serial}", name, zone, cpus)])
            ids = task_ids.setdefault(name, [])
            while len(ids) < running:
                serial += 1
                tid = f"{name}-t{serial}"
                sched.submit(TaskRequest(tid, cpus=1))
                await sched.status_update(driver, tpb.TaskStatus(task_id=tid, state=tpb.TASK_RUNNING, agent_id=agent))
                ids.append(tid)
            while len(ids) > running:
                await sched.status_update(
                    driver, tpb.TaskStatus(task_id=ids.pop(), state=tpb.TASK_FINISHED, agent_id=agent)
                )
            lease = sched.leases.get(agent)
            for oid in list(lease.offers) if lease is not None else []:
                await sched.offer_rescinded(driver, oid)
            if running == 0 or data.draw(st.booleans(), label=f"{name} has an offer"):
                await sched.offers(driver, [agent_offer(f"{name}-o{serial}", name, zone, cpus)])
        view = sched.hosts()
        assert {h.hostname for h in view} == set(present)  # busy hosts without an offer too
        busy = {h.hostname for h in view if data.draw(st.integers(0, 9)) == 0}
        unplaced = tasks(data.draw(st.sampled_from([0, 0, 0, 1, 2, 6])), data.draw(st.sampled_from([1, 3, 5])))
        draining_before = set(a.disabled)
        size_before = len(present) + len(starting)
        effective_before = len(present) - len(draining_before & present.keys()) + len(starting)
        actions = await a.evaluate(view, unplaced, busy)
        by_name = {h.hostname: h for h in view}
        up = 0
        for act in actions:
            if act.kind in ("disable", "release"):
                for name in act.hostnames:
                    assert not by_name[name].running and name not in busy, f"{act.kind} of busy host {name}"
            if act.kind == "release":
                for name in act.hostnames:
                    assert by_name[name].disabled and name in draining_before
                    del present[name]
                    await sched.agent_lost(driver, f"id-{name}")
            if act.kind == "scale_up":
                up += act.count
                starting.extend(act.hostnames)
        if rule.max_size is not None:
            assert up == 0 or size_before + up <= rule.max_size, "grew above max size"
        effective_after = len(present) - len(a.disabled & present.keys()) + len(starting)
        assert effective_after >= min(rule.min_size, effective_before), "shrank below min size"


def test_a_host_disabled_by_someone_else_is_not_idle_capacity() -> None:
    a, _, _ = make(AutoscaleRule("g", min_idle=1, max_idle=1, cooldown=0))
    assert a.decide([host("h1", disabled=True), host("h2", busy=True)]) == [Action("scale_up", "g", 1, (), "min_idle")]


def test_set_rule_replaces_a_groups_rule() -> None:
    a, _, _ = make(AutoscaleRule("g", min_idle=0, max_idle=2, cooldown=0))
    hosts = [host("h1"), host("h2")]
    assert a.decide(hosts) == []
    a.set_rule(AutoscaleRule("g", min_idle=0, max_idle=0, cooldown=0))
    assert a.decide(hosts) == [Action("disable", "g", 2, ("h2", "h1"), "max_idle")]
    a.set_rule(AutoscaleRule("other", min_size=1))
    assert [r.group for r in a.rules] == ["g", "other"]
