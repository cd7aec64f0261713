"""The placement engine's vocabulary: what a task asks for, what a host has, and what a run decides.

All values are plain, immutable data so that a scheduling run is a pure function of its inputs and can be
replayed: `PlacementEngine.schedule(tasks, hosts)` → `SchedulingResult`. What plugs into a run (constraints,
fitness calculators, engines, queues, providers) is declared in extension.py, over these types.

Units: cpus in cores, mem and disk in MB, network in Mbps, ports as a count (requests) or inclusive ranges
(hosts). Any other scalar (e.g. "gpus") goes in `scalars`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Range = tuple[int, int]

BASE_RESOURCES = ("cpus", "mem", "disk", "network")
"""The resources every request, offer slice and running task names as a field (each a float); ``ports`` is apart
(a count on requests and running tasks, ranges on offers), any other scalar goes in ``scalars``."""


@dataclass(frozen=True, slots=True)
class ConstraintResult:
    ok: bool  # for a hard constraint: may the task go there at all
    score: float = 1.0  # for a soft constraint: 0.0 (worst) .. 1.0 (best)
    reason: str = ""  # why not (or why a low score), for failure reports


@dataclass(frozen=True, slots=True)
class TaskRequest:
    id: str
    cpus: float = 0.0
    mem: float = 0.0
    disk: float = 0.0
    network: float = 0.0  # Mbps
    ports: int = 0  # how many ports
    scalars: Mapping[str, float] = field(default_factory=dict)  # any other named scalar, e.g. {"gpus": 1}
    group: str = ""  # co-tasks share a group (constraints count them)
    # Each a `Constraint` or a plain function ``fn(task, host, ctx)`` (see extension.py). Typed as object because
    # the constraint protocol is declared over this module's types (extension.py imports model.py, not the other
    # way round); the engine checks each one when it places the task.
    hard_constraints: tuple[object, ...] = ()
    soft_constraints: tuple[object, ...] = ()
    # queueing (see queues.py); the engine itself ignores these
    tier: int = 0
    bucket: str = ""
    ready_at: float = 0.0
    payload: Any = None  # the caller's (e.g. the command to run); never read by the engine

    def __post_init__(self) -> None:
        """Bad requests fail here, with the task and the field named: amounts are finite numbers >= 0."""
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"task id must be a non-empty string, not {self.id!r}")
        for name in BASE_RESOURCES:
            _check_amount(self.id, name, getattr(self, name))
        if isinstance(self.ports, bool) or not isinstance(self.ports, int) or self.ports < 0:
            raise ValueError(f"task {self.id}: ports must be an int >= 0 (how many ports), not {self.ports!r}")
        for name, amount in self.scalars.items():
            _check_amount(self.id, f"scalars[{name!r}]", amount)
        if isinstance(self.tier, bool) or not isinstance(self.tier, int):
            raise ValueError(f"task {self.id}: tier must be an int, not {self.tier!r}")
        if not isinstance(self.ready_at, int | float) or math.isnan(self.ready_at):
            raise ValueError(f"task {self.id}: ready_at must be a number, not {self.ready_at!r}")


def _check_amount(task_id: str, name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"task {task_id}: {name} must be a finite number >= 0, not {value!r}")


@dataclass(frozen=True, slots=True)
class OfferSlice:
    """One offer that makes up part of a host's lease."""

    offer_id: str
    cpus: float = 0.0
    mem: float = 0.0
    disk: float = 0.0
    network: float = 0.0
    ports: tuple[Range, ...] = ()
    scalars: Mapping[str, float] = field(default_factory=dict)
    received_at: float = 0.0


@dataclass(frozen=True, slots=True)
class RunningTask:
    """A task already on the host (from earlier runs or status updates): what it uses and its group."""

    id: str
    group: str = ""
    cpus: float = 0.0
    mem: float = 0.0
    disk: float = 0.0
    network: float = 0.0
    ports: int = 0
    scalars: Mapping[str, float] = field(default_factory=dict)
    exclusive: bool = False  # placed under a hard ExclusiveHost constraint: nothing else may join it


@dataclass(frozen=True, slots=True)
class Host:
    """A host as a run sees it: its lease (all current offers on it, combined), its attributes, what runs there.

    `total_*` is the host's capacity, for fitness ("use after placing"): when left at None it is taken as what is
    offered plus what the running tasks use.
    """

    hostname: str
    agent_id: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)
    offers: tuple[OfferSlice, ...] = ()
    running: tuple[RunningTask, ...] = ()
    total_cpus: float | None = None
    total_mem: float | None = None
    total_disk: float | None = None
    total_network: float | None = None
    total_scalars: Mapping[str, float] | None = None
    disabled: bool = False  # no new tasks (e.g. being drained by the autoscaler)


@dataclass(frozen=True, slots=True)
class Assignment:
    task: TaskRequest
    hostname: str
    agent_id: str
    offer_ids: tuple[str, ...]  # the offers of the host's lease this run consumes (all of them: Mesos offers are
    # accepted whole; what is left returns with the accept)
    ports: tuple[int, ...] = ()
    fitness: float = 0.0


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a task could not go on one host."""

    hostname: str
    kind: str  # "resource" | "constraint" | "disabled"
    name: str  # the resource ("cpus") or the constraint's name
    detail: str = ""  # "needs 4, has 2", or the constraint's reason


@dataclass(frozen=True, slots=True)
class SchedulingResult:
    assignments: tuple[Assignment, ...]
    failures: Mapping[str, tuple[Failure, ...]]  # task id -> why it could not go on each host examined
    hosts_examined: int = 0
    elapsed_ms: float = 0.0

    def by_host(self) -> dict[str, list[Assignment]]:
        out: dict[str, list[Assignment]] = {}
        for a in self.assignments:
            out.setdefault(a.hostname, []).append(a)
        return out
