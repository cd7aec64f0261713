"""One agent's walk through the role tree: which (role, framework) gets which offer there.

`quota_stage` offers to the roles below their guarantee (in the sorter's order), `fair_stage` everything left,
by the sorter's order over the whole tree: top-level roles first, then children, then the frameworks inside a
role (`visit`, `try_role`). A framework gets everything on the agent its role may use (unreserved resources and
reservations of the role or its ancestors) in one offer, cut down where a quota limit or the quota headroom says
so (`quota.Guarantees.allowed`); `give` books it (`RoleTree.book`) and takes it off the agent's free resources
(`AgentBook.take`). Roles are skipped that cannot take anything: every offerable framework there refused what the
agent has (`refusals.AgentRefusals`), or their limits leave no room for it (`quota.LimitRoom`); the full scan
skips nothing (the reference of the property tests). The allocator (`hierarchical`) runs the walk for each agent
of a cycle and keeps `held`: the agents where something was held back, looked at again next cycle.
"""

from __future__ import annotations

from mesos_master.allocator import _vectors as vectors
from mesos_master.allocator._vectors import Vec
from mesos_master.allocator.base import Allocation
from mesos_master.allocator.filters import is_filtered
from mesos_master.allocator.quota import may_take
from mesos_master.allocator.records import AgentRecord, FrameworkRecord
from mesos_master.allocator.refusals import NO_FILTERS
from mesos_master.allocator.role_tree import RoleTree
from mesos_master.allocator.roles import SELF, RoleNode
from scheduler_sdk.resources import Resources

Pick = tuple[FrameworkRecord, RoleNode, Resources]  # who gets which offer


class OfferWalk:
    __slots__ = ("frameworks", "full_scan", "held", "minimums", "tree")

    def __init__(
        self, tree: RoleTree, frameworks: dict[str, FrameworkRecord], minimums: tuple[Vec, ...], full_scan: bool
    ) -> None:
        self.tree = tree
        self.frameworks = frameworks
        self.minimums = minimums  # the default minimum offer: alternatives, any one suffices
        self.full_scan = full_scan
        self.held: set[str] = set()  # agents where something was held back (for a limit or the headroom)

    def quota_stage(self, agent: AgentRecord, now: float, result: list[Allocation]) -> None:
        """Stage 1: roles below their guarantee, in the sorter's order, get what helps toward it."""
        nodes = self.tree.nodes
        order = self.tree.orders.below_guarantee
        still = order.keys
        wanted = self.wanted_takers(agent, quota_stage=True)
        for _key, name in list(order.entries):
            if not agent.free:
                return
            quota_node = nodes[name]
            if name not in still or not quota_node.candidates:
                continue
            refused = self.refused(agent)
            if refused is not None and refused.get(quota_node, 0) >= quota_node.candidates:
                continue  # every framework there refused what the agent has
            if wanted is not None and not may_take(quota_node.takers, wanted):
                self.held.add(agent.id)
                continue
            pick = self.visit(quota_node, agent, None, now, quota_node, wanted)
            if pick is not None:
                self.give(pick, agent, result)
                wanted = self.wanted_takers(agent, quota_stage=True)

    def fair_stage(self, agent: AgentRecord, now: float, result: list[Allocation]) -> None:
        """Stage 2: everything left on the agent, by the sorter's order over the whole role tree. (A role
        served in stage 1 on an agent can get no more there in stage 2: within a cycle the quota headroom's
        surplus and a limit's room only shrink.)"""
        if agent.free_reserved or self.tree.headroom.required:
            self._fair_stage_general(agent, now, result, None)
            return
        # The fast path, for the common case (the agent's free resources are all unreserved, no quota headroom
        # to keep): `_visit(root)` with `_try_role` inlined for top-level roles without children, limits or
        # special frameworks, the offer being the agent's whole free `Resources`.
        free = agent.free
        vec = agent.free_vec
        default_ok = vectors.meets_any(vec, self.minimums)
        agent_id = agent.id
        gpus = agent.gpus
        frameworks = self.frameworks
        children = self.tree.root.children
        refusals = agent.refusals  # `refused`, inlined
        refused = (
            refusals.in_subtree if refusals.resources is free and refusals.in_subtree and not self.full_scan else None
        )
        wanted = self.wanted_takers(agent, quota_stage=False) if self.tree.room.short_of_room else None
        for _key, role in self.tree.root.order.entries:
            node = children[role]
            if not node.candidates or (refused is not None and refused.get(node, 0) >= node.candidates):
                continue
            if node.children or node.limited:
                if wanted is not None and not may_take(node.takers, wanted):
                    self.held.add(agent_id)
                    continue
                pick = (
                    self.visit(node, agent, None, now, None, wanted)
                    if node.children
                    else self.try_role(node, agent, now, None)
                )
                if pick is None:
                    continue
                self.give(pick, agent, result)
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
                self.give((fw, node, free), agent, result)  # the whole free resources
                return

    def _special_ok(
        self, fw: FrameworkRecord, role: str, agent: AgentRecord, offer: Resources, vec: Vec, default_ok: bool
    ) -> bool:
        """Eligibility of a framework with its own minimums or offer constraints."""
        mins = fw.min_alloc.get(role)
        if not (default_ok if mins is None else vectors.meets_any(vec, mins)):
            return False
        compiled = fw.constraints
        if compiled is not None:
            key = (agent.attr_key, agent.hostname) if compiled.uses_hostname else agent.attr_key
            ok = fw.attr_cache.get(key)
            if ok is None:
                attributes = agent.attributes
                if compiled.uses_hostname and agent.hostname is not None:
                    attributes = {**attributes, "hostname": agent.hostname}
                ok = fw.attr_cache[key] = compiled.agent_ok(attributes)
            if not ok or not compiled.offer_ok(offer, vec):
                return False
        return True

    def _fair_stage_general(
        self, agent: AgentRecord, now: float, result: list[Allocation], served: set[str] | None
    ) -> None:
        root = self.tree.root
        while True:
            wanted = self.wanted_takers(agent, quota_stage=False)
            if wanted is not None and not may_take(root.takers, wanted):
                self.held.add(agent.id)  # every role with offerable frameworks lacks room for what is here
                return
            pick = self.visit(root, agent, served, now, None, wanted)
            if pick is None:
                return
            self.give(pick, agent, result)
            if not agent.free:
                return
            if served is None:
                served = set()
            served.add(pick[1].name)

    def give(self, pick: Pick, agent: AgentRecord, result: list[Allocation]) -> None:
        """Book the offer as held (both books and the role tree) and take it off the agent's free resources."""
        fw, node, offer = pick
        if offer is agent.free:
            self.tree.book(fw, agent, node.name, offer, agent.free_vec, agent.free_rvec)
            agent.take_all()
        else:
            vec, rvec = vectors.vectors(offer)
            self.tree.book(fw, agent, node.name, offer, vec, rvec)
            agent.take(offer, vec, rvec)
        result.append(Allocation(fw.id, node.name, agent.id, offer))

    def visit(
        self,
        node: RoleNode,
        agent: AgentRecord,
        served: set[str] | None,
        now: float,
        quota_node: RoleNode | None,
        wanted: tuple[int, ...] | None = None,
    ) -> Pick | None:
        """The first (framework, role, offer) in sort order under `node` that takes something on `agent`.
        `wanted`: the taker counts that matter on the agent (`_wanted_takers`; None: try every role)."""
        children = node.children
        refused = self.refused(agent)
        for _key, name in node.order.entries:
            if name == SELF:
                if (
                    node.fw_order.entries
                    and (served is None or node.name not in served)
                    and (refused is None or agent.refusals.in_role.get(node, 0) < len(node.fw_order.entries))
                ):
                    if wanted is not None and not may_take(node.own_takers, wanted):
                        self.held.add(agent.id)
                        continue
                    pick = self.try_role(node, agent, now, quota_node)
                    if pick is not None:
                        return pick
            else:
                child = children[name]
                if child.candidates and (refused is None or refused.get(child, 0) < child.candidates):
                    if wanted is not None and not may_take(child.takers, wanted):
                        self.held.add(agent.id)
                        continue
                    if child.children:
                        pick = self.visit(child, agent, served, now, quota_node, wanted)
                    elif served is None or name not in served:
                        pick = self.try_role(child, agent, now, quota_node)  # a leaf: only its frameworks
                    else:
                        continue
                    if pick is not None:
                        return pick
        return None

    def try_role(self, node: RoleNode, agent: AgentRecord, now: float, quota_node: RoleNode | None) -> Pick | None:
        role = node.name
        if agent.free_reserved:
            avail = agent.free.allocatable_to(role)
            if not avail:
                return None
            vec, rvec = vectors.vectors(avail)
        else:
            avail, vec, rvec = agent.free, agent.free_vec, agent.free_rvec
        # Quota limits and headroom may cut the offer down. That is worked out once, for the first framework
        # not already filtered for all of it (a filter that covers everything covers any part of it).
        shape = quota_node is not None or bool(node.limited) or bool(self.tree.headroom.required)
        offer, ovec = avail, vec
        shaped = not shape
        default_ok: bool | None = None
        frameworks = self.frameworks
        agent_id = agent.id
        gpus = agent.gpus
        for _key, framework_id in node.fw_order.entries:
            fw = frameworks[framework_id]
            if gpus and not fw.gpu_aware:
                continue  # GPU agents are kept for frameworks that can use GPUs (Mesos' GPU_RESOURCES rule)
            per_agent = fw.filters.get(role) or NO_FILTERS
            slot = per_agent.refused.get(agent_id)
            if slot is not None and shape and is_filtered(per_agent, agent_id, slot, avail, now):
                continue
            if not shaped:
                shaped = True
                uvec = vectors.unreserved_of(vec, rvec)
                allowed = self.tree.guarantees.allowed(node, uvec, quota_node)
                if allowed is None:
                    return None
                if allowed:
                    offer = vectors.shrink_unreserved(avail, uvec, allowed)
                    if offer is not avail:
                        self.held.add(agent_id)
                        if not offer:
                            return None
                        ovec = vectors.vector(offer)
            if default_ok is None:
                default_ok = vectors.meets_any(ovec, self.minimums)
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

    def refused(self, agent: AgentRecord) -> dict[RoleNode, int] | None:
        """The agent's refusal counts by subtree while they apply (its free resources are what was refused);
        None otherwise, or in a full scan (which looks everywhere, as a reference for the property tests)."""
        if self.full_scan:
            return None
        return agent.refusals.applying(agent.free)

    def wanted_takers(self, agent: AgentRecord, *, quota_stage: bool) -> tuple[int, ...] | None:
        """The taker counts (`quota.LimitRoom`) that matter on `agent` now; None: every role is tried (no role
        short of room, reserved resources free there, or the full scan, which is the reference)."""
        room = self.tree.room
        if not room.short_of_room or self.full_scan or agent.free_reserved:
            return None
        return room.wanted(agent.free_vec, None if quota_stage else self.tree.headroom)
