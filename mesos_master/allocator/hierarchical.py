"""The hierarchical DRF allocator: roles are sorted by DRF, then frameworks inside a role.

One cycle walks the active agents (in an order rotated each cycle so no agent is always first) and offers
what is free on each agent, all of it, to the first framework in sort order that subscribed to a role that
may use it, is neither suppressed nor filtered for it. Shares are updated as the cycle goes, so a cycle
over many agents spreads them by DRF.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mesos_master.allocator.base import Allocation, Allocator
from mesos_master.allocator.filters import Filters
from mesos_master.allocator.sorter import DRFSorter
from scheduler_sdk.resources import UNRESERVED, Resources

DEFAULT_MIN_ALLOCATABLE = (Resources.of(cpus=0.01), Resources.of(mem=32))


@dataclass(slots=True)
class _Agent:
    total: Resources
    allocated: dict[str, Resources] = field(default_factory=dict)  # by framework id
    active: bool = True

    def free(self) -> Resources:
        free = self.total
        for held in self.allocated.values():
            free = free.subtract_clamped(held)
        return free


@dataclass(slots=True)
class _Framework:
    roles: tuple[str, ...]
    active: bool = True
    gpu_aware: bool = False
    suppressed: set[str] = field(default_factory=set)
    # what it holds per (agent, role); the role matters for the role sorter
    allocated: dict[tuple[str, str], Resources] = field(default_factory=dict)


class HierarchicalAllocator(Allocator):
    def __init__(
        self,
        *,
        min_allocatable: Iterable[Resources] = DEFAULT_MIN_ALLOCATABLE,
        allocation_interval: float = 1.0,
    ) -> None:
        self._agents: dict[str, _Agent] = {}
        self._frameworks: dict[str, _Framework] = {}
        self._roles = DRFSorter()
        self._framework_sorters: dict[str, DRFSorter] = {}
        self._filters = Filters()
        self._min_allocatable = tuple(min_allocatable)
        self._allocation_interval = allocation_interval
        self._cycle = 0

    # ----------------------------------------------------------------- frameworks
    def add_framework(
        self,
        framework_id: str,
        roles: Iterable[str],
        used: Mapping[str, Resources],
        *,
        active: bool = True,
        gpu_aware: bool = False,
        constraints: object = None,
        min_allocatable: object = None,
    ) -> None:
        role_list = tuple(roles) or (UNRESERVED,)
        existing = self._frameworks.get(framework_id)
        if existing is not None:
            existing.active = active
            existing.gpu_aware = gpu_aware
            return
        fw = _Framework(roles=role_list, active=active, gpu_aware=gpu_aware)
        self._frameworks[framework_id] = fw
        for role in role_list:
            self._role_sorter(role).add(framework_id)
        for agent_id, resources in used.items():
            self.add_used(framework_id, agent_id, resources)

    def remove_framework(self, framework_id: str) -> None:
        fw = self._frameworks.pop(framework_id, None)
        if fw is None:
            return
        for (agent_id, role), held in fw.allocated.items():
            agent = self._agents.get(agent_id)
            if agent is not None:
                agent.allocated.pop(framework_id, None)
            self._roles.unallocate(role, held)
        for role in fw.roles:
            sorter = self._framework_sorters.get(role)
            if sorter is not None:
                sorter.remove(framework_id)
                if not list(sorter.sort()):
                    del self._framework_sorters[role]
                    self._roles.remove(role)
        self._filters.clear_framework(framework_id)

    def activate_framework(self, framework_id: str) -> None:
        if framework_id in self._frameworks:
            self._frameworks[framework_id].active = True

    def deactivate_framework(self, framework_id: str) -> None:
        if framework_id in self._frameworks:
            self._frameworks[framework_id].active = False
            self._filters.clear_framework(framework_id)

    def suppress_offers(self, framework_id: str, roles: Iterable[str] | None = None) -> None:
        fw = self._frameworks.get(framework_id)
        if fw is not None:
            fw.suppressed.update(roles or fw.roles)

    def revive_offers(self, framework_id: str, roles: Iterable[str] | None = None) -> None:
        fw = self._frameworks.get(framework_id)
        if fw is None:
            return
        fw.suppressed.difference_update(roles or fw.roles)
        self._filters.clear_framework(framework_id)

    def is_suppressed(self, framework_id: str) -> bool:
        fw = self._frameworks.get(framework_id)
        return fw is not None and set(fw.roles) <= fw.suppressed

    # ----------------------------------------------------------------- agents
    # Stopgap for the wider interface (roles, quota, weights): replaced by the full allocator.
    def update_framework(self, framework_id: str, roles: Iterable[str], **options: object) -> None:
        fw = self._frameworks.get(framework_id)
        if fw is not None and tuple(roles or (UNRESERVED,)) != fw.roles:
            used = {agent_id: held for (agent_id, _), held in fw.allocated.items()}
            active = fw.active
            self.remove_framework(framework_id)
            self.add_framework(framework_id, roles, used, active=active)

    def update_agent(self, agent_id: str, total: Resources) -> None:
        if agent_id in self._agents:
            self._agents[agent_id].total = total
            self._update_totals()

    def update_weights(self, weights: Mapping[str, float]) -> None:
        pass

    def update_quota(self, role: str, quota: object) -> None:
        pass

    def revocations(self, now: float) -> list[Any]:
        return []

    def add_agent(
        self, agent_id: str, total: Resources, used: Mapping[str, Resources], attributes: object = None
    ) -> None:
        self._agents[agent_id] = _Agent(total=total)
        self._update_totals()
        for framework_id, resources in used.items():
            self.add_used(framework_id, agent_id, resources)

    def remove_agent(self, agent_id: str) -> None:
        agent = self._agents.pop(agent_id, None)
        if agent is None:
            return
        for framework_id in list(agent.allocated):
            fw = self._frameworks.get(framework_id)
            if fw is None:
                continue
            for key in [k for k in fw.allocated if k[0] == agent_id]:
                held = fw.allocated.pop(key)
                self._role_sorter(key[1]).unallocate(framework_id, held)
                self._roles.unallocate(key[1], held)
        self._filters.clear_agent(agent_id)
        self._update_totals()

    def activate_agent(self, agent_id: str) -> None:
        if agent_id in self._agents:
            self._agents[agent_id].active = True

    def deactivate_agent(self, agent_id: str) -> None:
        if agent_id in self._agents:
            self._agents[agent_id].active = False

    # ----------------------------------------------------------------- resources
    def add_used(self, framework_id: str, agent_id: str, resources: Resources, role: str | None = None) -> None:
        fw = self._frameworks.get(framework_id)
        agent = self._agents.get(agent_id)
        if fw is None or agent is None or not resources:
            return
        self._track(framework_id, fw, agent_id, agent, self._role_for(fw, resources), resources)

    def recover_resources(
        self,
        framework_id: str,
        agent_id: str,
        resources: Resources,
        refuse_seconds: float | None,
        now: float,
        role: str | None = None,
    ) -> None:
        if not resources:
            return
        agent = self._agents.get(agent_id)
        fw = self._frameworks.get(framework_id)
        if agent is not None and framework_id in agent.allocated:
            left = agent.allocated[framework_id].subtract_clamped(resources)
            if left:
                agent.allocated[framework_id] = left
            else:
                del agent.allocated[framework_id]
        if fw is not None:
            remaining = resources
            keys = [k for k in fw.allocated if k[0] == agent_id]
            # The role they were allocated under first; then any other (when the caller does not know).
            keys.sort(key=lambda k: k[1] != role)
            for key in keys:
                held = fw.allocated[key]
                give_back = _intersection(held, remaining)
                if not give_back:
                    continue
                left = held.subtract_clamped(give_back)
                if left:
                    fw.allocated[key] = left
                else:
                    del fw.allocated[key]
                self._role_sorter(key[1]).unallocate(framework_id, give_back)
                self._roles.unallocate(key[1], give_back)
                remaining = remaining.subtract_clamped(give_back)
            if refuse_seconds is not None and refuse_seconds > 0 and agent is not None:
                expires = now + max(refuse_seconds, self._allocation_interval)
                self._filters.add(framework_id, agent_id, resources, expires)

    def allocated(self, framework_id: str) -> Resources:
        fw = self._frameworks.get(framework_id)
        total = Resources.empty()
        if fw is not None:
            for held in fw.allocated.values():
                total = total + held
        return total

    # ----------------------------------------------------------------- the cycle
    def allocate(self, now: float) -> list[Allocation]:
        result: list[Allocation] = []
        agent_ids = sorted(a for a, agent in self._agents.items() if agent.active)
        if not agent_ids or not self._frameworks:
            return result
        start = self._cycle % len(agent_ids)
        self._cycle += 1
        for agent_id in agent_ids[start:] + agent_ids[:start]:
            agent = self._agents[agent_id]
            free = agent.free()
            if not self._allocatable(free):
                continue
            for role in self._roles.sort():
                sorter = self._framework_sorters.get(role)
                if sorter is None:
                    continue
                offerable = free.allocatable_to(role)
                if not self._allocatable(offerable):
                    continue
                chosen = self._pick_framework(sorter, role, agent_id, offerable, now)
                if chosen is None:
                    continue
                fw = self._frameworks[chosen]
                self._track(chosen, fw, agent_id, agent, role, offerable)
                result.append(Allocation(chosen, role, agent_id, offerable))
                free = free.subtract_clamped(offerable)
                if not self._allocatable(free):
                    break
        return result

    # ----------------------------------------------------------------- internals
    def _pick_framework(
        self, sorter: DRFSorter, role: str, agent_id: str, offerable: Resources, now: float
    ) -> str | None:
        has_gpus = self._agents[agent_id].total.scalar("gpus") > 0
        for framework_id in sorter.sort():
            fw = self._frameworks.get(framework_id)
            if fw is None or not fw.active or role in fw.suppressed:
                continue
            if has_gpus and not fw.gpu_aware:
                continue  # GPU agents are kept for frameworks that can use GPUs (Mesos' GPU_RESOURCES rule)
            if self._filters.is_filtered(framework_id, agent_id, offerable, now):
                continue
            return framework_id
        return None

    def _allocatable(self, resources: Resources) -> bool:
        if not resources:
            return False
        # Minimums are role-free: reserved cpus count as much as unreserved ones.
        flat = Resources.flatten(resources)
        return any(flat.contains(minimum) for minimum in self._min_allocatable)

    def _track(
        self, framework_id: str, fw: _Framework, agent_id: str, agent: _Agent, role: str, resources: Resources
    ) -> None:
        agent.allocated[framework_id] = agent.allocated.get(framework_id, Resources.empty()) + resources
        key = (agent_id, role)
        fw.allocated[key] = fw.allocated.get(key, Resources.empty()) + resources
        self._role_sorter(role).allocate(framework_id, resources)
        self._roles.allocate(role, resources)

    def _role_sorter(self, role: str) -> DRFSorter:
        sorter = self._framework_sorters.get(role)
        if sorter is None:
            sorter = DRFSorter()
            sorter.set_total(self._cluster_total())
            self._framework_sorters[role] = sorter
            self._roles.add(role)
        return sorter

    def _role_for(self, fw: _Framework, resources: Resources) -> str:
        reserved = [r for r in resources.roles() if r != UNRESERVED]
        for role in reserved:
            if role in fw.roles:
                return role
        return fw.roles[0]

    def _cluster_total(self) -> Resources:
        total = Resources.empty()
        for agent in self._agents.values():
            total = total + agent.total
        return total

    def _update_totals(self) -> None:
        total = self._cluster_total()
        self._roles.set_total(total)
        for sorter in self._framework_sorters.values():
            sorter.set_total(total)


def _intersection(a: Resources, b: Resources) -> Resources:
    """The part of `a` that `b` also has."""
    return a.subtract_clamped(a.subtract_clamped(b))
