"""Highly available masters on a real etcd: kill -9 of the leader, a leader cut off from etcd, etcd itself
restarted. Three real masters, real agents, a framework with endless short tasks; afterwards every task is
accounted for: finished or still running, never LOST while alive, never run twice, never a state after a
terminal one."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aiomesos.v1 import operator_pb2 as opb
from aiomesos.v1 import operator_pb2_grpc
from aiomesos.v1 import scheduler_pb2 as spb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk._daemon.http import client_ssl_context
from scheduler_sdk.driver import SchedulerDriver
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.masters import leader_hint
from scheduler_sdk.operator import OperatorClient, OperatorError
from scheduler_sdk.states import is_terminal
from tests.e2e.conftest import FAST_AGENT, FAST_MASTER
from tests.e2e.harness import Recorder, agents, eventually, framework, master_channel, task
from tests.e2e.tcp_proxy import TcpProxy
from tests.e2e.test_cli import aiomesos
from tests.e2e.test_drain import DrainRecorder, drain_of, launch_on_first_offer, only_offers_from, wait_drain_state

LEASE = 2.0
#: The issue's bound: a new leader serving within 5 s of the old one's lease expiring.
ELECTION_BOUND = LEASE + 5.0

pytestmark = pytest.mark.skipif(not Path("/usr/bin/etcd").exists(), reason="etcd-server is not installed")


class Endless(Recorder):
    """Launches a short task on every offer it can, each with a new id; each task appends its id to `ran` (so a
    task that ran twice shows twice); reconciles its unfinished tasks whenever it (re)subscribes."""

    def __init__(self, ran: Path, limit: int) -> None:
        super().__init__()
        ran.mkdir()
        os.chmod(ran, 0o1777)  # tasks run as nobody
        self.ran = ran
        self.limit = limit
        self.launched: list[str] = []

    async def reregistered(self, driver: SchedulerDriver, framework_id: str, master_id: str) -> None:
        await super().reregistered(driver, framework_id, master_id)
        unfinished = [t for t in self.launched if not self.terminal(t)]
        if unfinished:
            driver.reconcile([(t, "") for t in unfinished])

    async def offers(self, driver: SchedulerDriver, offers: Sequence[spb.Offer]) -> None:
        for offer in offers:
            if len(self.launched) >= self.limit:
                driver.decline([offer.id], refuse_seconds=1.0)
                continue
            tasks = []
            for _ in range(3):
                task_id = f"t{len(self.launched):04d}"
                self.launched.append(task_id)
                tasks.append(task(task_id, f"touch {self.ran}/{task_id}.$$ && sleep 0.5", offer.agent_id))
            driver.launch(offer.id, tasks)

    def terminal(self, task_id: str) -> bool:
        return any(is_terminal(s) for s in self.states(task_id))

    def ran_counts(self) -> dict[str, int]:
        """How many times each task started (each run leaves a file named TASK_ID.PID)."""
        counts: dict[str, int] = {}
        for path in self.ran.iterdir():
            task_id = path.name.split(".", 1)[0]
            counts[task_id] = counts.get(task_id, 0) + 1
        return counts


def assert_accounted_for(s: Endless) -> None:
    """Nothing ran twice; a terminal state is final (never followed by another); a task reported LOST never
    ran (it was really lost)."""
    ran = s.ran_counts()
    finished = [t for t in s.launched if tpb.TASK_FINISHED in s.states(t)]
    assert all(t in ran for t in finished), "a task finished without leaving its mark: the check would be blind"
    twice = {t: n for t, n in ran.items() if n > 1}
    assert not twice, f"tasks ran more than once: {twice}"
    for task_id in s.launched:
        states = s.states(task_id)
        terminal_at = next((i for i, st in enumerate(states) if is_terminal(st)), None)
        if terminal_at is not None:
            # The same terminal state again is a resend or a reconciliation answer; any other is a lie.
            after = [st for st in states[terminal_at + 1 :] if st != states[terminal_at]]
            assert not after, f"{task_id}: a state after a terminal one: {_history(s, task_id)}"
        if tpb.TASK_LOST in states or tpb.TASK_GONE in states:
            assert task_id not in ran, f"{task_id} was reported lost but ran: {s.latest(task_id)}"


def _history(s: Recorder, task_id: str) -> list[str]:
    return [
        f"{tpb.TaskState.Name(st.state)}/{tpb.TaskStatus.Reason.Name(st.reason)}/{st.message!r}/{st.uuid.hex()[:6]}"
        for st in s.statuses
        if st.task_id == task_id
    ]


@contextlib.asynccontextmanager
async def ha_cluster(tmp_path: Path, **kwargs: object) -> AsyncIterator[LocalCluster]:
    c = LocalCluster(
        tmp_path,
        agents=2,
        masters=3,
        etcd_lease=f"{LEASE:g}s",
        master_flags=[*FAST_MASTER, "--agent-reregister-timeout", "60"],
        agent_flags=list(FAST_AGENT),
        **kwargs,  # type: ignore[arg-type]
    )
    try:
        await c.start()
        yield c
    finally:
        leftovers = await c.stop()
    assert leftovers == [], f"left behind: {leftovers}"


async def kill_leader(c: LocalCluster) -> tuple[str, float]:
    """SIGKILL the leading master; returns its address and how long until another one leads and serves."""
    old = await c.wait_for_leader()
    index = c.master_index(old)
    started = time.monotonic()
    c.master_daemons[index].signal(signal.SIGKILL)
    await c.master_daemons[index].wait(5.0)
    await c.wait_for_leader(ELECTION_BOUND + 5.0, not_at=old)
    return old, time.monotonic() - started


async def active_agents(address: str) -> int:
    async with OperatorClient(address, timeout=2.0) as client:
        return sum(1 for a in (await client.agents()).agents if a.active)


async def test_kill_the_leader_three_times_and_every_task_is_accounted_for(tmp_path: Path) -> None:
    async with ha_cluster(tmp_path) as c:
        s = Endless(tmp_path / "ran", limit=10_000)
        async with framework(c.master_address, s, failover_timeout=300) as driver:
            framework_id = driver.framework.id
            await eventually(lambda: len(s.launched) >= 6, what="tasks launched")
            for _ in range(3):
                old, took = await kill_leader(c)
                assert took < ELECTION_BOUND, f"a new leader took {took:.1f} s (bound {ELECTION_BOUND} s)"
                new = await c.wait_for_leader()
                await eventually(lambda new=new: _active_agents_are(new, 2), timeout=20, what="both agents re-attached")
                before = len(s.launched)
                await eventually(lambda before=before: len(s.launched) > before + 3, what="offers resumed")
                await c.restart_master(index=c.master_index(old))  # it comes back as a standby
            assert driver.framework.id == framework_id, "the framework resubscribed with another id"
            s.limit = len(s.launched)  # no new tasks: let the ones launched end
            await eventually(
                lambda: all(s.terminal(t) for t in s.launched), timeout=60, what="every launched task terminal"
            )
        assert_accounted_for(s)
        finished = sum(1 for t in s.launched if tpb.TASK_FINISHED in s.states(t))
        assert finished >= len(s.launched) * 0.9, f"only {finished} of {len(s.launched)} finished"


async def _active_agents_are(address: str, n: int) -> bool:
    with contextlib.suppress(OperatorError):
        return await active_agents(address) == n
    return False


async def test_a_standby_refuses_writes_and_names_the_leader(tmp_path: Path) -> None:
    async with ha_cluster(tmp_path) as c:
        leader = await c.wait_for_leader()
        standby = next(a for a in c.master_addresses if a != leader)
        async with master_channel(standby) as channel:
            stub = operator_pb2_grpc.OperatorStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.UpdateWeights(opb.UpdateWeightsRequest(weights=[opb.RoleWeight(role="a", weight=2)]))
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "standby" in refused.value.details() and leader in refused.value.details()
            assert leader_hint(refused.value) == leader
            masters = await stub.GetMasters(opb.GetMastersRequest())  # a standby answers this itself
            # gRPC health, answered by the standby itself (not routed): alive, but its services NOT_SERVING.
            assert await _health(channel, "") == health_pb2.HealthCheckResponse.SERVING
            assert await _health(channel, "aiomesos.v1.Scheduler") == health_pb2.HealthCheckResponse.NOT_SERVING
        async with master_channel(leader) as channel:
            assert await _health(channel, "aiomesos.v1.Scheduler") == health_pb2.HealthCheckResponse.SERVING
        # And /health over HTTP, for a load balancer: 200 at the leader, 503 naming the leader at a standby.
        urls = c.master_http_urls
        assert (await _http_health(c, urls[c.master_index(leader)]))[0] == 200
        status, why = await _http_health(c, urls[c.master_index(standby)])
        assert status == 503 and leader in why, why
        assert masters.registry == "etcd" and len(masters.masters) == 3
        assert [m.address for m in masters.masters if m.leader] == [leader]
        assert masters.etcd and all(e.healthy for e in masters.etcd)
        # The operator's view, from the CLI through etcd: three masters, one LEADER, etcd healthy.
        code, out, err = await aiomesos("masters", "--json", "--master", c.master_address)
        assert code == 0, err
        shown = json.loads(out)
        listed = shown["masters"]
        assert shown["registry"] == "etcd" and all(e["healthy"] for e in shown["etcd"]), out
        assert sorted(m["address"] for m in listed) == sorted(c.master_addresses), out
        assert [m["address"] for m in listed if m.get("leader")] == [leader], out
        # A client given every master's address goes to the leader by itself, for writes too.
        async with OperatorClient(",".join(c.master_addresses)) as client:
            await client.update_weights({"a": 2.0})
            assert (await client.weights())["a"] == 2.0


async def _health(channel: grpc.aio.Channel, service: str) -> int:
    return (await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service))).status


async def _http_health(c: LocalCluster, url: str) -> tuple[int, str]:
    assert c.certificates is not None
    context = client_ssl_context(c.certificates.ca_cert)  # /health is public: no certificate needed
    async with aiohttp.ClientSession() as session, session.get(url + "/health", ssl=context) as r:
        return r.status, await r.text()


async def test_a_leader_cut_off_from_etcd_steps_down_and_cannot_write(tmp_path: Path) -> None:
    """The first master reaches etcd through a proxy the test cuts: it must stop leading by itself (its lease
    cannot be refreshed), a standby takes over, and nothing the old leader is asked to write lands."""
    async with ha_cluster(tmp_path) as c:
        assert c.etcd is not None
        proxy = TcpProxy(c.etcd.endpoints[0])
        await proxy.start()
        try:
            await c.restart_master(index=0, etcd_url=c.etcd.url.replace(c.etcd.endpoints[0], proxy.address))
            cut_off = c.master_addresses[0]
            for i in (1, 2):  # the proxied master alone leads; the others come back as its standbys
                await c.master_daemons[i].stop()
            assert await c.wait_for_leader() == cut_off
            for i in (1, 2):
                await c.restart_master(index=i)
            s = Recorder(auto_decline=True)
            async with framework(c.master_address, s, failover_timeout=300) as driver:
                framework_id = driver.framework.id
                proxy.cut()  # the leader can reach no etcd any more; clients still reach it
                started = time.monotonic()
                await eventually(lambda: _is_standby(cut_off), timeout=LEASE + 3, what="the cut-off leader steps down")
                new = await c.wait_for_leader(ELECTION_BOUND + 5, not_at=cut_off)
                took = time.monotonic() - started
                assert took < ELECTION_BOUND, f"took {took:.1f} s"
                async with master_channel(cut_off) as channel:  # it refuses writes now
                    stub = operator_pb2_grpc.OperatorStub(channel)
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        weights = [opb.RoleWeight(role="cut", weight=9)]
                        await stub.UpdateWeights(opb.UpdateWeightsRequest(weights=weights))
                    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
                async with OperatorClient(new) as client:
                    assert "cut" not in await client.weights()
                await eventually(lambda: len(s.registrations) >= 2, timeout=30, what="the framework resubscribed")
                assert driver.framework.id == framework_id
                proxy.heal()
                # Back in touch with etcd, it stays a standby: the new leader keeps its term.
                await eventually(lambda: _is_standby(cut_off), timeout=10, what="the old leader a standby")
                assert await c.wait_for_leader() == new
        finally:
            await proxy.stop()


async def _leads(address: str) -> bool:
    """Whether the master at `address` itself serves as leader: a standby refuses a read, UNAVAILABLE (a raw
    stub: the OperatorClient would follow the refusal to the leader)."""
    async with master_channel(address) as channel:
        try:
            await operator_pb2_grpc.OperatorStub(channel).GetWeights(opb.GetWeightsRequest(), timeout=2.0)
        except grpc.aio.AioRpcError:
            return False
    return True


async def _is_standby(address: str) -> bool:
    return not await _leads(address)


async def test_masters_ride_out_an_etcd_restart(tmp_path: Path) -> None:
    """etcd down for longer than the lease: the leader steps down (no master leads while etcd is away); etcd
    back: a leader is elected, the agents re-attach, the task that ran all along is RUNNING, never LOST."""
    async with ha_cluster(tmp_path) as c:
        assert c.etcd is not None
        s = Recorder()
        async with framework(c.master_address, s, failover_timeout=300) as driver:
            offer = await s.next_offer()
            driver.launch(offer.id, [task("long", "sleep 120", offer.agent_id)])
            await s.wait_state("long", {tpb.TASK_RUNNING})
            await asyncio.to_thread(c.etcd.kill)
            await eventually(lambda: _none_leads(c), timeout=LEASE + 5, what="the leader steps down without etcd")
            await asyncio.to_thread(c.etcd.restart)
            leader = await c.wait_for_leader(30)
            await eventually(lambda: _active_agents_are(leader, 2), timeout=30, what="agents re-attached")
            await eventually(lambda: len(s.registrations) >= 2, timeout=30, what="the framework resubscribed")
            driver.reconcile([("long", "")])
            await eventually(
                lambda: any(
                    st.task_id == "long" and st.reason == tpb.TaskStatus.REASON_RECONCILIATION for st in s.statuses
                ),
                timeout=20,
                what="a reconciliation answer",
            )
            assert s.latest("long").state == tpb.TASK_RUNNING  # type: ignore[union-attr]
            assert tpb.TASK_LOST not in s.states("long")


async def _none_leads(c: LocalCluster) -> bool:
    return not any([await _leads(a) for a in c.master_addresses])


async def test_a_drain_survives_a_failover(tmp_path: Path) -> None:
    """Drain an agent with a deadline, kill -9 the leader: the new leader knows the drain (DRAINING, no offers
    from it), kills what still runs there at the deadline (TASK_KILLED, REASON_AGENT_DRAINING), reports it DRAINED;
    `agent up` on the new leader ends it."""
    async with ha_cluster(tmp_path) as c:
        s = DrainRecorder()
        async with framework(c.master_address, s, failover_timeout=300) as driver:
            drained = await launch_on_first_offer(s, driver, task("held", "sleep 300"))
            other = next(a.agent_info.id for a in await agents(c.master_address) if a.agent_info.id != drained)
            async with OperatorClient(c.master_address) as client:
                info = await client.drain_agent(drained, deadline=LEASE + 8.0)
            assert info.state == opb.DRAINING
            await eventually(lambda: s.draining, what="AGENT_DRAINING")
            await kill_leader(c)
            new = await c.wait_for_leader()
            summary = await drain_of(new, drained)
            assert summary is not None and summary.drain.state in (opb.DRAINING, opb.DRAINED)
            killed = await s.wait_state("held", {tpb.TASK_KILLED}, timeout=30)
            assert killed.reason == tpb.TaskStatus.REASON_AGENT_DRAINING, killed
            await wait_drain_state(new, drained, opb.DRAINED, timeout=20)
            await only_offers_from(s, driver, allowed=other, forbidden=drained)
            async with OperatorClient(c.master_address) as client:
                await client.reactivate_agent(drained)
            await wait_drain_state(new, drained, opb.DRAIN_NONE)


async def test_a_single_master_lists_itself_leading_on_sqlite(cluster: LocalCluster) -> None:
    async with OperatorClient(cluster.master_address) as client:
        answer = await client.masters()
    assert answer.registry == "sqlite" and not answer.etcd
    assert [(m.address, m.leader) for m in answer.masters] == [(cluster.master_address, True)]
    assert answer.leader_id == answer.masters[0].master_id and answer.masters[0].elected_at > 0
