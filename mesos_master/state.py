"""`MasterState`: the state every part of the master's core reads and changes, and the few helpers they all use.

`Master` (in `cluster.py`) is this state with the transitions of each concept mixed in: `frameworks`, `agents`,
`tasks`, `offers`, `accept`, `reservations`, `role_policy`, `revocation`. Each of those classes adds methods only;
the attributes are declared here, once, and set by `Master.__init__`.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable

import structlog

from aiomesos.v1 import events_pb2, scheduler_pb2
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_master.allocator import Allocator
from mesos_master.allocator.base import Quota
from mesos_master.errors import DeniedError, UnknownIdError
from mesos_master.outbox import Outbox
from mesos_master.records import AgentRecord, Drain, Framework, Offer, PendingReconciliations, Task
from mesos_master.views import fill_agent, fill_framework, fill_task, fill_task_update
from scheduler_sdk._daemon.durations import Durations
from scheduler_sdk.quoting import quoted
from scheduler_sdk.resources import Resources
from scheduler_sdk.security.acls import Authorizer, audit
from scheduler_sdk.security.certs import Principal

log = structlog.get_logger(__name__)

TaskStatus = tpb.TaskStatus
Event = scheduler_pb2.Event
OperatorEvent = events_pb2.OperatorEvent


class MasterState:
    master_id: str
    allocator: Allocator
    clock: Callable[[], float]
    offer_timeout: float | None
    # How long an agent may stay away before it is unreachable: after this master's start, for agents known
    # from the registry (they need time to find the new master), and after a disconnection, for the others.
    agent_reregister_timeout: float
    agent_unreachable_timeout: float
    # How long an unreachable agent is remembered before it is forgotten (its tasks then become unknown).
    unreachable_agent_max_age: float
    hostname: str
    start_time: float
    outbox: Outbox
    frameworks: dict[str, Framework]
    completed_frameworks: deque[Framework]
    removed_framework_ids: set[str]
    agents: dict[str, AgentRecord]
    offers: dict[str, Offer]
    _ids: itertools.count[int]
    _allocator_agents: set[str]  # agents the allocator currently knows
    weights: dict[str, float]
    quotas: dict[str, Quota]
    reservations: dict[str, Resources]  # agent id -> its dynamic reservations
    counters: dict[str, int]  # events counted since the term began (mesos_master.metrics: NAME_total)
    allocation_runs: Durations  # how long each allocation cycle took (aiomesos_master_allocation_run_seconds)
    drains: dict[str, Drain]  # agent id -> its drain (maintenance), while DRAINING or DRAINED
    gone_agents: dict[str, float]  # agent id -> when it was drained and marked gone: it may never attach again
    # Agents known from the registry that have neither re-attached nor been marked unreachable since this master
    # started: they may still come back with tasks this master has not heard of.
    recovering_agents: set[str]
    pending_reconciliations: PendingReconciliations
    # The ACLs for what a framework does inside its calls (launch as a user, reserve for a role); None on an
    # insecure master, where no caller has a name. The servicers check the calls themselves.
    authorizer: Authorizer | None

    def _new_id(self, kind: str) -> str:
        return f"{self.master_id}-{kind}{next(self._ids)}"

    def _framework(self, framework_id: str) -> Framework:
        fw = self.frameworks.get(framework_id)
        if fw is None:
            raise UnknownIdError(f"unknown framework {quoted(framework_id)}")
        return fw

    def _authorize(self, fw: Framework, action: str, obj: str) -> None:
        """May the framework's principal do `action` on `obj`? Audited; raises DeniedError when not."""
        if self.authorizer is None or not fw.info.principal:
            return
        decision = audit(self.authorizer.authorize(Principal.parse(fw.info.principal), action, obj))
        if not decision.allowed:
            raise DeniedError(decision.message)

    def _master_status(
        self, task_id: str, state: int, reason: int, message: str, agent_id: str, now: float
    ) -> tpb.TaskStatus:
        return tpb.TaskStatus(
            task_id=task_id,
            state=state,  # type: ignore[arg-type]
            reason=reason,  # type: ignore[arg-type]
            message=message,
            agent_id=agent_id,
            source=TaskStatus.SOURCE_MASTER,
            timestamp=now,
        )

    def _reply(
        self, fw: Framework, task_id: str, state: int, reason: int, message: str, agent_id: str, now: float
    ) -> None:
        """A master-made update for a task that never launched (it needs no acknowledgement). It is the task's one
        terminal answer: a reconciliation of it still waiting for its agent is answered by this, not again later."""
        self.pending_reconciliations.forget((fw.id, task_id))
        self.outbox.framework(fw.id).updates.append(self._master_status(task_id, state, reason, message, agent_id, now))
        log.info("task rejected", framework_id=fw.id, task_id=task_id, state=tpb.TaskState.Name(state), why=message)  # type: ignore[arg-type]

    def _error(self, fw: Framework, message: str) -> None:
        self.outbox.framework(fw.id).rest.append(Event(type=Event.ERROR, error=Event.Error(message=message)))

    def call_error(self, framework_id: str, message: str) -> None:
        fw = self.frameworks.get(framework_id)
        if fw is not None:
            self._error(fw, message)

    # ----------------------------------------------------------------------------- the operator event stream
    def _publish_agent(self, kind: int, agent: AgentRecord, message: str = "", *, removed: bool = False) -> None:
        """An AGENT_* event: the agent as it is now (its last record when `removed`)."""
        if not self.outbox.watched:
            return
        event = OperatorEvent(type=kind, time=self.clock(), message=message)  # type: ignore[arg-type]
        fill_agent(event.agent, agent, self.drains.get(agent.id), removed=removed)
        self.outbox.publish(event)

    def _publish_framework(self, kind: int, fw: Framework, message: str = "", *, active: bool = True) -> None:
        """A FRAMEWORK_* event: the framework as it is now, seen by whoever may view its principal's."""
        if not self.outbox.watched:
            return
        event = OperatorEvent(type=kind, time=self.clock(), message=message)  # type: ignore[arg-type]
        fill_framework(event.framework, fw, active=active)
        self.outbox.publish(event, fw.info.principal)

    def _publish_task_added(self, task: Task) -> None:
        if not self.outbox.watched:
            return
        event = OperatorEvent(type=OperatorEvent.TASK_ADDED, time=self.clock())
        fill_task(event.task, task)
        self.outbox.publish(event, self._owner(task.framework_id))

    def _publish_task_updated(self, task: Task, owner: str | None = None) -> None:
        """TASK_UPDATED: the task's state now, with the status that brought it (`owner`: its framework's
        principal, when the framework is no longer in `frameworks`)."""
        if not self.outbox.watched:
            return
        event = OperatorEvent(type=OperatorEvent.TASK_UPDATED, time=self.clock())
        fill_task_update(event.task_update, task)
        self.outbox.publish(event, self._owner(task.framework_id) if owner is None else owner)

    def _owner(self, framework_id: str) -> str:
        fw = self.frameworks.get(framework_id)
        return fw.info.principal if fw is not None else ""
