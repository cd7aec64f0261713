"""The sorted orders a cycle walks, kept by the sorter's keys (see `ordering.SortedOrder`):

- each role node's `order`: its children, plus `SELF` for its own frameworks; a child with no offerable framework
  in its subtree is hidden;
- each role node's `fw_order`: its offerable frameworks (active, not suppressed in the role);
- `below_guarantee`: the guaranteed roles below their guarantee (stage 1 of a cycle), each by the key its parent's
  order keeps for it.

A client is moved only when its allocation changes (`role_tree.RoleTree.account` moves it, on the hot path),
instead of sorting every client for every agent. An order left alone with one client is not moved at all
(`stale`): its keys are drawn again before a second client joins it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from mesos_master.allocator._vectors import Vec
from mesos_master.allocator.ordering import SortedOrder
from mesos_master.allocator.roles import SELF, RoleNode
from mesos_master.allocator.sorter import Sorter


class RoleOrders:
    __slots__ = ("below_guarantee", "root", "sorter", "stale")

    def __init__(self, sorter: Sorter, root: RoleNode) -> None:
        self.sorter = sorter
        self.root = root
        self.below_guarantee = SortedOrder()
        self.stale = True  # every order must be rebuilt before the next cycle

    # ------------------------------------------------------------------ keys
    def framework_key(self, framework_id: str, held: Vec) -> object:
        return self.sorter.key(framework_id, held, 1.0, is_role=False)

    def self_key(self, node: RoleNode) -> object:
        return self.sorter.key(node.name, node.own if node.children else node.alloc, node.weight, is_role=True)

    def role_key(self, node: RoleNode) -> object:
        return self.sorter.key(node.name, node.alloc, node.weight, is_role=True)

    def below_guarantee_key(self, node: RoleNode) -> object:
        """A role's key in stage 1: the one its parent's order keeps (drawn again only where that is stale)."""
        assert node.parent is not None
        order = node.parent.order
        if not order.stale and node.name in order.keys:
            return order.keys[node.name]
        return self.role_key(node)

    # ------------------------------------------------------------------ rebuilding
    def rebuild(self, held_in: Callable[[str, str], Vec], below: Iterable[RoleNode]) -> None:
        """Every order drawn again. `held_in(framework id, role)`: what the framework holds in the role."""
        for node in self.root.walk():
            # Keys are drawn in this order (children, the role itself, its frameworks): random draws depend on it.
            self._rebuild_role_order(node)
            if node.parent is not None:
                self._rebuild_framework_order(node, held_in)
        self.rebuild_below_guarantee(below)
        self.stale = False

    def rebuild_below_guarantee(self, below: Iterable[RoleNode]) -> None:
        # By name, so that policies drawing keys (random) draw them in the same order every time.
        ordered = sorted(below, key=lambda n: n.name)
        self.below_guarantee.rebuild(
            {n.name: self.below_guarantee_key(n) for n in ordered}, hidden=[n.name for n in ordered if not n.candidates]
        )

    def fresh_framework_order(self, node: RoleNode, held_in: Callable[[str, str], Vec]) -> None:
        if node.fw_order.stale:
            self._rebuild_framework_order(node, held_in)

    def fresh_role_order(self, node: RoleNode) -> None:
        if node.order.stale:
            self._rebuild_role_order(node)

    def _rebuild_framework_order(self, node: RoleNode, held_in: Callable[[str, str], Vec]) -> None:
        node.fw_order.rebuild({fid: self.framework_key(fid, held_in(fid, node.name)) for fid in node.fw_order.keys})

    def _rebuild_role_order(self, node: RoleNode) -> None:
        keys: dict[str, object] = {name: self.role_key(c) for name, c in node.children.items()}
        if node.parent is not None:
            keys[SELF] = self.self_key(node)
        node.order.rebuild(keys, hidden=[name for name, c in node.children.items() if not c.candidates])

    # ------------------------------------------------------------------ changes
    def added_role(self, node: RoleNode, first_child: bool) -> None:
        """A new role node (no offerable framework yet) joins its parent's order."""
        if self.stale:
            return
        parent = node.parent
        assert parent is not None
        node.order.add(SELF, self.self_key(node))
        if first_child:
            parent.order.stale = True  # its own key was not kept up to date while it was alone
        self.fresh_role_order(parent)
        parent.order.add(node.name, self.role_key(node), hidden=True)

    def set_visible(self, node: RoleNode, visible: bool) -> None:
        """The node's subtree gained its first offerable framework (visible) or lost its last one."""
        assert node.parent is not None
        if visible:
            node.parent.order.show(node.name)
            self.below_guarantee.show(node.name)
        else:
            node.parent.order.hide(node.name)
            self.below_guarantee.hide(node.name)

    def now_below_guarantee(self, node: RoleNode) -> None:
        if not self.stale:
            self.below_guarantee.add(node.name, self.below_guarantee_key(node), hidden=not node.candidates)

    def no_longer_below_guarantee(self, node: RoleNode) -> None:
        self.below_guarantee.remove(node.name)

    def rekey(self, node: RoleNode) -> None:
        """The node's weight changed: move it in its parent's order (and in stage 1's)."""
        node.order.update(SELF, self.self_key(node))
        assert node.parent is not None
        key = self.role_key(node)
        node.parent.order.update(node.name, key)
        node.order.stale = node.parent.order.stale = False
        if node.name in self.below_guarantee.keys:
            self.below_guarantee.update(node.name, key)
