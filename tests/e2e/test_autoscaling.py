"""Autoscaling for real: a PlacementScheduler with an Autoscaler and the LocalAgentProvider. A burst of tasks
makes the provider start agents; when the burst is over, idle agents above max_idle are drained and stopped;
no running task is killed by the scale-down."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.local_provider import LocalAgentProvider
from scheduler_sdk.operator import OperatorClient
from scheduler_sdk.placement import TaskRequest
from scheduler_sdk.placement.autoscale import Autoscaler, AutoscaleRule
from scheduler_sdk.placement.engine import PlacementEngine
from scheduler_sdk.placement.fitness import BinPacking
from scheduler_sdk.placement.service import PlacementScheduler, run_framework
from tests.e2e.conftest import FAST_AGENT, FAST_MASTER
from tests.e2e.harness import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.cgroups]


@pytest.fixture
async def bare_cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    c = LocalCluster(tmp_path, agents=0, master_flags=list(FAST_MASTER), agent_flags=list(FAST_AGENT))
    try:
        await c.start()
        yield c
    finally:
        leftovers = await c.stop()
    assert leftovers == [], f"cgroups left behind: {leftovers}"


async def _active(master: str) -> set[str]:
    async with OperatorClient(master) as op:
        return {a.agent_info.hostname for a in (await op.agents()).agents if a.active}


async def test_a_burst_scales_up_then_idle_agents_are_drained_without_killing_running_tasks(
    bare_cluster: LocalCluster,
) -> None:
    master = bare_cluster.master_address
    provider = LocalAgentProvider(bare_cluster, "workers", "cpus:2;mem:1024;disk:512", {"zone": "a"})
    first = await provider.scale_up("workers", 1)
    await provider.wait_attached(first, timeout=30)

    rule = AutoscaleRule(
        group="workers",
        min_idle=0,
        max_idle=1,
        cooldown=0.5,
        min_size=1,
        max_size=4,
        shape={"cpus": 2, "mem": 1024},
    )
    autoscaler = Autoscaler([rule], group_attribute="asg", provider=provider)
    states: dict[str, list[int]] = {}

    def on_update(task: TaskRequest | None, status: tpb.TaskStatus) -> None:
        states.setdefault(status.task_id, []).append(status.state)

    scheduler = PlacementScheduler(PlacementEngine(BinPacking("cpus")), on_update=on_update, lease_expiry=2.0)
    autoscaler.attach(scheduler)
    # The burst: 8 one-core tasks need 4 agents of 2 cores; one keeps running long after the others.
    burst = [TaskRequest(f"b{i}", cpus=1, mem=64, payload="sleep 3") for i in range(7)]
    burst.append(TaskRequest("long", cpus=1, mem=64, payload="sleep 600"))
    scheduler.submit(*burst)
    stop = asyncio.Event()
    runner = asyncio.create_task(run_framework(master, rpb.FrameworkInfo(name="autoscaled"), scheduler, until=stop))
    try:
        # Scale-up: the unplaced tasks made the provider start agents, up to max_size.
        await eventually(lambda: _count(master, 4), timeout=60, what="4 agents after the burst")
        await eventually(
            lambda: all(states.get(t.id, [None])[-1] == tpb.TASK_FINISHED for t in burst[:7]),
            timeout=60,
            what="the burst's short tasks to finish",
        )
        assert states["long"][-1] == tpb.TASK_RUNNING
        # Scale-down: idle agents above max_idle (1) go; the one running `long` stays.
        await eventually(lambda: _count(master, 2), timeout=60, what="idle agents drained down to max_idle")
        assert states["long"][-1] == tpb.TASK_RUNNING, "scale-down killed a running task"
        assert not any(tpb.TASK_KILLED in s or tpb.TASK_LOST in s for s in states.values())
        await eventually(
            lambda: sum(len(a.hostnames) for a in autoscaler.history if a.kind == "release") == 2,
            what="two releases recorded",
        )
        assert len(await _active(master)) == 2  # max_idle 1, plus the one running `long`
        # never above max_size: the first agent plus every agent the autoscaler started
        assert 1 + sum(a.count for a in autoscaler.history if a.kind == "scale_up" and not a.error) <= 4
        assert scheduler.metrics.failed_runs == 0
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(runner, 20)
        await provider.stop_all()


async def _count(master: str, n: int) -> bool:
    return len(await _active(master)) == n
