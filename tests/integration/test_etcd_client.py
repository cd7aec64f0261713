"""Our etcd client against a real etcd (Debian's etcd-server, TLS with client certificates)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from scheduler_sdk.etcd import Compare, EtcdClient, EtcdCompacted, EtcdError, EtcdTLS, Op, WatchEvent, parse_url
from scheduler_sdk.local_etcd import LocalEtcd


async def eventually(check: Callable[[], object], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.02)


async def test_put_get_and_a_prefix_read_in_pages(etcd_client: EtcdClient, etcd_prefix: str) -> None:
    for i in reversed(range(25)):
        await etcd_client.put(f"{etcd_prefix}/k/{i:03}", f"v{i}".encode())
    await etcd_client.put(f"{etcd_prefix}/k0", b"outside")  # right after the prefix's range
    got = await etcd_client.get(f"{etcd_prefix}/k/007")
    assert got is not None and got.value == b"v7" and got.version == 1
    assert await etcd_client.get(f"{etcd_prefix}/none") is None

    kvs = await etcd_client.get_prefix(f"{etcd_prefix}/k/", page=10)
    assert [kv.key for kv in kvs] == [f"{etcd_prefix}/k/{i:03}".encode() for i in range(25)]
    assert await etcd_client.delete(f"{etcd_prefix}/k/", prefix=True) == 25
    assert await etcd_client.get_prefix(f"{etcd_prefix}/k/") == []


async def test_a_txn_takes_its_success_or_its_failure_branch(etcd_client: EtcdClient, etcd_prefix: str) -> None:
    key = f"{etcd_prefix}/leader"
    first = await etcd_client.txn([Compare.create_revision(key, "==", 0)], [Op.put(key, b"one"), Op.get(key)])
    assert first.succeeded
    kvs = first.responses[1]
    assert first.responses[0] is None and kvs is not None and kvs[0].value == b"one"

    second = await etcd_client.txn(
        [Compare.create_revision(key, "==", 0)], [Op.put(key, b"two")], [Op.get(key, prefix=True)]
    )
    assert not second.succeeded and second.revision >= first.revision
    assert [kv.value for kv in second.responses[0] or []] == [b"one"]
    assert (await etcd_client.txn([Compare.value(key, "==", b"one")], [Op.delete(key)])).succeeded
    assert await etcd_client.get(key) is None


async def test_a_lease_kept_alive_keeps_its_key_and_an_expired_one_deletes_it(
    etcd_client: EtcdClient, etcd_prefix: str
) -> None:
    kept, lapsed = await etcd_client.grant_lease(1.5), await etcd_client.grant_lease(0.2)  # 2 s and 1 s
    await etcd_client.put(f"{etcd_prefix}/kept", b"k", lease=kept)
    await etcd_client.put(f"{etcd_prefix}/lapsed", b"l", lease=lapsed)
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        assert await etcd_client.keep_alive(kept) == 2.0
        await asyncio.sleep(0.5)
    assert await etcd_client.get(f"{etcd_prefix}/lapsed") is None
    kv = await etcd_client.get(f"{etcd_prefix}/kept")
    assert kv is not None and kv.lease == kept
    assert await etcd_client.keep_alive(lapsed) == 0.0
    await etcd_client.revoke_lease(kept)
    assert await etcd_client.get(f"{etcd_prefix}/kept") is None
    await etcd_client.revoke_lease(kept)  # gone already: no error


async def collect(client: EtcdClient, key: str, seen: list[WatchEvent], **kw: object) -> None:
    async for events in client.watch(key, **kw):  # type: ignore[arg-type]
        seen.extend(events)


@pytest.fixture
async def watching() -> AsyncIterator[Callable[..., list[WatchEvent]]]:
    tasks: list[asyncio.Task[None]] = []

    def start(client: EtcdClient, key: str, **kw: object) -> list[WatchEvent]:
        seen: list[WatchEvent] = []
        tasks.append(asyncio.create_task(collect(client, key, seen, **kw)))
        return seen

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_watch_sees_puts_and_deletes_and_history(
    etcd_client: EtcdClient, etcd_prefix: str, watching: Callable[..., list[WatchEvent]]
) -> None:
    first = await etcd_client.put(f"{etcd_prefix}/a", b"1")
    history = watching(etcd_client, f"{etcd_prefix}/", prefix=True, start_revision=first)
    await etcd_client.put(f"{etcd_prefix}/b", b"2")
    await etcd_client.delete(f"{etcd_prefix}/a")
    await etcd_client.put(f"{etcd_prefix}x", b"not under the prefix")
    await eventually(lambda: len(history) >= 3, what="three events")
    assert [(e.type, e.kv.key, e.kv.value) for e in history] == [
        ("PUT", f"{etcd_prefix}/a".encode(), b"1"),
        ("PUT", f"{etcd_prefix}/b".encode(), b"2"),
        ("DELETE", f"{etcd_prefix}/a".encode(), b""),
    ]


async def test_a_watch_resumes_after_etcd_restarts(
    local_etcd: Callable[[], LocalEtcd], watching: Callable[..., list[WatchEvent]]
) -> None:
    server = local_etcd()
    async with EtcdClient(server.endpoints, tls=server.client_tls("w", "master")) as client:
        marker = await client.put("/w-marker", b"")
        seen = watching(client, "/w/", prefix=True, start_revision=marker + 1)
        await client.put("/w/before", b"1")
        await eventually(lambda: len(seen) == 1, what="the first event")
        server.kill()
        server.start()
        await client.put("/w/after", b"2")
        await client.delete("/w/before")
        await eventually(lambda: len(seen) == 3, timeout=10.0, what="events after the restart")
        expected = [("PUT", b"/w/before"), ("PUT", b"/w/after"), ("DELETE", b"/w/before")]
        assert [(e.type, e.kv.key) for e in seen] == expected


async def test_calls_fail_over_to_an_endpoint_that_answers(
    etcd_server: LocalEtcd, etcd_prefix: str, dead_port: Callable[[], int]
) -> None:
    dead = f"127.0.0.1:{dead_port()}"
    tls = etcd_server.client_tls("etcd-test", "master")
    async with EtcdClient([dead, *etcd_server.endpoints], tls=tls, timeout=1.0) as client:
        await client.put(f"{etcd_prefix}/k", b"v")
        kv = await client.get(f"{etcd_prefix}/k")
        assert kv is not None and kv.value == b"v"
        statuses = await client.status()
        assert [(s.endpoint, s.healthy) for s in statuses] == [(dead, False), (etcd_server.endpoints[0], True)]
        assert statuses[1].is_leader and statuses[1].version.startswith("3.") and statuses[0].error

    other = f"127.0.0.1:{dead_port()}"
    async with EtcdClient([dead, other], tls=tls, timeout=1.0) as client:
        with pytest.raises(EtcdError) as raised:
            await client.get(f"{etcd_prefix}/k")
    message = str(raised.value)
    assert dead in message and other in message and "UNAVAILABLE" in message and "\n" not in message


async def test_without_a_client_certificate_etcd_refuses(etcd_server: LocalEtcd, etcd_prefix: str) -> None:
    ca_only = EtcdTLS(ca=etcd_server.client_tls("etcd-test", "master").ca)
    for tls in (ca_only, None):
        async with EtcdClient(etcd_server.endpoints, tls=tls, timeout=1.0) as client:
            with pytest.raises(EtcdError, match="no endpoint answered"):
                await client.put(f"{etcd_prefix}/k", b"v")


async def test_a_watch_from_a_compacted_revision_says_so(etcd_client: EtcdClient, etcd_prefix: str) -> None:
    first = await etcd_client.put(f"{etcd_prefix}/c", b"1")
    last = await etcd_client.put(f"{etcd_prefix}/c", b"2")
    await etcd_client.compact(last)
    with pytest.raises(EtcdCompacted, match=f"from revision {first}: compacted up to revision") as raised:
        async for _ in etcd_client.watch(f"{etcd_prefix}/c", start_revision=first):
            pass
    assert raised.value.revision == last


def test_local_etcd_restarts_on_its_ports_with_its_data_and_leaves_no_process(
    local_etcd: Callable[[], LocalEtcd],
) -> None:
    server = local_etcd()
    endpoints, pid = server.endpoints, server.process.pid if server.process else 0

    async def put_get(value: bytes | None) -> bytes | None:
        async with EtcdClient(server.endpoints, tls=server.client_tls("t", "operator")) as client:
            if value is not None:
                await client.put("/kept", value)
            kv = await client.get("/kept")
            return kv.value if kv else None

    assert asyncio.run(put_get(b"v")) == b"v"
    server.restart()
    assert server.endpoints == endpoints and server.process is not None and server.process.pid != pid
    assert asyncio.run(put_get(None)) == b"v"
    server.kill()
    assert not server.alive and server.process.returncode == -9
    assert server.url == f"etcd://{endpoints[0]}/aiomesos" and (server.data_dir / "etcd.log").stat().st_size > 0


def test_local_etcd_without_certificates_serves_plaintext(tmp_path: Path) -> None:
    server = LocalEtcd(tmp_path / "plain", None)
    try:
        server.start()
        endpoints, tls, prefix = parse_url(server.url)
        assert server.url.startswith("http://") and not tls and prefix == "/aiomesos"

        async def roundtrip() -> bytes | None:
            async with EtcdClient(endpoints) as client:
                await client.put("/p", b"plain")
                kv = await client.get("/p")
                return kv.value if kv else None

        assert asyncio.run(roundtrip()) == b"plain"
    finally:
        server.stop()
    assert not server.alive
