"""Simulated agents (`aiomesos simulate-agents`, scheduler_sdk.simulated_agents) against a real, secure master:
they attach with an agent's certificate, answer the master's rate-bound pings, run what a framework launches
through the SDK (STARTING, RUNNING, FINISHED, each acknowledged), report kills, and detach when stopped."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.operator import OperatorClient
from scheduler_sdk.security.config import ClientConfig
from scheduler_sdk.simulated_agents import SIM_SECONDS_LABEL, SimulatedAgents
from tests.conftest import module_tmp_path
from tests.e2e.conftest import FAST_MASTER
from tests.e2e.harness import Recorder, eventually, framework, task

pytestmark = [pytest.mark.e2e]

AGENTS = 200
# 200 agents at 400 pings/s: the interval in force is 0.5 s, above the 0.2 s floor.
PING_FLAGS = ["--agent-ping-interval", "0.2", "--max-agent-pings-per-second", "400"]


@pytest.fixture(scope="module")
def master_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(module_tmp_path(tmp_path_factory, "sim"), agents=0, master_flags=[*FAST_MASTER, *PING_FLAGS])
    try:
        asyncio.run(c.start())
        yield c
    finally:
        asyncio.run(c.stop())


def agent_config(cluster: LocalCluster, name: str = "sim") -> ClientConfig:
    assert cluster.certificates is not None
    return cluster.certificates.client_config(cluster.master_address, name=name, role="agent")


async def active_hosts(cluster: LocalCluster, prefix: str) -> dict[str, bool]:
    async with OperatorClient(cluster.master_address, config=cluster.client_config) as client:
        agents = (await client.agents()).agents
    return {a.agent_info.hostname: a.active for a in agents if a.agent_info.hostname.startswith(prefix)}


async def test_simulated_agents_run_what_a_framework_launches(master_only: LocalCluster) -> None:
    sim = SimulatedAgents(
        master_only.master_address,
        agent_config(master_only),
        AGENTS,
        attributes_spread="zone=3",
        task_seconds=0.2,
        hostname_prefix="sim-",
    )
    await sim.start()
    try:
        await sim.wait_attached(timeout=30)
        async with OperatorClient(master_only.master_address, config=master_only.client_config) as client:
            agents = [a for a in (await client.agents()).agents if a.agent_info.hostname.startswith("sim-")]
        assert len(agents) == AGENTS and all(a.active for a in agents)
        zones = {attr.text.value for a in agents for attr in a.agent_info.attributes if attr.name == "zone"}
        assert zones == {"zone-0", "zone-1", "zone-2"}

        recorder = Recorder()
        async with framework(master_only.master_address, recorder, name="sim-test") as driver:
            offers = [await recorder.next_offer() for _ in range(11)]
            for i, offer in enumerate(offers[:10]):
                driver.launch(offer.id, [task(f"t{i}", "true", offer.agent_id)])
            forever = task("forever", "sleep 1000", offers[10].agent_id)
            forever.labels.labels.add(key=SIM_SECONDS_LABEL, value="0")
            driver.launch(offers[10].id, [forever])
            for i in range(10):
                await recorder.wait_state(f"t{i}", {tpb.TASK_FINISHED})
                assert recorder.states(f"t{i}") == [tpb.TASK_STARTING, tpb.TASK_RUNNING, tpb.TASK_FINISHED]
            await recorder.wait_state("forever", {tpb.TASK_RUNNING})
            assert sim.tasks_running == 1 and sim.tasks_launched == 11
            driver.kill("forever", offers[10].agent_id)
            await recorder.wait_state("forever", {tpb.TASK_KILLED})
            # Every update acknowledged through the master, nothing left to resend.
            await eventually(
                lambda: sim.counters.acknowledged == 3 * 11 and sim.tasks_running == 0,
                what="every update acknowledged",
            )
            assert sim.counters.updates_sent == 3 * 11 and sim.tasks_finished == 10 and sim.tasks_killed == 1
        # The master's pings: at most 400/s in all, so each agent's interval is 0.5 s, which each ping says.
        await eventually(lambda: sim.pings >= AGENTS, what="a ping for every agent")
        assert sim.ping_interval == pytest.approx(0.5)
    finally:
        await sim.stop()
    assert sim.attached == 0

    async def detached() -> bool:
        hosts = await active_hosts(master_only, "sim-")
        return len(hosts) == AGENTS and not any(hosts.values())

    await eventually(detached, what="the master to see the agents detach")


async def test_the_command_attaches_from_several_processes(master_only: LocalCluster) -> None:
    certificates = master_only.certificates
    assert certificates is not None
    cert, key = certificates.issue("sim-cli", "agent")
    argv = [
        sys.executable,
        "-m",
        "scheduler_sdk",
        "simulate-agents",
        "--master",
        master_only.master_address,
        "--ca",
        str(certificates.ca_cert),
        "--cert",
        str(cert),
        "--key",
        str(key),
        "--count",
        "30",
        "--processes",
        "2",
        "--hostname-prefix",
        "cli-",
        "--report-interval",
        "0.3",
        "--json",
    ]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ)
    try:
        assert proc.stdout is not None
        attached = 0
        while attached < 30:
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line, (await proc.stderr.read()).decode() if proc.stderr else "no output"
            report = json.loads(line)
            assert report["agents"] == 30 and report["processes"] == 2
            attached = report["attached"]
        hosts = await active_hosts(master_only, "cli-")
        assert sorted(hosts) == sorted(f"cli-{i}" for i in range(30)) and all(hosts.values())
    finally:
        proc.terminate()
        code = await asyncio.wait_for(proc.wait(), 15)
    assert code in (0, 128 + 15), code

    async def detached() -> bool:
        return not any((await active_hosts(master_only, "cli-")).values())

    await eventually(detached, what="the command's agents to detach")
