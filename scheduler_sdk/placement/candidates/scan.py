"""The two reference sources: every host, in the order the engine's rules define."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain, repeat

from scheduler_sdk.placement.candidates.source import Candidate, FitFn
from scheduler_sdk.placement.extension import Constraint
from scheduler_sdk.placement.feasibility import fits
from scheduler_sdk.placement.model import TaskRequest
from scheduler_sdk.placement.run_state import HostState, RunState


class RotatingScan:
    """Hostname order, cyclically, starting at the host the previous task of the run went to (the first task starts
    at the first hostname). The reference for any calculator but `BinPacking` / `Spread`, and the path for those
    the per-shape index does not cover. Fitness is left to the engine (computed for feasible hosts only)."""

    name = "rotating_scan"
    bounded = False
    examined_up_front = 0

    __slots__ = ("run",)

    def __init__(self, run: RunState) -> None:
        self.run = run

    def candidates(self, task: TaskRequest, hard: tuple[Constraint, ...]) -> Iterator[Candidate]:
        start = self.run.cursor
        ranks = chain(range(start, len(self.run.src)), range(start))
        return zip(repeat(None), ranks, strict=False)

    def assigned(self, host: HostState) -> None:
        pass


class SortedScan:
    """The reference for `BinPacking` / `Spread` (``fast_path=False``): filter and score every host, then sort best
    fitness first, hostname next. Not ``bounded``: the walk examines candidates until ``good_enough`` or
    ``max_hosts_examined`` stops it, so that the bounded sources are checked against a walk without the bound."""

    name = "sorted_scan"
    bounded = False

    __slots__ = ("examined_up_front", "fit", "run")

    def __init__(self, run: RunState, fit: FitFn) -> None:
        self.run = run
        self.fit = fit
        self.examined_up_front = len(run.src)

    def candidates(self, task: TaskRequest, hard: tuple[Constraint, ...]) -> Iterator[Candidate]:
        run, fit = self.run, self.fit
        keyed = sorted((-fit(task, h), h.rank) for h in run.states() if fits(task, h, hard, run))
        return ((-nf, rank) for nf, rank in keyed)

    def assigned(self, host: HostState) -> None:
        pass
