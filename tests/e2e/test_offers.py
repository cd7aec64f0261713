"""Offers, filters and fairness with real daemons: DECLINE/REVIVE, invalid ACCEPTs, DRF between frameworks."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence

import pytest

from aiomesos.v1 import scheduler_pb2 as spb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.driver import Scheduler, SchedulerDriver
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.operator import OperatorClient
from scheduler_sdk.resources import Resources
from tests.e2e.harness import Recorder, eventually, framework, task

pytestmark = [pytest.mark.e2e, pytest.mark.cgroups]
S = tpb.TaskStatus


@pytest.fixture
def cluster(idle_cluster: LocalCluster) -> LocalCluster:
    """One cluster for the module, handed to each test only once it is idle (the tests count on whole offers):
    the tests here change only their own frameworks, which go with them."""
    return idle_cluster


async def test_decline_filter_keeps_agent_from_framework_while_another_gets_it_and_revive_ends_it(
    cluster: LocalCluster,
) -> None:
    a, b = Recorder(), Recorder()
    async with framework(cluster.master_address, a, name="a") as da:
        first = await a.next_offer()
        declined_agent = first.agent_id
        declined_at = time.monotonic()
        other = await a.next_offer()  # the other agent
        assert other.agent_id != declined_agent
        da.decline([first.id], refuse_seconds=30)
        async with framework(cluster.master_address, b, name="b") as db:
            # B is offered the agent A declined.
            got = await b.next_offer(agent_id=declined_agent)
            assert Resources.from_proto(got.resources).scalar("cpus") == 2
            db.decline([got.id], refuse_seconds=60)
            # A, still declining it, is not re-offered that agent within the filter's time.
            with contextlib.suppress(TimeoutError, AssertionError):
                again = await a.next_offer(timeout=2.0, agent_id=declined_agent)
                pytest.fail(
                    f"offered {again.agent_id} again {time.monotonic() - declined_at:.1f}s after a 30 s decline"
                )
            # REVIVE clears the filter at once.
            revived_at = time.monotonic()
            da.revive()
            back = await a.next_offer(timeout=5.0, agent_id=declined_agent)
            assert back.agent_id == declined_agent
            assert time.monotonic() - revived_at < 5.0


async def test_unused_resources_of_an_accept_return_and_are_offered_again(cluster: LocalCluster) -> None:
    rec = Recorder()
    async with framework(cluster.master_address, rec) as driver:
        offer = await rec.next_offer()
        driver.accept([offer.id], [task("small", "sleep 20", offer.agent_id, cpus=0.5, mem=64)], refuse_seconds=0)
        await rec.wait_state("small", {tpb.TASK_RUNNING})
        rest = await rec.next_offer(agent_id=offer.agent_id)
        assert Resources.from_proto(rest.resources).scalars()["cpus"] == pytest.approx(1.5)
        assert Resources.from_proto(rest.resources).scalars()["mem"] == pytest.approx(1024 - 64)


async def test_invalid_accepts_get_their_documented_updates_and_resources_come_back(cluster: LocalCluster) -> None:
    rec = Recorder()
    async with framework(cluster.master_address, rec) as driver:
        o1 = await rec.next_offer()
        o2 = await rec.next_offer()
        assert o1.agent_id != o2.agent_id

        # Offers from different agents in one accept.
        driver.accept([o1.id, o2.id], [task("two-agents", "true")])
        s = await rec.wait_state("two-agents", {tpb.TASK_DROPPED})
        assert s.reason == S.REASON_INVALID_OFFERS and "different agents" in s.message

        # Both offers are now used up: reusing one is an invalid offer.
        driver.accept([o1.id], [task("reused", "true", o1.agent_id)])
        s = await rec.wait_state("reused", {tpb.TASK_DROPPED})
        assert s.reason == S.REASON_INVALID_OFFERS and "no longer valid" in s.message

        # An unknown offer id.
        driver.accept(["no-such-offer"], [task("unknown-offer", "true")])
        s = await rec.wait_state("unknown-offer", {tpb.TASK_DROPPED})
        assert s.reason == S.REASON_INVALID_OFFERS

        driver.revive()  # the resources of o1 and o2 came back: they are offered again
        o3 = await rec.next_offer()
        assert Resources.from_proto(o3.resources).scalar("cpus") == 2

        # More than offered; a duplicate id within one accept; no command. A valid task beside them runs.
        big = task("too-big", "true", o3.agent_id, cpus=3)
        empty = task("no-command", "", o3.agent_id)
        driver.accept(
            [o3.id],
            [task("ok", "sleep 5", o3.agent_id), task("ok", "true", o3.agent_id), big, empty],
            refuse_seconds=0,
        )
        s = await rec.wait_state("too-big", {tpb.TASK_ERROR})
        assert s.reason == S.REASON_TASK_INVALID and "more resources than offered" in s.message
        s = await rec.wait_state("no-command", {tpb.TASK_ERROR})
        assert "no command" in s.message
        await rec.wait_state("ok", {tpb.TASK_RUNNING})
        duplicate = [x for x in rec.statuses if x.task_id == "ok" and x.state == tpb.TASK_ERROR]
        assert duplicate and "duplicate" in duplicate[0].message

        # What the valid task did not use came back.
        rest = await rec.next_offer(agent_id=o3.agent_id)
        assert Resources.from_proto(rest.resources).scalar("cpus") == pytest.approx(1.9)


async def test_suppress_stops_offers_and_revive_resumes_them(cluster: LocalCluster) -> None:
    rec = Recorder()
    async with framework(cluster.master_address, rec) as driver:
        offer = await rec.next_offer()
        driver.suppress()
        driver.decline([offer.id], refuse_seconds=0)
        await rec.next_offer()  # the other agent's offer, made before SUPPRESS arrived
        async with OperatorClient(cluster.master_address) as client:
            await eventually(lambda: _suppressed(client), what="the framework to be suppressed")
        while not rec.offer_queue.empty():
            driver.decline([rec.offer_queue.get_nowait().id], refuse_seconds=0)
        with contextlib.suppress(TimeoutError, AssertionError):
            unexpected = await rec.next_offer(timeout=1.5)
            pytest.fail(f"offer {unexpected.id} while suppressed")
        driver.revive()
        await rec.next_offer(timeout=5)


async def _suppressed(client: OperatorClient) -> bool:
    return any(f.suppressed for f in (await client.frameworks()).frameworks)


class Greedy(Scheduler):
    """Endless work: one task of a fixed size per offer, declining the rest with refuse_seconds 0."""

    def __init__(self, name: str, cpus: float, mem: float) -> None:
        self.name, self.cpus, self.mem = name, cpus, mem
        self.n = 0
        self.running = 0

    async def offers(self, driver: SchedulerDriver, offers: Sequence[spb.Offer]) -> None:
        need = Resources.of(cpus=self.cpus, mem=self.mem)
        for offer in offers:
            if Resources.from_proto(offer.resources).contains(need):
                self.n += 1
                driver.accept(
                    [offer.id],
                    [task(f"{self.name}-{self.n}", "sleep 1", offer.agent_id, cpus=self.cpus, mem=self.mem)],
                    refuse_seconds=0,
                )
            else:
                driver.decline([offer.id], refuse_seconds=0)

    async def status_update(self, driver: SchedulerDriver, status: tpb.TaskStatus) -> None:
        if status.state == tpb.TASK_RUNNING:
            self.running += 1


async def test_two_frameworks_with_endless_work_converge_to_equal_dominant_shares(tmp_path) -> None:
    # One agent of 9 cpus and 18 GB: the DRF paper's example, with real tasks.
    c = LocalCluster(
        tmp_path, agents=1, agent_resources="cpus:9;mem:18432;disk:1000", master_flags=["--allocation-interval", "0.1"]
    )
    try:
        await c.start()
        a, b = Greedy("a", 1, 4096), Greedy("b", 3, 1024)
        total = Resources.parse("cpus:9;mem:18432")
        # A starts first and takes more than its share; as its tasks end, DRF gives B its share.
        async with (
            framework(c.master_address, a, name="A"),
            framework(c.master_address, b, name="B"),
            OperatorClient(c.master_address) as client,
        ):
            if True:

                async def shares() -> dict[str, float] | None:
                    fws = {f.framework_info.name: f for f in (await client.frameworks()).frameworks}
                    got = {
                        n: Resources.from_proto(f.allocated).only("cpus", "mem").dominant_share(total)
                        for n, f in fws.items()
                    }
                    ok = all(abs(got.get(n, 0) - 2 / 3) < 0.01 for n in ("A", "B"))
                    return got if ok else None

                got = await eventually(shares, timeout=40, interval=0.02, what="A and B at dominant share 2/3")
                assert got["A"] == pytest.approx(2 / 3, abs=0.01) and got["B"] == pytest.approx(2 / 3, abs=0.01)
    finally:
        assert await c.stop() == []
