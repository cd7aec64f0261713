"""The filter of a run: may a task go on a host now, and if not, the first reason why.

A host is out for a task when it is disabled, has no offer, is held by an exclusive task, lacks a resource
(checked in the order cpus, mem, disk, network, ports, then named scalars by name), or fails a hard constraint
(in the order given). `fits` is the boolean twin of `why_not`; `has_room` is `fits` without the constraints.
"""

from __future__ import annotations

import math
from functools import lru_cache

from scheduler_sdk.placement.extension import Constraint
from scheduler_sdk.placement.model import Failure, TaskRequest
from scheduler_sdk.placement.run_state import HostState, RunState

EPS = 1e-9
"""Tolerance when comparing a task's ask with what is free (floating-point sums of offers)."""

Shape = tuple[object, ...]
"""A task's resource amounts (cpus, mem, disk, network, ports, sorted scalars): what a calculator that depends on
the shape only, and the resource checks, see of it."""


def shape_of(task: TaskRequest) -> Shape:
    scalars = tuple(sorted(task.scalars.items())) if task.scalars else ()
    return (task.cpus, task.mem, task.disk, task.network, task.ports, scalars)


def has_room(task: TaskRequest, h: HostState) -> bool:
    """The host takes tasks and has the resources for this one."""
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


def fits(task: TaskRequest, h: HostState, hard: tuple[Constraint, ...], run: RunState) -> bool:
    """Whether the task may go on the host now."""
    return has_room(task, h) and all(c.evaluate(task, h, run).ok for c in hard)


def _fmt(x: float) -> str:
    if math.isfinite(x) and x == int(x):
        return str(int(x))
    return f"{x:.6g}"


@lru_cache(maxsize=4096)
def _short(need: float, has: float) -> str:
    """A resource failure's detail, e.g. "needs 4, has 2" (the same few pairs come up again and again)."""
    return f"needs {_fmt(need)}, has {_fmt(has)}"


def why_not(task: TaskRequest, h: HostState, hard: tuple[Constraint, ...], run: RunState) -> Failure | None:
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


class FailureReport:
    """Why a task fits on no host: one `Failure` per host, hostname order.

    Without hard constraints a host's reason depends only on the task's shape and the host's state, so the list is
    kept per shape and only the hosts assigned to since (the run's change log) are looked at again.
    """

    __slots__ = ("_reasons", "_seen", "run")

    def __init__(self, run: RunState) -> None:
        self.run = run
        self._reasons: dict[Shape, list[Failure | None]] = {}
        self._seen: dict[Shape, int] = {}

    def failures(self, task: TaskRequest, hard: tuple[Constraint, ...]) -> tuple[Failure, ...]:
        run = self.run
        hosts = run.states()
        if hard:
            return tuple(f for h in hosts if (f := why_not(task, h, hard, run)) is not None)
        key = shape_of(task)
        log = run.change_log
        reasons = self._reasons.get(key)
        if reasons is None:
            reasons = self._reasons[key] = [why_not(task, h, hard, run) for h in hosts]
        else:
            for rank in log[self._seen[key] :]:
                reasons[rank] = why_not(task, hosts[rank], hard, run)
        self._seen[key] = len(log)
        return tuple(f for f in reasons if f is not None)
