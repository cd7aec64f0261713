"""`HierarchicalAllocator`: DRF between roles then frameworks, refusal filters, suppression, activation.

Time is passed explicitly as `now`; nothing sleeps."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from mesos_master.allocator import Allocation, HierarchicalAllocator, create_allocator
from scheduler_sdk.resources import UNRESERVED, Resources

P = Resources.parse


def make(**kwargs: float) -> HierarchicalAllocator:
    return HierarchicalAllocator(**kwargs)  # type: ignore[arg-type]


def by_fw(allocs: list[Allocation]) -> dict[str, list[Allocation]]:
    out: dict[str, list[Allocation]] = defaultdict(list)
    for a in allocs:
        out[a.framework_id].append(a)
    return out


def decline_all(alloc: HierarchicalAllocator, allocs: list[Allocation], now: float, refuse: float | None) -> None:
    for a in allocs:
        alloc.recover_resources(a.framework_id, a.agent_id, a.resources, refuse, now)


# ------------------------------------------------------------------------------------------- basics
def test_create_allocator_names() -> None:
    assert isinstance(create_allocator("drf"), HierarchicalAllocator)
    assert isinstance(create_allocator("hierarchical", allocation_interval=2.0), HierarchicalAllocator)
    with pytest.raises(ValueError, match="unknown allocator 'fifo'"):
        create_allocator("fifo")


def test_nothing_to_allocate_without_agents_or_frameworks() -> None:
    alloc = make()
    assert alloc.allocate(0) == []
    alloc.add_agent("a1", P("cpus:4;mem:1024"), {})
    assert alloc.allocate(0) == []
    alloc.remove_agent("a1")
    alloc.add_framework("f1", ["*"], {})
    assert alloc.allocate(0) == []


def test_whole_free_agent_is_offered_once() -> None:
    alloc = make()
    alloc.add_agent("a1", P("cpus:4;mem:1024;ports:[31000-32000]"), {})
    alloc.add_framework("f1", [], {})  # no roles means "*"
    [a] = alloc.allocate(0)
    assert a == Allocation("f1", UNRESERVED, "a1", P("cpus:4;mem:1024;ports:[31000-32000]"))
    assert alloc.allocated("f1") == a.resources
    # allocated until recovered: a second cycle offers nothing
    assert alloc.allocate(1) == []
    alloc.recover_resources("f1", "a1", P("cpus:1;ports:[31000-31009]"), None, 1)
    [b] = alloc.allocate(2)
    assert b.resources == P("cpus:1;ports:[31000-31009]")
    assert alloc.allocated("f1") == a.resources


def test_offer_never_exceeds_free_resources() -> None:
    alloc = make()
    alloc.add_agent("a1", P("cpus:4;mem:4096"), {})
    alloc.add_framework("f1", ["*"], {})
    alloc.add_framework("f2", ["*"], {})
    [a] = alloc.allocate(0)
    assert a.framework_id == "f1"
    assert alloc.allocate(1) == []  # f2 gets nothing: it is all offered to f1
    # f1 keeps a task of cpus:3;mem:1000 and gives back the rest
    alloc.recover_resources("f1", "a1", a.resources - P("cpus:3;mem:1000"), 0, 1)
    [b] = alloc.allocate(2)
    assert b.framework_id == "f2"
    assert b.resources == P("cpus:1;mem:3096")


def test_used_resources_reported_at_add_are_not_offered() -> None:
    alloc = make()
    alloc.add_framework("f1", ["*"], {})
    alloc.add_agent("a1", P("cpus:4;mem:4096"), {"f1": P("cpus:3;mem:1024")})
    alloc.add_framework("f2", ["*"], {"a1": P("cpus:0.5")})
    assert alloc.allocated("f1") == P("cpus:3;mem:1024")
    [a] = alloc.allocate(0)
    assert a.resources == P("cpus:0.5;mem:3072")
    assert alloc.allocated("f2") == P("cpus:1;mem:3072")  # what it used plus the offer
    alloc.add_used("f2", "a9", P("cpus:1"))  # unknown agent: ignored
    assert alloc.allocated("f2") == P("cpus:1;mem:3072")


# ------------------------------------------------------------------------------------------- minimum
@pytest.mark.parametrize(
    ("free", "offered"),
    [
        ("cpus:0.01", True),
        ("mem:32", True),
        ("cpus:0.009;mem:31", False),
        ("disk:100000", False),
        ("ports:[1-1000]", False),
        ("cpus:0.009;mem:32;disk:5", True),
    ],
)
def test_min_allocatable(free: str, offered: bool) -> None:
    alloc = make()
    alloc.add_agent("a1", P(free), {})
    alloc.add_framework("f1", ["*"], {})
    assert bool(alloc.allocate(0)) is offered


def test_leftover_below_minimum_is_not_offered() -> None:
    alloc = make()
    alloc.add_agent("a1", P("cpus:1;mem:1024"), {})
    alloc.add_framework("f1", ["*"], {})
    assert len(alloc.allocate(0)) == 1
    alloc.recover_resources("f1", "a1", P("cpus:0.005;mem:31"), 0, 0)
    assert alloc.allocate(1) == []
    alloc.recover_resources("f1", "a1", P("cpus:0.005"), 0, 1)
    [b] = alloc.allocate(2)
    assert b.resources == P("cpus:0.01;mem:31")


def test_custom_min_allocatable() -> None:
    alloc = make(min_allocatable=[P("cpus:1")])  # type: ignore[arg-type]
    alloc.add_agent("a1", P("cpus:0.5;mem:4096"), {})
    alloc.add_framework("f1", ["*"], {})
    assert alloc.allocate(0) == []


# ------------------------------------------------------------------------------------------- DRF
def run_drf(alloc: HierarchicalAllocator, demand: dict[str, Resources], cycles: int = 50) -> dict[str, int]:
    """Each framework launches one task per offer when it fits and declines the rest with refuse 0."""
    launched: dict[str, int] = defaultdict(int)
    idle = 0
    for cycle in range(cycles):
        progress = False
        for a in alloc.allocate(float(cycle)):
            task = demand[a.framework_id]
            if a.resources.contains(task):
                launched[a.framework_id] += 1
                progress = True
                alloc.recover_resources(a.framework_id, a.agent_id, a.resources - task, 0, float(cycle))
            else:
                alloc.recover_resources(a.framework_id, a.agent_id, a.resources, 0, float(cycle))
        idle = 0 if progress else idle + 1
        if idle >= 3:
            break
    return dict(launched)


@pytest.mark.parametrize("roles", [("*", "*"), ("ra", "rb")], ids=["same-role", "two-roles"])
def test_drf_paper_example(roles: tuple[str, str]) -> None:
    alloc = make()
    total = P("cpus:9;mem:18432")
    alloc.add_agent("a1", total, {})
    alloc.add_framework("A", [roles[0]], {})
    alloc.add_framework("B", [roles[1]], {})
    demand = {"A": P("cpus:1;mem:4096"), "B": P("cpus:3;mem:1024")}
    launched = run_drf(alloc, demand)
    assert launched == {"A": 3, "B": 2}
    assert alloc.allocated("A") == P("cpus:3;mem:12288")
    assert alloc.allocated("B") == P("cpus:6;mem:2048")
    assert alloc.allocated("A").dominant_share(total) == pytest.approx(2 / 3)
    assert alloc.allocated("B").dominant_share(total) == pytest.approx(2 / 3)


def test_drf_spreads_agents_between_two_frameworks() -> None:
    alloc = make()
    for i in range(10):
        alloc.add_agent(f"a{i}", P("cpus:4;mem:8192"), {})
    alloc.add_framework("f1", ["*"], {})
    alloc.add_framework("f2", ["*"], {})
    allocs = alloc.allocate(0)
    counts = {fid: len(v) for fid, v in by_fw(allocs).items()}
    assert counts == {"f1": 5, "f2": 5}
    assert len({a.agent_id for a in allocs}) == 10


def test_drf_many_agents_roughly_equal_dominant_shares() -> None:
    alloc = make()
    total = Resources.empty()
    for i in range(20):
        r = P("cpus:8;mem:16384")
        total = total + r
        alloc.add_agent(f"a{i:02}", r, {})
    alloc.add_framework("cpu-heavy", ["*"], {})
    alloc.add_framework("mem-heavy", ["*"], {})
    demand = {"cpu-heavy": P("cpus:2;mem:512"), "mem-heavy": P("cpus:0.5;mem:4096")}
    launched = run_drf(alloc, demand, cycles=200)
    assert launched["cpu-heavy"] > 10 and launched["mem-heavy"] > 10
    share_c = alloc.allocated("cpu-heavy").dominant_share(total)
    share_m = alloc.allocated("mem-heavy").dominant_share(total)
    biggest_task = max(d.dominant_share(total) for d in demand.values())
    assert abs(share_c - share_m) <= biggest_task + 1e-9
    assert min(share_c, share_m) > 0.4


def test_drf_between_roles_before_frameworks() -> None:
    """Role r1 has two frameworks and r2 one: each role gets half, and r1 splits its half."""
    alloc = make()
    for i in range(12):
        alloc.add_agent(f"a{i:02}", P("cpus:2;mem:2048"), {})
    alloc.add_framework("fa", ["r1"], {})
    alloc.add_framework("fb", ["r1"], {})
    alloc.add_framework("fc", ["r2"], {})
    counts = {fid: len(v) for fid, v in by_fw(alloc.allocate(0)).items()}
    assert counts == {"fa": 3, "fb": 3, "fc": 6}


def test_reserved_resources_go_only_to_their_role() -> None:
    alloc = make()
    alloc.add_agent("a1", P("cpus:2;mem:64;cpus(eng):2;mem(eng):64"), {})
    alloc.add_framework("ml", ["ml"], {})
    [a] = alloc.allocate(0)
    assert a == Allocation("ml", "ml", "a1", P("cpus:2;mem:64"))
    assert alloc.allocate(1) == []  # the eng reservation stays unoffered
    alloc.remove_framework("ml")
    alloc.add_framework("eng", ["eng"], {})
    [b] = alloc.allocate(2)
    assert b == Allocation("eng", "eng", "a1", P("cpus:2;mem:64;cpus(eng):2;mem(eng):64"))


@pytest.mark.parametrize("role", ["eng", "eng/prod"])
def test_reserved_only_resources_are_offered_to_their_role(role: str) -> None:
    alloc = make()
    alloc.add_agent("a1", P("cpus(eng):4;mem(eng):1024"), {})
    alloc.add_framework("f1", [role], {})
    assert alloc.allocate(0) == [Allocation("f1", role, "a1", P("cpus(eng):4;mem(eng):1024"))]


def test_recover_charges_the_role_the_offer_was_made_for() -> None:
    alloc = make()
    alloc.add_agent("a1", P("cpus:4;mem:1024"), {})
    alloc.add_framework("f", ["r1", "r2"], {})
    [first] = alloc.allocate(0)
    assert first.role == "r1"
    # f keeps cpus:2 as a task under r1 and gives back the rest
    alloc.recover_resources("f", "a1", P("cpus:2;mem:1024"), None, 0, role=first.role)
    [second] = alloc.allocate(1)
    assert (second.role, second.resources) == ("r2", P("cpus:2;mem:1024"))  # r2 holds less: r2 goes first
    alloc.recover_resources("f", "a1", second.resources, None, 1, role=second.role)  # declines the r2 offer
    # r1 still holds the task, r2 nothing: r2 must again come first
    [third] = alloc.allocate(2)
    assert third.role == "r2"


# ------------------------------------------------------------------------------------------- filters
def test_decline_filters_agent_for_that_framework_until_expiry() -> None:
    alloc = make(allocation_interval=1.0)
    alloc.add_agent("a1", P("cpus:4;mem:1024"), {})
    alloc.add_framework("f1", ["*"], {})
    alloc.add_framework("f2", ["*"], {})
    [a] = alloc.allocate(0)
    assert a.framework_id == "f1"
    alloc.recover_resources("f1", "a1", a.resources, 5.0, 0)
    # filtered for f1 until now + 5; f2 (behind f1 on a tie) gets it instead
    [b] = alloc.allocate(1)
    assert b.framework_id == "f2"
    alloc.recover_resources("f2", "a1", b.resources, None, 1)  # no filter for f2
    [c] = alloc.allocate(4.999)
    assert c.framework_id == "f2"
    alloc.recover_resources("f2", "a1", c.resources, None, 4.999)
    [d] = alloc.allocate(5.0)
    assert d.framework_id == "f1"


def test_filter_expires_and_agent_comes_back() -> None:
    alloc = make(allocation_interval=1.0)
    alloc.add_agent("a1", P("cpus:4;mem:1024"), {})
    alloc.add_framework("f1", ["*"], {})
    [a] = alloc.allocate(10)
    alloc.recover_resources("f1", "a1", a.resources, 3.0, 10)
    assert alloc.allocate(11) == []
    assert alloc.allocate(12.99) == []
    [b] = alloc.allocate(13)
    assert b.resources == a.resources


def test_short_refusal_lasts_at_least_one_allocation_interval() -> None:
    alloc = make(allocation_interval=2.0)
    alloc.add_agent("a1", P("cpus:4;mem:1024"), {})
    alloc.add_framework("f1", ["*"], {})
    [a] = alloc.allocate(0)
    alloc.recover_resources("f1", "a1", a.resources, 0.1, 0)
    assert alloc.allocate(1.5) == []  # expiry is now + max(0.1, 2.0)
    assert alloc.allocate(2.0) != []


@pytest.mark.parametrize("refuse", [None, 0.0, -1.0])
def test_no_filter_without_positive_refusal(refuse: float | None) -> None:
    alloc = make()
    alloc.add_agent("a1", P("cpus:4;mem:1024"), {})
    alloc.add_framework("f1", ["*"], {})
    [a] = alloc.allocate(0)
    alloc.recover_resources("f1", "a1", a.resources, refuse, 0)
    assert len(alloc.allocate(0)) == 1


def test_filter_only_covers_what_was_refused() -> None:
    """Mesos' semantics: a filter holds back offers that are a subset of what was declined."""
    alloc = make()
    alloc.add_agent("a1", P("cpus:4;mem:1024"), {})
    alloc.add_framework("f1", ["*"], {})
    assert len(alloc.allocate(0)) == 1
    alloc.recover_resources("f1", "a1", P("cpus:1;mem:512"), 100, 0)  # declines part, keeps the rest
    assert alloc.allocate(1) == []
    alloc.recover_resources("f1", "a1", P("cpus:3;mem:512"), None, 1)  # a task ends: more is free now
    [b] = alloc.allocate(2)
    assert b.resources == P("cpus:4;mem:1024")


def test_filters_are_per_agent() -> None:
    alloc = make()
    alloc.add_agent("a1", P("cpus:4;mem:1024"), {})
    alloc.add_agent("a2", P("cpus:4;mem:1024"), {})
    alloc.add_framework("f1", ["*"], {})
    allocs = alloc.allocate(0)
    assert len(allocs) == 2
    a1 = next(a for a in allocs if a.agent_id == "a1")
    a2 = next(a for a in allocs if a.agent_id == "a2")
    alloc.recover_resources("f1", "a1", a1.resources, 100, 0)
    alloc.recover_resources("f1", "a2", a2.resources, None, 0)
    assert [a.agent_id for a in alloc.allocate(1)] == ["a2"]


def test_revive_clears_filters() -> None:
    alloc = make()
    alloc.add_agent("a1", P("cpus:4;mem:1024"), {})
    alloc.add_framework("f1", ["*"], {})
    [a] = alloc.allocate(0)
    alloc.recover_resources("f1", "a1", a.resources, 1000, 0)
    assert alloc.allocate(1) == []
    alloc.revive_offers("f1")
    [b] = alloc.allocate(2)
    assert b.framework_id == "f1"


def test_remove_agent_clears_its_filters() -> None:
    alloc = make()
    alloc.add_agent("a1", P("cpus:4;mem:1024"), {})
    alloc.add_framework("f1", ["*"], {})
    [a] = alloc.allocate(0)
    alloc.recover_resources("f1", "a1", a.resources, 1000, 0)
    alloc.remove_agent("a1")
    alloc.add_agent("a1", P("cpus:4;mem:1024"), {})
    assert len(alloc.allocate(1)) == 1


# ------------------------------------------------------------------------------------------- suppress, activation
def test_suppressed_framework_gets_nothing_until_revived() -> None:
    alloc = make()
    alloc.add_agent("a1", P("cpus:4;mem:1024"), {})
    alloc.add_framework("f1", ["*"], {})
    alloc.suppress_offers("f1")
    assert alloc.is_suppressed("f1")
    assert alloc.allocate(0) == []
    alloc.add_framework("f2", ["*"], {})
    [a] = alloc.allocate(1)
    assert a.framework_id == "f2"
    alloc.recover_resources("f2", "a1", a.resources, None, 1)
    alloc.revive_offers("f1")
    assert not alloc.is_suppressed("f1")
    [b] = alloc.allocate(2)
    assert b.framework_id == "f1"


def test_suppress_one_role_of_a_multi_role_framework() -> None:
    alloc = make()
    alloc.add_agent("a1", P("cpus:4;mem:1024"), {})
    alloc.add_framework("f1", ["ra", "rb"], {})
    alloc.suppress_offers("f1", ["ra"])
    assert not alloc.is_suppressed("f1")
    [a] = alloc.allocate(0)
    assert (a.framework_id, a.role) == ("f1", "rb")
    alloc.suppress_offers("f1", ["rb"])
    assert alloc.is_suppressed("f1")


def test_deactivated_framework_gets_nothing() -> None:
    alloc = make()
    alloc.add_agent("a1", P("cpus:4;mem:1024"), {})
    alloc.add_framework("f1", ["*"], {}, active=False)
    assert alloc.allocate(0) == []
    alloc.activate_framework("f1")
    [a] = alloc.allocate(1)
    alloc.recover_resources("f1", "a1", a.resources, 1000, 1)
    alloc.deactivate_framework("f1")  # deactivation also drops its filters
    assert alloc.allocate(2) == []
    alloc.activate_framework("f1")
    assert len(alloc.allocate(3)) == 1


def test_deactivated_agent_is_not_offered() -> None:
    alloc = make()
    alloc.add_agent("a1", P("cpus:4;mem:1024"), {})
    alloc.add_agent("a2", P("cpus:2;mem:1024"), {})
    alloc.add_framework("f1", ["*"], {})
    alloc.deactivate_agent("a1")
    assert [a.agent_id for a in alloc.allocate(0)] == ["a2"]
    alloc.activate_agent("a1")
    assert [a.agent_id for a in alloc.allocate(1)] == ["a1"]


def test_remove_framework_frees_its_resources() -> None:
    alloc = make()
    alloc.add_agent("a1", P("cpus:4;mem:1024"), {})
    alloc.add_framework("f1", ["*"], {})
    alloc.add_framework("f2", ["*"], {})
    [a] = alloc.allocate(0)
    assert a.framework_id == "f1"
    alloc.remove_framework("f1")
    assert alloc.allocated("f1") == Resources.empty()
    [b] = alloc.allocate(1)
    assert (b.framework_id, b.resources) == ("f2", P("cpus:4;mem:1024"))
    alloc.remove_framework("nope")  # unknown: no error


def test_recover_after_agent_removed_is_harmless() -> None:
    alloc = make()
    alloc.add_agent("a1", P("cpus:4;mem:1024"), {})
    alloc.add_framework("f1", ["*"], {})
    [a] = alloc.allocate(0)
    alloc.remove_agent("a1")
    assert alloc.allocated("f1") == Resources.empty()
    alloc.recover_resources("f1", "a1", a.resources, 10, 0)
    alloc.recover_resources("ghost", "a1", a.resources, 10, 0)
    alloc.add_agent("a1", P("cpus:4;mem:1024"), {})
    assert len(alloc.allocate(1)) == 1


def test_agent_order_rotates_between_cycles() -> None:
    alloc = make()
    for aid in ("a1", "a2", "a3"):
        alloc.add_agent(aid, P("cpus:1;mem:64"), {})
    alloc.add_framework("f1", ["*"], {})
    alloc.add_framework("f2", ["*"], {})
    firsts = []
    for t in range(3):
        allocs = alloc.allocate(t)
        firsts.append(allocs[0].agent_id)
        decline_all(alloc, allocs, t, None)
    assert sorted(firsts) == ["a1", "a2", "a3"]


# ------------------------------------------------------------------------------------------- random sequences
AGENT_IDS = ["a0", "a1", "a2"]
FW_IDS = ["f0", "f1", "f2"]
ROLE_CHOICES = [("*",), ("eng",), ("*", "eng"), ("ml", "eng")]

agent_totals = st.builds(
    lambda c, m, reserved, p: P(f"cpus:{c};mem:{m};ports:[{p}-{p + 9}]") + reserved,
    st.integers(1, 8),
    st.integers(32, 4096),
    st.sampled_from([Resources.empty(), P("cpus(eng):2"), P("mem(ml):512;cpus(ml):1")]),
    st.integers(1000, 2000),
)


class AllocatorMachine(RuleBasedStateMachine):
    """Random events; the model tracks what each framework holds per agent (offers and tasks)."""

    @initialize()
    def setup(self) -> None:
        self.alloc = make(allocation_interval=1.0)
        self.now = 0.0
        self.agents: dict[str, Resources] = {}
        self.frameworks: dict[str, tuple[str, ...]] = {}
        self.offers: list[Allocation] = []
        self.tasks: list[tuple[str, str, Resources]] = []

    # --------------------------------------------------------------- helpers
    def held_on(self, agent_id: str) -> Resources:
        held = Resources.empty()
        for o in self.offers:
            if o.agent_id == agent_id:
                held = held + o.resources
        for _fid, aid, res in self.tasks:
            if aid == agent_id:
                held = held + res
        return held

    def forget(self, *, agent_id: str | None = None, framework_id: str | None = None) -> None:
        def keep(fid: str, aid: str) -> bool:
            return aid != agent_id and fid != framework_id

        self.offers = [o for o in self.offers if keep(o.framework_id, o.agent_id)]
        self.tasks = [t for t in self.tasks if keep(t[0], t[1])]

    # --------------------------------------------------------------- rules
    @rule(agent_id=st.sampled_from(AGENT_IDS), total=agent_totals)
    def add_agent(self, agent_id: str, total: Resources) -> None:
        if agent_id in self.agents:
            return
        self.agents[agent_id] = total
        self.alloc.add_agent(agent_id, total, {})

    @rule(agent_id=st.sampled_from(AGENT_IDS))
    def remove_agent(self, agent_id: str) -> None:
        self.agents.pop(agent_id, None)
        self.alloc.remove_agent(agent_id)
        self.forget(agent_id=agent_id)

    @rule(agent_id=st.sampled_from(AGENT_IDS), active=st.booleans())
    def toggle_agent(self, agent_id: str, active: bool) -> None:
        (self.alloc.activate_agent if active else self.alloc.deactivate_agent)(agent_id)

    @rule(framework_id=st.sampled_from(FW_IDS), roles=st.sampled_from(ROLE_CHOICES))
    def add_framework(self, framework_id: str, roles: tuple[str, ...]) -> None:
        if framework_id in self.frameworks:
            return
        self.frameworks[framework_id] = roles
        self.alloc.add_framework(framework_id, roles, {})

    @rule(framework_id=st.sampled_from(FW_IDS))
    def remove_framework(self, framework_id: str) -> None:
        self.frameworks.pop(framework_id, None)
        self.alloc.remove_framework(framework_id)
        self.forget(framework_id=framework_id)

    @rule(framework_id=st.sampled_from(FW_IDS), active=st.booleans())
    def toggle_framework(self, framework_id: str, active: bool) -> None:
        (self.alloc.activate_framework if active else self.alloc.deactivate_framework)(framework_id)

    @rule(framework_id=st.sampled_from(FW_IDS), suppress=st.booleans())
    def suppress_or_revive(self, framework_id: str, suppress: bool) -> None:
        (self.alloc.suppress_offers if suppress else self.alloc.revive_offers)(framework_id)

    @rule(dt=st.sampled_from([0.0, 0.5, 1.0, 5.0]))
    def allocate(self, dt: float) -> None:
        self.now += dt
        for a in self.alloc.allocate(self.now):
            assert a.framework_id in self.frameworks
            assert a.agent_id in self.agents
            assert a.role in self.frameworks[a.framework_id]
            assert a.resources, "empty allocation"
            assert a.resources == a.resources.allocatable_to(a.role)
            total = self.agents[a.agent_id]
            held = self.held_on(a.agent_id)
            assert total.contains(held + a.resources), (
                f"offered {a.resources} on {a.agent_id} ({total}) while {held} is held"
            )
            self.offers.append(a)

    @precondition(lambda self: self.offers)
    @rule(data=st.data(), refuse=st.sampled_from([None, 0.0, 0.5, 3.0]))
    def decline(self, data: st.DataObject, refuse: float | None) -> None:
        o = self.offers.pop(data.draw(st.integers(0, len(self.offers) - 1)))
        self.alloc.recover_resources(o.framework_id, o.agent_id, o.resources, refuse, self.now)

    @precondition(lambda self: self.offers)
    @rule(data=st.data(), refuse=st.sampled_from([None, 0.0, 2.0]))
    def accept_part(self, data: st.DataObject, refuse: float | None) -> None:
        o = self.offers.pop(data.draw(st.integers(0, len(self.offers) - 1)))
        name = data.draw(st.sampled_from(sorted(o.resources.names())))
        used = o.resources.only(name)
        self.tasks.append((o.framework_id, o.agent_id, used))
        self.alloc.recover_resources(o.framework_id, o.agent_id, o.resources - used, refuse, self.now)

    @precondition(lambda self: self.tasks)
    @rule(data=st.data())
    def finish_task(self, data: st.DataObject) -> None:
        fid, aid, res = self.tasks.pop(data.draw(st.integers(0, len(self.tasks) - 1)))
        self.alloc.recover_resources(fid, aid, res, None, self.now)

    # --------------------------------------------------------------- invariants
    @invariant()
    def agents_never_overcommitted(self) -> None:
        for agent_id, total in self.agents.items():
            assert total.contains(self.held_on(agent_id))

    @invariant()
    def allocator_agrees_with_model(self) -> None:
        for fid in self.frameworks:
            mine = Resources.empty()
            for o in self.offers:
                if o.framework_id == fid:
                    mine = mine + o.resources
            for t in self.tasks:
                if t[0] == fid:
                    mine = mine + t[2]
            assert self.alloc.allocated(fid) == mine


TestAllocatorMachine = AllocatorMachine.TestCase
TestAllocatorMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


def test_gpu_agents_are_offered_only_to_gpu_aware_frameworks() -> None:
    alloc = make()
    alloc.add_agent("gpu", P("cpus:4;mem:1024;gpus:2"), {})
    alloc.add_agent("plain", P("cpus:4;mem:1024"), {})
    alloc.add_framework("cpu-only", ["*"], {})
    alloc.add_framework("ml", ["*"], {}, gpu_aware=True)
    got = {(a.framework_id, a.agent_id) for a in alloc.allocate(0)}
    assert ("cpu-only", "gpu") not in got
    assert ("ml", "gpu") in got


def test_constraints_on_shared_attributes_and_on_the_hostname() -> None:
    """Agents with the same attributes share one record of them; a constraint on the hostname is still decided
    per agent."""
    from mesos_master.allocator import AttributeMatch, OfferConstraints

    alloc = HierarchicalAllocator()
    for i in range(4):
        alloc.add_agent(f"a{i}", Resources.parse("cpus:1;mem:64"), {}, attributes={"hostname": f"h{i}", "zone": "z"})
    assert alloc._agents["a0"].attributes is alloc._agents["a3"].attributes
    by_host = OfferConstraints((AttributeMatch("hostname", in_=("h1", "h2")),))
    alloc.add_framework("f", ["*"], {}, constraints=by_host)
    assert sorted(a.agent_id for a in alloc.allocate(0)) == ["a1", "a2"]
    in_zone = OfferConstraints((AttributeMatch("zone", equals="z"),))
    alloc.add_framework("g", ["*"], {}, constraints=in_zone)
    assert sorted(a.agent_id for a in alloc.allocate(1)) == ["a0", "a3"]
