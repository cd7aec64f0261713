"""The registry keeps what must survive a master restart: admitted agents and subscribed frameworks."""

from mesos_master.registry.base import Registry, RegistryState
from mesos_master.registry.sqlite import SQLiteRegistry

__all__ = ["Registry", "RegistryState", "SQLiteRegistry"]
