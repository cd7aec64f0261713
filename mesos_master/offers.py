"""Offers: the allocator's allocations made into offers, and their end (used, declined, rescinded); the calls
that change what a framework is offered (DECLINE, REVIVE, SUPPRESS). ACCEPT is in `accept`."""

from __future__ import annotations

import time
from collections.abc import Sequence

from aiomesos.v1 import events_pb2, scheduler_pb2
from aiomesos.v1.events_pb2 import OperatorEvent
from mesos_master.bounds import check_decline
from mesos_master.records import Framework, Offer
from mesos_master.state import MasterState
from mesos_master.validation import call_roles
from scheduler_sdk.resources import Resources

DEFAULT_REFUSE_SECONDS = 5.0


def refuse_seconds(filters: scheduler_pb2.Filters) -> float:
    """How long a framework refuses what it gives back (a DECLINE, or what an ACCEPT leaves unused)."""
    return filters.refuse_seconds if filters.HasField("refuse_seconds") else DEFAULT_REFUSE_SECONDS


class OfferTransitions(MasterState):
    def allocate(self) -> int:
        """One allocation cycle; returns the number of offers made (timed and counted for the metrics)."""
        started = time.perf_counter()
        now = self.clock()
        made = 0
        # What each framework was offered in this cycle, for OFFERS_MADE: only while someone watches.
        cycle: dict[str, list[Offer]] | None = {} if self.outbox.watched else None
        for allocation in self.allocator.allocate(now):
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
            self.outbox.framework(fw.id).offers.append(
                scheduler_pb2.Offer(
                    id=offer.id,
                    framework_id=fw.id,
                    agent_id=agent.id,
                    hostname=agent.info.hostname,
                    resources=offer.resources.to_proto(),
                    attributes=agent.info.attributes,
                    allocation_role=offer.role,
                    agent_address=agent.info.address,
                )
            )
            if cycle is not None:
                cycle.setdefault(fw.id, []).append(offer)
            made += 1
        for framework_id, offers in (cycle or {}).items():
            self._publish_offers(self.frameworks[framework_id], offers, now)
        self.allocation_runs.observe(time.perf_counter() - started)
        if made:
            self.counters["offers"] = self.counters.get("offers", 0) + made
        return made

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
