"""The agent's Prometheus metrics from a stand-in agent: its tasks by state, each live task's CPU seconds (user +
system, a counter) and memory in bytes labelled by framework and task, what it has and what its tasks hold; before
the agent exists, only that it is not registered."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from aiomesos.v1 import tasks_pb2 as tpb
from mesos_agent.metrics import AgentMetrics, agent_registry
from scheduler_sdk.resources import Resources


class FakeContainer:
    done = False

    def stats(self) -> dict[str, float]:
        return {"cpus_user_time_secs": 1.5, "cpus_system_time_secs": 0.5, "mem_rss_bytes": 4096.0}


def run(task_id: str, state: int) -> SimpleNamespace:
    info = tpb.TaskInfo(task_id=task_id, resources=Resources.parse("cpus:0.5;mem:64").to_proto())
    return SimpleNamespace(
        framework=SimpleNamespace(id="fw1"), info=info, state=state, container=FakeContainer(), key=("fw1", task_id)
    )


def scrape(metrics: AgentMetrics) -> tuple[str, dict[str, dict[tuple[tuple[str, str], ...], float]]]:
    text = generate_latest(agent_registry(metrics)).decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return text, out


async def test_tasks_are_measured_when_scraped() -> None:
    runs = {("fw1", "a"): run("a", tpb.TASK_RUNNING), ("fw1", "b"): run("b", tpb.TASK_FINISHED)}
    agent = SimpleNamespace(
        tasks=runs,
        info=SimpleNamespace(resources=Resources.parse("cpus:2;mem:1024").to_proto()),
        updates=SimpleNamespace(pending=lambda: 3),
    )
    metrics = AgentMetrics()
    metrics.attach(agent, lambda: True)  # type: ignore[arg-type]
    await metrics.refresh()
    text, m = scrape(metrics)
    labels = (("framework", "fw1"), ("task", "a"))
    assert m["aiomesos_agent_task_cpu_seconds_total"] == {labels: 2.0}  # the finished task is not measured
    assert m["aiomesos_agent_task_memory_bytes"] == {labels: 4096.0}
    assert m["aiomesos_agent_tasks"][(("state", "TASK_FINISHED"),)] == 1
    assert m["aiomesos_agent_memory_bytes"][(("kind", "total"),)] == 1024 * 1024 * 1024
    assert m["aiomesos_agent_cpus"][(("kind", "used"),)] == 0.5
    assert m["aiomesos_agent_status_updates_pending"][()] == 3
    assert m["aiomesos_agent_registered"][()] == 1
    assert "# TYPE aiomesos_agent_task_cpu_seconds_total counter" in text


async def test_before_the_agent_is_made_it_is_not_registered() -> None:
    metrics = AgentMetrics()
    await metrics.refresh()
    _, m = scrape(metrics)
    assert m["aiomesos_agent_registered"][()] == 0
    assert "aiomesos_agent_tasks" not in m
