from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from aiomesos.v1 import resources_pb2 as pb
from mesos_master.registry.operations import Operation, UpdateDrain


@dataclass
class RegistryState:
    agents: dict[str, pb.AgentInfo] = field(default_factory=dict)
    frameworks: dict[str, pb.FrameworkInfo] = field(default_factory=dict)
    removed_frameworks: set[str] = field(default_factory=set)
    weights: dict[str, float] = field(default_factory=dict)
    quotas: dict[str, tuple[list[pb.Resource], list[pb.Resource] | None]] = field(default_factory=dict)
    reservations: dict[str, list[pb.Resource]] = field(default_factory=dict)  # agent id -> dynamic reservations
    unreachable: dict[str, float] = field(default_factory=dict)  # agent id -> when it was marked unreachable
    drains: dict[str, UpdateDrain] = field(default_factory=dict)  # agent id -> its drain (as last written)
    gone: dict[str, float] = field(default_factory=dict)  # agent id -> when it was marked gone (never to return)


class Registry(ABC):
    """What must survive a master restart. `apply` is synchronous and durable when it returns: the master persists
    before it answers. A registry is three calls: load what was kept, apply one operation, close."""

    @abstractmethod
    def load(self) -> RegistryState: ...

    @abstractmethod
    def apply(self, operation: Operation) -> None:
        """Carry out one write (see `mesos_master.registry.operations`)."""

    @abstractmethod
    def close(self) -> None: ...
