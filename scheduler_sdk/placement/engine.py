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
3. **Limit.** Hosts are examined in the *examination order* below. The examination stops at the first feasible
   host whose score is >= ``good_enough``, or once ``max_hosts_examined`` feasible hosts have been scored;
   otherwise every feasible host is scored.
4. **Pick.** The best score among the examined hosts wins; equal scores go to the smaller hostname.
5. **Assign.** The task takes its resources from the host's lease and the lowest free port numbers of the lease's
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

Candidate sources
-----------------
Which hosts are examined, in that order, comes from one candidate source per run (see candidates/): the
*examination order* above (`RotatingScan`; `SortedScan` for `BinPacking` / `Spread` with ``fast_path=False``,
which scores and sorts every host), or one of the indexes that give the same winner while looking at fewer hosts:

- `FreeAmountIndex`, for `BinPacking(r)` / `Spread(r)`: per distinct host capacity of ``r`` a sorted list of
  ``(free r, rank)``; candidates with enough ``r`` come by bisection in exact examination order. Since they come
  best fitness first, the walk also stops as soon as no later host could beat the best score so far, even with
  perfect soft scores; without soft constraints that is right after the first feasible candidate.
- `ShapeIndex`, for any other calculator that depends on the task's resource amounts only (`fitness.by_shape`:
  `BinPacking`, `Spread`, a `Weighted` of those, or a plugin with ``by_shape = True``), without
  ``max_hosts_examined``: per task shape, the hosts with room sorted by fitness. Without ``good_enough`` the
  winner is the best score, ties by hostname, whatever the order, so the list is walked best first as above.
  With ``good_enough`` a task without soft constraints takes `GoodEnoughFirst` (the first feasible host from the
  cursor on whose fitness reaches it, else the fittest feasible host: the rotating scan's answer); a task with soft
  constraints takes the plain `RotatingScan`.

Results are the reference's (``fast_path=False``), which the property tests check; only ``hosts_examined`` is
smaller.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from itertools import pairwise

from scheduler_sdk.placement.candidates import (
    CandidateSource,
    FreeAmountIndex,
    GoodEnoughFirst,
    RotatingScan,
    ShapeIndex,
    SortedScan,
)
from scheduler_sdk.placement.constraints import ExclusiveHost, as_constraint
from scheduler_sdk.placement.extension import Constraint, CustomFn, FitnessCalculator, FitnessLike
from scheduler_sdk.placement.feasibility import EPS, FailureReport, fits
from scheduler_sdk.placement.fitness import BinPacking, Spread, as_fitness, by_shape, clamp01
from scheduler_sdk.placement.model import Assignment, Failure, Host, SchedulingResult, TaskRequest
from scheduler_sdk.placement.run_state import HostState, RunState

__all__ = ["DEFAULT_SOFT_CONSTRAINT_WEIGHT", "EPS", "PlacementEngine", "PlacementRun", "by_shape"]

DEFAULT_SOFT_CONSTRAINT_WEIGHT = 0.5

_DEFAULT_FITNESS = BinPacking("cpus")


def _hostname(h: Host) -> str:
    return h.hostname


def _check_settings(w: float, good_enough: float | None, max_hosts_examined: int | None) -> None:
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


class PlacementEngine:
    """Places tasks on hosts; see the module docstring for the exact rules. An `Engine` and a `SteppedEngine`.

    Args:
        fitness: ranks feasible hosts, ``(task, host_view) -> [0, 1]``; default cpu bin packing.
        soft_constraint_weight: ``w`` in ``score = (1 - w) * fitness + w * soft``, in [0, 1]; default 0.5.
        good_enough: stop examining hosts for a task at the first one scoring at least this (in [0, 1]).
        max_hosts_examined: score at most this many feasible hosts per task (>= 1).
        hard_constraints / soft_constraints: applied to every task, before the task's own (plain functions
            ``fn(task, host, ctx)`` are wrapped in `Custom`).
        fast_path: use the indexed candidate sources where they apply (same results; off only to verify).
    """

    def __init__(
        self,
        fitness: FitnessLike = _DEFAULT_FITNESS,
        *,
        soft_constraint_weight: float = DEFAULT_SOFT_CONSTRAINT_WEIGHT,
        good_enough: float | None = None,
        max_hosts_examined: int | None = None,
        hard_constraints: Sequence[Constraint | CustomFn] = (),
        soft_constraints: Sequence[Constraint | CustomFn] = (),
        fast_path: bool = True,
    ) -> None:
        self.fitness: FitnessCalculator = as_fitness(fitness)
        _check_settings(soft_constraint_weight, good_enough, max_hosts_examined)
        self.soft_constraint_weight = float(soft_constraint_weight)
        self.good_enough = None if good_enough is None else float(good_enough)
        self.max_hosts_examined = max_hosts_examined
        self.hard_constraints: tuple[Constraint, ...] = tuple(as_constraint(c) for c in hard_constraints)
        self.soft_constraints: tuple[Constraint, ...] = tuple(as_constraint(c) for c in soft_constraints)
        self.fast_path = fast_path
        self._w = self.soft_constraint_weight
        self._a = 1.0 - self.soft_constraint_weight
        kind = type(self.fitness)
        # BinPacking(r) / Spread(r): examined best fitness first, by (resource, spread)
        self._ordered: tuple[str, bool] | None = (
            (self.fitness.resource, kind is Spread)  # type: ignore[attr-defined]
            if kind is BinPacking or kind is Spread
            else None
        )
        self._by_shape = fast_path and self._ordered is None and max_hosts_examined is None and by_shape(self.fitness)

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

    # --- the pieces of a run ----------------------------------------------------------------------------------

    @staticmethod
    def _sorted_hosts(hosts: Sequence[Host]) -> list[Host]:
        ordered = sorted(hosts, key=_hostname)
        if len({h.hostname for h in ordered}) != len(ordered):
            for a, b in pairwise(ordered):
                if a.hostname == b.hostname:
                    raise ValueError(f"host {a.hostname!r} appears twice; combine its offers into one Host")
        return ordered

    def _sources(self, run: RunState) -> tuple[CandidateSource, CandidateSource]:
        """The run's candidate sources: for tasks without soft constraints, and for tasks with some."""
        if self._by_shape:
            index = ShapeIndex(run, self._fit, self.good_enough)
            if self.good_enough is None:
                return index, index
            return GoodEnoughFirst(index), RotatingScan(run)
        if self._ordered is None:
            scan = RotatingScan(run)
            return scan, scan
        source: CandidateSource
        if self.fast_path:
            resource, spread = self._ordered
            source = FreeAmountIndex(run, self._fit, resource, spread)
        else:
            source = SortedScan(run, self._fit)
        return source, source

    def _constraints(self, task: TaskRequest) -> tuple[tuple[Constraint, ...], tuple[Constraint, ...], bool]:
        """The task's hard and soft constraints (engine-wide first), and whether it wants its host exclusively."""
        hard = self.hard_constraints
        if task.hard_constraints:
            hard = hard + tuple(as_constraint(c) for c in task.hard_constraints)
        soft = self.soft_constraints
        if task.soft_constraints:
            soft = soft + tuple(as_constraint(c) for c in task.soft_constraints)
        exclusive = any(isinstance(c, ExclusiveHost) for c in hard) if hard else False
        return hard, soft, exclusive

    def _fit(self, task: TaskRequest, h: HostState) -> float:
        return clamp01(self.fitness(task, h))

    def _soft_score(
        self, task: TaskRequest, h: HostState, fit: float, soft: tuple[Constraint, ...], run: RunState
    ) -> float:
        total = 0.0
        for c in soft:
            total += clamp01(c.evaluate(task, h, run).score)
        return self._a * fit + self._w * (total / len(soft))


class PlacementRun:
    """One scheduling run fed task by task (see `PlacementEngine.start`); an `EngineRun`. Pure: no clock but
    ``elapsed_ms``, no I/O; its outcome is a function of the hosts and the tasks placed, in order."""

    __slots__ = (
        "_assignments",
        "_engine",
        "_examined",
        "_failure_report",
        "_failures",
        "_run",
        "_seen",
        "_soft_source",
        "_source",
        "_t0",
    )

    def __init__(self, engine: PlacementEngine, hosts: Sequence[Host]) -> None:
        self._t0 = time.perf_counter()
        self._engine = engine
        self._run = RunState(engine._sorted_hosts(hosts))
        self._source, self._soft_source = engine._sources(self._run)
        self._failure_report = FailureReport(self._run)
        self._assignments: list[Assignment] = []
        self._failures: dict[str, tuple[Failure, ...]] = {}
        self._examined = 0
        self._seen: set[str] = set()

    @property
    def source_names(self) -> tuple[str, str]:
        """The names of the candidate sources this run uses: for tasks without soft constraints, and with some."""
        return self._source.name, self._soft_source.name

    def place(self, task: TaskRequest) -> Assignment | None:
        """Place one task after those placed before it: its assignment, or None (see `failures`)."""
        if task.id in self._seen:
            raise ValueError(f"task id {task.id!r} appears twice in one run")
        self._seen.add(task.id)
        hard, soft, exclusive = self._engine._constraints(task)
        source = self._soft_source if soft else self._source
        host, fit, examined = self._choose(task, hard, soft, source)
        self._examined += examined
        if host is None:
            self._failures[task.id] = self._failure_report.failures(task, hard)
            self._examined += len(self._run.src)
            return None
        ports = host.take(task, exclusive)
        self._run.note(host, task)
        self._source.assigned(host)
        if self._soft_source is not self._source:
            self._soft_source.assigned(host)
        a = Assignment(
            task=task,
            hostname=host.hostname,
            agent_id=host.agent_id,
            offer_ids=host.offer_ids,
            ports=ports,
            fitness=fit,
        )
        self._assignments.append(a)
        return a

    def _choose(
        self, task: TaskRequest, hard: tuple[Constraint, ...], soft: tuple[Constraint, ...], source: CandidateSource
    ) -> tuple[HostState | None, float, int]:
        """The chain over the source's candidates: filter -> score -> limit -> pick. Returns the winner (None: no
        host may take the task), its fitness, and how many hosts were examined."""
        engine, run = self._engine, self._run
        state, fit_of = run.state, engine._fit
        g, k = engine.good_enough, engine.max_hosts_examined
        a, w = engine._a, engine._w
        bounded = source.bounded
        best_score, best_rank, best_fit = -1.0, -1, 0.0
        feasible = 0
        examined = source.examined_up_front
        for fit, rank in source.candidates(task, hard):
            if bounded and best_rank >= 0:
                # Limit (bound): no later candidate has a higher fitness, so none can score above a*fit + w (a
                # perfect soft score). Without soft constraints the score is the fitness, and later candidates of
                # equal fitness come in hostname order, after the best: none of them wins a tie either. With soft
                # constraints a later host of lower fitness may still tie (e.g. w = 1) and win on its name, so
                # only a strict bound stops.
                assert fit is not None
                if soft:
                    if a * fit + w < best_score:
                        break
                elif fit < best_score or (fit == best_score and rank > best_rank):
                    break
            examined += 1
            h = state(rank)
            if not fits(task, h, hard, run):  # filter
                continue
            feasible += 1
            if fit is None:  # score
                fit = fit_of(task, h)
            score = engine._soft_score(task, h, fit, soft, run) if soft else fit
            if score > best_score or (score == best_score and rank < best_rank):  # pick
                best_score, best_rank, best_fit = score, rank, fit
            if (g is not None and score >= g) or (k is not None and feasible >= k):  # limit
                break
        return (state(best_rank) if best_rank >= 0 else None), best_fit, examined

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
