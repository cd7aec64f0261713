"""The quota path's fast skips against their reference (hypothesis).

A cycle skips the roles that cannot take anything on an agent: roles with no offerable framework (hidden from
the orders), and roles whose quota limits leave no room for any alternative of the minimum the agent's free
resources meet (the taker counts). The reference is the plain decision: try every role (`_try_role`, which cuts
the offer down to the limits and the headroom and checks the minimums), as the full scan does. Shapes: many
roles, half of them with quota (guarantees, limits, nested roles), most roles without any framework subscribed,
frameworks with their own minimums, agents with and without reservations."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mesos_master.allocator import DRFSorter, FairSorter, HierarchicalAllocator, PrioritySorter, Quota, RandomSorter
from mesos_master.allocator.quota import may_take
from scheduler_sdk.resources import Resources

P = Resources.parse
ROLES = ["r0", "r1", "r2", "r3", "r4", "r5", "r0/a", "r0/b", "r3/a", "r3/a/x"]
AGENTS = [f"a{i}" for i in range(6)]
SORTERS = {
    "drf": DRFSorter,
    "fair": lambda: FairSorter("cpus"),
    "priority": lambda: PrioritySorter(["r1", "r0"]),
    "random": lambda: RandomSorter(3),
}

amount = st.integers(0, 12)
quotas = st.dictionaries(
    st.sampled_from(ROLES),
    st.tuples(amount, st.integers(0, 4096), st.one_of(st.none(), amount), st.one_of(st.none(), st.integers(0, 4096))),
    max_size=6,
)
agent_totals = st.builds(
    lambda c, m, reserved: P(f"cpus:{c};mem:{m};ports:[31000-31009]") + reserved,
    st.integers(1, 8),
    st.integers(16, 4096),
    st.sampled_from([Resources.empty(), Resources.empty(), P("cpus(r0):2"), P("mem(r3/a):256;cpus(r3):1")]),
)
frameworks = st.lists(
    st.tuples(st.sampled_from(ROLES), st.sampled_from([None, None, 0.5, 2.0])), min_size=1, max_size=5
)
events = st.lists(
    st.tuples(st.sampled_from(["cycle", "decline", "decline_for_good", "keep", "free_task"]), st.integers(0, 50)),
    max_size=25,
)
minimums = st.sampled_from(
    [
        (Resources.of(cpus=0.01), Resources.of(mem=32)),
        (Resources.of(cpus=1, mem=64),),
        (Resources.of(cpus=2), Resources.of(mem=512), Resources.of(cpus=0.5, mem=128)),
    ]
)


def build(
    full_scan: bool, policy: str, minimum: tuple[Resources, ...], quota: dict, fws: list, agents: list
) -> HierarchicalAllocator:
    alloc = HierarchicalAllocator(sorter=SORTERS[policy](), min_allocatable=minimum, full_scan=full_scan)
    for role, (g_cpus, g_mem, l_cpus, l_mem) in sorted(quota.items()):
        guarantee = Resources.of(cpus=g_cpus, mem=g_mem)
        limit = None
        if l_cpus is not None or l_mem is not None:
            limit = Resources.of(**{k: v for k, v in (("cpus", l_cpus), ("mem", l_mem)) if v is not None})
        alloc.update_quota(role, Quota(guarantee, limit))
    for i, (role, own_min) in enumerate(fws):
        mins = {role: [Resources.of(cpus=own_min)]} if own_min is not None else None
        alloc.add_framework(f"f{i}", [role], {}, min_allocatable=mins)
    for agent_id, total in zip(AGENTS, agents, strict=False):
        alloc.add_agent(agent_id, total, {})
    return alloc


@settings(max_examples=150, deadline=None)
@given(
    policy=st.sampled_from(sorted(SORTERS)),
    minimum=minimums,
    quota=quotas,
    fws=frameworks,
    agents=st.lists(agent_totals, min_size=1, max_size=len(AGENTS)),
    steps=events,
)
def test_quota_cycles_equal_the_full_scan(
    policy: str, minimum: tuple[Resources, ...], quota: dict, fws: list, agents: list, steps: list
) -> None:
    """Every cycle of the incremental allocator (with the skips) makes exactly the offers of the full scan."""
    fast = build(False, policy, minimum, quota, fws, agents)
    reference = build(True, policy, minimum, quota, fws, agents)
    now = 0.0
    offers = []
    tasks = []
    for kind, pick in steps:
        now += 1.0
        if kind == "cycle" or not offers:
            made = fast.allocate(now)
            assert made == reference.allocate(now)
            offers.extend(made)
            continue
        if kind == "free_task":
            if tasks:
                t = tasks.pop(pick % len(tasks))
                for alloc in (fast, reference):
                    alloc.recover_resources(t.framework_id, t.agent_id, t.resources, None, now, role=t.role)
            continue
        offer = offers.pop(pick % len(offers))
        if kind == "keep":
            tasks.append(offer)
            continue
        refuse = 1e9 if kind == "decline_for_good" else 2.0
        for alloc in (fast, reference):
            alloc.recover_resources(offer.framework_id, offer.agent_id, offer.resources, refuse, now, role=offer.role)
    now += 1.0
    assert fast.allocate(now) == reference.allocate(now)


@settings(max_examples=150, deadline=None)
@given(
    policy=st.sampled_from(sorted(SORTERS)),
    minimum=minimums,
    quota=quotas,
    fws=frameworks,
    agents=st.lists(agent_totals, min_size=1, max_size=len(AGENTS)),
    cycles=st.integers(0, 3),
)
def test_a_role_the_taker_counts_skip_takes_nothing(
    policy: str, minimum: tuple[Resources, ...], quota: dict, fws: list, agents: list, cycles: int
) -> None:
    """Wherever the taker counts say a role cannot take anything on an agent, the plain decision (`_try_role`:
    the offer cut to the limits and the headroom, then the minimums) finds nothing either; and the counts are
    what a count from scratch gives."""
    alloc = build(False, policy, minimum, quota, fws, agents)
    for i in range(cycles):
        for a in alloc.allocate(float(i + 1))[::2]:
            alloc.recover_resources(a.framework_id, a.agent_id, a.resources, None, float(i + 1), role=a.role)
    now = float(cycles + 1)
    room = alloc._tree.room
    assert room.short_of_room == sum(n.short_of_room for n in alloc._root.walk())
    for node in alloc._root.walk()[1:]:  # lower bounds, so that skipping is safe
        exact = room.room_margin(node)
        if node.room_margin is not None:
            assert exact is not None and all(node.room_margin[name] <= exact[name] for name in node.room_margin)
    for node in alloc._root.walk()[1:]:
        assert node.own_takers == room.own_takers(node)
        below = [sum(n.own_takers[k] for n in node.walk()) for k in range(len(minimum) + 1)]
        assert node.short_of_room == (min(node.own_takers[:-1]) < len(node.fw_order.keys))
        assert node.takers == below
    for agent in alloc._agents.values():
        if not agent.free:
            continue
        for quota_stage in (False, True):
            wanted = alloc._walk.wanted_takers(agent, quota_stage=quota_stage)
            if wanted is None:
                continue
            for node in alloc._root.walk()[1:]:
                if node.fw_order.entries and not may_take(node.own_takers, wanted):
                    stage_roles = (
                        [n for n in node.lineage() if n in alloc._tree.guarantees.below] if quota_stage else [None]
                    )
                    for quota_node in stage_roles:
                        assert alloc._walk.try_role(node, agent, now, quota_node) is None
