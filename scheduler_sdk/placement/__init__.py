"""A placement engine of Fenzo's class: pick which offered resources run which tasks.

Constraints filter hosts, fitness calculators rank them, "good enough" and a bound on hosts examined limit the
search, and the best host wins (see engine.py). Queues (queues.py) decide which tasks go first; the autoscaler
(autoscale.py) grows and shrinks host groups; `PlacementScheduler` (service.py) drives it all from offers.
"""

from scheduler_sdk.placement.autoscale import Action, Autoscaler, AutoscaleRule
from scheduler_sdk.placement.constraints import (
    AttributeValue,
    BalancedByAttribute,
    Custom,
    ExclusiveHost,
    UniqueByAttribute,
)
from scheduler_sdk.placement.engine import PlacementEngine, PlacementRun
from scheduler_sdk.placement.fitness import BinPacking, FitnessCalculator, Spread, Weighted
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
from scheduler_sdk.placement.providers import CallbackProvider, ClusterProvider, LocalAgentProvider, ProviderPerGroup
from scheduler_sdk.placement.queues import TaskQueue

__all__ = [
    "Action",
    "Assignment",
    "AttributeValue",
    "AutoscaleRule",
    "Autoscaler",
    "BalancedByAttribute",
    "BinPacking",
    "CallbackProvider",
    "ClusterProvider",
    "ConstraintResult",
    "Custom",
    "ExclusiveHost",
    "Failure",
    "FitnessCalculator",
    "Host",
    "LocalAgentProvider",
    "OfferSlice",
    "PlacementEngine",
    "PlacementRun",
    "ProviderPerGroup",
    "RunningTask",
    "SchedulingResult",
    "Spread",
    "TaskQueue",
    "TaskRequest",
    "UniqueByAttribute",
    "Weighted",
]
