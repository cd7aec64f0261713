from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from aiomesos.v1 import resources_pb2 as pb


@dataclass
class RegistryState:
    agents: dict[str, pb.AgentInfo] = field(default_factory=dict)
    frameworks: dict[str, pb.FrameworkInfo] = field(default_factory=dict)
    removed_frameworks: set[str] = field(default_factory=set)
    weights: dict[str, float] = field(default_factory=dict)
    quotas: dict[str, tuple[list[pb.Resource], list[pb.Resource] | None]] = field(default_factory=dict)
    reservations: dict[str, list[pb.Resource]] = field(default_factory=dict)  # agent id -> dynamic reservations
    unreachable: dict[str, float] = field(default_factory=dict)  # agent id -> when it was marked unreachable


class Registry(ABC):
    """Writes are synchronous and durable when they return: the master persists before it answers."""

    @abstractmethod
    def load(self) -> RegistryState: ...

    @abstractmethod
    def admit_agent(self, info: pb.AgentInfo) -> None: ...

    @abstractmethod
    def remove_agent(self, agent_id: str) -> None: ...

    @abstractmethod
    def mark_unreachable(self, agent_since: tuple[str, float]) -> None:
        """An admitted agent is unreachable since then; admit_agent (it came back) or remove_agent ends that."""

    @abstractmethod
    def put_framework(self, info: pb.FrameworkInfo) -> None: ...

    @abstractmethod
    def remove_framework(self, framework_id: str) -> None:
        """The framework was torn down: it may never subscribe with this id again."""

    @abstractmethod
    def set_weight(self, role_weight: tuple[str, float]) -> None: ...

    @abstractmethod
    def set_quota(self, quota: tuple[str, list[pb.Resource], list[pb.Resource] | None]) -> None:
        """(role, guarantee, limit); an empty guarantee and no limit removes the role's quota."""

    @abstractmethod
    def set_reservations(self, agent_reservations: tuple[str, list[pb.Resource]]) -> None:
        """(agent id, every dynamic reservation on it); an empty list removes them."""

    @abstractmethod
    def close(self) -> None: ...
