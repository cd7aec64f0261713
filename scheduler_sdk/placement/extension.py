"""Every extension point of placement, declared once, with its contract.

Where each plugs in, in the order of a run (Nomad's chain: filter -> score -> limit -> pick):

* `Constraint` (hard: filter; soft: score) and `FitnessCalculator` (score) judge one task on one host. They see the
  host through a `HostView` and the whole run through a `RunContext` (optionally an `IndexedRunContext`).
* `Engine` places tasks on hosts; `SteppedEngine` also runs task by task (`EngineRun`). `PlacementScheduler` and
  the `Autoscaler` drive any engine through these, `PlacementEngine` being the one shipped.
* `Queue` says which pending task goes next; optional capabilities: `PlanningQueue` (a `Plan` told where tasks
  went), `TimedQueue` (delayed tasks wake the scheduler), `FairShareQueue` (takes the cluster totals).
* `ClusterProvider` starts and stops the autoscaler's hosts.

An optional capability is a protocol of its own, checked with ``isinstance`` where it is used (never a ``getattr``
for a method that may be missing); an object without it gets the documented default behaviour.

The data these signatures speak of (`TaskRequest`, `Host`, `Assignment`, `SchedulingResult`, `ConstraintResult`)
is in model.py; this module builds on it, and nothing in model.py refers back here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Protocol, runtime_checkable

from scheduler_sdk.placement.model import Assignment, ConstraintResult, Host, SchedulingResult, TaskRequest

# ---------------------------------------------------------------------------------- what judges (task, host) sees


class HostView(Protocol):
    """The read-only state of one host during a run: its lease minus what this run assigned so far.

    ``free(resource)`` is what is still free now; ``total(resource)`` the host's capacity (`Host.total_*`, else
    offered plus used by running tasks), for "use after placing". Resources are ``cpus``, ``mem``, ``disk``,
    ``network``, ``ports`` (a count) or any named scalar (0 when the host has none). ``groups()`` maps each group to
    the number of its tasks there (running plus assigned this run); ``task_count()`` counts all tasks there. A view
    is only valid during the call it is given to.
    """

    hostname: str
    agent_id: str
    attributes: Mapping[str, str]

    def free(self, resource: str) -> float: ...
    def total(self, resource: str) -> float: ...
    def groups(self) -> Mapping[str, int]: ...
    def task_count(self) -> int: ...


class RunContext(Protocol):
    """What a constraint may know about the whole run: every host (hostname order) and where each group's tasks
    are (``hostname -> count``, running plus assigned this run). Read-only; valid during the call only."""

    def hosts(self) -> Sequence[HostView]: ...
    def group_hosts(self, group: str) -> Mapping[str, int]: ...


class IndexedRunContext:
    """Optional capability of a `RunContext`: it also answers the two questions the built-in constraints ask of the
    whole run, from its own indexes. The engine's run is one; `group_counts_by_value` and `attribute_values` (the
    functions below, which constraints call) ask a context that subclasses this class, and compute the answer from
    the two `RunContext` methods for any other. A subclass implements `hosts` and `group_hosts` and may keep the
    defaults of the two others.
    """

    __slots__ = ()

    def hosts(self) -> Sequence[HostView]:
        raise NotImplementedError

    def group_hosts(self, group: str) -> Mapping[str, int]:
        raise NotImplementedError

    def group_counts_by_value(self, group: str, attribute: str) -> Mapping[str, int]:
        """How many tasks of ``group`` sit on each value of ``attribute`` (values no task of it has: absent)."""
        return counts_by_value(self, group, attribute)

    def attribute_values(self, attribute: str) -> tuple[str, ...]:
        """Every value of ``attribute`` among the run's hosts, sorted."""
        return values_among_hosts(self, attribute)


def host_attribute(host: HostView | Host, attribute: str) -> str | None:
    """A host's value of an attribute; ``"hostname"`` always means the host itself. None: the host lacks it."""
    if attribute == "hostname":
        return host.hostname
    return host.attributes.get(attribute)


def group_counts_by_value(ctx: RunContext, group: str, attribute: str) -> Mapping[str, int]:
    """`IndexedRunContext.group_counts_by_value` of any context."""
    if isinstance(ctx, IndexedRunContext):
        return ctx.group_counts_by_value(group, attribute)
    return counts_by_value(ctx, group, attribute)


def attribute_values(ctx: RunContext, attribute: str) -> tuple[str, ...]:
    """`IndexedRunContext.attribute_values` of any context."""
    if isinstance(ctx, IndexedRunContext):
        return ctx.attribute_values(attribute)
    return values_among_hosts(ctx, attribute)


def counts_by_value(ctx: RunContext, group: str, attribute: str) -> dict[str, int]:
    """`group_counts_by_value` from the `RunContext` methods alone."""
    by_name = {h.hostname: h for h in ctx.hosts()}
    out: dict[str, int] = {}
    for hostname, n in ctx.group_hosts(group).items():
        h = by_name.get(hostname)
        value = host_attribute(h, attribute) if h is not None else None
        if value is not None and n:
            out[value] = out.get(value, 0) + n
    return out


def values_among_hosts(ctx: RunContext, attribute: str) -> tuple[str, ...]:
    """`attribute_values` from the `RunContext` methods alone."""
    return tuple(sorted({v for h in ctx.hosts() if (v := host_attribute(h, attribute)) is not None}))


# ---------------------------------------------------------------------------------- judging (task, host)


class Constraint(Protocol):
    """Judges one (task, host) pair in the context of the run; the same object works as hard or soft.

    ``evaluate(task, host, ctx) -> ConstraintResult(ok, score, reason)``. As a *hard* constraint (a filter) only
    ``ok`` is read: a host where it is False is dropped for the task, and ``reason`` is its `Failure` detail under
    the constraint's ``name``. As a *soft* constraint only ``score`` is read (0 worst .. 1 best, clamped), averaged
    over the task's soft constraints and mixed with fitness (``score = (1 - w) * fitness + w * soft``). It must be
    a pure function of its arguments: the engine may evaluate it any number of times, in any host order, and relies
    on the same answer for the same run state. Engine-wide constraints come before the task's own, each in order.
    `ExclusiveHost` as a hard constraint has one more effect: the engine keeps later tasks of the run off the host.
    """

    name: str

    def evaluate(self, task: TaskRequest, host: HostView, ctx: RunContext) -> ConstraintResult: ...


CustomFn = Callable[[TaskRequest, HostView, RunContext], "bool | float | ConstraintResult"]
"""A constraint as a plain function (wrapped in `Custom`): True/False, a score in [0, 1] (as hard: passes when
> 0), or a full `ConstraintResult`."""


@runtime_checkable
class FitnessCalculator(Protocol):
    """How well a task fits on a host: ``calc(task, host) -> float`` in [0, 1], 1 best (the engine clamps; NaN
    counts as 0), plus a ``name`` for reports. Called only for hosts where the task is feasible (resources and hard
    constraints): feasibility is never a calculator's business. Must be a pure function of the task and the view.
    Optional capability: `ShapeOnlyFitness`."""

    @property
    def name(self) -> str: ...

    def __call__(self, task: TaskRequest, host: HostView, /) -> float: ...


@runtime_checkable
class ShapeOnlyFitness(Protocol):
    """Optional capability of a `FitnessCalculator`: ``by_shape = True`` promises that its value depends, for a
    given host, on the task's resource amounts only (cpus, mem, disk, network, ports, scalars), never on its id,
    group or other fields. The engine then ranks hosts once per task shape (its per-shape index). Without the
    attribute (or with False) the calculator is called for every (task, host) the engine examines."""

    by_shape: bool


FitnessLike = FitnessCalculator | Callable[[TaskRequest, HostView], float]
"""What the engine and `Weighted` accept: a calculator, or a plain function ``(task, host) -> float``."""


# ---------------------------------------------------------------------------------- engines


@runtime_checkable
class Engine(Protocol):
    """Places tasks on hosts: ``schedule(tasks, hosts)`` is one run over the hosts' current leases, placing the
    tasks in the order given, and reports why each task it could not place fits nowhere. It should be a pure
    function of its inputs (`PlacementEngine` is: the same inputs give the same result whatever the order of
    ``hosts``). Optional capability: `SteppedEngine`."""

    def schedule(self, tasks: Sequence[TaskRequest], hosts: Sequence[Host]) -> SchedulingResult: ...


class EngineRun(Protocol):
    """One run fed task by task: ``place(task)`` places it after those placed before (its `Assignment`, or None
    when it fits nowhere); ``result()`` is what ``schedule`` would have returned for the same tasks in order."""

    def place(self, task: TaskRequest) -> Assignment | None: ...
    def result(self) -> SchedulingResult: ...


@runtime_checkable
class SteppedEngine(Protocol):
    """Optional capability of an `Engine`: ``start(hosts)`` opens an `EngineRun`. With it (and a `PlanningQueue`)
    `PlacementScheduler` orders each task by where the ones before it really went; without it the scheduler gives
    ``schedule`` the queue's ready tasks as one batch."""

    def start(self, hosts: Sequence[Host]) -> EngineRun: ...


# ---------------------------------------------------------------------------------- queues


class Queue(Protocol):
    """Which pending task goes next (see queues.py; `FifoQueue` is the simplest).

    ``add`` / ``remove`` (by id; unknown ids are ignored) keep the pending tasks; ``ready(now)`` lists the tasks to
    try now, in service order (tasks not ready yet left out); ``on_assigned`` is called when a task was launched
    (it leaves the queue), ``on_finished`` when a task ended (its usage goes); ``len`` counts pending tasks, ready
    or not. It never reads a clock: every call that depends on time takes ``now``.
    Optional capabilities: `PlanningQueue`, `TimedQueue`, `FairShareQueue`.
    """

    def add(self, task: TaskRequest) -> None: ...
    def remove(self, task_id: str) -> None: ...
    def ready(self, now: float) -> list[TaskRequest]: ...
    def on_assigned(self, task: TaskRequest) -> None: ...
    def on_finished(self, task: TaskRequest) -> None: ...
    def __len__(self) -> int: ...


class Plan(Protocol):
    """A pass over the ready tasks in service order, told which ones were placed: ``assign(task)`` notes a
    placement inside the pass only (the queue itself changes when the scheduler calls ``on_assigned``), so that
    the next task yielded follows from where the previous ones went. Each ready task is yielded at most once."""

    def __iter__(self) -> Iterator[TaskRequest]: ...
    def __next__(self) -> TaskRequest: ...
    def assign(self, task: TaskRequest) -> None: ...


@runtime_checkable
class PlanningQueue(Protocol):
    """Optional capability of a `Queue`: ``plan(now)`` opens a `Plan`. Without it (or without a `SteppedEngine`) a
    run places ``ready(now)`` as one batch."""

    def plan(self, now: float) -> Plan: ...


@runtime_checkable
class TimedQueue(Protocol):
    """Optional capability of a `Queue`: ``next_ready_at(now)`` is when the earliest task not ready at ``now``
    becomes ready (None: there is none), so that the scheduler wakes exactly then. Without it the scheduler finds
    delayed tasks at its next regular wake-up."""

    def next_ready_at(self, now: float) -> float | None: ...


@runtime_checkable
class FairShareQueue(Protocol):
    """Optional capability of a `Queue`: ``set_total(totals)`` takes the cluster's resources (per name, ``ports``
    a count) before every run, the denominators of dominant shares. Without it the scheduler gives none."""

    def set_total(self, total: Mapping[str, float]) -> None: ...


# ---------------------------------------------------------------------------------- hosts that come and go


@runtime_checkable
class ClusterProvider(Protocol):
    """Where the autoscaler's hosts come from.

    * ``scale_up(group, count)`` starts `count` hosts of the group, each carrying the group attribute, and returns
      their hostnames as the agents will report them; it returns without waiting for them to attach. It may return
      an empty list when the names are not known in advance: the autoscaler then counts `count` anonymous hosts as
      starting until new hosts of the group show up (or its `launch_timeout` passes).
    * ``scale_down(group, hostnames)`` stops those hosts. The autoscaler only asks for hosts that it disabled first
      and found still idle afterwards. An exception means "not done": the hosts stay disabled and are tried again.
    """

    async def scale_up(self, group: str, count: int) -> list[str]: ...
    async def scale_down(self, group: str, hostnames: Sequence[str]) -> None: ...
