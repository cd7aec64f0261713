"""The agent's Prometheus metrics: its tasks by state, each live task's CPU time and memory, what the agent
offers and what its tasks hold, and whether it is attached to the master.

Read when scraped: the containers' usage figures are cgroup (or /proc) files, read off the event loop by
`AgentMetrics.refresh()` just before the registry is collected; everything else is the agent's state, read on
the loop. The tasks' samples carry `framework` and `task` labels (which is why /metrics is for operators and the
master only: scheduler_sdk._daemon.prometheus.METRICS_READERS)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from mesos_agent.agent import Agent
from mesos_agent.tasks import TaskRun
from scheduler_sdk._daemon.prometheus import RESOURCES, new_registry
from scheduler_sdk.resources import Resources
from scheduler_sdk.states import TERMINAL_STATES, state_name

PREFIX = "aiomesos_agent_"
#: Per-task figures: (sample name, help, the usage figures it is the sum of, counter?)
TASK_FIGURES = (
    (
        "task_cpu_seconds",
        "CPU time the task's processes used (user + system)",
        ("cpus_user_time_secs", "cpus_system_time_secs"),
        True,
    ),
    ("task_memory_bytes", "the task's resident memory", ("mem_rss_bytes",), False),
    ("task_memory_limit_bytes", "the task's memory limit", ("mem_limit_bytes",), False),
    ("task_cpus_limit", "the task's cpus (its CFS quota when enforced)", ("cpus_limit",), False),
    ("task_disk_used_bytes", "what the task's sandbox holds on disk (as last measured)", ("disk_used_bytes",), False),
)
Usage = list[tuple[TaskRun, dict[str, float]]]


def _live(agent: Agent) -> list[TaskRun]:
    return [
        r
        for r in agent.tasks.values()
        if r.container is not None and not r.container.done and r.state not in TERMINAL_STATES
    ]


def _read(runs: list[TaskRun]) -> list[dict[str, float]]:
    """In a worker thread: each container's usage figures (cgroup and /proc files)."""
    return [r.container.stats() if r.container is not None else {} for r in runs]


class AgentMetrics:
    """The agent's collector. The HTTP port listens before the agent is made (a port in use must fail the start
    before the containerizer takes its cgroups): `attach()` gives it the agent once there is one."""

    def __init__(self) -> None:
        self.agent: Agent | None = None
        self.connected: Callable[[], bool] = lambda: False
        self.usage: Usage = []

    def attach(self, agent: Agent, connected: Callable[[], bool]) -> None:
        self.agent, self.connected = agent, connected

    async def refresh(self) -> None:
        runs = _live(self.agent) if self.agent is not None else []
        figures = await asyncio.to_thread(_read, runs) if runs else []
        self.usage = list(zip(runs, figures, strict=True))

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        agent = self.agent
        yield GaugeMetricFamily(PREFIX + "registered", "1 while attached to the master", value=int(self.connected()))
        if agent is None:
            return
        states: Counter[str] = Counter({"TASK_STAGING": 0, "TASK_RUNNING": 0})
        states.update(state_name(r.state) for r in agent.tasks.values())
        family = GaugeMetricFamily(PREFIX + "tasks", "tasks the agent holds, by state", labels=["state"])
        for state, n in sorted(states.items()):
            family.add_metric([state], n)
        yield family
        yield GaugeMetricFamily(
            PREFIX + "status_updates_pending", "status updates not yet acknowledged", value=agent.updates.pending()
        )
        yield from self._resources()
        yield from self._tasks()

    def _resources(self) -> Iterator[Metric]:
        assert self.agent is not None
        total = Resources.from_proto(self.agent.info.resources)
        used = Resources.empty()
        for r in self.agent.tasks.values():
            if r.state not in TERMINAL_STATES:
                used = used + Resources.from_proto(r.info.resources)
        for name, metric, what, factor in RESOURCES:
            family = GaugeMetricFamily(
                PREFIX + metric, f"{what} this agent has, by kind: total, used by its tasks", labels=["kind"]
            )
            family.add_metric(["total"], total.scalar(name) * factor)
            family.add_metric(["used"], used.scalar(name) * factor)
            yield family

    def _tasks(self) -> Iterator[Metric]:
        labels = ["framework", "task"]
        for name, documentation, keys, counter in TASK_FIGURES:
            kind = CounterMetricFamily if counter else GaugeMetricFamily
            family = kind(PREFIX + name, documentation, labels=labels)
            for run, figures in self.usage:
                if any(k in figures for k in keys):
                    family.add_metric([run.framework.id, run.info.task_id], sum(figures.get(k, 0.0) for k in keys))
            yield family


def agent_registry(metrics: AgentMetrics) -> CollectorRegistry:
    return new_registry(metrics)
