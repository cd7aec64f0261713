"""The sorted-by-free index: `BinPacking(r)` / `Spread(r)` candidates by bisection, best fitness first.

Per distinct host capacity of ``r`` the index keeps a sorted list of ``(free r, rank)`` over the hosts that can
take tasks at all. For a task, the hosts with enough ``r`` are found by bisection and visited in exact examination
order: within one capacity fitness grows with use (bin packing: least free first) or with room (spread: most free
first), so runs of equal free amount come in rank order already; runs whose fitness happens to be equal (rounding,
clamping) are merged and sorted by rank; several capacities are merged with a heap. O(hosts) to build per run,
O(log hosts) per task and per assignment, plus the candidates that lack another resource.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections.abc import Iterator

from scheduler_sdk.placement.candidates.source import Candidate, FitFn
from scheduler_sdk.placement.extension import Constraint
from scheduler_sdk.placement.feasibility import EPS
from scheduler_sdk.placement.fitness import task_need
from scheduler_sdk.placement.model import TaskRequest
from scheduler_sdk.placement.run_state import HostState, RunState, capacity, lease_amount, usable

_BIG_RANK = 1 << 62

FreeList = list[tuple[float, int]]


def _order_key(c: tuple[float, int]) -> tuple[float, int]:
    return (-c[0], c[1])


class FreeAmountIndex:
    """Candidates for `BinPacking(resource)` (``spread`` False) or `Spread(resource)` (``spread`` True)."""

    name = "free_amount_index"
    bounded = True
    examined_up_front = 0

    __slots__ = ("_free", "_list_of", "_lists", "fit", "resource", "run", "spread")

    def __init__(self, run: RunState, fit: FitFn, resource: str, spread: bool) -> None:
        self.run = run
        self.fit = fit
        self.resource = resource
        self.spread = spread
        by_total: dict[float, FreeList] = {}
        self._free = [0.0] * len(run.src)  # rank -> the free amount its entry was filed under
        self._list_of: list[FreeList | None] = [None] * len(run.src)  # rank -> its capacity's list (None: out)
        for rank, host in enumerate(run.src):
            if not usable(host):
                continue
            total = capacity(host, resource)
            lst = by_total.get(total)
            if lst is None:
                lst = by_total[total] = []
            self._list_of[rank] = lst
            self._free[rank] = free = lease_amount(host, resource)
            lst.append((free, rank))
        for lst in by_total.values():
            lst.sort()
        self._lists = [by_total[t] for t in sorted(by_total)]

    def candidates(self, task: TaskRequest, hard: tuple[Constraint, ...]) -> Iterator[Candidate]:
        need = task_need(task, self.resource)
        gens = [self._capacity_candidates(task, lst, need) for lst in self._lists]
        if len(gens) == 1:
            return gens[0]
        return heapq.merge(*gens, key=_order_key)

    def _capacity_candidates(self, task: TaskRequest, lst: FreeList, need: float) -> Iterator[tuple[float, int]]:
        """One capacity's hosts with enough of the resource, best fitness first, equal fitness by rank."""
        lo = bisect_left(lst, (need - EPS,))
        if lo >= len(lst):
            return
        fit_of, state = self.fit, self.run.state
        runs = self._runs_best_first(lst, lo)
        block = [next(runs)]
        block_fit = fit_of(task, state(lst[block[0][0]][1]))
        while True:
            nxt = next(runs, None)
            nxt_fit = fit_of(task, state(lst[nxt[0]][1])) if nxt is not None else -1.0
            if nxt is not None and nxt_fit == block_fit:
                block.append(nxt)  # different free amounts, same fitness after rounding: merge, order by rank
                continue
            if len(block) == 1:
                s, e = block[0]
                for j in range(s, e):
                    yield block_fit, lst[j][1]
            else:
                for rank in sorted(lst[j][1] for s, e in block for j in range(s, e)):
                    yield block_fit, rank
            if nxt is None:
                return
            block, block_fit = [nxt], nxt_fit

    def _runs_best_first(self, lst: FreeList, lo: int) -> Iterator[tuple[int, int]]:
        """``[start, end)`` slices of ``lst[lo:]`` with one free amount each, best fitness first."""
        n = len(lst)
        if self.spread:
            hi = n
            while hi > lo:
                start = bisect_left(lst, (lst[hi - 1][0],), lo, hi)
                yield start, hi
                hi = start
        else:
            i = lo
            while i < n:
                end = bisect_left(lst, (lst[i][0], _BIG_RANK), i)
                yield i, end
                i = end

    def assigned(self, host: HostState) -> None:
        rank = host.rank
        lst = self._list_of[rank]
        if lst is None:
            return
        del lst[bisect_left(lst, (self._free[rank], rank))]
        if host.exclusive_by is None:
            self._free[rank] = free = host.free(self.resource)
            insort(lst, (free, rank))
        else:
            self._list_of[rank] = None
