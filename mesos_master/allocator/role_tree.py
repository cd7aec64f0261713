"""`RoleTree`: the role nodes (`roles.RoleNode`) with everything kept per role: what is allocated and reserved
(`account`, `track_reservations`), the sorted orders a cycle walks (`role_orders.RoleOrders`), the quota books
(`quota.Guarantees`, `quota.Headroom`, `quota.LimitRoom`), and how many offerable frameworks each subtree has.
The allocator tells it what changed; it keeps every per-role figure consistent with that."""

from __future__ import annotations

from collections.abc import Callable

from mesos_master.allocator import _vectors as vectors
from mesos_master.allocator._vectors import Vec
from mesos_master.allocator.base import Quota
from mesos_master.allocator.books import AgentBook, FrameworkBook, add_holding
from mesos_master.allocator.quota import Guarantees, Headroom, LimitRoom, link_quota
from mesos_master.allocator.role_orders import RoleOrders
from mesos_master.allocator.roles import SELF, RoleNode
from mesos_master.allocator.sorter import Sorter
from scheduler_sdk.resources import UNRESERVED, Resources


class RoleTree:
    __slots__ = ("guarantees", "headroom", "nodes", "orders", "room", "root")

    def __init__(self, sorter: Sorter, minimums: tuple[Vec, ...], *, track_headroom: bool) -> None:
        self.root = RoleNode("", None)
        self.nodes: dict[str, RoleNode] = {}
        self.room = LimitRoom(minimums)
        self.root.takers = self.room.zeros()
        self.headroom = Headroom(track_headroom)
        self.orders = RoleOrders(sorter, self.root)
        self.guarantees = Guarantees(self.headroom, self.orders)

    def node(self, role: str) -> RoleNode:
        """The role's node, made (with its ancestors) when new."""
        node = self.nodes.get(role)
        if node is not None:
            return node
        parent = self.root
        if "/" in role and role != UNRESERVED:
            parent = self.node(role.rsplit("/", 1)[0])
        node = RoleNode(role, parent)
        node.own_takers = tuple(self.room.zeros())
        node.takers = self.room.zeros()
        first_child = not parent.children and parent.parent is not None
        if first_child:
            parent.own = dict(parent.alloc)  # from now on its own frameworks' part is kept apart
        parent.children[role] = node
        self.nodes[role] = node
        link_quota(node)
        self.orders.added_role(node, first_child)
        return node

    def limited_of(self, role: str) -> tuple[RoleNode, ...]:
        """The limited nodes on the role's line (also for a role the tree does not have yet)."""
        node = self.nodes.get(role)
        if node is not None:
            return node.limited
        parts = role.split("/") if role != UNRESERVED else [role]
        out: list[RoleNode] = []
        for i in range(len(parts), 0, -1):
            n = self.nodes.get("/".join(parts[:i]))
            if n is not None:
                out.extend(a for a in n.lineage() if a.limit is not None)
                break
        return tuple(out)

    # ------------------------------------------------------------------ what is allocated
    def book(self, fw: FrameworkBook, agent: AgentBook, role: str, resources: Resources, vec: Vec, rvec: Vec) -> None:
        """`resources` (with their vectors) are held by `fw` in `role` on `agent`: both books and the roles'
        (the caller takes them off the agent's free resources)."""
        add_holding(fw, agent, role, resources)
        self.account(fw, role, vec, rvec, +1)

    def account(self, fw: FrameworkBook, role: str, vec: Vec, rvec: Vec, sign: int) -> None:
        """Add (or take off) an allocation's vectors to the framework's and the roles' books; move them in
        the orders."""
        node = self.nodes.get(role) or self.node(role)
        mine = fw.role_alloc.get(role)
        if mine is None:
            mine = fw.role_alloc[role] = {}
        n: RoleNode = node
        if sign > 0:
            if node.children:
                vectors.add_into(node.own, vec)
            alloc = node.alloc
            for name, milli in vec.items():  # the framework's and its role's in one loop (the hot path)
                mine[name] = mine.get(name, 0) + milli
                alloc[name] = alloc.get(name, 0) + milli
            if rvec:
                vectors.add_into(node.res_alloc, rvec)
            n = node.parent  # type: ignore[assignment]
            while n.parent is not None:
                alloc = n.alloc
                for name, milli in vec.items():
                    alloc[name] = alloc.get(name, 0) + milli
                if rvec:
                    vectors.add_into(n.res_alloc, rvec)
                n = n.parent
        else:
            vectors.sub_from(mine, vec)
            if node.children:
                vectors.sub_from(node.own, vec)
            while n.parent is not None:
                vectors.sub_from(n.alloc, vec)
                if rvec:
                    vectors.sub_from(n.res_alloc, rvec)
                n = n.parent
        guaranteed = self.guarantees.guaranteed
        if (guaranteed or node.limited) and (not rvec or vectors.positive_diff(vec, rvec)):
            if guaranteed:
                self.guarantees.refresh(node)
            if node.limited:
                self.room.refresh_room(node, vec, sign)
        # Move the framework, the role and its ancestors in their orders (`RoleOrders`; inlined: the hot path).
        orders = self.orders
        if orders.stale:
            return
        sorter = orders.sorter
        order = node.fw_order
        if len(order.keys) > 1:
            if fw.id in order.keys:
                order.update(fw.id, sorter.key(fw.id, mine, 1.0, is_role=False))
        else:
            order.stale = True
        if node.children:
            node.order.update(SELF, sorter.key(node.name, node.own, node.weight, is_role=True))
        below = orders.below_guarantee.keys
        n = node
        while n.parent is not None:
            order = n.parent.order
            first = below and n.name in below
            if len(order.keys) > 1 or first:
                key = sorter.key(n.name, n.alloc, n.weight, is_role=True)
                if len(order.keys) > 1:
                    order.update(n.name, key)
                else:
                    order.stale = True
                if first:
                    orders.below_guarantee.update(n.name, key)
            else:
                order.stale = True
            n = n.parent

    def track_reservations(self, reservations: dict[str, Vec], sign: int) -> None:
        """An agent's reservations (by role) came (+1) or went (-1)."""
        change = vectors.add_into if sign > 0 else vectors.sub_from
        for role, vec in reservations.items():
            node = self.node(role)
            for n in node.lineage():
                change(n.reserved, vec)
            if self.guarantees.guaranteed:
                self.guarantees.refresh(node)
            if node.limited:
                self.room.refresh_room(node, None, sign)

    def count_offerable(self, node: RoleNode, step: int) -> None:
        """A framework became offerable in `node` (+1) or stopped being (-1)."""
        n: RoleNode | None = node
        while n is not None:
            n.candidates += step
            if n.parent is not None and n.candidates == (1 if step > 0 else 0):
                # A role with no offerable framework in its subtree is left out of the orders a cycle walks.
                self.orders.set_visible(n, step > 0)
            n = n.parent
        self.room.refresh_takers(node)

    # ------------------------------------------------------------------ operator policy
    def set_weight(self, role: str, weight: float) -> None:
        node = self.node(role)
        node.weight = weight
        if not self.orders.stale:
            self.orders.rekey(node)

    def set_quota(self, role: str, quota: Quota | None, revocation: bool, count_available: Callable[[], Vec]) -> None:
        node = self.node(role)
        if quota is None:
            node.guarantee, node.limit = {}, None
        else:
            node.guarantee = vectors.vector(quota.guarantee)
            node.limit = None if quota.limit is None else vectors.vector(quota.limit)
        self.guarantees.rebuild(self.root, revocation, count_available)
        node.room_margin = self.room.room_margin(node)
        for below in node.walk():  # only the rooms in its subtree changed
            self.room.refresh_takers(below)
