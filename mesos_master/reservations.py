"""Dynamic reservations: resources of an agent set aside for a role, by a framework's RESERVE / UNRESERVE (in an
ACCEPT, see `accept`) or by the operator. The master keeps each agent's reservations, applies them to the agent's
total, and writes them to the registry."""

from __future__ import annotations

from aiomesos.v1 import scheduler_pb2
from aiomesos.v1.events_pb2 import OperatorEvent
from mesos_master.offers import OfferTransitions
from mesos_master.records import AgentRecord, Framework, with_reservations
from mesos_master.registry.operations import UpdateReservations
from mesos_master.validation import (
    CallError,
    UnknownIdError,
    validate_operator_reservation,
    validate_reservation_operation,
)
from scheduler_sdk.quoting import quoted
from scheduler_sdk.resources import UNRESERVED, Resources
from scheduler_sdk.states import is_terminal

OfferOperation = scheduler_pb2.Offer_Operation


class ReservationTransitions(OfferTransitions):
    def _apply_reservation_operation(
        self,
        fw: Framework,
        agent: AgentRecord,
        operation: scheduler_pb2.Offer_Operation,
        pool: Resources,
        offer_role: str,
        reserved_here: Resources,
    ) -> tuple[Resources, Resources]:
        """RESERVE or UNRESERVE part of an accept's pool; returns the new pool and what the accept reserved.
        A RESERVE must not take a role over its quota limit (the allocator says)."""
        resources = validate_reservation_operation(operation, offer_role, fw.roles())
        action = "reserve_resources" if operation.type == OfferOperation.RESERVE else "unreserve_resources"
        for role in sorted(resources.roles() - {UNRESERVED}):
            self._authorize(fw, action, role)
        dynamic = self.reservations.get(agent.id, Resources.empty())
        if operation.type == OfferOperation.RESERVE:
            plain = Resources.flatten(resources, UNRESERVED)
            if not pool.contains(plain):
                raise CallError(f"{plain} is not unreserved in the offers (they have {pool or 'nothing'})")
            try:
                self.allocator.check_reservation(reserved_here + resources, allocated_role=offer_role)
            except ValueError as e:
                raise CallError(str(e)) from None
            self._set_reservations(agent, dynamic + resources)
            return pool - plain + resources, reserved_here + resources
        if not pool.contains(resources):
            raise CallError(f"{resources} is not in the offers (they have {pool or 'nothing'})")
        if not dynamic.contains(resources):
            raise CallError(f"{resources} is not dynamically reserved on agent {agent.id} (static ones cannot be)")
        self._set_reservations(agent, dynamic - resources)
        return pool - resources + Resources.flatten(resources, UNRESERVED), reserved_here

    def _set_reservations(self, agent: AgentRecord, reserved: Resources) -> None:
        if reserved:
            self.reservations[agent.id] = reserved
        else:
            self.reservations.pop(agent.id, None)
        self.outbox.write(UpdateReservations(agent.id, tuple(reserved.to_proto())))
        reported = Resources.from_proto(agent.info.resources)
        agent.total = with_reservations(reported, reserved or None)
        self._publish_agent(OperatorEvent.AGENT_UPDATED, agent)

    def _agent_total_changed(self, agent: AgentRecord) -> None:
        if agent.id in self._allocator_agents:
            self.allocator.update_agent(agent.id, agent.total)

    def operator_reserve(self, agent_id: str, resources: Resources, unreserve: bool = False) -> None:
        """Reserve (or unreserve) resources of an agent that no task holds, for the roles they name."""
        agent = self.agents.get(agent_id)
        if agent is None:
            raise UnknownIdError(f"unknown agent {quoted(agent_id)}")
        validate_operator_reservation(resources)
        # Offers on the agent go back first, as in Mesos: what they held may be what is to be reserved.
        self._rescind_agent_offers(agent_id, recover=True)
        used = Resources.empty()
        for task in agent.tasks.values():
            if not is_terminal(task.state):
                used = used + task.resources
        free = agent.total.subtract_clamped(used)
        dynamic = self.reservations.get(agent_id, Resources.empty())
        if unreserve:
            if not dynamic.contains(resources):
                raise CallError(
                    f"{resources} is not dynamically reserved on agent {agent_id} (it has {dynamic or 'none'})"
                )
            if not free.contains(resources):
                raise CallError(f"{resources} is in use by tasks on agent {agent_id}")
            self._set_reservations(agent, dynamic - resources)
        else:
            plain = Resources.flatten(resources, UNRESERVED)
            if not free.unreserved().contains(plain):
                raise CallError(
                    f"agent {agent_id} has not {plain} unreserved and free (it has {free.unreserved() or 'nothing'})"
                )
            try:
                self.allocator.check_reservation(resources)
            except ValueError as e:
                raise CallError(str(e)) from None
            self._set_reservations(agent, dynamic + resources)
        self._agent_total_changed(agent)
