"""The state of one scheduling run: per host, its lease minus what the run assigned (`HostState`, a `HostView`),
and for the whole run the hosts in hostname order with where each group's tasks are (`RunState`, an
`IndexedRunContext`). Constraints and fitness calculators see both only through those read-only interfaces;
the engine alone changes them (`HostState.take`, `RunState.note`).

A host's *rank* is its place in hostname order. Host states are made on first use: the indexed candidate sources
only ever look at a few hosts per task.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from scheduler_sdk.placement.extension import HostView, IndexedRunContext, host_attribute
from scheduler_sdk.placement.model import BASE_RESOURCES, Host, Range, TaskRequest

_EMPTY: Mapping[str, int] = {}


def merge_ranges(ranges: Iterable[Range]) -> list[list[int]]:
    """Port ranges merged and sorted, as mutable ``[lo, hi]`` pairs (empty ranges dropped)."""
    if isinstance(ranges, tuple) and len(ranges) == 1:
        lo, hi = ranges[0]
        return [[lo, hi]] if hi >= lo else []
    out: list[list[int]] = []
    for lo, hi in sorted(r for r in ranges if r[1] >= r[0]):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1][1] = hi
        else:
            out.append([lo, hi])
    return out


def lease_amount(host: Host, resource: str) -> float:
    """What a host's lease (all its offers) holds of a resource at the start of a run."""
    offers = host.offers
    if resource in BASE_RESOURCES:
        if len(offers) == 1:
            return float(getattr(offers[0], resource))
        return float(sum(getattr(o, resource) for o in offers))
    if resource == "ports":
        return float(sum(hi - lo + 1 for lo, hi in merge_ranges(r for o in offers for r in o.ports)))
    return float(sum(o.scalars.get(resource, 0.0) for o in offers))


def capacity(host: Host, resource: str) -> float:
    """A host's capacity: `Host.total_*` when given, else what the lease offers plus what running tasks use."""
    if resource in BASE_RESOURCES:
        given = getattr(host, "total_" + resource)
        if given is not None:
            return float(given)
        return lease_amount(host, resource) + sum(getattr(t, resource) for t in host.running)
    if resource == "ports":
        return lease_amount(host, resource) + sum(t.ports for t in host.running)
    if host.total_scalars is not None:
        return float(host.total_scalars.get(resource, 0.0))
    return lease_amount(host, resource) + sum(t.scalars.get(resource, 0.0) for t in host.running)


def running_exclusive(host: Host) -> str | None:
    """The id of a running task that holds the host exclusively."""
    for t in host.running:
        if t.exclusive:
            return t.id
    return None


def usable(host: Host) -> bool:
    """Whether the host can take a task at all at the start of a run: enabled, offered, not held exclusively."""
    return not host.disabled and bool(host.offers) and running_exclusive(host) is None


class HostState:
    """A host during one run: its lease minus this run's assignments. Implements the `HostView` constraints and
    calculators get; the engine reads and changes the plain fields directly (hot path)."""

    __slots__ = (
        "_groups",
        "_totals",
        "agent_id",
        "assigned",
        "attributes",
        "cpus",
        "disabled",
        "disk",
        "exclusive_by",
        "host",
        "hostname",
        "mem",
        "network",
        "nports",
        "offer_ids",
        "ports",
        "rank",
        "scalars",
    )

    def __init__(self, host: Host, rank: int) -> None:
        self.host = host
        self.hostname = host.hostname
        self.agent_id = host.agent_id
        self.attributes = host.attributes
        self.rank = rank
        self.disabled = host.disabled
        offers = host.offers
        self.offer_ids: tuple[str, ...] = tuple(o.offer_id for o in offers)
        self.scalars: dict[str, float]
        if len(offers) == 1:  # the common case, spelled out (must agree with lease_amount)
            o = offers[0]
            self.cpus, self.mem, self.disk, self.network = float(o.cpus), float(o.mem), float(o.disk), float(o.network)
            self.scalars = {k: float(v) for k, v in o.scalars.items()} if o.scalars else {}
            self.ports = merge_ranges(o.ports)
        else:
            self.cpus = lease_amount(host, "cpus")
            self.mem = lease_amount(host, "mem")
            self.disk = lease_amount(host, "disk")
            self.network = lease_amount(host, "network")
            self.scalars = {k: lease_amount(host, k) for k in sorted({k for o in offers for k in o.scalars})}
            self.ports = merge_ranges(r for o in offers for r in o.ports)
        self.nports = sum(hi - lo + 1 for lo, hi in self.ports)
        self.assigned: list[TaskRequest] = []
        self._groups: dict[str, int] | None = None
        self._totals: dict[str, float] | None = None
        self.exclusive_by = running_exclusive(host)

    # --- HostView ---------------------------------------------------------------------------------------------

    def free(self, resource: str) -> float:
        if resource == "cpus":
            return self.cpus
        if resource == "mem":
            return self.mem
        if resource == "disk":
            return self.disk
        if resource == "network":
            return self.network
        if resource == "ports":
            return float(self.nports)
        return self.scalars.get(resource, 0.0)

    def total(self, resource: str) -> float:
        totals = self._totals
        if totals is None:
            totals = self._totals = {}
        t = totals.get(resource)
        if t is None:
            t = totals[resource] = capacity(self.host, resource)
        return t

    def groups(self) -> Mapping[str, int]:
        g = self._groups
        if g is None:
            g = {}
            for t in self.host.running:
                if t.group:
                    g[t.group] = g.get(t.group, 0) + 1
            for a in self.assigned:
                if a.group:
                    g[a.group] = g.get(a.group, 0) + 1
            self._groups = g
        return g

    def task_count(self) -> int:
        return len(self.host.running) + len(self.assigned)

    # --- the engine's side ------------------------------------------------------------------------------------

    def take(self, task: TaskRequest, exclusive: bool) -> tuple[int, ...]:
        """Give the task its resources from the lease; returns its ports (the lowest free ones)."""
        self.cpus -= task.cpus
        self.mem -= task.mem
        self.disk -= task.disk
        self.network -= task.network
        if task.scalars:
            sc = self.scalars
            for k, v in task.scalars.items():
                sc[k] = sc.get(k, 0.0) - v
        ports = self._take_ports(task.ports) if task.ports > 0 else ()
        self.assigned.append(task)
        if exclusive:
            self.exclusive_by = task.id
        if task.group and self._groups is not None:
            self._groups[task.group] = self._groups.get(task.group, 0) + 1
        return ports

    def _take_ports(self, n: int) -> tuple[int, ...]:
        got: list[int] = []
        ranges = self.ports
        while n > 0 and ranges:
            lo, hi = ranges[0]
            k = min(n, hi - lo + 1)
            got.extend(range(lo, lo + k))
            if lo + k > hi:
                del ranges[0]
            else:
                ranges[0][0] = lo + k
            n -= k
        self.nports -= len(got)
        return tuple(got)

    def __repr__(self) -> str:
        return f"<host {self.hostname} cpus={self.cpus:g} mem={self.mem:g} ports={self.nports}>"


class RunState(IndexedRunContext):
    """The state of one run, over ``hosts`` sorted by hostname: host states (made on first use), where each group's
    tasks are, the cursor (the rank of the host the last task went to) and the change log (the rank of each
    assignment's host, in order: what the per-shape caches catch up with). The `RunContext` constraints get."""

    __slots__ = (
        "_all",
        "_attr_values",
        "_group_index",
        "_rank_of",
        "_value_cache",
        "change_log",
        "cursor",
        "hs",
        "src",
    )

    def __init__(self, src: list[Host]) -> None:
        self.src = src
        self.hs: list[HostState | None] = [None] * len(src)
        self._all: list[HostState] | None = None
        self._rank_of: dict[str, int] | None = None
        self.cursor = 0
        self.change_log: list[int] = []
        self._group_index: dict[str, dict[str, int]] | None = None
        self._value_cache: dict[str, dict[str, dict[str, int]]] = {}
        self._attr_values: dict[str, tuple[str, ...]] = {}

    def state(self, rank: int) -> HostState:
        h = self.hs[rank]
        if h is None:
            h = self.hs[rank] = HostState(self.src[rank], rank)
        return h

    def states(self) -> list[HostState]:
        """Every host's state, hostname order."""
        if self._all is None:
            self._all = [self.state(rank) for rank in range(len(self.src))]
        return self._all

    # --- IndexedRunContext ------------------------------------------------------------------------------------

    def hosts(self) -> list[HostView]:
        return list(self.states())

    def group_hosts(self, group: str) -> Mapping[str, int]:
        return self._index().get(group, _EMPTY)

    def group_counts_by_value(self, group: str, attribute: str) -> Mapping[str, int]:
        per_group = self._value_cache.setdefault(group, {})
        counts = per_group.get(attribute)
        if counts is None:
            counts = {}
            src = self.src
            for hostname, n in self.group_hosts(group).items():
                rank = self._rank(hostname)
                value = None if rank is None else host_attribute(src[rank], attribute)
                if value is not None:
                    counts[value] = counts.get(value, 0) + n
            per_group[attribute] = counts
        return counts

    def attribute_values(self, attribute: str) -> tuple[str, ...]:
        values = self._attr_values.get(attribute)
        if values is None:
            values = tuple(sorted({v for h in self.src if (v := host_attribute(h, attribute)) is not None}))
            self._attr_values[attribute] = values
        return values

    # --- bookkeeping ------------------------------------------------------------------------------------------

    def _rank(self, hostname: str) -> int | None:
        if self._rank_of is None:
            self._rank_of = {h.hostname: i for i, h in enumerate(self.src)}
        return self._rank_of.get(hostname)

    def _index(self) -> dict[str, dict[str, int]]:
        idx = self._group_index
        if idx is None:
            idx = {}
            for host in self.src:
                for t in host.running:
                    if t.group:
                        per = idx.setdefault(t.group, {})
                        per[host.hostname] = per.get(host.hostname, 0) + 1
            for h in self.hs:
                if h is not None:
                    for a in h.assigned:
                        if a.group:
                            per = idx.setdefault(a.group, {})
                            per[h.hostname] = per.get(h.hostname, 0) + 1
            self._group_index = idx
        return idx

    def note(self, h: HostState, task: TaskRequest) -> None:
        """Book an assignment (after `HostState.take`)."""
        self.change_log.append(h.rank)
        self.cursor = h.rank
        g = task.group
        if g:
            if self._group_index is not None:
                per = self._group_index.setdefault(g, {})
                per[h.hostname] = per.get(h.hostname, 0) + 1
            self._value_cache.pop(g, None)
