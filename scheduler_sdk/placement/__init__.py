"""A placement engine of Fenzo's class: pick which offered resources run which tasks.

Constraints filter hosts, fitness calculators rank them, "good enough" and a bound on hosts examined limit the
search, and the best host wins (engine.py, over the candidate sources of candidates/). Queues (queues.py) decide
which tasks go first; the autoscaler (autoscale.py) grows and shrinks host groups through a provider
(providers.py; real local agent processes: `scheduler_sdk.local_provider`); `PlacementScheduler` (service.py)
drives it all from offers. Every extension point (constraints, calculators, engines, queues, providers) is declared
in extension.py.
"""

from scheduler_sdk.placement.autoscale import Action, Autoscaler, AutoscaleRule
from scheduler_sdk.placement.constraints import (
    AttributeValue,
    BalancedByAttribute,
    Custom,
    ExclusiveHost,
    LifecycleAffinity,
    UniqueByAttribute,
)
from scheduler_sdk.placement.engine import PlacementEngine, PlacementRun
from scheduler_sdk.placement.extension import (
    ClusterProvider,
    Constraint,
    Engine,
    HostView,
    IndexedRunContext,
    Queue,
    RunContext,
)
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
from scheduler_sdk.placement.providers import CallbackProvider, ProviderPerGroup
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
    "Constraint",
    "ConstraintResult",
    "Custom",
    "Engine",
    "ExclusiveHost",
    "Failure",
    "FitnessCalculator",
    "Host",
    "HostView",
    "IndexedRunContext",
    "LifecycleAffinity",
    "OfferSlice",
    "PlacementEngine",
    "PlacementRun",
    "ProviderPerGroup",
    "Queue",
    "RunContext",
    "RunningTask",
    "SchedulingResult",
    "Spread",
    "TaskQueue",
    "TaskRequest",
    "UniqueByAttribute",
    "Weighted",
]
