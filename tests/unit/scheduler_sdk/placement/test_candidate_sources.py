"""Each candidate source by name, against its reference (hypothesis).

- the engine picks the source its settings call for;
- `FreeAmountIndex` and `ShapeIndex` give, once filtered, exactly `SortedScan`'s candidates (fitness and order),
  task after task, while assignments change the hosts;
- `RotatingScan` gives every host once, in hostname order from the cursor on.

The engine-level equalities (each fast source's run == the reference run, `GoodEnoughFirst` included) are in
test_engine_properties.py.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler_sdk.placement.candidates import CandidateSource, FreeAmountIndex, RotatingScan, ShapeIndex, SortedScan
from scheduler_sdk.placement.constraints import ExclusiveHost, as_constraint
from scheduler_sdk.placement.engine import PlacementEngine
from scheduler_sdk.placement.feasibility import fits
from scheduler_sdk.placement.fitness import BinPacking, Spread, Weighted, clamp01
from scheduler_sdk.placement.model import Host, OfferSlice, TaskRequest
from scheduler_sdk.placement.run_state import HostState, RunState
from tests.unit.scheduler_sdk.placement.test_engine_properties import BY_SHAPE, EXAMPLES, ORDERED, hosts_st, tasks_st

FitFn = Callable[[TaskRequest, HostState], float]


@pytest.mark.parametrize(
    ("engine", "names"),
    [
        (PlacementEngine(BinPacking("cpus")), ("free_amount_index", "free_amount_index")),
        (PlacementEngine(Spread("mem"), good_enough=0.5, max_hosts_examined=2), ("free_amount_index",) * 2),
        (PlacementEngine(BinPacking("cpus"), fast_path=False), ("sorted_scan", "sorted_scan")),
        (PlacementEngine(Weighted({BinPacking("cpus"): 1})), ("shape_index", "shape_index")),
        (PlacementEngine(Weighted({BinPacking("cpus"): 1}), good_enough=0.5), ("good_enough_first", "rotating_scan")),
        (PlacementEngine(Weighted({BinPacking("cpus"): 1}), max_hosts_examined=3), ("rotating_scan",) * 2),
        (PlacementEngine(Weighted({BinPacking("cpus"): 1}), fast_path=False), ("rotating_scan",) * 2),
        (PlacementEngine(lambda t, h: 0.5), ("rotating_scan", "rotating_scan")),
    ],
)
def test_the_engine_picks_the_source_its_settings_call_for(engine: PlacementEngine, names: tuple[str, str]) -> None:
    hosts = [Host("h1", "a1", offers=(OfferSlice("o1", cpus=1),))]
    assert engine.start(hosts).source_names == names


def _fit_of(calc: Callable[[TaskRequest, HostState], float]) -> FitFn:
    return lambda task, h: clamp01(calc(task, h))


def _replay_against_sorted_scan(
    hosts: list[Host], tasks: list[TaskRequest], make: Callable[[RunState, FitFn], CandidateSource], fit: FitFn
) -> None:
    """Task after task: the source's candidates that pass the filter == the sorted scan's; then the task goes to the
    first of them (as the engine would without soft constraints), and both sources are told."""
    run = RunState(sorted(hosts, key=lambda h: h.hostname))
    reference = SortedScan(run, fit)
    source = make(run, fit)
    for task in tasks:
        hard = tuple(as_constraint(c) for c in task.hard_constraints)
        expected = list(reference.candidates(task, hard))
        got = [(f, rank) for f, rank in source.candidates(task, hard) if fits(task, run.state(rank), hard, run)]
        assert got == expected
        if expected:
            h = run.state(expected[0][1])
            h.take(task, any(isinstance(c, ExclusiveHost) for c in hard))
            run.note(h, task)
            source.assigned(h)
            reference.assigned(h)


@settings(max_examples=150 * EXAMPLES, deadline=None)
@given(hosts=hosts_st(), tasks=tasks_st(), calc=st.sampled_from(ORDERED))
def test_free_amount_index_gives_the_sorted_scans_candidates(hosts, tasks, calc) -> None:
    def make(run: RunState, fit: FitFn) -> CandidateSource:
        return FreeAmountIndex(run, fit, calc.resource, type(calc) is Spread)

    _replay_against_sorted_scan(hosts, tasks + tasks[::-1], make, _fit_of(calc))


@settings(max_examples=150 * EXAMPLES, deadline=None)
@given(hosts=hosts_st(), tasks=tasks_st(), calc=st.sampled_from(BY_SHAPE + ORDERED))
def test_shape_index_gives_the_sorted_scans_candidates(hosts, tasks, calc) -> None:
    def make(run: RunState, fit: FitFn) -> CandidateSource:
        return ShapeIndex(run, fit, None)

    _replay_against_sorted_scan(hosts, tasks + tasks[::-1], make, _fit_of(calc))


@settings(max_examples=50 * EXAMPLES, deadline=None)
@given(hosts=hosts_st(), cursor=st.integers(0, 5))
def test_rotating_scan_gives_every_host_once_from_the_cursor(hosts, cursor) -> None:
    run = RunState(sorted(hosts, key=lambda h: h.hostname))
    n = len(hosts)
    run.cursor = cursor % n
    got = [rank for fit, rank in RotatingScan(run).candidates(TaskRequest("t"), ())]
    assert got == [(run.cursor + i) % n for i in range(n)]
