"""The Google cluster trace (2011, v2) `task_events` CSV files, converted to our JSON-lines trace.

The columns (the trace's schema): timestamp (microseconds; 0 means before the trace began), missing info, job
ID, task index, machine ID, event type (0 SUBMIT, 1 SCHEDULE, 2 EVICT, 3 FAIL, 4 FINISH, 5 KILL, 6 LOST,
7 UPDATE_PENDING, 8 UPDATE_RUNNING), user, scheduling class, priority, CPU request, memory request, disk request,
different-machines restriction. Requests are normalized to the largest machine: `machine_cpus` and
`machine_mem` (MB) scale them back.

A task arrives at its first SUBMIT and runs for the time from its last SCHEDULE to the end that follows
(FINISH, FAIL, KILL, EVICT or LOST); tasks that never ended in the files read are left out (`skipped`).
Its role is the trace's priority band (free 0-1, batch 2-8, prod 9-11), its constraint `{"unique": "hostname"}`
when the different-machines restriction is set. Tasks of one job that arrive in the same second with the same
request and (rounded) run time become one arrival of several tasks. Times start at 0 at the first arrival.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from mesos_master.simulation.trace import Arrival, TraceError
from scheduler_sdk.frameworks.jobs.spec import ConstraintSpec

__all__ = ["Conversion", "convert", "priority_role"]

SUBMIT, SCHEDULE, EVICT, FAIL, FINISH, KILL, LOST = 0, 1, 2, 3, 4, 5, 6
_ENDS = {EVICT, FAIL, FINISH, KILL, LOST}
_MICROS = 1e-6
_MIN_DURATION = 1.0


def priority_role(priority: int) -> str:
    if priority <= 1:
        return "free"
    if priority <= 8:
        return "batch"
    return "prod"


@dataclass
class _Task:
    submit: float | None = None
    scheduled: float | None = None
    duration: float | None = None
    priority: int = 0
    cpus: float = 0.0
    mem: float = 0.0
    unique: bool = False


@dataclass
class Conversion:
    arrivals: list[Arrival]
    tasks: int = 0
    skipped: int = 0  # tasks read that never ended (or never started) in the files
    rows: int = 0
    notes: list[str] = field(default_factory=list)


def _open(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _rows(paths: Iterable[Path]) -> Iterator[tuple[str, int, list[str]]]:
    for path in paths:
        try:
            with _open(path) as f:
                for number, row in enumerate(csv.reader(f), 1):
                    if row:
                        yield f"{path}:{number}", number, row
        except OSError as e:
            raise TraceError(f"{path}: {e.strerror or e}") from None


def _float(text: str) -> float:
    return float(text) if text else 0.0


def convert(paths: Iterable[Path], *, machine_cpus: float = 32.0, machine_mem: float = 131072.0) -> Conversion:
    tasks: dict[tuple[str, str], _Task] = {}
    rows = 0
    for where, _, row in _rows(paths):
        rows += 1
        if len(row) < 13:
            raise TraceError(f"{where}: {len(row)} columns, a task_events row has 13")
        try:
            at, kind = int(row[0]) * _MICROS, int(row[5])
            priority = int(row[8]) if row[8] else 0
            cpus, mem = _float(row[9]) * machine_cpus, _float(row[10]) * machine_mem
        except ValueError as e:
            raise TraceError(f"{where}: not a task_events row: {e}") from None
        task = tasks.setdefault((row[2], row[3]), _Task())
        if kind == SUBMIT:
            if task.submit is None:
                task.submit = at
            task.priority = priority
            task.cpus, task.mem = cpus or task.cpus, mem or task.mem
            task.unique = task.unique or row[12:13] == ["1"]
        elif kind == SCHEDULE:
            task.scheduled = at
        elif kind in _ENDS and task.scheduled is not None:
            task.duration = max(_MIN_DURATION, at - task.scheduled)
            task.scheduled = None
    return _arrivals(tasks, rows)


def _arrivals(tasks: dict[tuple[str, str], _Task], rows: int) -> Conversion:
    done = [(key, t) for key, t in tasks.items() if t.submit is not None and t.duration is not None and t.cpus > 0]
    skipped = len(tasks) - len(done)
    start = min((t.submit for _, t in done if t.submit is not None), default=0.0)
    groups: dict[tuple[str, int, float, float, int, bool], list[float]] = {}
    for (job, _), t in done:
        assert t.submit is not None and t.duration is not None
        key = (job, int(t.submit - start), round(t.cpus, 4), round(t.mem, 1), t.priority, t.unique)
        groups.setdefault(key, []).append(t.duration)
    arrivals = []
    used: dict[str, int] = {}
    for (job, second, cpus, mem, priority, unique), durations in sorted(groups.items(), key=lambda kv: kv[0][1]):
        # one arrival per (rounded) run time: its tasks share it
        by_duration: dict[int, int] = {}
        for d in durations:
            by_duration[round(d)] = by_duration.get(round(d), 0) + 1
        for duration, count in sorted(by_duration.items()):
            n = used.get(job, 0)
            used[job] = n + 1
            constraints = (ConstraintSpec("unique", attribute="hostname"),) if unique else ()
            arrivals.append(
                Arrival(
                    time=float(second),
                    job=job if n == 0 else f"{job}.{n}",
                    tasks=count,
                    role=priority_role(priority),
                    resources={"cpus": cpus, "mem": mem},
                    duration=float(max(duration, _MIN_DURATION)),
                    constraints=constraints,
                )
            )
    arrivals.sort(key=lambda a: a.time)
    return Conversion(arrivals, tasks=len(done), skipped=skipped, rows=rows)
