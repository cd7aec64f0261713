from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from aiomesos.v1 import resources_pb2 as pb


@dataclass
class RegistryState:
    agents: dict[str, pb.AgentInfo] = field(default_factory=dict)
    frameworks: dict[str, pb.FrameworkInfo] = field(default_factory=dict)
    removed_frameworks: set[str] = field(default_factory=set)


class Registry(ABC):
    """Writes are synchronous and durable when they return: the master persists before it answers."""

    @abstractmethod
    def load(self) -> RegistryState: ...

    @abstractmethod
    def admit_agent(self, info: pb.AgentInfo) -> None: ...

    @abstractmethod
    def remove_agent(self, agent_id: str) -> None: ...

    @abstractmethod
    def put_framework(self, info: pb.FrameworkInfo) -> None: ...

    @abstractmethod
    def remove_framework(self, framework_id: str) -> None:
        """The framework was torn down: it may never subscribe with this id again."""

    @abstractmethod
    def close(self) -> None: ...
