"""The master's state and its transitions: agents, frameworks, tasks and offers. Pure and deterministic.

Every entry point takes the facts (a call from a framework, a message from an agent, the time) and changes
state; what must be sent or written is put into the `Outbox`, which the shell (`api/`, `daemon.py`) drains
once per event-loop turn. Draining batches: all offers for a framework become one OFFERS event, all its
status updates one UPDATE event, all launches for an agent one RUN_TASKS message, and so on.

`Master` is assembled here from one class per concept, each in the module of its name: `frameworks`, `agents`,
`tasks`, `offers`, `accept` (with its operations), `reservations`, `role_policy` (weights, quota), `revocation`,
`drain` (maintenance: it extends registering agents and subscribing frameworks);
their shared state is `state.MasterState`, the records are in `records`, every check of a call in `validation`,
and every registry write is an operation of `registry.operations`.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable

from mesos_master.accept import AcceptTransitions
from mesos_master.agents import AgentTransitions, text_attributes
from mesos_master.allocator import Allocator
from mesos_master.allocator.base import Quota
from mesos_master.drain import DrainTransitions
from mesos_master.frameworks import AllocatorOptions, FrameworkTransitions, allocator_options
from mesos_master.offers import DEFAULT_REFUSE_SECONDS, AllocationCycle
from mesos_master.outbox import Drained, Outbox
from mesos_master.records import (
    COMPLETED_FRAMEWORKS_KEPT,
    AgentRecord,
    Framework,
    Offer,
    PendingReconciliations,
    Task,
    with_reservations,
)
from mesos_master.registry import RegistryState
from mesos_master.revocation import NON_REVOCABLE_LABEL, RevocationTransitions
from mesos_master.role_policy import RolePolicyTransitions
from mesos_master.validation import CallError, UnknownIdError
from scheduler_sdk._daemon.durations import Durations
from scheduler_sdk.resources import Resources, ResourcesError
from scheduler_sdk.security.acls import Authorizer

__all__ = [
    "DEFAULT_REFUSE_SECONDS",
    "NON_REVOCABLE_LABEL",
    "AgentRecord",
    "AllocatorOptions",
    "CallError",
    "Drained",
    "Framework",
    "Master",
    "Offer",
    "Outbox",
    "Task",
    "UnknownIdError",
    "allocator_options",
    "text_attributes",
    "with_reservations",
]


class Master(
    DrainTransitions,
    FrameworkTransitions,
    AgentTransitions,
    AcceptTransitions,
    RolePolicyTransitions,
    RevocationTransitions,
):
    """All of the master's state. Methods are called from one thread (the event loop) and never block."""

    def __init__(
        self,
        master_id: str,
        allocator: Allocator,
        *,
        clock: Callable[[], float] = time.time,
        recovered: RegistryState | None = None,
        offer_timeout: float | None = None,
        agent_reregister_timeout: float = 600.0,
        agent_unreachable_timeout: float = 75.0,
        unreachable_agent_max_age: float = 14 * 24 * 3600.0,
        hostname: str = "",
        authorizer: Authorizer | None = None,
    ) -> None:
        self.master_id = master_id
        self.allocator = allocator
        self.clock = clock
        self.offer_timeout = offer_timeout
        self.agent_reregister_timeout = agent_reregister_timeout
        self.agent_unreachable_timeout = agent_unreachable_timeout
        self.unreachable_agent_max_age = unreachable_agent_max_age
        self.hostname = hostname
        self.authorizer = authorizer
        self.start_time = clock()
        self.outbox = Outbox()
        self.frameworks = {}
        self.completed_frameworks = deque(maxlen=COMPLETED_FRAMEWORKS_KEPT)
        self.removed_framework_ids = set()
        self.agents = {}
        self.offers = {}
        self._ids = itertools.count(1)
        self._allocator_agents = set()
        self.weights = {}
        self.quotas = {}
        self.reservations = {}
        self.counters = {}
        self.allocation_runs = Durations()
        self.last_allocation = AllocationCycle()
        self._offer_heads = {}
        self._offer_resources = {}
        self.drains = {}
        self.gone_agents = {}
        self.recovering_agents = set()
        self.pending_reconciliations = PendingReconciliations()
        if recovered is not None:
            self._recover(recovered)

    def _recover(self, state: RegistryState) -> None:
        """After a restart: what the registry kept waits, disconnected, for its owner to come back."""
        now = self.clock()
        self.removed_framework_ids = set(state.removed_frameworks)
        for agent_id, reserved in state.reservations.items():
            self.reservations[agent_id] = Resources.from_proto(reserved)
        if state.weights:
            self.weights = dict(state.weights)
            self.allocator.update_weights(self.weights)
        for role, (guarantee, limit) in state.quotas.items():
            quota = Quota(Resources.from_proto(guarantee), None if limit is None else Resources.from_proto(limit))
            self.quotas[role] = quota
            self.allocator.update_quota(role, quota)
        for agent_id, info in state.agents.items():
            try:
                total = with_reservations(Resources.from_proto(info.resources), self.reservations.get(agent_id))
            except ResourcesError:
                total = Resources.empty()
            self.agents[agent_id] = AgentRecord(
                info=info,
                total=total,
                connected=False,
                registered_time=now,
                disconnected_at=now,
                recovered=True,
                unreachable_at=state.unreachable.get(agent_id),
            )
            if agent_id not in state.unreachable:
                self.recovering_agents.add(agent_id)
        self._recover_drains(state)
        for framework_id, fw_info in state.frameworks.items():
            # After a master restart a framework gets the longer of its failover timeout and the agents'
            # re-attach timeout to come back: it could not have resubscribed while the master was down.
            expires = now + max(fw_info.failover_timeout, self.agent_reregister_timeout)
            self.frameworks[framework_id] = Framework(
                info=fw_info, connected=False, registered_time=now, disconnected_at=now, expires_at=expires
            )
            self.allocator.add_framework(
                framework_id, list(fw_info.roles), {}, active=False, **allocator_options(fw_info)
            )

    def tick(self) -> None:
        """Expire what has waited too long: offers, disconnected frameworks, disconnected agents; revoke; drain."""
        now = self.clock()
        self.revoke()
        self.expire_offers(now)
        self.expire_frameworks(now)
        self.expire_agents(now)
        self.drain_tick(now)
