"""The built-in fitness calculators (the `FitnessCalculator` contract is in extension.py): how well a task fits
on a host, as a number in [0, 1] (1 is best).

A calculator is anything callable as ``calc(task, host_view) -> float``; a ``name`` is used in reports (plain
functions get their ``__name__``). The engine clamps every value into [0, 1] (NaN counts as 0).

- `BinPacking(resource)`: the host's use of the resource *after* placing the task, ``used_after / total``. Fuller
  hosts score higher, so tasks pack onto as few hosts as possible.
- `Spread(resource)`: the opposite: the host's free share after placing the task, lifted onto
  ``[SPREAD_FLOOR, 1]``:  ``SPREAD_FLOOR + (1 - SPREAD_FLOOR) * free_after / total``. A task that exactly fills a host
  scores ``SPREAD_FLOOR`` (not 0, unlike Fenzo where a zero fitness means "does not fit"): the host stays a valid
  choice, ranked below every host that keeps room to spare. Feasibility is decided by the engine, never by fitness.
- `Weighted({calc: weight, ...})`: a weighted mean; any positive weights, normalised by their sum.

For both built-ins a host with no capacity of the resource (total <= 0) scores 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from scheduler_sdk.placement.extension import FitnessCalculator, FitnessLike, HostView, ShapeOnlyFitness
from scheduler_sdk.placement.model import BASE_RESOURCES, TaskRequest

__all__ = [
    "SPREAD_FLOOR",
    "BinPacking",
    "FitnessCalculator",
    "FitnessLike",
    "Spread",
    "Weighted",
    "as_fitness",
    "by_shape",
    "clamp01",
    "fitness_name",
    "task_need",
]

SPREAD_FLOOR = 0.01
"""The score `Spread` gives a host the task would exactly fill (or overfill)."""

_TASK_FIELDS = (*BASE_RESOURCES, "ports")


def clamp01(x: float) -> float:
    """Clamp into [0, 1]; NaN becomes 0."""
    if not x > 0.0:  # also catches NaN
        return 0.0
    return 1.0 if x > 1.0 else x


def task_need(task: TaskRequest, resource: str) -> float:
    """What the task asks of a resource: cpus, mem, disk, network, ports (a count) or any named scalar."""
    if resource in _TASK_FIELDS:
        return float(getattr(task, resource))
    return float(task.scalars.get(resource, 0.0))


@dataclass(frozen=True, slots=True)
class BinPacking:
    """Prefer the host that is fullest after placing the task: ``(total - free + need) / total``."""

    resource: str = "cpus"

    @property
    def name(self) -> str:
        return f"binpacking({self.resource})"

    def __call__(self, task: TaskRequest, host: HostView, /) -> float:
        total = host.total(self.resource)
        if not total > 0.0:
            return 0.0
        used_after = total - host.free(self.resource) + task_need(task, self.resource)
        return clamp01(used_after / total)


@dataclass(frozen=True, slots=True)
class Spread:
    """Prefer the host that is emptiest after placing the task; an exact fill scores `SPREAD_FLOOR`, not 0."""

    resource: str = "cpus"

    @property
    def name(self) -> str:
        return f"spread({self.resource})"

    def __call__(self, task: TaskRequest, host: HostView, /) -> float:
        total = host.total(self.resource)
        if not total > 0.0:
            return 0.0
        free_after = host.free(self.resource) - task_need(task, self.resource)
        return SPREAD_FLOOR + (1.0 - SPREAD_FLOOR) * clamp01(free_after / total)


class _FunctionFitness:
    """A plain function used as a calculator."""

    __slots__ = ("fn", "name")

    def __init__(self, fn: Callable[[TaskRequest, HostView], float], name: str) -> None:
        self.fn = fn
        self.name = name

    def __call__(self, task: TaskRequest, host: HostView, /) -> float:
        return float(self.fn(task, host))

    def __repr__(self) -> str:
        return f"fitness({self.name})"


def as_fitness(calc: FitnessLike) -> FitnessCalculator:
    """Accept a calculator as is, or wrap a plain function ``(task, host) -> float`` into one."""
    if not callable(calc):
        raise TypeError(f"a fitness calculator must be callable as (task, host) -> float, got {calc!r}")
    if isinstance(getattr(calc, "name", None), str):
        return calc  # type: ignore[return-value]
    return _FunctionFitness(calc, getattr(calc, "__name__", type(calc).__name__))


def fitness_name(calc: FitnessLike) -> str:
    return as_fitness(calc).name


class Weighted:
    """A weighted mean of calculators. Weights are any positive numbers, normalised by their sum.

    ``Weighted({BinPacking("cpus"): 1, BinPacking("mem"): 1})`` packs by cpu and memory equally. Pairs are accepted
    too (``Weighted([(calc, 2), (other, 1)])``) for calculators that are not hashable.
    """

    __slots__ = ("name", "parts")

    def __init__(self, weights: Mapping[Any, float] | Iterable[tuple[Any, float]]) -> None:
        # (keys typed Any: Mapping is invariant in its key, so dict[BinPacking, int] would not pass as
        # Mapping[FitnessLike, float]; every key goes through `as_fitness`, which rejects what is not callable)
        pairs = list(weights.items()) if isinstance(weights, Mapping) else list(weights)
        if not pairs:
            raise ValueError("Weighted needs at least one calculator")
        for calc, weight in pairs:
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                raise ValueError(f"Weighted: the weight of {fitness_name(calc)} must be a number, got {weight!r}")
            if not (weight > 0 and math.isfinite(weight)):
                raise ValueError(f"Weighted: the weight of {fitness_name(calc)} must be positive, got {weight!r}")
        total = float(sum(w for _, w in pairs))
        self.parts: tuple[tuple[FitnessCalculator, float], ...] = tuple(
            (as_fitness(calc), float(w) / total) for calc, w in pairs
        )
        self.name = "weighted(" + ", ".join(f"{c.name}*{w:.3g}" for c, w in self.parts) + ")"

    def __call__(self, task: TaskRequest, host: HostView, /) -> float:
        return clamp01(sum(w * clamp01(c(task, host)) for c, w in self.parts))

    def __repr__(self) -> str:
        return self.name


def by_shape(calc: object) -> bool:
    """Whether a fitness calculator depends on the task's resource amounts only (not its id, group or other
    fields), given the host: `BinPacking`, `Spread`, a `Weighted` of such, or any `ShapeOnlyFitness` whose
    ``by_shape`` is True. The engine may then rank hosts once per task shape."""
    if type(calc) is BinPacking or type(calc) is Spread:
        return True
    if isinstance(calc, Weighted):
        return all(by_shape(c) for c, _ in calc.parts)
    return isinstance(calc, ShapeOnlyFitness) and calc.by_shape is True
