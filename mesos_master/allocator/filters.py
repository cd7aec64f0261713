"""Refusal filters (Mesos' semantics): what a framework declined in a role on an agent is withheld from it there
until the filter expires, as long as what would be offered is a subset of what was refused.

The allocator keeps them per framework as ``{role: {agent_id: slot}}``, where a slot is one `RefusalFilter`
(the usual case: no list object for it) or a list of them, and wakes an agent up when its earliest filter
expires (one heap entry per agent, not per filter). The functions here read and prune slots in place."""

from __future__ import annotations

from typing import NamedTuple

from scheduler_sdk.resources import Resources


class RefusalFilter(NamedTuple):
    resources: Resources
    expires_at: float


Slot = RefusalFilter | list[RefusalFilter]
PerAgent = dict[str, Slot]


def is_filtered(per_agent: PerAgent, agent_id: str, slot: Slot, offered: Resources, now: float) -> bool:
    """True while one unexpired filter in `slot` (per_agent[agent_id]) covers `offered`: a subset of what was
    refused. Expired filters are pruned."""
    if type(slot) is RefusalFilter:
        if slot.expires_at > now:
            refused = slot.resources
            return refused is offered or refused.contains(offered)
        del per_agent[agent_id]
        return False
    assert isinstance(slot, list)
    live = [f for f in slot if f.expires_at > now]
    if len(live) != len(slot):
        _store(per_agent, agent_id, live)
    return any(f.resources is offered or f.resources.contains(offered) for f in live)


def add_filter(per_agent: PerAgent, agent_id: str, resources: Resources, expires_at: float) -> None:
    """Add a filter, dropping older ones it makes redundant (they cover less and expire no later)."""
    new = RefusalFilter(resources, expires_at)
    slot = per_agent.get(agent_id)
    if slot is None:
        per_agent[agent_id] = new
        return
    kept = [f for f in filters_of(slot) if not (f.expires_at <= expires_at and resources.contains(f.resources))]
    kept.append(new)
    _store(per_agent, agent_id, kept)


def prune(per_agent: PerAgent, agent_id: str, now: float) -> float | None:
    """Drop the expired filters of one agent; return the earliest expiry left (None: none left)."""
    slot = per_agent.get(agent_id)
    if slot is None:
        return None
    live = [f for f in filters_of(slot) if f.expires_at > now]
    _store(per_agent, agent_id, live)
    return min(f.expires_at for f in live) if live else None


def has_live(per_agent: PerAgent, now: float) -> bool:
    return any(f.expires_at > now for slot in per_agent.values() for f in filters_of(slot))


def count(per_agent: PerAgent) -> int:
    return sum(1 if type(slot) is RefusalFilter else len(slot) for slot in per_agent.values())


def filters_of(slot: Slot) -> list[RefusalFilter]:
    return [slot] if isinstance(slot, RefusalFilter) else slot


def _store(per_agent: PerAgent, agent_id: str, filters: list[RefusalFilter]) -> None:
    if not filters:
        per_agent.pop(agent_id, None)
    elif len(filters) == 1:
        per_agent[agent_id] = filters[0]
    else:
        per_agent[agent_id] = filters
