"""The narrow interface between the master and its allocator, after Mesos' allocator module.

The master reports facts (a framework subscribed, an agent attached, resources came back, an operator set a
quota) and asks for allocations; it never computes a share itself. Implementations must be pure: no I/O, time
only from the `now` arguments, deterministic for the same calls.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from scheduler_sdk.resources import Resources


@dataclass(frozen=True, slots=True)
class Allocation:
    framework_id: str
    role: str
    agent_id: str
    resources: Resources


@dataclass(frozen=True, slots=True)
class Quota:
    """Per role: `guarantee` is set aside for the role (satisfied first, with headroom held back for it);
    `limit` is never exceeded (None: no limit)."""

    guarantee: Resources = field(default_factory=Resources.empty)
    limit: Resources | None = None


@dataclass(frozen=True, slots=True)
class AttributeMatch:
    """One predicate on an agent attribute (text value): exactly one of `equals`, `in_`, `regex` is set."""

    attribute: str
    equals: str | None = None
    in_: tuple[str, ...] | None = None
    regex: str | None = None


@dataclass(frozen=True, slots=True)
class OfferConstraints:
    """The Mesos paper's two filter kinds, given at SUBSCRIBE: only agents whose attributes match every predicate
    ("only nodes from list L"), and only offers holding at least `min_resources` ("only nodes with at least R
    free"). Applied in the allocator, so unwanted offers are never made."""

    attributes: tuple[AttributeMatch, ...] = ()
    min_resources: Resources | None = None


@dataclass(frozen=True, slots=True)
class AllocatedTask:
    """A task the master tells `revocations()` about: what it holds of an allocation, under which role, since when
    (the allocator's view of a running task: nothing of what it runs).

    `non_revocable`: the framework labelled it so (honoured only up to its role's guarantee, see
    `Allocator.revocations`). `killing`: a kill is already on its way (a revocation, or the framework's own):
    its resources count as coming back, so nothing more is revoked for them."""

    framework_id: str
    task_id: str
    agent_id: str
    role: str
    resources: Resources
    started_at: float
    non_revocable: bool = False
    killing: bool = False


@dataclass(frozen=True, slots=True)
class Revocation:
    """Revocation's decision: kill task `task_id` of framework `framework_id` (it runs in `role`, which holds more
    than its share) so that `for_role`, below its guarantee or fair share, gets `resources` back."""

    framework_id: str
    task_id: str
    role: str
    for_role: str
    resources: Resources


class Allocator(ABC):
    # ----------------------------------------------------------------- frameworks
    @abstractmethod
    def add_framework(
        self,
        framework_id: str,
        roles: Iterable[str],
        used: Mapping[str, Resources],
        *,
        active: bool = True,
        gpu_aware: bool = False,
        constraints: OfferConstraints | None = None,
        min_allocatable: Mapping[str, Sequence[Resources]] | None = None,
    ) -> None:
        """A framework subscribed. `used` maps agent id to what its tasks already hold there (resources carry
        their reservation role; unreserved ones are charged to the framework's first role unless the master
        knows better through add_used). Only `gpu_aware` frameworks (GPU_RESOURCES) are offered GPU agents.
        `min_allocatable` overrides the minimum offer size per role."""

    @abstractmethod
    def update_framework(
        self,
        framework_id: str,
        roles: Iterable[str],
        *,
        gpu_aware: bool = False,
        constraints: OfferConstraints | None = None,
        min_allocatable: Mapping[str, Sequence[Resources]] | None = None,
    ) -> None: ...

    @abstractmethod
    def remove_framework(self, framework_id: str) -> None: ...

    @abstractmethod
    def activate_framework(self, framework_id: str) -> None: ...

    @abstractmethod
    def deactivate_framework(self, framework_id: str) -> None:
        """The framework disconnected: make it no offers until it is activated again."""

    @abstractmethod
    def suppress_offers(self, framework_id: str, roles: Iterable[str] | None = None) -> None: ...

    @abstractmethod
    def revive_offers(self, framework_id: str, roles: Iterable[str] | None = None) -> None:
        """Clear the framework's filters (for those roles) and lift its suppression."""

    # ----------------------------------------------------------------- agents
    @abstractmethod
    def add_agent(
        self,
        agent_id: str,
        total: Resources,
        used: Mapping[str, Resources],
        attributes: Mapping[str, str] | None = None,
    ) -> None:
        """An agent attached; `used` maps framework id to what its tasks hold there. `attributes` (text values)
        are what offer constraints match."""

    @abstractmethod
    def update_agent(self, agent_id: str, total: Resources) -> None:
        """The agent's total changed (e.g. a dynamic reservation moved resources to a role)."""

    @abstractmethod
    def remove_agent(self, agent_id: str) -> None: ...

    @abstractmethod
    def activate_agent(self, agent_id: str) -> None: ...

    @abstractmethod
    def deactivate_agent(self, agent_id: str) -> None: ...

    # ----------------------------------------------------------------- resources
    @abstractmethod
    def add_used(self, framework_id: str, agent_id: str, resources: Resources, role: str | None = None) -> None:
        """Tasks the master learned of (an agent re-attached) hold `resources` (charged to `role`)."""

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
        by a finished task). With `refuse_seconds` > 0, they are withheld from that framework (in `role`) for
        max(refuse_seconds, allocation interval). `role` is the role they were allocated to; None: any."""

    # ----------------------------------------------------------------- operator policy
    @abstractmethod
    def update_weights(self, weights: Mapping[str, float]) -> None:
        """Set the weights of these roles (others keep theirs; the default weight is 1)."""

    @abstractmethod
    def update_quota(self, role: str, quota: Quota | None) -> None:
        """Set (or, with None, remove) a role's quota."""

    # ----------------------------------------------------------------- decisions
    @abstractmethod
    def allocate(self, now: float) -> list[Allocation]:
        """Run one allocation cycle; what it returns is allocated until recovered."""

    def allocation_pieces(self, now: float) -> Iterator[list[Allocation]]:
        """One allocation cycle in pieces, so that a large one need not hold the caller's event loop: each
        yielded list is allocated (booked) when it is yielded; between pieces the caller may make any other call,
        and the rest of the cycle works from the state as it is then. The default is one piece, `allocate`."""
        yield self.allocate(now)

    @abstractmethod
    def revocations(self, now: float, tasks: Iterable[AllocatedTask]) -> list[Revocation]:
        """Which of the running `tasks` to kill so that starved roles get their guarantee (or, with a fair
        policy, their fair share): tasks of roles above their share, least recently started first, never taking
        a role below its share. The master kills exactly these. `tasks` may be a generator: it is read only
        when some role is starved. Empty unless revocation is enabled."""

    def check_reservation(self, resources: Resources, *, allocated_role: str | None = None) -> None:
        """Raise ValueError when reserving `resources` (each for the role it names) would take a role or one of
        its ancestors over its quota limit. `allocated_role`: the resources are already allocated to that role
        (RESERVE operations in an ACCEPT: give all of the accept's reservations so far), so they already count
        toward it and its ancestors. The default checks nothing."""
        return None

    @abstractmethod
    def allocated(self, framework_id: str) -> Resources:
        """Everything the framework holds (tasks and outstanding offers), over all agents."""

    def metrics(self) -> dict[str, float]:
        """Figures for the master's metrics (e.g. allocation_run_ms, allocation_runs)."""
        return {}
