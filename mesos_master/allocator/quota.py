"""Validation of a quota change against the whole role tree (pure; the master maps ValueError to a call error).

Hierarchical quota, as in Mesos: what a role holds counts toward every ancestor's quota, so

1. a role's guarantee must not exceed its own limit;
2. the guarantees in a role's subtree (each subtree counted as the larger of its own guarantee and the sum of
   its children's) must fit within the role's limit: a child cannot be guaranteed what an ancestor's limit
   forbids it to hold;
3. where a role has a guarantee, the guarantees of its children together must fit within it (in every
   resource): a child's guarantee is part of its parent's, not more.

A configuration that passes stays valid when quotas are removed, so the registry's quotas can be applied again in
any order. The allocator copes with an invalid configuration anyway (an older registry): it holds back only
what a role can still get within its ancestors' limits.
"""

from __future__ import annotations

from collections.abc import Mapping

from mesos_master.allocator import _vectors as V
from mesos_master.allocator._vectors import Vec
from mesos_master.allocator.base import Quota
from scheduler_sdk.resources import UNRESERVED


def _parent(role: str) -> str | None:
    if role == UNRESERVED or "/" not in role:
        return None
    return role.rsplit("/", 1)[0]


def _line(role: str) -> list[str]:
    """The role and its ancestors, nearest first."""
    out = [role]
    parent = _parent(role)
    while parent is not None:
        out.append(parent)
        parent = _parent(parent)
    return out


def _show(vec: Vec) -> str:
    return str(V.to_resources(vec)) or "nothing"


def validate_quota(quotas: Mapping[str, Quota], role: str, quota: Quota | None) -> None:
    """Raise ValueError, saying why, when setting `quota` for `role` (None: removing it) on top of `quotas`
    (role -> quota, as set now) would break one of the rules above."""
    new = dict(quotas)
    if quota is None:
        new.pop(role, None)
    else:
        new[role] = quota
        if quota.limit is not None and not quota.limit.contains(quota.guarantee.only(*quota.limit.names())):
            raise ValueError(f"quota of {role!r}: the guarantee {quota.guarantee} exceeds the limit {quota.limit}")
    guarantee = {r: V.vector(q.guarantee) for r, q in new.items() if q.guarantee}
    limit = {r: V.vector(q.limit) for r, q in new.items() if q.limit is not None}
    children: dict[str, set[str]] = {}
    for r in guarantee:
        for child, parent in zip(_line(r), _line(r)[1:], strict=False):
            children.setdefault(parent, set()).add(child)
    protected_cache: dict[str, Vec] = {}

    def protected(r: str) -> Vec:
        got = protected_cache.get(r)
        if got is None:
            got = {}
            for child in children.get(r, ()):
                V.add_into(got, protected(child))
            for name, milli in guarantee.get(r, {}).items():
                got[name] = max(got.get(name, 0), milli)
            protected_cache[r] = got
        return got

    # Only the subtrees on the changed role's line changed: check the roles on it (and the role's children,
    # whose sum its own new guarantee must hold).
    for r in _line(role):
        cap = limit.get(r)
        if cap is not None:
            inside = protected(r)
            over = {name: milli for name, milli in inside.items() if name in cap and milli > cap[name]}
            if over:
                raise ValueError(
                    f"quota of {role!r}: the guarantees within {r!r} ({_show(inside)}) exceed the limit of "
                    f"{r!r} ({_show(cap)})"
                )
        own = guarantee.get(r)
        if own is not None:
            below: Vec = {}
            for child in children.get(r, ()):
                V.add_into(below, protected(child))
            over = {name: milli for name, milli in below.items() if milli > own.get(name, 0)}
            if over:
                raise ValueError(
                    f"quota of {role!r}: the guarantees of the children of {r!r} ({_show(below)}) exceed its own "
                    f"guarantee ({_show(own)})"
                )
