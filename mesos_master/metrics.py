"""The master's Prometheus metrics, read from the core of the term it leads when scraped (nothing on the hot
paths but a counter and one `Durations.observe` per allocation cycle). A standby master serves its
`aiomesos_master_elected` (0) and the process' figures only.

Served on `/metrics` of `--http-port` and by GetMetrics (`aiomesos metrics`), from the same registry; the list
is in docs/operations.md."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from mesos_master.cluster import Master
from scheduler_sdk._daemon.prometheus import RESOURCES, histogram, new_registry
from scheduler_sdk.resources import UNRESERVED, Resources
from scheduler_sdk.states import state_name

PREFIX = "aiomesos_master_"
#: Allocator figures exported as gauges (its durations are the allocation_run_seconds histogram instead).
ALLOCATOR_GAUGES = {
    "allocation_last_offers": "the offers the last allocation cycle made",
    "allocation_last_agents_examined": "the agents the last allocation cycle looked at",
    "allocator_refusal_filters": "refusal filters (declines with refuse_seconds) the allocator holds",
    "allocator_quota_headroom_required_cpus": "unreserved cpus held back for guarantees not yet met",
}
#: Counters served from the start (at 0 until the first event), so that a rate() has a start.
ALWAYS_COUNTED = ("offers", "tasks_revoked")
_NAME = re.compile(r"[^a-zA-Z0-9_]")
Core = Callable[[], Master | None]


class MasterCollector:
    """Samples of the core `core()` returns (None while this master does not lead)."""

    def __init__(self, core: Core, clock: Callable[[], float], started_at: float) -> None:
        self.core = core
        self.clock = clock
        self.started_at = started_at

    def describe(self) -> list[Metric]:
        return []  # collected on demand: the families depend on the state (auto_describe is off)

    def collect(self) -> Iterator[Metric]:
        master = self.core()
        yield _gauge("uptime_seconds", "seconds since this master started", self.clock() - self.started_at)
        yield _gauge("elected", "1 when this master leads (serves the cluster), 0 on a standby", 1 if master else 0)
        if master is None:
            return
        yield from _agents(master)
        yield from _frameworks(master)
        yield from _tasks(master)
        used, by_role = _task_totals(master)
        yield from _resources(master, used)
        yield from _roles(master, by_role)
        yield from _allocation(master)


def master_registry(core: Core, clock: Callable[[], float], started_at: float) -> CollectorRegistry:
    return new_registry(MasterCollector(core, clock, started_at))


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, documentation, value=value)


def _labelled(name: str, documentation: str, label: str, values: Mapping[str, float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(PREFIX + name, documentation, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def _agents(master: Master) -> Iterator[Metric]:
    states: Counter[str] = Counter({"connected": 0, "disconnected": 0, "unreachable": 0})
    for agent in master.agents.values():
        if agent.unreachable_at is not None:
            states["unreachable"] += 1
        else:
            states["connected" if agent.connected else "disconnected"] += 1
    yield _labelled("agents", "agents the master knows, by state", "state", dict(states))
    drains: Counter[str] = Counter({"DRAINING": 0, "DRAINED": 0})
    drains.update(d.state for d in master.drains.values())
    yield _labelled("agents_draining", "agents under maintenance, by drain state", "state", dict(drains))
    yield _gauge("agents_gone", "agents drained and marked gone (they may never attach again)", len(master.gone_agents))


def _frameworks(master: Master) -> Iterator[Metric]:
    connected = sum(1 for f in master.frameworks.values() if f.connected)
    states = {"connected": connected, "disconnected": len(master.frameworks) - connected}
    yield _labelled("frameworks", "frameworks the master knows, by state", "state", states)
    yield _gauge(
        "frameworks_completed", "torn-down frameworks the master still lists", len(master.completed_frameworks)
    )


def _tasks(master: Master) -> Iterator[Metric]:
    states: Counter[str] = Counter({"TASK_STAGING": 0, "TASK_RUNNING": 0})
    for fw in master.frameworks.values():
        for task in fw.tasks.values():
            states[state_name(task.state)] += 1
    yield _labelled("tasks", "tasks the master tracks, by state", "state", dict(states))
    yield _gauge("offers_outstanding", "offers made and not yet answered", len(master.offers))


Scalars = dict[str, float]


def _add(into: Scalars, res: Resources) -> None:
    for name, value in res.scalar_sums().items():
        into[name] = into.get(name, 0.0) + value


def _task_totals(master: Master) -> tuple[Scalars, dict[str, Scalars]]:
    """What the tracked tasks hold (scalars): in all, and by the role they were allocated under. One pass of
    plain sums: a scrape of 10,000 tasks must not hold the event loop."""
    used: Scalars = {}
    by_role: dict[str, Scalars] = defaultdict(dict)
    for fw in master.frameworks.values():
        roles = fw.roles()
        for task in fw.tasks.values():
            scalars = task.resources.scalars()
            role = by_role[task.role or roles[0]]
            for name, value in scalars.items():
                used[name] = used.get(name, 0.0) + value
                role[name] = role.get(name, 0.0) + value
    return used, by_role


def _resources(master: Master, used: Scalars) -> Iterator[Metric]:
    total: Scalars = {}
    for agent in master.agents.values():
        if agent.connected:
            _add(total, agent.total)
    offered: Scalars = {}
    for offer in master.offers.values():
        _add(offered, offer.resources)
    for name, metric, what, factor in RESOURCES:
        family = GaugeMetricFamily(
            PREFIX + metric, f"{what} of the attached agents, by kind: total, used by tasks, offered", labels=["kind"]
        )
        for kind, scalars in (("total", total), ("used", used), ("offered", offered)):
            family.add_metric([kind], scalars.get(name, 0.0) * factor)
        yield family


def labelled_roles(master: Master, by_role: Mapping[str, Scalars]) -> set[str]:
    """The roles that get series of their own: those with usage, a quota, a reservation or a weight other than
    1. A role a framework merely names does not (any framework may name any number: one series each would let
    it grow the scrape without bound)."""
    roles = set(by_role) | set(master.quotas)
    roles.update(role for role, weight in master.weights.items() if weight != 1.0)
    reserved: set[str] = set()
    for agent in master.agents.values():
        reserved.update(agent.total.role_set())  # kept by the agent's total: 50,000 agents a scrape
    reserved.discard(UNRESERVED)
    roles.update(reserved)
    return roles


def _roles(master: Master, by_role: dict[str, Scalars]) -> Iterator[Metric]:
    known = set(by_role) | set(master.quotas) | set(master.weights)
    for fw in master.frameworks.values():
        known.update(fw.roles())
    yield _gauge("roles", "roles known: of frameworks, quotas, weights or tasks", len(known))
    roles = labelled_roles(master, by_role)
    for name, metric, what, factor in RESOURCES[:2]:
        used = GaugeMetricFamily(PREFIX + f"role_used_{metric}", f"{what} the role's tasks hold", labels=["role"])
        guarantee = GaugeMetricFamily(
            PREFIX + f"role_guarantee_{metric}", f"the role's guarantee of {what}", labels=["role"]
        )
        for role in sorted(roles):
            used.add_metric([role], by_role[role].get(name, 0.0) * factor if role in by_role else 0.0)
            quota = master.quotas.get(role)
            if quota is not None:
                guarantee.add_metric([role], quota.guarantee.scalar(name) * factor)
        yield used
        yield guarantee
    weights = GaugeMetricFamily(PREFIX + "role_weight", "the role's weight (1 unless set)", labels=["role"])
    for role in sorted(roles):
        weights.add_metric([role], float(master.weights.get(role, 1.0)))
    yield weights


def _allocation(master: Master) -> Iterator[Metric]:
    yield histogram(
        PREFIX + "allocation_run_seconds",
        "the work of each allocation cycle (and of the offers it made), without what ran between its pieces",
        master.allocation_runs,
    )
    counters = dict.fromkeys(ALWAYS_COUNTED, 0) | master.counters
    for key, value in sorted(counters.items()):
        name = _NAME.sub("_", key)
        yield CounterMetricFamily(PREFIX + name, f"{key.replace('_', ' ')} since this term began", value=value)
    last = master.last_allocation
    yield _gauge(
        "allocation_last_pieces", "the pieces the last allocation cycle ran in (the loop ran between)", last.pieces
    )
    yield _gauge(
        "allocation_last_piece_seconds_max", "the longest piece of the last allocation cycle", last.longest_piece
    )
    yield _gauge(
        "allocation_last_span_seconds",
        "the last allocation cycle from start to end, with what ran between its pieces",
        last.span,
    )
    figures = master.allocator.metrics()
    for key, documentation in ALLOCATOR_GAUGES.items():
        if key in figures:
            yield _gauge(key, documentation, figures[key])
