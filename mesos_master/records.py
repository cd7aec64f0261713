"""The master's records: what it knows of each task, offer, framework and agent. Plain data; the transitions
that change them live in the modules named after each concept (`frameworks`, `agents`, `tasks`, `offers`, ...)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.resources import UNRESERVED, Resources

COMPLETED_TASKS_KEPT = 1000
COMPLETED_FRAMEWORKS_KEPT = 50
STATUSES_KEPT = 8


@dataclass(slots=True)
class Task:
    framework_id: str
    agent_id: str
    info: tpb.TaskInfo
    resources: Resources
    state: int = tpb.TASK_STAGING
    statuses: deque[tpb.TaskStatus] = field(default_factory=lambda: deque(maxlen=STATUSES_KEPT))
    kill_requested: bool = False
    role: str | None = None  # the role its resources were allocated under (None: not known)
    started_at: float | None = None  # when it first reached RUNNING (revocation takes the oldest first)
    revoked: bool = False  # killed by revocation (for a starved role)

    @property
    def task_id(self) -> str:
        return self.info.task_id

    def latest(self) -> tpb.TaskStatus | None:
        return self.statuses[-1] if self.statuses else None


@dataclass(slots=True)
class Offer:
    id: str
    framework_id: str
    agent_id: str
    role: str
    resources: Resources
    created_at: float


@dataclass(slots=True)
class Framework:
    info: rpb.FrameworkInfo
    connected: bool
    registered_time: float
    reregistered_time: float = 0.0
    disconnected_at: float | None = None
    expires_at: float | None = None  # while disconnected: when it is removed unless it resubscribes
    suppressed_roles: set[str] = field(default_factory=set)  # roles it asked no offers in (SUPPRESS)
    tasks: dict[str, Task] = field(default_factory=dict)
    completed_tasks: deque[Task] = field(default_factory=lambda: deque(maxlen=COMPLETED_TASKS_KEPT))
    offers: set[str] = field(default_factory=set)

    @property
    def id(self) -> str:
        return self.info.id

    def has(self, capability: int) -> bool:
        return any(c.type == capability for c in self.info.capabilities)

    def roles(self) -> list[str]:
        return list(self.info.roles) or [UNRESERVED]

    @property
    def suppressed(self) -> bool:
        """Suppressed in every one of its roles (it gets no offers at all)."""
        return set(self.roles()) <= self.suppressed_roles


@dataclass(slots=True)
class AgentRecord:
    """What the master knows of one agent (the agent daemon itself is `mesos_agent`'s business)."""

    info: rpb.AgentInfo
    total: Resources  # what the agent reported, with the dynamic reservations applied
    connected: bool
    registered_time: float
    reregistered_time: float = 0.0
    disconnected_at: float | None = None
    tasks: dict[tuple[str, str], Task] = field(default_factory=dict)
    offers: set[str] = field(default_factory=set)
    recovered: bool = False  # known from the registry, not re-attached since this master started
    unreachable_at: float | None = None  # when the master gave up waiting for it (None: reachable)
    # Tasks of frameworks that are not PARTITION_AWARE, reported TASK_LOST when the agent became unreachable:
    # should the agent come back with them, they are killed, and their updates end at the master.
    lost_tasks: set[tuple[str, str]] = field(default_factory=set)

    @property
    def id(self) -> str:
        return self.info.id


DRAINING = "DRAINING"
DRAINED = "DRAINED"


@dataclass(slots=True)
class Drain:
    """An agent under maintenance (see `drain`): DRAINING until nothing non-terminal runs there, then DRAINED."""

    agent_id: str
    deadline: float | None  # unix seconds: what still runs then is killed (None: wait for the tasks to end)
    mark_gone: bool  # once DRAINED, remove the agent for good
    since: float
    state: str = DRAINING
    drained_at: float | None = None
    # Tasks killed for the deadline on the agent's current attachment (sent again when it re-attaches).
    killed: set[tuple[str, str]] = field(default_factory=set)


def with_reservations(reported: Resources, reserved: Resources | None) -> Resources:
    """An agent's total: what it reported, with its dynamic reservations moved from the unreserved pool to their
    roles (what the agent no longer has is dropped)."""
    if not reserved:
        return reported
    taken = Resources.flatten(reserved, UNRESERVED)
    return reported.subtract_clamped(taken) + reserved
