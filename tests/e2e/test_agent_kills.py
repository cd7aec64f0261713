"""Kills and limits through real agents: TASK_KILLING by framework capability, the KILL call's grace period over
the task's, and a sandbox past its disk with `--enforce-disk`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.resources import Resources
from tests.e2e.conftest import FAST_AGENT, FAST_MASTER
from tests.e2e.harness import Recorder, eventually, framework, task

pytestmark = [pytest.mark.e2e, pytest.mark.cgroups]
S = tpb.TaskStatus
KILLING_STATE = rpb.FrameworkInfo.Capability.TASK_KILLING_STATE
TERMINAL = {tpb.TASK_KILLED, tpb.TASK_FAILED, tpb.TASK_FINISHED, tpb.TASK_LOST, tpb.TASK_ERROR}
# Ignores SIGTERM (so only SIGKILL ends it) and says when it got one.
STUBBORN = "trap 'echo got-term' TERM; echo started; while true; do sleep 0.05; done"


@pytest.fixture
async def one_agent(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    """A master and one agent that measures sandboxes often and enforces their disk."""
    flags = [*FAST_AGENT, "--enforce-disk", "--disk-poll-interval", "0.3"]
    c = LocalCluster(tmp_path, agents=1, master_flags=list(FAST_MASTER), agent_flags=flags)
    try:
        await c.start()
        yield c
    finally:
        leftovers = await c.stop()
    assert leftovers == [], leftovers


def _sandbox(cluster: LocalCluster, task_id: str) -> Path:
    (found,) = cluster.agent_daemons[0].work_dir.glob(f"agents/*/frameworks/*/executors/{task_id}/runs/latest")
    return found


async def test_task_killing_goes_to_frameworks_with_the_capability_only(one_agent: LocalCluster) -> None:
    m = one_agent.master_address
    capable, plain = Recorder(), Recorder()
    async with (
        framework(m, capable, name="capable", capabilities=[KILLING_STATE]) as d1,
        framework(m, plain, name="plain") as d2,
    ):
        for rec, driver, task_id in ((capable, d1, "with-cap"), (plain, d2, "without")):
            offer = await rec.next_offer()
            driver.accept([offer.id], [task(task_id, "sleep 60", offer.agent_id, cpus=0.1, grace=0.5)])
            await rec.wait_state(task_id, {tpb.TASK_RUNNING})
            driver.kill(task_id, offer.agent_id)
        with_cap = await capable.wait_state("with-cap", TERMINAL, timeout=30)
        without = await plain.wait_state("without", TERMINAL, timeout=30)
        assert with_cap.state == without.state == tpb.TASK_KILLED
        assert capable.states("with-cap")[-3:] == [tpb.TASK_RUNNING, tpb.TASK_KILLING, tpb.TASK_KILLED]
        assert capable.states("with-cap").count(tpb.TASK_KILLING) == 1
        assert tpb.TASK_KILLING not in plain.states("without")
        assert plain.states("without")[-2:] == [tpb.TASK_RUNNING, tpb.TASK_KILLED]


async def test_the_kill_calls_grace_period_overrides_the_tasks(one_agent: LocalCluster) -> None:
    rec = Recorder()
    async with framework(one_agent.master_address, rec) as driver:
        offer = await rec.next_offer()
        # The task's own grace periods: 30 s (a kill would wait that long) and 0 (SIGKILL at once).
        patient = task("patient", STUBBORN, offer.agent_id, cpus=0.1, grace=30)
        hasty = task("hasty", STUBBORN, offer.agent_id, cpus=0.1, grace=0)
        driver.accept([offer.id], [patient, hasty])
        for task_id in ("patient", "hasty"):
            await rec.wait_state(task_id, {tpb.TASK_RUNNING})
            await eventually(lambda t=task_id: "started" in (_sandbox(one_agent, t) / "stdout").read_text())

        # Shorter than the task's: killed after about 0.5 s, not 30.
        t0 = time.monotonic()
        driver.kill("patient", offer.agent_id, grace_period=0.5)
        s = await rec.wait_state("patient", TERMINAL, timeout=20)
        assert s.state == tpb.TASK_KILLED
        assert time.monotonic() - t0 < 10, "the task's 30 s grace period was used, not the KILL call's"
        assert "got-term" in (_sandbox(one_agent, "patient") / "stdout").read_text(), "SIGTERM first"

        # Longer than the task's: SIGTERM, then SIGKILL 2 s later, not SIGKILL at once.
        t0 = time.monotonic()
        driver.kill("hasty", offer.agent_id, grace_period=2.0)
        s = await rec.wait_state("hasty", TERMINAL, timeout=20)
        elapsed = time.monotonic() - t0
        assert s.state == tpb.TASK_KILLED
        assert "got-term" in (_sandbox(one_agent, "hasty") / "stdout").read_text(), "SIGKILL came without SIGTERM"
        assert elapsed >= 1.8, f"killed after {elapsed:.2f} s: the KILL call's 2 s grace period was not waited"


async def test_a_sandbox_past_its_disk_is_killed_with_enforce_disk(one_agent: LocalCluster) -> None:
    rec = Recorder()
    async with framework(one_agent.master_address, rec) as driver:
        offer = await rec.next_offer()

        def with_disk(t: tpb.TaskInfo, mb: float) -> tpb.TaskInfo:
            t.ClearField("resources")
            t.resources.extend(Resources.of(cpus=0.1, mem=32, disk=mb).to_proto())
            return t

        hog = with_disk(task("hog", "head -c 4000000 /dev/zero > big; sleep 60", offer.agent_id), 2)
        modest = with_disk(task("modest", "head -c 100000 /dev/zero > small; sleep 60", offer.agent_id), 50)
        driver.accept([offer.id], [hog, modest])
        s = await rec.wait_state("hog", TERMINAL, timeout=30)
        assert s.state == tpb.TASK_FAILED, s
        assert s.reason == S.REASON_CONTAINER_LIMITATION_DISK, s
        assert "disk limit 2 MiB exceeded" in s.message, s.message
        # The task within its limit runs on.
        assert rec.latest("modest").state == tpb.TASK_RUNNING  # type: ignore[union-attr]
        driver.kill("modest", offer.agent_id)
        assert (await rec.wait_state("modest", TERMINAL, timeout=30)).state == tpb.TASK_KILLED
