"""Allocation policy with real daemons: static and dynamic reservations, weights, quota, offer constraints and
revocation."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import scheduler_pb2 as spb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.driver import Scheduler, SchedulerDriver, launch_op, reserve_op
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.operator import OperatorClient
from scheduler_sdk.resources import Resources
from tests.e2e.conftest import FAST_AGENT, FAST_MASTER
from tests.e2e.harness import Recorder, agents, concurrently, eventually, framework, task
from tests.e2e.test_cli import aiomesos

pytestmark = [pytest.mark.e2e, pytest.mark.cgroups]
Op = spb.Offer_Operation


def R(text: str) -> Resources:
    return Resources.parse(text)


async def _cluster(tmp_path: Path, resources: str, agents_n: int = 1, master_flags: Sequence[str] = ()) -> LocalCluster:
    c = LocalCluster(
        tmp_path,
        agents=agents_n,
        agent_resources=resources,
        master_flags=[*FAST_MASTER, *master_flags],
        agent_flags=list(FAST_AGENT),
    )
    await c.start()
    return c


async def test_static_reservations_reach_only_their_role(tmp_path: Path) -> None:
    c = await _cluster(tmp_path, "cpus(eng):1;mem(eng):256;cpus:1;mem:256;disk:100")
    try:
        eng, ads = Recorder(), Recorder()
        async with framework(c.master_address, eng, name="eng", roles=["eng/prod"]):
            offer = await eng.next_offer()
            got = Resources.from_proto(offer.resources)
            assert got.reserved("eng") == R("cpus(eng):1;mem(eng):256"), got  # eng's child role sees them
        async with framework(c.master_address, ads, name="ads", roles=["ads"]):
            offer = await ads.next_offer()
            got = Resources.from_proto(offer.resources)
            assert got.reserved() == Resources.empty(), f"ads was offered eng's reservation: {got}"
            assert got.scalar("cpus") == 1
    finally:
        assert await c.stop() == []


async def test_dynamic_reservation_by_accept_and_operator_survives_restarts(tmp_path: Path) -> None:
    c = await _cluster(tmp_path, "cpus:2;mem:512;disk:100")
    try:
        rec = Recorder()
        async with framework(c.master_address, rec, name="eng", roles=["eng"]) as driver:
            offer = await rec.next_offer()
            reserve = reserve_op(R("cpus(eng):1;mem(eng):128").to_proto())
            launch = launch_op([_reserved_task("on-reserved", offer.agent_id)])
            driver.accept_operations([offer.id], [reserve, launch])
            status = await rec.wait_state("on-reserved", {tpb.TASK_FINISHED, tpb.TASK_FAILED, tpb.TASK_ERROR})
            assert status.state == tpb.TASK_FINISHED, status.message
        agent_id = offer.agent_id
        assert await _reserved(c.master_address, agent_id) == R("cpus(eng):1;mem(eng):128")
        # The operator reserves more, for another role.
        async with OperatorClient(c.master_address) as op:
            await op.reserve(agent_id, R("cpus(ads):0.5"))
        assert await _reserved(c.master_address, agent_id) == R("cpus(eng):1;mem(eng):128;cpus(ads):0.5")
        # Both survive a master restart and an agent restart.
        await c.restart_master()
        await eventually(lambda: _active(c.master_address, 1), timeout=30)
        assert await _reserved(c.master_address, agent_id) == R("cpus(eng):1;mem(eng):128;cpus(ads):0.5")
        await c.agent_daemons[0].stop()
        c.add_agent(0)
        await eventually(lambda: _active(c.master_address, 1), timeout=30)
        assert await _reserved(c.master_address, agent_id) == R("cpus(eng):1;mem(eng):128;cpus(ads):0.5")
        # Unreserve gives them back; a static reservation cannot be unreserved, nor more than is free reserved.
        async with OperatorClient(c.master_address) as op:
            await op.unreserve(agent_id, R("cpus(ads):0.5"))
            with pytest.raises(Exception, match="not dynamically reserved"):
                await op.unreserve(agent_id, R("cpus(web):1"))
            with pytest.raises(Exception, match="unreserved and free"):
                await op.reserve(agent_id, R("cpus(web):5"))
        assert await _reserved(c.master_address, agent_id) == R("cpus(eng):1;mem(eng):128")
    finally:
        assert await c.stop() == []


def _reserved_task(task_id: str, agent_id: str) -> tpb.TaskInfo:
    t = task(task_id, "true", agent_id)
    del t.resources[:]
    t.resources.extend(R("cpus(eng):0.5;mem(eng):64").to_proto())
    return t


async def _reserved(master: str, agent_id: str) -> Resources:
    (a,) = [a for a in await agents(master) if a.agent_info.id == agent_id]
    return Resources.from_proto(a.total).reserved()


async def _active(master: str, n: int) -> bool:
    return sum(1 for a in await agents(master) if a.active) == n


class Endless(Scheduler):
    """Endless work in small tasks: one task per offer, the rest declined with refuse 0. With a `gate`, it holds
    back (declines everything with refuse 0, so it is offered again at once) until the gate is set: tests that
    compare frameworks set it once all of them are subscribed, so none gets a head start."""

    def __init__(
        self,
        name: str,
        cpus: float = 0.5,
        mem: float = 32,
        command: str = "sleep 600",
        gate: asyncio.Event | None = None,
    ) -> None:
        self.name, self.need, self.command = name, Resources.of(cpus=cpus, mem=mem), command
        self.n = 0
        self.role = ""
        self.gate = gate

    async def offers(self, driver: SchedulerDriver, offers: Sequence[spb.Offer]) -> None:
        if self.gate is not None and not self.gate.is_set():
            driver.decline([o.id for o in offers], refuse_seconds=0)
            return
        for offer in offers:
            free = Resources.from_proto(offer.resources)
            if free.contains(self.need):
                self.n += 1
                t = task(f"{self.name}-{self.n}", self.command, offer.agent_id)
                del t.resources[:]
                t.resources.extend(self.need.to_proto())
                driver.accept([offer.id], [t], refuse_seconds=0)
            else:
                driver.decline([offer.id], refuse_seconds=0)


async def _role_cpus(master: str) -> dict[str, float]:
    async with OperatorClient(master) as op:
        resp = await op.quota()
    return {r.role: Resources.from_proto(r.allocated).scalar("cpus") for r in resp.roles}


async def test_weights_are_honoured(tmp_path: Path) -> None:
    c = await _cluster(tmp_path, "cpus:6;mem:4096;disk:100")
    try:
        async with OperatorClient(c.master_address) as op:
            await op.update_weights({"eng": 2, "ads": 1})
            assert await op.weights() == {"eng": 2.0, "ads": 1.0}
        # Neither launches before both are subscribed: DRF never takes back what one took alone.
        both = asyncio.Event()
        eng, ads = Endless("eng", gate=both), Endless("ads", gate=both)
        async with (
            framework(c.master_address, eng, name="eng", roles=["eng"]),
            framework(c.master_address, ads, name="ads", roles=["ads"]),
        ):
            both.set()
            # Full means 12 tasks of 0.5 cpu; the master's view counts outstanding offers too, so wait for tasks.
            await eventually(lambda: eng.n + ads.n >= 12, timeout=40, what="the cluster to fill with tasks")
            got = await _role_cpus(c.master_address)
            # 6 cpus at weights 2:1 -> eng 4, ads 2 (in tasks of 0.5).
            assert (eng.n, ads.n) == (8, 4), (eng.n, ads.n, got)
            assert got.get("eng", 0) == 4 and got.get("ads", 0) == 2, got
    finally:
        assert await c.stop() == []


async def test_quota_guarantee_is_held_for_its_role_and_limits_are_never_exceeded(tmp_path: Path) -> None:
    c = await _cluster(tmp_path, "cpus:4;mem:4096;disk:100")
    try:
        async with OperatorClient(c.master_address) as op:
            await op.set_quota("prod", R("cpus:2;mem:256"), None)
            await op.set_quota("batch", Resources.empty(), R("cpus:1.5;mem:4096"))
        # What batch holds is sampled all along the test, not once at the end: its limit must hold throughout.
        samples: list[dict[str, float]] = []

        async def watch() -> None:
            while True:
                samples.append(await _role_cpus(c.master_address))
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(watch())
        try:
            batch = Endless("batch")
            async with framework(c.master_address, batch, name="batch", roles=["batch"]):
                # batch alone: its limit holds it at 1.5 cpus although 4 are there.
                await eventually(
                    lambda: _cpus_of(c.master_address, "batch", 1.5), timeout=30, what="batch at its limit"
                )
                prod = Endless("prod")
                async with framework(c.master_address, prod, name="prod", roles=["prod"]):
                    await eventually(
                        lambda: _cpus_of(c.master_address, "prod", 2.0, at_least=True),
                        timeout=30,
                        what="prod to get its guarantee",
                    )
                    # and a while longer, both asking for more, for the samples to show the limit still holds
                    seen = len(samples)
                    await eventually(lambda: len(samples) >= seen + 10, timeout=30, what="ten more samples")
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        over = [s for s in samples if s.get("batch", 0.0) > 1.5 + 1e-9]
        assert len(samples) >= 10 and not over, f"batch above its 1.5 cpus limit: {over[:3]} ({len(samples)} samples)"
        assert max(s.get("prod", 0.0) for s in samples) >= 2.0
    finally:
        assert await c.stop() == []


async def _cpus_of(master: str, role: str, cpus: float, at_least: bool = False) -> bool:
    got = (await _role_cpus(master)).get(role, 0.0)
    return got >= cpus - 1e-9 if at_least else abs(got - cpus) < 1e-9


async def test_offer_constraints_keep_unwanted_agents_and_small_offers_away(tmp_path: Path) -> None:
    c = await _cluster(tmp_path, "cpus:1;mem:256;disk:100", agents_n=0)
    try:
        c.add_agent(0, ["--attributes", "zone:a", "--resources", "cpus:1;mem:256;disk:100"])
        c.add_agent(1, ["--attributes", "zone:b", "--resources", "cpus:1;mem:256;disk:100"])
        c.add_agent(2, ["--attributes", "zone:a", "--resources", "cpus:0.2;mem:64;disk:100"])
        await c.wait_for_agents(3)

        def zone_a_and_big(info: rpb.FrameworkInfo) -> None:
            info.offer_constraints.attributes.add(attribute="zone", equals="a")
            info.offer_constraints.min_resources.extend(R("cpus:0.5").to_proto())

        rec = Recorder()
        async with framework(c.master_address, rec, configure=zone_a_and_big):
            offer = await rec.next_offer()
            assert offer.hostname == "agent0.local"
            # No other offer: agent1 is in zone b, agent2 too small.
            with contextlib.suppress(AssertionError, TimeoutError):
                other = await rec.next_offer(timeout=1.5)
                pytest.fail(f"offered {other.hostname}, which the constraints exclude")

        # A bad regex is refused at SUBSCRIBE with a clear message.
        def bad(info: rpb.FrameworkInfo) -> None:
            info.offer_constraints.attributes.add(attribute="zone", regex="(")

        with pytest.raises(Exception, match="bad regex"):
            async with framework(c.master_address, Recorder(), configure=bad):
                pass
    finally:
        assert await c.stop() == []


async def test_revocation_preempts_tasks_of_a_role_above_its_share_for_a_starved_guarantee(tmp_path: Path) -> None:
    c = await _cluster(tmp_path, "cpus:2;mem:1024;disk:100", master_flags=["--revocation"])
    try:
        greedy = Endless("batch")
        greedy_rec: list[tpb.TaskStatus] = []
        orig = greedy.status_update

        async def track(driver: SchedulerDriver, status: tpb.TaskStatus) -> None:
            greedy_rec.append(status)
            await orig(driver, status)

        greedy.status_update = track  # type: ignore[method-assign]
        async with framework(c.master_address, greedy, name="batch", roles=["batch"]):
            await eventually(
                lambda: _cpus_of(c.master_address, "batch", 2.0), timeout=30, what="batch to fill the cluster"
            )
            async with OperatorClient(c.master_address) as op:
                await op.set_quota("prod", R("cpus:1;mem:64"), None)
            prod = Endless("prod")
            async with framework(c.master_address, prod, name="prod", roles=["prod"]):
                await eventually(
                    lambda: _cpus_of(c.master_address, "prod", 1.0, at_least=True),
                    timeout=40,
                    what="prod to get its guarantee back by revocation",
                )
                preempted = [s for s in greedy_rec if s.state == tpb.TASK_KILLED]
                assert preempted and all(s.reason == tpb.TaskStatus.REASON_CONTAINER_PREEMPTED for s in preempted)
                async with OperatorClient(c.master_address) as op:
                    metrics = await op.metrics()
                assert metrics.get("aiomesos_master_tasks_revoked_total", 0) >= 1
    finally:
        assert await c.stop() == []


async def test_quota_and_weights_cli(tmp_path: Path) -> None:
    c = await _cluster(tmp_path, "cpus:2;mem:512;disk:100")
    try:

        async def cli(*args: str) -> tuple[int, str, str]:
            return await aiomesos(*args, "--master", c.master_address)

        # Independent calls at once (each CLI process pays its start-up): the writes, then what reads them and
        # the refused writes (which change nothing), then the removal.
        set_weights, set_quota = await concurrently(
            cli("weights", "set", "eng=2", "ads=1"),
            cli("quota", "set", "eng", "--guarantee", "cpus=1,mem=128", "--limit", "cpus=2"),
        )
        assert set_weights[0] == 0 and set_quota[0] == 0, (set_weights, set_quota)
        weights, quota, quota_table, over_limit, zero_weight, metrics = await concurrently(
            cli("weights"),
            cli("quota", "--json"),
            cli("quota"),
            cli("quota", "set", "eng", "--guarantee", "cpus=3", "--limit", "cpus=2"),
            cli("weights", "set", "eng=0"),
            cli("metrics", "--json"),
        )
        code, out, _ = weights
        assert code == 0 and "ROLE" in out and "WEIGHT" in out
        assert [c.strip() for c in next(line for line in out.splitlines() if "eng" in line).split("│")] == ["eng", "2"]
        code, out, _ = quota
        (eng,) = [r for r in __import__("json").loads(out) if r["role"] == "eng"]
        assert eng["guarantee"] == {"cpus": 1, "mem": 128} and eng["limit"] == {"cpus": 2}
        code, out, _ = quota_table
        row = next(line for line in out.splitlines() if line.startswith(" eng "))
        assert [c.strip() for c in row.split("│")][:4] == ["eng", "2", "cpus=1, mem=128", "cpus=2"], out
        code, _, err = over_limit
        assert code == 2 and "exceeds the limit" in err and len(err.strip().splitlines()) == 1
        code, _, err = zero_weight
        assert code == 2 and len(err.strip().splitlines()) == 1
        assert (await cli("quota", "remove", "eng"))[0] == 0
        code, out, _ = metrics
        assert code == 0 and json.loads(out)['aiomesos_master_agents{state="connected"}'] >= 1, out
    finally:
        assert await c.stop() == []
