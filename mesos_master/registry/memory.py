"""A registry that keeps nothing: for a core run in-process (tests of pure-ish wiring, benchmarks), where what
survives a restart is not the question."""

from __future__ import annotations

from collections.abc import Sequence

from mesos_master.registry.base import Registry, RegistryState
from mesos_master.registry.operations import Operation


class MemoryRegistry(Registry):
    async def load(self) -> RegistryState:
        return RegistryState()

    async def apply(self, operations: Sequence[Operation]) -> None:
        pass

    async def close(self) -> None:
        pass
