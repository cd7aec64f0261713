"""Sorters: the fairness policy, separate from the allocator's mechanics (as in Mesos).

A sorter orders clients (roles, or frameworks within a role) by how much they hold relative to the cluster.
`DRFSorter` orders by dominant share (the largest share over scalar resources) divided by weight; ties
break on the client name, so a cycle is deterministic.
"""

from __future__ import annotations

from scheduler_sdk.resources import Resources


class DRFSorter:
    def __init__(self) -> None:
        self._allocations: dict[str, Resources] = {}
        self._weights: dict[str, float] = {}
        self._total: dict[str, float] = {}

    def add(self, client: str, weight: float = 1.0) -> None:
        self._allocations.setdefault(client, Resources.empty())
        self._weights[client] = weight

    def remove(self, client: str) -> None:
        self._allocations.pop(client, None)
        self._weights.pop(client, None)

    def __contains__(self, client: str) -> bool:
        return client in self._allocations

    def set_total(self, total: Resources) -> None:
        self._total = total.scalars()

    def allocate(self, client: str, resources: Resources) -> None:
        self._allocations[client] = self._allocations.get(client, Resources.empty()) + resources

    def unallocate(self, client: str, resources: Resources) -> None:
        self._allocations[client] = self._allocations.get(client, Resources.empty()).subtract_clamped(resources)

    def allocation(self, client: str) -> Resources:
        return self._allocations.get(client, Resources.empty())

    def share(self, client: str) -> float:
        held = self._allocations.get(client)
        if not held:
            return 0.0
        mine = held.scalars()
        best = 0.0
        for name, total in self._total.items():
            if total > 0:
                best = max(best, mine.get(name, 0.0) / total)
        return best / self._weights.get(client, 1.0)

    def sort(self) -> list[str]:
        return sorted(self._allocations, key=lambda c: (self.share(c), c))
