"""The registry keeps what must survive a master restart: admitted agents and subscribed frameworks, weights,
quotas and dynamic reservations. The master writes to it only through the typed operations of `operations`."""

from mesos_master.registry.base import FencedError, Registry, RegistryError, RegistryState
from mesos_master.registry.operations import (
    AdmitAgent,
    MarkAgentGone,
    MarkAgentUnreachable,
    Operation,
    PutFramework,
    RemoveAgent,
    RemoveDrain,
    RemoveFramework,
    RemoveQuota,
    UpdateDrain,
    UpdateQuota,
    UpdateReservations,
    UpdateWeight,
)
from mesos_master.registry.sqlite import SQLiteRegistry

__all__ = [
    "AdmitAgent",
    "FencedError",
    "MarkAgentGone",
    "MarkAgentUnreachable",
    "Operation",
    "PutFramework",
    "Registry",
    "RegistryError",
    "RegistryState",
    "RemoveAgent",
    "RemoveDrain",
    "RemoveFramework",
    "RemoveQuota",
    "SQLiteRegistry",
    "UpdateDrain",
    "UpdateQuota",
    "UpdateReservations",
    "UpdateWeight",
]
