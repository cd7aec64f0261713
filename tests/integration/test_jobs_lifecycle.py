"""The jobs placement's lifecycle objective against a real LocalCluster of 4 agents (secure, as by default):
perpetual work (a group of HTTP servers with a health check on their assigned port) and transient work (a group of
tasks with ports) land on disjoint agents while there is room; transient work that needs more than the agents left
apart shares an agent with the perpetual work (nothing is refused). Driven through `JobsScheduler` with a real
driver, with the service's own `TaskLaunch`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.driver import SchedulerDriver
from scheduler_sdk.frameworks.jobs.placement import JobsScheduler
from scheduler_sdk.frameworks.jobs.spec import HealthCheckSpec, TaskResources
from scheduler_sdk.frameworks.jobs.tasks import TaskLaunch
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.states import TERMINAL_STATES
from tests.e2e.harness import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.cgroups]

FAST_MASTER = ["--allocation-interval", "0.2", "--heartbeat-interval", "5"]
SERVE = 'exec python3 -m http.server "$AIOMESOS_PORT0" --bind 127.0.0.1'
CHECK = HealthCheckSpec("http", port_index=0, path="/", interval=0.5, timeout=2.0, grace_period=30.0)


def launches(job: str, n: int, lifecycle: str, command: str, check: HealthCheckSpec | None = None) -> list[TaskLaunch]:
    group = f"{job}.r1.main"
    return [
        TaskLaunch(
            task_id=f"{group}.{i}.0",
            job_id=job,
            run_id="r1",
            step="main",
            index=i,
            attempt=0,
            role="*",
            command=command,
            user="",
            env=(("AIOMESOS_JOB", job),),
            resources=TaskResources(cpus=0.5, mem=32, ports=1),  # 4 fit on an agent (cpus:2)
            constraints=(),
            group=group,
            gang="",
            gang_size=0,
            ready_at=0.0,
            health_check=check,
            lifecycle=lifecycle,
            version=1,
        )
        for i in range(n)
    ]


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    c = LocalCluster(tmp_path, agents=4, master_flags=list(FAST_MASTER))
    try:
        await c.start()
        yield c
    finally:
        leftovers = await c.stop()
    assert leftovers == [], f"cgroups left behind: {leftovers}"


async def test_perpetual_and_transient_work_land_on_disjoint_agents_while_there_is_room(cluster: LocalCluster) -> None:
    statuses: dict[str, list[tpb.TaskStatus]] = {}
    ports: dict[str, tuple[int, ...]] = {}

    def on_update(launch: TaskLaunch, st: tpb.TaskStatus) -> None:
        statuses.setdefault(launch.task_id, []).append(st)
        ports.setdefault(launch.task_id, js.ports(launch.task_id))

    js = JobsScheduler(on_update=on_update, lease_expiry=5.0)
    info = rpb.FrameworkInfo(name="jobs-lifecycle", roles=["*"])
    driver = SchedulerDriver(cluster.master_address, info, js, config=cluster.client_config)
    perpetual = launches("web", 3, "perpetual", SERVE, CHECK)
    transient = launches("etl", 3, "transient", "exec sleep 600")
    more = launches("etl2", 10, "transient", "exec sleep 600")  # with the rest: every cpu of the cluster

    def last(t: TaskLaunch) -> tpb.TaskStatus | None:
        got = statuses.get(t.task_id)
        return got[-1] if got else None

    def running(group: list[TaskLaunch]) -> bool:
        ended = [(t.task_id, s.message) for t in group if (s := last(t)) is not None and s.state in TERMINAL_STATES]
        assert not ended, f"ended: {ended}"
        return all((s := last(t)) is not None and s.state == tpb.TASK_RUNNING for t in group)

    def agents(group: list[TaskLaunch]) -> set[str]:
        return {statuses[t.task_id][-1].agent_id for t in group}

    runner = asyncio.create_task(driver.run())
    placing = asyncio.create_task(js.run(driver))
    try:
        await eventually(driver.subscribed.is_set, timeout=30, what="subscribed")
        js.submit(perpetual)

        def healthy() -> bool:
            return running(perpetual) and all(s.healthy for t in perpetual if (s := last(t)) is not None)

        await eventually(healthy, timeout=90, what=f"the perpetual servers healthy: {statuses}")
        for t in perpetual:  # the agent probed the port the task was given (its only one)
            assert len(ports[t.task_id]) == 1 and ports[t.task_id] == js.ports(t.task_id)
        js.submit(transient)
        await eventually(lambda: running(transient), timeout=90, what=f"the transient tasks running: {statuses}")
        assert not agents(perpetual) & agents(transient), (agents(perpetual), agents(transient))
        assert all(len(js.ports(t.task_id)) == 1 for t in transient)

        # More transient work than the three agents apart from the perpetual one hold: one task shares its agent.
        js.submit(more)
        await eventually(lambda: running(more), timeout=120, what=f"all the transient work running: {statuses}")
        assert js.waiting_reasons() == {}
        (web_agent,) = agents(perpetual)
        sharing = [t.task_id for t in more if statuses[t.task_id][-1].agent_id == web_agent]
        assert len(sharing) == 1, sharing  # the 0.5 cpu left beside the servers, and only when nothing else was left
        assert len(agents(perpetual) | agents(transient) | agents(more)) == 4
    finally:
        placing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await placing
        driver.stop(teardown=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(runner, 10)
