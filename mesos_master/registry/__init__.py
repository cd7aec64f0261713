"""The registry keeps what must survive a master restart: admitted agents and subscribed frameworks, weights,
quotas and dynamic reservations. The master writes to it only through the typed operations of `operations`."""

from mesos_master.registry.base import FencedError, Registry, RegistryError, RegistryState
from mesos_master.registry.operations import (
    AdmitAgent,
    MarkAgentUnreachable,
    Operation,
    PutFramework,
    RemoveAgent,
    RemoveFramework,
    RemoveQuota,
    UpdateQuota,
    UpdateReservations,
    UpdateWeight,
)
from mesos_master.registry.sqlite import SQLiteRegistry

__all__ = [
    "AdmitAgent",
    "FencedError",
    "MarkAgentUnreachable",
    "Operation",
    "PutFramework",
    "Registry",
    "RegistryError",
    "RegistryState",
    "RemoveAgent",
    "RemoveFramework",
    "RemoveQuota",
    "SQLiteRegistry",
    "UpdateQuota",
    "UpdateReservations",
    "UpdateWeight",
]
