"""Which pending task goes next: tiers, buckets served by weighted dominant resource share, guarantees, caps and
delayed retries.

A `TaskQueue` is pure bookkeeping: it never looks at a clock (every call that depends on time takes `now`), never
places anything, and gives the same order for the same calls.

Service order (one *pass* over the queue, see `TaskQueue.order`):

1. **Readiness.** A task whose `ready_at` is later than `now` is skipped in this pass (a delayed retry); it stays
   queued. `next_ready_at(now)` says when the earliest such task becomes ready.
2. **Tiers.** Every ready task of tier 0 comes before any task of tier 1, and so on (lower tier first).
3. **Buckets inside a tier.** The next task comes from the bucket (`TaskRequest.bucket`) that ranks first, and
   the ranks are recomputed before EVERY pick from the bucket usage at that moment (so after every assignment):

   a. buckets *below their guarantee* rank before all others; among them, the one with the smallest guarantee
      fraction goes first (guarantee fraction = max over the guaranteed resources of usage / guaranteed amount;
      "below" means that fraction is < 1, i.e. no guaranteed resource has reached its guaranteed amount yet);
   b. all buckets then rank by weighted dominant share: max over the resources of usage / cluster total (the
      totals given by `set_total`), divided by the bucket's weight (default 1). A resource with no total set
      counts against the sum of every bucket's usage of it instead (relative shares), so ordering still works,
      if less exactly, before the totals are known;
   c. ties go to the bucket whose next task was queued first (then task id), so equal buckets take turns in
      arrival order.

   Usage is what the bucket's tasks that are running use: `on_assigned(task)` adds a task, `on_finished(task)`
   takes it away. Usage is per bucket name across all tiers; so are the weight, guarantee and cap.
4. **Inside a bucket:** first queued, first served (re-adding a queued task id keeps its place).
5. **Caps.** A task whose assignment would take its bucket over its cap in any capped resource (usage + request >
   cap) is *held*: it is not yielded in this pass, stays queued (it is never dropped), and is listed in the pass'
   `held` with the reason. Later (smaller) tasks of the same bucket may still go if they fit under the cap. So a
   bucket at its cap in a resource gets no task that asks for any of that resource.
6. A pass yields each ready task at most once; a task the caller could not place (it did not call
   `on_assigned`) simply stays queued for the next pass, and the pass moves on.

Three ways to drive it:

* Task by task, for real: ``for task in queue.order(now): if place(task): queue.on_assigned(task)`` — each pick
  sees the assignments made so far in the pass (the queue's usage changes as you go).
* Task by task, tentatively: ``plan = queue.plan(now)``; ``for task in plan: if place(task): plan.assign(task)``.
  The same order as above, but the assignments are only noted in the pass (the queue does not change); commit
  what was really launched afterwards (`commit` / `on_assigned`). This is what `PlacementScheduler` does with
  `PlacementEngine.start`: when a task cannot be placed, its bucket's share does not grow, and the rest of the
  run is ordered by what was actually assigned.
* In batches (for an engine that only takes a list): ``batch = queue.next_batch(now, n)`` (or ``queue.ready(now)``
  for every ready task) returns the order obtained by assuming that every yielded task is assigned; run the engine
  on the list, then ``queue.commit(result.assignments)``. If some tasks of the batch are not placed, the order of
  the rest was computed with too much usage for their buckets (the next batch corrects it): prefer ``plan``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace

from scheduler_sdk.placement.model import BASE_RESOURCES, Assignment, Host, TaskRequest

EPSILON = 1e-9


def demand(task: TaskRequest) -> dict[str, float]:
    """What a task asks for, by resource name (`ports` is the number of ports); zero amounts are left out."""
    out = {name: float(getattr(task, name)) for name in BASE_RESOURCES if getattr(task, name)}
    if task.ports:
        out["ports"] = float(task.ports)
    for name, amount in task.scalars.items():
        if amount:
            out[name] = out.get(name, 0.0) + float(amount)
    return out


def cluster_totals(hosts: Iterable[Host]) -> dict[str, float]:
    """The resources of these hosts together, for `TaskQueue.set_total`: each host's `total_*` where given, else
    what it offers plus what its running tasks use. Ports count as the number of ports offered."""
    totals: dict[str, float] = {}

    def add(name: str, amount: float) -> None:
        if amount:
            totals[name] = totals.get(name, 0.0) + amount

    for host in hosts:
        given = {"cpus": host.total_cpus, "mem": host.total_mem, "disk": host.total_disk, "network": host.total_network}
        for name, total in given.items():
            if total is not None:
                add(name, total)
            else:
                add(name, sum(getattr(o, name) for o in host.offers) + sum(getattr(t, name) for t in host.running))
        add("ports", float(sum(hi - lo + 1 for o in host.offers for lo, hi in o.ports)))
        add("ports", float(sum(t.ports for t in host.running)))
        if host.total_scalars is not None:
            for name, total in host.total_scalars.items():
                add(name, total)
        else:
            for o in host.offers:
                for name, amount in o.scalars.items():
                    add(name, amount)
            for t in host.running:
                for name, amount in t.scalars.items():
                    add(name, amount)
    return totals


@dataclass(frozen=True, slots=True)
class Bucket:
    """How one bucket is treated. `guarantee` and `cap` map resource names (cpus, mem, disk, network, ports, any
    scalar) to amounts."""

    name: str
    weight: float = 1.0
    guarantee: Mapping[str, float] = field(default_factory=dict)
    cap: Mapping[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class _Entry:
    seq: int
    task: TaskRequest
    demand: dict[str, float]


class TaskQueue:
    """Pending tasks in tiers and buckets; see the module docstring for the service order."""

    def __init__(self, total: Mapping[str, float] | None = None) -> None:
        self._pending: dict[str, _Entry] = {}
        # tier -> bucket -> task id -> entry, in queueing order
        self._lines: dict[int, dict[str, dict[str, _Entry]]] = {}
        self._buckets: dict[str, Bucket] = {}
        self._total: dict[str, float] = {}
        self._usage: dict[str, dict[str, float]] = {}  # bucket -> resource -> amount
        self._running: dict[str, tuple[str, dict[str, float]]] = {}  # task id -> (bucket, demand)
        self._seq = 0
        if total:
            self.set_total(total)

    # ------------------------------------------------------------------ configuration
    def set_bucket(
        self,
        name: str,
        weight: float = 1.0,
        guarantee: Mapping[str, float] | None = None,
        cap: Mapping[str, float] | None = None,
    ) -> Bucket:
        """Configure a bucket (a bucket never configured has weight 1 and neither guarantee nor cap)."""
        if not (weight > 0 and math.isfinite(weight)):
            raise ValueError(f"bucket {name!r}: weight must be a positive number, not {weight!r}")
        for what, amounts in (("guarantee", guarantee), ("cap", cap)):
            for resource, amount in (amounts or {}).items():
                if amount < 0 or math.isnan(amount):
                    raise ValueError(f"bucket {name!r}: {what} of {resource} must be >= 0, not {amount!r}")
        bucket = Bucket(name, float(weight), dict(guarantee or {}), dict(cap or {}))
        self._buckets[name] = bucket
        return bucket

    def bucket(self, name: str) -> Bucket:
        return self._buckets.get(name) or Bucket(name)

    def set_total(self, total: Mapping[str, float]) -> None:
        """The cluster's resources, the denominators of dominant shares (see `cluster_totals`)."""
        self._total = {k: float(v) for k, v in total.items() if v > 0}

    @property
    def total(self) -> Mapping[str, float]:
        return dict(self._total)

    # ------------------------------------------------------------------ tasks
    def add(self, task: TaskRequest) -> None:
        """Queue a task. Re-adding a queued id replaces the request but keeps its place in line."""
        old = self._pending.get(task.id)
        seq = old.seq if old is not None else self._next_seq()
        if old is not None:
            self._unlink(old)
        entry = _Entry(seq, task, demand(task))
        self._pending[task.id] = entry
        line = self._lines.setdefault(task.tier, {}).setdefault(task.bucket, {})
        line[task.id] = entry
        if old is not None and len(line) > 1:
            # keep the bucket's line in queueing order
            items = sorted(line.values(), key=lambda e: e.seq)
            line.clear()
            line.update((e.task.id, e) for e in items)

    def remove(self, task_id: str) -> None:
        """Drop a queued task (unknown ids are ignored)."""
        self.pop(task_id)

    def pop(self, task_id: str) -> TaskRequest | None:
        """Drop a queued task and return it; None when it was not queued."""
        entry = self._pending.pop(task_id, None)
        if entry is None:
            return None
        self._unlink(entry)
        return entry.task

    def defer(self, task_id: str, until: float) -> TaskRequest | None:
        """Delayed retry: the queued task is skipped until `until` (its `ready_at`), keeping its place in line."""
        entry = self._pending.get(task_id)
        if entry is None:
            return None
        task = replace(entry.task, ready_at=until)
        entry.task = task
        return task

    def get(self, task_id: str) -> TaskRequest | None:
        entry = self._pending.get(task_id)
        return None if entry is None else entry.task

    def pending(self) -> list[TaskRequest]:
        """Every queued task, in queueing order (not service order)."""
        return [e.task for e in sorted(self._pending.values(), key=lambda e: e.seq)]

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._pending

    def next_ready_at(self, now: float) -> float | None:
        """When the earliest task that is not ready at `now` becomes ready (None: no such task)."""
        later = [e.task.ready_at for e in self._pending.values() if e.task.ready_at > now]
        return min(later) if later else None

    def counts(self) -> dict[tuple[int, str], int]:
        """Queued tasks per (tier, bucket), for metrics."""
        return {(tier, b): len(line) for tier, lines in sorted(self._lines.items()) for b, line in lines.items()}

    # ------------------------------------------------------------------ usage
    def on_assigned(self, task: TaskRequest) -> None:
        """The task now runs (or is being launched): it leaves the queue and its bucket's usage grows.
        Also for tasks that never were queued (e.g. found running after a failover). Idempotent per task id."""
        self.pop(task.id)
        if task.id in self._running:
            return
        d = demand(task)
        self._running[task.id] = (task.bucket, d)
        usage = self._usage.setdefault(task.bucket, {})
        for name, amount in d.items():
            usage[name] = usage.get(name, 0.0) + amount

    def on_finished(self, task: TaskRequest | str) -> None:
        """The task ended: its bucket's usage shrinks. Unknown tasks are ignored."""
        task_id = task if isinstance(task, str) else task.id
        found = self._running.pop(task_id, None)
        if found is None:
            return
        bucket, d = found
        usage = self._usage.get(bucket, {})
        for name, amount in d.items():
            left = usage.get(name, 0.0) - amount
            if left <= EPSILON:
                usage.pop(name, None)
            else:
                usage[name] = left
        if not usage:
            self._usage.pop(bucket, None)

    def commit(self, assignments: Iterable[Assignment | TaskRequest]) -> None:
        """`on_assigned` for every assigned task of a run (assignments or the tasks themselves)."""
        for a in assignments:
            self.on_assigned(a.task if isinstance(a, Assignment) else a)

    def usage(self, bucket: str) -> dict[str, float]:
        return dict(self._usage.get(bucket, {}))

    def running(self) -> int:
        return len(self._running)

    def dominant_share(self, bucket: str) -> float:
        """The bucket's weighted dominant share now (see the module docstring, 3b)."""
        return self._weighted_share(bucket, self._usage.get(bucket, {}))

    def below_guarantee(self, bucket: str) -> bool:
        return self._guarantee_fraction(bucket, self._usage.get(bucket, {})) < 1.0

    # ------------------------------------------------------------------ service order
    def order(self, now: float) -> ServicePass:
        """A lazy pass over the ready tasks in service order; each pick sees the `on_assigned` calls made so far."""
        return ServicePass(self, now, optimistic=False)

    def plan(self, now: float) -> ServicePass:
        """A lazy pass in service order where the caller notes each task it placed with `ServicePass.assign`
        (tentative: the queue itself is left alone); each pick sees the usage plus those notes."""
        return ServicePass(self, now, optimistic=False, tentative=True)

    def next_batch(self, now: float, n: int | None = None) -> list[TaskRequest]:
        """Up to `n` (None: all) ready tasks in service order, assuming each one yielded gets assigned. Nothing
        changes in the queue until `commit`/`on_assigned`."""
        out: list[TaskRequest] = []
        if n is not None and n <= 0:
            return out
        for task in ServicePass(self, now, optimistic=True):
            out.append(task)
            if n is not None and len(out) >= n:
                break
        return out

    def ready(self, now: float) -> list[TaskRequest]:
        """Every task to try now, in service order (`next_batch(now)`); what `PlacementScheduler` asks for."""
        return self.next_batch(now)

    # ------------------------------------------------------------------ internals
    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _unlink(self, entry: _Entry) -> None:
        lines = self._lines.get(entry.task.tier)
        if lines is None:
            return
        line = lines.get(entry.task.bucket)
        if line is None:
            return
        line.pop(entry.task.id, None)
        if not line:
            del lines[entry.task.bucket]
        if not lines:
            del self._lines[entry.task.tier]

    def _weighted_share(
        self, bucket: str, usage: Mapping[str, float], overlay: Mapping[str, Mapping[str, float]] | None = None
    ) -> float:
        """Dominant share of `usage` (plus the bucket's part of `overlay`) over the totals, divided by the weight."""
        extra = overlay.get(bucket) if overlay else None
        used = dict(usage)
        for name, amount in (extra or {}).items():
            used[name] = used.get(name, 0.0) + amount
        share = 0.0
        for name, amount in used.items():
            total = self._total.get(name)
            if total is None:  # relative share: against what every bucket uses of it
                total = sum(u.get(name, 0.0) for u in self._usage.values())
                if overlay:
                    total += sum(o.get(name, 0.0) for o in overlay.values())
            if total > 0:
                share = max(share, amount / total)
        return share / self.bucket(bucket).weight

    def _guarantee_fraction(
        self, bucket: str, usage: Mapping[str, float], extra: Mapping[str, float] | None = None
    ) -> float:
        """max over guaranteed resources of usage / guarantee; inf when the bucket has no guarantee."""
        config = self._buckets.get(bucket)
        if config is None or not config.guarantee:
            return math.inf
        fraction = 0.0
        any_positive = False
        for name, amount in config.guarantee.items():
            if amount <= 0:
                continue
            any_positive = True
            used = usage.get(name, 0.0) + (extra.get(name, 0.0) if extra else 0.0)
            fraction = max(fraction, used / amount)
        return fraction if any_positive else math.inf

    def _fits_cap(self, bucket: str, d: Mapping[str, float], extra: Mapping[str, float] | None) -> str:
        """'' when a task asking for `d` fits under the bucket's cap, else why not."""
        config = self._buckets.get(bucket)
        if config is None or not config.cap:
            return ""
        usage = self._usage.get(bucket, {})
        for name, cap in config.cap.items():
            asked = d.get(name, 0.0)
            if not asked:
                continue
            used = usage.get(name, 0.0) + (extra.get(name, 0.0) if extra else 0.0)
            if used + asked > cap + EPSILON:
                return f"bucket {bucket!r} cap on {name}: uses {used:g} of {cap:g}, task asks {asked:g}"
        return ""


class ServicePass(Iterator[TaskRequest]):
    """One pass over the ready tasks of a `TaskQueue`, in service order (module docstring). Made by
    `TaskQueue.order` (live: reads the queue's usage at each pick), `TaskQueue.plan` (tentative: reads the usage
    plus what the caller noted with `assign`) or internally by `next_batch` (optimistic: adds every yielded task
    to a private usage overlay)."""

    def __init__(self, queue: TaskQueue, now: float, *, optimistic: bool, tentative: bool = False) -> None:
        self._queue = queue
        self.now = now
        self._optimistic = optimistic
        self._tentative = tentative
        self._overlay: dict[str, dict[str, float]] = {}
        self.held: dict[str, str] = {}  # task id -> why it was held back (cap)
        self.yielded = 0
        self._tiers: deque[dict[str, deque[_Entry]]] = deque()
        for tier in sorted(queue._lines):
            buckets: dict[str, deque[_Entry]] = {}
            for name, line in queue._lines[tier].items():
                ready = deque(e for e in line.values() if e.task.ready_at <= now)
                if ready:
                    buckets[name] = ready
            if buckets:
                self._tiers.append(buckets)

    def __iter__(self) -> ServicePass:
        return self

    def assign(self, task: TaskRequest) -> None:
        """Note that a task this pass yielded was placed: later picks count its usage (plan passes only)."""
        if not self._tentative:
            raise TypeError("assign() is for passes made by TaskQueue.plan")
        overlay = self._overlay.setdefault(task.bucket, {})
        for res, amount in demand(task).items():
            overlay[res] = overlay.get(res, 0.0) + amount

    def __next__(self) -> TaskRequest:
        q = self._queue
        while self._tiers:
            buckets = self._tiers[0]
            best: deque[_Entry] | None = None
            best_key: tuple[float, float, float, int, str] | None = None
            for name in list(buckets):
                line = buckets[name]
                extra = self._overlay.get(name)
                while line:
                    head = line[0]
                    if q._pending.get(head.task.id) is not head:
                        line.popleft()  # assigned or removed since the pass began
                        continue
                    why = q._fits_cap(name, head.demand, extra)
                    if why:
                        self.held[head.task.id] = why
                        line.popleft()
                        continue
                    break
                if not line:
                    del buckets[name]
                    continue
                if len(buckets) == 1:
                    best = line  # the only bucket left in the tier: no ranking needed
                    break
                usage = q._usage.get(name, {})
                gfrac = q._guarantee_fraction(name, usage, extra)
                share = q._weighted_share(name, usage, self._overlay)
                head = line[0]
                key = (
                    (0.0, gfrac, share, head.seq, head.task.id)
                    if gfrac < 1.0
                    else (1.0, 0.0, share, head.seq, head.task.id)
                )
                if best_key is None or key < best_key:
                    best, best_key = line, key
            if best is None:
                self._tiers.popleft()
                continue
            entry = best.popleft()
            if self._optimistic:
                overlay = self._overlay.setdefault(entry.task.bucket, {})
                for res, amount in entry.demand.items():
                    overlay[res] = overlay.get(res, 0.0) + amount
            self.yielded += 1
            return entry.task
        raise StopIteration


class FixedPlan:
    """A `Plan` over a fixed order (where placements do not change the order)."""

    def __init__(self, tasks: Iterable[TaskRequest]) -> None:
        self._it = iter(tasks)

    def __iter__(self) -> FixedPlan:
        return self

    def __next__(self) -> TaskRequest:
        return next(self._it)

    def assign(self, task: TaskRequest) -> None:
        pass


class FifoQueue:
    """First come, first served; tasks with a future `ready_at` wait. The simplest `Queue` (with `PlanningQueue`
    and `TimedQueue`), `PlacementScheduler`'s default."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskRequest] = {}

    def add(self, task: TaskRequest) -> None:
        self._tasks[task.id] = task

    def remove(self, task_id: str) -> None:
        self._tasks.pop(task_id, None)

    def ready(self, now: float) -> list[TaskRequest]:
        return [t for t in self._tasks.values() if t.ready_at <= now]

    def plan(self, now: float) -> FixedPlan:
        return FixedPlan(self.ready(now))

    def next_ready_at(self, now: float) -> float | None:
        later = [t.ready_at for t in self._tasks.values() if t.ready_at > now]
        return min(later) if later else None

    def on_assigned(self, task: TaskRequest) -> None:
        self._tasks.pop(task.id, None)

    def on_finished(self, task: TaskRequest) -> None:
        pass

    def __len__(self) -> int:
        return len(self._tasks)
