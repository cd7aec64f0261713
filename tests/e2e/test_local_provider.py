"""LocalAgentProvider for real: agent processes started with the group attribute attach to a real master, and
scale_down stops them without leaving a cgroup behind. Also one autoscaler loop driven from the master's view."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aiomesos.v1 import operator_pb2 as opb
from aiomesos.v1 import resources_pb2 as rpb
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.local_provider import LocalAgentProvider
from scheduler_sdk.operator import OperatorClient
from scheduler_sdk.placement.autoscale import Action, Autoscaler, AutoscaleRule
from scheduler_sdk.placement.model import Host, OfferSlice, RunningTask
from scheduler_sdk.resources import Resources
from tests.e2e.conftest import FAST_AGENT, FAST_MASTER
from tests.e2e.harness import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.cgroups]

RESOURCES = "cpus:1;mem:256;disk:512;ports:[31000-31099]"


@pytest.fixture
async def bare_cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    """A master and no agent: the provider brings them."""
    c = LocalCluster(tmp_path, agents=0, master_flags=list(FAST_MASTER), agent_flags=list(FAST_AGENT))
    try:
        await c.start()
        yield c
    finally:
        leftovers = await c.stop()
    assert leftovers == [], f"cgroups left behind: {leftovers}"


async def active_agents(op: OperatorClient) -> dict[str, opb.AgentSummary]:
    return {a.agent_info.hostname: a for a in (await op.agents()).agents if a.active}


def text_attributes(agent: opb.AgentSummary) -> dict[str, str]:
    return {a.name: a.text.value for a in agent.agent_info.attributes if a.type == rpb.Value.TEXT}


async def test_local_provider_starts_agents_with_the_group_attribute_and_stops_them(bare_cluster: LocalCluster) -> None:
    provider = LocalAgentProvider(bare_cluster, "burst", RESOURCES, lambda n: {"zone": "ab"[n % 2]})
    names = await provider.scale_up("burst", 2)
    assert names == ["burst-1", "burst-2"]
    async with OperatorClient(bare_cluster.master_address) as op:
        # polls the master with a deadline; fails at once with the log tail if an agent process exits
        await provider.wait_attached(names, timeout=30)
        agents = await active_agents(op)
        assert {n: text_attributes(agents[n]) for n in names} == {
            "burst-1": {"asg": "burst", "zone": "b"},
            "burst-2": {"asg": "burst", "zone": "a"},
        }
        assert Resources.from_proto(agents["burst-1"].total).scalars()["cpus"] == 1.0

        stopped = provider.daemons["burst-1"]
        await provider.scale_down("burst", ["burst-1", "not-mine"])
        assert not stopped.alive
        assert provider.leftovers("burst-1") == []
        assert list(provider.daemons) == ["burst-2"]

        async def gone() -> bool:
            agents = await active_agents(op)
            return "burst-1" not in agents and "burst-2" in agents

        await eventually(gone, what="burst-1 to leave the master, burst-2 to stay")
        # numbers are never reused
        assert await provider.scale_up("burst", 1) == ["burst-3"]
        await provider.wait_attached(["burst-3"], timeout=30)
        await provider.stop_all()
        assert provider.daemons == {}
        assert provider.leftovers("burst-2") == [] and provider.leftovers("burst-3") == []
    with pytest.raises(ValueError, match="group"):
        await provider.scale_up("other", 1)


def hosts_from_master(agents: dict[str, opb.AgentSummary]) -> list[Host]:
    """What a scheduler would see of idle agents: everything they have on offer, no task."""
    out = []
    for name, a in sorted(agents.items()):
        s = Resources.from_proto(a.total).scalars()
        out.append(
            Host(
                name,
                agent_id=a.agent_info.id,
                attributes=text_attributes(a),
                offers=(OfferSlice(f"{name}-all", cpus=s.get("cpus", 0), mem=s.get("mem", 0)),),
                running=tuple(RunningTask(f"{name}-t{i}") for i in range(a.task_count)),
            )
        )
    return out


async def test_autoscaler_with_the_local_provider_grows_to_min_idle_then_drains_the_excess(
    bare_cluster: LocalCluster,
) -> None:
    provider = LocalAgentProvider(bare_cluster, "pool", RESOURCES, lambda n: {"zone": "ab"[n % 2]})
    rule = AutoscaleRule("pool", min_idle=3, max_idle=3, cooldown=0, shape={"cpus": 1, "mem": 256})
    autoscaler = Autoscaler([rule], "asg", provider)
    async with OperatorClient(bare_cluster.master_address) as op:
        assert await autoscaler.evaluate([]) == [
            Action("scale_up", "pool", 3, ("pool-1", "pool-2", "pool-3"), "min_idle")
        ]
        await provider.wait_attached(["pool-1", "pool-2", "pool-3"], timeout=30)
        agents = await active_agents(op)
        assert await autoscaler.evaluate(hosts_from_master(agents)) == []
        assert autoscaler.starting("pool") == 0

        # Fewer idle hosts wanted now: the excess is disabled, then released (its agent stopped for real).
        autoscaler.set_rule(AutoscaleRule("pool", min_idle=0, max_idle=1, cooldown=0))
        [disable] = await autoscaler.evaluate(hosts_from_master(agents))
        assert disable == Action("disable", "pool", 2, ("pool-3", "pool-2"), "max_idle")
        [release] = await autoscaler.evaluate(autoscaler.mark_disabled(hosts_from_master(agents)))
        assert release == Action("release", "pool", 2, ("pool-2", "pool-3"), "drained")

        async def one_left() -> bool:
            return set(await active_agents(op)) == {"pool-1"}

        await eventually(one_left, what="pool-2 and pool-3 to stop")
        assert provider.leftovers("pool-2") == [] and provider.leftovers("pool-3") == []
