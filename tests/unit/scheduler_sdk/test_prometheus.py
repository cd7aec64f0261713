"""The metrics' pure parts: a hand-kept histogram's buckets, Prometheus sample names, the registry as GetMetrics
answers it, and `aiomesos metrics`' table rows."""

from __future__ import annotations

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from scheduler_sdk._daemon.durations import Durations
from scheduler_sdk._daemon.prometheus import histogram, metrics_response, new_registry, sample_key
from scheduler_sdk.cli.metrics import rows, value_text


def test_durations_count_each_event_in_its_bucket_cumulatively() -> None:
    d = Durations(bounds=(0.01, 0.1))
    for seconds in (0.005, 0.01, 0.05, 3.0):
        d.observe(seconds)
    assert d.cumulative() == [(0.01, 2), (0.1, 3), (float("inf"), 4)]
    assert d.count == 4 and abs(d.total - 3.065) < 1e-9


class Fixed:
    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> list[Metric]:
        g = GaugeMetricFamily("aiomesos_test_tasks", "tasks by state", labels=["state"])
        g.add_metric(["TASK_RUNNING"], 3)
        d = Durations(bounds=(0.5,))
        d.observe(0.2)
        return [g, histogram("aiomesos_test_run_seconds", "runs", d)]


def test_the_histogram_is_prometheus_text_with_help_type_and_buckets() -> None:
    text = generate_latest(new_registry(Fixed(), process=False)).decode()
    assert "# TYPE aiomesos_test_run_seconds histogram" in text
    assert 'aiomesos_test_run_seconds_bucket{le="0.5"} 1.0' in text
    assert 'aiomesos_test_run_seconds_bucket{le="+Inf"} 1.0' in text
    assert "aiomesos_test_run_seconds_sum 0.2" in text


def test_get_metrics_names_each_sample_as_prometheus_does() -> None:
    response = metrics_response(new_registry(Fixed(), process=False))
    assert response.metrics['aiomesos_test_tasks{state="TASK_RUNNING"}'] == 3
    assert response.metrics['aiomesos_test_run_seconds_bucket{le="+Inf"}'] == 1
    assert sample_key("x", {"b": "2", "a": 'q"uote'}) == 'x{a="q\\"uote",b="2"}'
    assert sample_key("x", {}) == "x"


def test_the_table_shows_samples_with_help_once_and_hides_buckets_unless_asked() -> None:
    families = metrics_response(new_registry(Fixed(), process=False)).families
    shown = rows(families)
    assert ["aiomesos_test_tasks", "state=TASK_RUNNING", "3", "gauge", "tasks by state"] in shown
    assert not any(r[0].endswith("_bucket") for r in shown)
    run_rows = [r for r in shown if r[0].startswith("aiomesos_test_run_seconds")]
    assert [r[3] for r in run_rows] == ["histogram", ""]  # the type and help on the family's first row only
    assert any(r[0].endswith("_bucket") for r in rows(families, everything=True))
    assert [r[0] for r in rows(families, "tasks")] == ["aiomesos_test_tasks"]


def test_values_read_as_numbers() -> None:
    assert value_text(1073741824.0) == "1,073,741,824"
    assert value_text(1073741824.0, "aiomesos_agent_memory_bytes") == "1,073,741,824 (1 GiB)"
    assert value_text(512.0, "aiomesos_agent_memory_bytes") == "512"
    assert value_text(0.00123) == "0.00123"
    assert value_text(float("inf")) == "inf"
