"""The figures of one run, from what happened to each task: pure, and the same for a simulated and a real run.

A run is its `TaskRecord`s (arrival, start, end, role, what the task holds) and the cluster's totals. From them:
utilization over time (the share of the cluster's cpus and mem that running tasks hold, averaged per time
bucket), queue waits (arrival to RUNNING) per role, each role's dominant share over time (DRF's measure: the
largest share of any resource the role's running tasks hold), and the tasks never placed, with why.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULT_BUCKETS", "Figures", "TaskRecord", "figures", "percentile"]

DEFAULT_BUCKETS = 240
_RESOURCES = ("cpus", "mem")


@dataclass
class TaskRecord:
    task_id: str
    role: str
    arrival: float
    resources: Mapping[str, float]
    start: float | None = None  # TASK_RUNNING
    end: float | None = None  # terminal
    state: str = ""  # the last state heard (TASK_FINISHED...), "" while queued
    why: str = ""  # for a task never placed: why not


@dataclass
class Figures:
    horizon: float  # seconds of trace time the figures cover
    buckets: list[float]  # each bucket's start (seconds)
    utilization: dict[str, list[float]]  # resource -> share of the cluster's total held, per bucket
    shares: dict[str, list[float]]  # role -> dominant share, per bucket
    waits: dict[str, dict[str, float]]  # role (and "all") -> p50, p99, mean, max, placed
    mean_utilization: dict[str, float]
    mean_shares: dict[str, float]
    tasks: int
    finished: int
    never_placed: int
    never_placed_why: dict[str, int] = field(default_factory=dict)
    makespan: float = 0.0  # the last task's end

    def summary(self) -> dict[str, Any]:
        """The figures without the series (for tables, JSON and comparisons)."""
        return {
            "horizon_s": round(self.horizon, 3),
            "tasks": self.tasks,
            "finished": self.finished,
            "never_placed": self.never_placed,
            "never_placed_why": dict(sorted(self.never_placed_why.items())),
            "makespan_s": round(self.makespan, 3),
            "utilization_mean": {k: round(v, 4) for k, v in self.mean_utilization.items()},
            "utilization_p95": {k: round(percentile(v, 95), 4) for k, v in self.utilization.items()},
            "wait_s": {r: {k: round(v, 3) for k, v in w.items()} for r, w in sorted(self.waits.items())},
            "dominant_share_mean": {r: round(v, 4) for r, v in sorted(self.mean_shares.items())},
            "dominant_share_max": {r: round(max(v, default=0.0), 4) for r, v in sorted(self.shares.items())},
        }


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


def figures(
    records: Iterable[TaskRecord],
    totals: Mapping[str, float],
    *,
    horizon: float | None = None,
    buckets: int = DEFAULT_BUCKETS,
) -> Figures:
    """The figures of a run over [0, horizon] (default: until the last task ended or the last arrival)."""
    records = list(records)
    end_of_run = max((t for r in records for t in (r.arrival, r.end) if t is not None), default=0.0)
    span = horizon if horizon is not None else end_of_run
    span = max(span, 1e-9)
    n = max(1, buckets)
    width = span / n
    roles = sorted({r.role for r in records})
    held = {name: [0.0] * (2 * n) for name in _RESOURCES}  # resource-seconds per bucket (see _spread)
    by_role = {role: {name: [0.0] * (2 * n) for name in totals} for role in roles}
    for r in records:
        if r.start is None:
            continue
        stop = r.end if r.end is not None else span
        for name, amount in r.resources.items():
            if not amount:
                continue
            if name in held:
                _spread(held[name], r.start, stop, amount, width)
            if name in totals:
                _spread(by_role[r.role][name], r.start, stop, amount, width)
    held = {name: _integrate(series) for name, series in held.items()}
    by_role = {role: {name: _integrate(series) for name, series in per.items()} for role, per in by_role.items()}
    utilization = {
        name: [v / (width * totals[name]) if totals.get(name) else 0.0 for v in held[name]] for name in _RESOURCES
    }
    shares = {
        role: [
            max((per[name][i] / (width * totals[name]) for name in per if totals.get(name)), default=0.0)
            for i in range(n)
        ]
        for role, per in by_role.items()
    }
    placed = [r for r in records if r.start is not None]
    waits = {role: _waits([r for r in placed if r.role == role]) for role in roles}
    waits["all"] = _waits(placed)
    never = [r for r in records if r.start is None]
    why: dict[str, int] = {}
    for r in never:
        why[r.why or "waiting at the end"] = why.get(r.why or "waiting at the end", 0) + 1
    return Figures(
        horizon=span,
        buckets=[i * width for i in range(n)],
        utilization=utilization,
        shares=shares,
        waits=waits,
        mean_utilization={k: sum(v) / n for k, v in utilization.items()},
        mean_shares={k: sum(v) / n for k, v in shares.items()},
        tasks=len(records),
        finished=sum(1 for r in records if r.state == "TASK_FINISHED"),
        never_placed=len(never),
        never_placed_why=why,
        makespan=max((r.end for r in records if r.end is not None), default=0.0),
    )


def _spread(series: list[float], start: float, stop: float, amount: float, width: float) -> None:
    """Add `amount` x the time [start, stop) overlaps each bucket: the partial first and last buckets here, the
    whole ones between as a difference (`_integrate` adds them up), so that a long task costs no more than a
    short one."""
    n = len(series) // 2  # the buckets, then their differences
    end = min(stop, n * width)
    if end <= start:
        return
    first, last = int(start // width), min(n - 1, int(end // width))
    if first == last:
        series[first] += amount * (end - start)
        return
    series[first] += amount * ((first + 1) * width - start)
    if last * width < end:
        series[last] += amount * (end - last * width)
    if last > first + 1:  # whole buckets first+1 .. last-1, as a difference in the second half
        series[n + first + 1] += amount * width
        series[n + last] -= amount * width


def _integrate(series: list[float]) -> list[float]:
    """The buckets of a series `_spread` filled: its partial amounts plus the running sum of its differences."""
    half = len(series) // 2
    out, running = [], 0.0
    for i in range(half):
        running += series[half + i]
        out.append(series[i] + running)
    return out


def _waits(records: Sequence[TaskRecord]) -> dict[str, float]:
    waits = [r.start - r.arrival for r in records if r.start is not None]
    return {
        "placed": float(len(waits)),
        "p50": percentile(waits, 50),
        "p99": percentile(waits, 99),
        "mean": sum(waits) / len(waits) if waits else 0.0,
        "max": max(waits, default=0.0),
    }
