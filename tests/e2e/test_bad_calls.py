"""A call with an enum value the master does not know is an error for that call, never the end of the stream
(proto3 keeps unknown values, and naming one used to raise inside the error path: UNKNOWN, subscription gone)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import scheduler_pb2 as spb
from aiomesos.v1 import scheduler_pb2_grpc
from scheduler_sdk.local_cluster import LocalCluster
from tests.e2e.harness import master_channel, next_event

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]
Call = spb.Call
Event = spb.Event


@pytest.fixture
async def master(tmp_path: Path) -> AsyncIterator[str]:
    cluster = LocalCluster(tmp_path, agents=0, master_flags=["--heartbeat-interval", "5"])
    try:
        await cluster.start()
        yield cluster.master_address
    finally:
        assert await cluster.stop() == []


def subscribe_call() -> spb.Call:
    return Call(type=Call.SUBSCRIBE, subscribe=Call.Subscribe(framework_info=rpb.FrameworkInfo(name="bad-calls")))


async def test_an_unknown_call_type_is_an_error_event_and_the_stream_goes_on(master: str) -> None:
    async with master_channel(master) as channel:
        call = scheduler_pb2_grpc.SchedulerStub(channel).Subscribe()
        await call.write(subscribe_call())
        framework_id = (await next_event(call, Event.SUBSCRIBED)).subscribed.framework_id
        for bad in (999, 77):
            await call.write(Call(framework_id=framework_id, type=bad))  # type: ignore[arg-type]
            error = await next_event(call, Event.ERROR)
            assert error.error.message == f"unsupported call type unknown ({bad})"
        # Still subscribed: a good call is answered as ever.
        await call.write(Call(framework_id=framework_id, type=Call.SUBSCRIBE, subscribe=subscribe_call().subscribe))
        error = await next_event(call, Event.ERROR)
        assert "SUBSCRIBE is only valid as the first call" in error.error.message
        await call.done_writing()


async def test_an_unknown_first_call_type_is_invalid_argument(master: str) -> None:
    async with master_channel(master) as channel:
        call = scheduler_pb2_grpc.SchedulerStub(channel).Subscribe()
        await call.write(Call(type=999))  # type: ignore[arg-type]
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await asyncio.wait_for(call.read(), 10)
        assert ended.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert ended.value.details() == "the first call on a subscription must be SUBSCRIBE, not unknown (999)"
