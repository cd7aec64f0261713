"""Revocation decisions (opt-in, `revocation=True`): the Mesos paper's answer to long tasks filling the cluster.

A role is *starved* when it has work waiting (an active framework, not suppressed in it, that declined nothing:
no live refusal filter there) and is

1. below its quota guarantee, by more than what is free in the cluster could cover; or
2. (with a sorter that measures fair shares: drf, fair) a top-level role below its weighted fair share among
   the top-level roles that hold something or wait, by more than what is free could cover. Shares are the
   sorter's (`Sorter.share`, the dominant share for drf): a victim gives back a slice of its unreserved
   allocation whose share equals the shortfall (an approximation: the starved role's dominant share grows by
   at most that much).

Victims are roles above their share: for (1) the roles outside the starved role's line (its siblings', its
ancestors' siblings' subtrees) holding unreserved resources beyond what their own guarantees protect; for (2)
the top-level roles above their fair share, never taken below it (nor below their guarantees). Only unreserved
resources are asked for: reservations belong to their role. The master picks the tasks (least recently started
first, revocable ones only) and kills them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mesos_master.allocator import _vectors as V
from mesos_master.allocator._vectors import Vec
from mesos_master.allocator.base import Revocation
from mesos_master.allocator.roles import RoleNode

if TYPE_CHECKING:
    from mesos_master.allocator.hierarchical import HierarchicalAllocator

_EPS = 1e-9


def decide(alloc: HierarchicalAllocator, now: float) -> list[Revocation]:
    root = alloc._root
    waiting: dict[RoleNode, bool] = {}

    def waits(node: RoleNode) -> bool:
        """Work waiting in the node or below it."""
        hit = waiting.get(node)
        if hit is None:
            hit = alloc.waiting(node, now) or any(waits(c) for c in node.children.values())
            waiting[node] = hit
        return hit

    def waiting_role(node: RoleNode) -> str:
        """The role that waits in the subtree (the node itself first, then its children by name)."""
        if alloc.waiting(node, now):
            return node.name
        for child in sorted(node.children.values(), key=lambda c: c.name):
            if waits(child):
                return waiting_role(child)
        return node.name

    protected_cache: dict[RoleNode, Vec] = {}

    def protected(node: RoleNode) -> Vec:
        """What the guarantees in this subtree protect: max(own guarantee, sum of the children's)."""
        got = protected_cache.get(node)
        if got is None:
            below: Vec = {}
            for c in node.children.values():
                V.add_into(below, protected(c))
            got = dict(below)
            for name, milli in node.guarantee.items():
                got[name] = max(got.get(name, 0), milli)
            protected_cache[node] = got
        return got

    taken: dict[str, Vec] = {}  # already asked of each victim in this decision

    def excess(node: RoleNode) -> Vec:
        """Unreserved resources the subtree holds beyond what its guarantees protect, less what is asked."""
        floor = V.positive_diff(protected(node), node.reserved)
        out = V.positive_diff(node.unreserved_vec(), floor)
        return V.positive_diff(out, taken.get(node.name, {}))

    asks: dict[tuple[str, str], Vec] = {}
    promised: dict[str, Vec] = {}  # what the decisions so far free for each top-level role

    def ask(victim: RoleNode, amounts: Vec, for_role: str) -> None:
        amounts = {n: m for n, m in amounts.items() if m > 0}
        if not amounts:
            return
        V.add_into(taken.setdefault(victim.name, {}), amounts)
        V.add_into(asks.setdefault((victim.name, for_role), {}), amounts)
        top = for_role.split("/", 1)[0] if for_role != "*" else for_role
        V.add_into(promised.setdefault(top, {}), amounts)

    free = dict(alloc._headroom)

    # 1. Guarantees.
    for starved in sorted(alloc._unsat, key=lambda n: n.name):
        if not waits(starved):
            continue
        need = starved.unsatisfied()
        for name in list(need):
            cover = min(need[name], free.get(name, 0))
            need[name] -= cover
            free[name] = free.get(name, 0) - cover
        need = {n: m for n, m in need.items() if m > 0}
        if not need:
            continue
        victims = _outside(starved)
        victims.sort(key=lambda v: (-alloc.sorter.share(excess(v)), v.name))
        for victim in victims:
            if not need:
                break
            spare = excess(victim)
            amounts = {n: min(m, spare.get(n, 0)) for n, m in need.items()}
            ask(victim, amounts, starved.name)
            need = V.positive_diff(need, amounts)

    # 2. Fair shares between top-level roles.
    sorter = alloc.sorter
    if sorter.fair_share_revocation:
        top = sorted(root.children.values(), key=lambda n: n.name)
        competing = [n for n in top if n.alloc or waits(n)]
        weights = sum(n.weight for n in competing)
        if weights > 0 and len(competing) > 1:
            fair = {n.name: n.weight / weights for n in competing}
            share = {}
            for n in competing:
                held = V.positive_diff(n.alloc, taken.get(n.name, {}))
                V.add_into(held, promised.get(n.name, {}))
                share[n.name] = sorter.share(held)
            free_share = sorter.share({n: m for n, m in free.items() if m > 0})
            starved_roles = [n for n in competing if waits(n) and share[n.name] < fair[n.name] - _EPS]
            starved_roles.sort(key=lambda n: (share[n.name] / fair[n.name], n.name))
            for starved in starved_roles:
                delta = fair[starved.name] - share[starved.name]
                covered = min(delta, free_share)
                delta -= covered
                free_share -= covered
                if delta <= _EPS:
                    continue
                victims = [n for n in competing if n is not starved and share[n.name] > fair[n.name] + _EPS]
                victims.sort(key=lambda n: (-(share[n.name] - fair[n.name]), n.name))
                for victim in victims:
                    if delta <= _EPS:
                        break
                    spare = excess(victim)
                    spare_share = sorter.share(spare)
                    give = min(delta, share[victim.name] - fair[victim.name], spare_share)
                    if give <= _EPS or spare_share <= 0:
                        continue
                    fraction = give / spare_share
                    amounts = {n: int(m * fraction) for n, m in spare.items()}
                    ask(victim, amounts, waiting_role(starved))
                    share[victim.name] -= give
                    delta -= give

    return [
        Revocation(victim, V.to_resources(amounts), for_role)
        for (victim, for_role), amounts in sorted(asks.items())
        if amounts
    ]


def _outside(node: RoleNode) -> list[RoleNode]:
    """The subtrees beside `node`'s line: its siblings, its parent's siblings, and so on up to the top."""
    out: list[RoleNode] = []
    current = node
    while current.parent is not None:
        out.extend(c for c in current.parent.children.values() if c is not current and c.unreserved_vec())
        current = current.parent
    return out
