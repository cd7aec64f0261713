"""The lease-backed election against a real etcd: one leader at a time, a successor within the lease's ttl, a
leader cut off from etcd steps down by itself, and a deposed leader's fence fails."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import pytest

from mesos_master.election import Election, Term
from scheduler_sdk.etcd import EtcdClient, Op
from scheduler_sdk.local_etcd import LocalEtcd
from scheduler_sdk.masters import MasterRecord, members_prefix

TTL = 2.0


def record(master_id: str) -> MasterRecord:
    return MasterRecord(master_id=master_id, address=f"127.0.0.1:{5050 + len(master_id)}", started_at=time.time())


async def eventually(check: Callable[[], object], timeout: float, what: str) -> float:
    """Waits until `check()` is true; returns how long that took."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


@pytest.fixture
async def tasks() -> AsyncIterator[list[asyncio.Task[object]]]:
    """Tasks a test starts: cancelled after it, passed or failed."""
    started: list[asyncio.Task[object]] = []
    yield started
    for task in started:
        task.cancel()
    await asyncio.gather(*started, return_exceptions=True)


async def test_one_leads_and_the_other_takes_over_when_its_lease_is_revoked(
    etcd_client: EtcdClient, etcd_prefix: str, tasks: list[asyncio.Task[object]]
) -> None:
    a, b = (Election(etcd_client, etcd_prefix, record(n), TTL) for n in ("a", "b"))
    term_a = await a.campaign()
    assert term_a.record.master_id == "a" and term_a.record.elected_at > 0
    campaign_b = asyncio.create_task(b.campaign())
    tasks.append(campaign_b)
    await eventually(lambda: b.leader() is not None, 5.0, "b sees a lead")
    assert b.leader() == term_a.record and not campaign_b.done()

    await etcd_client.revoke_lease(term_a.lease_id)
    await eventually(term_a.lost.is_set, TTL, "a knows it lost")
    await eventually(campaign_b.done, TTL + 1.0, "b leads")
    term_b = campaign_b.result()
    assert isinstance(term_b, Term) and term_b.record.master_id == "b"
    assert term_b.create_revision > term_a.create_revision

    # a's fence fails from now on; b's holds.
    assert not (await etcd_client.txn([term_a.fence()], [Op.put(f"{etcd_prefix}/registry/x", b"a")])).succeeded
    assert (await etcd_client.txn([term_b.fence()], [Op.put(f"{etcd_prefix}/registry/x", b"b")])).succeeded
    await b.resign(term_b)
    assert term_b.lost.is_set() and await etcd_client.get(term_b.key) is None


async def test_a_crashed_leaders_lease_expires_and_a_standby_leads_within_ttl(
    etcd_client: EtcdClient, etcd_prefix: str, tasks: list[asyncio.Task[object]]
) -> None:
    a, b = (Election(etcd_client, etcd_prefix, record(n), TTL) for n in ("a", "b"))
    term_a = await a.campaign()
    campaign_b = asyncio.create_task(b.campaign())
    tasks.append(campaign_b)
    await eventually(lambda: b.leader() is not None, 5.0, "b sees a lead")
    assert term_a._holder is not None
    term_a._holder.cancel()  # a stops refreshing, as a master killed -9
    took = await eventually(campaign_b.done, TTL + 1.0, "b leads after a's lease expired")
    assert campaign_b.result().record.master_id == "b", took


async def test_a_leader_cut_off_from_etcd_steps_down_and_a_campaign_succeeds_when_etcd_is_back(
    local_etcd: Callable[[], LocalEtcd],
) -> None:
    server = local_etcd()
    async with EtcdClient(server.endpoints, tls=server.client_tls("a", "master"), timeout=0.5) as client:
        a = Election(client, "/cluster", record("a"), TTL)
        term = await a.campaign()
        server.stop()
        stopped = time.monotonic()
        await eventually(term.lost.is_set, TTL + 0.5, "the leader steps down")
        assert time.monotonic() - stopped <= TTL + 0.5 and "not refreshed within" in term.why
        await a.resign(term)  # etcd is down: gives up quietly

        server.start()
        async with asyncio.timeout(TTL * 3 + 5):  # a's old lease lives on in etcd for up to ttl
            again = await a.campaign()
        assert again.create_revision > term.create_revision and not again.lost.is_set()
        await a.resign(again)


async def test_members_keep_their_key_and_follow_the_leader(
    etcd_client: EtcdClient, etcd_prefix: str, tasks: list[asyncio.Task[object]]
) -> None:
    a, b = (Election(etcd_client, etcd_prefix, record(n), TTL) for n in ("a", "b"))
    tasks.extend(asyncio.create_task(e.run_member()) for e in (a, b))
    member_a = members_prefix(etcd_prefix) + b"a"

    async def members() -> dict[bytes, int]:
        return {kv.key: kv.lease for kv in await etcd_client.get_prefix(members_prefix(etcd_prefix))}

    found: dict[bytes, int] = {}
    deadline = time.monotonic() + 5.0
    while len(found) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        found = await members()
    assert set(found) == {member_a, members_prefix(etcd_prefix) + b"b"}

    term = await a.campaign()
    await eventually(lambda: b.leader() == term.record, 5.0, "b follows the leader")
    await a.resign(term)
    await eventually(lambda: b.leader() is None, 5.0, "b sees no leader")

    await etcd_client.revoke_lease(found[member_a])  # as etcd losing it: the member writes it again
    again: dict[bytes, int] = {}
    deadline = time.monotonic() + TTL + 2.0
    while again.get(member_a, found[member_a]) == found[member_a] and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        again = await members()
    assert again.get(member_a, found[member_a]) != found[member_a]
    with contextlib.suppress(Exception):
        await etcd_client.delete(etcd_prefix, prefix=True)
