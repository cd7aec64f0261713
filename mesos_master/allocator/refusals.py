"""The index over the refusal filters (`filters.py`) that lets a cycle skip what was refused, and wakes agents up.

- `RefusalIndex.refuse` adds a framework's filter in its roles on an agent, and pushes the agent on the wake heap
  (one entry per agent, at its earliest expiry, not one per filter); `wake` pops the agents whose earliest filter
  expired, prunes their filters and says which to look at again.
- `AgentRefusals` is what one agent knows of its refusals: the frameworks with filters there, and the
  (framework, role) pairs whose live filter covers exactly `resources`: the agent's free resources when they
  declined them whole. While the agent's free resources are that very object, the counts by role (`in_role`) and
  by subtree (`in_subtree`) of those pairs that are offerable let a cycle skip a role whose offerable frameworks
  all refused them, and an agent that every offerable pair refused.

Everything here holds only strings, numbers and the role nodes (dicts, not sets: dicts of strings go untracked by
Python's collector, and a cluster whose frameworks decline for long holds millions of these).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from typing import Protocol

from mesos_master.allocator import filters
from mesos_master.allocator.filters import FiltersByAgent, RefusedResources
from mesos_master.allocator.roles import RoleNode
from scheduler_sdk.resources import Resources

NO_FILTERS = FiltersByAgent(RefusedResources())  # never written to


class AgentRefusals:
    __slots__ = ("frameworks", "in_role", "in_subtree", "pairs", "resources", "wake_at")

    def __init__(self) -> None:
        self.frameworks: dict[str, None] = {}  # the frameworks with refusal filters on this agent
        self.resources: Resources | None = None  # what the pairs refused whole (the free resources then)
        self.pairs: dict[tuple[str, str], None] = {}
        self.in_subtree: dict[RoleNode, int] = {}  # offerable pairs among them, by subtree
        self.in_role: dict[RoleNode, int] = {}  # and in exactly that role
        self.wake_at: float | None = None  # its entry on the wake heap

    def forget(self) -> None:
        """The pairs' counts no longer apply (the free resources, or the filters, changed)."""
        self.resources = None
        self.pairs.clear()
        self.in_subtree.clear()
        self.in_role.clear()

    def count(self, node: RoleNode, step: int) -> None:
        """An offerable pair of `node` refused the free resources (step +1), or such a pair stopped (-1) or
        started (+1) being offerable."""
        self.in_role[node] = self.in_role.get(node, 0) + step
        counts = self.in_subtree
        n: RoleNode | None = node
        while n is not None:
            counts[n] = counts.get(n, 0) + step
            n = n.parent

    def applying(self, free: Resources) -> dict[RoleNode, int] | None:
        """The counts by subtree while they apply (`free`, the agent's free resources, is what was refused)."""
        if self.resources is not free or not self.in_subtree:
            return None
        return self.in_subtree


class Refusing(Protocol):
    """What the index reads of a framework."""

    id: str
    filters: dict[str, FiltersByAgent]  # role -> its filters by agent
    pairs: dict[str, tuple[str, str]]  # role -> (id, role): one tuple object for every agent's `pairs`


class HasRefusals(Protocol):
    refusals: AgentRefusals


class RefusalIndex:
    __slots__ = ("refused", "wake_heap")

    def __init__(self) -> None:
        self.refused = RefusedResources()  # what the refusal filters refused, shared by all of them
        self.wake_heap: list[tuple[float, str]] = []

    def refuse(
        self,
        fw: Refusing,
        agent_id: str,
        agent: AgentRefusals,
        free_now: Resources,
        resources: Resources,
        roles: Iterable[str],
        expires: float,
        nodes: Mapping[str, RoleNode],
    ) -> None:
        """`fw` refused `resources` on the agent in `roles` until `expires`; `free_now`: the agent's free
        resources once they came back."""
        whole = bool(free_now) and (free_now is resources or free_now == resources)  # declined all that is free?
        if whole and agent.resources is not free_now:
            agent.forget()
            agent.resources = free_now
        for role in roles:
            per_agent = fw.filters.get(role)
            if per_agent is None:
                per_agent = fw.filters[role] = FiltersByAgent(self.refused)
            filters.add_filter(per_agent, agent_id, resources, expires)
            if whole:
                pair = fw.pairs.get(role)
                if pair is None:
                    pair = fw.pairs[role] = (fw.id, role)
                if pair in agent.pairs:
                    continue
                agent.pairs[pair] = None
                node = nodes.get(role)
                if node is not None and fw.id in node.fw_order.keys:
                    agent.count(node, +1)
        agent.frameworks[fw.id] = None
        if agent.wake_at is None or expires < agent.wake_at:
            agent.wake_at = expires
            heapq.heappush(self.wake_heap, (expires, agent_id))

    def wake(self, now: float, agents: Mapping[str, HasRefusals], frameworks: Mapping[str, Refusing]) -> list[str]:
        """The agents whose earliest refusal filter expired by `now` (their filters pruned, their counts
        forgotten): to be looked at again."""
        woken: list[str] = []
        heap = self.wake_heap
        while heap and heap[0][0] <= now:
            at, agent_id = heapq.heappop(heap)
            record = agents.get(agent_id)
            if record is None or record.refusals.wake_at != at:
                continue
            agent = record.refusals
            agent.wake_at = None
            earliest: float | None = None
            for framework_id in list(agent.frameworks):
                fw = frameworks.get(framework_id)
                alive = False
                if fw is not None:
                    for per_agent in fw.filters.values():
                        first = filters.prune(per_agent, agent_id, now)
                        if first is not None:
                            alive = True
                            if earliest is None or first < earliest:
                                earliest = first
                if not alive:
                    agent.frameworks.pop(framework_id, None)
            if earliest is not None:
                agent.wake_at = earliest
                heapq.heappush(heap, (earliest, agent_id))
            agent.forget()
            woken.append(agent_id)
        return woken

    @staticmethod
    def drop(fw: Refusing, role: str | None, agents: Mapping[str, HasRefusals]) -> None:
        """Forget the framework's filters (in `role`; None: in every role)."""
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
            record = agents.get(agent_id)
            if record is None:
                continue
            record.refusals.forget()
            if not any(agent_id in per_agent for per_agent in fw.filters.values()):
                record.refusals.frameworks.pop(fw.id, None)

    @staticmethod
    def agent_removed(agent_id: str, agent: AgentRefusals, frameworks: Mapping[str, Refusing]) -> None:
        for framework_id in agent.frameworks:
            fw = frameworks.get(framework_id)
            if fw is not None:
                for per_agent in fw.filters.values():
                    per_agent.pop(agent_id, None)

    @staticmethod
    def offerable_changed(fw: Refusing, node: RoleNode, step: int, agents: Mapping[str, HasRefusals]) -> None:
        """The framework became offerable in `node` (+1) or stopped being (-1): the pairs it refused count."""
        pair = (fw.id, node.name)
        for agent_id in fw.filters.get(node.name, NO_FILTERS):
            record = agents.get(agent_id)
            if record is not None and pair in record.refusals.pairs:
                record.refusals.count(node, step)

    @staticmethod
    def live_filters(frameworks: Iterable[Refusing]) -> int:
        return sum(filters.count(per_agent) for fw in frameworks for per_agent in fw.filters.values())
