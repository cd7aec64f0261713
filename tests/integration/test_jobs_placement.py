"""The jobs service's placement against a real LocalCluster (secure, as by default): a gang of two that only fits
across both agents is launched whole, in a role the framework did not subscribe with (joined by UPDATE_FRAMEWORK),
and its tasks see their ports as AIOMESOS_PORT0 and PORT0."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.driver import SchedulerDriver
from scheduler_sdk.frameworks.jobs.placement import JobsScheduler
from scheduler_sdk.frameworks.jobs.spec import ConstraintSpec, HealthCheckSpec, TaskResources
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.states import TERMINAL_STATES
from tests.e2e.harness import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.cgroups]

FAST_MASTER = ["--allocation-interval", "0.2", "--heartbeat-interval", "5"]


@dataclass(frozen=True)
class Launch:
    """TaskLaunch's fields (run.py), for this test only."""

    task_id: str
    job_id: str
    run_id: str
    step: str
    index: int
    attempt: int
    role: str
    command: str
    user: str
    env: tuple[tuple[str, str], ...]
    resources: TaskResources
    constraints: tuple[ConstraintSpec, ...]
    group: str
    gang: str
    gang_size: int
    ready_at: float
    health_check: HealthCheckSpec | None = None
    lifecycle: str = ""
    version: int = 0


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    c = LocalCluster(tmp_path, agents=2, master_flags=list(FAST_MASTER))  # cpus:2 each, secure
    try:
        await c.start()
        yield c
    finally:
        leftovers = await c.stop()
    assert leftovers == [], f"cgroups left behind: {leftovers}"


async def test_a_gang_of_two_is_launched_whole_across_two_agents_in_a_new_role(cluster: LocalCluster) -> None:
    statuses: dict[str, list[tpb.TaskStatus]] = {}
    js = JobsScheduler(
        on_update=lambda launch, st: statuses.setdefault(launch.task_id, []).append(st), lease_expiry=5.0
    )
    info = rpb.FrameworkInfo(name="jobs-placement", roles=["*"])
    driver = SchedulerDriver(cluster.master_address, info, js, config=cluster.client_config)
    check = '[ -n "$AIOMESOS_PORT0" ] && [ "$AIOMESOS_PORT0" = "$PORT0" ] && [ "$AIOMESOS_TASK_INDEX" = "%d" ]'
    gang = [
        Launch(
            task_id=f"train.r1.main.{i}.0",
            job_id="train",
            run_id="r1",
            step="main",
            index=i,
            attempt=0,
            role="ml",
            command=check % i,
            user="",
            env=(("AIOMESOS_TASK_INDEX", str(i)),),
            resources=TaskResources(cpus=1.5, mem=32, ports=1),  # one per agent: the gang needs both
            constraints=(),
            group="train.r1.main",
            gang="train.r1.main",
            gang_size=2,
            ready_at=0.0,
        )
        for i in range(2)
    ]
    runner = asyncio.create_task(driver.run())
    placing = asyncio.create_task(js.run(driver))
    try:
        await eventually(driver.subscribed.is_set, timeout=30, what="subscribed")
        js.submit(gang)

        def ended() -> bool:
            return all(any(s.state in TERMINAL_STATES for s in statuses.get(t.task_id, ())) for t in gang)

        await eventually(ended, timeout=60, what=f"both gang members ended: {statuses}")
        assert list(driver.framework.roles) == ["*", "ml"]
        finals = {t.task_id: statuses[t.task_id][-1] for t in gang}
        assert {tid: tpb.TaskState.Name(s.state) for tid, s in finals.items()} == {
            t.task_id: "TASK_FINISHED" for t in gang
        }, {tid: s.message for tid, s in finals.items()}
        agents = {next(s.agent_id for s in statuses[t.task_id] if s.agent_id) for t in gang}
        assert len(agents) == 2  # across both agents
        assert js.waiting_reasons() == {}
    finally:
        placing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await placing
        driver.stop(teardown=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(runner, 10)
