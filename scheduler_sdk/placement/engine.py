"""The placement engine: one scheduling run places pending tasks on the hosts' current leases.

``PlacementEngine(fitness, ...).schedule(tasks, hosts) -> SchedulingResult`` is a pure, deterministic function of
its inputs (and the engine's settings): the same inputs give the same assignments and failures, whatever the order
of ``hosts``. Only ``elapsed_ms`` (and, between ``fast_path`` on and off, ``hosts_examined``) vary.
``start(hosts)`` gives a run to feed task by task (`PlacementRun.place`), with the same results.

How one run works
-----------------
Hosts are sorted by hostname (duplicates are an error); a host's *rank* is its place in that order. Each host's
lease is all its offers combined; the run keeps, per host, what is still free and which tasks sit there (running
tasks plus this run's assignments). Tasks are placed one at a time, in the order given:

1. **Filter.** A host is out for the task when it is disabled, has no offer, is held by an exclusive task, lacks a
   resource (checked in the order cpus, mem, disk, network, ports, then named scalars by name), or fails a hard
   constraint (the engine-wide ones, then the task's own, each in order). The first reason found is the host's
   `Failure`; failures are reported, one per host in hostname order, only for tasks that could not be placed.
2. **Score.** ``score = (1 - w) * fitness + w * soft`` where ``soft`` is the mean score of the soft constraints
   (engine-wide plus the task's) and ``w = soft_constraint_weight`` (default 0.5). A task with no soft constraint
   at all is scored by fitness alone (``score = fitness``), so that ``good_enough`` always reads on the fitness
   scale there. Fitness and soft scores are clamped into [0, 1].
3. **Choose.** Feasible hosts are examined in the *examination order* below. The examination stops at the first
   host whose score is >= ``good_enough`` (that host wins), or once ``max_hosts_examined`` feasible hosts have been
   scored; otherwise every feasible host is scored. The best score among the examined hosts wins; equal scores
   go to the smaller hostname.
4. **Assign.** The task takes its resources from the host's lease and the lowest free port numbers of the lease's
   ranges; the assignment lists every offer id of the lease (Mesos accepts offers whole and what is left returns
   with the ACCEPT), so several tasks on one host in one run list the same offer ids. Constraints evaluated for
   later tasks see the assignment.

The result: ``assignments`` in task order (``Assignment.fitness`` is the calculator's fitness, not the combined
score); ``failures`` for unplaced tasks only; ``hosts_examined``, the number of (task, host) pairs the engine looked
at (a measure of work). Failure kinds: ``disabled``; ``resource`` named after the resource with detail
``"needs 4, has 2"`` (or named ``offers`` for a known host with no offer); ``constraint`` with the constraint's name
and reason (``exclusive_host`` for a host an exclusive task holds).

Examination order
-----------------
- `BinPacking(r)` and `Spread(r)` (exactly these classes): best fitness first, equal fitness by hostname. The first
  feasible host is then the fittest one, so ``good_enough`` and ``max_hosts_examined`` never cost fitness: they
  only bound how far the engine looks for a host that scores better through its soft constraints.
- Any other calculator (`Weighted`, plugins): hostname order, cyclically, starting at the host the previous task
  of the run was placed on (the first task starts at the first hostname). Starting where the last task landed,
  rather than always at the first host, keeps ``good_enough`` / ``max_hosts_examined`` from piling every task
  onto the same few hosts when spreading, and lets packing-like calculators keep filling the host they just used.

Fast path
---------
For `BinPacking(r)` / `Spread(r)` the engine keeps, per distinct host capacity of ``r``, a sorted list of
``(free r, rank)``. Candidates with enough ``r`` are found by bisection and visited in exact examination order
(runs of equal free amount are already in hostname order; runs whose fitness happens to be equal are merged and
sorted; several capacities are merged with a heap). Since candidates come best fitness first, the walk also stops
as soon as no later host could beat the best score so far, even with perfect soft scores; without soft constraints
that is right after the first feasible candidate. Per run it costs O(hosts) to build the index and O(log hosts) per
task and assignment, plus the candidates that do not fit on another resource. The result is identical
to the reference path (``fast_path=False``: score every host, sort, walk), which the property tests check.

Per-shape index
---------------
Any other calculator that depends on the task's resource amounts only (`by_shape`: `BinPacking`, `Spread`, a
`Weighted` of those, or a plugin with ``by_shape = True``), without ``max_hosts_examined``: the run keeps, per task
shape (cpus, mem, disk, network, ports, scalars), the hosts with room for it as a sorted list of
``(-fitness, rank)``, and brings it up to date with the hosts assigned to since the shape's last task. Without
``good_enough`` the winner is the best score, ties by hostname, whatever the order hosts are examined in, so the
list is walked best first as above. With ``good_enough`` and no soft constraint, the rotating scan's answer is the
first feasible host from the cursor on whose fitness reaches it, else the fittest feasible host: the index keeps
those hosts' ranks sorted and finds it by bisection. A task with soft constraints and ``good_enough`` takes the
plain rotating scan. Results are the rotating scan's (``fast_path=False``), which the property tests check;
``hosts_examined`` is smaller. The calculator is called once per host and shape, then once per assignment.
"""

from __future__ import annotations

import heapq
import math
import time
from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from itertools import pairwise

from scheduler_sdk.placement.constraints import CustomFn, ExclusiveHost, as_constraint
from scheduler_sdk.placement.fitness import (
    BinPacking,
    FitnessCalculator,
    FitnessLike,
    Spread,
    Weighted,
    as_fitness,
    clamp01,
    task_need,
)
from scheduler_sdk.placement.model import (
    Assignment,
    ConstraintLike,
    Failure,
    Host,
    HostView,
    Range,
    SchedulingResult,
    TaskRequest,
)

EPS = 1e-9
"""Tolerance when comparing a task's ask with what is free (floating-point sums of offers)."""

DEFAULT_SOFT_CONSTRAINT_WEIGHT = 0.5

_BIG_RANK = 1 << 62
_EMPTY: Mapping[str, int] = {}
_LEASE_FIELDS = ("cpus", "mem", "disk", "network")
_DEFAULT_FITNESS = BinPacking("cpus")


def _fmt(x: float) -> str:
    if math.isfinite(x) and x == int(x):
        return str(int(x))
    return f"{x:.6g}"


@lru_cache(maxsize=4096)
def _short(need: float, has: float) -> str:
    """A resource failure's detail, e.g. "needs 4, has 2" (the same few pairs come up again and again)."""
    return f"needs {_fmt(need)}, has {_fmt(has)}"


def _merge_ranges(ranges: Iterable[Range]) -> list[list[int]]:
    if isinstance(ranges, tuple) and len(ranges) == 1:
        lo, hi = ranges[0]
        return [[lo, hi]] if hi >= lo else []
    out: list[list[int]] = []
    for lo, hi in sorted(r for r in ranges if r[1] >= r[0]):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1][1] = hi
        else:
            out.append([lo, hi])
    return out


def _lease_amount(host: Host, resource: str) -> float:
    """What a host's lease (all its offers) holds of a resource at the start of a run."""
    offers = host.offers
    if resource in _LEASE_FIELDS:
        if len(offers) == 1:
            return float(getattr(offers[0], resource))
        return float(sum(getattr(o, resource) for o in offers))
    if resource == "ports":
        return float(sum(hi - lo + 1 for lo, hi in _merge_ranges(r for o in offers for r in o.ports)))
    return float(sum(o.scalars.get(resource, 0.0) for o in offers))


def _capacity(host: Host, resource: str) -> float:
    """A host's capacity: `Host.total_*` when given, else what the lease offers plus what running tasks use."""
    if resource in _LEASE_FIELDS:
        given = getattr(host, "total_" + resource)
        if given is not None:
            return float(given)
        return _lease_amount(host, resource) + sum(getattr(t, resource) for t in host.running)
    if resource == "ports":
        return _lease_amount(host, resource) + sum(t.ports for t in host.running)
    if host.total_scalars is not None:
        return float(host.total_scalars.get(resource, 0.0))
    return _lease_amount(host, resource) + sum(t.scalars.get(resource, 0.0) for t in host.running)


def _running_exclusive(host: Host) -> str | None:
    """The id of a running task that holds the host exclusively."""
    for t in host.running:
        if t.exclusive:
            return t.id
    return None


def _attr(host: Host | HostView, attribute: str) -> str | None:
    if attribute == "hostname":
        return host.hostname
    return host.attributes.get(attribute)


class _HostState:
    """A host during one run: its lease minus this run's assignments. Implements `HostView`.

    Created on first use (the fast path only ever looks at a few hosts per task).
    """

    __slots__ = (
        "_groups",
        "_totals",
        "agent_id",
        "assigned",
        "attributes",
        "cpus",
        "disabled",
        "disk",
        "exclusive_by",
        "host",
        "hostname",
        "mem",
        "network",
        "nports",
        "offer_ids",
        "ports",
        "rank",
        "scalars",
    )

    def __init__(self, host: Host, rank: int) -> None:
        self.host = host
        self.hostname = host.hostname
        self.agent_id = host.agent_id
        self.attributes = host.attributes
        self.rank = rank
        self.disabled = host.disabled
        offers = host.offers
        self.offer_ids: tuple[str, ...] = tuple(o.offer_id for o in offers)
        self.scalars: dict[str, float]
        if len(offers) == 1:  # the common case, spelled out (must agree with _lease_amount)
            o = offers[0]
            self.cpus, self.mem, self.disk, self.network = float(o.cpus), float(o.mem), float(o.disk), float(o.network)
            self.scalars = {k: float(v) for k, v in o.scalars.items()} if o.scalars else {}
            self.ports = _merge_ranges(o.ports)
        else:
            self.cpus = _lease_amount(host, "cpus")
            self.mem = _lease_amount(host, "mem")
            self.disk = _lease_amount(host, "disk")
            self.network = _lease_amount(host, "network")
            self.scalars = {k: _lease_amount(host, k) for k in sorted({k for o in offers for k in o.scalars})}
            self.ports = _merge_ranges(r for o in offers for r in o.ports)
        self.nports = sum(hi - lo + 1 for lo, hi in self.ports)
        self.assigned: list[TaskRequest] = []
        self._groups: dict[str, int] | None = None
        self._totals: dict[str, float] | None = None
        self.exclusive_by = _running_exclusive(host)

    # --- HostView ---------------------------------------------------------------------------------------------

    def free(self, resource: str) -> float:
        if resource == "cpus":
            return self.cpus
        if resource == "mem":
            return self.mem
        if resource == "disk":
            return self.disk
        if resource == "network":
            return self.network
        if resource == "ports":
            return float(self.nports)
        return self.scalars.get(resource, 0.0)

    def total(self, resource: str) -> float:
        totals = self._totals
        if totals is None:
            totals = self._totals = {}
        t = totals.get(resource)
        if t is None:
            t = totals[resource] = _capacity(self.host, resource)
        return t

    def groups(self) -> Mapping[str, int]:
        g = self._groups
        if g is None:
            g = {}
            for t in self.host.running:
                if t.group:
                    g[t.group] = g.get(t.group, 0) + 1
            for a in self.assigned:
                if a.group:
                    g[a.group] = g.get(a.group, 0) + 1
            self._groups = g
        return g

    def task_count(self) -> int:
        return len(self.host.running) + len(self.assigned)

    # --- internals --------------------------------------------------------------------------------------------

    def take_ports(self, n: int) -> tuple[int, ...]:
        """The ``n`` lowest free ports of the lease."""
        got: list[int] = []
        ranges = self.ports
        while n > 0 and ranges:
            lo, hi = ranges[0]
            k = min(n, hi - lo + 1)
            got.extend(range(lo, lo + k))
            if lo + k > hi:
                del ranges[0]
            else:
                ranges[0][0] = lo + k
            n -= k
        self.nports -= len(got)
        return tuple(got)

    def __repr__(self) -> str:
        return f"<host {self.hostname} cpus={self.cpus:g} mem={self.mem:g} ports={self.nports}>"


class _Run:
    """The state of one run; implements `RunContext` (plus cached helpers the built-in constraints use).

    ``src`` are the hosts sorted by hostname; a host's state is made on first use (`state(rank)`).
    """

    __slots__ = (
        "_all",
        "_attr_values",
        "_group_index",
        "_rank_of",
        "_value_cache",
        "change_log",
        "cursor",
        "fail_cache",
        "fail_seen",
        "hs",
        "ikey",
        "ilist",
        "src",
    )

    def __init__(self, src: list[Host]) -> None:
        self.src = src
        self.hs: list[_HostState | None] = [None] * len(src)
        self._all: list[_HostState] | None = None
        self._rank_of: dict[str, int] | None = None
        self.cursor = 0
        self.change_log: list[int] = []
        self.fail_cache: dict[tuple[object, ...], list[Failure | None]] = {}
        self.fail_seen: dict[tuple[object, ...], int] = {}
        self.ikey: list[float] = []
        self.ilist: list[list[tuple[float, int]] | None] = []
        self._group_index: dict[str, dict[str, int]] | None = None
        self._value_cache: dict[str, dict[str, dict[str, int]]] = {}
        self._attr_values: dict[str, tuple[str, ...]] = {}

    def state(self, rank: int) -> _HostState:
        h = self.hs[rank]
        if h is None:
            h = self.hs[rank] = _HostState(self.src[rank], rank)
        return h

    def states(self) -> list[_HostState]:
        """Every host's state, hostname order."""
        if self._all is None:
            self._all = [self.state(rank) for rank in range(len(self.src))]
        return self._all

    # --- RunContext -------------------------------------------------------------------------------------------

    def hosts(self) -> list[HostView]:
        return list(self.states())

    def group_hosts(self, group: str) -> Mapping[str, int]:
        return self._index().get(group, _EMPTY)

    # --- helpers for constraints.py ---------------------------------------------------------------------------

    def rank_of(self, hostname: str) -> int | None:
        if self._rank_of is None:
            self._rank_of = {h.hostname: i for i, h in enumerate(self.src)}
        return self._rank_of.get(hostname)

    def host(self, hostname: str) -> HostView | None:
        rank = self.rank_of(hostname)
        return None if rank is None else self.state(rank)

    def value_counts(self, group: str, attribute: str) -> Mapping[str, int]:
        per_group = self._value_cache.setdefault(group, {})
        counts = per_group.get(attribute)
        if counts is None:
            counts = {}
            src = self.src
            for hostname, n in self.group_hosts(group).items():
                rank = self.rank_of(hostname)
                value = None if rank is None else _attr(src[rank], attribute)
                if value is not None:
                    counts[value] = counts.get(value, 0) + n
            per_group[attribute] = counts
        return counts

    def attribute_values(self, attribute: str) -> tuple[str, ...]:
        values = self._attr_values.get(attribute)
        if values is None:
            values = tuple(sorted({v for h in self.src if (v := _attr(h, attribute)) is not None}))
            self._attr_values[attribute] = values
        return values

    # --- bookkeeping ------------------------------------------------------------------------------------------

    def _index(self) -> dict[str, dict[str, int]]:
        idx = self._group_index
        if idx is None:
            idx = {}
            for host in self.src:
                for t in host.running:
                    if t.group:
                        per = idx.setdefault(t.group, {})
                        per[host.hostname] = per.get(host.hostname, 0) + 1
            for h in self.hs:
                if h is not None:
                    for a in h.assigned:
                        if a.group:
                            per = idx.setdefault(a.group, {})
                            per[h.hostname] = per.get(h.hostname, 0) + 1
            self._group_index = idx
        return idx

    def note(self, h: _HostState, task: TaskRequest) -> None:
        """Book an assignment (after the host's own state was updated)."""
        self.change_log.append(h.rank)
        self.cursor = h.rank
        g = task.group
        if g:
            if self._group_index is not None:
                per = self._group_index.setdefault(g, {})
                per[h.hostname] = per.get(h.hostname, 0) + 1
            self._value_cache.pop(g, None)
            if h._groups is not None:
                h._groups[g] = h._groups.get(g, 0) + 1


def _fits(task: TaskRequest, h: _HostState, hard: tuple[ConstraintLike, ...], run: _Run) -> bool:
    """Whether the task may go on the host now (the boolean twin of `_why_not`)."""
    return _has_room(task, h) and all(c.evaluate(task, h, run).ok for c in hard)


def _has_room(task: TaskRequest, h: _HostState) -> bool:
    """`_fits` without the hard constraints: the host takes tasks and has the resources."""
    if h.disabled or not h.offer_ids or h.exclusive_by is not None:
        return False
    if (
        task.cpus > h.cpus + EPS
        or task.mem > h.mem + EPS
        or task.disk > h.disk + EPS
        or task.network > h.network + EPS
        or task.ports > h.nports
    ):
        return False
    if task.scalars:
        sc = h.scalars
        for k, v in task.scalars.items():
            if v > sc.get(k, 0.0) + EPS:
                return False
    return True


def by_shape(calc: object) -> bool:
    """Whether a fitness calculator depends on the task's resource amounts only (not its id, group or other
    fields), given the host: `BinPacking`, `Spread`, a `Weighted` of such, or any calculator whose ``by_shape``
    attribute is True. The scan path then ranks hosts once per task shape (module docstring)."""
    if type(calc) is BinPacking or type(calc) is Spread:
        return True
    if isinstance(calc, Weighted):
        return all(by_shape(c) for c, _ in calc.parts)
    return getattr(calc, "by_shape", False) is True


class _ShapeIndex:
    """The hosts with room for one task shape as ``(-fitness, rank)``, sorted; ``keys[rank]`` is a host's entry
    (None: no room); ``seen`` is how much of the run's change log it reflects."""

    __slots__ = ("good", "keys", "order", "seen")

    def __init__(
        self,
        order: list[tuple[float, int]],
        keys: list[tuple[float, int] | None],
        good: list[int] | None,
        seen: int,
    ) -> None:
        self.order = order
        self.keys = keys
        self.good = good  # with good_enough: the ranks (sorted) of the hosts with room whose fitness reaches it
        self.seen = seen


def _why_not(task: TaskRequest, h: _HostState, hard: tuple[ConstraintLike, ...], run: _Run) -> Failure | None:
    """The first reason the task may not go on the host now, or None when it may."""
    name = h.hostname
    if h.disabled:
        return Failure(name, "disabled", "disabled", "host is disabled")
    if not h.offer_ids:
        return Failure(name, "resource", "offers", "no offer on this host")
    if h.exclusive_by is not None:
        return Failure(name, "constraint", "exclusive_host", f"held exclusively by task {h.exclusive_by}")
    if task.cpus > h.cpus + EPS:
        return Failure(name, "resource", "cpus", _short(task.cpus, h.cpus))
    if task.mem > h.mem + EPS:
        return Failure(name, "resource", "mem", _short(task.mem, h.mem))
    if task.disk > h.disk + EPS:
        return Failure(name, "resource", "disk", _short(task.disk, h.disk))
    if task.network > h.network + EPS:
        return Failure(name, "resource", "network", _short(task.network, h.network))
    if task.ports > h.nports:
        return Failure(name, "resource", "ports", _short(task.ports, h.nports))
    if task.scalars:
        for k in sorted(task.scalars):
            need = task.scalars[k]
            has = h.scalars.get(k, 0.0)
            if need > has + EPS:
                return Failure(name, "resource", k, _short(need, has))
    for c in hard:
        r = c.evaluate(task, h, run)
        if not r.ok:
            return Failure(name, "constraint", c.name, r.reason)
    return None


def _shape(task: TaskRequest) -> tuple[object, ...]:
    scalars = tuple(sorted(task.scalars.items())) if task.scalars else ()
    return (task.cpus, task.mem, task.disk, task.network, task.ports, scalars)


def _hostname(h: Host) -> str:
    return h.hostname


def _order_key(c: tuple[float, int]) -> tuple[float, int]:
    return (-c[0], c[1])


class PlacementEngine:
    """Places tasks on hosts; see the module docstring for the exact rules.

    Args:
        fitness: ranks feasible hosts, ``(task, host_view) -> [0, 1]``; default cpu bin packing.
        soft_constraint_weight: ``w`` in ``score = (1 - w) * fitness + w * soft``, in [0, 1]; default 0.5.
        good_enough: stop examining hosts for a task at the first one scoring at least this (in [0, 1]).
        max_hosts_examined: score at most this many feasible hosts per task (>= 1).
        hard_constraints / soft_constraints: applied to every task, before the task's own (plain functions
            ``fn(task, host, ctx)`` are wrapped in `Custom`).
        fast_path: use the bisection index for `BinPacking` / `Spread`, and the per-shape index for calculators
            that depend on the task's shape only (same results; off only to verify).
    """

    def __init__(
        self,
        fitness: FitnessLike = _DEFAULT_FITNESS,
        *,
        soft_constraint_weight: float = DEFAULT_SOFT_CONSTRAINT_WEIGHT,
        good_enough: float | None = None,
        max_hosts_examined: int | None = None,
        hard_constraints: Sequence[ConstraintLike | CustomFn] = (),
        soft_constraints: Sequence[ConstraintLike | CustomFn] = (),
        fast_path: bool = True,
    ) -> None:
        self.fitness: FitnessCalculator = as_fitness(fitness)
        w = soft_constraint_weight
        if isinstance(w, bool) or not isinstance(w, int | float) or not 0.0 <= w <= 1.0:
            raise ValueError(f"soft_constraint_weight must be a number in [0, 1], got {w!r}")
        if good_enough is not None and (
            isinstance(good_enough, bool) or not isinstance(good_enough, int | float) or not 0.0 <= good_enough <= 1.0
        ):
            raise ValueError(f"good_enough must be None or a number in [0, 1], got {good_enough!r}")
        if max_hosts_examined is not None and (
            isinstance(max_hosts_examined, bool) or not isinstance(max_hosts_examined, int) or max_hosts_examined < 1
        ):
            raise ValueError(f"max_hosts_examined must be None or an int >= 1, got {max_hosts_examined!r}")
        self.soft_constraint_weight = float(w)
        self.good_enough = None if good_enough is None else float(good_enough)
        self.max_hosts_examined = max_hosts_examined
        self.hard_constraints: tuple[ConstraintLike, ...] = tuple(as_constraint(c) for c in hard_constraints)
        self.soft_constraints: tuple[ConstraintLike, ...] = tuple(as_constraint(c) for c in soft_constraints)
        self.fast_path = fast_path
        self._w = self.soft_constraint_weight
        self._a = 1.0 - self.soft_constraint_weight
        kind = type(self.fitness)
        self._ordered: tuple[str, bool] | None = (
            (self.fitness.resource, kind is Spread)  # type: ignore[attr-defined]
            if kind is BinPacking or kind is Spread
            else None
        )
        # The scan path may rank hosts once per task shape (see "Per-shape index" in the module docstring).
        self._by_shape = fast_path and self._ordered is None and max_hosts_examined is None and by_shape(self.fitness)

    # --- public -----------------------------------------------------------------------------------------------

    def schedule(self, tasks: Sequence[TaskRequest], hosts: Sequence[Host]) -> SchedulingResult:
        """One scheduling run: place ``tasks`` in order on ``hosts``' leases."""
        run = self.start(hosts)
        for task in tasks:
            run.place(task)
        return run.result()

    def start(self, hosts: Sequence[Host]) -> PlacementRun:
        """A run to feed task by task (`PlacementRun.place`), for callers whose next task depends on where the
        previous ones went (a fair queue). ``schedule(tasks, hosts)`` is ``start(hosts)`` plus ``place`` for
        each task: the same tasks in the same order give the same result either way."""
        return PlacementRun(self, hosts)

    def __repr__(self) -> str:
        return (
            f"PlacementEngine({self.fitness.name}, w={self._w:g}, good_enough={self.good_enough}, "
            f"max_hosts_examined={self.max_hosts_examined})"
        )

    # --- setup ------------------------------------------------------------------------------------------------

    @staticmethod
    def _sorted_hosts(hosts: Sequence[Host]) -> list[Host]:
        ordered = sorted(hosts, key=_hostname)
        if len({h.hostname for h in ordered}) != len(ordered):
            for a, b in pairwise(ordered):
                if a.hostname == b.hostname:
                    raise ValueError(f"host {a.hostname!r} appears twice; combine its offers into one Host")
        return ordered

    @staticmethod
    def _build_index(run: _Run, resource: str) -> list[list[tuple[float, int]]]:
        """Per distinct capacity of ``resource``: the usable hosts as ``(free, rank)``, sorted."""
        by_total: dict[float, list[tuple[float, int]]] = {}
        ikey = run.ikey = [0.0] * len(run.src)
        ilist: list[list[tuple[float, int]] | None] = [None] * len(run.src)
        run.ilist = ilist
        for rank, host in enumerate(run.src):
            if host.disabled or not host.offers or _running_exclusive(host):
                continue
            total = _capacity(host, resource)
            lst = by_total.get(total)
            if lst is None:
                lst = by_total[total] = []
            ilist[rank] = lst
            ikey[rank] = free = _lease_amount(host, resource)
            lst.append((free, rank))
        for lst in by_total.values():
            lst.sort()
        return [by_total[t] for t in sorted(by_total)]

    def _constraints(self, task: TaskRequest) -> tuple[tuple[ConstraintLike, ...], tuple[ConstraintLike, ...], bool]:
        hard = self.hard_constraints
        if task.hard_constraints:
            hard = hard + tuple(as_constraint(c) for c in task.hard_constraints)
        soft = self.soft_constraints
        if task.soft_constraints:
            soft = soft + tuple(as_constraint(c) for c in task.soft_constraints)
        exclusive = any(isinstance(c, ExclusiveHost) for c in hard) if hard else False
        return hard, soft, exclusive

    # --- scoring ----------------------------------------------------------------------------------------------

    def _fit(self, task: TaskRequest, h: _HostState) -> float:
        return clamp01(self.fitness(task, h))

    def _score(
        self, task: TaskRequest, h: _HostState, fit: float, soft: tuple[ConstraintLike, ...], run: _Run
    ) -> float:
        if not soft:
            return fit
        total = 0.0
        for c in soft:
            total += clamp01(c.evaluate(task, h, run).score)
        return self._a * fit + self._w * (total / len(soft))

    # --- choosing a host --------------------------------------------------------------------------------------

    def _walk(
        self,
        task: TaskRequest,
        cands: Iterator[tuple[float, int]],
        hard: tuple[ConstraintLike, ...],
        soft: tuple[ConstraintLike, ...],
        run: _Run,
        bound: bool,
    ) -> tuple[tuple[_HostState, float] | None, int]:
        """Walk candidates given best fitness first; see the module docstring. Returns (host, fitness), examined."""
        state = run.state
        g = self.good_enough
        k = self.max_hosts_examined
        a, w = self._a, self._w
        best_score = -1.0
        best_rank = -1
        best_fit = 0.0
        feasible = 0
        examined = 0
        for fit, rank in cands:
            if bound and best_rank >= 0:
                # No later candidate has a higher fitness, so none can score above a*fit + w (a perfect soft score).
                # Without soft constraints the score is the fitness, and later candidates of equal fitness come in
                # hostname order, after the best: none of them wins a tie either. With soft constraints a later host
                # of lower fitness may still tie (e.g. w = 1) and win on its name, so only a strict bound stops.
                if soft:
                    if a * fit + w < best_score:
                        break
                elif fit < best_score or (fit == best_score and rank > best_rank):
                    break
            examined += 1
            h = state(rank)
            if not _fits(task, h, hard, run):
                continue
            feasible += 1
            score = self._score(task, h, fit, soft, run)
            if score > best_score or (score == best_score and rank < best_rank):
                best_score, best_rank, best_fit = score, rank, fit
            if (g is not None and score >= g) or (k is not None and feasible >= k):
                break
        return ((state(best_rank), best_fit) if best_rank >= 0 else None), examined

    def _sorted_candidates(
        self, task: TaskRequest, hard: tuple[ConstraintLike, ...], run: _Run
    ) -> Iterator[tuple[float, int]]:
        """Reference path: score every feasible host, sort best fitness first, hostname next."""
        keyed = sorted((-self._fit(task, h), h.rank) for h in run.states() if _fits(task, h, hard, run))
        return ((-nf, rank) for nf, rank in keyed)

    def _candidates(
        self, task: TaskRequest, index: list[list[tuple[float, int]]], run: _Run
    ) -> Iterator[tuple[float, int]]:
        assert self._ordered is not None
        resource, spread = self._ordered
        need = task_need(task, resource)
        gens = [self._group_candidates(task, lst, need, spread, run) for lst in index]
        if len(gens) == 1:
            return gens[0]
        return heapq.merge(*gens, key=_order_key)

    def _group_candidates(
        self, task: TaskRequest, lst: list[tuple[float, int]], need: float, spread: bool, run: _Run
    ) -> Iterator[tuple[float, int]]:
        """One capacity group's hosts with enough of the resource, best fitness first, equal fitness by rank."""
        n = len(lst)
        lo = bisect_left(lst, (need - EPS,))
        if lo >= n:
            return
        fit_of = self._fit

        def runs() -> Iterator[tuple[int, int]]:  # [start, end) slices of equal free amount, best fitness first
            if spread:
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

        it = runs()
        block = [next(it)]
        state = run.state
        block_fit = fit_of(task, state(lst[block[0][0]][1]))
        while True:
            nxt = next(it, None)
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

    def _pick_rotating(
        self, task: TaskRequest, hard: tuple[ConstraintLike, ...], soft: tuple[ConstraintLike, ...], run: _Run
    ) -> tuple[tuple[_HostState, float] | None, int]:
        """Any calculator: hostname order, cyclically from the host the previous task went to."""
        state = run.state
        n = len(run.src)
        g = self.good_enough
        k = self.max_hosts_examined
        best_score = -1.0
        best_rank = -1
        best_fit = 0.0
        feasible = 0
        examined = 0
        start = run.cursor
        for i in range(n):
            rank = start + i
            if rank >= n:
                rank -= n
            h = state(rank)
            examined += 1
            if not _fits(task, h, hard, run):
                continue
            feasible += 1
            fit = self._fit(task, h)
            score = self._score(task, h, fit, soft, run)
            if score > best_score or (score == best_score and rank < best_rank):
                best_score, best_rank, best_fit = score, rank, fit
            if (g is not None and score >= g) or (k is not None and feasible >= k):
                break
        return ((state(best_rank), best_fit) if best_rank >= 0 else None), examined

    # --- outcomes ---------------------------------------------------------------------------------------------

    def _failures(self, task: TaskRequest, hard: tuple[ConstraintLike, ...], run: _Run) -> tuple[Failure, ...]:
        """Why the task fits on no host: one `Failure` per host, hostname order.

        Without hard constraints a host's reason depends only on the task's shape and the host's state, so the
        list is cached per shape and only hosts changed since (by assignments) are looked at again.
        """
        hosts = run.states()
        if hard:
            return tuple(f for h in hosts if (f := _why_not(task, h, hard, run)) is not None)
        key = _shape(task)
        log = run.change_log
        reasons = run.fail_cache.get(key)
        if reasons is None:
            reasons = run.fail_cache[key] = [_why_not(task, h, hard, run) for h in hosts]
        else:
            for rank in log[run.fail_seen[key] :]:
                reasons[rank] = _why_not(task, hosts[rank], hard, run)
        run.fail_seen[key] = len(log)
        return tuple(f for f in reasons if f is not None)

    def _assign(
        self, task: TaskRequest, h: _HostState, fit: float, exclusive: bool, run: _Run, indexed: bool
    ) -> Assignment:
        h.cpus -= task.cpus
        h.mem -= task.mem
        h.disk -= task.disk
        h.network -= task.network
        if task.scalars:
            sc = h.scalars
            for k, v in task.scalars.items():
                sc[k] = sc.get(k, 0.0) - v
        ports = h.take_ports(task.ports) if task.ports > 0 else ()
        h.assigned.append(task)
        if exclusive:
            h.exclusive_by = task.id
        run.note(h, task)
        if indexed:
            rank = h.rank
            lst = run.ilist[rank]
            if lst is not None:
                assert self._ordered is not None
                del lst[bisect_left(lst, (run.ikey[rank], rank))]
                if h.exclusive_by is None:
                    run.ikey[rank] = key = h.free(self._ordered[0])
                    insort(lst, (key, rank))
                else:
                    run.ilist[rank] = None
        return Assignment(
            task=task, hostname=h.hostname, agent_id=h.agent_id, offer_ids=h.offer_ids, ports=ports, fitness=fit
        )


class PlacementRun:
    """One scheduling run fed task by task (see `PlacementEngine.start`). Pure: no clock but ``elapsed_ms``, no I/O;
    its outcome is a function of the hosts and the tasks placed, in order."""

    __slots__ = (
        "_assignments",
        "_engine",
        "_examined",
        "_failures",
        "_index",
        "_n_hosts",
        "_run",
        "_seen",
        "_shapes",
        "_t0",
    )

    def __init__(self, engine: PlacementEngine, hosts: Sequence[Host]) -> None:
        self._t0 = time.perf_counter()
        self._engine = engine
        self._run = _Run(engine._sorted_hosts(hosts))
        self._n_hosts = len(self._run.src)
        ordered = engine._ordered
        self._index = engine._build_index(self._run, ordered[0]) if ordered is not None and engine.fast_path else None
        self._assignments: list[Assignment] = []
        self._failures: dict[str, tuple[Failure, ...]] = {}
        self._examined = 0
        self._seen: set[str] = set()
        self._shapes: dict[tuple[object, ...], _ShapeIndex] | None = {} if engine._by_shape else None

    def place(self, task: TaskRequest) -> Assignment | None:
        """Place one task after those placed before it: its assignment, or None (see `failures`)."""
        if task.id in self._seen:
            raise ValueError(f"task id {task.id!r} appears twice in one run")
        self._seen.add(task.id)
        engine, run, index = self._engine, self._run, self._index
        hard, soft, exclusive = engine._constraints(task)
        if self._shapes is not None and engine.good_enough is None:
            best, n = engine._walk(task, self._shape_candidates(task), hard, soft, run, True)
        elif self._shapes is not None and not soft:
            best, n = self._first_good_enough(task, hard)
        elif engine._ordered is None:
            best, n = engine._pick_rotating(task, hard, soft, run)
        elif index is not None:
            best, n = engine._walk(task, engine._candidates(task, index, run), hard, soft, run, True)
        else:
            best, n = engine._walk(task, engine._sorted_candidates(task, hard, run), hard, soft, run, False)
            n += self._n_hosts
        self._examined += n
        if best is None:
            self._failures[task.id] = engine._failures(task, hard, run)
            self._examined += self._n_hosts
            return None
        h, fit = best
        a = engine._assign(task, h, fit, exclusive, run, index is not None)
        self._assignments.append(a)
        return a

    def _shape_index(self, task: TaskRequest) -> _ShapeIndex:
        """The index of the task's shape (made on first use, then brought up to date with the hosts assigned to
        since the shape's last task)."""
        assert self._shapes is not None
        run = self._run
        fit = self._engine._fit
        g = self._engine.good_enough
        log = run.change_log
        key = _shape(task)
        idx = self._shapes.get(key)
        if idx is None:
            keys: list[tuple[float, int] | None] = [None] * self._n_hosts
            order: list[tuple[float, int]] = []
            for h in run.states():
                if _has_room(task, h):
                    keys[h.rank] = k = (-fit(task, h), h.rank)
                    order.append(k)
            order.sort()
            good = None if g is None else sorted(k[1] for k in order if -k[0] >= g)
            idx = self._shapes[key] = _ShapeIndex(order, keys, good, len(log))
            return idx
        order, keys, good = idx.order, idx.keys, idx.good
        for rank in log[idx.seen :]:
            old = keys[rank]
            if old is not None:
                del order[bisect_left(order, old)]
                if good is not None and g is not None and -old[0] >= g:
                    del good[bisect_left(good, rank)]
            h = run.state(rank)
            if _has_room(task, h):
                keys[rank] = k = (-fit(task, h), rank)
                insort(order, k)
                if good is not None and g is not None and -k[0] >= g:
                    insort(good, rank)
            else:
                keys[rank] = None
        idx.seen = len(log)
        return idx

    def _shape_candidates(self, task: TaskRequest) -> Iterator[tuple[float, int]]:
        """The hosts with room for the task's shape, best fitness first, then by rank."""
        return ((-nf, rank) for nf, rank in self._shape_index(task).order)

    def _first_good_enough(
        self, task: TaskRequest, hard: tuple[ConstraintLike, ...]
    ) -> tuple[tuple[_HostState, float] | None, int]:
        """What the rotating scan finds for a task without soft constraints: the first feasible host from the
        cursor on (hostname order, cyclically) whose fitness reaches good_enough, else the fittest feasible host
        (ties by hostname)."""
        idx = self._shape_index(task)
        run = self._run
        good = idx.good
        assert good is not None
        examined = 0
        i = bisect_left(good, run.cursor)
        for part in (good[i:], good[:i]):
            for rank in part:
                examined += 1
                h = run.state(rank)
                if _fits(task, h, hard, run):
                    key = idx.keys[rank]
                    assert key is not None
                    return (h, -key[0]), examined
        best, n = self._engine._walk(task, self._shape_candidates(task), hard, (), run, True)
        return best, examined + n

    def failures(self, task_id: str) -> tuple[Failure, ...] | None:
        """Why a task placed in this run could not go anywhere (None: it was placed, or never given)."""
        return self._failures.get(task_id)

    def result(self) -> SchedulingResult:
        return SchedulingResult(
            assignments=tuple(self._assignments),
            failures=dict(self._failures),
            hosts_examined=self._examined,
            elapsed_ms=(time.perf_counter() - self._t0) * 1000.0,
        )
