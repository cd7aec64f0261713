"""Sorters: the fairness policy, separate from the allocator's mechanics (as in Mesos).

A sorter gives every client a *key*; the allocator offers to clients in ascending (key, name) order, at every
level of the role tree (roles under their parent, then frameworks inside a role). The allocator owns the
bookkeeping (what each client holds, the cluster total, weights) and asks the sorter again only for a client
whose allocation changed, so a key must depend on nothing but its arguments and the sorter's own state.

Built in:

- `DRFSorter` (``drf``, the default): dominant share divided by weight (weighted DRF).
- `FairSorter` (``fair``): share of one resource (``fair_resource``, e.g. ``cpus``) divided by weight.
- `PrioritySorter` (``priority``): strict priority between roles, DRF inside a priority level and between the
  frameworks of a role.
- `RandomSorter` (``random``): a weighted random order, drawn again for each cycle and after each allocation,
  from a generator seeded with (seed, cycle): the same seed and the same calls give the same allocations.

Amounts are fixed-point milli-units by resource name (reservation roles summed), as the allocator keeps them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar


class Sorter:
    """Base class of fairness policies. Subclass it and override `key` (and `share` if "share" means
    something else than the dominant share for your policy); register it under the entry-point group
    ``aiomesos.allocators`` to make it selectable with ``aiomesos master --allocator NAME``."""

    #: the name it is known by (informative; the entry-point or built-in name is what selects it)
    name: ClassVar[str] = "sorter"
    #: draw every key again at the start of each cycle (for policies whose order changes with time)
    rekey_each_cycle: ClassVar[bool] = False
    #: whether revocation may reclaim resources for a role below its *fair share* as this sorter measures it
    #: (`share`), not only for a role below its quota guarantee
    fair_share_revocation: ClassVar[bool] = False

    def __init__(self) -> None:
        self.total: dict[str, int] = {}
        self._inverse: dict[str, float] = {}

    def set_total(self, total: Mapping[str, int]) -> None:
        """The cluster's scalar total changed (agents came, went or changed); keys are drawn again after this."""
        self.total = dict(total)
        self._inverse = {name: 1.0 / milli for name, milli in total.items() if milli > 0}

    def begin_cycle(self, cycle: int) -> None:
        """Called at the start of every allocation cycle, before any key of that cycle."""

    def key(self, client: str, allocation: Mapping[str, int], weight: float, *, is_role: bool) -> Any:
        """The sort key of `client` (a role name when `is_role`, else a framework id) holding `allocation`;
        smaller keys are offered first. Keys of one level must be comparable with each other."""
        return self.share(allocation) / weight

    def share(self, allocation: Mapping[str, int]) -> float:
        """The client's share of the cluster, unweighted (0 to 1): by default its dominant share."""
        best = 0.0
        inverse = self._inverse
        for name, milli in allocation.items():
            inv = inverse.get(name)
            if inv is not None:
                s = milli * inv
                if s > best:
                    best = s
        return best


class DRFSorter(Sorter):
    """Weighted Dominant Resource Fairness: the largest share over all scalar resources, divided by weight."""

    name = "drf"
    fair_share_revocation = True

    def key(self, client: str, allocation: Mapping[str, int], weight: float, *, is_role: bool) -> Any:
        best = 0.0
        inverse = self._inverse
        for name, milli in allocation.items():
            inv = inverse.get(name)
            if inv is not None:
                s = milli * inv
                if s > best:
                    best = s
        return best / weight


class FairSorter(Sorter):
    """Weighted fair sharing of ONE resource (``fair_resource``): the client's share of it divided by weight.
    Other resources do not count (a memory-only framework looks empty to a ``cpus`` fair sorter)."""

    name = "fair"
    fair_share_revocation = True

    def __init__(self, fair_resource: str = "cpus") -> None:
        super().__init__()
        if not fair_resource:
            raise ValueError("fair_resource must name a resource, e.g. cpus")
        self.resource = fair_resource

    def share(self, allocation: Mapping[str, int]) -> float:
        inv = self._inverse.get(self.resource)
        return 0.0 if inv is None else allocation.get(self.resource, 0) * inv

    def key(self, client: str, allocation: Mapping[str, int], weight: float, *, is_role: bool) -> Any:
        return self.share(allocation) / weight


class PrioritySorter(Sorter):
    """Strict priority between roles: a role is offered resources only when every role of higher priority
    (among its siblings) had its turn on that agent and passed (nothing allocatable, filtered, suppressed, at a
    limit). Roles of the same priority, and the frameworks inside a role, share by DRF.

    `priorities` is either a sequence of role names, highest first (unlisted roles come after all listed
    ones), or a mapping role → number (higher first; unlisted roles have 0). Without it, each role's weight
    is its priority (``aiomesos weights set ads=10 batch=1``: ads strictly before batch)."""

    name = "priority"

    def __init__(self, priorities: Sequence[str] | Mapping[str, float] | None = None) -> None:
        super().__init__()
        self.priorities: dict[str, float] | None
        if priorities is None:
            self.priorities = None
        elif isinstance(priorities, Mapping):
            self.priorities = {str(role): float(p) for role, p in priorities.items()}
        else:
            ordered = list(priorities)
            self.priorities = {role: float(len(ordered) - i) for i, role in enumerate(ordered)}

    def priority(self, role: str, weight: float) -> float:
        if self.priorities is None:
            return weight
        return self.priorities.get(role, 0.0)

    def key(self, client: str, allocation: Mapping[str, int], weight: float, *, is_role: bool) -> Any:
        share = self.share(allocation)
        if is_role:
            return (-self.priority(client, weight), share)
        return share


class RandomSorter(Sorter):
    """A weighted random order (Mesos' random sorter): each key is an exponential draw with rate = weight, so
    a role of weight 2 comes first twice as often as one of weight 1. Every key is drawn again at the start of
    each cycle from `random.Random` seeded with (seed, cycle), and a client's key again after it is offered
    something, so one cycle spreads agents over clients. Deterministic for a given seed and call sequence."""

    name = "random"
    rekey_each_cycle = True

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.seed = seed
        self._rng = random.Random(f"{seed}:0")

    def begin_cycle(self, cycle: int) -> None:
        self._rng = random.Random(f"{self.seed}:{cycle}")

    def key(self, client: str, allocation: Mapping[str, int], weight: float, *, is_role: bool) -> Any:
        return -math.log(1.0 - self._rng.random()) / weight
