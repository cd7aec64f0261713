"""Revocation decisions (opt-in, `revocation=True`): the Mesos paper's answer to long tasks filling the cluster.

The master tells `HierarchicalAllocator.revocations(now, tasks)` which tasks run (role, resources, start time,
the non-revocable label, whether a kill is already on its way); `decide` picks the ones to kill, and the master
only carries the kills out. Pure and deterministic: the same books and the same tasks give the same answer.
`decide` reads the allocator only through an `AllocatorView` (what is free, the role tree, the policy, who
waits), and this module imports nothing of the allocator's own.

A role is *starved* when it has work waiting (an active framework, not suppressed in it, that declined nothing:
no live refusal filter there) and

1. it is below its quota guarantee (its shortfall: what it lacks and its limits still let it take), by more than
   what is free could cover; or
2. (with a sorter that measures fair shares: drf, fair) it is a top-level role below its weighted fair share
   among the top-level roles that hold something or wait (shares as the sorter measures them, `Sorter.share`:
   the dominant share for drf), by more than what is free could cover.

For each starved role (deepest first for guarantees, then the least served first for fair shares) the tasks of
the roles above their share are taken least recently started first, each only if

- it gives back something the starved role lacks (unreserved resources: reservations stay with their role);
- it leaves its role and every role between it and the victim at or above their share: for (1) the guarantees
  of the victim's subtree (a subtree keeps max(its own guarantee, the sum of its children's)), for (2) also the
  victim's weighted fair share;
- it is revocable: a task labelled non-revocable is spared while the labelled tasks of its role (the nearest one
  on its line with a guarantee), counted oldest first, fit within that guarantee; beyond it, or in a role
  without a guarantee, the label does not protect;

until the starved role's need is covered. Victims for (1) are the roles outside the starved role's line (its
siblings' subtrees, its ancestors' siblings' subtrees); for (2) the other competing top-level roles above their
fair share. Tasks already being killed count as given back: their resources are counted as free and taken off
their roles, so nothing more is killed for them while the kills are in flight.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

from mesos_master.allocator import _vectors as vectors
from mesos_master.allocator._vectors import Vec
from mesos_master.allocator.base import AllocatedTask, Revocation
from mesos_master.allocator.quota import subtree_protection
from mesos_master.allocator.roles import RoleNode
from mesos_master.allocator.sorter import Sorter

_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class AllocatorView:
    """What a revocation decision reads of the allocator; it changes none of it."""

    free: Mapping[str, int]  # the free unreserved scalars of the active agents (the quota headroom's available)
    below_guarantee: Collection[RoleNode]  # the guaranteed roles below their guarantee
    root: RoleNode  # the role tree
    sorter: Sorter  # the policy: `share`, `fair_share_revocation`
    node: Callable[[str], RoleNode | None]  # a role's node, None when the tree has none
    waiting: Callable[[RoleNode, float], bool]  # whether a role has work waiting (see `HierarchicalAllocator.waiting`)


class _Candidate:
    __slots__ = ("line", "task", "unreserved", "vec")

    def __init__(self, task: AllocatedTask, line: list[RoleNode]) -> None:
        self.task = task
        self.line = line  # the task's role node and its ancestors, nearest first
        self.vec, rvec = vectors.vectors(task.resources)
        self.unreserved = vectors.unreserved_of(self.vec, rvec)


def decide(view: AllocatorView, now: float, tasks: Iterable[AllocatedTask]) -> list[Revocation]:
    """The tasks to kill now (see the module's docstring). `tasks` is read only when some role is starved."""
    if not _Decision(view, now, []).run():
        return []  # nobody starves even before counting what is already being killed
    running = list(tasks)
    decision = _Decision(view, now, running)
    decision.run()
    return decision.chosen


class _Decision:
    def __init__(self, view: AllocatorView, now: float, tasks: list[AllocatedTask]) -> None:
        self.view = view
        self.now = now
        self.free: Vec = dict(view.free)
        self.removed: dict[RoleNode, Vec] = {}  # all scalars taken off each node (and its ancestors)
        self.removed_unreserved: dict[RoleNode, Vec] = {}
        self.gained: dict[RoleNode, Vec] = {}  # what each starved node (and its ancestors) is about to get
        self.chosen: list[Revocation] = []
        self._waiting: dict[RoleNode, bool] = {}
        self._protected: dict[RoleNode, Vec] = {}
        self._taken: set[int] = set()
        lines: dict[str, list[RoleNode] | None] = {}
        self.candidates: list[_Candidate] = []
        for task in sorted(tasks, key=lambda t: (t.started_at, t.framework_id, t.task_id)):
            if task.role not in lines:
                node = view.node(task.role)
                lines[task.role] = node.lineage() if node is not None else None
            line = lines[task.role]
            if line is None:
                continue  # a role the allocator does not know holds nothing it could give
            candidate = _Candidate(task, line)
            if task.killing:
                self._take(candidate)
                vectors.add_into(self.free, candidate.unreserved)
            else:
                self.candidates.append(candidate)
        self._spare_labelled()

    # ------------------------------------------------------------------ the two kinds of starvation
    def run(self) -> bool:
        """Decide; True when some starved role still lacked something after what is free (and in flight)."""
        unmet = self._guarantees()
        if self.view.sorter.fair_share_revocation:
            unmet = self._fair_shares() or unmet
        return unmet

    def _guarantees(self) -> bool:
        unmet = False
        starved = sorted(self.view.below_guarantee, key=lambda n: (-len(n.lineage()), n.name))
        for node in starved:
            if not self._waits(node):
                continue
            need = vectors.positive_diff(node.shortfall(), self.gained.get(node, {}))
            if not need:
                continue
            need = self._cover_from_free(node, need)
            if not need:
                continue
            victims = set(_outside(node))
            for c in self.candidates:
                if not need:
                    break
                if id(c) in self._taken or not any(c.unreserved.get(name, 0) > 0 for name in need):
                    continue
                victim = next((n for n in c.line if n in victims), None)
                if victim is None or not self._keeps_guarantees(c, victim):
                    continue
                self._choose(c, node)
                need = vectors.positive_diff(need, c.unreserved)
            if need:
                unmet = True
        return unmet

    def _fair_shares(self) -> bool:
        root = self.view.root
        sorter = self.view.sorter
        top = sorted(root.children.values(), key=lambda n: n.name)
        competing = [n for n in top if n.alloc or self._waits(n)]
        weights = sum(n.weight for n in competing)
        if weights <= 0 or len(competing) < 2:
            return False
        fair = {n: n.weight / weights for n in competing}
        unmet = False
        starved = [n for n in competing if self._waits(n) and self._share(n) < fair[n] - _EPS]
        starved.sort(key=lambda n: (self._share(n) / fair[n], n.name))
        for node in starved:
            if self._share(node) >= fair[node] - _EPS:
                continue
            if self.free:
                held = self._held(node)
                base = sorter.share(held)
                with_free = dict(held)
                vectors.add_into(with_free, self.free)
                full = sorter.share(with_free)
                if full >= fair[node] - _EPS and full > base:
                    fraction = min(1.0, (fair[node] - base) / (full - base))
                    used = {name: min(milli, math.ceil(milli * fraction)) for name, milli in self.free.items()}
                    self._gain(node, used)
                    self.free = vectors.positive_diff(self.free, used)
                    continue
                self._gain(node, self.free)
                self.free = {}
            victims = {n for n in competing if n is not node and self._share(n) > fair[n] + _EPS}
            for c in self.candidates:
                if self._share(node) >= fair[node] - _EPS:
                    break
                if id(c) in self._taken or not c.unreserved:
                    continue
                victim = c.line[-1]
                if victim not in victims:
                    continue
                left = vectors.positive_diff(self._held(victim), c.vec)
                if sorter.share(left) < fair[victim] - _EPS or not self._keeps_guarantees(c, victim):
                    continue
                self._choose(c, node)
            if self._share(node) < fair[node] - _EPS:
                unmet = True
        return unmet

    # ------------------------------------------------------------------ helpers
    def _cover_from_free(self, node: RoleNode, need: Vec) -> Vec:
        used: Vec = {}
        for name, milli in need.items():
            cover = min(milli, self.free.get(name, 0))
            if cover > 0:
                used[name] = cover
        if used:
            self.free = vectors.positive_diff(self.free, used)
            self._gain(node, used)
        return vectors.positive_diff(need, used)

    def _keeps_guarantees(self, c: _Candidate, victim: RoleNode) -> bool:
        """Taking `c` leaves every node from its role up to `victim` at or above what its guarantees protect."""
        for n in c.line:
            floor = self._protected_of(n)
            if floor:
                gone = self.removed_unreserved.get(n, {})
                for name, milli in c.unreserved.items():
                    keep = floor.get(name, 0)
                    if keep > 0 and n.consumed(name) - gone.get(name, 0) - milli < keep:
                        return False
            if n is victim:
                break
        return True

    def _protected_of(self, node: RoleNode) -> Vec:
        """What the guarantees in this subtree protect (`quota.subtree_protection`)."""
        return subtree_protection(node, _guarantee_of, _children_of, self._protected)

    def _held(self, node: RoleNode) -> Vec:
        held = vectors.positive_diff(node.alloc, self.removed.get(node, {}))
        vectors.add_into(held, self.gained.get(node, {}))
        return held

    def _share(self, node: RoleNode) -> float:
        return self.view.sorter.share(self._held(node))

    def _gain(self, node: RoleNode, amounts: Vec) -> None:
        for n in node.lineage():
            vectors.add_into(self.gained.setdefault(n, {}), amounts)

    def _take(self, c: _Candidate) -> None:
        for n in c.line:
            vectors.add_into(self.removed.setdefault(n, {}), c.vec)
            vectors.add_into(self.removed_unreserved.setdefault(n, {}), c.unreserved)

    def _choose(self, c: _Candidate, for_node: RoleNode) -> None:
        self._taken.add(id(c))
        self._take(c)
        self._gain(for_node, c.unreserved)
        t = c.task
        self.chosen.append(Revocation(t.framework_id, t.task_id, t.role, self._waiting_role(for_node), t.resources))

    def _waiting_role(self, node: RoleNode) -> str:
        """The role that waits in the subtree (the node itself first, then its children by name)."""
        if self.view.waiting(node, self.now):
            return node.name
        for child in sorted(node.children.values(), key=lambda c: c.name):
            if self._waits(child):
                return self._waiting_role(child)
        return node.name

    def _waits(self, node: RoleNode) -> bool:
        """Work waiting in the node or below it."""
        hit = self._waiting.get(node)
        if hit is None:
            hit = self.view.waiting(node, self.now) or any(self._waits(c) for c in node.children.values())
            self._waiting[node] = hit
        return hit

    def _spare_labelled(self) -> None:
        """Drop from the candidates the labelled tasks the label protects: per role with a guarantee (the
        nearest on the task's line), oldest first, as long as they fit within that guarantee."""
        used: dict[RoleNode, Vec] = {}
        kept: list[_Candidate] = []
        for c in self.candidates:
            if c.task.non_revocable:
                quota = next((n for n in c.line if n.guarantee), None)
                if quota is not None:
                    mine = used.setdefault(quota, {})
                    after = {name: mine.get(name, 0) + c.vec.get(name, 0) for name in quota.guarantee}
                    if all(after[name] <= milli for name, milli in quota.guarantee.items()):
                        used[quota] = after
                        continue
            kept.append(c)
        self.candidates = kept


def _guarantee_of(node: RoleNode) -> Vec:
    return node.guarantee


def _children_of(node: RoleNode) -> Iterable[RoleNode]:
    return node.children.values()


def _outside(node: RoleNode) -> list[RoleNode]:
    """The subtrees beside `node`'s line: its siblings, its parent's siblings, and so on up to the top."""
    out: list[RoleNode] = []
    current = node
    while current.parent is not None:
        out.extend(c for c in current.parent.children.values() if c is not current and c.unreserved_vec())
        current = current.parent
    return out
