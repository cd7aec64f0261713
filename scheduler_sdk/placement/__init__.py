"""A placement engine of Fenzo's class: pick which offered resources run which tasks.

Constraints filter hosts, fitness calculators rank them, "good enough" and a bound on hosts examined limit the
search, and the best host wins (see engine.py). Queues (queues.py) decide which tasks go first; the autoscaler
(autoscale.py) grows and shrinks host groups; `PlacementScheduler` (service.py) drives it all from offers.
"""

from scheduler_sdk.placement.model import (
    Assignment,
    ConstraintResult,
    Failure,
    Host,
    OfferSlice,
    RunningTask,
    SchedulingResult,
    TaskRequest,
)

__all__ = [
    "Assignment",
    "ConstraintResult",
    "Failure",
    "Host",
    "OfferSlice",
    "RunningTask",
    "SchedulingResult",
    "TaskRequest",
]
