"""Fitness calculators: exact values, and the placements they lead to (hand-computed)."""

from __future__ import annotations

import math

import pytest

from scheduler_sdk.placement.engine import PlacementEngine
from scheduler_sdk.placement.extension import HostView
from scheduler_sdk.placement.fitness import (
    SPREAD_FLOOR,
    BinPacking,
    FitnessCalculator,
    Spread,
    Weighted,
    as_fitness,
)
from scheduler_sdk.placement.model import Host, OfferSlice, RunningTask, TaskRequest


def host(name: str, cpus: float = 0, mem: float = 0, *, running: tuple[RunningTask, ...] = (), **kw) -> Host:
    offer = OfferSlice(
        f"o-{name}",
        cpus=cpus,
        mem=mem,
        disk=kw.pop("disk", 0),
        network=kw.pop("network", 0),
        ports=kw.pop("ports", ()),
        scalars=kw.pop("scalars", {}),
    )
    return Host(hostname=name, agent_id=f"a-{name}", offers=(offer,), running=running, **kw)


def view(h: Host) -> HostView:
    """The engine's view of a host at the start of a run (what a calculator sees)."""
    from scheduler_sdk.placement.run_state import HostState

    return HostState(h, 0)


def placed(result) -> dict[str, str]:
    return {a.task.id: a.hostname for a in result.assignments}


# --- exact values -------------------------------------------------------------------------------------------


def test_binpacking_is_use_after_placement():
    # 8 cores: 2 used by a running task, 6 offered; a 2-core task leaves 4 used of 8.
    h = view(host("h", cpus=6, mem=1000, running=(RunningTask("r", cpus=2, mem=3000),)))
    t = TaskRequest("t", cpus=2, mem=1000)
    assert BinPacking("cpus")(t, h) == pytest.approx((2 + 2) / 8)
    assert BinPacking("mem")(t, h) == pytest.approx((3000 + 1000) / 4000)


def test_binpacking_network_disk_and_named_scalars():
    h = view(
        host(
            "h",
            disk=100,
            network=1000,
            scalars={"gpus": 4},
            total_disk=400,
            total_network=2000,
            total_scalars={"gpus": 8},
        )
    )
    t = TaskRequest("t", disk=100, network=500, scalars={"gpus": 2})
    assert BinPacking("disk")(t, h) == pytest.approx((300 + 100) / 400)
    assert BinPacking("network")(t, h) == pytest.approx((1000 + 500) / 2000)
    assert BinPacking("gpus")(t, h) == pytest.approx((4 + 2) / 8)


def test_binpacking_host_without_the_resource_scores_zero():
    assert BinPacking("gpus")(TaskRequest("t"), view(host("h", cpus=4))) == 0.0


def test_spread_is_free_share_after_placement_lifted_onto_floor():
    h = view(host("h", cpus=8, total_cpus=16))  # 8 of 16 used
    t = TaskRequest("t", cpus=4)  # leaves 4 of 16 free
    assert Spread("cpus")(t, h) == pytest.approx(SPREAD_FLOOR + (1 - SPREAD_FLOOR) * 4 / 16)


def test_spread_exact_fill_scores_the_floor_not_zero():
    h = view(host("h", cpus=4))
    assert Spread("cpus")(TaskRequest("t", cpus=4), h) == SPREAD_FLOOR > 0.0


def test_spread_places_a_task_that_exactly_fills_the_only_host():
    # Fenzo scores this 0 and treats it as "no fit"; here it is placed.
    result = PlacementEngine(Spread("cpus")).schedule([TaskRequest("t", cpus=4)], [host("only", cpus=4)])
    assert placed(result) == {"t": "only"}
    assert result.assignments[0].fitness == SPREAD_FLOOR


def test_spread_prefers_host_that_keeps_room_over_an_exact_fill():
    # "fill": 4 of 4 free -> 0 left (SPREAD_FLOOR); "room": 6 of 8 free -> 2/8 left.
    hosts = [host("fill", cpus=4), host("room", cpus=6, total_cpus=8)]
    result = PlacementEngine(Spread("cpus")).schedule([TaskRequest("t", cpus=4)], hosts)
    assert placed(result) == {"t": "room"}


def test_weighted_normalises_any_positive_weights():
    h = view(host("h", cpus=2, mem=500, total_cpus=4, total_mem=1000))
    t = TaskRequest("t", cpus=1, mem=250)
    cpu = (2 + 1) / 4  # 0.75
    mem = (500 + 250) / 1000  # 0.75 -> make them differ with another task
    assert Weighted({BinPacking("cpus"): 1, BinPacking("mem"): 3})(t, h) == pytest.approx(0.25 * cpu + 0.75 * mem)
    t2 = TaskRequest("t2", cpus=2, mem=0)
    cpu2, mem2 = 1.0, 0.5
    assert Weighted({BinPacking("cpus"): 1, BinPacking("mem"): 3})(t2, h) == pytest.approx(0.25 * cpu2 + 0.75 * mem2)
    assert Weighted({BinPacking("cpus"): 10, BinPacking("mem"): 30})(t2, h) == pytest.approx(0.25 * cpu2 + 0.75 * mem2)
    assert Weighted([(BinPacking("cpus"), 0.2), (BinPacking("mem"), 0.2)])(t2, h) == pytest.approx(0.75)


@pytest.mark.parametrize("bad", [0, -1, -0.5, math.nan, math.inf, True, "1"])
def test_weighted_rejects_non_positive_weights(bad):
    with pytest.raises(ValueError, match="binpacking\\(mem\\)"):
        Weighted({BinPacking("cpus"): 1, BinPacking("mem"): bad})


def test_weighted_rejects_empty():
    with pytest.raises(ValueError):
        Weighted({})


def test_plain_functions_are_calculators_everywhere():
    def prefer_big(task: TaskRequest, h: HostView) -> float:
        return h.total("cpus") / 100

    calc = as_fitness(prefer_big)
    assert isinstance(calc, FitnessCalculator)
    assert calc.name == "prefer_big"
    hosts = [host("small", cpus=10), host("big", cpus=40)]
    assert placed(PlacementEngine(prefer_big).schedule([TaskRequest("t", cpus=1)], hosts)) == {"t": "big"}
    w = Weighted({prefer_big: 1, BinPacking("cpus"): 1})
    assert "prefer_big" in w.name
    # small: (0.1 + 0.1) / 2 = 0.1; big: (0.4 + 0.025) / 2 = 0.2125
    assert placed(PlacementEngine(w).schedule([TaskRequest("t", cpus=1)], hosts)) == {"t": "big"}


def test_non_callable_is_rejected():
    with pytest.raises(TypeError):
        as_fitness(42)  # type: ignore[arg-type]


def test_out_of_range_plugin_values_are_clamped():
    hosts = [host("a", cpus=1), host("b", cpus=1)]
    r = PlacementEngine(lambda t, h: 7.0 if h.hostname == "b" else math.nan).schedule([TaskRequest("t")], hosts)
    assert placed(r) == {"t": "b"}
    assert r.assignments[0].fitness == 1.0


# --- placements ---------------------------------------------------------------------------------------------


def _three_hosts() -> list[Host]:
    # cpus free / total:  a 2/8 (6 used)   b 6/8 (2 used)   c 8/8
    # mem free / total:   a 8000/8000      b 1000/8000      c 4000/8000
    return [
        host("a", cpus=2, mem=8000, total_cpus=8, total_mem=8000),
        host("b", cpus=6, mem=1000, total_cpus=8, total_mem=8000),
        host("c", cpus=8, mem=4000, total_cpus=8, total_mem=8000),
    ]


def test_cpu_binpacking_picks_the_fullest_host():
    # 2 cores, 1000 MB: a -> 8/8 = 1.0, b -> 4/8, c -> 2/8
    r = PlacementEngine(BinPacking("cpus")).schedule([TaskRequest("t", cpus=2, mem=1000)], _three_hosts())
    assert placed(r) == {"t": "a"}
    assert r.assignments[0].fitness == 1.0


def test_mem_binpacking_picks_the_fullest_host_by_memory():
    # mem use after: a 1000/8000, b 8000/8000, c 5000/8000
    r = PlacementEngine(BinPacking("mem")).schedule([TaskRequest("t", cpus=2, mem=1000)], _three_hosts())
    assert placed(r) == {"t": "b"}


def test_cpu_spread_picks_the_emptiest_host():
    r = PlacementEngine(Spread("cpus")).schedule([TaskRequest("t", cpus=2, mem=1000)], _three_hosts())
    assert placed(r) == {"t": "c"}


def test_cpu_and_mem_binpacking_combined():
    # task 2 cores, 1000 MB; cpu use after: a 1.0, b .5, c .25; mem use after: a .125, b 1.0, c .625
    # equal weights: a .5625, b .75, c .4375 -> b; cpu weighted 3:1: a .78125, b .625, c .34375 -> a
    t = [TaskRequest("t", cpus=2, mem=1000)]
    both = Weighted({BinPacking("cpus"): 1, BinPacking("mem"): 1})
    assert placed(PlacementEngine(both).schedule(t, _three_hosts())) == {"t": "b"}
    cpu_heavy = Weighted({BinPacking("cpus"): 3, BinPacking("mem"): 1})
    assert placed(PlacementEngine(cpu_heavy).schedule(t, _three_hosts())) == {"t": "a"}


def test_binpacking_fills_hosts_one_after_another():
    tasks = [TaskRequest(f"t{i}", cpus=1) for i in range(5)]
    hosts = [host("x", cpus=2), host("y", cpus=2), host("z", cpus=2)]
    # all empty -> tie -> "x"; then x is fuller -> x; then x full -> y, y, then z
    assert placed(PlacementEngine().schedule(tasks, hosts)) == {"t0": "x", "t1": "x", "t2": "y", "t3": "y", "t4": "z"}


def test_spread_deals_tasks_round_robin():
    tasks = [TaskRequest(f"t{i}", cpus=1) for i in range(5)]
    hosts = [host("x", cpus=2), host("y", cpus=2), host("z", cpus=2)]
    assert placed(PlacementEngine(Spread("cpus")).schedule(tasks, hosts)) == {
        "t0": "x",
        "t1": "y",
        "t2": "z",
        "t3": "x",
        "t4": "y",
    }
