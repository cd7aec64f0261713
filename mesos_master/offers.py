"""Offers: the allocator's allocations made into offers, and their end (used, declined, rescinded); the calls
that change what a framework is offered (DECLINE, REVIVE, SUPPRESS). ACCEPT is in `accept`."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from aiomesos.v1 import events_pb2, scheduler_pb2
from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1.events_pb2 import OperatorEvent
from mesos_master.allocator import Allocation
from mesos_master.bounds import check_decline
from mesos_master.records import AgentRecord, Framework, Offer
from mesos_master.state import MasterState
from mesos_master.validation import call_roles
from scheduler_sdk.resources import Resources

DEFAULT_REFUSE_SECONDS = 5.0


def refuse_seconds(filters: scheduler_pb2.Filters) -> float:
    """How long a framework refuses what it gives back (a DECLINE, or what an ACCEPT leaves unused)."""
    return filters.refuse_seconds if filters.HasField("refuse_seconds") else DEFAULT_REFUSE_SECONDS


#: Distinct resources whose serialized form is kept for building offers (`_offer_message`).
OFFER_RESOURCES_KEPT = 4096
#: Seconds of work an allocation cycle may do before it lets the event loop run (`allocation_pieces`).
PIECE_SECONDS = 0.01


@dataclass
class AllocationCycle:
    """The figures of an allocation cycle (the last one, or the one under way): offers made, pieces, the work
    (seconds of the cycle itself, not of what ran between its pieces), the longest piece, the span."""

    offers: int = 0
    pieces: int = 0
    work: float = 0.0
    longest_piece: float = 0.0
    longest_piece_cpu: float = 0.0  # (this thread's CPU time: what the piece cost, whatever else ran on the host)
    span: float = 0.0  # from its start to its end, with what ran between its pieces


class OfferTransitions(MasterState):
    last_allocation: AllocationCycle  # the last allocation cycle's figures (the metrics')
    _offer_heads: dict[str, tuple[rpb.AgentInfo, bytes]]  # agent id -> (its info, the offer fields from it)
    _offer_resources: dict[Resources, bytes]  # resources -> serialized as an offer's

    def allocate(self) -> int:
        """One allocation cycle, whole; returns the number of offers made."""
        for _ in self.allocation_pieces(math.inf):
            pass
        return self.last_allocation.offers

    def allocation_pieces(self, budget: float = PIECE_SECONDS) -> Iterator[AllocationCycle]:
        """One allocation cycle in pieces of about `budget` seconds of work each (the allocator's pieces, made
        into offers): yields after every piece but the last, so that the caller lets the event loop run (calls,
        pings, status updates) before the next. Anything may happen between pieces: what a piece offered is an
        offer already (it may be accepted, declined or rescinded meanwhile), and the allocator works the rest of
        its cycle from the state as it is then. Timed and counted for the metrics (`last_allocation`)."""
        timer = time.perf_counter
        started = piece_started = timer()
        cpu_started = time.thread_time()
        now = self.clock()
        figures = AllocationCycle()
        # What each framework was offered in this cycle, for OFFERS_MADE: only while someone watches.
        cycle: dict[str, list[Offer]] | None = {} if self.outbox.watched else None
        for allocations in self.allocator.allocation_pieces(now):
            figures.offers += self._make_offers(allocations, now, cycle)
            at = timer()
            if at - piece_started >= budget:
                figures.pieces += 1
                figures.work += at - piece_started
                figures.longest_piece = max(figures.longest_piece, at - piece_started)
                figures.longest_piece_cpu = max(figures.longest_piece_cpu, time.thread_time() - cpu_started)
                yield figures
                piece_started = timer()
                cpu_started = time.thread_time()
        for framework_id, offers in (cycle or {}).items():
            fw = self.frameworks.get(framework_id)
            if fw is not None:
                self._publish_offers(fw, offers, now)
        at = timer()
        figures.pieces += 1
        figures.work += at - piece_started
        figures.longest_piece = max(figures.longest_piece, at - piece_started)
        figures.longest_piece_cpu = max(figures.longest_piece_cpu, time.thread_time() - cpu_started)
        figures.span = at - started
        self.allocation_runs.observe(figures.work)
        self.last_allocation = figures
        if figures.offers:
            self.counters["offers"] = self.counters.get("offers", 0) + figures.offers

    def _make_offers(self, allocations: list[Allocation], now: float, cycle: dict[str, list[Offer]] | None) -> int:
        """The allocator's allocations as offers (queued for their frameworks); returns how many were made."""
        made = 0
        for allocation in allocations:
            fw = self.frameworks.get(allocation.framework_id)
            agent = self.agents.get(allocation.agent_id)
            if fw is None or agent is None or not fw.connected or not agent.connected:
                self.allocator.recover_resources(
                    allocation.framework_id, allocation.agent_id, allocation.resources, None, now, role=allocation.role
                )
                continue
            offer = Offer(
                id=self._new_id("O"),
                framework_id=fw.id,
                agent_id=agent.id,
                role=allocation.role,
                resources=allocation.resources,
                created_at=now,
            )
            self.offers[offer.id] = offer
            fw.offers.add(offer.id)
            agent.offers.add(offer.id)
            self.outbox.framework(fw.id).offers.append(self._offer_message(offer, agent))
            if cycle is not None:
                cycle.setdefault(fw.id, []).append(offer)
            made += 1
        return made

    def _offer_message(self, offer: Offer, agent: AgentRecord) -> scheduler_pb2.Offer:
        """The offer as a framework gets it. Built from serialized parts, each made once: the agent's (id,
        hostname, attributes, address: kept while its info is the same object) and the resources' (by value);
        parsing their concatenation is a few times cheaper than building the message field by field."""
        head = self._offer_heads.get(agent.id)
        if head is None or head[0] is not agent.info:
            if len(self._offer_heads) > 2 * len(self.agents) + 1000:  # forget the agents that are gone
                self._offer_heads = {k: v for k, v in self._offer_heads.items() if k in self.agents}
            info = agent.info
            part = scheduler_pb2.Offer(
                agent_id=info.id, hostname=info.hostname, attributes=info.attributes, agent_address=info.address
            ).SerializeToString()
            head = self._offer_heads[agent.id] = (info, part)
        resources = self._offer_resources.get(offer.resources)
        if resources is None:
            if len(self._offer_resources) >= OFFER_RESOURCES_KEPT:
                self._offer_resources.clear()
            resources = self._offer_resources[offer.resources] = scheduler_pb2.Offer(
                resources=offer.resources.to_proto()
            ).SerializeToString()
        message = scheduler_pb2.Offer.FromString(head[1] + resources)
        message.id = offer.id
        message.framework_id = offer.framework_id
        message.allocation_role = offer.role
        return message

    def _publish_offers(self, fw: Framework, offers: list[Offer], now: float) -> None:
        """OFFERS_MADE: one event per framework and cycle, with how many offers, on how many agents, of what."""
        total = Resources.empty()
        for offer in offers:
            total = total + offer.resources
        made = events_pb2.EventOffers(
            framework_id=fw.id,
            offers=len(offers),
            agents=len({offer.agent_id for offer in offers}),
            resources=total.to_proto(),
        )
        self.outbox.publish(OperatorEvent(type=OperatorEvent.OFFERS_MADE, time=now, offers=made), fw.info.principal)

    def _remove_offer(self, offer: Offer) -> None:
        self.offers.pop(offer.id, None)
        fw = self.frameworks.get(offer.framework_id)
        if fw is not None:
            fw.offers.discard(offer.id)
        agent = self.agents.get(offer.agent_id)
        if agent is not None:
            agent.offers.discard(offer.id)

    def _rescind(self, offer: Offer, *, recover: bool, notify: bool = True) -> None:
        self._remove_offer(offer)
        if recover:
            self.allocator.recover_resources(
                offer.framework_id, offer.agent_id, offer.resources, None, self.clock(), role=offer.role
            )
        fw = self.frameworks.get(offer.framework_id)
        if notify and fw is not None and fw.connected:
            self.outbox.framework(fw.id).rescinds.append(offer.id)

    def _rescind_all(self, fw: Framework, *, recover: bool, notify: bool = True) -> None:
        for offer_id in list(fw.offers):
            offer = self.offers.get(offer_id)
            if offer is not None:
                self._rescind(offer, recover=recover, notify=notify)
        fw.offers.clear()

    def _rescind_agent_offers(self, agent_id: str, *, recover: bool) -> None:
        agent = self.agents[agent_id]
        for offer_id in list(agent.offers):
            self._rescind(self.offers[offer_id], recover=recover)

    def expire_offers(self, now: float) -> None:
        """Rescind the offers held longer than the offer timeout (if there is one)."""
        if self.offer_timeout is None:
            return
        for offer in [o for o in self.offers.values() if now - o.created_at >= self.offer_timeout]:
            self._rescind(offer, recover=True)

    def decline(self, framework_id: str, call: scheduler_pb2.Call.Decline) -> None:
        self._framework(framework_id)
        check_decline(call)
        now = self.clock()
        refuse = refuse_seconds(call.filters)
        for offer_id in call.offer_ids:
            offer = self.offers.get(offer_id)
            if offer is None or offer.framework_id != framework_id:
                continue  # already gone: declining is idempotent
            self._remove_offer(offer)
            self.allocator.recover_resources(
                framework_id, offer.agent_id, offer.resources, refuse, now, role=offer.role
            )

    def revive(self, framework_id: str, roles: Sequence[str] = ()) -> None:
        fw = self._framework(framework_id)
        chosen = call_roles(roles, fw.roles(), "revive")
        if fw.suppressed_roles & set(chosen):
            fw.suppressed_roles.difference_update(chosen)
            self._publish_framework(OperatorEvent.FRAMEWORK_UPDATED, fw)
        self.allocator.revive_offers(framework_id, list(roles) or None)

    def suppress(self, framework_id: str, roles: Sequence[str] = ()) -> None:
        fw = self._framework(framework_id)
        chosen = call_roles(roles, fw.roles(), "suppress")
        if not set(chosen) <= fw.suppressed_roles:
            fw.suppressed_roles.update(chosen)
            self._publish_framework(OperatorEvent.FRAMEWORK_UPDATED, fw)
        self.allocator.suppress_offers(framework_id, list(roles) or None)
