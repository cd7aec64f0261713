"""gRPC health and reflection on a master's server over real gRPC on loopback: the services follow the seat (a
standby's NOT_SERVING, a term's SERVING) while the health service itself answers at all times, routed to no
term; reflection lists the services; a stopping daemon is NOT_SERVING everywhere."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from aiomesos.v1 import operator_pb2, operator_pb2_grpc
from mesos_master.api.standby import Seat, routed
from scheduler_sdk._daemon.grpc_health import add_health_and_reflection, service_names

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
OPERATOR = "aiomesos.v1.Operator"


@pytest.fixture
async def served() -> AsyncIterator[tuple[Seat, Any, grpc.aio.Channel]]:
    seat = Seat("m1")
    server = grpc.aio.server()
    operator_pb2_grpc.add_OperatorServicer_to_server(routed(operator_pb2_grpc.OperatorServicer, OPERATOR, seat), server)
    health = add_health_and_reflection(server, [OPERATOR], serving=False)
    seat.on_change = health.set_serving
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield seat, health, channel
    finally:
        await channel.close()
        await server.stop(None)


async def check(channel: grpc.aio.Channel, service: str) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return int(reply.status)


async def eventually_status(channel: grpc.aio.Channel, service: str, wanted: int) -> None:
    """set_serving hands the change to the servicer as a task: it lands within a turn or two of the loop."""
    for _ in range(100):
        if await check(channel, service) == wanted:
            return
    raise AssertionError(f"{service!r} never became {wanted}")


async def test_a_standby_is_alive_but_its_services_are_not_serving(served: Any) -> None:
    seat, _health, channel = served
    assert await check(channel, "") == SERVING
    assert await check(channel, OPERATOR) == NOT_SERVING
    seat.begin({OPERATOR: object()})
    await eventually_status(channel, OPERATOR, SERVING)
    seat.end()  # the term is lost: a standby again
    await eventually_status(channel, OPERATOR, NOT_SERVING)
    assert await check(channel, "") == SERVING


async def test_a_stopping_daemon_is_not_serving_anywhere(served: Any) -> None:
    seat, health, channel = served
    seat.begin({OPERATOR: object()})
    await eventually_status(channel, OPERATOR, SERVING)
    await health.stopping()
    assert await check(channel, "") == NOT_SERVING
    assert await check(channel, OPERATOR) == NOT_SERVING


async def test_reflection_lists_the_services_and_describes_them(served: Any) -> None:
    _seat, _health, channel = served
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=OPERATOR),
    ]
    responses = [r async for r in stub.ServerReflectionInfo(iter(requests), timeout=5)]
    listed = {s.name for s in responses[0].list_services_response.service}
    assert listed == {OPERATOR, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}
    assert responses[1].file_descriptor_response.file_descriptor_proto  # what grpcurl needs to build calls


def test_service_names_come_from_the_proto_files() -> None:
    assert service_names(operator_pb2.DESCRIPTOR) == [OPERATOR]
