"""The aiomesos scheduler SDK: what framework authors and operators import.

    from scheduler_sdk import TERMINAL_STATES, Resources, Scheduler, SchedulerDriver, task_info

The names a framework needs are here (the driver's are imported on first use, so that `import scheduler_sdk.x`
stays cheap); each also lives in its module (scheduler_sdk.driver, .offers, .resources, .states).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from scheduler_sdk.resources import Resources, ResourcesError

if TYPE_CHECKING:
    from scheduler_sdk.driver import DriverError, Scheduler, SchedulerDriver
    from scheduler_sdk.offers import launch_op, reserve_op, task_info, unreserve_op
    from scheduler_sdk.states import TERMINAL_STATES, is_terminal, state_name

_LAZY = {
    "DriverError": "scheduler_sdk.driver",
    "Scheduler": "scheduler_sdk.driver",
    "SchedulerDriver": "scheduler_sdk.driver",
    "launch_op": "scheduler_sdk.offers",
    "reserve_op": "scheduler_sdk.offers",
    "task_info": "scheduler_sdk.offers",
    "unreserve_op": "scheduler_sdk.offers",
    "TERMINAL_STATES": "scheduler_sdk.states",
    "is_terminal": "scheduler_sdk.states",
    "state_name": "scheduler_sdk.states",
}

__all__ = [
    "TERMINAL_STATES",
    "DriverError",
    "Resources",
    "ResourcesError",
    "Scheduler",
    "SchedulerDriver",
    "is_terminal",
    "launch_op",
    "reserve_op",
    "state_name",
    "task_info",
    "unreserve_op",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'scheduler_sdk' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
