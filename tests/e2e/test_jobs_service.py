"""Services and streams of the jobs service end to end: a real master, four agents and `aiomesos jobs serve`
(secure, as users run it); instances are real processes serving HTTP and TCP, checked by their agents' health
checks. One cluster for the module: each test uses its own job names and stops its jobs, so the next finds the
cluster as it was (an agent killed or drained by a test is brought back by it)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import psutil
import pytest
import pytest_asyncio

from aiomesos.v1 import jobs_pb2 as jpb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.frameworks.jobs.client import JobsClient
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.operator import OperatorClient
from scheduler_sdk.security.local import LocalCertificates
from tests.conftest import module_tmp_path
from tests.e2e.conftest import FAST_AGENT, FAST_MASTER
from tests.e2e.harness import eventually
from tests.e2e.test_jobs import cli

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
AIOMESOS = [sys.executable, "-m", "scheduler_sdk"]
EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(
    tmp_path_factory: pytest.TempPathFactory, cluster_ca: LocalCertificates
) -> AsyncIterator[LocalCluster]:
    c = LocalCluster(
        module_tmp_path(tmp_path_factory, "services"),
        agents=4,
        master_flags=[*FAST_MASTER, "--agent-unreachable-timeout", "2"],
        agent_flags=list(FAST_AGENT),
        jobs=True,
    )
    try:
        await c.start()
        yield c
    finally:
        leftovers = await c.stop()
    assert leftovers == [], f"left behind: {leftovers}"


@pytest_asyncio.fixture(loop_scope="module")
async def jobs(cluster: LocalCluster) -> AsyncIterator[JobsClient]:
    """A client of the module's jobs service; afterwards (even when the test failed) every job still running is
    stopped and its tasks have ended, so that the next test finds the cluster as it was."""
    async with JobsClient(cluster.jobs_address, config=cluster.client_config) as client:
        yield client
    async with JobsClient(cluster.jobs_address, config=cluster.client_config) as client:
        for job in await client.list_jobs():
            if job.state in ("running", "pending"):
                await stop_job(client, job.job_id)


HTTP_CHECK = "{type: http, path: /, interval: 0.5s, timeout: 1s, grace_period: 5s, consecutive_failures: 2}"


def service(name: str, *, instances: int = 3, extra: str = "", command: str = "", check: str = HTTP_CHECK) -> str:
    """A service of `instances` http.server instances that answer their version, checked over HTTP."""
    command = command or 'echo "v$AIOMESOS_VERSION $GREETING" > index.html; exec python3 -m http.server $PORT0'
    return f"""
name: {name}
type: service
instances: {instances}
command: '{command}'
resources: {{cpus: 0.1, mem: 64, ports: 1}}
constraints: [{{unique: hostname, soft: true}}]
health_check: {check}
restart: {{backoff: 0.5s, max_backoff: 5s}}
{extra}
"""


def running(status: jpb.JobStatus) -> list[jpb.TaskSlot]:
    return [t for t in status.run.tasks if t.state == "running"]


def healthy(status: jpb.JobStatus) -> list[jpb.TaskSlot]:
    return [t for t in running(status) if t.health == "healthy"]


async def wait_healthy(
    jobs: JobsClient, job: str, count: int, *, version: int = 0, timeout: float = 60
) -> jpb.JobStatus:
    """The job once `count` instances are healthy (all on `version`, if given) and no other runs."""

    async def check() -> jpb.JobStatus | None:
        status = await jobs.get_job(job)
        good = [t for t in healthy(status) if not version or t.version == version]
        return status if len(good) == count and len(running(status)) == count else None

    return await eventually(check, timeout=timeout, what=f"{count} healthy instances of {job} (v{version or '*'})")


async def wait_deployed(jobs: JobsClient, job: str, version: int) -> jpb.JobStatus:
    """The job once the deployment of `version` succeeded (the version is stable: a revert target)."""

    async def check() -> jpb.JobStatus | None:
        status = await jobs.get_job(job)
        return status if (status.deployment.version, status.deployment.state) == (version, "succeeded") else None

    return await eventually(check, timeout=60, what=f"version {version} of {job} deployed")


async def wait_replaced(jobs: JobsClient, job: str, victim: jpb.TaskSlot) -> jpb.TaskSlot:
    """The victim's instance (same step and index) once a later attempt of it is healthy."""

    async def check() -> jpb.TaskSlot | None:
        status = await jobs.get_job(job)
        return next(
            (
                t
                for t in healthy(status)
                if (t.step, t.index) == (victim.step, victim.index) and t.attempt > victim.attempt
            ),
            None,
        )

    return await eventually(check, timeout=60, what=f"{victim.task_id} replaced by a healthy attempt")


async def answers(address: str) -> str:
    def get() -> str:
        with urllib.request.urlopen(f"http://{address}/", timeout=5) as r:
            return str(r.read().decode())

    return await asyncio.to_thread(get)


def listener(port: int) -> psutil.Process:
    """The process listening on a TCP port of this machine (a task's)."""
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return psutil.Process(conn.pid)
    raise AssertionError(f"nothing listens on port {port}")


async def stop_job(jobs: JobsClient, job: str) -> None:
    await jobs.stop_job(job)

    async def ended() -> bool:
        status = await jobs.get_job(job)
        return status.run.state == "stopped"

    await eventually(ended, timeout=30, what=f"{job} stopped")


async def agent_of(cluster: LocalCluster, agent_id: str) -> int:
    """The index (in cluster.agent_daemons) of the agent with that id."""
    async with OperatorClient(cluster.master_address, config=cluster.client_config) as op:
        agents = (await op.agents()).agents
    hostname = next(a.agent_info.hostname for a in agents if a.agent_info.id == agent_id)
    return int(hostname.removeprefix("agent").removesuffix(".local"))


# ------------------------------------------------------------------------------------------------ services
async def test_the_example_service_stays_at_three_healthy_across_a_crash_an_agent_loss_and_a_drain(
    cluster: LocalCluster, jobs: JobsClient
) -> None:
    # `job run` of the shipped example returns once the three instances are healthy.
    code, out, err = await cli(cluster, "job", "run", str(EXAMPLES / "service" / "web.yaml"))
    assert code == 0, out + err
    status = await wait_healthy(jobs, "web", 3)
    for t in healthy(status):
        assert "hello from instance" in await answers(f"127.0.0.1:{t.ports[0]}")

    # An instance's process dies: the instance is relaunched (same index, next attempt).
    victim = healthy(status)[0]
    listener(victim.ports[0]).kill()
    await wait_replaced(jobs, "web", victim)
    status = await wait_healthy(jobs, "web", 3)

    # An agent dies (SIGKILL): its instance turns unreachable and is replaced on another agent at once.
    victim = healthy(status)[0]
    index = await agent_of(cluster, victim.agent_id)
    cluster.agent_daemons[index].signal(signal.SIGKILL)
    try:
        moved = await wait_replaced(jobs, "web", victim)
        assert moved.agent_id != victim.agent_id
        status = await wait_healthy(jobs, "web", 3)
    finally:
        # It comes back (recovering the task it had): the superseded instance is killed, not kept beside the new one.
        cluster.add_agent(index)
        await cluster.wait_for_agents(4)

    async def superseded_gone() -> bool:
        async with OperatorClient(cluster.master_address, config=cluster.client_config) as op:
            tasks = (await op.tasks()).tasks
        return all(t.task.task_id != victim.task_id or t.state != tpb.TASK_RUNNING for t in tasks)

    await eventually(superseded_gone, timeout=60, what="the superseded instance killed")
    status = await wait_healthy(jobs, "web", 3)

    # An agent is drained: its instance moves, and the service is at 3 healthy again.
    victim = healthy(status)[0]
    async with OperatorClient(cluster.master_address, config=cluster.client_config) as op:
        await op.drain_agent(victim.agent_id, deadline=30)
        try:
            moved = await wait_replaced(jobs, "web", victim)
            assert moved.agent_id != victim.agent_id
            status = await wait_healthy(jobs, "web", 3)
            assert all(t.agent_id != victim.agent_id for t in running(status))
        finally:
            await op.reactivate_agent(victim.agent_id)
    await stop_job(jobs, "web")


async def test_a_rolling_update_keeps_two_of_three_healthy_and_ends_on_v2(
    cluster: LocalCluster, jobs: JobsClient, tmp_path: Path
) -> None:
    update = "update: {max_parallel: 1, min_healthy_time: 1s, healthy_deadline: 60s}"
    v1 = service("roll", extra=update + "\nenv: {GREETING: one}")
    await jobs.submit(v1, "roll.yaml")
    await wait_deployed(jobs, "roll", 1)

    v2 = service("roll", extra=update + "\nenv: {GREETING: two}")
    await jobs.submit(v2, "roll.yaml")
    lowest = 3
    samples = 0
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        status = await jobs.get_job("roll")
        lowest = min(lowest, len(healthy(status)))
        samples += 1
        if status.deployment.version == 2 and status.deployment.state == "succeeded":
            break
        await asyncio.sleep(0.1)
    assert status.deployment.state == "succeeded", status.deployment
    assert samples > 10 and lowest >= 2, f"healthy instances fell to {lowest} during the update"
    status = await wait_healthy(jobs, "roll", 3, version=2)
    for t in healthy(status):
        assert (await answers(f"127.0.0.1:{t.ports[0]}")).strip() == "v2 two"

    code, out, err = await cli(cluster, "job", "history", "roll")
    assert code == 0, err
    assert "VERSION" in out and "succeeded" in out
    await stop_job(jobs, "roll")


async def test_an_update_that_never_gets_healthy_reverts_to_the_last_good_version(jobs: JobsClient) -> None:
    update = "update: {max_parallel: 1, min_healthy_time: 1s, healthy_deadline: 6s, auto_revert: true}"
    await jobs.submit(service("revert", extra=update), "revert.yaml")
    await wait_deployed(jobs, "revert", 1)

    broken = service("revert", extra=update, command="sleep 1000")  # serves nothing: never healthy
    await jobs.submit(broken, "revert.yaml")

    async def reverted() -> jpb.JobHistoryResponse | None:
        history = await jobs.job_history("revert")
        return history if [v.cause for v in history.versions] == ["submit", "submit", "auto-revert"] else None

    history = await eventually(reverted, timeout=60, what="an auto-revert")
    assert history.versions[2].reverted_from == 1
    states = [(d.version, d.state) for d in history.deployments]
    assert (2, "reverted") in states or (2, "failed") in states, states
    status = await wait_healthy(jobs, "revert", 3, version=3, timeout=60)
    assert len(healthy(status)) == 3
    await stop_job(jobs, "revert")


async def test_canaries_wait_for_promote_then_replace_the_rest(cluster: LocalCluster, jobs: JobsClient) -> None:
    update = "update: {max_parallel: 1, min_healthy_time: 1s, healthy_deadline: 60s, canary: 1}"
    await jobs.submit(service("canary", extra=update + "\nenv: {GREETING: one}"), "canary.yaml")
    await wait_deployed(jobs, "canary", 1)
    code, _, err = await cli(cluster, "job", "promote", "canary")
    assert code == 2 and "no canary" in err and "Traceback" not in err

    await jobs.submit(service("canary", extra=update + "\nenv: {GREETING: two}"), "canary.yaml")

    async def paused() -> jpb.JobStatus | None:
        status = await jobs.get_job("canary")
        return status if status.deployment.state == "paused" else None

    status = await eventually(paused, timeout=60, what="the canary healthy, waiting for promotion")
    versions = sorted(t.version for t in healthy(status))
    assert versions == [1, 1, 1, 2], versions  # the canary beside the three old ones
    assert [t.canary for t in healthy(status) if t.version == 2] == [True]

    code, out, err = await cli(cluster, "job", "promote", "canary")
    assert code == 0, out + err
    status = await wait_deployed(jobs, "canary", 2)
    assert status.deployment.promoted and len(healthy(status)) == 3
    await stop_job(jobs, "canary")


async def test_endpoints_list_only_healthy_instances(cluster: LocalCluster, jobs: JobsClient) -> None:
    # Instance 1 never serves HTTP: it runs, but it is never healthy.
    command = (
        'if [ "$AIOMESOS_TASK_INDEX" = 1 ]; then exec sleep 1000; fi; echo ok > index.html; '
        "exec python3 -m http.server $PORT0"
    )
    await jobs.submit(service("picky", command=command), "picky.yaml")

    async def two_healthy() -> jpb.JobStatus | None:
        status = await jobs.get_job("picky")
        return status if len(healthy(status)) == 2 and len(running(status)) == 3 else None

    status = await eventually(two_healthy, timeout=60, what="two healthy instances of three")
    code, out, err = await cli(cluster, "job", "endpoints", "picky")
    assert code == 0, err
    addresses = out.split()
    assert len(addresses) == 2
    for address in addresses:
        assert (await answers(address)).strip() == "ok"
    code, out, _ = await cli(cluster, "job", "endpoints", "picky", "--json")
    assert code == 0 and sorted(e["index"] for e in json.loads(out)) == sorted(t.index for t in healthy(status))
    await stop_job(jobs, "picky")


async def test_bad_service_input_is_one_line_and_exit_2(
    cluster: LocalCluster, jobs: JobsClient, tmp_path: Path
) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(service("bad", check="{type: http, interval: 0s}"))
    code, _, err = await cli(cluster, "job", "run", str(spec))
    assert code == 2 and "health_check.interval" in err and len(err.strip().splitlines()) == 1, err

    await jobs.submit(service("steady", instances=1), "steady.yaml")
    await wait_healthy(jobs, "steady", 1)
    for args, words in (
        (("job", "scale", "steady", "-1"), "below zero"),
        (("job", "scale", "nosuch", "2"), "no job"),
        (("job", "revert", "steady", "7"), "no version 7"),
    ):
        code, _, err = await cli(cluster, *args)
        assert code == 2 and words in err and "Traceback" not in err, (args, err)
    as_batch = tmp_path / "steady.yaml"
    as_batch.write_text("name: steady\ncommand: 'true'\n")
    code, _, err = await cli(cluster, "job", "run", str(as_batch))
    assert code == 2 and "type" in err, err
    status = await wait_healthy(jobs, "steady", 1)  # untouched
    assert status.job.version == 1
    code, _, err = await cli(cluster, "job", "scale", "steady", "2")
    assert code == 0, err
    await wait_healthy(jobs, "steady", 2)
    await stop_job(jobs, "steady")


async def test_a_service_survives_a_restart_of_the_jobs_service(cluster: LocalCluster, jobs: JobsClient) -> None:
    await jobs.submit(service("lasting", instances=2), "lasting.yaml")
    before = {t.task_id for t in (await wait_healthy(jobs, "lasting", 2)).run.tasks}
    assert cluster.jobs_daemon is not None
    await cluster.jobs_daemon.stop(sig=signal.SIGKILL)
    await cluster.start_jobs()
    async with JobsClient(cluster.jobs_address, config=cluster.client_config) as again:
        status = await wait_healthy(again, "lasting", 2)
        assert {t.task_id for t in status.run.tasks} == before  # reconciled and adopted, nothing relaunched
        await stop_job(again, "lasting")


# ------------------------------------------------------------------------------------------------ streams
async def figures(jobs: JobsClient, job: str) -> dict[str, object]:
    endpoints = await jobs.get_endpoints(job, "count")
    assert endpoints, "no healthy count worker"
    return dict(json.loads(await answers(endpoints[0].address)))


async def test_the_example_stream_moves_data_and_follows_a_moved_worker(
    cluster: LocalCluster, jobs: JobsClient
) -> None:
    code, out, err = await cli(cluster, "job", "run", str(EXAMPLES / "stream" / "wordcount.yaml"))
    assert code == 0, out + err

    async def flowing(sources: Sequence[str]) -> dict[str, object] | None:
        f = await figures(jobs, "wordcount")
        by_source = f["by_source"]
        assert isinstance(by_source, dict)
        return f if all(by_source.get(s, 0) > 0 for s in sources) else None

    await eventually(lambda: flowing(["gen-0", "gen-1"]), timeout=60, what="lines from both gen workers counted")

    # gen worker 0 dies: it is replaced (stage gen, index 0) and the count worker connects to its new address.
    status = await jobs.get_job("wordcount")
    gen0 = next(t for t in running(status) if t.step == "gen" and t.index == 0)
    listener(gen0.ports[0]).kill()

    new = await wait_replaced(jobs, "wordcount", gen0)
    before = await figures(jobs, "wordcount")
    assert isinstance(before["by_source"], dict)
    counted = before["by_source"].get("gen-0", 0)

    async def follows() -> bool:
        f = await figures(jobs, "wordcount")
        assert isinstance(f["upstream"], list) and isinstance(f["by_source"], dict)
        ports = {int(a.rsplit(":", 1)[1]) for a in f["upstream"]}
        # (the new worker may have been given the old one's port again: then only its lines tell)
        return new.ports[0] in ports and len(ports) == 2 and f["by_source"].get("gen-0", 0) > counted

    await eventually(follows, timeout=30, what="the count worker reading from the new gen-0")
    await stop_job(jobs, "wordcount")


async def test_perpetual_and_transient_streams_land_on_disjoint_agents(jobs: JobsClient) -> None:
    def stream(name: str, lifecycle: str) -> str:
        stages = "\n".join(
            f"  - {{name: s{i}, workers: 2, command: 'exec sleep 1000', resources: {{cpus: 0.2, mem: 32}}}}"
            for i in range(2)
        )
        return f"name: {name}\ntype: stream\nlifecycle: {lifecycle}\nstages:\n{stages}\n"

    await jobs.submit(stream("forever", "perpetual"), "forever.yaml")
    await jobs.submit(stream("for-now", "transient"), "for-now.yaml")

    async def placed(job: str) -> set[str] | None:
        status = await jobs.get_job(job)
        agents = {t.agent_id for t in running(status)}
        return agents if len(running(status)) == 4 else None

    forever = await eventually(lambda: placed("forever"), timeout=60, what="the perpetual stream placed")
    for_now = await eventually(lambda: placed("for-now"), timeout=60, what="the transient stream placed")
    assert forever.isdisjoint(for_now), (forever, for_now)
    await stop_job(jobs, "for-now")
    await stop_job(jobs, "forever")
