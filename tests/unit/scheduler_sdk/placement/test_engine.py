"""The engine's rules, scenario by scenario, with hand-computed outcomes."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from scheduler_sdk.placement import (
    AttributeValue,
    BinPacking,
    ExclusiveHost,
    PlacementEngine,
    Spread,
    UniqueByAttribute,
    Weighted,
)
from scheduler_sdk.placement.constraints import Custom
from scheduler_sdk.placement.extension import HostView
from scheduler_sdk.placement.model import Failure, Host, OfferSlice, RunningTask, TaskRequest


def host(name: str, cpus: float = 4, mem: float = 4000, *, ports=(), running=(), disabled=False, **attrs) -> Host:
    return Host(
        hostname=name,
        agent_id=f"a-{name}",
        attributes=attrs,
        offers=(OfferSlice(f"o-{name}", cpus=cpus, mem=mem, ports=tuple(ports)),),
        running=tuple(running),
        disabled=disabled,
    )


def placed(result) -> dict[str, str]:
    return {a.task.id: a.hostname for a in result.assignments}


def same(r1, r2) -> bool:
    return (r1.assignments, dict(r1.failures), r1.hosts_examined) == (
        r2.assignments,
        dict(r2.failures),
        r2.hosts_examined,
    )


# --- settings -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"soft_constraint_weight": -0.1},
        {"soft_constraint_weight": 1.5},
        {"soft_constraint_weight": math.nan},
        {"soft_constraint_weight": True},
        {"good_enough": 1.2},
        {"good_enough": -1},
        {"max_hosts_examined": 0},
        {"max_hosts_examined": 2.5},
    ],
)
def test_settings_are_validated(kwargs):
    with pytest.raises(ValueError):
        PlacementEngine(**kwargs)


def test_defaults():
    e = PlacementEngine()
    assert e.fitness == BinPacking("cpus")
    assert e.soft_constraint_weight == 0.5
    assert e.good_enough is None and e.max_hosts_examined is None
    PlacementEngine(soft_constraint_weight=0, good_enough=0, max_hosts_examined=1)  # the edges are fine
    PlacementEngine(soft_constraint_weight=1, good_enough=1)


def test_duplicate_hosts_and_task_ids_are_errors():
    with pytest.raises(ValueError, match="twice"):
        PlacementEngine().schedule([TaskRequest("t")], [host("a"), host("a")])
    with pytest.raises(ValueError, match="twice"):
        PlacementEngine().schedule([TaskRequest("t"), TaskRequest("t")], [host("a")])


# --- failures -------------------------------------------------------------------------------------------------


def test_failure_reasons_per_host_in_hostname_order_only_for_unplaced_tasks():
    hosts = [
        host("c", cpus=8, mem=1000),
        host("a", cpus=2, mem=9000),
        host("d", cpus=8, mem=9000, disabled=True),
        host("b", cpus=1, mem=100),  # short on both: cpus is checked first
        Host("e", running=(RunningTask("r", cpus=1),)),  # known host, no offer
    ]
    r = PlacementEngine().schedule([TaskRequest("big", cpus=4, mem=2000), TaskRequest("small", cpus=1)], hosts)
    assert placed(r) == {"small": "b"}  # fullest after placing: b 1/1
    assert list(r.failures) == ["big"]
    assert r.failures["big"] == (
        Failure("a", "resource", "cpus", "needs 4, has 2"),
        Failure("b", "resource", "cpus", "needs 4, has 1"),
        Failure("c", "resource", "mem", "needs 2000, has 1000"),
        Failure("d", "disabled", "disabled", "host is disabled"),
        Failure("e", "resource", "offers", "no offer on this host"),
    )


def test_failures_report_what_is_left_after_earlier_assignments():
    tasks = [TaskRequest("t1", cpus=3), TaskRequest("t2", cpus=2.5), TaskRequest("t3", cpus=0.5)]
    r = PlacementEngine().schedule(tasks, [host("a", cpus=4)])
    assert placed(r) == {"t1": "a", "t3": "a"}
    assert r.failures == {"t2": (Failure("a", "resource", "cpus", "needs 2.5, has 1"),)}


def test_disk_network_ports_and_named_scalars():
    h = Host(
        "h",
        offers=(OfferSlice("o", cpus=4, disk=100, network=50, ports=((8000, 8001),), scalars={"gpus": 1}),),
    )
    for t, name, detail in [
        (TaskRequest("disk", disk=200), "disk", "needs 200, has 100"),
        (TaskRequest("net", network=60), "network", "needs 60, has 50"),
        (TaskRequest("ports", ports=3), "ports", "needs 3, has 2"),
        (TaskRequest("gpus", scalars={"gpus": 2}), "gpus", "needs 2, has 1"),
        (TaskRequest("fpgas", scalars={"fpgas": 1}), "fpgas", "needs 1, has 0"),
    ]:
        r = PlacementEngine().schedule([t], [h])
        assert r.failures[t.id] == (Failure("h", "resource", name, detail),)
    ok = TaskRequest("ok", disk=100, network=50, ports=2, scalars={"gpus": 1})
    assert placed(PlacementEngine().schedule([ok], [h])) == {"ok": "h"}


# --- leases, offers and ports ---------------------------------------------------------------------------------


def test_a_lease_combines_offers_and_every_assignment_lists_all_its_offer_ids():
    h = Host(
        "h",
        agent_id="agent-h",
        offers=(
            OfferSlice("o1", cpus=2, mem=1000, ports=((31000, 31001),)),
            OfferSlice("o2", cpus=2, mem=1000, ports=((31005, 31005), (31002, 31002))),
        ),
    )
    tasks = [TaskRequest("t1", cpus=3, mem=1500, ports=2), TaskRequest("t2", cpus=1, mem=500, ports=2)]
    r = PlacementEngine().schedule(tasks, [h])
    assert [(a.task.id, a.hostname, a.agent_id, a.offer_ids, a.ports) for a in r.assignments] == [
        ("t1", "h", "agent-h", ("o1", "o2"), (31000, 31001)),
        ("t2", "h", "agent-h", ("o1", "o2"), (31002, 31005)),
    ]
    assert r.failures == {}


def test_ports_lowest_first_never_twice():
    hosts = [host("a", ports=[(10, 12), (20, 20), (11, 13)])]  # overlapping ranges merge: 10-13, 20
    tasks = [TaskRequest(f"t{i}", cpus=0.5, ports=n) for i, n in enumerate([1, 2, 0, 2])]
    r = PlacementEngine().schedule(tasks, hosts)
    assert [a.ports for a in r.assignments] == [(10,), (11, 12), (), (13, 20)]
    r = PlacementEngine().schedule([*tasks, TaskRequest("more", ports=1)], hosts)
    assert r.failures["more"] == (Failure("a", "resource", "ports", "needs 1, has 0"),)


def test_totals_default_to_lease_plus_running():
    # 2 of 4 cores used by a running task -> a 1-core task leaves 3 of 4 used
    h = host("a", cpus=2, running=[RunningTask("r", cpus=2)])
    r = PlacementEngine().schedule([TaskRequest("t", cpus=1)], [h])
    assert r.assignments[0].fitness == 0.75


# --- disabled hosts, determinism ------------------------------------------------------------------------------


def test_disabled_hosts_get_nothing():
    r = PlacementEngine().schedule([TaskRequest("t", cpus=1)], [host("a", cpus=1, disabled=True), host("b", cpus=8)])
    assert placed(r) == {"t": "b"}


def test_ties_break_by_hostname_whatever_the_input_order():
    hosts = [host("c"), host("a"), host("b")]
    for order in (hosts, hosts[::-1], sorted(hosts, key=lambda h: h.hostname)):
        assert placed(PlacementEngine().schedule([TaskRequest("t")], order)) == {"t": "a"}


def test_replay_gives_the_same_result():
    hosts = [host(f"h{i}", cpus=1 + i % 3, zone=f"z{i % 2}") for i in range(6)]
    tasks = [TaskRequest(f"t{i}", cpus=1, group="g", soft_constraints=(UniqueByAttribute("zone"),)) for i in range(8)]
    engine = PlacementEngine(Spread("cpus"))
    r1, r2 = engine.schedule(tasks, hosts), engine.schedule(tasks, list(reversed(hosts)))
    assert same(r1, r2)
    assert same(r1, PlacementEngine(Spread("cpus")).schedule(tasks, hosts))


# --- good enough, hosts examined, rotation --------------------------------------------------------------------


def _fixed(scores: dict[str, float]):
    def fixed(task: TaskRequest, h: HostView) -> float:
        return scores[h.hostname]

    return fixed


def test_good_enough_takes_the_first_host_that_reaches_it_in_hostname_order():
    fit = _fixed({"a": 0.3, "b": 0.7, "c": 0.9, "d": 0.6})
    hosts = [host(n) for n in "abcd"]
    t = [TaskRequest("t")]
    assert placed(PlacementEngine(fit).schedule(t, hosts)) == {"t": "c"}  # best
    assert placed(PlacementEngine(fit, good_enough=0.6).schedule(t, hosts)) == {"t": "b"}  # first >= .6
    r = PlacementEngine(fit, good_enough=0.95).schedule(t, hosts)  # nobody reaches it: best of all
    assert placed(r) == {"t": "c"}


def test_max_hosts_examined_bounds_the_feasible_hosts_scored():
    fit = _fixed({"a": 0.3, "b": 0.7, "c": 0.9, "d": 0.6})
    hosts = [host("a", cpus=0), host("b"), host("c"), host("d")]  # a does not fit: not counted
    t = [TaskRequest("t", cpus=1)]
    assert placed(PlacementEngine(fit, max_hosts_examined=1).schedule(t, hosts)) == {"t": "b"}
    assert placed(PlacementEngine(fit, max_hosts_examined=2).schedule(t, hosts)) == {"t": "c"}
    r = PlacementEngine(fit, max_hosts_examined=1).schedule(t, hosts)
    assert r.hosts_examined == 2  # a (does not fit), b


def test_rotation_starts_at_the_host_the_previous_task_went_to():
    # a spreading plugin: the host's free share before placement; hosts a..d of 4 cores
    def emptiest(task: TaskRequest, h: HostView) -> float:
        return 1.0 - (h.total("cpus") - h.free("cpus")) / h.total("cpus")

    hosts = [host(n, cpus=4) for n in "abcd"]
    tasks = [TaskRequest(f"t{i}", cpus=1) for i in range(6)]
    r = PlacementEngine(emptiest, good_enough=0.7).schedule(tasks, hosts)
    # t0: a (1.0); t1: starts at a (.75 >= .7) -> a; t2: a .5 -> b 1.0; t3: b .75 -> b; t4: b .5 -> c; t5: c .75 -> c
    assert [a.hostname for a in r.assignments] == ["a", "a", "b", "b", "c", "c"]
    # without rotation every task would start at a again; with max_hosts_examined=1 each task takes the first
    # feasible host from where the last one went
    r = PlacementEngine(emptiest, max_hosts_examined=2).schedule(tasks, hosts)
    # t0: a,b (1,1) -> a; t1: a .75, b 1 -> b; t2: b .75, c 1 -> c; t3: c, d -> d; t4: d .75, a .75 -> a (name)
    # t5: a .5, b .75 -> b
    assert [a.hostname for a in r.assignments] == ["a", "b", "c", "d", "a", "b"]


def test_good_enough_reads_on_the_fitness_scale_without_soft_constraints():
    fit = _fixed({"a": 0.4, "b": 0.8})
    r = PlacementEngine(fit, good_enough=0.5).schedule([TaskRequest("t")], [host("a"), host("b")])
    assert placed(r) == {"t": "b"}  # a's 0.4 is not good enough (with soft = 1 it would score 0.7)


def test_binpacking_is_examined_best_first_so_cuts_cost_no_fitness():
    hosts = [host("a", cpus=8), host("b", cpus=3, mem=4000), host("c", cpus=2)]
    t = [TaskRequest("t", cpus=2)]
    for kwargs in ({}, {"good_enough": 0.0}, {"max_hosts_examined": 1}):
        r = PlacementEngine(BinPacking("cpus"), **kwargs).schedule(t, hosts)
        assert placed(r) == {"t": "c"}
        assert r.hosts_examined <= 2


def test_cuts_with_soft_constraints_on_the_indexed_path():
    # fitness (cpu packing, 1-core task): a 4/4=1.0, b 3/4=.75, c 2/4=.5, d 1/4=.25
    # soft: prefer zone z2 (b, d): scores w=.5: a .5, b .875, c .25, d .625
    hosts = [host("a", cpus=1, zone="z1"), host("b", cpus=2, zone="z2"), host("c", cpus=3, zone="z1")]
    hosts = [replace(h, total_cpus=4.0) for h in [*hosts, host("d", cpus=4, zone="z2")]]
    t = [TaskRequest("t", cpus=1, soft_constraints=(AttributeValue("zone", equals="z2"),))]
    assert placed(PlacementEngine().schedule(t, hosts)) == {"t": "b"}
    assert placed(PlacementEngine(max_hosts_examined=1).schedule(t, hosts)) == {"t": "a"}
    assert placed(PlacementEngine(good_enough=0.5).schedule(t, hosts)) == {"t": "a"}
    assert placed(PlacementEngine(good_enough=0.6).schedule(t, hosts)) == {"t": "b"}
    assert placed(PlacementEngine(soft_constraint_weight=0).schedule(t, hosts)) == {"t": "a"}
    assert placed(PlacementEngine(soft_constraint_weight=1).schedule(t, hosts)) == {"t": "b"}  # b, d tie at 1


# --- engine-wide constraints ----------------------------------------------------------------------------------


def test_engine_wide_constraints_apply_to_every_task_and_come_first():
    only_z1 = AttributeValue("zone", equals="z1")
    never = Custom("never", lambda t, h, ctx: False)
    hosts = [host("a", zone="z1"), host("b", zone="z2")]
    r = PlacementEngine(hard_constraints=[only_z1]).schedule(
        [TaskRequest("t1"), TaskRequest("t2", hard_constraints=(never,))], hosts
    )
    assert placed(r) == {"t1": "a"}
    assert r.failures["t2"] == (
        Failure("a", "constraint", "never", "never rejected the host"),
        Failure("b", "constraint", "attribute(zone)", "zone is 'z2', wants 'z1'"),
    )


def test_engine_wide_soft_constraints_combine_with_the_tasks_own():
    # fitness a 0, b 0 (the task asks nothing); engine soft: zone z2 -> a 0, b 1 -> b.
    # with the task's own soft "hostname a": mean soft a (0 + 1) / 2, b (1 + 0) / 2 -> tie -> a
    prefer_b = AttributeValue("zone", equals="z2")
    engine = PlacementEngine(soft_constraints=[prefer_b])
    hosts = [host("a", zone="z1"), host("b", zone="z2")]
    assert placed(engine.schedule([TaskRequest("t")], hosts)) == {"t": "b"}
    t = TaskRequest("t", soft_constraints=(AttributeValue("hostname", equals="a"),))
    assert placed(engine.schedule([t], hosts)) == {"t": "a"}


def test_weighted_fitness_uses_the_general_path():
    w = Weighted({BinPacking("cpus"): 1, BinPacking("mem"): 1})
    hosts = [host("a", cpus=2, mem=4000), host("b", cpus=4, mem=1000)]
    # task 1 core 1000 MB: a: cpu (2-2+1)/2 = .5, mem 1000/4000 = .25 -> .375; b: cpu .25, mem 1.0 -> .625
    r = PlacementEngine(w).schedule([TaskRequest("t", cpus=1, mem=1000)], hosts)
    assert placed(r) == {"t": "b"}
    assert r.assignments[0].fitness == pytest.approx(0.625)


def test_exclusive_engine_wide_still_reports_offers_and_resources_first():
    hosts = [host("a", cpus=1)]
    r = PlacementEngine(hard_constraints=[ExclusiveHost()]).schedule([TaskRequest("t", cpus=2)], hosts)
    assert r.failures["t"] == (Failure("a", "resource", "cpus", "needs 2, has 1"),)


def test_result_metadata():
    r = PlacementEngine().schedule([TaskRequest("t")], [host("a")])
    assert r.elapsed_ms >= 0 and r.hosts_examined >= 1
    assert r.by_host() == {"a": list(r.assignments)}
    assert r.assignments[0].offer_ids == ("o-a",)


def test_equal_fitness_from_different_free_amounts_still_ties_by_hostname():
    # Both clamp to fitness 0 (a given total below what is free): "a" has more free but the smaller name.
    hosts = [replace(host("a", cpus=3), total_cpus=1.0), replace(host("b", cpus=2), total_cpus=1.0)]
    for fast in (True, False):
        r = PlacementEngine(fast_path=fast).schedule([TaskRequest("t", cpus=0.5)], hosts)
        assert placed(r) == {"t": "a"}
        assert r.assignments[0].fitness == 0.0


def test_soft_ties_across_fitness_levels_go_to_the_smaller_hostname():
    # w = 1: the score is the soft score alone, so a host of lower fitness ties and wins on its name.
    hosts = [host("a", cpus=0.5, mem=0), host("b", cpus=1), host("c", cpus=1, mem=8000)]
    t = TaskRequest("t", cpus=0.5, soft_constraints=(UniqueByAttribute(),))
    for fast in (True, False):
        assert placed(
            PlacementEngine(Spread("mem"), soft_constraint_weight=1, fast_path=fast).schedule([t], hosts)
        ) == {"t": "a"}


def test_running_exclusive_tasks_hold_their_host_in_later_runs() -> None:
    hosts = [host("a", cpus=3, running=[RunningTask("r", cpus=1, exclusive=True)]), host("b")]
    for fast in (True, False):
        r = PlacementEngine(fast_path=fast).schedule([TaskRequest("t", cpus=1), TaskRequest("u", cpus=4)], hosts)
        assert placed(r) == {"t": "b"}
        assert r.failures["u"][0] == Failure("a", "constraint", "exclusive_host", "held exclusively by task r")


@pytest.mark.parametrize("fitness", [BinPacking("cpus"), Weighted({BinPacking("cpus"): 1})])
def test_a_run_fed_task_by_task_gives_what_schedule_gives(fitness):
    hosts = [host("h1", cpus=2, zone="a"), host("h2", cpus=3, zone="b"), host("h3", cpus=1, zone="a")]
    tasks = [
        TaskRequest("a", cpus=1, group="g", hard_constraints=(UniqueByAttribute("zone"),)),
        TaskRequest("b", cpus=2),
        TaskRequest("c", cpus=1, group="g", hard_constraints=(UniqueByAttribute("zone"),)),
        TaskRequest("d", cpus=4),
    ]
    engine = PlacementEngine(fitness)
    run = engine.start(hosts)
    outcomes = [run.place(t) for t in tasks]
    result = run.result()
    assert same(result, engine.schedule(tasks, hosts))
    # a: h3 fills up exactly (1/1 beats h1 1/2, h2 1/3); b: h1 (2/2); c: zone a holds a, so h2; d: nowhere
    assert [a.hostname if a else None for a in outcomes] == ["h3", "h1", "h2", None]
    assert run.failures("d") == result.failures["d"] and run.failures("a") is None
    with pytest.raises(ValueError, match="task id 'a' appears twice in one run"):
        run.place(tasks[0])
