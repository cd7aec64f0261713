"""The hierarchical allocator: the public interface the master calls and the allocation cycle, over the
mechanics (books, quota, reservations, filters, constraints, minimums), with the fairness policy left to a
`Sorter` (DRF by default).

One cycle (`allocate`) looks at the agents that may have something new to offer, in an order rotated every
cycle, and offers what is free on each to the first (role, framework) in the sorter's order, walking the role
tree: top-level roles first, then children, then frameworks inside a role. A framework gets everything on the
agent its role may use (unreserved resources and reservations of the role or its ancestors) in one offer,
cut down where a quota limit or the quota headroom says so. Shares are updated as the cycle goes, so one cycle
over many agents spreads them by the policy. As in Mesos, a first stage offers to roles whose quota guarantee
is not yet met, and every stage holds back enough unreserved resources for the guarantees still unmet.

Where things are kept: `books` (who holds what, per agent and per framework), `role_tree` (per-role sums, the
sorted orders of `role_orders`, the quota books of `quota`), `refusals` (the refusal filters' index and wake
heap, over `filters`), `constraints` (offer constraints), `revocation` (which tasks to revoke).

Incremental design (what makes 10,000 agents and 1,000 frameworks fit in a fraction of a second):

- an agent is looked at only when it may offer something new: its free resources grew (recover, add, update,
  activation), one of its refusal filters expired (one heap entry per agent), something was held back on it
  for a quota limit or the headroom in the previous cycle, or something that widens who may be offered
  changed (a framework came, was activated, revived, updated; quota changed): then every agent with free
  resources is;
- the order of roles and frameworks is kept sorted (`SortedOrder`) and a client is moved only when its
  allocation changes, instead of sorting every client for every agent; inactive and suppressed frameworks are
  not in the order at all, roles without offerable frameworks are hidden from it, and roles whose quota limits
  leave no room for what an agent has are skipped (`quota.LimitRoom`);
- amounts are plain scalar vectors (milli-units by name); `Resources` objects are made only for offers, and
  an agent without reservations offers its free `Resources` object as it is.

`full_scan=True` looks at every agent every cycle and tries every role; the property tests check that both make
the same offers.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from mesos_master.allocator import _vectors as vectors
from mesos_master.allocator import cycle, quota
from mesos_master.allocator._vectors import Vec
from mesos_master.allocator.base import AllocatedTask, Allocation, Allocator, OfferConstraints, Quota, Revocation
from mesos_master.allocator.books import EMPTY, holding_total, take_piece, take_up_to
from mesos_master.allocator.filters import has_live
from mesos_master.allocator.offer_walk import OfferWalk
from mesos_master.allocator.records import AgentRecord, FrameworkRecord
from mesos_master.allocator.refusals import RefusalIndex
from mesos_master.allocator.revocation import AllocatorView, decide
from mesos_master.allocator.role_tree import RoleTree
from mesos_master.allocator.roles import RoleNode
from mesos_master.allocator.sorter import DRFSorter, Sorter
from scheduler_sdk.resources import UNRESERVED, Resources

DEFAULT_MIN_ALLOCATABLE = (Resources.of(cpus=0.01), Resources.of(mem=32))
_METRICS_WINDOW = 1000
#: Agents looked at between two pieces of a cycle (`allocation_pieces`): a few ms of work at most.
PIECE_AGENTS = 16


class HierarchicalAllocator(Allocator):
    """Hierarchical allocation with a pluggable fairness policy.

    Keyword arguments (all optional):

    - `sorter`: the fairness policy (`DRFSorter()` by default; see `create_allocator` for names);
    - `allocation_interval`: seconds between periodic cycles; the shortest life of a refusal filter;
    - `min_allocatable`: the default minimum offer, alternatives (any one suffices), compared role-free;
      default ``cpus:0.01`` or ``mem:32``; frameworks override it per role;
    - `revocation`: enable `revocations()` (Mesos paper's revocation; off by default);
    - `timer`: the clock used only to measure cycle durations for `metrics()` (never for decisions);
    - `full_scan`: look at every agent in every cycle, and try every role there, instead of only those with
      news (the same offers, more slowly: for tests that check the incremental cycle against the plain one).
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
        chosen: Sorter = sorter if sorter is not None else DRFSorter()
        self.allocation_interval = allocation_interval
        self.revocation = revocation
        self._min: tuple[Vec, ...] = tuple(vectors.vector(m) for m in min_allocatable)
        self._timer = timer
        self._full_scan = full_scan

        self._agents: dict[str, AgentRecord] = {}
        self._agent_ids: list[str] = []
        self._agent_ids_stale = False
        self._frameworks: dict[str, FrameworkRecord] = {}
        self._tree = RoleTree(chosen, self._min, track_headroom=revocation)
        self._root = self._tree.root
        self._nodes = self._tree.nodes
        self._attr_keys: dict[tuple, tuple[tuple, dict[str, str]]] = {}  # attributes -> (key, one dict of them)
        self._refusals = RefusalIndex()

        self._total: Vec = {}  # every agent's scalars
        self._total_changed = True
        self._dirty: set[str] = set()  # agents with news
        self._all_dirty = True
        self._held: set[str] = set()  # agents where the last cycle held something back
        self._walk = OfferWalk(self._tree, self._frameworks, self._min, full_scan)

        self._cycle = 0
        self._live_cycle = 0  # the cycle under way (suspended between pieces), 0 when none
        self._runs: deque[float] = deque(maxlen=_METRICS_WINDOW)
        self._run_count = 0
        self._last_offers = 0
        self._last_examined = 0

    @property
    def sorter(self) -> Sorter:
        """The fairness policy (the role tree's orders are drawn by it)."""
        return self._tree.orders.sorter

    @sorter.setter
    def sorter(self, sorter: Sorter) -> None:
        self._tree.orders.sorter = sorter
        if self._live_cycle:
            self._live_cycle = 0  # a cycle under way ends (its orders were drawn by the other policy)
            self._all_dirty = True
        self._total_changed = True  # give it the cluster's total, then draw every key again

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
        fw = FrameworkRecord(framework_id, tuple(roles) or (UNRESERVED,))
        fw.active = active
        self._configure(fw, gpu_aware, constraints, min_allocatable)
        self._frameworks[framework_id] = fw
        for role in fw.roles:
            self._tree.node(role).frameworks.add(framework_id)
        self._sync(fw)
        for agent_id, resources in used.items():
            agent = self._agents.get(agent_id)
            if agent is not None and framework_id in agent.orphans:
                # The master's word replaces what the agent reported before the framework was known.
                orphan = agent.orphans.pop(framework_id)
                agent.set_free(agent.free + orphan)
            self.add_used(framework_id, agent_id, resources)
        for agent in self._agents.values():
            orphan = agent.orphans.pop(framework_id, EMPTY)
            if orphan:
                self._tree.book(fw, agent, fw.role_for(orphan), orphan, *vectors.vectors(orphan))
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
            node = self._tree.node(role)
            self._set_offerable(fw, node, False)
            node.frameworks.discard(framework_id)
            self._refusals.drop(fw, role, self._agents)
            fw.suppressed.discard(role)
        for role in new_roles:
            self._tree.node(role).frameworks.add(framework_id)
        # Leaving a role keeps what it holds there charged to that role until it comes back (recover).
        for role in fw.roles:
            self._set_offerable(fw, self._tree.node(role), False)
        fw.roles = new_roles
        self._configure(fw, gpu_aware, constraints, min_allocatable)
        self._sync(fw)
        self._all_dirty = True

    def remove_framework(self, framework_id: str) -> None:
        fw = self._frameworks.get(framework_id)
        if fw is None:
            return
        for role in fw.roles:
            node = self._tree.node(role)
            self._set_offerable(fw, node, False)
            node.frameworks.discard(framework_id)
        for (agent_id, role), holding in list(fw.held.items()):
            self._release(fw, self._agents[agent_id], role, holding_total(holding))
        self._refusals.drop(fw, None, self._agents)
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
            self._refusals.drop(fw, None, self._agents)

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
            self._refusals.drop(fw, None, self._agents)
        else:
            for role in chosen:
                self._refusals.drop(fw, role, self._agents)
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
        # Agents share their attributes (all but the hostname: one dict per distinct set, 300 for 3 zones x 100
        # racks, instead of one per agent).
        attrs = dict(attributes or {})
        hostname = attrs.pop("hostname", None)
        key = tuple(sorted(attrs.items()))
        shared = self._attr_keys.get(key)
        if shared is None:
            shared = self._attr_keys[key] = (key, attrs)
        agent = AgentRecord(agent_id, total, shared[1], shared[0], hostname, self._tree.headroom)
        agent.seq = len(self._agent_ids)
        self._agents[agent_id] = agent
        self._agent_ids.append(agent_id)
        vectors.add_into(self._total, agent.total_vec)
        self._total_changed = True
        self._tree.track_reservations(agent.reservations, +1)
        for framework_id, resources in used.items():
            if framework_id in self._frameworks:
                self.add_used(framework_id, agent_id, resources)
            elif resources:
                agent.orphans[framework_id] = agent.orphans.get(framework_id, EMPTY) + resources
                agent.set_free(agent.free.subtract_clamped(resources))
        self._dirty.add(agent_id)

    def update_agent(self, agent_id: str, total: Resources) -> None:
        agent = self._agents.get(agent_id)
        if agent is None:
            return
        self._tree.track_reservations(agent.reservations, -1)
        vectors.sub_from(self._total, agent.total_vec)
        agent.set_total(total)
        agent.gpus = total.scalar("gpus") > 0
        vectors.add_into(self._total, agent.total_vec)
        self._total_changed = True
        self._tree.track_reservations(agent.reservations, +1)
        # Fit what is held into the new total: resources that changed reservation while allocated (a RESERVE
        # of offered resources) are matched by name; what no longer exists is dropped from the books.
        agent.refusals.forget()
        remaining = total
        for (framework_id, role), holding in list(agent.allocated.items()):
            held = holding_total(holding)
            fitted = vectors.intersection(held, remaining)
            missing = held.subtract_clamped(fitted)
            if missing:
                fitted = fitted + vectors.take_role_free(missing, remaining.subtract_clamped(fitted), role)
            if fitted != held:
                fw = self._frameworks[framework_id]
                self._unbook(fw, agent, role, held)
                if fitted:
                    self._tree.book(fw, agent, role, fitted, *vectors.vectors(fitted))
            remaining = remaining.subtract_clamped(fitted)
        for framework_id, held in list(agent.orphans.items()):
            fitted = vectors.intersection(held, remaining)
            if fitted:
                agent.orphans[framework_id] = fitted
            else:
                del agent.orphans[framework_id]
            remaining = remaining.subtract_clamped(fitted)
        agent.set_free(remaining)
        self._all_dirty = True  # quota consumption (reservations) may have changed

    def remove_agent(self, agent_id: str) -> None:
        agent = self._agents.get(agent_id)
        if agent is None:
            return
        for (framework_id, role), holding in list(agent.allocated.items()):
            self._unbook(self._frameworks[framework_id], agent, role, holding_total(holding))
        agent.allocated.clear()
        self._refusals.agent_removed(agent_id, agent.refusals, self._frameworks)
        agent.deactivate()  # its free resources leave the headroom
        vectors.sub_from(self._total, agent.total_vec)
        self._total_changed = True
        self._tree.track_reservations(agent.reservations, -1)
        del self._agents[agent_id]
        self._agent_ids_stale = True
        self._dirty.discard(agent_id)
        self._held.discard(agent_id)

    def activate_agent(self, agent_id: str) -> None:
        agent = self._agents.get(agent_id)
        if agent is not None and not agent.active:
            agent.activate()
            self._dirty.add(agent_id)

    def deactivate_agent(self, agent_id: str) -> None:
        agent = self._agents.get(agent_id)
        if agent is not None:
            agent.deactivate()

    # ================================================================= resources
    def add_used(self, framework_id: str, agent_id: str, resources: Resources, role: str | None = None) -> None:
        fw = self._frameworks.get(framework_id)
        agent = self._agents.get(agent_id)
        if fw is None or agent is None or not resources:
            return
        if role is None:
            role = fw.role_for(resources)
        agent.set_free(agent.free.subtract_clamped(resources))
        self._tree.book(fw, agent, role, resources, *vectors.vectors(resources))

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
                back = vectors.intersection(orphan, resources)
                left = orphan.subtract_clamped(back)
                if left:
                    agent.orphans[framework_id] = left
                else:
                    del agent.orphans[framework_id]
                agent.set_free(agent.free + back)
                self._dirty.add(agent_id)
            return
        exact = take_piece(fw, agent, role, resources) if role is not None else None
        if exact is not None and role is not None:
            self._give_back(fw, agent, role, exact)  # the common case: an offer declined whole, a task's resources
            roles_back = [role]
        else:
            roles_back = self._recover_by_amounts(fw, agent, resources, role)
        if refuse_seconds is not None and refuse_seconds > 0:
            targets = (role,) if role is not None else tuple(dict.fromkeys(roles_back or fw.roles))
            expires = now + max(refuse_seconds, self.allocation_interval)
            self._refusals.refuse(fw, agent_id, agent.refusals, agent.free, resources, targets, expires, self._nodes)

    def _recover_by_amounts(
        self, fw: FrameworkRecord, agent: AgentRecord, resources: Resources, role: str | None
    ) -> list[str]:
        """`resources` that are no piece the framework holds come back from its holdings on the agent (in `role`
        first); returns the roles they came back from."""
        roles_back: list[str] = []
        remaining = resources
        keys = [r for (fid, r) in agent.allocated if fid == fw.id]
        keys.sort(key=lambda r: (r != role, r))
        for r in keys:
            give = vectors.intersection(holding_total(agent.allocated[(fw.id, r)]), remaining)
            if give:
                self._release(fw, agent, r, give)
                roles_back.append(r)
                remaining = remaining.subtract_clamped(give)
                if not remaining:
                    return roles_back
        if remaining:
            # Resources that changed reservation while allocated: match the rest by name.
            for r in keys:
                holding = agent.allocated.get((fw.id, r))
                if holding is None:
                    continue
                give = vectors.take_role_free(remaining, holding_total(holding), r)
                if give:
                    self._release(fw, agent, r, give)
                    roles_back.append(r)
                    remaining = remaining.subtract_clamped(vectors.take_role_free(give, remaining, r))
                    if not remaining:
                        break
        return roles_back

    def allocated(self, framework_id: str) -> Resources:
        fw = self._frameworks.get(framework_id)
        return fw.allocated() if fw is not None else EMPTY

    # ================================================================= operator policy
    def update_weights(self, weights: Mapping[str, float]) -> None:
        for role, weight in weights.items():
            if not weight > 0:
                raise ValueError(f"the weight of role {role!r} must be > 0, not {weight}")
        for role, weight in weights.items():
            self._tree.set_weight(role, float(weight))

    def update_quota(self, role: str, quota: Quota | None) -> None:
        self._tree.set_quota(role, quota, self.revocation, self._count_headroom)
        self._all_dirty = True

    def quota_headroom(self) -> tuple[Resources, Resources]:
        """(required, available): unreserved resources held back for unmet guarantees, and free to hold them."""
        headroom = self._tree.headroom
        available = headroom.available if headroom.tracking else self._count_headroom()
        return vectors.to_resources(headroom.required), vectors.to_resources(available)

    def _count_headroom(self) -> Vec:
        out: Vec = {}
        for agent in self._agents.values():
            if agent.active:
                vectors.add_into(out, agent.unreserved_free())
        return out

    def role_allocation(self, role: str) -> Resources:
        """What the role and its descendants hold (scalars, reservation roles summed)."""
        node = self._nodes.get(role)
        return vectors.to_resources(node.alloc) if node is not None else EMPTY

    # ================================================================= the cycle
    def allocate(self, now: float) -> list[Allocation]:
        result: list[Allocation] = []
        for piece in self.allocation_pieces(now):
            result.extend(piece)
        return result

    def allocation_pieces(self, now: float, chunk: int = PIECE_AGENTS) -> Iterator[list[Allocation]]:
        """One cycle, yielding what was allocated on every `chunk` agents looked at (see `Allocator`): between
        two pieces the caller may run anything, and any call may come (an agent removed or deactivated, a
        framework removed or suppressed, resources recovered, weights or quota set). The cycle goes on from the
        state as it is then: what a piece allocated is booked before it is yielded, an agent gone or deactivated
        meanwhile is skipped, news that comes during the cycle is for the next one. A new cycle begun (or the
        policy swapped) while this one is suspended ends it at its next piece; the agents it did not reach are
        looked at next cycle."""
        return cycle.allocation_pieces(self, now, chunk)

    def _held_in(self, framework_id: str, role: str) -> Vec:
        return self._frameworks[framework_id].role_alloc.get(role, {})

    def _sync_total(self) -> None:
        if self._total_changed:
            self.sorter.set_total(self._total)
            self._total_changed = False
            self._tree.orders.stale = True

    # ================================================================= revocation
    def revocations(self, now: float, tasks: Iterable[AllocatedTask]) -> list[Revocation]:
        """See `Allocator.revocations` and `revocation.decide`."""
        if not self.revocation:
            return []
        self._sync_total()
        tree = self._tree
        view = AllocatorView(
            free=tree.headroom.available,
            below_guarantee=frozenset(tree.guarantees.below),
            root=tree.root,
            sorter=self.sorter,
            node=tree.nodes.get,
            waiting=self.waiting,
        )
        return decide(view, now, tasks)

    def limit_room(self, role: str) -> Resources | None:
        """The least room left under the quota limits of `role` and its ancestors, by resource (what it may
        still consume); None when none of them has a limit."""
        return quota.limit_room(self._tree.limited_of(role))

    def check_reservation(self, resources: Resources, *, allocated_role: str | None = None) -> None:
        quota.check_reservation(resources, allocated_role, self._tree.limited_of)

    def waiting(self, node: RoleNode, now: float) -> bool:
        """Whether the role has work waiting: an active framework, not suppressed in it, that declined
        nothing there (no live refusal filter in that role)."""
        for framework_id in node.frameworks:
            fw = self._frameworks.get(framework_id)
            if fw is None or not fw.active or node.name in fw.suppressed:
                continue
            per_agent = fw.filters.get(node.name)
            if not per_agent or not has_live(per_agent, now):
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
            "allocator_refusal_filters": float(RefusalIndex.live_filters(self._frameworks.values())),
            "allocator_quota_headroom_required_cpus": self._tree.headroom.required.get("cpus", 0) / vectors.MILLI,
        }

    # ================================================================= internals: frameworks
    def _configure(
        self,
        fw: FrameworkRecord,
        gpu_aware: bool,
        constraints: OfferConstraints | None,
        min_allocatable: Mapping[str, Sequence[Resources]] | None,
    ) -> None:
        # `node.special` counts the offerable special frameworks of a role: the callers take the framework out
        # of every order before configuring it, and `_sync` puts it back.
        assert not any(fw.id in self._tree.node(r).fw_order for r in fw.roles)
        fw.configure(gpu_aware, constraints, min_allocatable)

    def _sync(self, fw: FrameworkRecord) -> None:
        """Put the framework in (or out of) the order of each of its roles: offerable when active and not
        suppressed there."""
        for role in fw.roles:
            self._set_offerable(fw, self._tree.node(role), fw.active and role not in fw.suppressed)

    def _set_offerable(self, fw: FrameworkRecord, node: RoleNode, offerable: bool) -> None:
        present = fw.id in node.fw_order
        if offerable == present:
            return
        if offerable:
            if not self._tree.orders.stale:
                self._tree.orders.fresh_framework_order(node, self._held_in)
            node.fw_order.add(fw.id, self._tree.orders.framework_key(fw.id, self._held_in(fw.id, node.name)))
            step = 1
        else:
            node.fw_order.remove(fw.id)
            step = -1
        if fw.special:
            node.special += step
        self._refusals.offerable_changed(fw, node, step, self._agents)
        self._tree.count_offerable(node, step)

    # ================================================================= internals: booking
    def _unbook(
        self, fw: FrameworkRecord, agent: AgentRecord, role: str, resources: Resources
    ) -> tuple[Resources, Vec, Vec] | None:
        """Take (up to) `resources` off what `fw` holds in `role` on `agent`; returns what was taken (None:
        nothing was held there)."""
        given = take_up_to(fw, agent, role, resources)
        if given is None:
            return None
        vec, rvec = vectors.vectors(given)
        self._tree.account(fw, role, vec, rvec, -1)
        return given, vec, rvec

    def _release(self, fw: FrameworkRecord, agent: AgentRecord, role: str, resources: Resources) -> None:
        """`resources` held by `fw` in `role` on `agent` are free again."""
        taken = self._unbook(fw, agent, role, resources)
        if taken is not None and taken[0]:
            agent.give_back(*taken)
        self._dirty.add(agent.id)

    def _give_back(self, fw: FrameworkRecord, agent: AgentRecord, role: str, piece: Resources) -> None:
        """A piece already taken off what `fw` holds in `role` on `agent` is free again."""
        vec, rvec = vectors.vectors(piece)
        self._tree.account(fw, role, vec, rvec, -1)
        agent.give_back(piece, vec, rvec)
        self._dirty.add(agent.id)
