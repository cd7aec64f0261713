"""bench.scale_placement's figure against a real, secure master: one placement-SDK framework (PlacementScheduler,
run_framework) places its tasks on simulated agents, each ACCEPT carrying many tasks, and every task it counts as
placed was taken by an agent (what the figure counts is what happened, not a count of calls sent)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from bench.scale_placement import measure
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.simulated_agents import SimulatedAgents
from tests.conftest import module_tmp_path
from tests.e2e.conftest import FAST_MASTER

pytestmark = [pytest.mark.e2e]

AGENTS = 20
TASKS = 400


@pytest.fixture(scope="module")
def master_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(module_tmp_path(tmp_path_factory, "place"), agents=0, master_flags=list(FAST_MASTER))
    try:
        asyncio.run(c.start())
        yield c
    finally:
        asyncio.run(c.stop())


async def test_one_placement_framework_places_every_task_on_simulated_agents(master_only: LocalCluster) -> None:
    certificates = master_only.certificates
    assert certificates is not None
    agent = certificates.client_config(master_only.master_address, name="sim-place", role="agent")
    sim = SimulatedAgents(master_only.master_address, agent, AGENTS, resources="cpus:4;mem:4096")
    await sim.start()
    try:
        await sim.wait_attached(timeout=30)
        framework = certificates.client_config(master_only.master_address, name="place", role="framework")
        figures = await measure(master_only.master_address, framework, tasks=TASKS, task_seconds=0.05, timeout=60)
        assert figures["tasks_placed"] == TASKS
        assert figures["placements_per_second"] > 0
        # 400 tasks of 0.1 cpus on 20 agents of 4: bin packing fills agents of 40 tasks each, one ACCEPT per agent
        # used per engine run, so far fewer ACCEPTs than tasks.
        assert 10 <= figures["accept_calls"] <= TASKS // 4
        assert figures["engine_runs"] >= 1 and figures["placement_run_ms_p50"] >= 0
        # Each one reached an agent exactly once and ended there, its TASK_FINISHED through to the framework.
        assert figures["tasks_finished"] == TASKS
        assert sim.tasks_launched == sim.tasks_finished == TASKS
    finally:
        await sim.stop()
