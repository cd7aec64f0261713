"""The allocation cycle of `HierarchicalAllocator` in pieces (`allocation_pieces`), and which agents a cycle looks
at (`agents_to_visit`). The allocator's own module; they read its state directly."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from mesos_master.allocator.base import Allocation
from mesos_master.allocator.records import AgentRecord

#: The `HierarchicalAllocator` whose cycle this is (not imported: it imports this module).
HierarchicalAllocator = Any


def allocation_pieces(alloc: HierarchicalAllocator, now: float, chunk: int) -> Iterator[list[Allocation]]:
    """See `HierarchicalAllocator.allocation_pieces`."""
    timer = alloc._timer
    started = timer()
    token = alloc._cycle + 1
    visit, wanted = begin_cycle(alloc, now)
    walk = alloc._walk
    walk.held = held = set[str]()
    stages: list[Callable[[AgentRecord, float, list[Allocation]], None]] = []
    if alloc._root.candidates:
        if alloc._tree.orders.below_guarantee.entries:
            stages.append(walk.quota_stage)
        stages.append(walk.fair_stage)
    # (0 for the last stage, the stage, the first agent of the piece)
    pieces = [
        (last, stage, first)
        for last, stage in enumerate(stages, 1 - len(stages))
        for first in range(0, len(visit), chunk)
    ]
    agents = alloc._agents
    out: list[Allocation] = []
    offers = examined = 0
    work = 0.0
    mark = started
    suspended = False
    reached: tuple[int, int] | None = (0, 0)  # (last, first) of the piece under way; None: all done
    try:
        for index, (last, stage, first) in enumerate(pieces):
            if index:
                work += timer() - mark
                suspended = True
                yield out
                suspended = False
                mark = timer()
                if alloc._live_cycle != token:
                    return
                if alloc._tree.orders.stale:  # (revocations() between pieces saw a new total)
                    alloc._tree.orders.rebuild(alloc._held_in, alloc._tree.guarantees.below)
                out = []
            reached = (last, first)
            for agent_id in visit[first : first + chunk]:
                if wanted is not None and agent_id not in wanted:
                    continue
                agent = agents.get(agent_id)
                if agent is not None and visitable(alloc, agent):
                    examined += not last
                    stage(agent, now, out)
            offers += len(out)
        reached = None
    finally:
        if reached is not None:  # ended early: what it did not reach (or held back) is looked at next cycle
            rest = visit[reached[1] :] if reached[0] == 0 else visit
            alloc._dirty.update(i for i in rest if i in agents and (wanted is None or i in wanted))
            alloc._dirty.update(held)
        if alloc._live_cycle == token:
            alloc._live_cycle = 0
            if not suspended:
                work += timer() - mark
            alloc._held = held
            alloc._last_offers = offers
            alloc._last_examined = examined
            alloc._runs.append(work * 1000.0)
            alloc._run_count += 1
    yield out


def begin_cycle(alloc: HierarchicalAllocator, now: float) -> tuple[list[str], set[str] | None]:
    """A cycle begins (and one under way, if any, ends): filters woken, orders drawn; the agents to visit."""
    if alloc._live_cycle:
        alloc._all_dirty = True  # the cycle under way ends here: what it did not reach, this one looks at
    alloc._cycle += 1
    alloc._live_cycle = alloc._cycle
    alloc._dirty.update(alloc._refusals.wake(now, alloc._agents, alloc._frameworks))
    sorter = alloc.sorter
    alloc._sync_total()
    sorter.begin_cycle(alloc._cycle)
    if alloc._tree.orders.stale or sorter.rekey_each_cycle:
        alloc._tree.orders.rebuild(alloc._held_in, alloc._tree.guarantees.below)
    visit = agents_to_visit(alloc)
    # News from here on (a recover, an agent added, a framework revived) is for the next cycle.
    alloc._dirty = set()
    alloc._all_dirty = False
    return visit


def agents_to_visit(alloc: HierarchicalAllocator) -> tuple[list[str], set[str] | None]:
    """The agents a cycle looks at, in the order rotated every cycle: (ids, wanted). Every agent when everything
    may have changed (or in a full scan), else only those with news or where something was held back: `wanted`
    (None: all of `ids`). Which of them have something to offer (`visitable`) is decided as the cycle reaches
    them, so that choosing them is spread over the pieces of a large cycle too."""
    if alloc._agent_ids_stale:
        alloc._agent_ids = list(alloc._agents)
        for i, agent_id in enumerate(alloc._agent_ids):
            alloc._agents[agent_id].seq = i
        alloc._agent_ids_stale = False
    ids = alloc._agent_ids
    count = len(ids)
    if not count:
        return [], None
    start = (alloc._cycle - 1) % count
    agents = alloc._agents
    if alloc._all_dirty or alloc._full_scan:
        return ids[start:] + ids[:start], None
    wanted = alloc._dirty | alloc._held
    if len(wanted) * 4 >= count:
        return ids[start:] + ids[:start], wanted
    chosen = [a for a in (agents.get(i) for i in wanted) if a is not None]
    chosen.sort(key=lambda a: (a.seq - start) % count)
    return [a.id for a in chosen], None


def visitable(alloc: HierarchicalAllocator, agent: AgentRecord) -> bool:
    """Whether the agent may have something to offer: active, with free resources, and not refused whole, as it
    is now, by every offerable (framework, role) (the full scan looks anyway: the property tests check that both
    make the same offers)."""
    if not agent.active or not agent.free:
        return False
    refusals = agent.refusals
    if refusals.resources is not agent.free or alloc._full_scan:
        return True
    root = alloc._root
    return refusals.in_subtree.get(root, 0) < root.candidates
