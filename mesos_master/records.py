"""The master's records: what it knows of each task, offer, framework and agent. Plain data; the transitions
that change them live in the modules named after each concept (`frameworks`, `agents`, `tasks`, `offers`, ...)."""

from __future__ import annotations

from collections import Counter, deque
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
    # What the framework hears next from the agent's update stream, when that is behind `state` (an agent's report
    # at its re-attach runs ahead of the updates it still has to deliver): reconciliation answers with it, as
    # Mesos' status_update_state, so no framework hears a state before the updates that lead to it.
    status_update_state: int | None = None
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

    def completed_task(self, task_id: str) -> Task | None:
        """The latest of its completed tasks with that id (ids may be reused once a task is over)."""
        return next((t for t in reversed(self.completed_tasks) if t.task_id == task_id), None)

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
    # Tasks the agent runs (or did) whose frameworks were told they are over: TASK_LOST to a framework that is not
    # PARTITION_AWARE when the agent became unreachable, or a completed task the agent re-attached with. A terminal
    # state is final: they are killed, and their updates end at the master (it acknowledges them).
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


TaskKey = tuple[str, str]  # (framework id, task id)


@dataclass(slots=True)
class PendingReconciliations:
    """Reconciliation requests the master cannot answer truthfully yet: for a task it does not know, on an agent
    that may still come back with it (known from the registry and not re-attached since this master started, or
    disconnected), or, for a request without an agent id, while any agent is still recovering. By the agent they
    wait for ("" for none), then by task; the value says whether the request was a KILL (sent should the task
    turn up). Bounded per framework (`add` refuses beyond `cap`)."""

    by_agent: dict[str, dict[TaskKey, bool]] = field(default_factory=dict)
    per_framework: Counter[str] = field(default_factory=Counter)

    def __len__(self) -> int:
        return self.per_framework.total()

    def waiting_for(self, agent_id: str) -> bool:
        return bool(self.by_agent.get(agent_id))

    def add(self, agent_id: str, key: TaskKey, kill: bool, cap: int) -> bool:
        """Remember a request (again: once, a KILL stays one); False when its framework has `cap` waiting."""
        waiting = self.by_agent.get(agent_id)
        if waiting is not None and key in waiting:
            waiting[key] = waiting[key] or kill
            return True
        if self.per_framework[key[0]] >= cap:
            return False
        self.by_agent.setdefault(agent_id, {})[key] = kill
        self.per_framework[key[0]] += 1
        return True

    def take(self, agent_id: str) -> dict[TaskKey, bool]:
        """Forget, and return, every request waiting for `agent_id`."""
        waiting = self.by_agent.pop(agent_id, {})
        for framework_id, _ in waiting:
            self._uncount(framework_id)
        return waiting

    def take_one(self, agent_id: str, key: TaskKey) -> bool | None:
        """Forget, and return (whether it was a KILL), the request for `key` waiting for `agent_id`, if any."""
        waiting = self.by_agent.get(agent_id)
        if waiting is None or key not in waiting:
            return None
        kill = waiting.pop(key)
        if not waiting:
            del self.by_agent[agent_id]
        self._uncount(key[0])
        return kill

    def forget(self, key: TaskKey) -> None:
        """The task got its answer another way (its launch was refused): no request for it waits any more."""
        for agent_id in [a for a, waiting in self.by_agent.items() if key in waiting]:
            self.take_one(agent_id, key)

    def drop_framework(self, framework_id: str) -> None:
        """The framework went away (disconnected, removed): it asks again when it is back."""
        if not self.per_framework.get(framework_id):
            return
        for agent_id, waiting in list(self.by_agent.items()):
            for key in [k for k in waiting if k[0] == framework_id]:
                del waiting[key]
            if not waiting:
                del self.by_agent[agent_id]
        del self.per_framework[framework_id]

    def _uncount(self, framework_id: str) -> None:
        self.per_framework[framework_id] -= 1
        if self.per_framework[framework_id] <= 0:
            del self.per_framework[framework_id]


def with_reservations(reported: Resources, reserved: Resources | None) -> Resources:
    """An agent's total: what it reported, with its dynamic reservations moved from the unreserved pool to their
    roles (what the agent no longer has is dropped)."""
    if not reserved:
        return reported
    taken = Resources.flatten(reserved, UNRESERVED)
    return reported.subtract_clamped(taken) + reserved
