"""Issue 9's bad-input attacks on a real master: each is refused with INVALID_ARGUMENT (or an ERROR event, or
NOT_FOUND for an unknown id) whose message names the field and stays short, never RESOURCE_EXHAUSTED or UNKNOWN;
nothing is stored, and the master answers as ever afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from aiomesos.v1 import agent_pb2, agent_pb2_grpc, operator_pb2_grpc, scheduler_pb2_grpc
from aiomesos.v1 import operator_pb2 as opb
from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import scheduler_pb2 as spb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.operator import OperatorClient
from scheduler_sdk.security.local import LocalCertificates
from tests.conftest import module_tmp_path
from tests.e2e.harness import master_channel, next_event

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]
Call = spb.Call
Event = spb.Event
Capability = rpb.FrameworkInfo.Capability
LONG = 10_000  # characters: over any id, role or name bound, and its echo would overflow a client's metadata
SHORT = 300  # characters: what a refusal's message may be at most


def _master_only(work_dir: Path) -> LocalCluster:
    return LocalCluster(work_dir, agents=0, master_flags=["--heartbeat-interval", "5"])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, cluster_ca: LocalCertificates) -> Iterator[LocalCluster]:
    """A master (no agents) for the module's tests that store nothing on it (every bad input is refused) and
    leave it running; the test that restarts it has a master of its own."""
    cluster = _master_only(module_tmp_path(tmp_path_factory, "bad-input"))
    try:
        asyncio.run(cluster.start())
        yield cluster
    finally:
        assert asyncio.run(cluster.stop()) == []


@pytest.fixture
async def own_cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    cluster = _master_only(tmp_path)
    try:
        await cluster.start()
        yield cluster
    finally:
        assert await cluster.stop() == []


def subscribe(**info: object) -> spb.Call:
    framework_info = rpb.FrameworkInfo(**{"name": "bad-input", **info})  # type: ignore[arg-type]
    return Call(type=Call.SUBSCRIBE, subscribe=Call.Subscribe(framework_info=framework_info))


async def refused_subscription(address: str, first: spb.Call) -> grpc.aio.AioRpcError:
    async with master_channel(address) as channel:
        call = scheduler_pb2_grpc.SchedulerStub(channel).Subscribe()
        await call.write(first)
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await asyncio.wait_for(call.read(), 30)
        return ended.value


def assert_refused(error: grpc.aio.AioRpcError, code: grpc.StatusCode, *fragments: str) -> None:
    assert error.code() == code, (error.code(), error.details()[:SHORT])
    details = error.details()
    assert len(details) < SHORT, details
    for fragment in fragments:
        assert fragment in details, details


@pytest.mark.parametrize(
    ("info", "fragment"),
    [
        ({"id": "f" * LONG}, f"framework_info.id: {LONG} characters, at most 255"),
        ({"roles": ["r" * LONG]}, f"framework_info.roles[0]: {LONG} characters, at most 255"),
        ({"roles": ["a b" * LONG]}, f"framework_info.roles[0]: {3 * LONG} characters"),
        ({"id": "f/" * LONG}, "framework_info.id"),
        ({"name": "n" * LONG}, f"framework_info.name: {LONG} characters, at most 1024"),
    ],
)
async def test_a_subscription_with_a_huge_id_role_or_name_is_invalid_argument_with_a_short_message(
    cluster: LocalCluster, info: dict[str, object], fragment: str
) -> None:
    error = await refused_subscription(cluster.master_address, subscribe(**info))
    assert_refused(error, grpc.StatusCode.INVALID_ARGUMENT, "SUBSCRIBE rejected: ", fragment)


async def test_25_mb_framework_names_are_refused_and_get_frameworks_still_works(own_cluster: LocalCluster) -> None:
    cluster = own_cluster
    for _ in range(3):
        error = await refused_subscription(cluster.master_address, subscribe(name="n" * 25_000_000))
        assert_refused(error, grpc.StatusCode.INVALID_ARGUMENT, "framework_info.name: 25000000 characters")
    async with OperatorClient(cluster.master_address) as client:
        assert not (await client.frameworks()).frameworks
    await cluster.restart_master()  # nothing of them was stored
    async with OperatorClient(cluster.master_address) as client:
        frameworks = await client.frameworks()
        assert not frameworks.frameworks and not frameworks.completed_frameworks
        assert (await client.state()).master_id


async def test_calls_with_huge_ids_get_short_error_events_and_the_stream_goes_on(cluster: LocalCluster) -> None:
    async with master_channel(cluster.master_address) as channel:
        call = scheduler_pb2_grpc.SchedulerStub(channel).Subscribe()
        await call.write(subscribe(capabilities=[Capability(type=77), Capability(type=Capability.PARTITION_AWARE)]))
        framework_id = (await next_event(call, Event.SUBSCRIBED)).subscribed.framework_id
        launch = spb.Offer_Operation(
            type=spb.Offer_Operation.LAUNCH,
            launch=spb.Offer_Operation.Launch(task_infos=[tpb.TaskInfo(task_id="t" * LONG)]),
        )
        bad_calls = [
            (
                Call(type=Call.ACCEPT, accept=Call.Accept(offer_ids=["O1"], operations=[launch])),
                f"ACCEPT rejected: operations[0].launch.task_infos[0].task_id: {LONG} characters, at most 255",
            ),
            (
                Call(type=Call.KILL, kill=Call.Kill(task_id="t" * LONG)),
                f"KILL rejected: kill.task_id: {LONG} characters, at most 255",
            ),
            (
                Call(type=Call.REVIVE, revive=Call.Revive(roles=["r" * LONG])),
                f"REVIVE rejected: revive.roles[0]: {LONG} characters, at most 255",
            ),
            (Call(framework_id="f" * LONG, type=Call.REVIVE), f"…({LONG} characters), but this stream belongs to"),
        ]
        for bad, fragment in bad_calls:
            if not bad.framework_id:
                bad.framework_id = framework_id
            await call.write(bad)
            message = (await next_event(call, Event.ERROR)).error.message
            assert fragment in message and len(message) < SHORT, message
        # Still subscribed, and the unknown capability was ignored, not stored.
        await call.write(Call(framework_id=framework_id, type=Call.SUBSCRIBE, subscribe=subscribe().subscribe))
        assert "SUBSCRIBE is only valid as the first call" in (await next_event(call, Event.ERROR)).error.message
        async with OperatorClient(cluster.master_address) as client:
            [summary] = (await client.frameworks()).frameworks
        assert [c.type for c in summary.framework_info.capabilities] == [Capability.PARTITION_AWARE]
        # Leave no stream open for the master's shutdown: tear down, and read until the master ends the stream.
        await call.write(Call(framework_id=framework_id, type=Call.TEARDOWN))
        await call.done_writing()
        with contextlib.suppress(grpc.aio.AioRpcError):
            while await asyncio.wait_for(call.read(), 10) is not grpc.aio.EOF:
                pass


async def test_inf_nan_and_absurd_weights_are_invalid_argument_naming_the_role(cluster: LocalCluster) -> None:
    async with master_channel(cluster.master_address) as channel:
        stub = operator_pb2_grpc.OperatorStub(channel)
        for weight in (math.inf, math.nan, -1.0, 0.0, 1e300):
            request = opb.UpdateWeightsRequest(weights=[opb.RoleWeight(role="eng", weight=weight)])
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.UpdateWeights(request, timeout=10)
            assert_refused(refused.value, grpc.StatusCode.INVALID_ARGUMENT, "weight of role 'eng'", "must be a number")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            role = opb.RoleWeight(role="r" * LONG, weight=1.0)
            await stub.UpdateWeights(opb.UpdateWeightsRequest(weights=[role]), timeout=10)
        assert_refused(refused.value, grpc.StatusCode.INVALID_ARGUMENT, f"{LONG} characters, at most 255")
        await stub.UpdateWeights(opb.UpdateWeightsRequest(weights=[opb.RoleWeight(role="eng", weight=2.0)]))
        weights = await stub.GetWeights(opb.GetWeightsRequest(), timeout=10)
        assert {w.role: w.weight for w in weights.weights} == {"eng": 2.0}


def ports_to_the_end() -> list[rpb.Resource]:
    return [
        rpb.Resource(
            name="ports",
            role="eng",
            type=rpb.Value.RANGES,
            ranges=rpb.Value.Ranges(range=[rpb.Value.Range(begin=31000, end=2**64 - 1)]),
        )
    ]


async def test_a_port_range_to_2_64_is_refused_from_an_agent_and_an_operator(
    cluster: LocalCluster, cluster_ca: LocalCertificates
) -> None:
    async with master_channel(cluster.master_address) as channel:
        operator = operator_pb2_grpc.OperatorStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await operator.Reserve(opb.ReserveRequest(agent_id="S1", resources=ports_to_the_end()), timeout=10)
        assert_refused(refused.value, grpc.StatusCode.INVALID_ARGUMENT, "for 'ports' goes past 65535")

    # An agent (a certificate of the cluster's CA for agent/fake) registering with a range past 65535.
    agent_config = cluster_ca.client_config(cluster.master_address, name="fake", role="agent")
    async with master_channel(cluster.master_address, agent_config) as channel:
        attach = agent_pb2_grpc.AgentRegistryStub(channel).Attach()
        cpus = rpb.Resource(name="cpus", type=rpb.Value.SCALAR, scalar=rpb.Value.Scalar(value=1))
        info = rpb.AgentInfo(hostname="fake", resources=[cpus, *ports_to_the_end()])
        register = agent_pb2.AgentMessage.Register(agent_info=info)
        await attach.write(agent_pb2.AgentMessage(type=agent_pb2.AgentMessage.REGISTER, register=register))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await asyncio.wait_for(attach.read(), 10)
        assert_refused(refused.value, grpc.StatusCode.INVALID_ARGUMENT, "REGISTER rejected: ", "goes past 65535")
    async with OperatorClient(cluster.master_address) as client:
        assert not (await client.agents()).agents


async def test_operator_calls_naming_huge_ids_are_answered_short(cluster: LocalCluster) -> None:
    async with master_channel(cluster.master_address) as channel:
        stub = operator_pb2_grpc.OperatorStub(channel)
        quoted = f"…({LONG} characters)"
        calls = [
            (stub.Teardown, opb.TeardownRequest(framework_id="f" * LONG), grpc.StatusCode.NOT_FOUND, quoted),
            (stub.GetTasks, opb.GetTasksRequest(framework_id="f" * LONG), grpc.StatusCode.NOT_FOUND, quoted),
            (stub.RemoveQuota, opb.RemoveQuotaRequest(role="r" * LONG), grpc.StatusCode.NOT_FOUND, quoted),
            (
                stub.SetQuota,
                opb.SetQuotaRequest(quota=opb.QuotaInfo(role="r" * LONG)),
                grpc.StatusCode.INVALID_ARGUMENT,
                f"role: {LONG} characters, at most 255",
            ),
            (
                stub.SetQuota,
                opb.SetQuotaRequest(quota=opb.QuotaInfo(role="eng", guarantee=[rpb.Resource(name="cpus")] * 300)),
                grpc.StatusCode.INVALID_ARGUMENT,
                "quota of 'eng': quota.guarantee: 300 entries, at most 256",
            ),
            (
                stub.Unreserve,
                opb.UnreserveRequest(agent_id="S1", resources=[rpb.Resource(name="c" * LONG)]),
                grpc.StatusCode.INVALID_ARGUMENT,
                f"resources[0].name: {LONG} characters, at most 255",
            ),
        ]
        for method, request, code, fragment in calls:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await method(request, timeout=10)  # type: ignore[operator]
            assert_refused(refused.value, code, fragment)
