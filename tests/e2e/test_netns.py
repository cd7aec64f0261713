"""Hosts as network namespaces (scheduler_sdk.netns_cluster, behind deploy/netns-cluster.sh): a master and two
agents, each in its own namespace with its own address on a bridge, secure, talking across it. Tasks land on
agents in different namespaces and see their host's name and address; a partitioned agent (its packets dropped)
becomes unreachable, its task TASK_UNREACHABLE, and after healing it is back and its task RUNNING again; the
autoscaler's NetnsAgentProvider adds a host whose agent registers and removes it again. One cluster for the module;
every namespace, the bridge, processes and cgroups are gone after it. Skipped only where `ip netns` (or nftables
in a namespace) is not permitted."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiomesos.v1 import operator_pb2 as opb
from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk import netns
from scheduler_sdk.local_cluster import ClusterError
from scheduler_sdk.netns_cluster import AGENT_PORT, NetnsCluster, main
from scheduler_sdk.netns_provider import NetnsAgentProvider
from scheduler_sdk.operator import AgentClient, OperatorClient
from scheduler_sdk.placement.autoscale import Action, Autoscaler, AutoscaleRule
from scheduler_sdk.placement.model import Host, OfferSlice
from scheduler_sdk.resources import Resources
from tests.conftest import module_tmp_path
from tests.e2e.conftest import FAST_AGENT, FAST_MASTER
from tests.e2e.harness import Recorder, eventually, framework, task

pytestmark = [pytest.mark.e2e, pytest.mark.cgroups]
PARTITION_AWARE = rpb.FrameworkInfo.Capability.PARTITION_AWARE
# The master pings each agent every second: a silent one is noticed about 10 s later (gRPC's keepalive timeout,
# TCP_USER_TIMEOUT), marked unreachable a second after; the agent takes a master silent for 5 pings for lost.
NETNS_MASTER = [*FAST_MASTER, "--agent-ping-interval", "1", "--agent-unreachable-timeout", "1"]
RESOURCES = "cpus:1;mem:256;disk:512;ports:[31000-31099]"


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsCluster]:
    missing = netns.missing_tools()
    assert not missing, f"{missing}: `make system-deps` installs them"
    why = netns.available()
    if why:
        pytest.skip(why)
    c = NetnsCluster(
        module_tmp_path(tmp_path_factory, "netns"),
        name=f"t{os.getpid() % 10_000_000}",
        agents=2,
        agent_resources=RESOURCES,
        master_flags=NETNS_MASTER,
        agent_flags=list(FAST_AGENT),
    )
    assert c.network is None
    try:
        asyncio.run(c.start())
        yield c
    finally:
        problems = asyncio.run(c.stop())
        if c.network is not None:
            left = [ns for ns in netns.namespaces() if ns.startswith(c.network.namespace_prefix)]
            assert left == [] and not netns.link_exists(c.network.bridge), f"left behind: {left}, bridge"
    assert problems == [], f"not cleanly stopped: {problems}"


async def script(c: NetnsCluster, *args: str) -> str:
    """What deploy/netns-cluster.sh ARGS prints for this cluster (its code, run here: the script's own Python
    start-up costs seconds; the cluster is found through the state file in its work dir)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = await asyncio.to_thread(main, ["--dir", str(c.work_dir), *args])
    assert code == 0, out.getvalue()
    return out.getvalue()


async def active_agents(c: NetnsCluster) -> dict[str, opb.AgentSummary]:
    async with OperatorClient(c.master_address) as op:
        return {a.agent_info.hostname: a for a in (await op.agents()).agents if a.active}


async def stdout_of(agent_address: str, task_id: str, framework_id: str) -> str:
    async with AgentClient(agent_address) as client:
        chunks = [c.data async for c in client.read_file(task_id, "stdout", framework_id=framework_id)]
    return b"".join(chunks).decode()


async def test_tasks_land_on_agents_in_their_own_namespaces(hosts: NetnsCluster) -> None:
    agents = await active_agents(hosts)
    # Each agent registered from its own address, across the bridge, under its host's name.
    assert {name: a.agent_info.address for name, a in agents.items()} == {
        h.name: f"{h.address}:{AGENT_PORT}" for h in hosts.agent_hosts()
    }
    rec = Recorder()
    async with framework(hosts.master_address, rec, name="spread") as driver:
        offers = {}
        while len(offers) < 2:
            offer = await rec.next_offer()
            offers.setdefault(offer.hostname, offer)
        for name, offer in offers.items():
            command = "echo $(hostname) $(ip -4 -o addr show dev eth0 | awk '{print $4}')"
            driver.accept([offer.id], [task(f"where-{name}", command, offer.agent_id)])
        for name in offers:
            await rec.wait_state(f"where-{name}", {tpb.TASK_FINISHED})
        seen = {
            name: (await stdout_of(agents[name].agent_info.address, f"where-{name}", driver.framework_id)).split()
            for name in offers
        }
    assert seen == {h.name: [h.name, f"{h.address}/24"] for h in hosts.agent_hosts()}
    # The script reads the same cluster from its state file.
    status = {line.split()[0]: line.split()[1:4] for line in (await script(hosts, "status")).splitlines()}
    assert {name: status[name] for name in hosts.hosts} == {
        name: [h.address, h.namespace, "pid"] for name, h in hosts.hosts.items()
    }


async def test_a_partitioned_agent_is_unreachable_and_comes_back(hosts: NetnsCluster) -> None:
    rec = Recorder()
    async with framework(
        hosts.master_address, rec, name="aware", checkpoint=True, capabilities=[PARTITION_AWARE]
    ) as driver:
        offer = await rec.next_offer()
        while offer.hostname != "agent2":
            driver.decline([offer.id], refuse_seconds=0.5)
            offer = await rec.next_offer()
        driver.accept([offer.id], [task("cut-off", "sleep 600", offer.agent_id)])
        await rec.wait_state("cut-off", {tpb.TASK_RUNNING})
        try:
            await script(hosts, "partition", "agent2")
            assert netns.partitioned(hosts.hosts["agent2"])
            s = await rec.wait_state("cut-off", {tpb.TASK_UNREACHABLE}, timeout=40)
            assert s.source == tpb.TaskStatus.SOURCE_MASTER and "unreachable" in s.message
            assert set(await active_agents(hosts)) == {"agent1"}
            await eventually(lambda: offer.agent_id in rec.lost_agents, what="agent_lost")
        finally:
            if netns.partitioned(hosts.hosts["agent2"]):  # also when the test failed: the module's cluster goes on
                hosts.heal("agent2")
        # Back with the same id, its checkpointed task adopted: RUNNING again, and reconciliation agrees.
        s = await rec.wait_state("cut-off", {tpb.TASK_RUNNING}, timeout=40)
        assert s.agent_id == offer.agent_id

        async def both_active() -> bool:
            return set(await active_agents(hosts)) == {"agent1", "agent2"}

        await eventually(both_active, what="agent2 to be active again")
        driver.reconcile([("cut-off", offer.agent_id)])
        await eventually(
            lambda: rec.latest("cut-off").reason == tpb.TaskStatus.REASON_RECONCILIATION,  # type: ignore[union-attr]
            what="the reconciliation's answer",
        )
        assert rec.latest("cut-off").state == tpb.TASK_RUNNING  # type: ignore[union-attr]
        driver.kill("cut-off")
        await rec.wait_state("cut-off", {tpb.TASK_KILLED})


def pool_hosts(agents: dict[str, opb.AgentSummary]) -> list[Host]:
    """What a scheduler sees of the pool's idle agents (those with the group attribute)."""
    out = []
    for name, a in sorted(agents.items()):
        attributes = {x.name: x.text.value for x in a.agent_info.attributes if x.type == rpb.Value.TEXT}
        if "asg" in attributes:
            s = Resources.from_proto(a.total).scalars()
            whole = OfferSlice(f"{name}-all", cpus=s.get("cpus", 0), mem=s.get("mem", 0))
            out.append(Host(name, agent_id=a.agent_info.id, attributes=attributes, offers=(whole,)))
    return out


async def test_the_autoscaler_adds_a_namespace_host_and_removes_it(hosts: NetnsCluster) -> None:
    provider = NetnsAgentProvider(hosts, "pool", RESOURCES)
    autoscaler = Autoscaler([AutoscaleRule("pool", min_idle=1, max_idle=1, cooldown=0)], "asg", provider)
    try:
        assert await autoscaler.evaluate([]) == [Action("scale_up", "pool", 1, ("pool-1",), "min_idle")]
        new = hosts.hosts["pool-1"]
        assert new.namespace in netns.namespaces()
        await provider.wait_attached(["pool-1"], timeout=30)
        agents = await active_agents(hosts)
        assert agents["pool-1"].agent_info.address == f"{new.address}:{AGENT_PORT}"
        assert await autoscaler.evaluate(pool_hosts(agents)) == []

        # No idle host wanted any more: disabled, then released; the host itself goes away.
        autoscaler.set_rule(AutoscaleRule("pool", min_idle=0, max_idle=0, cooldown=0))
        assert await autoscaler.evaluate(pool_hosts(agents)) == [Action("disable", "pool", 1, ("pool-1",), "max_idle")]
        [release] = await autoscaler.evaluate(autoscaler.mark_disabled(pool_hosts(agents)))
        assert release == Action("release", "pool", 1, ("pool-1",), "drained")
        assert not provider.host_exists("pool-1") and new.namespace not in netns.namespaces()
        assert not netns.link_exists(new.veth)
        assert provider.problems == {"pool-1": []}

        async def gone() -> bool:
            return set(await active_agents(hosts)) == {"agent1", "agent2"}

        await eventually(gone, what="pool-1 to leave the master")
    finally:
        await provider.stop_all()


def test_a_network_in_use_is_refused_and_left_alone(hosts: NetnsCluster, tmp_path: Path) -> None:
    name = f"f{os.getpid() % 10_000_000}"
    foreign = f"aiomesos-{name}-master"
    netns.run(["ip", "netns", "add", foreign])
    try:
        with pytest.raises(ClusterError, match="is in use"):
            asyncio.run(NetnsCluster(tmp_path, name=name, agents=0).start())
        assert foreign in netns.namespaces() and not netns.link_exists(f"am{name}")
        with pytest.raises(ClusterError, match="is in use"):  # nor a running cluster's
            asyncio.run(NetnsCluster(tmp_path, name=hosts.name, agents=0).start())
        assert hosts.master_host.namespace in netns.namespaces()
    finally:
        netns.run(["ip", "netns", "del", foreign])
