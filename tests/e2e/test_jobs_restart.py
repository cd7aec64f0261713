"""The jobs service killed -9 and restarted with the same work dir: it resubscribes as the same framework,
reconciles, and carries on. No job forgotten, no step run twice, no running task lost; cron times missed while it
was down run once."""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from scheduler_sdk.frameworks.jobs.client import JobsClient
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.security.local import LocalCertificates
from tests.e2e.harness import eventually
from tests.e2e.test_jobs import T0, ended, jobs_cluster

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(
    tmp_path_factory: pytest.TempPathFactory, cluster_ca: LocalCertificates
) -> AsyncIterator[LocalCluster]:
    async with jobs_cluster(tmp_path_factory.mktemp("jobs-restart")) as c:
        yield c


async def kill_and_restart(cluster: LocalCluster) -> None:
    assert cluster.jobs_daemon is not None
    await cluster.jobs_daemon.stop(sig=signal.SIGKILL)
    await cluster.start_jobs()


async def test_kill_9_mid_workflow_every_step_runs_exactly_once(cluster: LocalCluster) -> None:
    # Every task appends its step and attempt to a file: afterwards, each line must be there exactly once.
    ledger_dir = Path(tempfile.mkdtemp(prefix="aiomesos-ledger-"))
    os.chmod(ledger_dir, 0o777)  # tasks run as nobody
    ledger = ledger_dir / "ledger"
    note = f'echo "$AIOMESOS_STEP.$AIOMESOS_TASK_INDEX.$AIOMESOS_ATTEMPT" >> {ledger}'
    spec = f"""
name: survivor
type: workflow
steps:
  - {{name: a, command: '{note}; sleep 0.2'}}
  - {{name: b, command: '{note}; sleep 3', depends_on: [a], count: 2}}
  - name: c
    command: '{note}; test $AIOMESOS_ATTEMPT -ge 1'
    depends_on: [b]
    retries: {{attempts: 1, backoff: 100ms}}
  - {{name: d, command: '{note}', depends_on: [c]}}
"""
    async with JobsClient(cluster.jobs_address, config=cluster.client_config) as jobs:
        await jobs.submit(spec, "survivor.yaml")

        async def b_running() -> bool:
            run = (await jobs.get_job("survivor")).run
            return sum(1 for t in run.tasks if t.step == "b" and t.state == "running") == 2

        await eventually(b_running, timeout=30, what="step b to run")
    await kill_and_restart(cluster)
    async with JobsClient(cluster.jobs_address, config=cluster.client_config) as jobs:
        run = await ended(jobs, "survivor", timeout=60)
        assert run.state == "succeeded", run
        b = [t for t in run.tasks if t.step == "b"]
        assert all(t.attempt == 0 and not t.attempts for t in b), b  # adopted, not relaunched
        (c,) = [t for t in run.tasks if t.step == "c"]
        assert c.attempt == 1
    lines = ledger.read_text().split()
    assert sorted(lines) == sorted(["a.0.0", "b.0.0", "b.1.0", "c.0.0", "c.0.1", "d.0.0"]), lines


async def test_cron_times_missed_while_down_run_once(cluster: LocalCluster) -> None:
    clock = cluster.work_dir / "cron-clock"
    clock.write_text(str(T0))
    async with JobsClient(cluster.jobs_address, config=cluster.client_config) as jobs:
        await jobs.submit("name: sleeper\nschedule: '*/5 * * * *'\ncommand: 'true'\n", "s.yaml")
        await jobs.submit("name: skipper\nschedule: '*/5 * * * *'\non_missed: skip\ncommand: 'true'\n", "k.yaml")
    assert cluster.jobs_daemon is not None
    await cluster.jobs_daemon.stop(sig=signal.SIGKILL)
    clock.write_text(str(T0 + 3600))  # 01:00:30: twelve times passed while the service was down
    await cluster.start_jobs()
    async with JobsClient(cluster.jobs_address, config=cluster.client_config) as jobs:

        async def one_each() -> bool:
            return len(await jobs.history("sleeper")) >= 1 and len(await jobs.history("skipper")) >= 1

        await eventually(one_each, timeout=20, what="the missed times to be handled")
        (ran,) = await jobs.history("sleeper")
        (skipped,) = await jobs.history("skipper")
        assert (ran.trigger, ran.scheduled_for) == ("missed", T0 - 30 + 3600)
        assert (skipped.trigger, skipped.state) == ("missed", "skipped")
        assert (await ended(jobs, "sleeper")).state == "succeeded"
        (job,) = [j for j in await jobs.list_jobs() if j.job_id == "sleeper"]
        assert job.next_run_at == T0 - 30 + 3900
        for name in ("sleeper", "skipper"):
            await jobs.stop_job(name)
