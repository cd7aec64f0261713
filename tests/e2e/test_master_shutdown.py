"""SIGTERM ends the master at once, whatever its streams are doing: every Subscribe and Attach stream still open
ends UNAVAILABLE "the master is stopping" (so that the peer comes back) and the master exits 0 within seconds.

It used to hang at about one stop in ten, until LocalCluster's SIGKILL 15 s later: a stream that ended just as
SIGTERM arrived (a framework gone, its channel closed) set the dispatcher's `allocation_wanted`, and Python 3.11's
`asyncio.wait_for` in the allocation loop, cancelled in that very loop turn, returned the event's result instead
of raising; the loop ran on, and the master's TaskGroup waited for it for ever."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest

from aiomesos.v1 import agent_pb2, agent_pb2_grpc, scheduler_pb2_grpc
from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import scheduler_pb2 as spb
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.security.local import LocalCertificates
from tests.e2e.harness import master_channel

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]
Call = spb.Call
AgentMessage = agent_pb2.AgentMessage

#: The race needs a stream that ends as SIGTERM arrives: without the fix nearly every round hung.
ROUNDS = 4
STOP_WITHIN = 4.0
STOPPING = ": the master is stopping"


async def subscribed(channel: grpc.aio.Channel) -> grpc.aio.StreamStreamCall:
    call = scheduler_pb2_grpc.SchedulerStub(channel).Subscribe()
    info = rpb.FrameworkInfo(name="shutdown")
    await call.write(Call(type=Call.SUBSCRIBE, subscribe=Call.Subscribe(framework_info=info)))
    event = await asyncio.wait_for(call.read(), 10)
    assert event is not grpc.aio.EOF and event.type == spb.Event.SUBSCRIBED, event
    return call


async def attached(channel: grpc.aio.Channel) -> grpc.aio.StreamStreamCall:
    """A fake agent's stream, REGISTERED."""
    call = agent_pb2_grpc.AgentRegistryStub(channel).Attach()
    cpus = rpb.Resource(name="cpus", type=rpb.Value.SCALAR, scalar=rpb.Value.Scalar(value=1))
    register = AgentMessage.Register(agent_info=rpb.AgentInfo(hostname="fake", resources=[cpus]))
    await call.write(AgentMessage(type=AgentMessage.REGISTER, register=register))
    message = await asyncio.wait_for(call.read(), 10)
    assert message is not grpc.aio.EOF and message.type == agent_pb2.MasterMessage.REGISTERED, message
    return call


async def ending(call: grpc.aio.StreamStreamCall) -> tuple[grpc.StatusCode, str]:
    """Read what is left of a stream; its final status."""
    try:
        while await asyncio.wait_for(call.read(), 10) is not grpc.aio.EOF:
            pass
    except grpc.aio.AioRpcError as e:
        return e.code(), e.details() or ""
    return await call.code(), await call.details()


async def test_sigterm_ends_every_stream_and_the_master_at_once(tmp_path: Path, cluster_ca: LocalCertificates) -> None:
    cluster = LocalCluster(tmp_path, agents=0, master_flags=["--heartbeat-interval", "5"])
    try:
        await cluster.start()
        for round_ in range(ROUNDS):
            if round_:
                await cluster.start_master()
            address = cluster.master_address
            agent_config = cluster_ca.client_config(address, name="fake", role="agent")
            async with master_channel(address) as channel, master_channel(address, agent_config) as agent_channel:
                idle = await subscribed(channel)  # SUBSCRIBED, the client reads nothing
                reading = asyncio.create_task(ending(await subscribed(channel)))  # the client reads on
                half_closed = await subscribed(channel)
                await half_closed.done_writing()
                attach = await attached(agent_channel)
                async with master_channel(address) as gone_channel:  # a framework gone just before SIGTERM
                    gone = await subscribed(gone_channel)
                    await gone.done_writing()
                assert cluster.master is not None
                started = time.monotonic()
                status = await cluster.master.stop(timeout=STOP_WITHIN)
                took = time.monotonic() - started
                assert status == 0, (
                    f"round {round_}: SIGTERM did not stop the master within {STOP_WITHIN} s (status {status}):\n"
                    f"{cluster.master.log_tail(5)}"
                )
                for what, (code, details) in [
                    ("idle", await ending(idle)),
                    ("reading", await reading),
                    ("attach", await ending(attach)),
                ]:
                    assert (code, details.endswith(STOPPING)) == (grpc.StatusCode.UNAVAILABLE, True), (
                        f"round {round_}: the {what} stream ended {code.name} {details!r}"
                    )
                # The client's half-close may reach the master before SIGTERM (OK: the framework left) or not.
                code, details = await ending(half_closed)
                assert code == grpc.StatusCode.OK or (code, details.endswith(STOPPING)) == (
                    grpc.StatusCode.UNAVAILABLE,
                    True,
                ), f"round {round_}: the half-closed stream ended {code.name} {details!r}"
                assert took < STOP_WITHIN
            assert "master stopped" in cluster.master.log_tail(1)
    finally:
        problems = await cluster.stop()
    assert problems == []
