from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiomesos.v1 import resources_pb2 as pb
from mesos_master.registry.operations import Operation


@dataclass
class RegistryState:
    agents: dict[str, pb.AgentInfo] = field(default_factory=dict)
    frameworks: dict[str, pb.FrameworkInfo] = field(default_factory=dict)
    removed_frameworks: set[str] = field(default_factory=set)
    weights: dict[str, float] = field(default_factory=dict)
    quotas: dict[str, tuple[list[pb.Resource], list[pb.Resource] | None]] = field(default_factory=dict)
    reservations: dict[str, list[pb.Resource]] = field(default_factory=dict)  # agent id -> dynamic reservations
    unreachable: dict[str, float] = field(default_factory=dict)  # agent id -> when it was marked unreachable


class RegistryError(RuntimeError):
    """The registry cannot do what was asked (a broken file, an unknown operation, a store that is down)."""


class FencedError(RegistryError):
    """This master no longer leads: another one was elected, so nothing was written. It must step down."""


class Registry(ABC):
    """What must survive a master restart (and a failover). A registry is three calls: load what was kept, apply
    a batch of operations, close. `apply` is durable when it returns, and the master sends nothing that depends
    on a write before the write's batch is applied (as Mesos' registrar). The shell applies one batch per outbox
    drain, so a busy master writes in few round trips."""

    @abstractmethod
    async def load(self) -> RegistryState: ...

    @abstractmethod
    async def apply(self, operations: Sequence[Operation]) -> None:
        """Carry out these writes (see `mesos_master.registry.operations`), in order; atomically where the store
        allows. Raises RegistryError (FencedError: this master was deposed; nothing of the batch was written)."""

    @abstractmethod
    async def close(self) -> None: ...
