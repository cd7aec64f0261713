"""The per-shape index: for a calculator that depends on the task's shape only (`fitness.by_shape`), the hosts
with room for each task shape, ranked once and kept up to date.

Per shape (cpus, mem, disk, network, ports, scalars) the index holds the hosts with room as a sorted list of
``(-fitness, rank)`` and brings it up to date with the hosts assigned to since the shape's last task (the run's
change log), so the calculator is called once per host and shape, then once per assignment. With ``good_enough``
it also keeps, sorted, the ranks of the hosts with room whose fitness reaches it.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterator
from itertools import chain

from scheduler_sdk.placement.candidates.source import Candidate, FitFn
from scheduler_sdk.placement.extension import Constraint
from scheduler_sdk.placement.feasibility import Shape, has_room, shape_of
from scheduler_sdk.placement.model import TaskRequest
from scheduler_sdk.placement.run_state import HostState, RunState

Entry = tuple[float, int]  # (-fitness, rank)


class _ShapeRanking:
    """One shape's hosts with room, sorted; ``entry[rank]`` is a host's entry (None: no room); ``good`` the ranks
    reaching good_enough (None without it); ``seen`` how much of the run's change log it reflects."""

    __slots__ = ("entry", "good", "order", "seen")

    def __init__(self, order: list[Entry], entry: list[Entry | None], good: list[int] | None, seen: int) -> None:
        self.order = order
        self.entry = entry
        self.good = good
        self.seen = seen


class ShapeIndex:
    """Candidates best fitness first, ties by rank, for a shape-only calculator (``bounded``). Without
    ``good_enough`` the winner is the best score, ties by hostname, whatever the order hosts are examined in, so
    this order gives the rotating scan's answer."""

    name = "shape_index"
    bounded = True
    examined_up_front = 0

    __slots__ = ("_rankings", "fit", "good_enough", "run")

    def __init__(self, run: RunState, fit: FitFn, good_enough: float | None) -> None:
        self.run = run
        self.fit = fit
        self.good_enough = good_enough
        self._rankings: dict[Shape, _ShapeRanking] = {}

    def candidates(self, task: TaskRequest, hard: tuple[Constraint, ...]) -> Iterator[Candidate]:
        return ((-nf, rank) for nf, rank in self.ranking(task).order)

    def assigned(self, host: HostState) -> None:
        pass  # each shape catches up with the change log on its next task

    def ranking(self, task: TaskRequest) -> _ShapeRanking:
        """The ranking of the task's shape, made on first use, else brought up to date."""
        key = shape_of(task)
        ranking = self._rankings.get(key)
        if ranking is None:
            ranking = self._rankings[key] = self._rank_all(task)
        else:
            self._catch_up(task, ranking)
        return ranking

    def _rank_all(self, task: TaskRequest) -> _ShapeRanking:
        run, fit, g = self.run, self.fit, self.good_enough
        entry: list[Entry | None] = [None] * len(run.src)
        order: list[Entry] = []
        for h in run.states():
            if has_room(task, h):
                entry[h.rank] = e = (-fit(task, h), h.rank)
                order.append(e)
        order.sort()
        good = None if g is None else sorted(e[1] for e in order if -e[0] >= g)
        return _ShapeRanking(order, entry, good, len(run.change_log))

    def _catch_up(self, task: TaskRequest, ranking: _ShapeRanking) -> None:
        run, fit, g = self.run, self.fit, self.good_enough
        log = run.change_log
        order, entry, good = ranking.order, ranking.entry, ranking.good
        for rank in log[ranking.seen :]:
            old = entry[rank]
            if old is not None:
                del order[bisect_left(order, old)]
                if good is not None and g is not None and -old[0] >= g:
                    del good[bisect_left(good, rank)]
            h = run.state(rank)
            if has_room(task, h):
                entry[rank] = e = (-fit(task, h), rank)
                insort(order, e)
                if good is not None and g is not None and -e[0] >= g:
                    insort(good, rank)
            else:
                entry[rank] = None
        ranking.seen = len(log)


class GoodEnoughFirst:
    """The rotating scan's answer for a task without soft constraints under ``good_enough``, through a
    `ShapeIndex`: the first host from the cursor on (hostname order, cyclically) whose fitness reaches
    good_enough and that passes the filter, else the fittest feasible host (ties by hostname).

    The candidates are the good-enough hosts from the cursor on, then every host with room best first. With no soft
    constraint a host's score is its fitness, so the first feasible good-enough host stops the walk (score >=
    good_enough) and wins; if none is feasible, no host has been picked when the best-first part begins, and the
    ``bounded`` walk over that part finds the fittest feasible host (the bound only applies once a host is
    picked). Hosts of the first part are examined again in the second.
    """

    name = "good_enough_first"
    bounded = True
    examined_up_front = 0

    __slots__ = ("index",)

    def __init__(self, index: ShapeIndex) -> None:
        assert index.good_enough is not None
        self.index = index

    def candidates(self, task: TaskRequest, hard: tuple[Constraint, ...]) -> Iterator[Candidate]:
        ranking = self.index.ranking(task)
        good, entry = ranking.good, ranking.entry
        assert good is not None
        i = bisect_left(good, self.index.run.cursor)
        from_cursor = ((-entry[rank][0], rank) for rank in chain(good[i:], good[:i]))  # type: ignore[index]
        best_first = ((-nf, rank) for nf, rank in ranking.order)
        return chain(from_cursor, best_first)

    def assigned(self, host: HostState) -> None:
        pass
