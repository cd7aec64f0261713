"""The allocation cycle in pieces (`allocation_pieces`): the same offers as the whole cycle when nothing happens
between pieces; when anything does (agents removed, deactivated or added, frameworks removed, deactivated,
suppressed, resources recovered, weights and quota set, a new cycle begun), nothing is offered twice, nothing is
lost, and every offer still respects what the model of test_properties checks. And through the master's core:
the offers a piece made are offers at once, the rest of the cycle works from the state as it is then."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from mesos_master.allocator import Allocation, DRFSorter, HierarchicalAllocator
from scheduler_sdk.resources import Resources
from tests.unit.mesos_master.allocator.test_properties import (
    AGENT_IDS,
    FW_IDS,
    ROLES,
    AllocatorMachine,
    Twin,
    make_sorter,
)
from tests.unit.mesos_master.test_cluster import World

P = Resources.parse


class PiecedAllocator(HierarchicalAllocator):
    """`allocate` as the concatenation of its pieces, one agent each."""

    def allocate(self, now: float) -> list[Allocation]:
        return [a for piece in self.allocation_pieces(now, chunk=1) for a in piece]


class SameOffersTwin(Twin):
    """The whole cycle and the cycle in pieces, driven alike: they must answer alike."""

    def __init__(self, policy: str, **kwargs: object) -> None:
        self.incremental = HierarchicalAllocator(sorter=make_sorter(policy), **kwargs)  # type: ignore[arg-type]
        self.full = PiecedAllocator(sorter=make_sorter(policy), **kwargs)  # type: ignore[arg-type]
        self.revocation = self.incremental.revocation


class PiecedSameOffers(AllocatorMachine):
    make_allocator = SameOffersTwin


TestPiecedSameOffers = PiecedSameOffers.TestCase
TestPiecedSameOffers.settings = settings(max_examples=25, stateful_step_count=40, deadline=None)


class Single:
    """One allocator, where the model expects a twin (its invariants read `incremental` and `full`)."""

    def __init__(self, policy: str, **kwargs: object) -> None:
        self.incremental = self.full = HierarchicalAllocator(sorter=make_sorter(policy), **kwargs)  # type: ignore[arg-type]
        self.revocation = self.incremental.revocation

    def __getattr__(self, name: str) -> Any:
        return getattr(self.incremental, name)


class ChangesBetweenPieces(AllocatorMachine):
    """A cycle in pieces stays suspended while any other rule runs; the model's checks hold for every piece."""

    make_allocator = Single
    pending: Iterator[list[Allocation]] | None = None

    @rule(dt=st.sampled_from([0.0, 1.0, 5.0]), chunk=st.sampled_from([1, 1, 2]))
    def begin_pieced_cycle(self, dt: float, chunk: int) -> None:
        self.now += dt
        self.pending = self.alloc.allocation_pieces(self.now, chunk=chunk)
        self.next_piece()

    @precondition(lambda self: self.pending is not None)
    @rule()
    def next_piece(self) -> None:
        assert self.pending is not None
        piece = next(self.pending, None)
        if piece is None:
            self.pending = None
            return
        for a in piece:
            self.check_offer(a)
            self.offers.append(a)

    @rule(
        data=st.data(),
        change=st.sampled_from(
            [
                "remove_agent",
                "deactivate_agent",
                "add_agent",
                "remove_framework",
                "deactivate_framework",
                "suppress",
                "decline",
                "decline_filtered",
                "weight",
                "quota",
            ]
        ),
        after=st.integers(0, 3),
    )
    def change_under_way(self, data: st.DataObject, change: str, after: int) -> None:
        """Every offer declined, a cycle one agent a piece; after `after` pieces, one change; then the rest."""
        for o in self.offers:
            self.recover(o, o.resources, None)
        self.offers = []
        self.now += 1.0
        self.pending = self.alloc.allocation_pieces(self.now, chunk=1)
        for _ in range(after + 1):
            if self.pending is not None:
                self.next_piece()
        agent_id = data.draw(st.sampled_from(AGENT_IDS))
        framework_id = data.draw(st.sampled_from(FW_IDS))
        if change == "remove_agent":
            self.remove_agent(agent_id)
        elif change == "deactivate_agent":
            self.toggle_agent(agent_id, False)
        elif change == "add_agent":
            self.add_agent(agent_id, P("cpus:2;mem:512;ports:[7000-7004]"), "a")
        elif change == "remove_framework":
            self.remove_framework(framework_id)
        elif change == "deactivate_framework":
            self.toggle_framework(framework_id, False)
        elif change == "suppress":
            self.suppress_or_revive(framework_id, True, data.draw(st.booleans()))
        elif change in ("decline", "decline_filtered") and self.offers:
            o = self.offers.pop(data.draw(st.integers(0, len(self.offers) - 1)))
            self.recover(o, o.resources, 3.0 if change == "decline_filtered" else None)
        elif change == "weight":
            self.alloc.update_weights({data.draw(st.sampled_from(ROLES)): 3.0})
        elif change == "quota":
            self.set_quota(
                data.draw(st.sampled_from(ROLES[1:])), "cpus:2", data.draw(st.sampled_from([None, "cpus:3"]))
            )
        while self.pending is not None:
            self.next_piece()

    def cycle(self) -> None:
        """The rules' event-triggered cycle: while a cycle is suspended, its next piece instead."""
        if self.pending is not None:
            self.next_piece()
        else:
            super().cycle()


TestChangesBetweenPieces = ChangesBetweenPieces.TestCase
TestChangesBetweenPieces.settings = settings(max_examples=40, stateful_step_count=40, deadline=None)


# ------------------------------------------------------------------------------------------- the allocator alone
def cluster(agents: int = 6, frameworks: int = 2) -> HierarchicalAllocator:
    alloc = HierarchicalAllocator(sorter=DRFSorter())
    for f in range(frameworks):
        alloc.add_framework(f"f{f}", ["*"], {})
    for i in range(agents):
        alloc.add_agent(f"a{i}", P("cpus:4;mem:1024"), {})
    return alloc


def test_pieces_of_chunk_agents() -> None:
    alloc = cluster(agents=10)
    pieces = list(alloc.allocation_pieces(0.0, chunk=3))
    assert [len(p) for p in pieces] == [3, 3, 3, 1]
    assert alloc.metrics()["allocation_runs"] == 1 and alloc.metrics()["allocation_last_offers"] == 10


def test_an_agent_removed_between_pieces_is_not_offered() -> None:
    alloc = cluster()
    cycle = alloc.allocation_pieces(0.0, chunk=2)
    first = next(cycle)
    alloc.remove_agent("a3")  # not reached yet
    rest = [a for piece in cycle for a in piece]
    offered = [a.agent_id for a in first + rest]
    assert "a3" not in offered and len(offered) == len(set(offered)) == 5


def test_a_new_cycle_ends_the_one_under_way_and_misses_nothing() -> None:
    alloc = cluster()
    old = alloc.allocation_pieces(0.0, chunk=2)
    first = next(old)
    second = alloc.allocate(1.0)  # the agents the old cycle did not reach
    assert next(old, None) is None  # ended
    assert sorted(a.agent_id for a in first + second) == [f"a{i}" for i in range(6)]
    assert alloc.allocate(2.0) == []


def test_a_cycle_closed_early_leaves_the_rest_for_the_next() -> None:
    alloc = cluster()
    cycle = alloc.allocation_pieces(0.0, chunk=2)
    first = next(cycle)
    cycle.close()  # (the term ended, say)
    rest = alloc.allocate(1.0)
    assert sorted(a.agent_id for a in first + rest) == [f"a{i}" for i in range(6)]


def test_resources_recovered_between_pieces_come_back_once() -> None:
    alloc = cluster(agents=4, frameworks=1)
    cycle = alloc.allocation_pieces(0.0, chunk=1)
    [a] = next(cycle)
    alloc.recover_resources(a.framework_id, a.agent_id, a.resources, None, 0.0, role=a.role)
    rest = [x for piece in cycle for x in piece]
    assert sorted(x.agent_id for x in rest) == ["a1", "a2", "a3"]  # this cycle does not go back to a0
    again = alloc.allocate(1.0)
    assert [(x.agent_id, x.resources) for x in again] == [(a.agent_id, a.resources)]  # the next one does


# ------------------------------------------------------------------------------------------- through the core
def test_the_master_cycle_in_pieces_with_changes_between_them() -> None:
    w = World()
    fids = [w.subscribe(f"fw{i}") for i in range(3)]
    aids = [w.register(f"h{i}") for i in range(40)]
    w.drain()
    pieces = w.master.allocation_pieces(0.0)  # a budget of 0: a piece per allocator piece
    next(pieces)
    made = list(w.master.offers.values())
    assert 0 < len(made) < 40  # what the first piece offered is offered already
    w.decline(made[0].framework_id, [made[0].id])  # declined meanwhile
    w.master.teardown(fids[2])  # a framework leaves: its offers are rescinded
    w.master.disconnect_agent(aids[-1])  # an agent not yet reached goes away
    for _ in pieces:
        pass
    cycle = w.master.last_allocation
    assert cycle.pieces > 2
    offers = list(w.master.offers.values())
    on_agent: dict[str, Resources] = {}
    for offer in offers:
        assert offer.framework_id in fids[:2] and offer.agent_id != aids[-1]
        on_agent[offer.agent_id] = on_agent.get(offer.agent_id, Resources.empty()) + offer.resources
    for agent_id, offered in on_agent.items():
        assert w.master.agents[agent_id].total.contains(offered)  # never one resource twice
    for fid in fids[:2]:  # the allocator's books are the master's offers: nothing lost
        mine = Resources.empty()
        for offer in offers:
            if offer.framework_id == fid:
                mine = mine + offer.resources
        assert w.allocator.allocated(fid) == mine
    # The next cycle offers what came back (the declined offer, the torn-down framework's): nothing is lost.
    w.master.allocate()
    assert len(w.master.offers) == 39
