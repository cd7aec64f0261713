"""Who holds what: one `AgentBook` per agent, one `FrameworkBook` per framework.

An `AgentBook` owns an agent's resources: its total, what is free, and what each (framework, role) holds there. It
keeps the free-vector invariant: `free_vec` and `free_rvec` are always the scalars of `free` (all of them, and
the reserved part) in milli-units, and, while the quota headroom is tracked, `Headroom.available` is always the
free unreserved scalars of the active agents. `Resources` become vectors once, at its edge: `take`, `take_all`
and `give_back` are given the vectors when the caller has them, `set_free` computes them.

A `FrameworkBook` holds the same holdings by (agent, role), and their sums by role (what the sorter compares).
What one framework holds in one role on one agent is a `Holding`: the pieces it was given (offers, tasks) kept
apart, one `Resources` (the usual case: no list object) or a list of them, so that an offer declined whole comes
back as the piece it went out as and needs no arithmetic on port ranges. `add_holding`, `take_piece` and
`take_up_to` keep the two books' views of a holding the same object.
"""

from __future__ import annotations

from mesos_master.allocator import _vectors as vectors
from mesos_master.allocator._vectors import Vec
from mesos_master.allocator.quota import Headroom
from scheduler_sdk.resources import Resources

EMPTY = Resources.empty()
Holding = Resources | list[Resources]


def holding_total(holding: Holding) -> Resources:
    if type(holding) is not list:
        return holding  # type: ignore[return-value]
    total = EMPTY
    for piece in holding:
        total = total + piece
    return total


def find_piece(pieces: list[Resources], resources: Resources) -> int:
    """The index of a piece that is (or equals) `resources`; -1 when none is."""
    for i, piece in enumerate(pieces):
        if piece is resources:
            return i
    for i, piece in enumerate(pieces):
        if piece == resources:
            return i
    return -1


class AgentBook:
    __slots__ = (
        "active",
        "allocated",
        "free",
        "free_reserved",
        "free_rvec",
        "free_vec",
        "headroom",
        "id",
        "orphans",
        "reservations",
        "total",
        "total_reserved",
        "total_vec",
    )

    def __init__(self, agent_id: str, total: Resources, headroom: Headroom) -> None:
        self.id = agent_id
        self.headroom = headroom
        self.active = True
        self.allocated: dict[tuple[str, str], Holding] = {}  # (framework id, role) -> what it holds here
        self.orphans: dict[str, Resources] = {}  # held by frameworks not (yet) known to the allocator
        self.free = EMPTY
        self.free_vec: Vec = {}
        self.free_rvec: Vec = {}  # the reserved part of free_vec (empty on agents without reservations)
        self.free_reserved = False
        self.set_total(total)
        self.set_free(total)

    def set_total(self, total: Resources) -> None:
        """The total changed (the caller fits the holdings and the free resources into it)."""
        self.total = total
        self.total_vec = vectors.vector(total)
        self.reservations = vectors.reserved_by_role(total)
        self.total_reserved = vectors.has_reserved(total)

    def unreserved_free(self) -> Vec:
        return vectors.unreserved_of(self.free_vec, self.free_rvec)

    def set_free(self, free: Resources) -> None:
        """Set the free resources outright (the slow path: vectors computed again)."""
        old_unreserved = self.unreserved_free()
        self.free = free
        vec, rvec = vectors.vectors(free) if free else ({}, {})
        self.free_vec, self.free_rvec = vec, rvec
        self.free_reserved = self.total_reserved and vectors.has_reserved(free)
        if self.active and self.headroom.tracking:
            vectors.sub_from(self.headroom.available, old_unreserved)
            vectors.add_into(self.headroom.available, vectors.unreserved_of(vec, rvec))

    def take(self, offer: Resources, vec: Vec, rvec: Vec) -> None:
        """`offer` (part of the free resources, with its vectors) is allocated."""
        if offer is self.free:
            self.take_all()
            return
        self.free = self.free.subtract_clamped(offer)
        vectors.sub_from(self.free_vec, vec)
        if rvec:
            vectors.sub_from(self.free_rvec, rvec)
        if self.active and self.headroom.tracking:
            vectors.sub_from(self.headroom.available, vectors.unreserved_of(vec, rvec))
        self.free_reserved = self.total_reserved and vectors.has_reserved(self.free)

    def take_all(self) -> Resources:
        """Everything free is allocated (one offer of the whole free `Resources`, which it returns)."""
        offer = self.free
        if self.active and self.headroom.tracking:
            vectors.sub_from(self.headroom.available, self.free_vec if not self.free_rvec else self.unreserved_free())
        self.free = EMPTY
        self.free_vec = {}
        self.free_rvec = {}
        self.free_reserved = False
        return offer

    def give_back(self, resources: Resources, vec: Vec, rvec: Vec) -> None:
        """`resources` (with their vectors, which the book may keep) are free again. On an agent with nothing
        free they become its free resources as they are (the same object: a refusal of them is recognised)."""
        if self.active and self.headroom.tracking:
            vectors.add_into(self.headroom.available, vectors.unreserved_of(vec, rvec) if rvec else vec)
        if not self.free:
            self.free = resources
            self.free_vec = vec
            self.free_rvec = rvec
            self.free_reserved = bool(rvec) or (self.total_reserved and vectors.has_reserved(resources))
            return
        self.free = self.free + resources
        vectors.add_into(self.free_vec, vec)
        if rvec:
            vectors.add_into(self.free_rvec, rvec)
        self.free_reserved = self.total_reserved and vectors.has_reserved(self.free)

    def activate(self) -> None:
        if not self.active:
            self.active = True
            if self.headroom.tracking:
                vectors.add_into(self.headroom.available, self.unreserved_free())

    def deactivate(self) -> None:
        """Also what removing the agent does to the headroom."""
        if self.active:
            self.active = False
            if self.headroom.tracking:
                vectors.sub_from(self.headroom.available, self.unreserved_free())


class FrameworkBook:
    __slots__ = ("held", "id", "role_alloc")

    def __init__(self, framework_id: str) -> None:
        self.id = framework_id
        self.held: dict[tuple[str, str], Holding] = {}  # (agent id, role) -> what it holds there (the same pieces)
        self.role_alloc: dict[str, Vec] = {}  # role -> what it holds in that role

    def allocated(self) -> Resources:
        total = EMPTY
        for holding in self.held.values():
            total = total + holding_total(holding)
        return total


def add_holding(fw: FrameworkBook, agent: AgentBook, role: str, piece: Resources) -> None:
    """`piece` is held by `fw` in `role` on `agent` (both books; the caller accounts for its vectors)."""
    key = (fw.id, role)
    holding = agent.allocated.get(key)
    if holding is None:
        agent.allocated[key] = fw.held[(agent.id, role)] = piece
    elif type(holding) is list:
        holding.append(piece)
    else:
        agent.allocated[key] = fw.held[(agent.id, role)] = [holding, piece]  # type: ignore[list-item]


def take_piece(fw: FrameworkBook, agent: AgentBook, role: str, resources: Resources) -> Resources | None:
    """Take the piece that is (or equals) `resources` off what `fw` holds in `role` on `agent`; None when no
    piece is."""
    key = (fw.id, role)
    holding = agent.allocated.get(key)
    if holding is None:
        return None
    if type(holding) is not list:
        if holding is not resources and holding != resources:
            return None
        del agent.allocated[key]
        del fw.held[(agent.id, role)]
        return holding  # type: ignore[return-value]
    found = find_piece(holding, resources)
    if found < 0:
        return None
    given = holding.pop(found)
    if len(holding) == 1:
        agent.allocated[key] = fw.held[(agent.id, role)] = holding[0]
    return given


def take_up_to(fw: FrameworkBook, agent: AgentBook, role: str, resources: Resources) -> Resources | None:
    """Take (up to) `resources` off what `fw` holds in `role` on `agent`: a piece when one is them, else by
    arithmetic on the holding's total; returns what was taken (None: it held nothing there)."""
    given = take_piece(fw, agent, role, resources)
    if given is not None:
        return given
    key = (fw.id, role)
    holding = agent.allocated.get(key)
    if holding is None:
        return None
    held = holding_total(holding)
    if held is resources or held == resources:
        given, left = held, EMPTY
    else:
        given = vectors.intersection(held, resources)
        left = held.subtract_clamped(given)
    if left:
        agent.allocated[key] = fw.held[(agent.id, role)] = left
    else:
        del agent.allocated[key]
        del fw.held[(agent.id, role)]
    return given
