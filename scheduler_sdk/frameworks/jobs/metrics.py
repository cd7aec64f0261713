"""The jobs service's Prometheus metrics, read from its core when scraped: jobs by type, runs by state, the
instances (task slots) of the runs in progress by state, and the tasks waiting for offers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from scheduler_sdk._daemon.prometheus import new_registry
from scheduler_sdk.frameworks.jobs.core import JobsCore

PREFIX = "aiomesos_jobs_"
JOB_TYPES = ("batch", "service", "stream", "workflow")
RUN_STATES = ("pending", "running", "succeeded", "failed", "stopped", "skipped")
SLOT_STATES = ("queued", "staging", "running", "waiting", "succeeded", "failed", "stopped")


def _family(name: str, documentation: str, label: str, counts: Counter[str]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(PREFIX + name, documentation, labels=[label])
    for key, n in sorted(counts.items()):
        family.add_metric([key], n)
    return family


class JobsMetrics:
    def __init__(self, core: JobsCore, registered: Callable[[], bool] = lambda: True) -> None:
        self.core = core
        self.registered = registered

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        core = self.core
        yield GaugeMetricFamily(
            PREFIX + "registered", "1 while the framework is subscribed to the master", value=int(self.registered())
        )
        types: Counter[str] = Counter(dict.fromkeys(JOB_TYPES, 0))
        runs: Counter[str] = Counter(dict.fromkeys(RUN_STATES, 0))
        slots: Counter[str] = Counter(dict.fromkeys(SLOT_STATES, 0))
        queued = 0
        for job in core.jobs.values():
            types[job.spec.type] += 1
            runs.update(r.state for r in job.runs)
            for run in job.active.values():
                slots.update(s.state for s in run.slots())
                queued += len(run.queued())
        yield _family("jobs", "jobs the service holds, by type", "type", types)
        yield _family("runs", "runs of every job (kept in the store), by state", "state", runs)
        yield _family("instances", "task slots of the runs in progress, by state", "state", slots)
        yield GaugeMetricFamily(PREFIX + "tasks_queued", "tasks waiting for an offer that fits", value=queued)
        yield GaugeMetricFamily(
            PREFIX + "runs_active", "runs in progress", value=sum(len(j.active) for j in core.jobs.values())
        )


def jobs_registry(core: JobsCore, registered: Callable[[], bool] = lambda: True) -> CollectorRegistry:
    return new_registry(JobsMetrics(core, registered))
