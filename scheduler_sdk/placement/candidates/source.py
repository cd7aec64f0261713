"""The interface every candidate source implements (see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from scheduler_sdk.placement.extension import Constraint
from scheduler_sdk.placement.model import TaskRequest
from scheduler_sdk.placement.run_state import HostState

Candidate = tuple["float | None", int]
"""``(fitness, rank)``: a host to examine, by rank, with its (clamped) fitness for the task when the source knows
it already; None lets the engine compute it once the host passed the filter."""

FitFn = Callable[[TaskRequest, HostState], float]
"""The engine's fitness of a task on a host, clamped into [0, 1]."""


class CandidateSource(Protocol):
    """Gives, per task, the hosts to examine in the engine's *examination order* (engine.py).

    * ``candidates(task, hard)``: the hosts, as `Candidate`s. A source may leave out hosts that cannot take the
      task (no room); it never leaves out one that can, unless no such host could win (``bounded``). The engine
      filters every candidate itself, so a source need not.
    * ``bounded``: the candidates come best fitness first, equal fitness by rank, each with its fitness: the
      engine may stop walking as soon as no later candidate can beat the best so far.
    * ``examined_up_front``: how many hosts the source examines per task before its first candidate (counted in
      `SchedulingResult.hosts_examined`).
    * ``assigned(host)``: a task was just placed on ``host`` (after `HostState.take` and `RunState.note`).
    """

    name: str
    bounded: bool
    examined_up_front: int

    def candidates(self, task: TaskRequest, hard: tuple[Constraint, ...]) -> Iterator[Candidate]: ...
    def assigned(self, host: HostState) -> None: ...
