"""The allocation cycle of `HierarchicalAllocator` in pieces (`allocation_pieces`), and which agents a cycle looks
at (`agents_to_visit`). The allocator's own module; they read its state directly."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from mesos_master.allocator.base import Allocation
from mesos_master.allocator.records import AgentRecord

if TYPE_CHECKING:
    from mesos_master.allocator.hierarchical import HierarchicalAllocator


def allocation_pieces(alloc: HierarchicalAllocator, now: float, chunk: int) -> Iterator[list[Allocation]]:
    """See `HierarchicalAllocator.allocation_pieces`."""
    timer = alloc._timer
    started = timer()
    token = alloc._cycle + 1
    visit = begin_cycle(alloc, now)
    walk = alloc._walk
    walk.held = held = set[str]()
    stages: list[Callable[[AgentRecord, float, list[Allocation]], None]] = []
    if visit and alloc._root.candidates:
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
    offers = 0
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
            for agent in visit[first : first + chunk]:
                if agent.free and agent.active and agents.get(agent.id) is agent:
                    stage(agent, now, out)
            offers += len(out)
        reached = None
    finally:
        if reached is not None:  # ended early: what it did not reach (or held back) is looked at next cycle
            rest = visit[reached[1] :] if reached[0] == 0 else visit
            alloc._dirty.update(a.id for a in rest if agents.get(a.id) is a)
            alloc._dirty.update(held)
        if alloc._live_cycle == token:
            alloc._live_cycle = 0
            if not suspended:
                work += timer() - mark
            alloc._held = held
            alloc._last_offers = offers
            alloc._last_examined = len(visit)
            alloc._runs.append(work * 1000.0)
            alloc._run_count += 1
    yield out


def begin_cycle(alloc: HierarchicalAllocator, now: float) -> list[AgentRecord]:
    """A cycle begins (and one under way, if any, ends): filters woken, orders drawn; returns the agents to visit."""
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


def agents_to_visit(alloc: HierarchicalAllocator) -> list[AgentRecord]:
    """The agents a cycle looks at, in the order rotated every cycle: every active agent with free resources when
    everything may have changed (or in a full scan), else those with news or where something was held back;
    never one that every offerable (framework, role) refused whole, as it is now."""
    if alloc._agent_ids_stale:
        alloc._agent_ids = list(alloc._agents)
        for i, agent_id in enumerate(alloc._agent_ids):
            alloc._agents[agent_id].seq = i
        alloc._agent_ids_stale = False
    ids = alloc._agent_ids
    count = len(ids)
    if not count:
        return []
    start = (alloc._cycle - 1) % count
    agents = alloc._agents
    if alloc._all_dirty or alloc._full_scan:
        wanted = None
    else:
        wanted = alloc._dirty | alloc._held
        if not wanted:
            return []
    # An agent every offerable (framework, role) refused whole, as it is now, has nothing to offer (the full
    # scan looks anyway: the property tests check that both make the same offers).
    root = alloc._root
    everyone = root.candidates if not alloc._full_scan else 1 << 62

    if wanted is None or len(wanted) * 4 >= count:
        order = ids[start:] + ids[:start]
        picked = (agents[i] for i in order) if wanted is None else (agents[i] for i in order if i in wanted)
    else:
        picked = (a for a in (agents.get(i) for i in wanted) if a is not None)
    chosen = [
        a
        for a in picked
        if a.active and a.free and (a.refusals.resources is not a.free or a.refusals.in_subtree.get(root, 0) < everyone)
    ]
    if wanted is not None and len(wanted) * 4 < count:
        chosen.sort(key=lambda a: (a.seq - start) % count)
    return chosen
