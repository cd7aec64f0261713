"""Constraints, hard and soft, with hand-computed placements."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from scheduler_sdk.placement.constraints import (
    AttributeValue,
    BalancedByAttribute,
    Custom,
    ExclusiveHost,
    UniqueByAttribute,
    as_constraint,
)
from scheduler_sdk.placement.engine import PlacementEngine
from scheduler_sdk.placement.extension import HostView
from scheduler_sdk.placement.model import (
    ConstraintResult,
    Failure,
    Host,
    OfferSlice,
    RunningTask,
    TaskRequest,
)
from scheduler_sdk.placement.run_state import HostState


def host(name: str, cpus: float = 4, *, running: tuple[RunningTask, ...] = (), **attributes: str) -> Host:
    return Host(
        hostname=name,
        agent_id=f"a-{name}",
        attributes=attributes,
        offers=(OfferSlice(f"o-{name}", cpus=cpus, mem=4000),),
        running=running,
    )


def task(tid: str, cpus: float = 1, group: str = "", hard=(), soft=()) -> TaskRequest:
    return TaskRequest(tid, cpus=cpus, group=group, hard_constraints=tuple(hard), soft_constraints=tuple(soft))


def placed(result) -> dict[str, str]:
    return {a.task.id: a.hostname for a in result.assignments}


class ProtocolOnlyContext:
    """A `RunContext` with nothing but the protocol (constraints must not depend on the engine's helpers)."""

    def __init__(self, hosts: list[Host]) -> None:
        self._views: list[HostView] = [HostState(h, i) for i, h in enumerate(hosts)]

    def hosts(self) -> list[HostView]:
        return self._views

    def group_hosts(self, group: str) -> Mapping[str, int]:
        return {v.hostname: n for v in self._views if (n := v.groups().get(group, 0))}


# --- UniqueByAttribute ----------------------------------------------------------------------------------------


def test_unique_by_host_counts_running_and_same_run_tasks():
    unique = UniqueByAttribute("hostname")
    hosts = [host("a", 3, running=(RunningTask("r", group="web", cpus=1),)), host("b")]
    tasks = [task("w1", group="web", hard=[unique]), task("w2", group="web", hard=[unique])]
    r = PlacementEngine().schedule(tasks, hosts)
    assert placed(r) == {"w1": "b"}
    assert r.failures == {
        "w2": (
            Failure("a", "constraint", "unique(hostname)", "1 task(s) of group 'web' already on hostname 'a'"),
            Failure("b", "constraint", "unique(hostname)", "1 task(s) of group 'web' already on hostname 'b'"),
        )
    }


def test_unique_by_zone_and_other_groups_are_free():
    unique = UniqueByAttribute("zone")
    hosts = [host("a", zone="z1"), host("b", zone="z1"), host("c", zone="z2")]
    tasks = [
        task("db1", group="db", hard=[unique]),
        task("db2", group="db", hard=[unique]),
        task("db3", group="db", hard=[unique]),
        task("x1", group="x", hard=[unique]),
        task("nogroup", hard=[unique]),
    ]
    r = PlacementEngine().schedule(tasks, hosts)
    # db1: all tie -> a; db2: zone z1 taken -> c; db3: nowhere. x1: own group, bin packs onto a (fullest).
    # nogroup: no group, no co-tasks; a is fullest.
    assert placed(r) == {"db1": "a", "db2": "c", "x1": "a", "nogroup": "a"}
    assert [f.hostname for f in r.failures["db3"]] == ["a", "b", "c"]
    assert r.failures["db3"][2].detail == "1 task(s) of group 'db' already on zone 'z2'"


def test_unique_soft_trades_against_fitness_by_the_weight():
    # a: 2 of 4 free with one "web" task running; b: empty.
    # fitness a (4-2+1)/4 = .75, b .25; soft a 1/(1+1) = .5, b 1.
    hosts = [host("a", 2, running=(RunningTask("r", group="web", cpus=2),)), host("b")]
    t = [task("w", group="web", soft=[UniqueByAttribute()])]
    assert placed(PlacementEngine(soft_constraint_weight=0.4).schedule(t, hosts)) == {"w": "a"}  # .65 vs .55
    assert placed(PlacementEngine(soft_constraint_weight=0.6).schedule(t, hosts)) == {"w": "b"}  # .60 vs .70
    assert placed(PlacementEngine(soft_constraint_weight=0.5).schedule(t, hosts)) == {"w": "a"}  # .625 tie -> a


def test_unique_missing_attribute_fails():
    r = PlacementEngine().schedule([task("t", group="g", hard=[UniqueByAttribute("rack")])], [host("a")])
    assert r.failures["t"] == (Failure("a", "constraint", "unique(rack)", "host has no attribute 'rack'"),)


# --- BalancedByAttribute --------------------------------------------------------------------------------------


def test_balanced_hard_keeps_zones_within_one():
    balanced = BalancedByAttribute("zone")
    hosts = [
        host("a1", 8, zone="z1", running=(RunningTask("r", group="api", cpus=1),)),  # total 9
        host("a2", 8, zone="z1"),
        host("b1", 8, zone="z2"),
        host("c1", 8, zone="z3"),
    ]
    tasks = [task(f"api{i}", group="api", hard=[balanced]) for i in range(1, 6)]
    r = PlacementEngine().schedule(tasks, hosts)
    # counts z1/z2/z3 before each: 1/0/0 -> {b1,c1} tie -> b1; 1/1/0 -> c1; 1/1/1 -> any: b1 (2/8=.25) and c1
    # (.25) beat a1 (2/9) -> b1; 1/2/1 -> z1 or z3: c1 .25 > a1 .22 -> c1; 1/2/2 -> z1: a1 2/9 > a2 1/8 -> a1.
    assert placed(r) == {"api1": "b1", "api2": "c1", "api3": "b1", "api4": "c1", "api5": "a1"}


def test_balanced_hard_failure_reason_and_explicit_values():
    balanced = BalancedByAttribute("zone", values=["z1", "z2"])
    hosts = [host("a", zone="z1", running=(RunningTask("r", group="api"),)), host("b", zone="z3")]
    r = PlacementEngine().schedule([task("t", group="api", hard=[balanced])], hosts)
    assert r.failures["t"] == (
        Failure("a", "constraint", "balanced(zone)", "zone 'z1' has 1 task(s) of group 'api', the least loaded has 0"),
        Failure("b", "constraint", "balanced(zone)", "zone 'z3' is not among the balanced values"),
    )
    with pytest.raises(ValueError):
        BalancedByAttribute("zone", values=[])


def test_balanced_soft_scores_by_distance_below_average():
    # running "api": 2 in z1, 1 in z2, 0 in z3; avg 1 -> scores (1-c+1)/2: z1 0, z2 .5, z3 1
    hosts = [
        host("a", zone="z1", running=(RunningTask("r1", group="api"), RunningTask("r2", group="api"))),
        host("b", zone="z2", running=(RunningTask("r3", group="api"),)),
        host("c", zone="z3"),
    ]
    balanced = BalancedByAttribute("zone")
    ctx = ProtocolOnlyContext(hosts)
    t = task("t", group="api")
    scores = [balanced.evaluate(t, v, ctx) for v in ctx.hosts()]
    assert [s.score for s in scores] == [0.0, 0.5, 1.0]
    assert [s.ok for s in scores] == [False, False, True]
    # w = 1: soft alone decides
    r = PlacementEngine(soft_constraint_weight=1.0).schedule([task("t", group="api", soft=[balanced])], hosts)
    assert placed(r) == {"t": "c"}


# --- ExclusiveHost --------------------------------------------------------------------------------------------


def _exclusive_hosts() -> list[Host]:
    # a: one running task (3 of 4 free); b, c: empty
    return [host("a", 3, running=(RunningTask("r", cpus=1),)), host("b"), host("c")]


def test_exclusive_task_avoids_occupied_hosts_and_later_tasks_avoid_it():
    ex = task("ex", cpus=2, hard=[ExclusiveHost()])
    follower = task("n", cpus=1)
    r = PlacementEngine().schedule([ex, follower], _exclusive_hosts())
    # ex: a has a task -> b, c tie -> b. n: b would be fullest ((4-2+1)/4 = .75) but is held -> a (.5) over c.
    assert placed(r) == {"ex": "b", "n": "a"}


def test_exclusive_task_after_others_in_same_run():
    r = PlacementEngine().schedule([task("n", cpus=1), task("ex", cpus=2, hard=[ExclusiveHost()])], _exclusive_hosts())
    # n -> a (fullest); ex -> a is occupied -> b
    assert placed(r) == {"n": "a", "ex": "b"}


def test_follower_failure_names_the_exclusive_task():
    r = PlacementEngine().schedule([task("ex", hard=[ExclusiveHost()]), task("n")], [host("b")])
    assert placed(r) == {"ex": "b"}
    assert r.failures == {"n": (Failure("b", "constraint", "exclusive_host", "held exclusively by task ex"),)}


def test_exclusive_engine_wide_means_one_task_per_empty_host():
    r = PlacementEngine(hard_constraints=[ExclusiveHost()]).schedule(
        [task("t1"), task("t2"), task("t3")], _exclusive_hosts()
    )
    assert placed(r) == {"t1": "b", "t2": "c"}
    assert r.failures["t3"] == (
        Failure("a", "constraint", "exclusive_host", "host has 1 task(s), the task wants it exclusively"),
        Failure("b", "constraint", "exclusive_host", "held exclusively by task t1"),
        Failure("c", "constraint", "exclusive_host", "held exclusively by task t2"),
    )


def test_exclusive_soft_prefers_empty_hosts_but_does_not_block():
    # a: fit (4-3+1)/4 = .5, soft 0 -> .25; b: fit .25, soft 1 -> .625
    soft = task("s", soft=[ExclusiveHost()])
    r = PlacementEngine().schedule([soft, task("n")], [_exclusive_hosts()[0], host("b")])
    assert placed(r) == {"s": "b", "n": "a"}  # n: a .5 vs b .5 -> a; soft exclusivity reserves nothing


# --- AttributeValue -------------------------------------------------------------------------------------------


def _typed_hosts() -> list[Host]:
    return [host("a", 1, type="m5"), host("b", 2, type="c5"), host("c", 3, type="c5.large"), host("d", 4)]


@pytest.mark.parametrize(
    ("constraint", "where"),
    [
        (AttributeValue("type", equals="c5"), "b"),
        (AttributeValue("type", in_=["m5", "c5.large"]), "a"),  # fullest of a, c
        (AttributeValue("type", regex="c5.*"), "b"),  # b (fit 1/2) over c (1/3)
        (AttributeValue("type", regex=r"c5\.large"), "c"),
        (AttributeValue("hostname", equals="d"), "d"),
    ],
)
def test_attribute_value_pins(constraint, where):
    r = PlacementEngine().schedule([task("t", hard=[constraint])], _typed_hosts())
    assert placed(r) == {"t": where}


def test_attribute_value_failure_reasons():
    r = PlacementEngine().schedule([task("t", hard=[AttributeValue("type", equals="p3")])], _typed_hosts())
    assert r.failures["t"] == (
        Failure("a", "constraint", "attribute(type)", "type is 'm5', wants 'p3'"),
        Failure("b", "constraint", "attribute(type)", "type is 'c5', wants 'p3'"),
        Failure("c", "constraint", "attribute(type)", "type is 'c5.large', wants 'p3'"),
        Failure("d", "constraint", "attribute(type)", "host has no attribute 'type'"),
    )


def test_attribute_value_soft_prefers_but_does_not_pin():
    # bin packing: a 1.0, b .5, c .33, d .25; soft equals c5.large: only c scores 1
    # w .5: a .5, b .25, c .6667, d .125 -> c
    soft = AttributeValue("type", equals="c5.large")
    r = PlacementEngine().schedule([task("t", soft=[soft])], _typed_hosts())
    assert placed(r) == {"t": "c"}
    r = PlacementEngine().schedule([task("t", soft=[soft])], [h for h in _typed_hosts() if h.hostname != "c"])
    assert placed(r) == {"t": "a"}


@pytest.mark.parametrize("kwargs", [{}, {"equals": "x", "regex": "y"}, {"in_": "abc"}])
def test_attribute_value_arguments(kwargs):
    with pytest.raises(ValueError):
        AttributeValue("type", **kwargs)


# --- Custom ---------------------------------------------------------------------------------------------------


def test_custom_bool_float_and_result():
    hosts = [host("a", 1), host("b", 2), host("c", 3)]
    no_a = Custom("no_a", lambda t, h, ctx: h.hostname != "a")
    r = PlacementEngine().schedule([task("t", hard=[no_a])], hosts)
    assert placed(r) == {"t": "b"}
    scored = Custom("prefer_c", lambda t, h, ctx: 1.0 if h.hostname == "c" else 0.0)
    assert placed(PlacementEngine(soft_constraint_weight=0.9).schedule([task("t", soft=[scored])], hosts)) == {"t": "c"}
    r = PlacementEngine().schedule([task("t", hard=[scored])], hosts)  # as hard: score 0 fails
    assert placed(r) == {"t": "c"}
    full = Custom("full", lambda t, h, ctx: ConstraintResult(False, 0.0, f"{h.hostname} is reserved"))
    r = PlacementEngine().schedule([task("t", hard=[full])], hosts[:1])
    assert r.failures["t"] == (Failure("a", "constraint", "full", "a is reserved"),)
    r = PlacementEngine().schedule([task("t", hard=[no_a])], hosts[:1])
    assert r.failures["t"] == (Failure("a", "constraint", "no_a", "no_a rejected the host"),)


def test_plain_function_as_engine_wide_constraint():
    def only_b(t: TaskRequest, h: HostView, ctx) -> bool:
        return h.hostname == "b"

    assert as_constraint(only_b).name == "only_b"
    r = PlacementEngine(hard_constraints=[only_b]).schedule([task("t")], [host("a", 1), host("b", 2)])
    assert placed(r) == {"t": "b"}


def test_custom_bad_return_type():
    bad = Custom("bad", lambda t, h, ctx: "yes")  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="bad"):
        PlacementEngine().schedule([task("t", hard=[bad])], [host("a")])


def test_constraints_see_same_run_assignments_through_the_context():
    seen: list[dict[str, int]] = []

    def watch(t: TaskRequest, h: HostView, ctx) -> bool:
        seen.append(dict(ctx.group_hosts("g")))
        return True

    PlacementEngine().schedule(
        [task("t1", group="g", hard=[Custom("w", watch)]), task("t2", group="g", hard=[Custom("w", watch)])],
        [host("a", running=(RunningTask("r", group="g"),))],
    )
    assert seen == [{"a": 1}, {"a": 2}]
