"""Operator.Subscribe over a real gRPC server on loopback, routed as the daemon routes it, on a real core and
dispatcher: the snapshot then batches (read through OperatorClient.subscribe), heartbeats, a slow watcher
ended RESOURCE_EXHAUSTED, the end of a term UNAVAILABLE, a standby's refusal."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from aiomesos.v1 import agent_pb2, operator_pb2_grpc
from aiomesos.v1 import events_pb2 as epb
from aiomesos.v1 import resources_pb2 as rpb
from mesos_master.allocator import HierarchicalAllocator
from mesos_master.api.dispatch import Dispatcher
from mesos_master.api.operator import OperatorService
from mesos_master.api.standby import Seat, routed
from mesos_master.cluster import Master
from mesos_master.registry.memory import MemoryRegistry
from scheduler_sdk._daemon.guard import Guard
from scheduler_sdk.operator import EventStreamError, OperatorClient
from scheduler_sdk.resources import Resources
from scheduler_sdk.security.acls import Authorizer
from scheduler_sdk.security.config import ClientConfig

E = epb.OperatorEvent


@dataclass
class Served:
    master: Master
    dispatcher: Dispatcher
    service: OperatorService
    seat: Seat
    address: str
    stub: operator_pb2_grpc.OperatorStub

    def client(self) -> OperatorClient:
        return OperatorClient(self.address, config=ClientConfig(), tries=2)


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    master = Master("M", HierarchicalAllocator(allocation_interval=1.0))
    dispatcher = Dispatcher(master, MemoryRegistry())
    service = OperatorService(dispatcher, Guard(Authorizer(), secure=False), ClientConfig())
    seat = Seat("M")
    seat.begin({"aiomesos.v1.Operator": service}, events=dispatcher.hub)
    server = grpc.aio.server()
    operator_pb2_grpc.add_OperatorServicer_to_server(
        routed(operator_pb2_grpc.OperatorServicer, "aiomesos.v1.Operator", seat), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Served(master, dispatcher, service, seat, f"127.0.0.1:{port}", operator_pb2_grpc.OperatorStub(channel))
    finally:
        await channel.close()
        await server.stop(None)


def register(master: Master, hostname: str) -> str:
    info = rpb.AgentInfo(hostname=hostname, resources=Resources.parse("cpus:2;mem:512").to_proto())
    return master.register_agent(agent_pb2.AgentMessage.Register(agent_info=info))


async def test_snapshot_then_batches_through_the_sdk(served: Served) -> None:
    register(served.master, "h1")
    async with served.client() as client:
        stream = client.subscribe()
        async with asyncio.timeout(5):
            [snapshot] = await anext(stream)
            assert snapshot.type == E.SNAPSHOT and [a.agent_info.hostname for a in snapshot.snapshot.agents] == ["h1"]
            register(served.master, "h2")
            served.master.set_weights({"eng": 3.0})
            served.dispatcher.changed()
            batch = await anext(stream)
        assert [E.Type.Name(e.type) for e in batch] == ["AGENT_ADDED", "WEIGHTS_UPDATED"]  # one drain, one batch
        assert batch[0].agent.agent_info.hostname == "h2" and dict(batch[1].weights) == {"eng": 3.0}
        await stream.aclose()
    await _until(lambda: served.dispatcher.hub.watchers == 0)  # the watcher went away: the master forgot it


async def test_a_big_snapshot_is_paged_and_joined(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    import mesos_master.api.events as wire

    monkeypatch.setattr(wire, "snapshot_pages", _small_pages)
    for n in range(30):
        register(served.master, f"host-{n:02}")
    async with served.client() as client:
        stream = client.subscribe()
        async with asyncio.timeout(5):
            [snapshot] = await anext(stream)
        await stream.aclose()
    agents = snapshot.snapshot.agents
    assert sorted(a.agent_info.hostname for a in agents) == [f"host-{n:02}" for n in range(30)]
    assert [a.agent_info.id for a in agents] == sorted(served.master.agents)  # in order, each once
    assert not snapshot.snapshot.more


def _small_pages(snapshot: epb.EventSnapshot) -> list[epb.EventSnapshot]:
    from mesos_master.events import snapshot_pages

    pages = snapshot_pages(snapshot, max_bytes=500)
    assert len(pages) > 3
    return pages


async def test_an_idle_stream_has_heartbeats(served: Served) -> None:
    served.service.heartbeat_seconds = 0.1
    call = served.stub.Subscribe(epb.SubscribeRequest())
    async with asyncio.timeout(5):
        first = await call.read()
        heartbeat = await call.read()
    call.cancel()
    assert first.events[0].type == E.SNAPSHOT
    assert len(heartbeat.events) == 0


async def test_a_slow_watcher_is_ended_resource_exhausted(served: Served) -> None:
    served.dispatcher.hub.max_pending = 10
    async with served.client() as client:
        stream = client.subscribe()
        async with asyncio.timeout(5):
            await anext(stream)
            for n in range(20):  # one drain of 20 events: more than it may be behind
                served.master.set_weights({f"r{n}": 2.0})
            await served.dispatcher.flush()
            with pytest.raises(EventStreamError) as ended:
                await anext(stream)
    assert ended.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "more than 10 events behind" in str(ended.value)


async def test_the_end_of_a_term_ends_the_stream_unavailable_and_a_standby_refuses(served: Served) -> None:
    call = served.stub.Subscribe(epb.SubscribeRequest())
    async with asyncio.timeout(5):
        await call.read()
        served.seat.end()
        served.dispatcher.stop("this master is no longer the leader")
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await call.read()
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "no longer the leader" in (ended.value.details() or "")
    refused = served.stub.Subscribe(epb.SubscribeRequest())
    with pytest.raises(grpc.aio.AioRpcError) as standby:
        await refused.read()
    assert standby.value.code() == grpc.StatusCode.UNAVAILABLE and "standby" in (standby.value.details() or "")


async def _until(check: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


async def test_reconnect_follows_into_the_next_term_with_a_new_snapshot(served: Served) -> None:
    register(served.master, "old")
    async with served.client() as client:
        stream = client.subscribe(reconnect=True)
        async with asyncio.timeout(10):
            [first] = await anext(stream)
            assert [a.agent_info.hostname for a in first.snapshot.agents] == ["old"]
            served.seat.end()
            served.dispatcher.stop("this master is no longer the leader")
            # The next term: a core of its own (as a new leader builds from the registry), the same address.
            master = Master("M2", HierarchicalAllocator(allocation_interval=1.0))
            register(master, "new")
            dispatcher = Dispatcher(master, MemoryRegistry())
            service = OperatorService(dispatcher, Guard(Authorizer(), secure=False), ClientConfig())
            served.seat.begin({"aiomesos.v1.Operator": service}, events=dispatcher.hub)
            [again] = await anext(stream)
        await stream.aclose()
    assert again.type == E.SNAPSHOT and again.snapshot.master_id == "M2"
    assert [a.agent_info.hostname for a in again.snapshot.agents] == ["new"]
