"""What every daemon's metrics share: a registry of its own (never prometheus_client's global one, so that two
daemons in one process, as in the tests, do not mix), `/metrics` on its HTTP server in the Prometheus text
format, and the same samples as protos for the master's GetMetrics (`aiomesos metrics`).

Collectors read the daemon's state when scraped (`collect()`), so the hot paths pay nothing for metrics; what
must be counted as it happens is a plain int or a `Durations` the collector reads."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from aiomesos.v1 import operator_pb2 as opb
from scheduler_sdk._daemon.durations import Durations
from scheduler_sdk._daemon.http import HttpServer, allow, public

#: Who may read /metrics (unless --metrics-open): operators and the master; never agents or frameworks, since an
#: agent's per-task samples name other frameworks' tasks.
METRICS_READERS = ("operator", "master")


def histogram(name: str, documentation: str, durations: Durations) -> HistogramMetricFamily:
    buckets = [("+Inf" if bound == float("inf") else repr(bound), n) for bound, n in durations.cumulative()]
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=durations.total)


MiB = 1024 * 1024
#: The resources the daemons' gauges name: (Mesos' name, the sample's name, what it is, the factor from Mesos'
#: units to the base unit).
RESOURCES = (
    ("cpus", "cpus", "cpus", 1.0),
    ("mem", "memory_bytes", "memory in bytes", MiB),
    ("disk", "disk_bytes", "disk in bytes", MiB),
    ("gpus", "gpus", "GPUs", 1.0),
)


def new_registry(*collectors: Collector, process: bool = True) -> CollectorRegistry:
    """A daemon's own registry: its collectors, and the process' CPU, memory and file descriptors."""
    registry = CollectorRegistry(auto_describe=False)
    if process:
        ProcessCollector(registry=registry)
    for collector in collectors:
        registry.register(collector)
    return registry


def sample_key(name: str, labels: dict[str, str]) -> str:
    """A sample's Prometheus name: `name` or `name{a="1",b="2"}` (labels sorted)."""
    if not labels:
        return name
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def families(metrics: Iterable[Metric]) -> list[opb.MetricFamily]:
    out = []
    for metric in metrics:
        family = opb.MetricFamily(name=metric.name, type=metric.type, help=metric.documentation, unit=metric.unit)
        for s in metric.samples:
            family.samples.add(name=s.name, labels=dict(s.labels), value=float(s.value))
        out.append(family)
    return out


def metrics_response(registry: CollectorRegistry) -> opb.GetMetricsResponse:
    """The registry's samples now, as GetMetrics answers them."""
    found = families(registry.collect())
    flat = {sample_key(s.name, dict(s.labels)): s.value for f in found for s in f.samples}
    return opb.GetMetricsResponse(metrics=flat, families=found)


def install_metrics(
    server: HttpServer,
    registry: CollectorRegistry,
    *,
    open_to_all: bool = False,
    prepare: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """`GET /metrics` on `server`: the registry in the Prometheus text format (to METRICS_READERS, or to anyone
    with `--metrics-open`). `prepare`, if given, runs first (e.g. to read usage figures off the event loop)."""

    async def metrics(request: web.Request) -> web.Response:
        if prepare is not None:
            await prepare()
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    handler = public(metrics) if open_to_all else allow(*METRICS_READERS)(metrics)
    server.app.router.add_get("/metrics", handler)


def install_health(server: HttpServer, serving: Callable[[], tuple[bool, str]]) -> None:
    """`GET /health` (public, for load balancers): 200 and "ok" while `serving()` says so, else 503 and why."""

    @public
    async def health(request: web.Request) -> web.Response:
        ok, why = serving()
        return web.Response(status=200 if ok else 503, text=(why or ("ok" if ok else "not serving")) + "\n")

    server.app.router.add_get("/health", health)
