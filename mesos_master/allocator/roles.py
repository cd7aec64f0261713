"""The role tree: `eng` is the parent of `eng/prod`. Each node keeps, as scalar vectors (milli-units by name):

- `alloc`: everything allocated (offered or used) to the role and its descendants (what DRF compares);
- `own`: what is allocated to exactly this role (its own frameworks' part, the "." leaf of Mesos' sorter),
  kept only while the role has children (a leaf's `own` is its `alloc`);
- `res_alloc`: the reserved part of `alloc` (usually empty: the unreserved part is `alloc - res_alloc`);
- `reserved`: the reservations for the role and its descendants on all agents, allocated or not.

Quota consumption is Mesos': reservations + unreserved allocations (`reserved` + `alloc - res_alloc`). A node also
keeps the two sorted orders a cycle walks: `order` (its children, plus "" for its own frameworks) and
`fw_order` (its offerable frameworks: active and not suppressed in this role).
"""

from __future__ import annotations

from mesos_master.allocator._vectors import Vec
from mesos_master.allocator.ordering import SortedOrder

SELF = ""  # the name of a node's own entry in its `order`, next to its children


class RoleNode:
    __slots__ = (
        "alloc",
        "candidates",
        "children",
        "frameworks",
        "fw_order",
        "g_children",
        "guarantee",
        "guaranteed_below",
        "headroom_required",
        "limit",
        "limited",
        "limited_below",
        "name",
        "order",
        "own",
        "own_takers",
        "parent",
        "quota_deps",
        "quota_root",
        "quota_root_deps",
        "res_alloc",
        "reserved",
        "room_margin",
        "short_of_room",
        "special",
        "stale_self",
        "takers",
        "weight",
    )

    def __init__(self, name: str, parent: RoleNode | None) -> None:
        self.name = name
        self.parent = parent
        self.children: dict[str, RoleNode] = {}  # by full name
        self.weight = 1.0
        self.alloc: Vec = {}
        self.own: Vec = {}
        self.res_alloc: Vec = {}
        self.reserved: Vec = {}
        self.guarantee: Vec = {}
        self.limit: Vec | None = None
        self.frameworks: set[str] = set()  # subscribed to exactly this role
        self.fw_order = SortedOrder()
        self.order = SortedOrder()
        self.candidates = 0  # offerable frameworks in this subtree
        self.special = 0  # offerable frameworks here with their own minimums or constraints
        self.limited: tuple[RoleNode, ...] = ()  # this node and its ancestors that have a limit
        self.quota_root: RoleNode | None = None  # the top-most node at or above this one with a guarantee
        self.headroom_required: Vec = {}  # for a quota root: what the required headroom counts for its subtree
        # Quota links, set when quotas change (and for a new node): the guaranteed nodes whose shortfall depends
        # on this node's consumption (those on its line, and those below a limited node on its line, whose limit
        # room it shares), and their quota roots.
        self.quota_deps: tuple[RoleNode, ...] = ()
        self.quota_root_deps: tuple[RoleNode, ...] = ()
        self.guaranteed_below: list[RoleNode] = []  # for a limited node: the guaranteed nodes in its subtree
        self.g_children: list[RoleNode] = []  # for a guaranteed node: its nearest guaranteed descendants
        self.limited_below: list[RoleNode] = []  # for a limited node: the nodes whose `limited` holds it
        # for a limited node: see `LimitRoom.room_margin` (lower bounds; None: below zero somewhere)
        self.room_margin: dict[str, int] | None = {}
        # Who may take an offer here despite the quota limits, by default minimum (one count per alternative of
        # the allocator's minimum, then one for frameworks with their own minimums): `own_takers` counts this
        # role's offerable frameworks for each alternative its limits leave room for, `takers` sums them over
        # the subtree. A cycle skips a subtree whose counts are zero for every alternative an agent could meet.
        self.own_takers: tuple[int, ...] = ()
        self.short_of_room = False  # its limits leave room for not every alternative (some `own_takers` < all)
        self.takers: list[int] = []
        self.stale_self = False  # its key in `order` (and its own key in its parent's) skipped while alone there

    def lineage(self) -> list[RoleNode]:
        """This node and its ancestors, the root excluded, nearest first."""
        out: list[RoleNode] = []
        node: RoleNode | None = self
        while node is not None and node.parent is not None:
            out.append(node)
            node = node.parent
        return out

    def unreserved(self, name: str) -> int:
        return self.alloc.get(name, 0) - self.res_alloc.get(name, 0)

    def unreserved_vec(self) -> Vec:
        out: Vec = {}
        for name, milli in self.alloc.items():
            left = milli - self.res_alloc.get(name, 0)
            if left > 0:
                out[name] = left
        return out

    def consumed(self, name: str) -> int:
        """Quota consumption: reservations plus unreserved allocations."""
        return self.reserved.get(name, 0) + self.alloc.get(name, 0) - self.res_alloc.get(name, 0)

    def shortfall(self) -> Vec:
        """What the role still lacks of its guarantee and may still get: max(0, guarantee - consumption), capped
        by the room left under its own and its ancestors' limits."""
        out: Vec = {}
        for name, milli in self.guarantee.items():
            left = milli - self.consumed(name)
            if left > 0:
                for limited in self.limited:
                    cap = limited.limit.get(name) if limited.limit is not None else None
                    if cap is not None:
                        room = cap - limited.consumed(name)
                        if room < left:
                            left = room
                if left > 0:
                    out[name] = left
        return out

    def limit_room(self, name: str) -> int | None:
        """How much more of `name` may be consumed under this node's limit (None: unlimited)."""
        if self.limit is None or name not in self.limit:
            return None
        return self.limit[name] - self.consumed(name)

    def walk(self) -> list[RoleNode]:
        """This node and every descendant, parents first."""
        out = [self]
        i = 0
        while i < len(out):
            out.extend(out[i].children.values())
            i += 1
        return out

    def __repr__(self) -> str:
        return f"RoleNode({self.name!r})"
