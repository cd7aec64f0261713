"""Every client finds and follows the leading master: the driver, the agent's master link, the OperatorClient and
the CLI skip a dead address, go where a standby's refusal points (a real gRPC server that answers as a standby
does: UNAVAILABLE with the leader's address in its trailing metadata), and the driver resubscribes with its
framework id when the master comes back elsewhere. TLS and authentication on, as everywhere."""

from __future__ import annotations

import collections
import json
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest

from aiomesos.v1 import operator_pb2 as opb
from aiomesos.v1 import resources_pb2 as rpb
from scheduler_sdk.driver import DriverError, SchedulerDriver
from scheduler_sdk.etcd import EtcdClient
from scheduler_sdk.local_cluster import Daemon, LocalCluster
from scheduler_sdk.local_etcd import LocalEtcd
from scheduler_sdk.masters import MasterRecord, leader_key, standby_message, standby_metadata
from scheduler_sdk.operator import OperatorClient, OperatorError
from scheduler_sdk.security.config import ClientConfig
from scheduler_sdk.security.local import LocalCertificates
from scheduler_sdk.security.tls import ServerTLS
from tests.e2e.harness import Recorder, concurrently, eventually, framework
from tests.e2e.test_cli import aiomesos

STREAMS = ("/aiomesos.v1.Scheduler/Subscribe", "/aiomesos.v1.AgentRegistry/Attach")
GET_MASTERS = "/aiomesos.v1.Operator/GetMasters"


def attached_to(cluster: LocalCluster, daemon: Daemon) -> list[str]:
    """The masters an agent daemon's log says it attached to, in order."""
    log = (cluster.work_dir / "logs" / f"{daemon.name}.log").read_text()
    return [json.loads(line)["master"] for line in log.splitlines() if '"attached to master"' in line]


async def active_agent_id(master: str, name: str) -> str:
    async with OperatorClient(master) as client:
        agents = (await client.agents()).agents
    return next(a.agent_info.id for a in agents if a.agent_info.hostname == f"{name}.local" and a.active)


def free_port() -> int:
    """A loopback port free now (bound and released), for a master to come back on (`dead_port` is for a dead
    master's address: it stays dead)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Standby(grpc.GenericRpcHandler):
    """A standby master: every call but GetMasters is refused as ours are (UNAVAILABLE, standby_message, the
    leader in `aiomesos-leader`), and counted; GetMasters is answered (any master answers it)."""

    def __init__(self, leader: MasterRecord | None) -> None:
        self.leader = leader
        self.refused: collections.Counter[str] = collections.Counter()
        self.address = ""

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method: str = details.method
        if method == GET_MASTERS:
            return grpc.unary_unary_rpc_method_handler(
                self._masters, response_serializer=opb.GetMastersResponse.SerializeToString
            )

        async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
            self.refused[method.rsplit("/", 1)[1]] += 1
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                standby_message("standby-1", self.leader),
                trailing_metadata=standby_metadata(self.leader),
            )

        if method in STREAMS:
            return grpc.stream_stream_rpc_method_handler(refuse)
        return grpc.unary_unary_rpc_method_handler(refuse)

    async def _masters(self, request: bytes, context: grpc.aio.ServicerContext) -> opb.GetMastersResponse:
        leader = self.leader
        masters = [opb.MasterSummary(master_id="standby-1", address=self.address, hostname="m2", started_at=1.0)]
        if leader is not None:
            masters.insert(
                0,
                opb.MasterSummary(
                    master_id=leader.master_id,
                    address=leader.address,
                    hostname="m1",
                    leader=True,
                    started_at=1.0,
                    elected_at=2.0,
                ),
            )
        return opb.GetMastersResponse(
            masters=masters,
            leader_id=leader.master_id if leader else "",
            registry="etcd",
            etcd_prefix="/aiomesos",
            etcd=[
                opb.EtcdEndpointHealth(endpoint="127.0.0.1:2379", healthy=True, version="3.4.30", is_leader=True),
                opb.EtcdEndpointHealth(endpoint="127.0.0.1:2381", healthy=False, error="connection refused"),
            ],
        )


@pytest.fixture
async def standby(cluster: LocalCluster, cluster_ca: LocalCertificates) -> AsyncIterator[Standby]:
    """A standby on loopback, with a master's certificate from the cluster's CA, naming the cluster's master."""
    handler = Standby(MasterRecord(master_id="leader-1", address=cluster.master_address))
    cert, key = cluster_ca.issue("standby.local", "master")
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_secure_port("127.0.0.1:0", ServerTLS(cert, key, cluster_ca.ca_cert).credentials())
    await server.start()
    handler.address = f"127.0.0.1:{port}"
    try:
        yield handler
    finally:
        await server.stop(0)


async def test_the_driver_skips_a_dead_master_and_follows_a_standby_to_the_leader(
    cluster: LocalCluster, standby: Standby, dead_port: Callable[[], int]
) -> None:
    # The leader is not in the list: only the standby's refusal can lead the driver there.
    masters = f"127.0.0.1:{dead_port()},{standby.address}"
    recorder = Recorder(auto_decline=True)
    async with framework(masters, recorder, name="follower") as driver:
        assert driver.master_address == cluster.master_address
        assert standby.refused["Subscribe"] >= 1
        assert recorder.registrations == [driver.framework_id]


async def test_an_agent_skips_a_dead_master_and_follows_a_standby_to_the_leader(
    cluster: LocalCluster, standby: Standby, dead_port: Callable[[], int]
) -> None:
    daemon = cluster.add_agent(extra_flags=["--master", f"127.0.0.1:{dead_port()},{standby.address}"])
    await cluster.wait_for_agents(3)
    assert standby.refused["Attach"] >= 1
    # (The master counts the agent before the agent has logged its REGISTERED.)
    await eventually(lambda: attached_to(cluster, daemon) == [cluster.master_address], what="attached, logged")


async def test_operator_reads_and_writes_follow_a_standby_to_the_leader(
    cluster: LocalCluster, standby: Standby, dead_port: Callable[[], int]
) -> None:
    async with OperatorClient(f"127.0.0.1:{dead_port()},{standby.address}") as client:
        assert len((await client.agents()).agents) == 2
        await client.update_weights({"eng": 3.0})
        assert (await client.weights())["eng"] == 3.0
        assert client.locator.current == cluster.master_address
    assert standby.refused["GetAgents"] >= 1 and standby.refused["UpdateWeights"] >= 1
    # A standby that knows no leader: a bounded number of tries, and its own words.
    standby.leader = None
    async with OperatorClient(standby.address, tries=3) as client:
        with pytest.raises(OperatorError, match="is a standby and no leader is elected yet"):
            await client.agents()


async def test_the_cli_follows_a_standby_and_lists_the_masters(cluster: LocalCluster, standby: Standby) -> None:
    agents_json, masters_table, masters_json = await concurrently(
        aiomesos("agents", "--master", standby.address, "--json"),
        aiomesos("masters", "--master", standby.address),
        aiomesos("masters", "--master", standby.address, "--json"),
    )
    code, out, err = agents_json
    assert code == 0, err
    assert len(json.loads(out)) == 2
    code, out, err = masters_table
    assert code == 0, err
    assert "leader-1" in out and "LEADER" in out and "standby" in out and cluster.master_address in out
    assert "etcd: 1/2 endpoints healthy" in out and "UNHEALTHY" in out and "connection refused" in out
    code, out, err = masters_json
    assert code == 0, err
    answer = json.loads(out)
    assert answer["leader_id"] == "leader-1" and answer["registry"] == "etcd"
    assert [m["leader"] for m in answer["masters"]] == [True, False]
    assert [e["healthy"] for e in answer["etcd"]] == [True, False]


async def test_the_driver_resubscribes_with_its_id_to_a_master_back_on_another_port(cluster: LocalCluster) -> None:
    old = cluster.master_address
    new_port = free_port()
    recorder = Recorder(auto_decline=True)
    async with framework(f"{old},127.0.0.1:{new_port}", recorder, failover_timeout=60) as driver:
        framework_id = driver.framework_id
        assert driver.master_address == old
        assert cluster.master is not None
        await cluster.master.stop()
        await eventually(lambda: not driver.subscribed.is_set(), what="the driver to notice")
        await cluster.start_master(port=new_port, token_port=free_port())
        new = cluster.master_address
        assert new == f"127.0.0.1:{new_port}" != old
        await eventually(lambda: driver.subscribed.is_set() and driver.master_address == new, what="resubscribed")
        assert driver.framework_id == framework_id
        assert recorder.registrations == [framework_id, framework_id]
        async with OperatorClient(new) as client:
            frameworks = (await client.frameworks()).frameworks
        assert [(f.framework_info.id, f.connected) for f in frameworks] == [(framework_id, True)]


# ----------------------------------------------------------------------------------------- etcd://
@pytest.fixture
def etcd_certs(cluster_ca: LocalCertificates) -> LocalCertificates:
    """This module's etcds trust the session's cluster CA: the clients show etcd the certificates they show
    the masters."""
    return cluster_ca


@pytest.fixture
async def etcd(local_etcd: Callable[[], LocalEtcd]) -> AsyncIterator[tuple[str, EtcdClient]]:
    """A real etcd (client-cert auth) and the `etcd://` URL of a prefix in it, with a client to write records."""
    server = local_etcd()
    writer = EtcdClient(server.endpoints, tls=server.client_tls("writer.local", "master"))
    try:
        yield f"etcd://{','.join(server.endpoints)}/clients-test", writer
    finally:
        await writer.close()


async def write_leader(writer: EtcdClient, address: str) -> None:
    record = MasterRecord(master_id="leader-1", address=address, started_at=1.0, elected_at=2.0)
    await writer.put(leader_key("/clients-test"), record.encode())


async def test_every_client_reads_the_leader_from_etcd_and_follows_its_record(
    cluster: LocalCluster, etcd: tuple[str, EtcdClient]
) -> None:
    url, writer = etcd
    async with OperatorClient(url, tries=2) as client:
        with pytest.raises(OperatorError, match="etcd names no leading master"):
            await client.agents()
    await write_leader(writer, cluster.master_address)
    async with OperatorClient(url) as client:
        assert len((await client.agents()).agents) == 2
    code, out, err = await aiomesos("agents", "--master", url, "--json")
    assert code == 0, err
    assert len(json.loads(out)) == 2
    agent = cluster.add_agent(extra_flags=["--master", url])
    await cluster.wait_for_agents(3)
    await eventually(lambda: attached_to(cluster, agent) == [cluster.master_address], what="attached, logged")
    agent_id = await active_agent_id(url, agent.name)

    recorder = Recorder(auto_decline=True)
    async with framework(url, recorder, failover_timeout=60) as driver:
        framework_id = driver.framework_id
        assert driver.master_address == cluster.master_address
        # The master comes back on another port, and etcd's record says so.
        assert cluster.master is not None
        await cluster.master.stop()
        await eventually(lambda: not driver.subscribed.is_set(), what="the driver to notice")
        await cluster.start_master(port=free_port(), token_port=free_port())
        await write_leader(writer, cluster.master_address)
        await eventually(
            lambda: driver.subscribed.is_set() and driver.master_address == cluster.master_address,
            what="resubscribed to the master etcd names",
        )
        assert driver.framework_id == framework_id
        assert recorder.registrations == [framework_id, framework_id]
        # The agent that reads etcd re-attaches to it too (the others were given the old address).
        await eventually(lambda: attached_to(cluster, agent)[-1] == cluster.master_address, what="re-attached")
        assert len(attached_to(cluster, agent)) == 2
        assert await active_agent_id(url, agent.name) == agent_id  # the same agent, its id kept


async def test_a_token_only_client_is_told_it_cannot_read_a_client_cert_etcd(
    cluster: LocalCluster, cluster_ca: LocalCertificates, etcd: tuple[str, EtcdClient]
) -> None:
    url, writer = etcd
    await write_leader(writer, cluster.master_address)
    token_only = ClientConfig(ca=cluster_ca.ca_cert, token="not-needed-for-etcd")
    async with OperatorClient(url, config=token_only, tries=2) as client:
        with pytest.raises(OperatorError, match="bearer token but no certificate") as e:
            await client.agents()
    assert "HOST:PORT,HOST:PORT" in str(e.value)


async def test_max_reconnect_attempts_counts_rounds_of_every_master(dead_port: Callable[[], int]) -> None:
    dead = [f"127.0.0.1:{dead_port()}" for _ in range(3)]
    driver = SchedulerDriver(
        ",".join(dead),
        rpb.FrameworkInfo(name="gives-up"),
        Recorder(),
        backoff_min=0.01,
        backoff_max=0.02,
        max_reconnect_attempts=2,
        config=ClientConfig(),
    )
    tried: list[str] = []
    candidate = driver.locator.candidate

    async def recording() -> str:
        tried.append(await candidate())
        return tried[-1]

    driver.locator.candidate = recording  # type: ignore[method-assign]
    with pytest.raises(DriverError, match=f"cannot reach the master at {dead[2]}"):
        await driver.run()
    assert tried == dead * 3  # three rounds: the first try and two reconnect attempts, each of every master
