"""A master's routed services over a real gRPC server on loopback: while it leads a term, calls go to that term's
servicers; while it does not, they are refused UNAVAILABLE naming the leader (message and `aiomesos-leader`
metadata, which clients follow); `GetMasters` is answered either way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from aiomesos.v1 import operator_pb2 as opb
from aiomesos.v1 import operator_pb2_grpc
from mesos_master.api.standby import Seat, routed
from scheduler_sdk.masters import MasterRecord, leader_hint

OTHER = MasterRecord(master_id="m2", address="127.0.0.1:6060", hostname="two", token_address="127.0.0.1:6062")


class Term:
    """The servicers of one term (what the daemon binds to its core): here, weights only."""

    def __init__(self, weight: float) -> None:
        self.weight = weight

    async def GetWeights(self, request: Any, context: Any) -> opb.GetWeightsResponse:
        return opb.GetWeightsResponse(weights=[opb.RoleWeight(role="eng", weight=self.weight)])


@pytest.fixture
async def served() -> AsyncIterator[tuple[Seat, operator_pb2_grpc.OperatorStub, list[MasterRecord | None]]]:
    leader: list[MasterRecord | None] = [OTHER]

    async def masters() -> opb.GetMastersResponse:
        return opb.GetMastersResponse(registry="etcd", leader_id="m2", masters=[opb.MasterSummary(master_id="m2")])

    seat = Seat("m1", lambda: leader[0], masters)
    server = grpc.aio.server()
    operator_pb2_grpc.add_OperatorServicer_to_server(
        routed(operator_pb2_grpc.OperatorServicer, "aiomesos.v1.Operator", seat), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield seat, operator_pb2_grpc.OperatorStub(channel), leader
    finally:
        await channel.close()
        await server.stop(None)


async def test_a_standby_refuses_naming_the_leader(served: Any) -> None:
    _seat, stub, _ = served
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.GetWeights(opb.GetWeightsRequest())
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert refused.value.details() == "master m1 is a standby: the leader is master m2 at 127.0.0.1:6060"
    assert leader_hint(refused.value) == "127.0.0.1:6060"
    assert leader_hint(refused.value, token=True) == "127.0.0.1:6062"  # for a client with a token, no certificate


async def test_with_no_leader_known_the_refusal_says_so_and_names_no_one(served: Any) -> None:
    _seat, stub, leader = served
    leader[0] = MasterRecord(master_id="m1", address="127.0.0.1:1")  # itself, between terms: not a redirect
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.GetWeights(opb.GetWeightsRequest())
    assert "no leader is elected yet" in refused.value.details()
    assert leader_hint(refused.value) is None


async def test_calls_go_to_the_term_led_and_stop_when_it_ends(served: Any) -> None:
    seat, stub, _ = served
    seat.begin({"aiomesos.v1.Operator": Term(2.0)})
    assert (await stub.GetWeights(opb.GetWeightsRequest())).weights[0].weight == 2.0
    seat.end()
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.GetWeights(opb.GetWeightsRequest())
    seat.begin({"aiomesos.v1.Operator": Term(3.0)})  # a new term, a new core
    assert (await stub.GetWeights(opb.GetWeightsRequest())).weights[0].weight == 3.0


async def test_every_master_answers_get_masters(served: Any) -> None:
    _seat, stub, _ = served
    answer = await stub.GetMasters(opb.GetMastersRequest())
    assert answer.registry == "etcd" and answer.leader_id == "m2"


async def test_a_stopping_master_says_so(served: Any) -> None:
    seat, stub, _ = served
    seat.closing = True
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.GetWeights(opb.GetWeightsRequest())
    assert refused.value.details() == "the master is stopping"
