"""Watching a secure cluster: each daemon's /metrics over real HTTPS (the Prometheus text format, HELP and TYPE)
to an operator's certificate or token and to no one else, `--metrics-open` for a scraper without either,
`aiomesos metrics` reading the same samples, and gRPC health and reflection on every daemon.

One cluster for the module (a master, an agent, the jobs service), with a job running so that there are tasks to
count. A standby master's NOT_SERVING is in test_failover.py (it needs masters on etcd)."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Iterator

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from scheduler_sdk._daemon.http import client_ssl_context
from scheduler_sdk.channels import open_channel
from scheduler_sdk.cli.main import main
from scheduler_sdk.frameworks.jobs.client import JobsClient
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.security.credentials import add_token
from tests.conftest import module_tmp_path
from tests.e2e.conftest import FAST_AGENT, FAST_MASTER
from tests.e2e.harness import eventually, module_cluster_of

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory, cluster_ca: object) -> Iterator[LocalCluster]:
    c = LocalCluster(
        module_tmp_path(tmp_path_factory, "watched"),
        agents=1,
        jobs=True,
        jobs_flags=["--metrics-open"],  # its /metrics open to a scraper with neither certificate nor token
        master_flags=list(FAST_MASTER),
        agent_flags=list(FAST_AGENT),
    )
    yield from module_cluster_of(c)


@pytest.fixture
async def busy(watched: LocalCluster) -> AsyncIterator[LocalCluster]:
    """The cluster with a job's task running (so that the agent has a task to measure)."""
    async with JobsClient(watched.jobs_address, config=watched.client_config) as jobs:
        if not any(j.job_id == "watched" for j in await jobs.list_jobs()):
            await jobs.submit("name: watched\ncommand: sleep 300\nresources: {cpus: 0.1, mem: 32}\n", "watched.yaml")

        async def running() -> bool:
            return any(t.state == "running" for t in (await jobs.get_job("watched")).run.tasks)

        await eventually(running, timeout=30, what="the job's task running")
    await watched.wait_for_http()
    yield watched


def _ssl(c: LocalCluster, role: str | None = "operator", name: str = "admin") -> ssl.SSLContext:
    certs = c.certificates
    assert certs is not None
    if role is None:
        return client_ssl_context(certs.ca_cert)
    cert, key = certs.issue(name, role)
    return client_ssl_context(certs.ca_cert, cert, key)


async def scrape(url: str, context: ssl.SSLContext, **kw: object) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics", ssl=context, **kw) as r:  # type: ignore[arg-type]
        return r.status, await r.text()


def samples(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """metric family -> labels -> value, parsed as Prometheus parses it."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


async def test_every_daemon_serves_prometheus_metrics_to_an_operator_certificate(busy: LocalCluster) -> None:
    context = _ssl(busy)
    status, master = await scrape(busy.master_http_url, context)
    assert status == 200, master
    assert "# TYPE aiomesos_master_allocation_run_seconds histogram" in master
    assert "# HELP aiomesos_master_offers_total" in master and "# TYPE aiomesos_master_offers_total counter" in master
    m = samples(master)
    assert m["aiomesos_master_tasks"][(("state", "TASK_RUNNING"),)] >= 1
    assert m["aiomesos_master_agents"][(("state", "connected"),)] == 1
    assert m["aiomesos_master_frameworks"][(("state", "connected"),)] == 1
    assert m["aiomesos_master_offers_total"][()] >= 1
    assert m["aiomesos_master_allocation_run_seconds_count"][()] >= 1
    assert m["aiomesos_master_allocation_last_pieces"][()] >= 1
    assert m["aiomesos_master_event_loop_stall_seconds_count"][()] >= 1  # the loop-stall probe runs
    assert 0 <= m["aiomesos_master_event_loop_stall_seconds_max"][()] < 60
    assert m["aiomesos_master_elected"][()] == 1
    assert m["aiomesos_master_memory_bytes"][(("kind", "total"),)] == 1024 * 1024 * 1024
    assert "process_resident_memory_bytes" in m  # the daemon's own process, from its own registry

    async def agent_measures_the_task() -> bool:
        status, text = await scrape(busy.agent_http_urls[0], context)
        assert status == 200, text
        return bool(samples(text).get("aiomesos_agent_task_cpu_seconds_total"))

    await eventually(agent_measures_the_task, timeout=15, what="the agent's task CPU seconds")
    _, agent = await scrape(busy.agent_http_urls[0], context)
    a = samples(agent)
    ((labels, _cpu),) = a["aiomesos_agent_task_cpu_seconds_total"].items()
    assert dict(labels)["task"].startswith("watched.")
    assert next(iter(a["aiomesos_agent_task_memory_bytes"].values())) > 0
    assert a["aiomesos_agent_registered"][()] == 1
    assert "# TYPE aiomesos_agent_task_cpu_seconds_total counter" in agent

    status, jobs = await scrape(busy.jobs_http_url, context)
    assert status == 200, jobs
    j = samples(jobs)
    assert j["aiomesos_jobs_jobs"][(("type", "batch"),)] == 1
    assert j["aiomesos_jobs_instances"][(("state", "running"),)] == 1
    assert j["aiomesos_jobs_registered"][()] == 1


async def test_a_token_opens_the_masters_metrics_and_nothing_else_does(busy: LocalCluster) -> None:
    certs = busy.certificates
    assert certs is not None
    token = add_token(certs.credentials, "scraper", "operator")
    plain = _ssl(busy, None)
    status, text = await scrape(busy.master_http_url, plain, headers={"Authorization": f"Bearer {token}"})
    assert status == 200 and "aiomesos_master_tasks" in text
    for url in (busy.master_http_url, busy.agent_http_urls[0]):
        status, text = await scrape(url, plain)
        assert status == 401 and text.count("\n") == 1, text
    status, text = await scrape(busy.master_http_url, plain, headers={"Authorization": "Bearer wrong"})
    assert status == 401
    status, text = await scrape(busy.agent_http_urls[0], _ssl(busy, "framework", "ml"))
    assert status == 403 and "framework/ml may not read /metrics" in text
    # Without a CA that vouches for it, no client reaches the port at all (TLS, not plain HTTP).
    with pytest.raises(aiohttp.ClientError):
        await scrape(busy.master_http_url.replace("https://", "http://"), None)  # type: ignore[arg-type]


def test_aiomesos_metrics_reads_the_same_samples(
    watched: LocalCluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    for argv in (["metrics", "--json"], ["metrics", "aiomesos_master_tasks"]):
        with pytest.raises(SystemExit) as ended:
            main([*argv, "--master", watched.master_address])
        assert ended.value.code == 0
    shown, table = capsys.readouterr().out.split("\n}\n")
    samples = json.loads(shown + "}")
    assert samples['aiomesos_master_agents{state="connected"}'] == 1
    assert samples['aiomesos_master_tasks{state="TASK_RUNNING"}'] >= 1
    assert "aiomesos_master_tasks" in table and "state=TASK_RUNNING" in table and "gauge" in table
    assert "aiomesos_master_agents" not in table  # only what the name matches


async def test_health_and_reflection_on_every_daemon(busy: LocalCluster) -> None:
    config = busy.client_config
    targets = [
        (busy.master_address, True, "aiomesos.v1.Operator"),
        ((busy.agent_daemons[0].work_dir / "agent.addr").read_text().strip(), False, "aiomesos.v1.Agent"),
        (busy.jobs_address, False, "aiomesos.v1.Jobs"),
    ]
    for address, is_master, service in targets:
        async with open_channel(address, config, master=is_master) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for name in ("", service):
                reply = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING, (address, name)
            with pytest.raises(grpc.aio.AioRpcError) as unknown:
                await health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
            assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            async for response in reflection.ServerReflectionInfo(iter([request]), timeout=5):
                listed = {s.name for s in response.list_services_response.service}
                break
            assert {service, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= listed
    # Unauthenticated, a health check is refused like any call (a probe uses the daemon's CA and a certificate).
    async with grpc.aio.secure_channel(
        busy.jobs_address,
        grpc.ssl_channel_credentials(busy.certificates.ca_cert.read_bytes()),  # type: ignore[union-attr]
    ) as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)


async def test_metrics_open_lets_a_scraper_without_credentials_in(busy: LocalCluster) -> None:
    status, text = await scrape(busy.jobs_http_url, _ssl(busy, None))  # the jobs service runs with --metrics-open
    assert status == 200 and "aiomesos_jobs_runs" in text
