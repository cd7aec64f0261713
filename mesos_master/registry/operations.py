"""Registry operations: each write the master makes to its registry, as one small value with its fields.

The core (`Master`) puts operations into its outbox; the shell applies them, in order, to the registry
(`Registry.apply`) before it sends anything, as Mesos' registrar applies its `RegistryOperation`s. Every field is a
plain value or a protobuf message, so an operation can be serialised as it is (a registry that keeps a log of
operations, or one behind etcd, stores them without knowing the master's records).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiomesos.v1 import resources_pb2 as rpb


@dataclass(frozen=True, slots=True)
class AdmitAgent:
    """An agent attached (first time or again): keep its latest info; it is no longer unreachable."""

    info: rpb.AgentInfo


@dataclass(frozen=True, slots=True)
class RemoveAgent:
    """The agent is forgotten (its unreachable mark and its drain with it)."""

    agent_id: str


@dataclass(frozen=True, slots=True)
class MarkAgentUnreachable:
    """An admitted agent is unreachable since `since`; AdmitAgent (it came back) or RemoveAgent ends that."""

    agent_id: str
    since: float


@dataclass(frozen=True, slots=True)
class PutFramework:
    """A framework subscribed or updated its info: keep its latest FrameworkInfo (which carries its id)."""

    info: rpb.FrameworkInfo


@dataclass(frozen=True, slots=True)
class RemoveFramework:
    """The framework was torn down: it may never subscribe with this id again."""

    framework_id: str


@dataclass(frozen=True, slots=True)
class UpdateWeight:
    """The role's weight is now `weight`."""

    role: str
    weight: float


@dataclass(frozen=True, slots=True)
class UpdateQuota:
    """The role's quota is now this guarantee and limit (None: no limit)."""

    role: str
    guarantee: tuple[rpb.Resource, ...]
    limit: tuple[rpb.Resource, ...] | None


@dataclass(frozen=True, slots=True)
class RemoveQuota:
    """The role has no quota any more."""

    role: str


@dataclass(frozen=True, slots=True)
class UpdateReservations:
    """Every dynamic reservation on the agent, now; empty: it has none."""

    agent_id: str
    resources: tuple[rpb.Resource, ...]


@dataclass(frozen=True, slots=True)
class UpdateDrain:
    """The agent is being drained (`state` "DRAINING") or is drained ("DRAINED", at `drained_at`), since `since`;
    `deadline` (unix seconds, None: none) is when what still runs there is killed; with `mark_gone` the agent is
    removed for good once drained. Kept until RemoveDrain, MarkAgentGone or RemoveAgent."""

    agent_id: str
    state: str
    deadline: float | None
    mark_gone: bool
    since: float
    drained_at: float | None = None


@dataclass(frozen=True, slots=True)
class RemoveDrain:
    """The agent's drain ended (ReactivateAgent): it is offered again."""

    agent_id: str


@dataclass(frozen=True, slots=True)
class MarkAgentGone:
    """The agent was drained and marked gone (since `since`): it is forgotten (as RemoveAgent, its drain with it)
    and may never attach again with this id."""

    agent_id: str
    since: float


Operation = (
    AdmitAgent
    | RemoveAgent
    | MarkAgentUnreachable
    | PutFramework
    | RemoveFramework
    | UpdateWeight
    | UpdateQuota
    | RemoveQuota
    | UpdateReservations
    | UpdateDrain
    | RemoveDrain
    | MarkAgentGone
)
"""Every write the master makes to its registry."""
