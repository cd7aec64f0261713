"""The hierarchical allocator: the mechanics (books, quota, reservations, filters, constraints, minimums), with
the fairness policy left to a `Sorter` (DRF by default).

One cycle (`allocate`) looks at the agents that may have something new to offer, in an order rotated every
cycle, and offers what is free on each to the first (role, framework) in the sorter's order, walking the role
tree: top-level roles first, then children, then frameworks inside a role. A framework gets everything on the
agent its role may use (unreserved resources and reservations of the role or its ancestors) in one offer,
cut down where a quota limit or the quota headroom says so. Shares are updated as the cycle goes, so one cycle
over many agents spreads them by the policy. As in Mesos, a first stage offers to roles whose quota guarantee
is not yet met, and every stage holds back enough unreserved resources for the guarantees still unmet.

Incremental design (what makes 10,000 agents and 1,000 frameworks fit in a fraction of a second):

- an agent is looked at only when it may offer something new: its free resources grew (recover, add, update,
  activation), one of its refusal filters expired (one heap entry per agent), something was held back on it
  for a quota limit or the headroom in the previous cycle, or something that widens who may be offered
  changed (a framework came, was activated, revived, updated; quota changed): then every agent with free
  resources is;
- the order of roles and frameworks is kept sorted (`SortedOrder`) and a client is moved only when its
  allocation changes, instead of sorting every client for every agent; inactive and suppressed frameworks are
  not in the order at all, and roles without offerable frameworks are skipped;
- amounts are plain scalar vectors (milli-units by name); `Resources` objects are made only for offers, and
  an agent without reservations offers its free `Resources` object as it is.

`full_scan=True` looks at every agent every cycle; the property tests check that both make the same offers.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence

from mesos_master.allocator import _vectors as V
from mesos_master.allocator import filters as F
from mesos_master.allocator._vectors import Vec
from mesos_master.allocator.base import Allocation, Allocator, OfferConstraints, Quota, Revocation, RunningTask
from mesos_master.allocator.constraints import CompiledConstraints
from mesos_master.allocator.filters import is_filtered
from mesos_master.allocator.ordering import SortedOrder
from mesos_master.allocator.roles import SELF, RoleNode
from mesos_master.allocator.sorter import DRFSorter, Sorter
from scheduler_sdk.resources import UNRESERVED, Resources

DEFAULT_MIN_ALLOCATABLE = (Resources.of(cpus=0.01), Resources.of(mem=32))
_EMPTY = Resources.empty()
_NO_FILTERS = F.PerAgent(F.Book())  # never written to
_METRICS_WINDOW = 1000
# What one framework holds in one role on one agent, as the pieces it was given (offers, tasks) kept apart: one
# `Resources` (the usual case: no list object), or a list of them. An offer declined whole comes back as the piece
# it went out as, so no arithmetic on port ranges is needed for the common case.
Pieces = Resources | list[Resources]


def _total_of(pieces: Pieces) -> Resources:
    if type(pieces) is not list:
        return pieces  # type: ignore[return-value]
    total = _EMPTY
    for piece in pieces:
        total = total + piece
    return total


def _find(pieces: list[Resources], resources: Resources) -> int:
    """The index of a piece that is (or equals) `resources`; -1 when none is."""
    for i, piece in enumerate(pieces):
        if piece is resources:
            return i
    for i, piece in enumerate(pieces):
        if piece == resources:
            return i
    return -1


def _may_take(takers: Sequence[int], wanted: tuple[int, ...]) -> bool:
    """Whether some framework counted in `takers` (see `RoleNode.takers`) may take something on an agent that
    meets the minimum alternatives `wanted`."""
    for k in wanted:  # noqa: SIM110 (a plain loop: this runs for every role a cycle looks at)
        if takers[k]:
            return True
    return False


class _Agent:
    __slots__ = (
        "active",
        "allocated",
        "attr_key",
        "attributes",
        "filtered_by",
        "free",
        "free_reserved",
        "free_rvec",
        "free_vec",
        "gpus",
        "id",
        "orphans",
        "refusal_free",
        "refusals",
        "refused_in",
        "refused_own",
        "reservations",
        "seq",
        "total",
        "total_reserved",
        "total_vec",
        "wake_at",
    )

    def __init__(self, agent_id: str, total: Resources, attributes: Mapping[str, str], attr_key: tuple) -> None:
        self.id = agent_id
        self.total = total
        self.total_vec = V.vector(total)
        self.reservations = V.reserved_by_role(total)
        self.total_reserved = V.has_reserved(total)
        self.free = total
        self.free_vec: Vec = {}
        self.free_rvec: Vec = {}  # the reserved part of free_vec (empty on agents without reservations)
        self.free_reserved = False
        self.active = True
        self.attributes = attributes
        self.attr_key = attr_key
        self.gpus = total.scalar("gpus") > 0
        self.allocated: dict[tuple[str, str], Pieces] = {}  # (framework id, role) -> what it holds here
        self.orphans: dict[str, Resources] = {}  # held by frameworks not (yet) known to the allocator
        # frameworks with refusal filters on this agent (a dict of strings: untracked by Python's collector)
        self.filtered_by: dict[str, None] = {}
        # The (framework, role) pairs with a live refusal filter covering exactly `refusal_free` (the agent's free
        # resources when they declined them whole), and how many of them are offerable now, per role node: in
        # its subtree (`refused_in`) and in the role itself (`refused_own`). While the agent's free resources are
        # that object, a role whose offerable frameworks all refused them has nothing to take there (the cycle
        # skips it), and an agent that every offerable pair refused has nothing to offer at all.
        self.refusal_free: Resources | None = None
        # (a dict, not a set: holding only strings, Python's collector stops tracking it; a cluster whose
        # frameworks decline for long holds millions of these, which every full collection would walk)
        self.refusals: dict[tuple[str, str], None] = {}
        self.refused_in: dict[RoleNode, int] = {}
        self.refused_own: dict[RoleNode, int] = {}
        self.seq = 0
        self.wake_at: float | None = None


class _Framework:
    __slots__ = (
        "active",
        "attr_cache",
        "constraints",
        "filters",
        "gpu_aware",
        "held",
        "id",
        "min_alloc",
        "pairs",
        "role_alloc",
        "roles",
        "special",
        "suppressed",
    )

    def __init__(self, framework_id: str, roles: tuple[str, ...]) -> None:
        self.id = framework_id
        self.roles = roles
        self.active = True
        self.gpu_aware = False
        self.suppressed: set[str] = set()
        self.constraints: CompiledConstraints | None = None
        self.min_alloc: dict[str, tuple[Vec, ...]] = {}
        self.special = False  # has constraints or its own minimums: the slow eligibility path
        self.attr_cache: dict[tuple, bool] = {}
        self.held: dict[tuple[str, str], Pieces] = {}  # (agent id, role) -> what it holds there (the same pieces)
        self.role_alloc: dict[str, Vec] = {}  # role -> what it holds in that role
        self.filters: dict[str, F.PerAgent] = {}  # role -> agent id -> filter(s)
        self.pairs: dict[str, tuple[str, str]] = {}  # role -> (id, role), one tuple for all agents' refusals


class HierarchicalAllocator(Allocator):
    """Hierarchical allocation with a pluggable fairness policy.

    Keyword arguments (all optional):

    - `sorter`: the fairness policy (`DRFSorter()` by default; see `create_allocator` for names);
    - `allocation_interval`: seconds between periodic cycles; the shortest life of a refusal filter;
    - `min_allocatable`: the default minimum offer, alternatives (any one suffices), compared role-free;
      default ``cpus:0.01`` or ``mem:32``; frameworks override it per role;
    - `revocation`: enable `revocations()` (Mesos paper's revocation; off by default);
    - `timer`: the clock used only to measure cycle durations for `metrics()` (never for decisions);
    - `full_scan`: look at every agent in every cycle instead of only those with news (the same offers, more
      slowly: for tests that check the incremental cycle against the plain one).
    """

    def __init__(
        self,
        *,
        sorter: Sorter | None = None,
        allocation_interval: float = 1.0,
        min_allocatable: Iterable[Resources] = DEFAULT_MIN_ALLOCATABLE,
        revocation: bool = False,
        timer: Callable[[], float] = time.perf_counter,
        full_scan: bool = False,
    ) -> None:
        self.sorter: Sorter = sorter if sorter is not None else DRFSorter()
        self.allocation_interval = allocation_interval
        self.revocation = revocation
        self._min: tuple[Vec, ...] = tuple(V.vector(m) for m in min_allocatable)
        self._timer = timer
        self._full_scan = full_scan

        self._agents: dict[str, _Agent] = {}
        self._agent_ids: list[str] = []
        self._agent_ids_stale = False
        self._frameworks: dict[str, _Framework] = {}
        self._root = RoleNode("", None)
        self._root.takers = [0] * (len(self._min) + 1)
        self._short_of_room = 0  # roles whose limits leave no room for some alternative of the minimum
        self._min_names: dict[str, int] = {}  # every name the minimums ask for, with the most any asks
        for minimum in self._min:
            for name, milli in minimum.items():
                self._min_names[name] = max(milli, self._min_names.get(name, 0))
        self._nodes: dict[str, RoleNode] = {}
        self._attr_keys: dict[tuple, tuple] = {}

        self._total: Vec = {}  # every agent's scalars
        self._total_changed = True
        self._stale = True  # the orders must be rebuilt before the next cycle
        self._headroom: Vec = {}  # free unreserved scalars on active agents (kept while quota or revocation needs it)
        self._track_headroom = revocation
        self._required: Vec = {}  # unmet guarantees of the top-most guaranteed roles
        self._guaranteed: set[RoleNode] = set()
        self._unsat: set[RoleNode] = set()  # guaranteed roles below their guarantee
        self._stage1 = SortedOrder()  # the same roles, in the sorter's order (by their key in their parent)

        self._dirty: set[str] = set()
        self._all_dirty = True
        self._held: set[str] = set()
        self._held_now: set[str] = set()
        self._wake: list[tuple[float, str]] = []
        self._refusal_book = F.Book()  # what the refusal filters refused, shared by all of them

        self._cycle = 0
        self._runs: deque[float] = deque(maxlen=_METRICS_WINDOW)
        self._run_count = 0
        self._last_offers = 0
        self._last_examined = 0

    # ================================================================= frameworks
    def add_framework(
        self,
        framework_id: str,
        roles: Iterable[str],
        used: Mapping[str, Resources],
        *,
        active: bool = True,
        gpu_aware: bool = False,
        constraints: OfferConstraints | None = None,
        min_allocatable: Mapping[str, Sequence[Resources]] | None = None,
    ) -> None:
        if framework_id in self._frameworks:
            self.update_framework(
                framework_id, roles, gpu_aware=gpu_aware, constraints=constraints, min_allocatable=min_allocatable
            )
            (self.activate_framework if active else self.deactivate_framework)(framework_id)
            return
        fw = _Framework(framework_id, tuple(roles) or (UNRESERVED,))
        fw.active = active
        self._configure(fw, gpu_aware, constraints, min_allocatable)
        self._frameworks[framework_id] = fw
        for role in fw.roles:
            self._node(role).frameworks.add(framework_id)
        self._sync(fw)
        for agent_id, resources in used.items():
            agent = self._agents.get(agent_id)
            if agent is not None and framework_id in agent.orphans:
                # The master's word replaces what the agent reported before the framework was known.
                orphan = agent.orphans.pop(framework_id)
                self._set_free(agent, agent.free + orphan)
            self.add_used(framework_id, agent_id, resources)
        for agent in self._agents.values():
            orphan = agent.orphans.pop(framework_id, _EMPTY)
            if orphan:
                self._charge(fw, agent, self._role_for(fw, orphan), orphan, *V.vectors(orphan))
        self._all_dirty = True

    def update_framework(
        self,
        framework_id: str,
        roles: Iterable[str],
        *,
        gpu_aware: bool = False,
        constraints: OfferConstraints | None = None,
        min_allocatable: Mapping[str, Sequence[Resources]] | None = None,
    ) -> None:
        fw = self._frameworks.get(framework_id)
        if fw is None:
            return
        new_roles = tuple(roles) or (UNRESERVED,)
        for role in set(fw.roles) - set(new_roles):
            node = self._node(role)
            self._set_offerable(fw, node, False)
            node.frameworks.discard(framework_id)
            self._drop_filters(fw, role)
            fw.suppressed.discard(role)
        for role in new_roles:
            self._node(role).frameworks.add(framework_id)
        # Leaving a role keeps what it holds there charged to that role until it comes back (recover).
        for role in fw.roles:
            self._set_offerable(fw, self._node(role), False)
        fw.roles = new_roles
        self._configure(fw, gpu_aware, constraints, min_allocatable)
        self._sync(fw)
        self._all_dirty = True

    def remove_framework(self, framework_id: str) -> None:
        fw = self._frameworks.get(framework_id)
        if fw is None:
            return
        for role in fw.roles:
            node = self._node(role)
            self._set_offerable(fw, node, False)
            node.frameworks.discard(framework_id)
        for (agent_id, role), pieces in list(fw.held.items()):
            agent = self._agents[agent_id]
            self._release(fw, agent, role, _total_of(pieces))
        self._drop_filters(fw, None)
        del self._frameworks[framework_id]

    def activate_framework(self, framework_id: str) -> None:
        fw = self._frameworks.get(framework_id)
        if fw is not None and not fw.active:
            fw.active = True
            self._sync(fw)
            self._all_dirty = True

    def deactivate_framework(self, framework_id: str) -> None:
        fw = self._frameworks.get(framework_id)
        if fw is not None:
            fw.active = False
            self._sync(fw)
            self._drop_filters(fw, None)

    def suppress_offers(self, framework_id: str, roles: Iterable[str] | None = None) -> None:
        fw = self._frameworks.get(framework_id)
        if fw is None:
            return
        fw.suppressed.update(fw.roles if roles is None else (r for r in roles if r in fw.roles))
        self._sync(fw)

    def revive_offers(self, framework_id: str, roles: Iterable[str] | None = None) -> None:
        fw = self._frameworks.get(framework_id)
        if fw is None:
            return
        chosen = list(fw.roles) if roles is None else list(roles)
        fw.suppressed.difference_update(chosen)
        if roles is None:
            self._drop_filters(fw, None)
        else:
            for role in chosen:
                self._drop_filters(fw, role)
        self._sync(fw)
        self._all_dirty = True

    def is_suppressed(self, framework_id: str, role: str | None = None) -> bool:
        """Whether the framework is suppressed in `role` (None: in all of its roles)."""
        fw = self._frameworks.get(framework_id)
        if fw is None:
            return False
        return role in fw.suppressed if role is not None else set(fw.roles) <= fw.suppressed

    # ================================================================= agents
    def add_agent(
        self,
        agent_id: str,
        total: Resources,
        used: Mapping[str, Resources],
        attributes: Mapping[str, str] | None = None,
    ) -> None:
        if agent_id in self._agents:
            self.remove_agent(agent_id)
        attrs = dict(attributes or {})
        key = tuple(sorted(attrs.items()))
        attr_key = self._attr_keys.setdefault(key, key)
        agent = _Agent(agent_id, total, attrs, attr_key)
        agent.seq = len(self._agent_ids)
        self._agents[agent_id] = agent
        self._agent_ids.append(agent_id)
        agent.free = _EMPTY
        self._set_free(agent, total)
        V.add_into(self._total, agent.total_vec)
        self._total_changed = True
        self._track_reservations(agent.reservations, +1)
        for framework_id, resources in used.items():
            if framework_id in self._frameworks:
                self.add_used(framework_id, agent_id, resources)
            elif resources:
                agent.orphans[framework_id] = agent.orphans.get(framework_id, _EMPTY) + resources
                self._set_free(agent, agent.free.subtract_clamped(resources))
        self._dirty.add(agent_id)

    def update_agent(self, agent_id: str, total: Resources) -> None:
        agent = self._agents.get(agent_id)
        if agent is None:
            return
        self._track_reservations(agent.reservations, -1)
        V.sub_from(self._total, agent.total_vec)
        agent.total = total
        agent.total_vec = V.vector(total)
        agent.reservations = V.reserved_by_role(total)
        agent.total_reserved = V.has_reserved(total)
        agent.gpus = total.scalar("gpus") > 0
        V.add_into(self._total, agent.total_vec)
        self._total_changed = True
        self._track_reservations(agent.reservations, +1)
        # Fit what is held into the new total: resources that changed reservation while allocated (a RESERVE
        # of offered resources) are matched by name; what no longer exists is dropped from the books.
        self._forget_refusals(agent)
        remaining = total
        for (framework_id, role), pieces in list(agent.allocated.items()):
            held = _total_of(pieces)
            fitted = V.intersection(held, remaining)
            missing = held.subtract_clamped(fitted)
            if missing:
                fitted = fitted + V.take_role_free(missing, remaining.subtract_clamped(fitted), role)
            if fitted != held:
                fw = self._frameworks[framework_id]
                self._uncharge(fw, agent, role, held)
                if fitted:
                    self._charge(fw, agent, role, fitted, *V.vectors(fitted))
            remaining = remaining.subtract_clamped(fitted)
        for framework_id, held in list(agent.orphans.items()):
            fitted = V.intersection(held, remaining)
            if fitted:
                agent.orphans[framework_id] = fitted
            else:
                del agent.orphans[framework_id]
            remaining = remaining.subtract_clamped(fitted)
        self._set_free(agent, remaining)
        self._all_dirty = True  # quota consumption (reservations) may have changed

    def remove_agent(self, agent_id: str) -> None:
        agent = self._agents.get(agent_id)
        if agent is None:
            return
        for (framework_id, role), pieces in list(agent.allocated.items()):
            fw = self._frameworks[framework_id]
            self._uncharge(fw, agent, role, _total_of(pieces))
        agent.allocated.clear()
        for framework_id in agent.filtered_by:
            fw_ = self._frameworks.get(framework_id)
            if fw_ is not None:
                for per_agent in fw_.filters.values():
                    per_agent.pop(agent_id, None)
        if agent.active and self._track_headroom:
            V.sub_from(self._headroom, V.unreserved_of(agent.free_vec, agent.free_rvec))
        V.sub_from(self._total, agent.total_vec)
        self._total_changed = True
        self._track_reservations(agent.reservations, -1)
        del self._agents[agent_id]
        self._agent_ids_stale = True
        self._dirty.discard(agent_id)
        self._held.discard(agent_id)

    def activate_agent(self, agent_id: str) -> None:
        agent = self._agents.get(agent_id)
        if agent is not None and not agent.active:
            agent.active = True
            if self._track_headroom:
                V.add_into(self._headroom, V.unreserved_of(agent.free_vec, agent.free_rvec))
            self._dirty.add(agent_id)

    def deactivate_agent(self, agent_id: str) -> None:
        agent = self._agents.get(agent_id)
        if agent is not None and agent.active:
            agent.active = False
            if self._track_headroom:
                V.sub_from(self._headroom, V.unreserved_of(agent.free_vec, agent.free_rvec))

    # ================================================================= resources
    def add_used(self, framework_id: str, agent_id: str, resources: Resources, role: str | None = None) -> None:
        fw = self._frameworks.get(framework_id)
        agent = self._agents.get(agent_id)
        if fw is None or agent is None or not resources:
            return
        if role is None:
            role = self._role_for(fw, resources)
        self._set_free(agent, agent.free.subtract_clamped(resources))
        self._charge(fw, agent, role, resources, *V.vectors(resources))

    def recover_resources(
        self,
        framework_id: str,
        agent_id: str,
        resources: Resources,
        refuse_seconds: float | None,
        now: float,
        role: str | None = None,
    ) -> None:
        agent = self._agents.get(agent_id)
        if agent is None or not resources:
            return
        fw = self._frameworks.get(framework_id)
        if fw is None:
            orphan = agent.orphans.get(framework_id)
            if orphan is not None:
                back = V.intersection(orphan, resources)
                left = orphan.subtract_clamped(back)
                if left:
                    agent.orphans[framework_id] = left
                else:
                    del agent.orphans[framework_id]
                self._set_free(agent, agent.free + back)
                self._dirty.add(agent_id)
            return
        roles_back: list[str] = []
        exact = self._take_piece(fw, agent, role, resources) if role is not None else None
        if exact is not None and role is not None:
            # The common case (an offer declined whole, a task's resources back): `_release` inlined.
            vec, rvec = V.vectors(exact)
            self._account(fw, role, vec, rvec, -1)
            if agent.free:
                self._return_free(agent, exact, vec, rvec)
            else:
                agent.free = exact
                agent.free_vec = vec
                agent.free_rvec = rvec
                agent.free_reserved = bool(rvec) or (agent.total_reserved and V.has_reserved(exact))
                if agent.active and self._track_headroom:
                    V.add_into(self._headroom, V.unreserved_of(vec, rvec) if rvec else vec)
            self._dirty.add(agent_id)
            roles_back.append(role)
        else:
            remaining = resources
            keys = [r for (fid, r) in agent.allocated if fid == framework_id]
            keys.sort(key=lambda r: (r != role, r))
            for r in keys:
                held = _total_of(agent.allocated[(framework_id, r)])
                give = V.intersection(held, remaining)
                if give:
                    self._release(fw, agent, r, give)
                    roles_back.append(r)
                    remaining = remaining.subtract_clamped(give)
                    if not remaining:
                        break
            if remaining:
                # Resources that changed reservation while allocated: match the rest by name.
                for r in keys:
                    held_pieces = agent.allocated.get((framework_id, r))
                    if held_pieces is None:
                        continue
                    still = _total_of(held_pieces)
                    give = V.take_role_free(remaining, still, r)
                    if give:
                        self._release(fw, agent, r, give)
                        roles_back.append(r)
                        remaining = remaining.subtract_clamped(V.take_role_free(give, remaining, r))
                        if not remaining:
                            break
        if refuse_seconds is not None and refuse_seconds > 0:
            expires = now + max(refuse_seconds, self.allocation_interval)
            targets = (role,) if role is not None else tuple(dict.fromkeys(roles_back or fw.roles))
            free_now = agent.free  # declined everything free there (the common case)?
            whole = bool(free_now) and (free_now is resources or free_now == resources)
            if whole and agent.refusal_free is not free_now:
                self._forget_refusals(agent)
                agent.refusal_free = free_now
            for r in targets:
                per_agent = fw.filters.get(r)
                if per_agent is None:
                    per_agent = fw.filters[r] = F.PerAgent(self._refusal_book)
                F.add_filter(per_agent, agent_id, resources, expires)
                if whole:
                    pair = fw.pairs.get(r)
                    if pair is None:
                        pair = fw.pairs[r] = (framework_id, r)
                    if pair in agent.refusals:
                        continue
                    agent.refusals[pair] = None
                    node = self._nodes.get(r)
                    if node is not None and framework_id in node.fw_order.keys:
                        self._count_refusal(agent, node, +1)
            agent.filtered_by[framework_id] = None
            if agent.wake_at is None or expires < agent.wake_at:
                agent.wake_at = expires
                heapq.heappush(self._wake, (expires, agent_id))

    def allocated(self, framework_id: str) -> Resources:
        fw = self._frameworks.get(framework_id)
        total = _EMPTY
        if fw is not None:
            for pieces in fw.held.values():
                total = total + _total_of(pieces)
        return total

    # ================================================================= operator policy
    def update_weights(self, weights: Mapping[str, float]) -> None:
        for role, weight in weights.items():
            if not weight > 0:
                raise ValueError(f"the weight of role {role!r} must be > 0, not {weight}")
        for role, weight in weights.items():
            node = self._node(role)
            node.weight = float(weight)
            if not self._stale:
                self._rekey_node(node)

    def update_quota(self, role: str, quota: Quota | None) -> None:
        node = self._node(role)
        if quota is None:
            node.guarantee, node.limit = {}, None
        else:
            node.guarantee = V.vector(quota.guarantee)
            node.limit = None if quota.limit is None else V.vector(quota.limit)
        self._rebuild_quota()
        node.room_margin = self._room_margin(node)
        for below in node.walk():  # only the rooms in its subtree changed
            self._refresh_takers(below)
        self._all_dirty = True

    def quota_headroom(self) -> tuple[Resources, Resources]:
        """(required, available): unreserved resources held back for unmet guarantees, and free to hold them."""
        available = self._headroom if self._track_headroom else self._count_headroom()
        return V.to_resources(self._required), V.to_resources(available)

    def _count_headroom(self) -> Vec:
        out: Vec = {}
        for agent in self._agents.values():
            if agent.active:
                V.add_into(out, V.unreserved_of(agent.free_vec, agent.free_rvec))
        return out

    def role_allocation(self, role: str) -> Resources:
        """What the role and its descendants hold (scalars, reservation roles summed)."""
        node = self._nodes.get(role)
        return V.to_resources(node.alloc) if node is not None else _EMPTY

    # ================================================================= the cycle
    def allocate(self, now: float) -> list[Allocation]:
        started = self._timer()
        self._cycle += 1
        self._wake_agents(now)
        sorter = self.sorter
        self._sync_total()
        sorter.begin_cycle(self._cycle)
        if self._stale or sorter.rekey_each_cycle:
            self._rebuild_orders()
        visit = self._agents_to_visit()
        result: list[Allocation] = []
        self._held_now = set()
        if visit and self._root.candidates:
            if any(n.candidates for n in self._unsat):
                for agent in visit:
                    self._quota_stage(agent, now, result)
            for agent in visit:
                if agent.free:
                    self._fair_stage(agent, now, result)
        self._held = self._held_now
        self._dirty.clear()
        self._all_dirty = False
        self._last_offers = len(result)
        self._last_examined = len(visit)
        self._runs.append((self._timer() - started) * 1000.0)
        self._run_count += 1
        return result

    def _sync_total(self) -> None:
        if self._total_changed:
            self.sorter.set_total(self._total)
            self._total_changed = False
            self._stale = True

    def _quota_stage(self, agent: _Agent, now: float, result: list[Allocation]) -> None:
        """Stage 1: roles below their guarantee, in the sorter's order, get what helps toward it."""
        nodes = self._nodes
        still = self._stage1.keys
        wanted = self._wanted_takers(agent, quota_stage=True) if self._short_of_room else None
        for _key, name in list(self._stage1.entries):
            if not agent.free:
                return
            quota_node = nodes[name]
            if name not in still or not quota_node.candidates:
                continue
            refused = self._refused(agent)
            if refused is not None and refused.get(quota_node, 0) >= quota_node.candidates:
                continue  # every framework there refused what the agent has
            if wanted is not None and not _may_take(quota_node.takers, wanted):
                self._held_now.add(agent.id)
                continue
            pick = self._visit(quota_node, agent, None, now, quota_node, wanted)
            if pick is not None:
                self._give(pick, agent, result)
                wanted = self._wanted_takers(agent, quota_stage=True) if self._short_of_room else None

    def _fair_stage(self, agent: _Agent, now: float, result: list[Allocation]) -> None:
        """Stage 2: everything left on the agent, by the sorter's order over the whole role tree. (A role
        served in stage 1 on an agent can get no more there in stage 2: within a cycle the quota headroom's
        surplus and a limit's room only shrink.)"""
        if agent.free_reserved or self._required:
            self._fair_stage_general(agent, now, result, None)
            return
        # The fast path, for the common case (the agent's free resources are all unreserved, no quota headroom
        # to keep): `_visit(root)` with `_try_role` and `_give` inlined for top-level roles without children,
        # limits or special frameworks, the offer being the agent's whole free `Resources`.
        free = agent.free
        vec = agent.free_vec
        default_ok = V.meets_any(vec, self._min)
        agent_id = agent.id
        gpus = agent.gpus
        frameworks = self._frameworks
        children = self._root.children
        refused = (  # `_refused`, inlined
            agent.refused_in if agent.refusal_free is free and agent.refused_in and not self._full_scan else None
        )
        wanted = self._wanted_takers(agent, quota_stage=False) if self._short_of_room else None
        for _key, role in self._root.order.entries:
            node = children[role]
            if not node.candidates or (refused is not None and refused.get(node, 0) >= node.candidates):
                continue
            if node.children or node.limited:
                if wanted is not None and not _may_take(node.takers, wanted):
                    self._held_now.add(agent_id)
                    continue
                pick = (
                    self._visit(node, agent, None, now, None, wanted)
                    if node.children
                    else self._try_role(node, agent, now, None)
                )
                if pick is None:
                    continue
                self._give(pick, agent, result)
                if agent.free:
                    self._fair_stage_general(agent, now, result, {pick[1].name})
                return
            if not default_ok and not node.special:
                continue
            for _fkey, framework_id in node.fw_order.entries:
                fw = frameworks[framework_id]
                if gpus and not fw.gpu_aware:
                    continue
                if fw.special:
                    if not self._special_ok(fw, role, agent, free, vec, default_ok):
                        continue
                elif not default_ok:
                    continue
                per_agent = fw.filters.get(role)
                if per_agent is not None:
                    slot = per_agent.refused.get(agent_id)
                    if slot is not None and is_filtered(per_agent, agent_id, slot, free, now):
                        continue
                # Offer the whole free resources: `_give` (with `_charge`, `_account`, `_take_free`) inlined.
                key = (framework_id, role)
                pieces = agent.allocated.get(key)
                if pieces is None:
                    agent.allocated[key] = fw.held[(agent_id, role)] = free
                else:
                    self._add_piece(fw, agent, role, pieces, free)
                mine = fw.role_alloc.get(role)
                if mine is None:
                    mine = fw.role_alloc[role] = {}
                alloc = node.alloc
                for name, milli in vec.items():
                    mine[name] = mine.get(name, 0) + milli
                    alloc[name] = alloc.get(name, 0) + milli
                if self._guaranteed:
                    self._refresh_quota(node)
                sorter = self.sorter
                order = node.fw_order
                if len(order.keys) > 1:
                    order.update(framework_id, sorter.key(framework_id, mine, 1.0, is_role=False))
                else:
                    order.stale = True
                order = self._root.order
                first = role in self._stage1.keys
                if len(order.keys) > 1 or first:
                    role_key = sorter.key(role, alloc, node.weight, is_role=True)
                    if len(order.keys) > 1:
                        order.update(role, role_key)
                    else:
                        order.stale = True
                    if first:
                        self._stage1.update(role, role_key)
                else:
                    order.stale = True
                if agent.active and self._track_headroom:
                    V.sub_from(self._headroom, vec)
                agent.free = _EMPTY
                agent.free_vec = {}
                agent.free_rvec = {}
                result.append(Allocation(framework_id, role, agent_id, free))
                return

    def _special_ok(
        self, fw: _Framework, role: str, agent: _Agent, offer: Resources, vec: Vec, default_ok: bool
    ) -> bool:
        """Eligibility of a framework with its own minimums or offer constraints."""
        mins = fw.min_alloc.get(role)
        if not (default_ok if mins is None else V.meets_any(vec, mins)):
            return False
        c = fw.constraints
        if c is not None:
            ok = fw.attr_cache.get(agent.attr_key)
            if ok is None:
                ok = fw.attr_cache[agent.attr_key] = c.agent_ok(agent.attributes)
            if not ok or not c.offer_ok(offer, vec):
                return False
        return True

    def _fair_stage_general(self, agent: _Agent, now: float, result: list[Allocation], served: set[str] | None) -> None:
        root = self._root
        while True:
            wanted = self._wanted_takers(agent, quota_stage=False) if self._short_of_room else None
            if wanted is not None and not _may_take(root.takers, wanted):
                self._held_now.add(agent.id)  # every role with offerable frameworks lacks room for what is here
                return
            pick = self._visit(root, agent, served, now, None, wanted)
            if pick is None:
                return
            self._give(pick, agent, result)
            if not agent.free:
                return
            if served is None:
                served = set()
            served.add(pick[1].name)

    def _give(self, pick: tuple[_Framework, RoleNode, Resources], agent: _Agent, result: list[Allocation]) -> None:
        fw, node, offer = pick
        role = node.name
        if offer is agent.free:
            vec, rvec = agent.free_vec, agent.free_rvec
        else:
            vec, rvec = V.vectors(offer)
        # _charge, inlined: this is the hot path of a cycle
        key = (fw.id, role)
        pieces = agent.allocated.get(key)
        if pieces is None:
            agent.allocated[key] = fw.held[(agent.id, role)] = offer
        else:
            self._add_piece(fw, agent, role, pieces, offer)
        self._account(fw, role, vec, rvec, +1)
        self._take_free(agent, offer, vec, rvec)
        result.append(Allocation(fw.id, role, agent.id, offer))

    def _visit(
        self,
        node: RoleNode,
        agent: _Agent,
        served: set[str] | None,
        now: float,
        quota_node: RoleNode | None,
        wanted: tuple[int, ...] | None = None,
    ) -> tuple[_Framework, RoleNode, Resources] | None:
        """The first (framework, role, offer) in sort order under `node` that takes something on `agent`.
        `wanted`: the taker counts that matter on the agent (`_wanted_takers`; None: try every role)."""
        children = node.children
        refused = self._refused(agent)
        for _key, name in node.order.entries:
            if name == SELF:
                if (
                    node.fw_order.entries
                    and (served is None or node.name not in served)
                    and (refused is None or agent.refused_own.get(node, 0) < len(node.fw_order.entries))
                ):
                    if wanted is not None and not _may_take(node.own_takers, wanted):
                        self._held_now.add(agent.id)
                        continue
                    pick = self._try_role(node, agent, now, quota_node)
                    if pick is not None:
                        return pick
            else:
                child = children[name]
                if child.candidates and (refused is None or refused.get(child, 0) < child.candidates):
                    if wanted is not None and not _may_take(child.takers, wanted):
                        self._held_now.add(agent.id)
                        continue
                    if child.children:
                        pick = self._visit(child, agent, served, now, quota_node, wanted)
                    elif served is None or name not in served:
                        pick = self._try_role(child, agent, now, quota_node)  # a leaf: only its frameworks
                    else:
                        continue
                    if pick is not None:
                        return pick
        return None

    def _try_role(
        self, node: RoleNode, agent: _Agent, now: float, quota_node: RoleNode | None
    ) -> tuple[_Framework, RoleNode, Resources] | None:
        role = node.name
        if agent.free_reserved:
            avail = agent.free.allocatable_to(role)
            if not avail:
                return None
            vec, rvec = V.vectors(avail)
        else:
            avail, vec, rvec = agent.free, agent.free_vec, agent.free_rvec
        # Quota limits and headroom may cut the offer down. That is worked out once, for the first framework
        # not already filtered for all of it (a filter that covers everything covers any part of it).
        shape = quota_node is not None or bool(node.limited) or bool(self._required)
        offer, ovec = avail, vec
        shaped = not shape
        default_ok: bool | None = None
        frameworks = self._frameworks
        agent_id = agent.id
        gpus = agent.gpus
        for _key, framework_id in node.fw_order.entries:
            fw = frameworks[framework_id]
            if gpus and not fw.gpu_aware:
                continue  # GPU agents are kept for frameworks that can use GPUs (Mesos' GPU_RESOURCES rule)
            per_agent = fw.filters.get(role) or _NO_FILTERS
            slot = per_agent.refused.get(agent_id)
            if slot is not None and shape and is_filtered(per_agent, agent_id, slot, avail, now):
                continue
            if not shaped:
                shaped = True
                uvec = V.unreserved_of(vec, rvec)
                allowed = self._allowed(node, uvec, quota_node)
                if allowed is None:
                    return None
                if allowed:
                    offer = V.shrink_unreserved(avail, uvec, allowed)
                    if offer is not avail:
                        self._held_now.add(agent_id)
                        if not offer:
                            return None
                        ovec = V.vector(offer)
            if default_ok is None:
                default_ok = V.meets_any(ovec, self._min)
                if not default_ok and not node.special:
                    return None
            if fw.special:
                if not self._special_ok(fw, role, agent, offer, ovec, default_ok):
                    continue
            elif not default_ok:
                continue
            if slot is not None and (not shape or offer is not avail):
                slot = per_agent.refused.get(agent_id)  # (pruned above, perhaps)
                if slot is not None and is_filtered(per_agent, agent_id, slot, offer, now):
                    continue
            return fw, node, offer
        return None

    def _allowed(self, node: RoleNode, uvec: Vec, quota_node: RoleNode | None) -> Vec | None:
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
        required = self._required
        if required:
            headroom = self._headroom
            for name, need in required.items():
                if uvec.get(name, 0) > 0:
                    allowed[name] = guaranteed.get(name, 0) + max(0, headroom.get(name, 0) - need)
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

    # ================================================================= revocation
    def revocations(self, now: float, tasks: Iterable[RunningTask]) -> list[Revocation]:
        """See `Allocator.revocations` and `revocation.decide`."""
        if not self.revocation:
            return []
        from mesos_master.allocator.revocation import decide

        self._sync_total()
        return decide(self, now, tasks)

    def limit_room(self, role: str) -> Resources | None:
        """The least room left under the quota limits of `role` and its ancestors, by resource (what it may
        still consume); None when none of them has a limit."""
        node = self._nodes.get(role)
        limited = node.limited if node is not None else self._limited_of(role)
        if not limited:
            return None
        room: dict[str, int] = {}
        for n in limited:
            assert n.limit is not None
            for name in n.limit:
                left = max(0, n.limit[name] - n.consumed(name))
                room[name] = min(room.get(name, left), left)
        return Resources.from_scalars({name: milli / V.MILLI for name, milli in room.items()})

    def check_reservation(self, resources: Resources, *, allocated_role: str | None = None) -> None:
        adding: dict[RoleNode, Vec] = {}
        for role, vec in sorted(V.reserved_by_role(resources).items()):
            node = self._nodes.get(role)
            for n in node.limited if node is not None else self._limited_of(role):
                if allocated_role is not None and (allocated_role == n.name or allocated_role.startswith(n.name + "/")):
                    continue  # already counted there: allocated to it or below it
                V.add_into(adding.setdefault(n, {}), vec)
        for n, more in sorted(adding.items(), key=lambda item: item[0].name):
            assert n.limit is not None
            for name, cap in sorted(n.limit.items()):
                if more.get(name, 0) > 0 and n.consumed(name) + more[name] > cap:
                    left = max(0, cap - n.consumed(name)) / V.MILLI
                    raise ValueError(
                        f"reserving {resources} would take role {n.name!r} over its quota limit "
                        f"{V.to_resources(n.limit)} ({name}: {left:g} left)"
                    )

    def _limited_of(self, role: str) -> tuple[RoleNode, ...]:
        """The limited nodes on the line of a role the tree does not have yet."""
        parts = role.split("/") if role != UNRESERVED else [role]
        out: list[RoleNode] = []
        for i in range(len(parts), 0, -1):
            n = self._nodes.get("/".join(parts[:i]))
            if n is not None:
                out.extend(a for a in n.lineage() if a.limit is not None)
                break
        return tuple(out)

    def waiting(self, node: RoleNode, now: float) -> bool:
        """Whether the role has work waiting: an active framework, not suppressed in it, that declined
        nothing there (no live refusal filter in that role)."""
        for framework_id in node.frameworks:
            fw = self._frameworks.get(framework_id)
            if fw is None or not fw.active or node.name in fw.suppressed:
                continue
            per_agent = fw.filters.get(node.name)
            if not per_agent or not F.has_live(per_agent, now):
                return True
        return False

    # ================================================================= metrics
    def metrics(self) -> dict[str, float]:
        runs = sorted(self._runs)

        def pct(p: float) -> float:
            if not runs:
                return 0.0
            k = (len(runs) - 1) * p / 100
            lo = int(k)
            hi = min(lo + 1, len(runs) - 1)
            return runs[lo] + (runs[hi] - runs[lo]) * (k - lo)

        return {
            "allocation_runs": float(self._run_count),
            "allocation_run_ms": self._runs[-1] if self._runs else 0.0,
            "allocation_run_ms_p50": pct(50),
            "allocation_run_ms_p99": pct(99),
            "allocation_last_offers": float(self._last_offers),
            "allocation_last_agents_examined": float(self._last_examined),
            "allocator_refusal_filters": float(
                sum(F.count(pa) for fw in self._frameworks.values() for pa in fw.filters.values())
            ),
            "allocator_quota_headroom_required_cpus": self._required.get("cpus", 0) / V.MILLI,
        }

    # ================================================================= internals: books
    def _node(self, role: str) -> RoleNode:
        node = self._nodes.get(role)
        if node is not None:
            return node
        parent = self._root
        if "/" in role and role != UNRESERVED:
            parent = self._node(role.rsplit("/", 1)[0])
        node = RoleNode(role, parent)
        node.own_takers = (0,) * (len(self._min) + 1)
        node.takers = [0] * (len(self._min) + 1)
        first_child = not parent.children and parent.parent is not None
        if first_child:
            parent.own = dict(parent.alloc)  # from now on its own frameworks' part is kept apart
        parent.children[role] = node
        self._nodes[role] = node
        self._link_quota(node)
        if not self._stale:
            node.order.add(SELF, self._self_key(node))
            if first_child:
                parent.order.stale = True  # its own key was not kept up to date while it was alone
            self._fresh_role_order(parent)
            parent.order.add(role, self._role_key(node), hidden=True)  # no offerable framework yet
        return node

    def _role_for(self, fw: _Framework, resources: Resources) -> str:
        reserved = sorted(r for r in resources.roles() if r != UNRESERVED)
        for role in reserved:
            for mine in fw.roles:
                if role == mine or mine.startswith(role + "/"):
                    return mine
        return fw.roles[0]

    def _configure(
        self,
        fw: _Framework,
        gpu_aware: bool,
        constraints: OfferConstraints | None,
        min_allocatable: Mapping[str, Sequence[Resources]] | None,
    ) -> None:
        fw.gpu_aware = gpu_aware
        compiled = None
        if constraints is not None and (constraints.attributes or constraints.min_resources):
            compiled = CompiledConstraints(constraints)
        fw.constraints = compiled
        fw.attr_cache = {}
        fw.min_alloc = {role: tuple(V.vector(m) for m in mins) for role, mins in (min_allocatable or {}).items()}
        # `node.special` counts the offerable special frameworks of a role: the callers take the framework out
        # of every order before configuring it, and `_sync` puts it back.
        assert not any(fw.id in self._node(r).fw_order for r in fw.roles)
        fw.special = compiled is not None or bool(fw.min_alloc)

    def _sync(self, fw: _Framework) -> None:
        """Put the framework in (or out of) the order of each of its roles: offerable when active and not
        suppressed there."""
        for role in fw.roles:
            self._set_offerable(fw, self._node(role), fw.active and role not in fw.suppressed)

    def _set_offerable(self, fw: _Framework, node: RoleNode, offerable: bool) -> None:
        present = fw.id in node.fw_order
        if offerable == present:
            return
        if offerable:
            if not self._stale:
                self._fresh_fw_order(node)
            node.fw_order.add(fw.id, self._fw_key(fw, node.name))
            step = 1
        else:
            node.fw_order.remove(fw.id)
            step = -1
        if fw.special:
            node.special += step
        pair = (fw.id, node.name)
        for agent_id in fw.filters.get(node.name, _NO_FILTERS):
            agent = self._agents.get(agent_id)
            if agent is not None and pair in agent.refusals:
                self._count_refusal(agent, node, step)
        n: RoleNode | None = node
        while n is not None:
            n.candidates += step
            if n.parent is not None and n.candidates == (1 if step > 0 else 0):
                # A role with no offerable framework in its subtree is left out of the orders a cycle walks.
                if step > 0:
                    n.parent.order.show(n.name)
                    self._stage1.show(n.name)
                else:
                    n.parent.order.hide(n.name)
                    self._stage1.hide(n.name)
            n = n.parent
        self._refresh_takers(node)

    def _set_free(self, agent: _Agent, free: Resources) -> None:
        """Set an agent's free resources outright (the slow path: vectors computed again)."""
        old_unreserved = V.unreserved_of(agent.free_vec, agent.free_rvec)
        agent.free = free
        vec, rvec = V.vectors(free) if free else ({}, {})
        agent.free_vec, agent.free_rvec = vec, rvec
        agent.free_reserved = agent.total_reserved and V.has_reserved(free)
        if agent.active and self._track_headroom:
            V.sub_from(self._headroom, old_unreserved)
            V.add_into(self._headroom, V.unreserved_of(vec, rvec))

    def _take_free(self, agent: _Agent, offer: Resources, vec: Vec, rvec: Vec) -> None:
        """`offer` (part of the agent's free resources, with its vectors) is allocated."""
        if offer is agent.free:
            if agent.active and self._track_headroom:
                V.sub_from(self._headroom, agent.free_vec if not agent.free_rvec else V.unreserved_of(vec, rvec))
            agent.free = _EMPTY
            agent.free_vec = {}
            agent.free_rvec = {}
            agent.free_reserved = False
            return
        agent.free = agent.free.subtract_clamped(offer)
        V.sub_from(agent.free_vec, vec)
        if rvec:
            V.sub_from(agent.free_rvec, rvec)
        if agent.active and self._track_headroom:
            V.sub_from(self._headroom, V.unreserved_of(vec, rvec))
        agent.free_reserved = agent.total_reserved and V.has_reserved(agent.free)

    def _return_free(self, agent: _Agent, resources: Resources, vec: Vec, rvec: Vec) -> None:
        """`resources` (with their vectors) are free again on the agent."""
        agent.free = agent.free + resources
        V.add_into(agent.free_vec, vec)
        if rvec:
            V.add_into(agent.free_rvec, rvec)
        if agent.active and self._track_headroom:
            V.add_into(self._headroom, V.unreserved_of(vec, rvec) if rvec else vec)
        agent.free_reserved = agent.total_reserved and V.has_reserved(agent.free)

    def _release(self, fw: _Framework, agent: _Agent, role: str, resources: Resources) -> None:
        """`resources` held by `fw` in `role` on `agent` are free again."""
        given, vec, rvec = self._uncharge(fw, agent, role, resources)
        if given:
            self._return_free(agent, given, vec, rvec)
        self._dirty.add(agent.id)

    def _charge(self, fw: _Framework, agent: _Agent, role: str, resources: Resources, vec: Vec, rvec: Vec) -> None:
        """Book `resources` as held by `fw` in `role` on `agent` (the caller takes them off the free)."""
        key = (fw.id, role)
        pieces = agent.allocated.get(key)
        if pieces is None:
            agent.allocated[key] = fw.held[(agent.id, role)] = resources
        else:
            self._add_piece(fw, agent, role, pieces, resources)
        self._account(fw, role, vec, rvec, +1)

    @staticmethod
    def _add_piece(fw: _Framework, agent: _Agent, role: str, pieces: Pieces, piece: Resources) -> None:
        if type(pieces) is list:
            pieces.append(piece)
        else:
            agent.allocated[(fw.id, role)] = fw.held[(agent.id, role)] = [pieces, piece]  # type: ignore[list-item]

    @staticmethod
    def _take_piece(fw: _Framework, agent: _Agent, role: str, resources: Resources) -> Resources | None:
        """Take the piece that is (or equals) `resources` off what `fw` holds in `role` on `agent`; None when no
        piece is."""
        key = (fw.id, role)
        pieces = agent.allocated.get(key)
        if pieces is None:
            return None
        if type(pieces) is not list:
            if pieces is not resources and pieces != resources:
                return None
            del agent.allocated[key]
            del fw.held[(agent.id, role)]
            return pieces  # type: ignore[return-value]
        found = _find(pieces, resources)
        if found < 0:
            return None
        given = pieces.pop(found)
        if len(pieces) == 1:
            agent.allocated[key] = fw.held[(agent.id, role)] = pieces[0]
        return given

    def _uncharge(self, fw: _Framework, agent: _Agent, role: str, resources: Resources) -> tuple[Resources, Vec, Vec]:
        """Take (up to) `resources` off what `fw` holds in `role` on `agent`; returns what was taken."""
        key = (fw.id, role)
        given = self._take_piece(fw, agent, role, resources)
        if given is None:
            pieces = agent.allocated.get(key)
            if pieces is None:
                return _EMPTY, {}, {}
            held = _total_of(pieces)
            if held is resources or held == resources:
                given = held
                left = _EMPTY
            else:
                given = V.intersection(held, resources)
                left = held.subtract_clamped(given)
            if left:
                agent.allocated[key] = fw.held[(agent.id, role)] = left
            else:
                del agent.allocated[key]
                del fw.held[(agent.id, role)]
        vec, rvec = V.vectors(given)
        self._account(fw, role, vec, rvec, -1)
        return given, vec, rvec

    def _account(self, fw: _Framework, role: str, vec: Vec, rvec: Vec, sign: int) -> None:
        """Add (or take off) an allocation's vectors to the framework's and the roles' books; move them in
        the orders."""
        node = self._nodes.get(role) or self._node(role)
        mine = fw.role_alloc.get(role)
        if mine is None:
            mine = fw.role_alloc[role] = {}
        n: RoleNode = node
        if sign > 0:
            for name, milli in vec.items():
                mine[name] = mine.get(name, 0) + milli
            if node.children:
                V.add_into(node.own, vec)
            while n.parent is not None:
                alloc = n.alloc
                for name, milli in vec.items():
                    alloc[name] = alloc.get(name, 0) + milli
                if rvec:
                    V.add_into(n.res_alloc, rvec)
                n = n.parent
        else:
            V.sub_from(mine, vec)
            if node.children:
                V.sub_from(node.own, vec)
            while n.parent is not None:
                V.sub_from(n.alloc, vec)
                if rvec:
                    V.sub_from(n.res_alloc, rvec)
                n = n.parent
        if (self._guaranteed or node.limited) and (not rvec or V.positive_diff(vec, rvec)):
            if self._guaranteed:
                self._refresh_quota(node)
            if node.limited:
                self._refresh_room(node, vec, sign)
        if self._stale:
            return
        sorter = self.sorter
        order = node.fw_order
        if len(order.keys) > 1:
            if fw.id in order.keys:
                order.update(fw.id, sorter.key(fw.id, mine, 1.0, is_role=False))
        else:
            order.stale = True
        if node.children:
            node.order.update(SELF, sorter.key(role, node.own, node.weight, is_role=True))
        stage1 = self._stage1.keys
        n = node
        while n.parent is not None:
            order = n.parent.order
            first = stage1 and n.name in stage1
            if len(order.keys) > 1 or first:
                key = sorter.key(n.name, n.alloc, n.weight, is_role=True)
                if len(order.keys) > 1:
                    order.update(n.name, key)
                else:
                    order.stale = True
                if first:
                    self._stage1.update(n.name, key)
            else:
                order.stale = True
            n = n.parent

    def _track_reservations(self, reservations: dict[str, Vec], sign: int) -> None:
        change = V.add_into if sign > 0 else V.sub_from
        for role, vec in reservations.items():
            node = self._node(role)
            for n in node.lineage():
                change(n.reserved, vec)
            if self._guaranteed:
                self._refresh_quota(node)
            if node.limited:
                self._refresh_room(node, None, sign)

    # ================================================================= internals: quota
    def _rebuild_quota(self) -> None:
        nodes = self._root.walk()[1:]
        self._guaranteed = {n for n in nodes if n.guarantee}
        track = bool(self._guaranteed) or self.revocation
        if track and not self._track_headroom:
            self._headroom = self._count_headroom()
        self._track_headroom = track
        for n in nodes:
            n.guaranteed_below = []
            n.g_children = []
            n.limited_below = []
            n.unsat = {}
        for g in sorted(self._guaranteed, key=lambda n: n.name):
            for a in g.lineage():
                if a.limit is not None:
                    a.guaranteed_below.append(g)
            above = g.parent
            while above is not None and above.parent is not None and not above.guarantee:
                above = above.parent
            if above is not None and above.parent is not None:
                above.g_children.append(g)
        for n in nodes:
            self._link_quota(n)
        self._required = {}
        for n in self._guaranteed:
            if n.quota_root is n:
                n.unsat = self._requirement(n)
                V.add_into(self._required, n.unsat)
        self._unsat = {n for n in self._guaranteed if n.shortfall()}
        if not self._stale:
            self._rebuild_stage1()

    @staticmethod
    def _link_quota(node: RoleNode) -> None:
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

    @staticmethod
    def _requirement(node: RoleNode) -> Vec:
        """The headroom a guaranteed node's subtree needs: the larger of its own shortfall and the sum of its
        guaranteed descendants' (a child may be guaranteed more of a resource than its parent), within the
        room its limits leave."""
        own = node.shortfall()
        if not node.g_children:
            return own
        below: Vec = {}
        for child in node.g_children:
            V.add_into(below, HierarchicalAllocator._requirement(child))
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

    def _own_takers(self, node: RoleNode) -> tuple[int, ...]:
        """`RoleNode.own_takers` drawn again: the role's offerable frameworks, for each alternative of the default
        minimum that the room under its limits (and its ancestors') still allows, and those with their own
        minimums (counted for every alternative and in the last place: their minimums are theirs)."""
        count = len(node.fw_order.keys)
        if not count or node.special:
            return (count,) * (len(self._min) + 1)
        if not node.limited:
            return (count,) * len(self._min) + (0,)
        out: list[int] = []
        for minimum in self._min:
            room = True
            for name, milli in minimum.items():
                for limited in node.limited:  # `limit_room`, inlined: this runs for every allocation
                    cap = limited.limit.get(name) if limited.limit is not None else None
                    if cap is not None and milli > 0 and cap - limited.consumed(name) < milli:
                        room = False
                        break
                if not room:
                    break
            out.append(count if room else 0)
        out.append(0)
        return tuple(out)

    def _refresh_takers(self, node: RoleNode) -> None:
        """The role's offerable frameworks or its room changed: update its taker counts and its ancestors'."""
        new = self._own_takers(node)
        short = bool(self._min) and min(new[:-1]) < len(node.fw_order.keys)
        if short != node.short_of_room:
            node.short_of_room = short
            self._short_of_room += 1 if short else -1
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

    def _refresh_room(self, node: RoleNode, vec: Vec | None, sign: int) -> None:
        """`node`'s quota consumption grew (`sign` > 0) or shrank by at most `vec` (None: unknown): the room under
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
                self._refresh_takers(below)
            limited.room_margin = self._room_margin(limited)

    def _room_margin(self, limited: RoleNode) -> dict[str, int] | None:
        """By resource the minimums name: how much more the limited node may consume before its limit leaves
        less room than some alternative of the minimum asks; None when one of them is < 0 already (the node's
        limit closes some alternative below it)."""
        margin: dict[str, int] = {}
        if limited.limit is not None:
            for name, most in self._min_names.items():
                cap = limited.limit.get(name)
                if cap is not None:
                    left = cap - limited.consumed(name) - most
                    if left < 0:
                        return None
                    margin[name] = left
        return margin

    def _wanted_takers(self, agent: _Agent, *, quota_stage: bool) -> tuple[int, ...] | None:
        """The taker counts (`RoleNode.takers`) that matter on `agent` now: the alternatives of the default
        minimum that what it has free (after the quota headroom is held back, outside stage 1) meets, and the
        frameworks with their own minimums. None: every role is tried (no limits, reserved resources free there,
        or the full scan, which is the reference)."""
        if not self._short_of_room or self._full_scan or agent.free_reserved:
            return None
        vec = agent.free_vec
        required = self._required
        if required and not quota_stage:
            capped = dict(vec)
            headroom = self._headroom
            for name, need in required.items():
                have = vec.get(name, 0)
                if have > 0:
                    surplus = max(0, headroom.get(name, 0) - need)
                    if surplus < have:
                        capped[name] = surplus
            vec = capped
        met = tuple(k for k, minimum in enumerate(self._min) if V.meets(vec, minimum))
        return (*met, len(self._min))

    def _refresh_quota(self, node: RoleNode) -> None:
        """`node`'s consumption changed: update the required headroom and the set of unmet guarantees."""
        deps = node.quota_deps
        if not deps:
            return
        for root in node.quota_root_deps:
            new = self._requirement(root)
            if new != root.unsat:
                V.sub_from(self._required, root.unsat)
                V.add_into(self._required, new)
                root.unsat = new
        for n in deps:
            if n.shortfall():
                if n not in self._unsat:
                    self._unsat.add(n)
                    if not self._stale:
                        self._stage1.add(n.name, self._stage1_key(n), hidden=not n.candidates)
            elif n in self._unsat:
                self._unsat.discard(n)
                self._stage1.remove(n.name)

    # ================================================================= internals: order
    def _fw_key(self, fw: _Framework, role: str) -> object:
        return self.sorter.key(fw.id, fw.role_alloc.get(role, {}), 1.0, is_role=False)

    def _self_key(self, node: RoleNode) -> object:
        return self.sorter.key(node.name, node.own if node.children else node.alloc, node.weight, is_role=True)

    def _role_key(self, node: RoleNode) -> object:
        return self.sorter.key(node.name, node.alloc, node.weight, is_role=True)

    def _stage1_key(self, node: RoleNode) -> object:
        """A role's key in stage 1: the one its parent's order keeps (drawn again only where that is stale)."""
        assert node.parent is not None
        order = node.parent.order
        if not order.stale and node.name in order.keys:
            return order.keys[node.name]
        return self._role_key(node)

    def _rebuild_stage1(self) -> None:
        # By name, so that policies drawing keys (random) draw them in the same order every time.
        self._stage1.rebuild(
            {n.name: self._stage1_key(n) for n in sorted(self._unsat, key=lambda n: n.name)},
            hidden=[n.name for n in self._unsat if not n.candidates],
        )

    def _fresh_fw_order(self, node: RoleNode) -> None:
        if node.fw_order.stale:
            frameworks = self._frameworks
            node.fw_order.rebuild({fid: self._fw_key(frameworks[fid], node.name) for fid in node.fw_order.keys})

    def _fresh_role_order(self, node: RoleNode) -> None:
        if node.order.stale:
            keys: dict[str, object] = {name: self._role_key(c) for name, c in node.children.items()}
            if node.parent is not None:
                keys[SELF] = self._self_key(node)
            node.order.rebuild(keys, hidden=[name for name, c in node.children.items() if not c.candidates])

    def _rekey_node(self, node: RoleNode) -> None:
        """The node's weight changed: move it in its parent's order (and in stage 1's)."""
        node.order.update(SELF, self._self_key(node))
        assert node.parent is not None
        key = self._role_key(node)
        node.parent.order.update(node.name, key)
        node.order.stale = node.parent.order.stale = False
        if node.name in self._stage1.keys:
            self._stage1.update(node.name, key)

    def _rebuild_orders(self) -> None:
        frameworks = self._frameworks
        for node in self._root.walk():
            keys: dict[str, object] = {child: self._role_key(c) for child, c in node.children.items()}
            if node.parent is not None:
                keys[SELF] = self._self_key(node)
                node.fw_order.rebuild({fid: self._fw_key(frameworks[fid], node.name) for fid in node.fw_order.keys})
            node.order.rebuild(keys, hidden=[name for name, c in node.children.items() if not c.candidates])
        self._rebuild_stage1()
        self._stale = False

    # ================================================================= internals: which agents
    def _wake_agents(self, now: float) -> None:
        """Agents whose earliest refusal filter expired by `now` are looked at again (their filters pruned)."""
        wake = self._wake
        while wake and wake[0][0] <= now:
            at, agent_id = heapq.heappop(wake)
            agent = self._agents.get(agent_id)
            if agent is None or agent.wake_at != at:
                continue
            agent.wake_at = None
            nxt: float | None = None
            for framework_id in list(agent.filtered_by):
                fw = self._frameworks.get(framework_id)
                alive = False
                if fw is not None:
                    for per_agent in fw.filters.values():
                        first = F.prune(per_agent, agent_id, now)
                        if first is not None:
                            alive = True
                            if nxt is None or first < nxt:
                                nxt = first
                if not alive:
                    agent.filtered_by.pop(framework_id, None)
            if nxt is not None:
                agent.wake_at = nxt
                heapq.heappush(wake, (nxt, agent_id))
            self._forget_refusals(agent)
            self._dirty.add(agent_id)

    def _agents_to_visit(self) -> list[_Agent]:
        if self._agent_ids_stale:
            self._agent_ids = list(self._agents)
            for i, agent_id in enumerate(self._agent_ids):
                self._agents[agent_id].seq = i
            self._agent_ids_stale = False
        ids = self._agent_ids
        n = len(ids)
        if not n:
            return []
        start = (self._cycle - 1) % n
        agents = self._agents
        if self._all_dirty or self._full_scan:
            wanted = None
        else:
            wanted = self._dirty | self._held
            if not wanted:
                return []
        # An agent every offerable (framework, role) refused whole, as it is now, has nothing to offer (the full
        # scan looks anyway: the property tests check that both make the same offers).
        root = self._root
        everyone = root.candidates if not self._full_scan else 1 << 62
        if wanted is None or len(wanted) * 4 >= n:
            order = ids[start:] + ids[:start]
            picked = (agents[i] for i in order) if wanted is None else (agents[i] for i in order if i in wanted)
            return [
                a
                for a in picked
                if a.active and a.free and (a.refusal_free is not a.free or a.refused_in.get(root, 0) < everyone)
            ]
        chosen = [
            a
            for a in (agents.get(i) for i in wanted)
            if a is not None
            and a.active
            and a.free
            and (a.refusal_free is not a.free or a.refused_in.get(root, 0) < everyone)
        ]
        chosen.sort(key=lambda a: (a.seq - start) % n)
        return chosen

    def _drop_filters(self, fw: _Framework, role: str | None) -> None:
        if role is None:
            dropped = list(fw.filters.values())
            fw.filters.clear()
        else:
            one = fw.filters.pop(role, None)
            dropped = [one] if one is not None else []
        touched = {agent_id for per_agent in dropped for agent_id in per_agent}
        for per_agent in dropped:
            per_agent.clear()
        for agent_id in touched:
            agent = self._agents.get(agent_id)
            if agent is None:
                continue
            self._forget_refusals(agent)
            if not any(agent_id in pa for pa in fw.filters.values()):
                agent.filtered_by.pop(fw.id, None)

    @staticmethod
    def _forget_refusals(agent: _Agent) -> None:
        agent.refusal_free = None
        agent.refusals.clear()
        agent.refused_in.clear()
        agent.refused_own.clear()

    @staticmethod
    def _count_refusal(agent: _Agent, node: RoleNode, step: int) -> None:
        """An offerable pair of `node` refused the agent's free resources (step +1), or such a pair stopped (-1)
        or started (+1) being offerable."""
        own = agent.refused_own
        own[node] = own.get(node, 0) + step
        counts = agent.refused_in
        n: RoleNode | None = node
        while n is not None:
            counts[n] = counts.get(n, 0) + step
            n = n.parent

    def _refused(self, agent: _Agent) -> dict[RoleNode, int] | None:
        """The agent's refusal counts by subtree while they apply (its free resources are what was refused);
        None otherwise, or in a full scan (which looks everywhere, as a reference for the property tests)."""
        if agent.refusal_free is not agent.free or not agent.refused_in or self._full_scan:
            return None
        return agent.refused_in
