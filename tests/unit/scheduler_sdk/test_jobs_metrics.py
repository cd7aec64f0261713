"""The jobs service's Prometheus metrics from a real core and store: jobs by type, runs by state, the running
run's instances by state, what waits for offers, and whether the framework is subscribed."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.frameworks.jobs.metrics import jobs_registry
from tests.unit.scheduler_sdk.test_jobs_core_restart import Clock, report, start


def scrape(registry: object) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):  # type: ignore[arg-type]
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_jobs_runs_and_instances_are_counted_when_scraped(tmp_path: Path) -> None:
    core, placement = start(tmp_path / "jobs.db", Clock())
    core.submit("name: a\ncommand: sleep 100\ncount: 3\n", "a.yaml", "framework/x", None)
    registry = jobs_registry(core, lambda: False)
    m = scrape(registry)
    assert m["aiomesos_jobs_jobs"][(("type", "batch"),)] == 1
    assert m["aiomesos_jobs_instances"][(("state", "queued"),)] == 3
    assert m["aiomesos_jobs_tasks_queued"][()] == 3
    assert m["aiomesos_jobs_runs_active"][()] == 1
    assert m["aiomesos_jobs_registered"][()] == 0
    first = placement.submitted[0].task_id
    report(core, placement, first, tpb.TASK_RUNNING)
    m = scrape(registry)
    assert m["aiomesos_jobs_instances"][(("state", "running"),)] == 1
    assert m["aiomesos_jobs_runs"][(("state", "running"),)] == 1
