"""Allocator scenarios: policies (drf, fair, priority, random, plugins), hierarchy, weights, quota (guarantees,
headroom, limits), reservations (static and dynamic), filters per role, offer constraints, per-role minimums,
revocation decisions, the incremental cycle and metrics. Time is passed explicitly; nothing sleeps."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import pytest

from mesos_master.allocator import (
    Allocation,
    AttributeMatch,
    DRFSorter,
    FairSorter,
    HierarchicalAllocator,
    OfferConstraints,
    PrioritySorter,
    Quota,
    RandomSorter,
    Sorter,
    available_allocators,
    create_allocator,
)
from scheduler_sdk.resources import UNRESERVED, Resources

P = Resources.parse
AGENT = "cpus:4;mem:4096"
REPO = Path(__file__).resolve().parents[4]


def make(sorter: Sorter | None = None, **kwargs: object) -> HierarchicalAllocator:
    return HierarchicalAllocator(sorter=sorter, **kwargs)  # type: ignore[arg-type]


def agents(alloc: HierarchicalAllocator, n: int, res: str = AGENT, prefix: str = "a", **attrs: str) -> list[str]:
    ids = [f"{prefix}{i:02}" for i in range(n)]
    for aid in ids:
        alloc.add_agent(aid, P(res), {}, attributes=attrs or None)
    return ids


def count(allocs: list[Allocation], by: str = "framework_id") -> dict[str, int]:
    return dict(Counter(getattr(a, by) for a in allocs))


def total_of(allocs: list[Allocation], **match: str) -> Resources:
    out = Resources.empty()
    for a in allocs:
        if all(getattr(a, k) == v for k, v in match.items()):
            out = out + a.resources
    return out


def decline(alloc: HierarchicalAllocator, allocs: list[Allocation], now: float, refuse: float | None) -> None:
    for a in allocs:
        alloc.recover_resources(a.framework_id, a.agent_id, a.resources, refuse, now, role=a.role)


def run_tasks(
    alloc: HierarchicalAllocator, demand: dict[str, Resources], cycles: int = 60, refuse: float = 0
) -> dict[str, int]:
    """Each framework launches one task per offer when it fits and declines the rest."""
    launched: dict[str, int] = defaultdict(int)
    idle = 0
    for cycle in range(cycles):
        now = float(cycle)
        progress = False
        for a in alloc.allocate(now):
            task = demand[a.framework_id]
            if a.resources.contains(task):
                launched[a.framework_id] += 1
                progress = True
                alloc.recover_resources(a.framework_id, a.agent_id, a.resources - task, refuse, now, role=a.role)
            else:
                alloc.recover_resources(a.framework_id, a.agent_id, a.resources, refuse, now, role=a.role)
        idle = 0 if progress else idle + 1
        if idle >= 3:
            break
    return dict(launched)


# ------------------------------------------------------------------------------------------- policies by name
def test_create_allocator_builds_each_policy() -> None:
    assert isinstance(create_allocator("drf").sorter, DRFSorter)  # type: ignore[attr-defined]
    fair = create_allocator("fair", fair_resource="mem", allocation_interval=2.0)
    assert isinstance(fair, HierarchicalAllocator) and isinstance(fair.sorter, FairSorter)
    assert fair.sorter.resource == "mem" and fair.allocation_interval == 2.0
    prio = create_allocator("priority", priorities=["ads", "eng"], revocation=True)
    assert isinstance(prio, HierarchicalAllocator) and isinstance(prio.sorter, PrioritySorter) and prio.revocation
    rnd = create_allocator("random", seed=7)
    assert isinstance(rnd, HierarchicalAllocator) and isinstance(rnd.sorter, RandomSorter) and rnd.sorter.seed == 7
    # The master may pass every policy option whatever the policy: those a policy does not take are dropped.
    drf = create_allocator("drf", fair_resource="cpus", seed=3, priorities=None, allocation_interval=0.5)
    assert isinstance(drf, HierarchicalAllocator) and drf.allocation_interval == 0.5
    with pytest.raises(TypeError):
        create_allocator("drf", bogus=1)


def test_unknown_allocator_lists_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown allocator 'nope': known allocators are drf, fair, hierarchical"):
        create_allocator("nope")
    assert {"drf", "fair", "priority", "random"} <= set(available_allocators())


@pytest.fixture
def plugin_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary dist-info on sys.path declaring the example plugin (and a whole-allocator plugin)."""
    dist = tmp_path / "aiomesos_arrival-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: aiomesos-arrival\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text(
        "[aiomesos.allocators]\n"
        "arrival = aiomesos_arrival:ArrivalSorter\n"
        "whole = mesos_master.allocator.hierarchical:HierarchicalAllocator\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(REPO / "docs" / "examples" / "allocator_plugin"))
    return tmp_path


def test_entry_point_plugin_is_found_and_works(plugin_path: Path) -> None:
    assert "arrival" in available_allocators()
    alloc = create_allocator("arrival", allocation_interval=2.0, fair_resource="cpus")
    assert isinstance(alloc, HierarchicalAllocator)
    assert type(alloc.sorter).__name__ == "ArrivalSorter" and alloc.allocation_interval == 2.0
    # First come, first served: the first framework gets every agent, whatever it holds.
    agents(alloc, 4)
    alloc.add_framework("first", ["*"], {})
    alloc.add_framework("second", ["*"], {})
    assert count(alloc.allocate(0)) == {"first": 4}
    whole = create_allocator("whole", allocation_interval=3.0, seed=1)
    assert isinstance(whole, HierarchicalAllocator) and whole.allocation_interval == 3.0
    with pytest.raises(ValueError, match="arrival"):
        create_allocator("missing")


# ------------------------------------------------------------------------------------------- the DRF paper per policy
DRF_DEMAND = {"A": P("cpus:1;mem:4096"), "B": P("cpus:3;mem:1024")}


@pytest.mark.parametrize("roles", [("*", "*"), ("ra", "rb")], ids=["same-role", "two-roles"])
def test_drf_paper_example(roles: tuple[str, str]) -> None:
    alloc = make(DRFSorter())
    alloc.add_agent("a1", P("cpus:9;mem:18432"), {})
    alloc.add_framework("A", [roles[0]], {})
    alloc.add_framework("B", [roles[1]], {})
    assert run_tasks(alloc, DRF_DEMAND) == {"A": 3, "B": 2}
    total = P("cpus:9;mem:18432")
    assert alloc.allocated("A").dominant_share(total) == pytest.approx(2 / 3)
    assert alloc.allocated("B").dominant_share(total) == pytest.approx(2 / 3)


def test_drf_paper_example_with_fair_cpus() -> None:
    """Fair sharing of cpus alone evens out cpus (A 4, B 3) and ignores that A holds most of the memory."""
    alloc = make(FairSorter("cpus"))
    alloc.add_agent("a1", P("cpus:9;mem:18432"), {})
    alloc.add_framework("A", ["ra"], {})
    alloc.add_framework("B", ["rb"], {})
    assert run_tasks(alloc, DRF_DEMAND) == {"A": 4, "B": 1}
    assert alloc.allocated("A").scalar("cpus") == 4 and alloc.allocated("B").scalar("cpus") == 3


def test_fair_on_memory_favours_the_cpu_heavy_framework() -> None:
    alloc = make(FairSorter("mem"))
    alloc.add_agent("a1", P("cpus:9;mem:18432"), {})
    alloc.add_framework("A", ["ra"], {})
    alloc.add_framework("B", ["rb"], {})
    launched = run_tasks(alloc, DRF_DEMAND)
    # B's tasks use little memory, so it keeps coming first until cpus run out: B 3 tasks (9 cpus... minus A's).
    assert launched["B"] >= 2 and launched["B"] > launched.get("A", 0) - 1


def test_drf_paper_example_with_priority() -> None:
    """Strict priority: A's role first; B gets only what A declines (with a filter) or cannot use."""
    alloc = make(PrioritySorter(["ra", "rb"]))
    alloc.add_agent("a1", P("cpus:9;mem:18432"), {})
    alloc.add_framework("A", ["ra"], {})
    alloc.add_framework("B", ["rb"], {})
    launched: Counter[str] = Counter()
    for t in range(30):
        for a in alloc.allocate(float(t)):
            task = DRF_DEMAND[a.framework_id]
            if a.resources.contains(task):
                launched[a.framework_id] += 1
                alloc.recover_resources(a.framework_id, a.agent_id, a.resources - task, 0, float(t), role=a.role)
            else:  # nothing fits: decline for a while
                alloc.recover_resources(a.framework_id, a.agent_id, a.resources, 100, float(t), role=a.role)
    assert launched == {"A": 4, "B": 1}  # A takes all the memory it can; B gets what A cannot use


# ------------------------------------------------------------------------------------------- priority, random
def test_priority_list_weights_and_mapping() -> None:
    alloc = make(PrioritySorter(["ads", "eng"]))
    agents(alloc, 6)
    alloc.add_framework("e", ["eng"], {})
    alloc.add_framework("a", ["ads"], {})
    alloc.add_framework("o", ["other"], {})
    first = alloc.allocate(0)
    assert count(first) == {"a": 6}  # strictly first, however much it already holds
    decline(alloc, first, 0, 100)  # ads declines with a long filter: eng is next
    second = alloc.allocate(1)
    assert count(second) == {"e": 6}
    decline(alloc, second, 1, 100)  # then the unlisted role
    assert count(alloc.allocate(2)) == {"o": 6}
    # weights as priorities when no list is given
    w = make(PrioritySorter())
    agents(w, 3)
    w.add_framework("lo", ["batch"], {})
    w.add_framework("hi", ["web"], {})
    w.update_weights({"web": 10, "batch": 1})
    assert count(w.allocate(0)) == {"hi": 3}
    m = make(PrioritySorter({"batch": 5, "web": 1}))
    agents(m, 3)
    m.add_framework("lo", ["batch"], {})
    m.add_framework("hi", ["web"], {})
    assert count(m.allocate(0)) == {"lo": 3}


def test_priority_lower_role_gets_what_higher_declines() -> None:
    alloc = make(PrioritySorter(["ads", "eng"]))
    agents(alloc, 4)
    alloc.add_framework("a", ["ads"], {})
    alloc.add_framework("e", ["eng"], {})
    first = alloc.allocate(0)
    assert count(first) == {"a": 4}
    decline(alloc, first, 0, 100)
    assert count(alloc.allocate(1)) == {"e": 4}


def _random_run(seed: int) -> list[tuple[str, str]]:
    alloc = make(RandomSorter(seed))
    agents(alloc, 12)
    for f in range(4):
        alloc.add_framework(f"f{f}", [f"r{f % 2}"], {})
    out: list[tuple[str, str]] = []
    for t in range(5):
        allocs = alloc.allocate(float(t))
        out.extend((a.agent_id, a.framework_id) for a in allocs)
        decline(alloc, allocs, float(t), None)
    return out


def test_random_is_deterministic_per_seed() -> None:
    assert _random_run(1) == _random_run(1)
    runs = {tuple(_random_run(seed)) for seed in range(5)}
    assert len(runs) > 1


def test_random_honours_weights() -> None:
    alloc = make(RandomSorter(3))
    alloc.add_agent("a", P(AGENT), {})
    alloc.add_framework("heavy", ["h"], {})
    alloc.add_framework("light", ["l"], {})
    alloc.update_weights({"h": 3})
    firsts: Counter[str] = Counter()
    for t in range(400):
        [a] = alloc.allocate(float(t))
        firsts[a.role] += 1
        decline(alloc, [a], float(t), None)
    assert 2.0 < firsts["h"] / firsts["l"] < 4.5


# ------------------------------------------------------------------------------------------- hierarchy, weights
def test_hierarchy_drf_between_top_level_roles_then_children() -> None:
    alloc = make()
    agents(alloc, 12)
    alloc.add_framework("prod", ["eng/prod"], {})
    alloc.add_framework("dev", ["eng/dev"], {})
    alloc.add_framework("ads", ["ads"], {})
    assert count(alloc.allocate(0)) == {"prod": 3, "dev": 3, "ads": 6}
    assert alloc.role_allocation("eng") == P("cpus:24;mem:24576")


def test_hierarchy_role_with_its_own_frameworks_and_a_child() -> None:
    alloc = make()
    agents(alloc, 8)
    alloc.add_framework("eng", ["eng"], {})
    alloc.add_framework("prod", ["eng/prod"], {})
    alloc.add_framework("ads", ["ads"], {})
    assert count(alloc.allocate(0)) == {"eng": 2, "prod": 2, "ads": 4}


def test_framework_with_several_roles() -> None:
    alloc = make()
    agents(alloc, 6)
    alloc.add_framework("multi", ["x", "y"], {})
    alloc.add_framework("solo", ["z"], {})
    got = alloc.allocate(0)
    assert count(got, "role") == {"x": 2, "y": 2, "z": 2}
    assert count(got) == {"multi": 4, "solo": 2}


@pytest.mark.parametrize(("wa", "wb", "ga", "gb"), [(2, 1, 8, 4), (1, 1, 6, 6), (3, 1, 9, 3)])
def test_weights_split_agents(wa: float, wb: float, ga: int, gb: int) -> None:
    alloc = make()
    agents(alloc, 12)
    alloc.add_framework("fa", ["a"], {})
    alloc.add_framework("fb", ["b"], {})
    alloc.update_weights({"a": wa, "b": wb})
    assert count(alloc.allocate(0)) == {"fa": ga, "fb": gb}


def test_weights_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        make().update_weights({"a": 0})


# ------------------------------------------------------------------------------------------- quota
def test_quota_headroom_holds_back_unused_guarantees() -> None:
    alloc = make()
    agents(alloc, 10)  # 40 cpus
    alloc.update_quota("q", Quota(P("cpus:12")))
    alloc.add_framework("greedy", ["b"], {})
    got = alloc.allocate(0)
    assert total_of(got).scalar("cpus") == 28  # 12 cpus stay free for q
    assert total_of(got).scalar("mem") == 40960  # memory is not guaranteed: all of it is offered
    required, available = alloc.quota_headroom()
    assert required == P("cpus:12") and available.scalar("cpus") == 12
    # The guarantee is there when q's framework comes, even though greedy holds everything else.
    alloc.add_framework("qf", ["q"], {})
    got = alloc.allocate(1)
    assert count(got) == {"qf": 3} and total_of(got).scalar("cpus") == 12
    assert alloc.quota_headroom()[0] == Resources.empty()


def test_quota_guarantee_is_satisfied_first() -> None:
    """Stage 1: a role below its guarantee is offered before a role that sorts first by DRF."""
    alloc = make()
    agents(alloc, 4)
    alloc.add_framework("a", ["aaa"], {})  # sorts first by name on a tie
    alloc.add_framework("q", ["zzz"], {})
    alloc.update_quota("zzz", Quota(P("cpus:8")))
    got = alloc.allocate(0)
    assert total_of(got, framework_id="q").scalar("cpus") >= 8
    assert total_of(got, framework_id="a").scalar("cpus") == 16 - total_of(got, framework_id="q").scalar("cpus")


def test_quota_guarantee_is_offered_even_when_overcommitted() -> None:
    alloc = make()
    agents(alloc, 2)  # 8 cpus
    alloc.update_quota("q1", Quota(P("cpus:6")))
    alloc.update_quota("q2", Quota(P("cpus:6")))
    alloc.add_framework("f1", ["q1"], {})
    alloc.add_framework("f2", ["q2"], {})
    got = alloc.allocate(0)
    assert total_of(got).scalar("cpus") == 8  # everything goes to guarantees


def test_quota_limit_is_never_exceeded_and_offers_are_split() -> None:
    alloc = make()
    agents(alloc, 4)
    alloc.update_quota("l", Quota(limit=P("cpus:6")))
    alloc.add_framework("f", ["l"], {})
    got = alloc.allocate(0)
    assert total_of(got).scalar("cpus") == 6
    assert sorted(a.resources.scalar("cpus") for a in got) == [0, 0, 2, 4]  # one split offer, then memory only
    # Nothing more, cycle after cycle, even as offers come and go.
    decline(alloc, got, 0, None)
    for t in range(1, 4):
        got = alloc.allocate(float(t))
        assert total_of(got).scalar("cpus") == 6
        decline(alloc, got, float(t), None)


def test_quota_limit_applies_to_children() -> None:
    alloc = make()
    agents(alloc, 4)
    alloc.update_quota("eng", Quota(limit=P("cpus:5")))
    alloc.add_framework("p", ["eng/prod"], {})
    alloc.add_framework("d", ["eng/dev"], {})
    alloc.add_framework("o", ["other"], {})
    got = alloc.allocate(0)
    assert total_of(got, framework_id="p").scalar("cpus") + total_of(got, framework_id="d").scalar("cpus") == 5
    assert total_of(got).scalar("cpus") == 16  # what eng may not have goes to the others


def test_quota_removed_lifts_headroom_and_limit() -> None:
    alloc = make()
    agents(alloc, 2)
    alloc.update_quota("q", Quota(P("cpus:8")))
    alloc.add_framework("b", ["b"], {})
    assert total_of(alloc.allocate(0)).scalar("cpus") == 0
    alloc.update_quota("q", None)
    assert total_of(alloc.allocate(1)).scalar("cpus") == 8


def test_headroom_is_only_what_the_ancestors_limits_still_allow() -> None:
    """eng is limited to 4 cpus and eng/dev holds them: eng/prod's guarantee cannot be met, so holding cpus back
    for it would only starve everyone else."""
    alloc = make()
    agents(alloc, 3)  # 12 cpus
    alloc.update_quota("eng", Quota(limit=P("cpus:4")))
    alloc.update_quota("eng/prod", Quota(P("cpus:4")))
    alloc.add_framework("dev", ["eng/dev"], {})
    alloc.add_used("dev", "a00", P("cpus:4;mem:1024"), role="eng/dev")
    assert alloc.quota_headroom()[0] == Resources.empty()
    alloc.add_framework("other", ["other"], {})
    assert total_of(alloc.allocate(0), framework_id="other").scalar("cpus") == 8
    # eng/dev gives 3 cpus back: eng/prod may take them again, and that much is held back
    alloc.recover_resources("dev", "a00", P("cpus:3"), None, 1)
    assert alloc.quota_headroom()[0] == P("cpus:3")


def test_headroom_of_a_guarantee_above_an_ancestors_limit_is_capped() -> None:
    """A configuration the master refuses (it can come from an older registry): what is held back never exceeds
    what the limit lets the role take."""
    alloc = make()
    agents(alloc, 4)  # 16 cpus
    alloc.update_quota("eng", Quota(limit=P("cpus:4")))
    alloc.update_quota("eng/prod", Quota(P("cpus:10")))
    assert alloc.quota_headroom()[0] == P("cpus:4")
    alloc.add_framework("b", ["b"], {})
    assert total_of(alloc.allocate(0)).scalar("cpus") == 12


@pytest.mark.parametrize(
    ("parent", "child", "required"),
    [("cpus:2", "cpus:6", "cpus:6"), ("cpus:10", "mem:1024", "cpus:10;mem:1024")],
    ids=["child-larger", "child-other-resource"],
)
def test_headroom_counts_a_childs_guarantee_beyond_its_parents(parent: str, child: str, required: str) -> None:
    alloc = make()
    agents(alloc, 4)
    alloc.update_quota("eng", Quota(P(parent)))
    alloc.update_quota("eng/prod", Quota(P(child)))
    assert alloc.quota_headroom()[0] == P(required)
    alloc.add_framework("b", ["b"], {})
    got = total_of(alloc.allocate(0))
    assert got.scalar("cpus") == 16 - P(required).scalar("cpus")
    assert got.scalar("mem") == 16384 - P(required).scalar("mem")


def test_limit_room_and_reservation_checks() -> None:
    alloc = make()
    agents(alloc, 2)
    assert alloc.limit_room("eng") is None
    alloc.update_quota("eng", Quota(limit=P("cpus:2;mem:4096")))
    alloc.update_quota("eng/prod", Quota(limit=P("cpus:1")))
    alloc.add_framework("f", ["eng", "ads"], {})
    alloc.add_used("f", "a00", P("cpus:1;mem:1024"), role="eng")
    assert alloc.limit_room("eng") == P("cpus:1;mem:3072")
    assert alloc.limit_room("eng/prod") == P("cpus:1;mem:3072")
    assert alloc.limit_room("eng/prod/x") == P("cpus:1;mem:3072")  # a role not seen yet has its ancestors' room
    alloc.check_reservation(P("cpus(eng):1"))
    with pytest.raises(ValueError, match="over its quota limit"):
        alloc.check_reservation(P("cpus(eng):1.5"))
    with pytest.raises(ValueError, match="role 'eng' over its quota limit"):
        alloc.check_reservation(P("cpus(eng/prod):0.5;cpus(ads):2;cpus(eng):0.75"))  # summed per role and above
    # from eng's own offer: already counted for eng (not for eng/prod below it)
    alloc.check_reservation(P("cpus(eng):3"), allocated_role="eng")
    with pytest.raises(ValueError, match="'eng/prod'"):
        alloc.check_reservation(P("cpus(eng/prod):2"), allocated_role="eng")
    alloc.check_reservation(P("cpus(ads):100"))  # no limit


# ------------------------------------------------------------------------------------------- reservations
def test_reservations_reach_only_their_role_and_children() -> None:
    alloc = make()
    alloc.add_agent("a1", P("cpus(eng):2;mem(eng):64"), {})
    alloc.add_framework("engineering", ["engineering"], {})  # a prefix, not a child
    alloc.add_framework("ads", ["ads"], {})
    assert alloc.allocate(0) == []
    alloc.add_framework("prod", ["eng/prod"], {})
    assert alloc.allocate(1) == [Allocation("prod", "eng/prod", "a1", P("cpus(eng):2;mem(eng):64"))]


def test_reservations_count_toward_the_guarantee() -> None:
    alloc = make()
    alloc.add_agent("r", P("cpus(eng):4;mem(eng):1024"), {})
    agents(alloc, 2)
    alloc.update_quota("eng", Quota(P("cpus:4")))
    assert alloc.quota_headroom()[0] == Resources.empty()  # the reservation meets the guarantee
    alloc.add_framework("b", ["b"], {})
    assert total_of(alloc.allocate(0)).scalar("cpus") == 8


def test_dynamic_reservation_with_update_agent() -> None:
    alloc = make()
    alloc.add_agent("a1", P("cpus:4;mem:1024"), {})
    alloc.add_framework("ads", ["ads"], {})
    alloc.add_framework("eng", ["eng"], {})
    alloc.update_agent("a1", P("cpus:2;mem:512;cpus(eng):2;mem(eng):512"))
    got = {a.framework_id: a.resources for a in alloc.allocate(0)}
    assert got["eng"].reserved("eng") == P("cpus(eng):2;mem(eng):512")
    assert "ads" not in got or not got["ads"].reserved()


def test_reserve_of_offered_resources_master_flow() -> None:
    """RESERVE in an ACCEPT, as the master does it: the offer goes back, the total changes, the task and the
    rest of the (now reserved) pool are charged again, and the rest is recovered with a filter."""
    alloc = make()
    alloc.add_agent("a1", P("cpus:4;mem:1024"), {})
    alloc.add_framework("f", ["eng"], {})
    [offer] = alloc.allocate(0)
    alloc.recover_resources("f", "a1", offer.resources, None, 0, role="eng")
    alloc.update_agent("a1", P("cpus:2;mem:512;cpus(eng):2;mem(eng):512"))
    task = P("cpus(eng):1;mem(eng):256")
    pool = P("cpus:2;mem:512;cpus(eng):1;mem(eng):256")
    alloc.add_used("f", "a1", task, role="eng")
    alloc.add_used("f", "a1", pool, role="eng")
    alloc.recover_resources("f", "a1", pool, 5, 0, role="eng")
    assert alloc.allocated("f") == task
    assert alloc.allocate(1) == []  # filtered
    [again] = alloc.allocate(6)
    assert again.resources == pool


def test_update_agent_while_allocated_keeps_the_books() -> None:
    """A reservation of resources that are still offered: the books follow the names, and a recover of the
    reserved form gives them back."""
    alloc = make()
    alloc.add_agent("a1", P("cpus:4;mem:1024"), {})
    alloc.add_framework("f", ["eng"], {})
    [offer] = alloc.allocate(0)
    alloc.update_agent("a1", P("cpus:2;mem:1024;cpus(eng):2"))
    assert alloc.allocated("f") == P("cpus:2;mem:1024;cpus(eng):2")
    assert alloc.allocate(1) == []  # nothing is free
    alloc.recover_resources("f", "a1", P("cpus:2;mem:1024;cpus(eng):2"), None, 1, role="eng")
    assert alloc.allocated("f") == Resources.empty()
    # And the other way round: what was offered unreserved comes back in reserved form (role-free match).
    [offer] = alloc.allocate(2)
    alloc.update_agent("a1", P("cpus:4;mem:1024"))
    alloc.recover_resources("f", "a1", offer.resources, None, 2, role="eng")
    assert alloc.allocated("f") == Resources.empty()
    assert alloc.allocate(3)[0].resources == P("cpus:4;mem:1024")


def test_agent_total_shrinking_drops_what_no_longer_exists() -> None:
    alloc = make()
    alloc.add_agent("a1", P("cpus:4;mem:1024"), {})
    alloc.add_framework("f", ["*"], {})
    alloc.allocate(0)
    alloc.update_agent("a1", P("cpus:2;mem:1024"))
    assert alloc.allocated("f") == P("cpus:2;mem:1024")


# ------------------------------------------------------------------------------------------- filters per role
def test_filters_are_per_role() -> None:
    alloc = make()
    alloc.add_agent("a1", P(AGENT), {})
    alloc.add_framework("f", ["r1", "r2"], {})
    [a] = alloc.allocate(0)
    assert a.role == "r1"
    alloc.recover_resources("f", "a1", a.resources, 100, 0, role="r1")
    [b] = alloc.allocate(1)
    assert b.role == "r2"  # the r1 filter does not hold for r2
    alloc.recover_resources("f", "a1", b.resources, 100, 1, role="r2")
    assert alloc.allocate(2) == []
    alloc.revive_offers("f", ["r2"])  # clears r2's filters only
    [c] = alloc.allocate(3)
    assert c.role == "r2"


def test_suppress_and_revive_per_role() -> None:
    alloc = make()
    alloc.add_agent("a1", P(AGENT), {})
    alloc.add_framework("f", ["r1", "r2"], {})
    alloc.suppress_offers("f", ["r1"])
    assert alloc.is_suppressed("f", "r1") and not alloc.is_suppressed("f", "r2")
    [a] = alloc.allocate(0)
    assert a.role == "r2"
    decline(alloc, [a], 0, None)
    alloc.suppress_offers("f")
    assert alloc.allocate(1) == []
    alloc.revive_offers("f", ["r1"])
    [b] = alloc.allocate(2)
    assert b.role == "r1"


# ------------------------------------------------------------------------------------------- offer constraints
@pytest.mark.parametrize(
    ("match", "wanted"),
    [
        (AttributeMatch("zone", equals="a"), {"a0"}),
        (AttributeMatch("zone", in_=("a", "b")), {"a0", "b0"}),
        (AttributeMatch("rack", regex="r[12]"), {"a0", "b0"}),
        (AttributeMatch("rack", regex="r"), set()),  # the whole value must match
        (AttributeMatch("missing", equals="x"), set()),
    ],
)
def test_attribute_constraints(match: AttributeMatch, wanted: set[str]) -> None:
    alloc = make()
    alloc.add_agent("a0", P(AGENT), {}, attributes={"zone": "a", "rack": "r1"})
    alloc.add_agent("b0", P(AGENT), {}, attributes={"zone": "b", "rack": "r2"})
    alloc.add_agent("c0", P(AGENT), {}, attributes={"zone": "c", "rack": "r3"})
    alloc.add_framework("picky", ["*"], {}, constraints=OfferConstraints((match,)))
    got = alloc.allocate(0)
    assert {a.agent_id for a in got} == wanted
    alloc.add_framework("any", ["*"], {})
    assert {a.agent_id for a in alloc.allocate(1)} == {"a0", "b0", "c0"} - wanted


def test_min_resources_constraint_and_update() -> None:
    alloc = make()
    alloc.add_agent("small", P("cpus:1;mem:512"), {})
    alloc.add_agent("big", P("cpus:8;mem:8192;ports:[1-10]"), {})
    alloc.add_framework("f", ["*"], {}, constraints=OfferConstraints(min_resources=P("cpus:2;ports:[1-5]")))
    assert [a.agent_id for a in alloc.allocate(0)] == ["big"]
    alloc.update_framework("f", ["*"], constraints=None)
    assert [a.agent_id for a in alloc.allocate(1)] == ["small"]


def test_bad_regex_is_refused() -> None:
    with pytest.raises(ValueError, match="bad regex"):
        make().add_framework("f", ["*"], {}, constraints=OfferConstraints((AttributeMatch("a", regex="("),)))


# ------------------------------------------------------------------------------------------- minimums per role
def test_min_allocatable_per_role() -> None:
    alloc = make()
    alloc.add_agent("a1", P("cpus:1;mem:1024"), {})
    alloc.add_framework("big", ["eng"], {}, min_allocatable={"eng": [P("cpus:2")]})
    alloc.add_framework("small", ["ads"], {})
    assert [(a.framework_id, a.role) for a in alloc.allocate(0)] == [("small", "ads")]


def test_min_allocatable_alternatives_and_empty_list() -> None:
    alloc = make()
    alloc.add_agent("a1", P("cpus:0.001;disk:10"), {})
    alloc.add_framework("f", ["x", "y"], {}, min_allocatable={"x": [P("cpus:5"), P("disk:10")], "y": []})
    got = alloc.allocate(0)
    assert [(a.role, a.resources) for a in got] == [("x", P("cpus:0.001;disk:10"))]
    decline(alloc, got, 0, 100)
    assert [a.role for a in alloc.allocate(1)] == ["y"]  # an empty list of minimums lets anything through


def test_default_minimum_is_role_free() -> None:
    alloc = make()
    alloc.add_agent("a1", P("cpus(eng):0.005;cpus:0.005"), {})
    alloc.add_framework("f", ["eng"], {})
    assert len(alloc.allocate(0)) == 1  # 0.01 cpus counted over both roles


# ------------------------------------------------------------------------------------------- incremental cycle, metrics
def test_only_agents_with_news_are_examined() -> None:
    ticks = iter(range(10_000))
    alloc = make(timer=lambda: float(next(ticks)))
    agents(alloc, 5)
    alloc.add_framework("f", ["*"], {})
    got = alloc.allocate(0)
    assert alloc.metrics()["allocation_last_agents_examined"] == 5
    decline(alloc, got, 0, 10)
    assert alloc.allocate(1) == []
    assert alloc.metrics()["allocation_last_agents_examined"] == 0  # declined whole by everyone: nothing to see
    alloc.recover_resources("f", "a00", P("cpus:0"), None, 1)  # (news, but nothing new on it)
    assert alloc.allocate(2) == []
    assert alloc.metrics()["allocation_last_agents_examined"] == 0  # nothing new anywhere
    assert len(alloc.allocate(10)) == 5  # the filters expired: the agents are looked at again
    m = alloc.metrics()
    assert m["allocation_runs"] == 4
    assert m["allocation_run_ms"] == 1000.0 and m["allocation_run_ms_p50"] == 1000.0
    assert m["allocation_run_ms_p99"] == 1000.0


def test_agents_everyone_refused_are_skipped_until_something_changes() -> None:
    alloc = make()
    agents(alloc, 3)
    alloc.add_framework("f", ["*"], {})
    alloc.add_framework("g", ["*"], {})
    now = 0.0
    for _ in range(2):  # each framework is offered each agent once and declines it for good
        got = alloc.allocate(now)
        assert len(got) == 3
        decline(alloc, got, now, 1000)
        now += 1
    assert alloc.allocate(now) == []
    assert alloc.metrics()["allocation_last_agents_examined"] == 0
    # a third framework has refused nothing: every agent is offered to it
    alloc.add_framework("h", ["*"], {})
    got = alloc.allocate(now)
    assert count(got) == {"h": 3}
    decline(alloc, got, now, 1000)
    assert alloc.allocate(now + 1) == []
    # reviving h drops its filters: offered to h again; then, h suppressed, reviving g: offered to g
    alloc.suppress_offers("h")
    alloc.revive_offers("h")
    got = alloc.allocate(now + 2)
    assert count(got) == {"h": 3}  # a revive drops h's filters
    decline(alloc, got, now + 2, None)
    alloc.suppress_offers("h")
    alloc.revive_offers("g")
    assert count(alloc.allocate(now + 3)) == {"g": 3}
    # more free on an agent: the refusals covered less than what is free now
    alloc2 = make()
    agents(alloc2, 1)
    alloc2.add_framework("f", ["*"], {})
    alloc2.add_used("f", "a00", P("cpus:1;mem:1024"), role="*")
    decline(alloc2, alloc2.allocate(0), 0, 1000)
    assert alloc2.allocate(1) == []
    alloc2.recover_resources("f", "a00", P("cpus:1;mem:1024"), None, 1, role="*")  # a task ended
    assert [a.resources for a in alloc2.allocate(2)] == [P("cpus:4;mem:4096")]
    # and a filter expiring brings the agent back
    alloc3 = make()
    agents(alloc3, 1)
    alloc3.add_framework("f", ["*"], {})
    decline(alloc3, alloc3.allocate(0), 0, 5)
    assert alloc3.allocate(4.9) == []
    assert len(alloc3.allocate(5)) == 1


def test_new_framework_sees_every_free_agent() -> None:
    alloc = make()
    agents(alloc, 3)
    alloc.add_framework("f", ["*"], {})
    decline(alloc, alloc.allocate(0), 0, 100)
    assert alloc.allocate(1) == []
    alloc.add_framework("g", ["*"], {})
    assert count(alloc.allocate(2)) == {"g": 3}


def test_limit_held_agents_are_looked_at_again_when_room_returns() -> None:
    alloc = make()
    agents(alloc, 2)
    alloc.update_quota("l", Quota(limit=P("cpus:4")))
    alloc.add_framework("f", ["l"], {})
    got = alloc.allocate(0)
    with_cpus = [a for a in got if a.resources.scalar("cpus")]
    assert len(with_cpus) == 1
    # f keeps the memory-only offer and returns the cpus it had on the first agent.
    alloc.recover_resources("f", with_cpus[0].agent_id, P("cpus:4"), None, 0, role="l")
    again = alloc.allocate(1)
    assert total_of(again).scalar("cpus") == 4


def test_unknown_framework_usage_at_agent_attach_is_not_offered() -> None:
    alloc = make()
    alloc.add_agent("a1", P(AGENT), {"ghost": P("cpus:3;mem:1024")})
    alloc.add_framework("f", ["*"], {})
    [a] = alloc.allocate(0)
    assert a.resources == P("cpus:1;mem:3072")
    alloc.add_framework("ghost", ["g"], {})  # it arrives: what the agent reported is charged to it
    assert alloc.allocated("ghost") == P("cpus:3;mem:1024")
    assert alloc.role_allocation("g") == P("cpus:3;mem:1024")


def test_gpu_agents_only_for_gpu_aware_frameworks() -> None:
    alloc = make()
    alloc.add_agent("g", P("cpus:4;mem:1024;gpus:1"), {})
    alloc.add_framework("plain", ["*"], {})
    assert alloc.allocate(0) == []
    alloc.add_framework("ml", ["ml"], {}, gpu_aware=True)
    [a] = alloc.allocate(1)
    assert a.framework_id == "ml" and a.role == "ml" and a.resources.scalar("gpus") == 1
    assert UNRESERVED in a.resources.roles()


# ------------------------------------------------------------------------------------------- edges of the books
def test_add_framework_again_updates_it() -> None:
    alloc = make()
    agents(alloc, 2)
    alloc.add_framework("f", ["a"], {})
    alloc.add_framework("f", ["b"], {}, active=False, constraints=OfferConstraints(min_resources=P("cpus:1")))
    assert alloc.allocate(0) == []  # inactive now
    alloc.activate_framework("f")
    assert count(alloc.allocate(1), "role") == {"b": 2}


def test_unknown_framework_recovers_and_agent_updates() -> None:
    alloc = make()
    alloc.add_agent("a1", P(AGENT), {"ghost": P("cpus:3;mem:1024")})
    alloc.recover_resources("ghost", "a1", P("cpus:1"), None, 0)  # one of its tasks ended
    alloc.add_framework("f", ["*"], {})
    [a] = alloc.allocate(0)
    assert a.resources == P("cpus:2;mem:3072")
    alloc.recover_resources("f", "a1", a.resources, None, 0)
    alloc.update_agent("a1", P("cpus:8;mem:4096"))
    [b] = alloc.allocate(1)
    assert b.resources == P("cpus:6;mem:3072")  # the ghost still holds cpus:2;mem:1024
    alloc.recover_resources("f", "a1", b.resources, None, 1)
    alloc.update_agent("a1", P("mem:4096"))  # its cpus are gone, the ghost's with them
    [c] = alloc.allocate(2)
    assert c.resources == P("mem:3072")


def test_several_filters_on_one_agent() -> None:
    alloc = make(allocation_interval=1.0)
    alloc.add_agent("a1", P("cpus:4;mem:1024"), {})
    alloc.add_framework("f", ["*"], {})
    alloc.allocate(0)
    alloc.recover_resources("f", "a1", P("cpus:1"), 10, 0, role="*")  # refuses cpus:1 until 10
    assert alloc.allocate(1) == []  # cpus:1 is free, and refused
    alloc.recover_resources("f", "a1", P("mem:512"), 5, 1, role="*")  # refuses mem:512 until 6
    assert alloc.metrics()["allocator_refusal_filters"] == 2
    [a] = alloc.allocate(2)  # cpus:1;mem:512 is within neither refusal
    assert a.resources == P("cpus:1;mem:512")
    alloc.recover_resources("f", "a1", a.resources, 20, 2, role="*")
    assert alloc.metrics()["allocator_refusal_filters"] == 1  # the wider, longer refusal replaces both
    assert alloc.allocate(3) == []
    assert len(alloc.allocate(22)) == 1


def test_reserved_usage_is_charged_to_the_role_that_may_use_it() -> None:
    alloc = make()
    alloc.add_agent("a1", P("cpus(eng):2;cpus:2;mem:1024"), {})
    alloc.add_framework("f", ["ads", "eng/prod"], {})
    alloc.add_used("f", "a1", P("cpus(eng):1"))
    assert alloc.role_allocation("eng/prod") == P("cpus:1")
    assert alloc.role_allocation("ads") == Resources.empty()


def test_filter_expiry_keeps_the_later_ones() -> None:
    alloc = make(allocation_interval=1.0)
    alloc.add_agent("a1", P("cpus:4;mem:1024"), {})
    alloc.add_framework("f", ["x", "y"], {})
    [a] = alloc.allocate(0)
    alloc.recover_resources("f", "a1", a.resources, 3, 0, role="x")
    [b] = alloc.allocate(0)
    alloc.recover_resources("f", "a1", b.resources, 8, 0, role="y")
    assert alloc.allocate(1) == []
    [c] = alloc.allocate(3)  # x's filter expired, y's holds
    assert c.role == "x"
    alloc.recover_resources("f", "a1", c.resources, 100, 3, role="x")
    assert alloc.allocate(7) == []
    [d] = alloc.allocate(8)
    assert d.role == "y"
