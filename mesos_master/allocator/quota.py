"""Quota: validation of a change against the whole role tree, and the allocator's quota books.

`validate_quota` is pure (the master maps ValueError to a call error). `Headroom`, `Guarantees` and `LimitRoom` are
the allocator's mechanics: the headroom held back for unmet guarantees, the guaranteed roles below their
guarantee (stage 1 of a cycle), and the room quota limits leave (so that a cycle skips roles that have none).

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

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import TypeVar

from mesos_master.allocator import _vectors as vectors
from mesos_master.allocator._vectors import Vec
from mesos_master.allocator.base import Quota
from mesos_master.allocator.role_orders import RoleOrders
from mesos_master.allocator.roles import RoleNode
from scheduler_sdk.quoting import quoted
from scheduler_sdk.resources import UNRESERVED, Resources

Role = TypeVar("Role", bound=Hashable)


def subtree_protection(
    role: Role,
    guarantee_of: Callable[[Role], Mapping[str, int]],
    children_of: Callable[[Role], Iterable[Role]],
    cache: dict[Role, Vec],
) -> Vec:
    """What the guarantees in `role`'s subtree protect: max(its own guarantee, the sum of its children's
    protection), by resource. `cache` keeps the answers for the subtrees (pass the same dict for one tree)."""
    got = cache.get(role)
    if got is None:
        got = {}
        for child in children_of(role):
            vectors.add_into(got, subtree_protection(child, guarantee_of, children_of, cache))
        for name, milli in guarantee_of(role).items():
            got[name] = max(got.get(name, 0), milli)
        cache[role] = got
    return got


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
    return str(vectors.to_resources(vec)) or "nothing"


def validate_quota(quotas: Mapping[str, Quota], role: str, quota: Quota | None) -> None:
    """Raise ValueError, saying why, when setting `quota` for `role` (None: removing it) on top of `quotas`
    (role -> quota, as set now) would break one of the rules above."""
    new = dict(quotas)
    if quota is None:
        new.pop(role, None)
    else:
        new[role] = quota
        if quota.limit is not None and not quota.limit.contains(quota.guarantee.only(*quota.limit.names())):
            raise ValueError(
                f"quota of {quoted(role)}: the guarantee {quota.guarantee} exceeds the limit {quota.limit}"
            )
    guarantee = {r: vectors.vector(q.guarantee) for r, q in new.items() if q.guarantee}
    limit = {r: vectors.vector(q.limit) for r, q in new.items() if q.limit is not None}
    children: dict[str, set[str]] = {}
    for r in guarantee:
        for child, parent in zip(_line(r), _line(r)[1:], strict=False):
            children.setdefault(parent, set()).add(child)
    protected_cache: dict[str, Vec] = {}

    def protected(r: str) -> Vec:
        return subtree_protection(r, lambda x: guarantee.get(x, {}), lambda x: children.get(x, ()), protected_cache)

    # Only the subtrees on the changed role's line changed: check the roles on it (and the role's children,
    # whose sum its own new guarantee must hold).
    for r in _line(role):
        cap = limit.get(r)
        if cap is not None:
            inside = protected(r)
            over = {name: milli for name, milli in inside.items() if name in cap and milli > cap[name]}
            if over:
                raise ValueError(
                    f"quota of {quoted(role)}: the guarantees within {quoted(r)} ({_show(inside)}) exceed the limit of "
                    f"{quoted(r)} ({_show(cap)})"
                )
        own = guarantee.get(r)
        if own is not None:
            below: Vec = {}
            for child in children.get(r, ()):
                vectors.add_into(below, protected(child))
            over = {name: milli for name, milli in below.items() if milli > own.get(name, 0)}
            if over:
                raise ValueError(
                    f"quota of {quoted(role)}: the guarantees of the children of {quoted(r)} ({_show(below)}) "
                    f"exceed its own guarantee ({_show(own)})"
                )


# ===================================================================================== the allocator's quota books
class Headroom:
    """The quota headroom: what the unmet guarantees of the top-most guaranteed roles require held back
    (`required`), and the free unreserved scalars of the active agents (`available`, kept up to date by the
    agents' books while `tracking`: while quota or revocation needs it)."""

    __slots__ = ("available", "required", "tracking")

    def __init__(self, tracking: bool) -> None:
        self.tracking = tracking
        self.available: Vec = {}
        self.required: Vec = {}


class Guarantees:
    """The guaranteed roles, those below their guarantee (stage 1 of a cycle), and what the headroom requires
    for them; `allowed` is what the limits and the headroom let a role be offered now."""

    __slots__ = ("below", "guaranteed", "headroom", "orders")

    def __init__(self, headroom: Headroom, orders: RoleOrders) -> None:
        self.headroom = headroom
        self.orders = orders
        self.guaranteed: set[RoleNode] = set()
        self.below: set[RoleNode] = set()  # guaranteed roles below their guarantee

    def rebuild(self, root: RoleNode, revocation: bool, count_available: Callable[[], Vec]) -> None:
        """Quotas changed: every quota link, requirement and shortfall drawn again."""
        nodes = root.walk()[1:]
        self.guaranteed = {n for n in nodes if n.guarantee}
        headroom = self.headroom
        track = bool(self.guaranteed) or revocation
        if track and not headroom.tracking:
            headroom.available = count_available()
        headroom.tracking = track
        for n in nodes:
            n.guaranteed_below = []
            n.g_children = []
            n.limited_below = []
            n.headroom_required = {}
        for g in sorted(self.guaranteed, key=lambda n: n.name):
            for a in g.lineage():
                if a.limit is not None:
                    a.guaranteed_below.append(g)
            above = g.parent
            while above is not None and above.parent is not None and not above.guarantee:
                above = above.parent
            if above is not None and above.parent is not None:
                above.g_children.append(g)
        for n in nodes:
            link_quota(n)
        headroom.required = {}
        for n in self.guaranteed:
            if n.quota_root is n:
                n.headroom_required = requirement(n)
                vectors.add_into(headroom.required, n.headroom_required)
        self.below = {n for n in self.guaranteed if n.shortfall()}
        if not self.orders.stale:
            self.orders.rebuild_below_guarantee(self.below)

    def refresh(self, node: RoleNode) -> None:
        """`node`'s consumption changed: update the required headroom and the roles below their guarantee."""
        deps = node.quota_deps
        if not deps:
            return
        required = self.headroom.required
        for root in node.quota_root_deps:
            new = requirement(root)
            if new != root.headroom_required:
                vectors.sub_from(required, root.headroom_required)
                vectors.add_into(required, new)
                root.headroom_required = new
        below = self.below
        for n in deps:
            if n.shortfall():
                if n not in below:
                    below.add(n)
                    self.orders.now_below_guarantee(n)
            elif n in below:
                below.discard(n)
                self.orders.no_longer_below_guarantee(n)

    def allowed(self, node: RoleNode, uvec: Vec, quota_node: RoleNode | None) -> Vec | None:
        """Caps on the unreserved scalars `node` may be offered now: its (and its ancestors') limits, and the
        quota headroom (what exceeds the unmet guarantees). In stage 1 (`quota_node`), the part that helps
        toward the guarantee is exempt from the headroom. None: nothing to offer in stage 1."""
        allowed: Vec = {}
        guaranteed: Vec = {}
        if quota_node is not None:
            for name, short in quota_node.shortfall().items():
                have = uvec.get(name, 0)
                if have > 0:
                    guaranteed[name] = min(have, short)
            if not guaranteed:
                return None
        required = self.headroom.required
        if required:
            available = self.headroom.available
            for name, need in required.items():
                if uvec.get(name, 0) > 0:
                    allowed[name] = guaranteed.get(name, 0) + max(0, available.get(name, 0) - need)
        for limited in node.limited:
            assert limited.limit is not None
            for name in limited.limit:
                room = limited.limit_room(name)
                assert room is not None
                room = max(0, room)
                if name in allowed:
                    if room < allowed[name]:
                        allowed[name] = room
                elif uvec.get(name, 0) > room:
                    allowed[name] = room
        return allowed


def link_quota(node: RoleNode) -> None:
    """Set the node's quota links from its line (see `RoleNode.quota_deps`)."""
    lineage = node.lineage()
    node.limited = tuple(a for a in lineage if a.limit is not None)
    for limited in node.limited:
        limited.limited_below.append(node)
    node.quota_root = next((a for a in reversed(lineage) if a.guarantee), None)
    deps = {a for a in lineage if a.guarantee}
    for limited in node.limited:
        deps.update(limited.guaranteed_below)
    ordered = sorted(deps, key=lambda n: n.name)
    node.quota_deps = tuple(ordered)
    roots = {d.quota_root for d in ordered if d.quota_root is not None}
    node.quota_root_deps = tuple(sorted(roots, key=lambda n: n.name))


def requirement(node: RoleNode) -> Vec:
    """The headroom a guaranteed node's subtree needs: the larger of its own shortfall and the sum of its
    guaranteed descendants' (a child may be guaranteed more of a resource than its parent), within the room its
    limits leave."""
    own = node.shortfall()
    if not node.g_children:
        return own
    below: Vec = {}
    for child in node.g_children:
        vectors.add_into(below, requirement(child))
    for name, milli in below.items():
        if milli > own.get(name, 0):
            own[name] = milli
    for limited in node.limited:
        assert limited.limit is not None
        for name, cap in limited.limit.items():
            if name in own:
                room = cap - limited.consumed(name)
                if room <= 0:
                    del own[name]
                elif room < own[name]:
                    own[name] = room
    return own


class LimitRoom:
    """Who may still take an offer despite the quota limits (`RoleNode.takers`), so that a cycle skips the roles
    whose limits leave no room for what an agent has, instead of cutting an offer down for each of them.

    For each alternative of the default minimum (any one suffices) a role counts its offerable frameworks when
    the room under its limits (and its ancestors') still holds that alternative; frameworks with their own
    minimums count for every alternative, and again in the last place (whatever an agent has, they are tried).
    `short_of_room` counts the roles whose limits close some alternative: while it is 0, nothing is skipped and
    nothing is worked out per agent."""

    __slots__ = ("min_names", "minimums", "short_of_room")

    def __init__(self, minimums: tuple[Vec, ...]) -> None:
        self.minimums = minimums
        self.short_of_room = 0
        self.min_names: dict[str, int] = {}  # every name the minimums ask for, with the most any asks
        for minimum in minimums:
            for name, milli in minimum.items():
                self.min_names[name] = max(milli, self.min_names.get(name, 0))

    def zeros(self) -> list[int]:
        return [0] * (len(self.minimums) + 1)

    def own_takers(self, node: RoleNode) -> tuple[int, ...]:
        """`RoleNode.own_takers` drawn again."""
        count = len(node.fw_order.keys)
        if not count or node.special:
            return (count,) * (len(self.minimums) + 1)
        if not node.limited:
            return (count,) * len(self.minimums) + (0,)
        out: list[int] = []
        for minimum in self.minimums:
            room = True
            for name, milli in minimum.items():
                for limited in node.limited:  # `limit_room`, inlined: this runs for every allocation near a limit
                    cap = limited.limit.get(name) if limited.limit is not None else None
                    if cap is not None and milli > 0 and cap - limited.consumed(name) < milli:
                        room = False
                        break
                if not room:
                    break
            out.append(count if room else 0)
        out.append(0)
        return tuple(out)

    def refresh_takers(self, node: RoleNode) -> None:
        """The role's offerable frameworks or its room changed: update its taker counts and its ancestors'."""
        new = self.own_takers(node)
        short = bool(self.minimums) and min(new[:-1]) < len(node.fw_order.keys)
        if short != node.short_of_room:
            node.short_of_room = short
            self.short_of_room += 1 if short else -1
        old = node.own_takers
        if new == old:
            return
        node.own_takers = new
        delta = [a - b for a, b in zip(new, old, strict=True)]
        n: RoleNode | None = node
        while n is not None:
            takers = n.takers
            for k, step in enumerate(delta):
                takers[k] += step
            n = n.parent

    def refresh_room(self, node: RoleNode, vec: Vec | None, sign: int) -> None:
        """`node`'s quota consumption grew (`sign` > 0) or shrank, by at most `vec` (None: unknown): the room under
        every limit on its line changed. A limit whose margins (`RoleNode.room_margin`) stay >= 0 closes no
        alternative of the minimum before or after, so the taker counts below it stay as they are."""
        for limited in node.limited:
            margin = limited.room_margin
            if vec is not None and margin is not None:
                if sign < 0:
                    continue  # less consumed: it closed nothing, it closes nothing (the margins only grow)
                for name, left in margin.items():
                    if left < vec.get(name, 0):
                        break
                else:
                    for name in margin:
                        margin[name] -= vec.get(name, 0)  # at most what consumption grew by: still a lower bound
                    continue
            for below in limited.limited_below:
                self.refresh_takers(below)
            limited.room_margin = self.room_margin(limited)

    def room_margin(self, limited: RoleNode) -> dict[str, int] | None:
        """By resource the minimums name: how much more the limited node may consume before its limit leaves
        less room than some alternative of the minimum asks; None when one of them is < 0 already (the node's
        limit closes some alternative below it)."""
        margin: dict[str, int] = {}
        if limited.limit is not None:
            for name, most in self.min_names.items():
                cap = limited.limit.get(name)
                if cap is not None:
                    left = cap - limited.consumed(name) - most
                    if left < 0:
                        return None
                    margin[name] = left
        return margin

    def wanted(self, free_vec: Vec, headroom: Headroom | None) -> tuple[int, ...]:
        """The taker counts that matter on an agent with `free_vec` free (unreserved): the alternatives of the
        minimum it meets, after the headroom's requirement is held back (`headroom`; None in stage 1, where what
        helps a guarantee is exempt), and the frameworks with their own minimums."""
        vec = free_vec
        if headroom is not None and headroom.required:
            capped = dict(vec)
            available = headroom.available
            for name, need in headroom.required.items():
                have = vec.get(name, 0)
                if have > 0:
                    surplus = max(0, available.get(name, 0) - need)
                    if surplus < have:
                        capped[name] = surplus
            vec = capped
        met = tuple(k for k, minimum in enumerate(self.minimums) if vectors.meets(vec, minimum))
        return (*met, len(self.minimums))


def may_take(takers: Sequence[int], wanted: tuple[int, ...]) -> bool:
    """Whether some framework counted in `takers` (see `LimitRoom`) may take something on an agent that meets
    the minimum alternatives `wanted`."""
    for k in wanted:  # noqa: SIM110 (a plain loop: this runs for every role a cycle looks at)
        if takers[k]:
            return True
    return False


def limit_room(limited: Iterable[RoleNode]) -> Resources | None:
    """The least room left under the limits of the `limited` nodes (a role's line), by resource; None when
    there are none."""
    room: dict[str, int] = {}
    found = False
    for node in limited:
        found = True
        assert node.limit is not None
        for name in node.limit:
            left = max(0, node.limit[name] - node.consumed(name))
            room[name] = min(room.get(name, left), left)
    if not found:
        return None
    return Resources.from_scalars({name: milli / vectors.MILLI for name, milli in room.items()})


def check_reservation(
    resources: Resources, allocated_role: str | None, limited_of: Callable[[str], tuple[RoleNode, ...]]
) -> None:
    """Raise ValueError when reserving `resources` would take a role or an ancestor over its limit (see
    `Allocator.check_reservation`); `limited_of(role)`: the limited nodes on the role's line."""
    adding: dict[RoleNode, Vec] = {}
    for role, vec in sorted(vectors.reserved_by_role(resources).items()):
        for node in limited_of(role):
            if allocated_role is not None and (
                allocated_role == node.name or allocated_role.startswith(node.name + "/")
            ):
                continue  # already counted there: allocated to it or below it
            vectors.add_into(adding.setdefault(node, {}), vec)
    for node, more in sorted(adding.items(), key=lambda item: item[0].name):
        assert node.limit is not None
        for name, cap in sorted(node.limit.items()):
            if more.get(name, 0) > 0 and node.consumed(name) + more[name] > cap:
                left = max(0, cap - node.consumed(name)) / vectors.MILLI
                raise ValueError(
                    f"reserving {resources} would take role {quoted(node.name)} over its quota limit "
                    f"{vectors.to_resources(node.limit)} ({name}: {left:g} left)"
                )
