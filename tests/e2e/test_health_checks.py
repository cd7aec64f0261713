"""Health checks with real agents: transitions reach the framework; a failing task is killed."""

from __future__ import annotations

import pytest

from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.local_cluster import LocalCluster
from tests.e2e.harness import Recorder, framework, task

pytestmark = [pytest.mark.e2e, pytest.mark.cgroups]
S = tpb.TaskStatus
H = tpb.HealthCheck


@pytest.fixture(scope="module")
def cluster(module_cluster: LocalCluster) -> LocalCluster:
    """One cluster for the module: its tests' tasks are killed or refused, nothing else changes."""
    return module_cluster


def _check(**kw: float) -> tpb.HealthCheck:
    check = H(type=H.COMMAND)
    check.command.shell = True
    check.command.value = "test -e healthy"
    for name, value in {
        "delay_seconds": 0,
        "interval_seconds": 0.2,
        "timeout_seconds": 2,
        "grace_period_seconds": 0,
        **kw,
    }.items():
        setattr(check, name, value)  # set, even to 0: not the default
    check.consecutive_failures = 2
    return check


async def test_a_task_whose_health_check_starts_failing_is_killed(cluster: LocalCluster) -> None:
    rec = Recorder()
    async with framework(cluster.master_address, rec) as driver:
        offer = await rec.next_offer()
        t = task("flaky", "touch healthy; sleep 1; rm healthy; sleep 60", offer.agent_id, grace=1)
        t.health_check.CopyFrom(_check(grace_period_seconds=1))  # the task needs a moment to get healthy
        driver.accept([offer.id], [t])
        final = await rec.wait_state("flaky", {tpb.TASK_KILLED, tpb.TASK_FAILED, tpb.TASK_FINISHED}, timeout=30)
        assert final.state == tpb.TASK_KILLED
        assert final.reason == S.REASON_TASK_HEALTH_CHECK_STATUS_UPDATED
        assert "health check failed 2 times in a row" in final.message
        # Updates are delivered at least once (a slow acknowledgement means a resend): count each once.
        distinct = {s.uuid: s for s in rec.statuses if s.task_id == "flaky"}.values()
        health = [s.healthy for s in distinct if s.HasField("healthy") and s.state == tpb.TASK_RUNNING]
        assert health == [True, False], [(tpb.TaskState.Name(s.state), s.healthy, s.message) for s in distinct]


async def test_an_invalid_health_check_fails_the_task_before_it_starts(cluster: LocalCluster) -> None:
    rec = Recorder()
    async with framework(cluster.master_address, rec) as driver:
        offer = await rec.next_offer()
        t = task("bad-check", "sleep 60", offer.agent_id)
        t.health_check.CopyFrom(H(type=H.HTTP))  # no port
        driver.accept([offer.id], [t])
        s = await rec.wait_state("bad-check", {tpb.TASK_ERROR, tpb.TASK_FAILED, tpb.TASK_RUNNING})
        assert s.state == tpb.TASK_ERROR and "invalid health check" in s.message
