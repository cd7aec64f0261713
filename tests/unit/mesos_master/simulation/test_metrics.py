"""The figures of a run, from hand-made records."""

from __future__ import annotations

import pytest

from mesos_master.simulation.metrics import TaskRecord, figures, percentile


def test_utilization_waits_and_shares() -> None:
    totals = {"cpus": 4.0, "mem": 400.0}
    records = [
        TaskRecord("a0", "a", 0.0, {"cpus": 2, "mem": 100}, start=0.0, end=10.0, state="TASK_FINISHED"),
        TaskRecord("b0", "b", 0.0, {"cpus": 1, "mem": 300}, start=5.0, end=10.0, state="TASK_FINISHED"),
        TaskRecord("b1", "b", 2.0, {"cpus": 8, "mem": 1}, why="larger than every agent (cpus)"),
    ]
    f = figures(records, totals, buckets=2)
    assert f.horizon == 10.0 and f.buckets == [0.0, 5.0]
    assert f.utilization["cpus"] == [0.5, 0.75]
    assert f.utilization["mem"] == [0.25, 1.0]
    assert f.shares["a"] == [0.5, 0.5]  # cpus: 2 of 4
    assert f.shares["b"] == [0.0, 0.75]  # mem: 300 of 400
    assert f.waits["b"]["placed"] == 1 and f.waits["b"]["p50"] == 5.0
    assert f.waits["all"]["mean"] == 2.5
    assert (f.tasks, f.finished, f.never_placed) == (3, 2, 1)
    assert f.never_placed_why == {"larger than every agent (cpus)": 1}
    assert f.makespan == 10.0
    s = f.summary()
    assert s["utilization_mean"] == {"cpus": 0.625, "mem": 0.625}
    assert s["dominant_share_max"] == {"a": 0.5, "b": 0.75}


def test_a_horizon_cuts_and_running_tasks_count_to_it() -> None:
    records = [TaskRecord("a0", "a", 0.0, {"cpus": 1}, start=1.0)]  # still running
    f = figures(records, {"cpus": 1.0, "mem": 1.0}, horizon=4.0, buckets=4)
    assert f.utilization["cpus"] == [0.0, 1.0, 1.0, 1.0]
    assert f.finished == 0 and f.never_placed == 0


@pytest.mark.parametrize(("p", "want"), [(50, 2.0), (99, 4.0), (0, 1.0), (100, 4.0)])
def test_percentile_is_nearest_rank(p: float, want: float) -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], p) == want
    assert percentile([], p) == 0.0


def test_bucketed_utilization_equals_the_plain_integral() -> None:
    """The difference-array spread against the overlap of every task with every bucket, summed by hand."""
    import random

    rng = random.Random(1)
    records = []
    for i in range(200):
        start = rng.uniform(0, 100)
        end = start + rng.expovariate(0.05) if rng.random() < 0.9 else None
        records.append(TaskRecord(str(i), "r", 0.0, {"cpus": rng.uniform(0, 3)}, start=start, end=end))
    f = figures(records, {"cpus": 50.0, "mem": 1.0}, horizon=120.0, buckets=37)
    width = 120.0 / 37
    for b in range(37):
        lo, hi = b * width, (b + 1) * width
        held = sum(
            r.resources["cpus"] * max(0.0, min(hi, r.end if r.end is not None else 120.0) - max(lo, r.start or 0.0))
            for r in records
        )
        assert f.utilization["cpus"][b] == pytest.approx(held / (width * 50.0), abs=1e-9)
