"""Properties of the engine on random small clusters (hypothesis).

- each indexed candidate source gives exactly its reference's assignments and failures: `free_amount_index` ==
  `sorted_scan` (BinPacking / Spread), `shape_index` and `good_enough_first` == `rotating_scan` (shape-only
  calculators); each test checks by name that the run used the sources it means to compare;
- the result does not depend on the order hosts are given in, and a run replays;
- no host is over-committed on any resource or port, and assignments list all of the lease's offer ids;
- hard constraints are never violated (checked by an independent replay of the assignments);
- an unplaced task has one failure per host, in hostname order; a placed one has none.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler_sdk.placement.constraints import (
    AttributeValue,
    BalancedByAttribute,
    Custom,
    ExclusiveHost,
    UniqueByAttribute,
)
from scheduler_sdk.placement.engine import PlacementEngine
from scheduler_sdk.placement.extension import Constraint
from scheduler_sdk.placement.fitness import BinPacking, Spread, Weighted
from scheduler_sdk.placement.model import Host, OfferSlice, RunningTask, SchedulingResult, TaskRequest

EPS = 1e-6
NAMES = [f"h{i}" for i in range(8)]
ZONES = ["z1", "z2", "z3"]
GROUPS = ["", "g1", "g2"]
AMOUNTS = [0.0, 0.1, 0.2, 0.5, 0.7, 1.0, 2.0, 3.0, 4.0]


def _custom_ok(t, h, ctx) -> bool:
    return (len(t.id) + sum(map(ord, h.hostname))) % 4 != 0


def _custom_score(t, h, ctx) -> float:
    return ((sum(map(ord, h.hostname)) * 7 + len(t.id)) % 5) / 4


CONSTRAINTS: dict[str, Constraint] = {
    "unique_host": UniqueByAttribute("hostname"),
    "unique_zone": UniqueByAttribute("zone"),
    "balanced_zone": BalancedByAttribute("zone"),
    "balanced_zone_12": BalancedByAttribute("zone", values=["z1", "z2"]),
    "exclusive": ExclusiveHost(),
    "zone_in": AttributeValue("zone", in_=["z1", "z2"]),
    "type_re": AttributeValue("type", regex="c5.*"),
    "custom_bool": Custom("custom_bool", _custom_ok),
    "custom_score": Custom("custom_score", _custom_score),
}

ORDERED = [
    BinPacking("cpus"),
    BinPacking("mem"),
    BinPacking("gpus"),
    BinPacking("ports"),
    Spread("cpus"),
    Spread("mem"),
    Spread("ports"),
]
OTHER = [
    Weighted({BinPacking("cpus"): 1, Spread("mem"): 2}),
    lambda t, h: (sum(map(ord, h.hostname)) % 7) / 6,
]

amount = st.sampled_from(AMOUNTS)
ports = st.lists(st.tuples(st.integers(1, 12), st.integers(0, 3)).map(lambda p: (p[0], p[0] + p[1])), max_size=2)


@st.composite
def hosts_st(draw) -> list[Host]:
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=6, unique=True))
    out = []
    for name in names:
        offers = tuple(
            OfferSlice(
                f"{name}-o{i}",
                cpus=draw(amount),
                mem=draw(amount) * 1000,
                ports=tuple(draw(ports)),
                scalars=draw(st.sampled_from([{}, {"gpus": 1.0}, {"gpus": 2.0}])),
            )
            for i in range(draw(st.integers(0, 2)))
        )
        running = tuple(
            RunningTask(f"{name}-r{i}", group=draw(st.sampled_from(GROUPS)), cpus=draw(amount), mem=draw(amount))
            for i in range(draw(st.integers(0, 2)))
        )
        attrs = {}
        zone = draw(st.sampled_from([*ZONES, None]))
        if zone:
            attrs["zone"] = zone
        kind = draw(st.sampled_from(["c5", "c5.large", "m5", None]))
        if kind:
            attrs["type"] = kind
        out.append(
            Host(
                hostname=name,
                agent_id=f"agent-{name}",
                attributes=attrs,
                offers=offers,
                running=running,
                # small given totals make fitness clamp, so that hosts with different free amounts tie
                total_cpus=draw(st.sampled_from([None, None, 1.0, 1.0, 4.0, 8.0])),
                total_mem=draw(st.sampled_from([None, 500.0, 4000.0])),
                disabled=draw(st.integers(0, 9)) == 0,
            )
        )
    return out


@st.composite
def tasks_st(draw) -> list[TaskRequest]:
    n = draw(st.integers(1, 10))
    names = list(CONSTRAINTS)
    return [
        TaskRequest(
            f"t{i}",
            cpus=draw(amount),
            mem=draw(st.sampled_from([0.0, 500.0, 1000.0])),
            ports=draw(st.integers(0, 2)),
            scalars=draw(st.sampled_from([{}, {}, {"gpus": 1.0}])),
            group=draw(st.sampled_from(GROUPS)),
            hard_constraints=tuple(CONSTRAINTS[c] for c in draw(st.lists(st.sampled_from(names), max_size=2))),
            soft_constraints=tuple(CONSTRAINTS[c] for c in draw(st.lists(st.sampled_from(names), max_size=2))),
        )
        for i in range(n)
    ]


@st.composite
def engine_kwargs(draw, fitnesses) -> dict:
    names = list(CONSTRAINTS)
    return {
        "fitness": draw(st.sampled_from(fitnesses)),
        "soft_constraint_weight": draw(st.sampled_from([0.0, 0.3, 0.5, 1.0])),
        "good_enough": draw(st.sampled_from([None, None, 0.3, 0.6, 0.9])),
        "max_hosts_examined": draw(st.sampled_from([None, None, 1, 2, 3])),
        "hard_constraints": [CONSTRAINTS[c] for c in draw(st.lists(st.sampled_from(names), max_size=1))],
        "soft_constraints": [CONSTRAINTS[c] for c in draw(st.lists(st.sampled_from(names), max_size=1))],
    }


def outcome(r: SchedulingResult):
    return r.assignments, dict(r.failures)


def _lease(h: Host) -> dict[str, float]:
    out: defaultdict[str, float] = defaultdict(float)
    for o in h.offers:
        out["cpus"] += o.cpus
        out["mem"] += o.mem
        out["disk"] += o.disk
        out["network"] += o.network
        for k, v in o.scalars.items():
            out[k] += v
    return out


def _attr(h: Host, attribute: str) -> str | None:
    return h.hostname if attribute == "hostname" else h.attributes.get(attribute)


def check_invariants(tasks: list[TaskRequest], hosts: list[Host], engine: PlacementEngine, r: SchedulingResult):
    by_name = {h.hostname: h for h in hosts}
    # every task is either placed once or failed, never both
    placed_ids = [a.task.id for a in r.assignments]
    assert len(placed_ids) == len(set(placed_ids))
    assert set(placed_ids) | set(r.failures) == {t.id for t in tasks}
    assert not set(placed_ids) & set(r.failures)
    # assignments come in task order
    order = {t.id: i for i, t in enumerate(tasks)}
    assert placed_ids == sorted(placed_ids, key=order.__getitem__)
    # failures: one per host, hostname order
    for fails in r.failures.values():
        assert [f.hostname for f in fails] == sorted(by_name)
        assert all(f.kind in ("resource", "constraint", "disabled") for f in fails)

    used: dict[str, defaultdict[str, float]] = {n: defaultdict(float) for n in by_name}
    ports_used: dict[str, list[int]] = {n: [] for n in by_name}
    # the independent replay: who is where (running + assigned so far)
    groups_on: dict[str, list[str]] = {n: [t.group for t in h.running] for n, h in by_name.items()}
    exclusive_on: dict[str, str] = {}
    for a in r.assignments:
        h = by_name[a.hostname]
        t = a.task
        assert not h.disabled
        assert a.offer_ids == tuple(o.offer_id for o in h.offers) and a.offer_ids
        assert a.agent_id == h.agent_id
        assert a.hostname not in exclusive_on, "a task followed an exclusive one onto its host"
        hard = [*engine.hard_constraints, *t.hard_constraints]
        for c in hard:
            if isinstance(c, UniqueByAttribute) and t.group:
                v = _attr(h, c.attribute)
                assert v is not None
                same = [n for n in by_name if _attr(by_name[n], c.attribute) == v]
                assert all(t.group not in groups_on[n] for n in same)
            elif isinstance(c, BalancedByAttribute) and t.group:
                domain = c.values or sorted({v for x in hosts if (v := _attr(x, c.attribute)) is not None})
                counts = {v: 0 for v in domain}
                for n, gs in groups_on.items():
                    v = _attr(by_name[n], c.attribute)
                    if v in counts:
                        counts[v] += gs.count(t.group)
                v = _attr(h, c.attribute)
                assert v in counts and counts[v] <= min(counts.values())
            elif isinstance(c, ExclusiveHost):
                assert not groups_on[a.hostname], "an exclusive task went onto an occupied host"
                exclusive_on[a.hostname] = t.id
            elif isinstance(c, AttributeValue):
                assert c.evaluate(t, _View(h), None).ok  # type: ignore[arg-type]
            elif isinstance(c, Custom) and c.name == "custom_bool":
                assert _custom_ok(t, h, None)
            elif isinstance(c, Custom) and c.name == "custom_score":
                assert _custom_score(t, h, None) > 0
        groups_on[a.hostname].append(t.group)
        for res in ("cpus", "mem", "disk", "network"):
            used[a.hostname][res] += getattr(t, res)
        for k, amt in t.scalars.items():
            used[a.hostname][k] += amt
        assert len(a.ports) == t.ports
        ports_used[a.hostname].extend(a.ports)
    for n, h in by_name.items():
        lease = _lease(h)
        for res, amount_used in used[n].items():
            assert amount_used <= lease.get(res, 0.0) + EPS, (n, res)
        offered = {p for o in h.offers for lo, hi in o.ports for p in range(lo, hi + 1)}
        assert len(ports_used[n]) == len(set(ports_used[n])), "a port was assigned twice"
        assert set(ports_used[n]) <= offered


class _View:
    def __init__(self, h: Host) -> None:
        self.hostname, self.attributes = h.hostname, h.attributes


EXAMPLES = int(os.environ.get("PLACEMENT_EXAMPLES", "1"))  # multiplier for a longer hunt


@settings(max_examples=150 * EXAMPLES, deadline=None)
@given(hosts=hosts_st(), tasks=tasks_st(), kwargs=engine_kwargs(ORDERED), perm=st.randoms(use_true_random=False))
def test_fast_path_equals_reference_path(hosts, tasks, kwargs, perm):
    assert PlacementEngine(**kwargs).start(hosts).source_names == ("free_amount_index",) * 2
    assert PlacementEngine(**kwargs, fast_path=False).start(hosts).source_names == ("sorted_scan",) * 2
    fast = PlacementEngine(**kwargs).schedule(tasks, hosts)
    reference = PlacementEngine(**kwargs, fast_path=False).schedule(tasks, hosts)
    assert outcome(fast) == outcome(reference)
    shuffled = list(hosts)
    perm.shuffle(shuffled)
    assert outcome(PlacementEngine(**kwargs).schedule(tasks, shuffled)) == outcome(fast)


class _FreeMemOverTotal:
    """A plugin calculator that declares it depends on the task's shape only."""

    name = "free-mem"
    by_shape = True

    def __call__(self, task, host) -> float:
        total = host.total("mem")
        return (host.free("mem") - task.mem) / total if total > 0 else 0.0


BY_SHAPE = [Weighted({BinPacking("cpus"): 1, Spread("mem"): 2}), Weighted({BinPacking("cpus"): 1}), _FreeMemOverTotal()]


@settings(max_examples=150 * EXAMPLES, deadline=None)
@given(hosts=hosts_st(), tasks=tasks_st(), kwargs=engine_kwargs(BY_SHAPE), perm=st.randoms(use_true_random=False))
def test_per_shape_index_equals_the_scan(hosts, tasks, kwargs, perm):
    # The index is used without max_hosts_examined (with it both take the rotating scan). Repeat shapes so that
    # the index is reused after assignments changed hosts.
    kwargs = {**kwargs, "max_hosts_examined": None}
    tasks = tasks + [replace(t, id=t.id + "-again") for t in tasks]
    indexed = "shape_index" if kwargs["good_enough"] is None else "good_enough_first"
    assert PlacementEngine(**kwargs).start(hosts).source_names[0] == indexed
    assert PlacementEngine(**kwargs, fast_path=False).start(hosts).source_names == ("rotating_scan",) * 2
    fast = PlacementEngine(**kwargs).schedule(tasks, hosts)
    scan = PlacementEngine(**kwargs, fast_path=False).schedule(tasks, hosts)
    assert outcome(fast) == outcome(scan)
    shuffled = list(hosts)
    perm.shuffle(shuffled)
    assert outcome(PlacementEngine(**kwargs).schedule(tasks, shuffled)) == outcome(fast)


@settings(max_examples=150 * EXAMPLES, deadline=None)
@given(
    hosts=hosts_st(),
    tasks=tasks_st(),
    fitness=st.sampled_from(BY_SHAPE),
    good_enough=st.sampled_from([0.0, 0.3, 0.5, 0.6, 0.9, 1.0]),
)
def test_per_shape_index_with_good_enough_equals_the_rotating_scan(hosts, tasks, fitness, good_enough):
    # Without soft constraints: the first host from the cursor on reaching good_enough, found through the index.
    tasks = [replace(t, soft_constraints=()) for t in tasks]
    tasks = tasks + [replace(t, id=t.id + "-again") for t in tasks]
    assert PlacementEngine(fitness, good_enough=good_enough).start(hosts).source_names[0] == "good_enough_first"
    fast = PlacementEngine(fitness, good_enough=good_enough).schedule(tasks, hosts)
    scan = PlacementEngine(fitness, good_enough=good_enough, fast_path=False).schedule(tasks, hosts)
    assert outcome(fast) == outcome(scan)


@settings(max_examples=100 * EXAMPLES, deadline=None)
@given(
    hosts=hosts_st(), tasks=tasks_st(), kwargs=engine_kwargs(ORDERED + OTHER), perm=st.randoms(use_true_random=False)
)
def test_invariants_order_independence_and_replay(hosts, tasks, kwargs, perm):
    engine = PlacementEngine(**kwargs)
    r = engine.schedule(tasks, hosts)
    check_invariants(tasks, hosts, engine, r)
    shuffled = list(hosts)
    perm.shuffle(shuffled)
    again = engine.schedule(tasks, shuffled)
    assert outcome(again) == outcome(r)
    assert again.hosts_examined == r.hosts_examined


@settings(max_examples=50 * EXAMPLES, deadline=None)
@given(hosts=hosts_st(), tasks=tasks_st())
def test_without_cuts_the_winner_is_the_best_scoring_feasible_host(hosts, tasks):
    # Brute force for the first task: every feasible host's score, max, ties by hostname.
    engine = PlacementEngine(Spread("cpus"))
    t = tasks[0]
    r = engine.schedule([t], hosts)
    best = None
    for h in sorted(hosts, key=lambda x: x.hostname):
        single = engine.schedule([t], [h])
        if single.assignments:
            score = single.assignments[0].fitness
            if t.soft_constraints:
                continue  # scores with soft constraints depend on the whole cluster: skip the brute force
            if best is None or score > best[0]:
                best = (score, h.hostname)
    if t.soft_constraints or any(
        isinstance(c, BalancedByAttribute | UniqueByAttribute) for c in t.hard_constraints
    ):  # these depend on other hosts too
        return
    if best is None:
        assert not r.assignments
    else:
        assert r.assignments[0].hostname == best[1]
