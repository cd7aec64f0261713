"""The narrow interface between the master and its allocator, after Mesos' allocator module.

The master reports facts (a framework subscribed, an agent attached, resources came back) and asks for
allocations; it never computes a share itself. Implementations must be pure: no I/O, time only from `now`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from scheduler_sdk.resources import Resources


@dataclass(frozen=True, slots=True)
class Allocation:
    framework_id: str
    role: str
    agent_id: str
    resources: Resources


class Allocator(ABC):
    @abstractmethod
    def add_framework(
        self,
        framework_id: str,
        roles: Iterable[str],
        used: Mapping[str, Resources],
        *,
        active: bool = True,
        gpu_aware: bool = False,
    ) -> None:
        """A framework subscribed; `used` maps agent id to what its tasks already hold there. Only `gpu_aware`
        frameworks (capability GPU_RESOURCES) are offered agents that have GPUs."""

    @abstractmethod
    def remove_framework(self, framework_id: str) -> None: ...

    @abstractmethod
    def activate_framework(self, framework_id: str) -> None: ...

    @abstractmethod
    def deactivate_framework(self, framework_id: str) -> None:
        """The framework disconnected: make it no offers until it is activated again."""

    @abstractmethod
    def add_agent(self, agent_id: str, total: Resources, used: Mapping[str, Resources]) -> None:
        """An agent attached; `used` maps framework id to what its tasks hold there."""

    @abstractmethod
    def remove_agent(self, agent_id: str) -> None: ...

    @abstractmethod
    def activate_agent(self, agent_id: str) -> None: ...

    @abstractmethod
    def deactivate_agent(self, agent_id: str) -> None: ...

    @abstractmethod
    def add_used(self, framework_id: str, agent_id: str, resources: Resources) -> None:
        """Tasks the master learned of (an agent re-attached) hold `resources`."""

    @abstractmethod
    def recover_resources(
        self,
        framework_id: str,
        agent_id: str,
        resources: Resources,
        refuse_seconds: float | None,
        now: float,
        role: str | None = None,
    ) -> None:
        """Resources allocated to the framework came back (declined, unused by an accept, rescinded, or freed
        by a finished task). With `refuse_seconds` > 0, they are withheld from that framework for that time.
        `role` is the role they were allocated to (an offer's allocation role); None: any of its roles."""

    @abstractmethod
    def suppress_offers(self, framework_id: str, roles: Iterable[str] | None = None) -> None: ...

    @abstractmethod
    def revive_offers(self, framework_id: str, roles: Iterable[str] | None = None) -> None:
        """Clear the framework's filters and lift its suppression."""

    @abstractmethod
    def allocate(self, now: float) -> list[Allocation]:
        """Run one allocation cycle; what it returns is allocated until recovered."""

    @abstractmethod
    def allocated(self, framework_id: str) -> Resources:
        """Everything the framework holds (tasks and outstanding offers), over all agents."""
