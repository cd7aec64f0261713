"""Security end to end, with real daemons (issue 9): TLS is real, bearer tokens work until revoked, each attack
the issue lists is refused (PERMISSION_DENIED naming the principal and the action) while the rightful caller
succeeds, the ACL file reloads without a restart, writes are audited, and a malformed request is
INVALID_ARGUMENT, never UNKNOWN. The safe defaults of a daemon without TLS: test_security_defaults.py.

Most tests share one secure cluster (module scope) and stay independent of each other: each uses frameworks
and roles of its own and undoes what it changes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio

from aiomesos.v1 import agent_pb2, agent_pb2_grpc, operator_pb2_grpc, scheduler_pb2_grpc
from aiomesos.v1 import operator_pb2 as opb
from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import scheduler_pb2 as spb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.driver import SchedulerDriver
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.operator import AgentClient, AgentError, OperatorClient
from scheduler_sdk.resources import Resources
from scheduler_sdk.security.certs import CertificateAuthority
from scheduler_sdk.security.config import ClientConfig
from scheduler_sdk.security.local import LocalCertificates
from tests.e2e.conftest import FAST_AGENT, FAST_MASTER
from tests.e2e.harness import Recorder, eventually, framework, master_channel, task
from tests.e2e.test_cli import aiomesos

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
Call = spb.Call
Event = spb.Event
AgentMessage = agent_pb2.AgentMessage
TaskStatus = tpb.TaskStatus
DENIED = grpc.StatusCode.PERMISSION_DENIED


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(
    tmp_path_factory: pytest.TempPathFactory, cluster_ca: LocalCertificates
) -> AsyncIterator[LocalCluster]:
    """One secure cluster (the session CA, the built-in ACLs) and two agents for the module's tests."""
    c = LocalCluster(
        tmp_path_factory.mktemp("secure"), agents=2, master_flags=list(FAST_MASTER), agent_flags=list(FAST_AGENT)
    )
    try:
        await c.start()
        yield c
    finally:
        leftovers = await c.stop()
    assert leftovers == [], f"left behind: {leftovers}"


def principal(certs: LocalCertificates, role: str, name: str) -> ClientConfig:
    """A client config proving ROLE/NAME with a certificate from the session CA."""
    return certs.client_config(name=name, role=role)


# ------------------------------------------------------------------------------------------ raw calls
async def refused(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    """The error `call` ends with (it must end with one)."""
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await call
    return ended.value


def assert_status(error: grpc.aio.AioRpcError, code: grpc.StatusCode, *named: str) -> None:
    assert error.code() == code, (error.code(), error.details())
    for word in named:
        assert word in (error.details() or ""), f"{word!r} not in {error.details()!r}"


async def operator_call(address: str, config: ClientConfig, method: str, request: Any) -> Any:
    """One Operator RPC on a channel of its own, so that the status code is the master's, untranslated."""
    async with master_channel(address, config) as channel:
        return await getattr(operator_pb2_grpc.OperatorStub(channel), method)(request, timeout=5)


async def get_state(address: str, config: ClientConfig) -> opb.GetStateResponse:
    return await operator_call(address, config, "GetState", opb.GetStateRequest())


async def first_reply(address: str, config: ClientConfig, opener: Callable[[grpc.aio.Channel], Any], first: Any) -> Any:
    """Open a stream on a channel of its own, send `first`, and return the server's first reply (the stream is
    then cancelled), or raise the AioRpcError the server ends the stream with. (A refused stream is ended only
    after its first message is in, so the client sees the refusal, never grpcio's INTERNAL for a write cut off.)"""
    async with master_channel(address, config) as channel:
        call = opener(channel)
        await call.write(first)
        reply = await asyncio.wait_for(call.read(), 10)
        assert reply is not grpc.aio.EOF, "the master ended the stream without a status"
        call.cancel()
        return reply


async def subscribe_once(address: str, config: ClientConfig, info: rpb.FrameworkInfo) -> spb.Event:
    """SUBSCRIBE on a stream of its own: the first event (SUBSCRIBED), then the stream is closed (a framework
    with no failover timeout goes with it). Raises the AioRpcError the master refuses it with."""
    call = Call(type=Call.SUBSCRIBE, subscribe=Call.Subscribe(framework_info=info))
    return await first_reply(address, config, lambda ch: scheduler_pb2_grpc.SchedulerStub(ch).Subscribe(), call)


async def attach_once(address: str, config: ClientConfig, register: AgentMessage.Register) -> agent_pb2.MasterMessage:
    """An agent's REGISTER on a stream of its own: the master's first message, or the AioRpcError it refuses with."""
    message = AgentMessage(type=AgentMessage.REGISTER, register=register)
    return await first_reply(address, config, lambda ch: agent_pb2_grpc.AgentRegistryStub(ch).Attach(), message)


# ------------------------------------------------------------------------------------------ tasks and logs
def log_events(path: Path) -> Iterator[dict[str, Any]]:
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict):
                yield event


async def run_sleeper(driver: SchedulerDriver, recorder: Recorder, task_id: str) -> tpb.TaskStatus:
    offer = await recorder.next_offer()
    driver.launch(offer.id, [task(task_id, "sleep 60", offer.agent_id)])
    return await recorder.wait_state(task_id, {tpb.TASK_RUNNING})


async def task_state(cluster: LocalCluster, task_id: str) -> int | None:
    """The master's view of the task (active or completed), via the Operator API."""
    async with OperatorClient(cluster.master_address, config=cluster.client_config) as op:
        tasks = await op.tasks()
    found = [t.state for t in [*tasks.tasks, *tasks.completed_tasks] if t.task.task_id == task_id]
    return found[-1] if found else None


async def assert_still_running(
    cluster: LocalCluster, driver: SchedulerDriver, recorder: Recorder, task_id: str
) -> None:
    """The master says RUNNING, and the framework heard nothing else: a reconciliation's answer comes after any
    update the master sent before it, so an update that was sent has arrived by then."""
    assert await task_state(cluster, task_id) == tpb.TASK_RUNNING
    latest = recorder.latest(task_id)
    assert latest is not None
    driver.reconcile([(task_id, latest.agent_id)])
    await eventually(
        lambda: any(s.reason == TaskStatus.REASON_RECONCILIATION for s in recorder.statuses if s.task_id == task_id),
        timeout=10,
        what=f"the reconciliation of {task_id}",
    )
    assert recorder.states(task_id)[-1] == tpb.TASK_RUNNING
    assert not {tpb.TASK_LOST, tpb.TASK_KILLED, tpb.TASK_FAILED} & set(recorder.states(task_id))


# ------------------------------------------------------------------------------------------ 1. TLS
async def test_tls_is_real(cluster: LocalCluster, cluster_ca: LocalCertificates, tmp_path: Path) -> None:
    master, tokens = cluster.master_address, cluster.token_address
    async with grpc.aio.insecure_channel(master) as plaintext:
        error = await refused(operator_pb2_grpc.OperatorStub(plaintext).GetState(opb.GetStateRequest(), timeout=5))
    assert_status(error, grpc.StatusCode.UNAVAILABLE)

    other_dir = tmp_path / "other-ca"
    other = CertificateAuthority.create(other_dir)
    cert, key = other.issue("admin", "operator").write(other_dir, "operator-admin")
    ours = cluster.client_config
    # A certificate from another CA, however well it names an operator, is no way in ...
    error = await refused(get_state(master, ClientConfig(ca=cluster_ca.ca_cert, cert=cert, key=key)))
    assert_status(error, grpc.StatusCode.UNAVAILABLE)
    # ... and a client that trusts another CA does not take our master for its own.
    error = await refused(get_state(master, ClientConfig(ca=other_dir / "ca.crt", cert=ours.cert, key=ours.key)))
    assert_status(error, grpc.StatusCode.UNAVAILABLE)
    # The CA but no certificate: the main port asks for one.
    error = await refused(get_state(master, ClientConfig(ca=cluster_ca.ca_cert)))
    assert_status(error, grpc.StatusCode.UNAVAILABLE)

    # The token port takes TLS without a client certificate, and then wants a token that the master knows.
    assert tokens and tokens != master
    error = await refused(get_state(tokens, ClientConfig(ca=cluster_ca.ca_cert)))
    assert_status(error, grpc.StatusCode.UNAUTHENTICATED, "GetState", "no valid bearer token")
    error = await refused(get_state(tokens, ClientConfig(ca=cluster_ca.ca_cert, token="not-a-token-anyone-has")))
    assert_status(error, grpc.StatusCode.UNAUTHENTICATED, "GetState", "no valid bearer token")

    # None of that is the master refusing everyone: our own operator gets in.
    assert (await get_state(master, ours)).master_id


# ------------------------------------------------------------------------------------------ 2. tokens
@pytest.mark.cgroups
async def test_a_token_from_the_cli_subscribes_and_runs_a_task_until_revoked(
    cluster: LocalCluster, cluster_ca: LocalCertificates
) -> None:
    credentials = cluster.work_dir / "certs" / "credentials.toml"
    code, out, err = await aiomesos(
        "certs", "token", "tokenized", "--role", "framework", "--credentials", str(credentials)
    )
    assert code == 0, err
    token = out.strip()
    assert len(out.splitlines()) == 1 and len(token) >= 32
    assert token not in credentials.read_text(), "the master's file keeps the token's hash, never the token"

    config = ClientConfig(master=cluster.token_address, ca=cluster_ca.ca_cert, token=token)
    recorder = Recorder()
    # No restart: the master reads the credentials file again when it sees a token it does not know.
    async with framework(cluster.token_address, recorder, name="by-token", config=config) as driver:
        offer = await recorder.next_offer()
        driver.launch(offer.id, [task("by-token-1", "true", offer.agent_id)])
        await recorder.wait_state("by-token-1", {tpb.TASK_FINISHED})
        framework_id = driver.framework_id
    state = await get_state(cluster.master_address, cluster.client_config)
    frameworks = [*state.frameworks.frameworks, *state.frameworks.completed_frameworks]
    [ours] = [f for f in frameworks if f.framework_info.id == framework_id]
    assert ours.framework_info.principal == "framework/tokenized"

    code, out, err = await aiomesos(
        "certs", "revoke", "tokenized", "--role", "framework", "--credentials", str(credentials)
    )
    assert code == 0, err
    assert "revoked 1 token(s) of framework/tokenized" in out

    async def unauthenticated() -> str | None:
        try:
            await get_state(cluster.token_address, config)
        except grpc.aio.AioRpcError as e:
            return e.details() if e.code() == grpc.StatusCode.UNAUTHENTICATED else None
        return None

    details = await eventually(unauthenticated, timeout=5, what="the revoked token refused")
    assert "no valid bearer token" in details


# ------------------------------------------------------------------------------------------ 3. the attacks
@pytest.mark.cgroups
async def test_a_framework_cannot_tear_down_another_principals_framework(
    cluster: LocalCluster, cluster_ca: LocalCertificates
) -> None:
    ml, ads = principal(cluster_ca, "framework", "ml"), principal(cluster_ca, "framework", "ads")
    recorder = Recorder()
    async with framework(cluster.master_address, recorder, name="ml-victim", config=ml) as driver:
        await run_sleeper(driver, recorder, "victim-sleeper")
        victim = driver.framework_id
        error = await refused(
            operator_call(cluster.master_address, ads, "Teardown", opb.TeardownRequest(framework_id=victim))
        )
        assert_status(error, DENIED, "framework/ads", "teardown")
        await assert_still_running(cluster, driver, recorder, "victim-sleeper")
        assert driver.subscribed.is_set() and recorder.registrations == [victim]

        # An operator may: the framework goes, and its task with it.
        await operator_call(
            cluster.master_address, cluster.client_config, "Teardown", opb.TeardownRequest(framework_id=victim)
        )

        async def killed() -> bool:
            return await task_state(cluster, "victim-sleeper") == tpb.TASK_KILLED

        await eventually(killed, what="the torn-down framework's task killed")
        state = await get_state(cluster.master_address, cluster.client_config)
        assert victim in {f.framework_info.id for f in state.frameworks.completed_frameworks}


@pytest.mark.cgroups
async def test_a_framework_sees_and_reads_only_what_is_its_own(
    cluster: LocalCluster, cluster_ca: LocalCertificates
) -> None:
    ml, ads, ops = (
        principal(cluster_ca, "framework", "ml"),
        principal(cluster_ca, "framework", "ads"),
        cluster.client_config,
    )
    recorder = Recorder()
    async with framework(cluster.master_address, recorder, name="ml-private", config=ml) as driver:
        offer = await recorder.next_offer()
        driver.launch(offer.id, [task("ml-secret", "echo the-secret; sleep 60", offer.agent_id)])
        await recorder.wait_state("ml-secret", {tpb.TASK_RUNNING})
        mine = driver.framework_id

        # The master's reads: another framework sees neither the framework nor its tasks; an operator sees both.
        async with OperatorClient(cluster.master_address, config=ads) as client:
            assert mine not in {f.framework_info.id for f in (await client.frameworks()).frameworks}
            assert "ml-secret" not in {t.task.task_id for t in (await client.tasks()).tasks}
            assert "ml-secret" not in {t.task.task_id for t in (await client.state()).tasks.tasks}
        error = await refused(
            operator_call(cluster.master_address, ads, "GetTasks", opb.GetTasksRequest(framework_id=mine))
        )
        assert_status(error, grpc.StatusCode.NOT_FOUND, "unknown framework")
        for config in (ml, ops):
            async with OperatorClient(cluster.master_address, config=config) as client:
                assert "ml-secret" in {t.task.task_id for t in (await client.tasks()).tasks}
                assert mine in {f.framework_info.id for f in (await client.frameworks()).frameworks}

        # The agent's: its state and the sandbox.
        async with OperatorClient(cluster.master_address, config=ops) as client:
            [address] = [
                a.agent_info.address for a in (await client.agents()).agents if a.agent_info.id == offer.agent_id
            ]

        async def stdout(config: ClientConfig) -> bytes:
            async with AgentClient(address, config=config) as agent:
                return b"".join([c.data async for c in agent.read_file("ml-secret", "stdout", framework_id=mine)])

        with pytest.raises(AgentError) as denied:
            await stdout(ads)
        assert denied.value.code == DENIED and "framework/ads" in str(denied.value), denied.value
        assert "access sandboxes" in str(denied.value), denied.value
        for config in (ml, ops):  # its own, and an operator's
            assert b"the-secret" in await eventually(lambda c=config: stdout(c), what="the task's stdout")
        async with AgentClient(address, config=ads) as agent:
            assert "ml-secret" not in {t.task.task_id for t in (await agent.state()).tasks}
        async with AgentClient(address, config=ml) as agent:
            assert "ml-secret" in {t.task.task_id for t in (await agent.state()).tasks}


@pytest.mark.cgroups
async def test_subscribing_with_another_principals_framework_id_is_denied(
    cluster: LocalCluster, cluster_ca: LocalCertificates
) -> None:
    ml, ads = principal(cluster_ca, "framework", "ml"), principal(cluster_ca, "framework", "ads")
    recorder = Recorder()
    async with framework(
        cluster.master_address, recorder, name="ml-owner", config=ml, failover_timeout=60, teardown=False
    ) as driver:
        await run_sleeper(driver, recorder, "owned-sleeper")
        owned = driver.framework_id
        error = await refused(subscribe_once(cluster.master_address, ads, rpb.FrameworkInfo(name="thief", id=owned)))
        assert_status(error, DENIED, "SUBSCRIBE", owned, "framework/ml", "framework/ads")
        # The owner's connection and task are untouched.
        await assert_still_running(cluster, driver, recorder, "owned-sleeper")
        assert driver.subscribed.is_set() and recorder.registrations == [owned]

    # The owner itself resubscribes with its id (a new connection, its own certificate): its task runs on.
    again = Recorder()
    async with framework(
        cluster.master_address, again, name="ml-owner", config=ml, failover_timeout=60, framework_id=owned
    ) as driver:
        assert again.registrations == [owned]
        assert await task_state(cluster, "owned-sleeper") == tpb.TASK_RUNNING


async def test_a_framework_info_principal_must_be_the_caller(
    cluster: LocalCluster, cluster_ca: LocalCertificates
) -> None:
    ml = principal(cluster_ca, "framework", "ml")
    lie = rpb.FrameworkInfo(name="liar", principal="framework/ads")
    error = await refused(subscribe_once(cluster.master_address, ml, lie))
    assert_status(error, DENIED, "SUBSCRIBE", "framework/ads", "framework/ml")
    truth = rpb.FrameworkInfo(name="honest", principal="framework/ml")
    assert (await subscribe_once(cluster.master_address, ml, truth)).type == Event.SUBSCRIBED


async def test_only_agents_attach_as_agents(cluster: LocalCluster, cluster_ca: LocalCertificates) -> None:
    register = AgentMessage.Register(
        agent_info=rpb.AgentInfo(
            hostname="fake.local", address="127.0.0.1:1", resources=Resources.of(cpus=8, mem=8192).to_proto()
        )
    )
    for name, who in (
        ("framework/ml", principal(cluster_ca, "framework", "ml")),
        ("operator/admin", cluster.client_config),
    ):
        error = await refused(attach_once(cluster.master_address, who, register))
        assert_status(error, DENIED, name, "AgentRegistry/Attach", "only agent/*")
    async with OperatorClient(cluster.master_address, config=cluster.client_config) as op:
        assert "fake.local" not in {a.agent_info.hostname for a in (await op.agents()).agents}


@pytest.mark.cgroups
async def test_an_agent_certificate_cannot_take_a_real_agents_id(
    cluster: LocalCluster, cluster_ca: LocalCertificates
) -> None:
    recorder = Recorder()
    async with framework(
        cluster.master_address, recorder, name="ml-on-agent", config=principal(cluster_ca, "framework", "ml")
    ) as driver:
        running = await run_sleeper(driver, recorder, "agent-sleeper")
        victim = running.agent_id
        # The attack of the issue: the victim's id, no tasks, so that the master would call its tasks LOST.
        register = AgentMessage.Register(
            agent_info=rpb.AgentInfo(
                id=victim,
                hostname="evil.local",
                address="127.0.0.1:1",
                resources=Resources.of(cpus=1, mem=64).to_proto(),
            ),
            boot_id="evil",
        )
        error = await refused(attach_once(cluster.master_address, principal(cluster_ca, "agent", "evil"), register))
        assert_status(error, DENIED, "REGISTER", victim, "agent/evil")
        await assert_still_running(cluster, driver, recorder, "agent-sleeper")
        async with OperatorClient(cluster.master_address, config=cluster.client_config) as op:
            [agent] = [a for a in (await op.agents()).agents if a.agent_info.id == victim]
        assert agent.active and agent.agent_info.hostname != "evil.local"
        assert agent.agent_info.principal.startswith("agent/") and agent.agent_info.principal != "agent/evil"


async def test_an_agent_may_neither_subscribe_nor_read_the_state(
    cluster: LocalCluster, cluster_ca: LocalCertificates
) -> None:
    agent = principal(cluster_ca, "agent", "evil")
    error = await refused(subscribe_once(cluster.master_address, agent, rpb.FrameworkInfo(name="agent-as-framework")))
    assert_status(error, DENIED, "agent/evil", "Scheduler/Subscribe")
    error = await refused(get_state(cluster.master_address, agent))
    assert_status(error, DENIED, "agent/evil", "Operator/GetState")


@pytest.mark.cgroups
async def test_a_task_as_root_is_unauthorized_under_the_default_acls(
    cluster: LocalCluster, cluster_ca: LocalCertificates
) -> None:
    recorder = Recorder()
    async with framework(
        cluster.master_address, recorder, name="wants-root", config=principal(cluster_ca, "framework", "ml")
    ) as driver:
        offer = await recorder.next_offer()
        as_root = task("as-root", "id -u", offer.agent_id)
        as_root.command.user = "root"
        driver.launch(offer.id, [as_root])
        status = await recorder.wait_state("as-root", {tpb.TASK_ERROR})
        assert status.reason == TaskStatus.REASON_TASK_UNAUTHORIZED, TaskStatus.Reason.Name(status.reason)
        for word in ("framework/ml", "run tasks", "root"):
            assert word in status.message, status.message
        assert recorder.states("as-root") == [tpb.TASK_ERROR], "it never started"


async def test_only_operators_update_weights_and_quota(cluster: LocalCluster, cluster_ca: LocalCertificates) -> None:
    ml, ops = principal(cluster_ca, "framework", "ml"), cluster.client_config
    weights = opb.UpdateWeightsRequest(weights=[opb.RoleWeight(role="weighed", weight=3.0)])
    quota = opb.SetQuotaRequest(quota=opb.QuotaInfo(role="quoted", guarantee=Resources.of(cpus=0.1).to_proto()))
    master = cluster.master_address
    error = await refused(operator_call(master, ml, "UpdateWeights", weights))
    assert_status(error, DENIED, "framework/ml", "update weights", "weighed")
    error = await refused(operator_call(master, ml, "SetQuota", quota))
    assert_status(error, DENIED, "framework/ml", "update quotas", "quoted")
    error = await refused(operator_call(master, ml, "RemoveQuota", opb.RemoveQuotaRequest(role="quoted")))
    assert_status(error, DENIED, "framework/ml", "update quotas", "quoted")

    async with OperatorClient(master, config=ops) as op:
        assert "weighed" not in await op.weights()
        assert "quoted" not in {q.role for q in (await op.quota()).quotas}
        try:
            await operator_call(master, ops, "UpdateWeights", weights)
            await operator_call(master, ops, "SetQuota", quota)
            assert (await op.weights())["weighed"] == 3.0
            assert "quoted" in {q.role for q in (await op.quota()).quotas}
        finally:
            await op.update_weights({"weighed": 1.0})
            with contextlib.suppress(Exception):
                await op.remove_quota("quoted")


async def _first_agent(cluster: LocalCluster) -> str:
    async with OperatorClient(cluster.master_address, config=cluster.client_config) as op:
        return sorted(a.agent_info.id for a in (await op.agents()).agents)[0]


async def test_an_operator_reserves_and_unreserves(cluster: LocalCluster) -> None:
    agent_id, ops = await _first_agent(cluster), cluster.client_config
    resources = Resources.of(role="reserved-by-ops", cpus=0.1).to_proto()
    await operator_call(
        cluster.master_address, ops, "Reserve", opb.ReserveRequest(agent_id=agent_id, resources=resources)
    )
    await operator_call(
        cluster.master_address, ops, "Unreserve", opb.UnreserveRequest(agent_id=agent_id, resources=resources)
    )


async def test_a_framework_may_not_reserve_for_others_through_the_operator_api(
    cluster: LocalCluster, cluster_ca: LocalCertificates
) -> None:
    agent_id, ops = await _first_agent(cluster), cluster.client_config
    resources = Resources.of(role="ml", cpus=0.1).to_proto()
    request = opb.ReserveRequest(agent_id=agent_id, resources=resources)
    try:
        await operator_call(cluster.master_address, principal(cluster_ca, "framework", "ads"), "Reserve", request)
    except grpc.aio.AioRpcError as e:
        assert_status(e, DENIED, "framework/ads", "reserve resources", "ml")
    else:  # it was reserved: undo it for the other tests, then fail
        await operator_call(
            cluster.master_address, ops, "Unreserve", opb.UnreserveRequest(agent_id=agent_id, resources=resources)
        )
        pytest.fail("framework/ads reserved resources for role ml through Operator.Reserve")


# ------------------------------------------------------------------------------------------ 4. ACL file
def write_acls(path: Path, roles: list[str]) -> None:
    """framework/ml may register in `roles`, no one else anywhere; written whole (a reader sees old or new)."""
    rules = {"register_frameworks": [{"principals": {"values": ["framework/ml"]}, "roles": {"values": roles}}]}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(rules))
    os.replace(tmp, path)


async def test_the_acl_file_decides_and_reloads_without_a_restart(
    tmp_path: Path, cluster_ca: LocalCertificates
) -> None:
    acls = tmp_path / "acls.json"
    write_acls(acls, ["ml"])
    c = LocalCluster(tmp_path / "cluster", agents=0, master_flags=["--acls", str(acls)])
    try:
        await c.start()
        master, ml = c.master_address, principal(cluster_ca, "framework", "ml")
        pid = c.master.process.pid if c.master and c.master.process else None

        async def registers(role: str) -> bool:
            try:
                return (
                    await subscribe_once(master, ml, rpb.FrameworkInfo(name=f"in-{role}", roles=[role]))
                ).type == Event.SUBSCRIBED
            except grpc.aio.AioRpcError as e:
                assert_status(e, DENIED, "framework/ml", "register frameworks", repr(role))
                return False

        assert await registers("ml")
        assert not await registers("ads")
        error = await refused(
            subscribe_once(master, principal(cluster_ca, "framework", "ads"), rpb.FrameworkInfo(name="x", roles=["ml"]))
        )
        assert_status(error, DENIED, "framework/ads", "register frameworks")

        write_acls(acls, ["ml", "ads"])
        await eventually(lambda: registers("ads"), timeout=5, interval=0.2, what="the edited ACLs in force")

        acls.write_text('{"register_frameworks": [')  # a broken edit: the rules in force stay
        log = c.work_dir / "logs" / "master.log"
        await eventually(
            lambda: any(
                e.get("event", "").startswith("ACL file not reloaded") and e.get("level") == "error"
                for e in log_events(log)
            ),
            timeout=5,
            what="the master's error about the broken ACL file",
        )
        assert await registers("ads") and await registers("ml")
        assert not await registers("other")
        assert c.master is not None and c.master.process is not None and c.master.process.pid == pid, "no restart"
    finally:
        leftovers = await c.stop()
    assert leftovers == []


# ------------------------------------------------------------------------------------------ 5. audit
async def test_writes_are_audited_allowed_and_denied(cluster: LocalCluster, cluster_ca: LocalCertificates) -> None:
    request = opb.UpdateWeightsRequest(weights=[opb.RoleWeight(role="audited", weight=1.0)])
    await refused(
        operator_call(cluster.master_address, principal(cluster_ca, "framework", "ads"), "UpdateWeights", request)
    )
    await operator_call(cluster.master_address, cluster.client_config, "UpdateWeights", request)
    log = cluster.work_dir / "logs" / "master.log"

    def audited() -> dict[str, bool]:
        return {
            e["principal"]: e["allowed"]
            for e in log_events(log)
            if e.get("event") == "audit" and e.get("action") == "update_weights" and e.get("object") == "audited"
        }

    decisions = await eventually(lambda: len(audited()) == 2 and audited(), timeout=5, what="two audit events")
    assert decisions == {"framework/ads": False, "operator/admin": True}


# ------------------------------------------------------------------------------------------ 6. bad input
def nested_batch(depth: int) -> bytes:
    """A Call whose batch holds a Call whose batch holds ... `depth` deep (past protobuf's recursion limit)."""
    tag = (12 << 3) | 2  # Call.batch, length-delimited
    message = b""
    for _ in range(depth):
        message = _varint(tag) + _varint(len(message)) + message
    return message


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


GARBAGE = b"\xff\xff\xff\xff\xff"  # a field tag that never ends


async def test_a_malformed_request_is_invalid_argument_never_unknown(cluster: LocalCluster) -> None:
    async with master_channel(cluster.master_address, cluster.client_config) as channel:
        get_state = channel.unary_unary(
            "/aiomesos.v1.Operator/GetState", request_serializer=None, response_deserializer=None
        )
        error = await refused(get_state(GARBAGE, timeout=5))
        assert_status(error, grpc.StatusCode.INVALID_ARGUMENT, "GetState", "not a valid message")

        subscribe = channel.stream_stream(
            "/aiomesos.v1.Scheduler/Subscribe", request_serializer=None, response_deserializer=None
        )
        for raw in (GARBAGE, nested_batch(200)):
            call = subscribe()
            await call.write(raw)
            error = await refused(asyncio.wait_for(call.read(), 10))
            assert_status(error, grpc.StatusCode.INVALID_ARGUMENT, "Subscribe", "not a valid message")

        # The master answers as ever.
        state = await operator_pb2_grpc.OperatorStub(channel).GetState(opb.GetStateRequest(), timeout=2)
        assert state.master_id
