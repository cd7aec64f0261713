"""Refusal filters (Mesos' semantics): what a framework declined in a role on an agent is withheld from it there
until the filter expires, as long as what would be offered is a subset of what was refused.

The allocator keeps them per framework as ``{role: FiltersByAgent}``: by agent, the refused resources and when the
filter expires. Built for clusters whose frameworks decline for long (millions of live filters), where Python's
garbage collector would otherwise walk every filter at each full collection: a filter is no object of its own
but two dict entries, and the refused resources are referred to by a number in a `RefusedResources` shared by all
filters (the same `Resources` is usually refused by many frameworks: the agent's free resources, declined whole), so
those dicts hold only strings, floats and ints, which the collector does not track. Several filters on one agent
are a list of `RefusalFilter` (its expiry entry is then the latest of them). The allocator wakes an agent up when
its earliest filter expires (one heap entry per agent, not per filter: `refusals.RefusalIndex`). The functions
here read and prune filters in place."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from scheduler_sdk.resources import Resources


class RefusalFilter(NamedTuple):
    resources: Resources
    expires_at: float


Slot = int | list[RefusalFilter]  # a number in the `RefusedResources`, or several filters


class RefusedResources:
    """The refused resources of the filters that refer to them by number, with how many do."""

    __slots__ = ("keys", "objects", "refs")

    def __init__(self) -> None:
        self.objects: dict[int, Resources] = {}
        self.refs: dict[int, int] = {}
        self.keys: dict[int, int] = {}  # the one int object each number is stored as (millions of filters share it)

    def put(self, resources: Resources) -> int:
        number = id(resources)  # unique while the numbered resources hold it
        key = self.keys.get(number)
        if key is None:
            self.keys[number] = number
            self.objects[number] = resources
            self.refs[number] = 1
            return number
        self.refs[key] += 1
        return key

    def drop(self, number: int) -> None:
        refs = self.refs[number] - 1
        if refs:
            self.refs[number] = refs
        else:
            del self.refs[number]
            del self.objects[number]
            del self.keys[number]


class FiltersByAgent:
    """One framework's filters in one role, by agent id."""

    __slots__ = ("expires", "numbered", "refused")

    def __init__(self, book: RefusedResources) -> None:
        self.numbered = book
        self.refused: dict[str, Slot] = {}
        self.expires: dict[str, float] = {}  # the filter's expiry (several: the latest)

    def get(self, agent_id: str) -> Slot | None:
        return self.refused.get(agent_id)

    def pop(self, agent_id: str, default: None = None) -> Slot | None:
        """Forget the agent's filters."""
        slot = self.refused.pop(agent_id, default)
        self.expires.pop(agent_id, None)
        if type(slot) is int:
            self.numbered.drop(slot)
        return slot

    def clear(self) -> None:
        """Forget every filter (their numbered entries with them)."""
        for slot in self.refused.values():
            if type(slot) is int:
                self.numbered.drop(slot)
        self.refused.clear()
        self.expires.clear()

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self.refused

    def __iter__(self) -> Iterator[str]:
        return iter(self.refused)

    def __len__(self) -> int:
        return len(self.refused)


def is_filtered(per_agent: FiltersByAgent, agent_id: str, slot: Slot, offered: Resources, now: float) -> bool:
    """True while one unexpired filter in `slot` (per_agent.get(agent_id)) covers `offered`: a subset of what was
    refused. Expired filters are pruned."""
    if type(slot) is int:
        if per_agent.expires[agent_id] > now:
            refused = per_agent.numbered.objects[slot]
            return refused is offered or refused.contains(offered)
        per_agent.pop(agent_id)
        return False
    assert isinstance(slot, list)
    live = [f for f in slot if f.expires_at > now]
    if len(live) != len(slot):
        _store(per_agent, agent_id, live)
    return any(f.resources is offered or f.resources.contains(offered) for f in live)


def add_filter(per_agent: FiltersByAgent, agent_id: str, resources: Resources, expires_at: float) -> None:
    """Add a filter, dropping older ones it makes redundant (they cover less and expire no later)."""
    if agent_id not in per_agent.refused:
        per_agent.refused[agent_id] = per_agent.numbered.put(resources)
        per_agent.expires[agent_id] = expires_at
        return
    kept = [
        f
        for f in filters_of(per_agent, agent_id)
        if not (f.expires_at <= expires_at and resources.contains(f.resources))
    ]
    kept.append(RefusalFilter(resources, expires_at))
    _store(per_agent, agent_id, kept)


def prune(per_agent: FiltersByAgent, agent_id: str, now: float) -> float | None:
    """Drop the expired filters of one agent; return the earliest expiry left (None: none left)."""
    if agent_id not in per_agent.refused:
        return None
    live = [f for f in filters_of(per_agent, agent_id) if f.expires_at > now]
    _store(per_agent, agent_id, live)
    return min(f.expires_at for f in live) if live else None


def has_live(per_agent: FiltersByAgent, now: float) -> bool:
    return any(expires > now for expires in per_agent.expires.values())


def count(per_agent: FiltersByAgent) -> int:
    return sum(len(slot) if type(slot) is list else 1 for slot in per_agent.refused.values())


def filters_of(per_agent: FiltersByAgent, agent_id: str) -> list[RefusalFilter]:
    slot = per_agent.refused.get(agent_id)
    if slot is None:
        return []
    if type(slot) is list:
        return list(slot)
    assert isinstance(slot, int)
    return [RefusalFilter(per_agent.numbered.objects[slot], per_agent.expires[agent_id])]


def _store(per_agent: FiltersByAgent, agent_id: str, filters: list[RefusalFilter]) -> None:
    per_agent.pop(agent_id)
    if len(filters) == 1:
        per_agent.refused[agent_id] = per_agent.numbered.put(filters[0].resources)
        per_agent.expires[agent_id] = filters[0].expires_at
    elif filters:
        per_agent.refused[agent_id] = filters
        per_agent.expires[agent_id] = max(f.expires_at for f in filters)
