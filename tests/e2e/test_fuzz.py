"""Fuzzing every RPC of the master (Scheduler.Subscribe, AgentRegistry.Attach, every Operator call) and of the
agent (GetState, GetContainers, ListFiles, ReadFile) against real daemons, started once for the module.

Requests are well-typed random messages drawn from the descriptors (fields set or not, every scalar type with its
edge values, unknown enum values, nested messages a few levels deep), a valid first message mutated for the
streams, and raw random bytes. Whatever comes in, a daemon answers with a status that says what was wrong: never
UNKNOWN or INTERNAL (every code seen is recorded and printed at the end of the module). After each test the
daemons are alive, answer GetState within 100 ms, and hold no more file descriptors nor memory than a bound over
what they held at the start. Bounded in time for CI: a few dozen examples a call, no deadline per example.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import psutil
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiomesos.v1 import agent_pb2, agent_pb2_grpc, operator_pb2, operator_pb2_grpc, scheduler_pb2
from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.channels import CHANNEL_OPTIONS
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.resources import Resources
from scheduler_sdk.security.config import ClientConfig
from scheduler_sdk.security.tls import MASTER_SERVER_NAME, channel_credentials
from tests.e2e.conftest import FAST_AGENT, FAST_MASTER
from tests.e2e.harness import Recorder, agents, framework, task

pytestmark = [pytest.mark.e2e, pytest.mark.cgroups]
M = TypeVar("M", bound=Message)


def channel(address: str, config: ClientConfig, *, master: bool = False) -> grpc.Channel:
    """Every channel this suite opens to a daemon (the one place that knows how to reach the cluster): TLS with
    the operator's certificate, as the SDK's channels (scheduler_sdk.channels.open_channel) but synchronous."""
    options = [*CHANNEL_OPTIONS, *([("grpc.ssl_target_name_override", MASTER_SERVER_NAME)] if master else [])]
    return grpc.secure_channel(address, channel_credentials(config), options=options)


#: Statuses that never answer client input: the server did not know what went wrong.
SERVER_FAULTS = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
#: A unary call, or a stream the fuzz half-closes, that takes longer than this is a server that hangs.
CALL_TIMEOUT = 10.0
GETSTATE_MS = 100.0
FD_GROWTH = 16
RSS_GROWTH = 64 << 20
#: Examples a call: a few dozen in CI; more for a deeper hunt (AIOMESOS_FUZZ_EXAMPLES=2000).
EXAMPLES = int(os.environ.get("AIOMESOS_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

MASTER_SERVICES = (
    operator_pb2.DESCRIPTOR.services_by_name["Operator"],
    scheduler_pb2.DESCRIPTOR.services_by_name["Scheduler"],
    agent_pb2.DESCRIPTOR.services_by_name["AgentRegistry"],
)
AGENT_SERVICE = agent_pb2.DESCRIPTOR.services_by_name["Agent"]
OPERATOR_METHODS = list(MASTER_SERVICES[0].methods)


# ---------------------------------------------------------------------------------------------- the daemons
@dataclass
class Target:
    cluster: LocalCluster
    master: grpc.Channel
    agent: grpc.Channel
    agent_id: str
    framework_id: str
    task_id: str
    baseline: dict[str, tuple[int, int]] = field(default_factory=dict)  # daemon -> (fds, rss)
    codes: Counter[tuple[str, str]] = field(default_factory=Counter)
    details: dict[tuple[str, str], str] = field(default_factory=dict)  # one message a code, for the summary

    def pids(self) -> dict[str, int]:
        daemons = self.cluster.daemons()
        return {d.name: d.process.pid for d in daemons if d.process is not None}


def usage(pid: int) -> tuple[int, int]:
    return len(list(Path(f"/proc/{pid}/fd").iterdir())), psutil.Process(pid).memory_info().rss


async def start_cluster(work_dir: Path) -> tuple[LocalCluster, str, str, str]:
    """A master, one agent, and one running task (its framework disconnected, within its failover timeout) so
    that the agent's files API has a real sandbox to be asked about."""
    cluster = LocalCluster(work_dir, agents=1, master_flags=list(FAST_MASTER), agent_flags=list(FAST_AGENT))
    await cluster.start()
    try:
        rec = Recorder()
        async with framework(cluster.master_address, rec, name="seed", failover_timeout=3600, teardown=False) as d:
            offer = await rec.next_offer()
            d.accept([offer.id], [task("seed-task", "echo seeded; sleep 600", offer.agent_id)])
            await rec.wait_state("seed-task", {tpb.TASK_RUNNING})
            return cluster, offer.agent_id, d.framework_id, "seed-task"
    except BaseException:
        await cluster.stop()
        raise


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    cluster, agent_id, framework_id, task_id = asyncio.run(start_cluster(tmp_path_factory.mktemp("fuzz")))
    agent_address = next(iter(asyncio.run(agent_addresses(cluster.master_address))))
    master = channel(cluster.master_address, cluster.client_config, master=True)
    t = Target(cluster, master, channel(agent_address, cluster.client_config), agent_id, framework_id, task_id)
    try:
        health(t)  # warm: the channels are connected, the servers have answered once
        t.baseline = {name: usage(pid) for name, pid in t.pids().items()}
        yield t
    finally:
        after = {name: usage(pid) for name, pid in t.pids().items() if name in t.baseline}
        t.master.close()
        t.agent.close()
        problems = asyncio.run(cluster.stop())
        for name, (fds, rss) in after.items():
            fds0, rss0 = t.baseline[name]
            print(f"\n{name}: {fds0} -> {fds} file descriptors, {rss0 >> 20} -> {rss >> 20} MiB resident")
        print("\nstatus codes seen, by method:")
        for (method, code), n in sorted(t.codes.items()):
            print(f"  {method:<20} {code:<20} {n:>4}  {t.details.get((method, code), '')[:100]!r}")
    assert problems == [], problems


async def agent_addresses(master: str) -> list[str]:
    return [a.agent_info.address for a in await agents(master)]


def health(t: Target) -> None:
    """Both daemons alive, each answering GetState within GETSTATE_MS (best of three, for a loaded machine), and
    within their bounds of file descriptors and memory."""
    for daemon in t.cluster.daemons():
        assert daemon.alive, f"{daemon.name} died:\n{daemon.log_tail()}"
    for name, call in (
        (
            "master",
            lambda: operator_pb2_grpc.OperatorStub(t.master).GetState(operator_pb2.GetStateRequest(), timeout=5),
        ),
        ("agent", lambda: agent_pb2_grpc.AgentStub(t.agent).GetState(agent_pb2.AgentStateRequest(), timeout=5)),
    ):
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            call()
            best = min(best, (time.perf_counter() - started) * 1000)
            if best < GETSTATE_MS:
                break
        assert best < GETSTATE_MS, f"the {name} took {best:.0f} ms to answer GetState"
    for name, pid in t.pids().items():
        if name not in t.baseline:
            continue
        fds, rss = usage(pid)
        fds0, rss0 = t.baseline[name]
        assert fds <= fds0 + FD_GROWTH, f"{name}: {fds0} file descriptors at the start, {fds} now"
        assert rss <= rss0 + RSS_GROWTH, f"{name}: {rss0 >> 20} MiB at the start, {rss >> 20} MiB now"


# ---------------------------------------------------------------------------------------------- messages
INTERESTING_TEXT = [
    "", " ", "*", ".", "..", "../../../../etc/passwd", "/etc/passwd", "/", "a/b", "a_b", "\x00", "é", "\ud7ff",
    "x" * 300, "y" * 10_000, "z" * 20_000, "cpus", "mem", "ports", "disk", "gpus", "role/sub",
]  # fmt: skip
INTERESTING_FLOATS = [
    0.0, -0.0, 1.0, -1.0, 0.1, 1e12, 1e13, 1e30, 1e308, -1e308, 5e-324, float("inf"), float("-inf"), float("nan"),
]  # fmt: skip
F = FieldDescriptor
INT_RANGES = {
    F.TYPE_INT32: (-(2**31), 2**31 - 1), F.TYPE_SINT32: (-(2**31), 2**31 - 1), F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    F.TYPE_INT64: (-(2**63), 2**63 - 1), F.TYPE_SINT64: (-(2**63), 2**63 - 1), F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1), F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1), F.TYPE_FIXED64: (0, 2**64 - 1),
}  # fmt: skip
MAX_DEPTH = 4


def texts(seeds: tuple[str, ...], longest: int) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from([s for s in (*INTERESTING_TEXT, *seeds) if len(s) <= longest]), st.text(max_size=16)
    )


def integers(lo: int, hi: int) -> st.SearchStrategy[int]:
    edges = sorted({lo, hi, 0, 1, min(hi, 255), min(hi, 65535), min(hi, 2**31 - 1), max(lo, -1)})
    return st.one_of(st.sampled_from(edges), st.integers(lo, hi))


def scalar(f: FieldDescriptor, seeds: tuple[str, ...], longest: int) -> st.SearchStrategy[Any]:
    if f.type in INT_RANGES:
        return integers(*INT_RANGES[f.type])
    if f.type in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        width = 64 if f.type == F.TYPE_DOUBLE else 32
        return st.one_of(st.sampled_from(INTERESTING_FLOATS), st.floats(width=width))
    if f.type == F.TYPE_BOOL:
        return st.booleans()
    if f.type == F.TYPE_STRING:
        return texts(seeds, longest)
    if f.type == F.TYPE_BYTES:
        return st.binary(max_size=64)
    if f.type == F.TYPE_ENUM:
        known = [v.number for v in f.enum_type.values]
        return st.one_of(st.sampled_from(known), integers(-(2**31), 2**31 - 1))
    raise AssertionError(f"no strategy for {f.full_name}")


@functools.cache
def messages(
    descriptor: Descriptor, seeds: tuple[str, ...] = (), depth: int = 0, longest: int = 1 << 20
) -> st.SearchStrategy[Message]:
    """Well-typed random messages of `descriptor`: each field set or not; strings drawn from `seeds` too, none
    longer than `longest`."""
    cls = GetMessageClass(descriptor)

    @st.composite
    def build(draw: Callable[[st.SearchStrategy[Any]], Any]) -> Message:
        message = cls()
        for f in descriptor.fields:
            nested = f.type == F.TYPE_MESSAGE
            if (nested and depth >= MAX_DEPTH) or draw(st.booleans()):  # half the fields
                continue
            if nested and f.message_type.GetOptions().map_entry:
                key_f, value_f = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
                target = getattr(message, f.name)
                for key in draw(st.lists(scalar(key_f, seeds, longest), max_size=3)):
                    if value_f.type == F.TYPE_MESSAGE:
                        target[key].CopyFrom(draw(messages(value_f.message_type, seeds, depth + 1, longest)))
                    else:
                        target[key] = draw(scalar(value_f, seeds, longest))
                continue
            value = messages(f.message_type, seeds, depth + 1, longest) if nested else scalar(f, seeds, longest)
            if f.is_repeated:
                values = draw(st.lists(value, max_size=3))
                target = getattr(message, f.name)
                for v in values:
                    if nested:
                        target.add().CopyFrom(v)
                    else:
                        target.append(v)
            elif nested:
                getattr(message, f.name).CopyFrom(draw(value))
            else:
                setattr(message, f.name, draw(value))
        return message

    return build()


def mutated(valid: Message, seeds: tuple[str, ...] = (), longest: int = 1 << 20) -> st.SearchStrategy[Message]:
    """`valid` with a random message of its type merged in (so some fields are random, the rest still valid)."""

    def merge(random: Message) -> Message:
        out = copy(valid)
        out.MergeFrom(random)
        return out

    return messages(valid.DESCRIPTOR, seeds, 0, longest).map(merge)


def copy(message: M) -> M:
    out = type(message)()
    out.CopyFrom(message)
    return out


def shown(message: Message | bytes) -> str:
    text = repr(message) if isinstance(message, bytes) else str(message)
    return text if len(text) < 2000 else text[:2000] + f"... ({len(text)} characters)"


Outcome = tuple[grpc.StatusCode, str]  # the status code and its message


class ServerFault(AssertionError):
    """A daemon answered client input with a status that says it does not know what went wrong."""


def record(t: Target, method: str, outcome: Outcome, sent: Iterable[Message | bytes]) -> None:
    code, details = outcome
    t.codes[(method, code.name)] += 1
    t.details.setdefault((method, code.name), details)
    if code in SERVER_FAULTS:
        raise ServerFault(f"{method} answered {code.name} ({details[:300]!r}) to:\n" + "\n---\n".join(map(shown, sent)))


def failed(e: grpc.RpcError) -> Outcome:
    return e.code(), e.details() or ""  # type: ignore[attr-defined]


def unary(ch: grpc.Channel, method: MethodDescriptor, request: Message | bytes) -> Outcome:
    path = f"/{method.containing_service.full_name}/{method.name}"
    raw = isinstance(request, bytes)
    call = ch.unary_unary(
        path,
        request_serializer=None if raw else type(request).SerializeToString,
        response_deserializer=None if raw else GetMessageClass(method.output_type).FromString,
    )
    try:
        call(request, timeout=CALL_TIMEOUT)
    except grpc.RpcError as e:
        return failed(e)
    return grpc.StatusCode.OK, ""


#: Streams that never end by design (a watch): their first answer, or the error instead of it, is the outcome.
WATCHES = {"aiomesos.v1.Operator.Subscribe"}


def streamed(ch: grpc.Channel, method: MethodDescriptor, requests: list[Message] | list[bytes]) -> Outcome:
    """Send `requests` (a stream of them, half-closed, or the one) and read every answer until the server ends
    (a watch: until its first answer)."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    raw = isinstance(requests[0], bytes)
    serializer = None if raw else type(requests[0]).SerializeToString
    deserializer = GetMessageClass(method.output_type).FromString
    try:
        if method.client_streaming:
            answers = ch.stream_stream(path, serializer, deserializer)(iter(requests), timeout=CALL_TIMEOUT)
        else:
            answers = ch.unary_stream(path, serializer, deserializer)(requests[0], timeout=CALL_TIMEOUT)
        for _ in answers:
            if method.full_name in WATCHES:
                answers.cancel()
                break
    except grpc.RpcError as e:
        return failed(e)
    return grpc.StatusCode.OK, ""


def called(ch: grpc.Channel, method: MethodDescriptor, requests: list[Message] | list[bytes]) -> Outcome:
    return streamed(ch, method, requests) if method.server_streaming else unary(ch, method, requests[0])


def method(service: Any, name: str) -> MethodDescriptor:
    return service.methods_by_name[name]  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------------- the master
def valid_operator_requests(t: Target) -> dict[str, Message]:
    """A request each write (and GetTasks) accepts, for the fuzz to mutate, so that it gets past the first check."""
    reserved = Resources.parse("cpus(fuzz):0.1").to_proto()
    return {
        "GetTasks": operator_pb2.GetTasksRequest(framework_id=t.framework_id, limit=1),
        "UpdateWeights": operator_pb2.UpdateWeightsRequest(weights=[operator_pb2.RoleWeight(role="fuzz", weight=2)]),
        "SetQuota": operator_pb2.SetQuotaRequest(
            quota=operator_pb2.QuotaInfo(role="fuzz", guarantee=Resources.of(cpus=0.5).to_proto())
        ),
        "RemoveQuota": operator_pb2.RemoveQuotaRequest(role="fuzz"),
        "Reserve": operator_pb2.ReserveRequest(agent_id=t.agent_id, resources=reserved),
        "Unreserve": operator_pb2.UnreserveRequest(agent_id=t.agent_id, resources=reserved),
    }


@pytest.mark.parametrize("rpc", OPERATOR_METHODS, ids=[m.name for m in OPERATOR_METHODS])
def test_every_operator_call_answers_random_requests_with_a_status_that_says_why(
    target: Target, rpc: MethodDescriptor
) -> None:
    # Reads may name what exists; writes are given strings of their own, so they do not tear the seed down.
    writes = {"Teardown", "UpdateWeights", "SetQuota", "RemoveQuota", "Reserve", "Unreserve"}
    seeds = () if rpc.name in writes else (target.framework_id, target.agent_id, target.task_id)
    valid = valid_operator_requests(target).get(rpc.name)
    requests = messages(rpc.input_type, seeds)
    if valid is not None:
        requests = st.one_of(st.just(valid), mutated(valid, seeds), requests)

    @FUZZ
    @given(request=requests)
    def fuzz(request: Message) -> None:
        record(target, rpc.name, called(target.master, rpc, [request]), [request])

    fuzz()
    health(target)


SUBSCRIBE = scheduler_pb2.Call(
    type=scheduler_pb2.Call.SUBSCRIBE,
    subscribe=scheduler_pb2.Call.Subscribe(framework_info=rpb.FrameworkInfo(name="fuzz", failover_timeout=0)),
)


def test_subscribe_answers_random_calls_with_errors_and_the_stream_ends_cleanly(target: Target) -> None:
    rpc = method(MASTER_SERVICES[1], "Subscribe")

    @FUZZ
    @given(
        first=st.one_of(st.just(SUBSCRIBE), mutated(SUBSCRIBE), messages(scheduler_pb2.Call.DESCRIPTOR)),
        calls=st.lists(messages(scheduler_pb2.Call.DESCRIPTOR), max_size=4),
    )
    def fuzz(first: scheduler_pb2.Call, calls: list[scheduler_pb2.Call]) -> None:
        first = copy(first)
        if first.type == scheduler_pb2.Call.SUBSCRIBE:
            first.subscribe.framework_info.ClearField("id")  # never another framework's (the seed's) id
        sent = [first, *calls]
        record(target, "Subscribe", streamed(target.master, rpc, sent), sent)

    fuzz()
    health(target)


REGISTER = agent_pb2.AgentMessage(
    type=agent_pb2.AgentMessage.REGISTER,
    register=agent_pb2.AgentMessage.Register(
        agent_info=rpb.AgentInfo(hostname="fuzz-agent", resources=Resources.of(cpus=1, mem=64).to_proto())
    ),
)


def test_attach_answers_random_agent_messages_and_the_stream_ends_cleanly(target: Target) -> None:
    rpc = method(MASTER_SERVICES[2], "Attach")

    @FUZZ
    @given(
        first=st.one_of(st.just(REGISTER), mutated(REGISTER), messages(agent_pb2.AgentMessage.DESCRIPTOR)),
        then=st.lists(messages(agent_pb2.AgentMessage.DESCRIPTOR), max_size=4),
    )
    def fuzz(first: agent_pb2.AgentMessage, then: list[agent_pb2.AgentMessage]) -> None:
        first = copy(first)
        first.register.agent_info.ClearField("id")  # never the real agent's id
        sent = [first, *then]
        record(target, "Attach", streamed(target.master, rpc, sent), sent)

    fuzz()
    health(target)


# ---------------------------------------------------------------------------------------------- the agent
#: The agent's files API is fuzzed with strings no longer than a file name may be; longer ones are known to be
#: INTERNAL (test_an_over_long_name_for_the_files_api_says_what_is_wrong), and would hide everything else.
NAME_MAX = 255


@pytest.mark.parametrize("field", ["task_id", "framework_id", "path"])
@pytest.mark.parametrize("name", ["ListFiles", "ReadFile"])
def test_an_over_long_name_for_the_files_api_says_what_is_wrong(target: Target, name: str, field: str) -> None:
    rpc = method(AGENT_SERVICE, name)
    request = GetMessageClass(rpc.input_type)(task_id=target.task_id, path="stdout")
    setattr(request, field, "x" * (NAME_MAX + 1))
    outcome = called(target.agent, rpc, [request])
    health(target)
    record(target, name, outcome, [request])


AGENT_METHODS = [m for m in AGENT_SERVICE.methods if m.name != "ReadFile"]


@pytest.mark.parametrize("rpc", AGENT_METHODS, ids=[m.name for m in AGENT_METHODS])
def test_every_agent_call_answers_random_requests_with_a_status_that_says_why(
    target: Target, rpc: MethodDescriptor
) -> None:
    seeds = (target.framework_id, target.task_id, "stdout", "stderr", "runs/latest")

    @FUZZ
    @given(request=messages(rpc.input_type, seeds, longest=NAME_MAX))
    def fuzz(request: Message) -> None:
        record(target, rpc.name, unary(target.agent, rpc, request), [request])

    fuzz()
    health(target)


def test_read_file_answers_random_requests_with_a_status_that_says_why(target: Target) -> None:
    rpc = method(AGENT_SERVICE, "ReadFile")
    seeds = (target.framework_id, target.task_id, "stdout", "stderr", "runs/latest")
    valid = agent_pb2.ReadFileRequest(task_id=target.task_id, path="stdout")

    @FUZZ
    @given(
        request=st.one_of(mutated(valid, seeds, longest=NAME_MAX), messages(rpc.input_type, seeds, longest=NAME_MAX))
    )
    def fuzz(request: agent_pb2.ReadFileRequest) -> None:
        request.follow = False  # following a live task's file is meant to last; everything else may not
        record(target, "ReadFile", streamed(target.agent, rpc, [request]), [request])

    fuzz()
    health(target)


# ---------------------------------------------------------------------------------------------- raw bytes
RAW_METHODS = [
    *((m, "master") for service in MASTER_SERVICES for m in service.methods),
    *((m, "agent") for m in AGENT_SERVICE.methods),
]


def corrupted(valid: bytes) -> st.SearchStrategy[bytes]:
    """`valid` cut short, or with a byte changed, or with random bytes added."""
    if not valid:
        return st.binary(min_size=1, max_size=32)
    return st.one_of(
        st.integers(0, len(valid) - 1).map(lambda n: valid[:n]),
        st.tuples(st.integers(0, len(valid) - 1), st.integers(0, 255)).map(
            lambda p: valid[: p[0]] + bytes([p[1]]) + valid[p[0] + 1 :]
        ),
        st.binary(min_size=1, max_size=16).map(lambda b: valid + b),
    )


@pytest.mark.parametrize("rpc,daemon", RAW_METHODS, ids=[f"{d}-{m.name}" for m, d in RAW_METHODS])
def test_raw_bytes_that_are_no_message_are_invalid_argument(target: Target, rpc: MethodDescriptor, daemon: str) -> None:
    ch = target.master if daemon == "master" else target.agent
    valid = {"aiomesos.v1.Scheduler.Subscribe": SUBSCRIBE, "aiomesos.v1.AgentRegistry.Attach": REGISTER}.get(
        rpc.full_name
    )
    seed = valid.SerializeToString() if valid is not None else b"\x0a\x03abc"  # field 1, a 3-byte string

    @FUZZ
    @given(payload=st.one_of(st.binary(min_size=1, max_size=64), corrupted(seed)))
    def fuzz(payload: bytes) -> None:
        record(target, f"{rpc.name} (raw)", called(ch, rpc, [payload]), [payload])

    fuzz()


def test_the_daemons_are_well_after_everything(target: Target) -> None:
    """Last in the module: after every test above (the expected failures too), the daemons are still well."""
    health(target)
