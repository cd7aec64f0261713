"""A thin asyncio client of etcd's v3 gRPC API (etcd 3.4, Debian's etcd-server), over `grpc.aio`.

Why our own and not aetcd: aetcd 1.0.0, the maintained asyncio client, speaks neither TLS nor to more than one
endpoint, and both are what a highly available master needs (security is on by default; an etcd cluster has
several members). The wire types are our own subset of etcd's protos (`proto/aiomesos/etcd/v3/rpc.proto`,
package `etcdserverpb`, etcd's field numbers and service names), so this speaks to a real etcd unchanged.

- Endpoints are `host:port`; `parse_url` (and `EtcdClient.from_url`) read `etcd://h:p[,h:p][/prefix]`,
  `https://...` (TLS) and `http://...`, the only way to ask for plaintext (a client made with `tls=None`).
- Every call has a deadline (`timeout`, per endpoint tried) and fails over to the next endpoint on UNAVAILABLE or
  DEADLINE_EXCEEDED; when none answers, `EtcdError` names each endpoint and why, on one line. Calls start at
  the endpoint that answered last.
- At most `max_in_flight` unary calls are in flight at once (the others wait): nothing queues without bound.
- `watch` is an async iterator that survives a reconnect: it resumes from the last revision it delivered + 1, on
  any endpoint; if that revision was compacted meanwhile it raises `EtcdCompacted` (the caller reads afresh).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import grpc
import structlog

from aiomesos.etcd.v3 import rpc_pb2 as epb
from aiomesos.etcd.v3 import rpc_pb2_grpc as egrpc
from scheduler_sdk.masters import DEFAULT_PREFIX, normalise_prefix

log = structlog.get_logger(__name__)

T = TypeVar("T")
DEFAULT_PORT = 2379
MAX_IN_FLIGHT = 64
_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
_WATCH_BACKOFF = (0.05, 1.0)  # first and longest pause between reconnects of a watch
_CHANNEL_OPTIONS = (
    # etcd restarts within seconds: reconnect soon (gRPC's default backoff grows to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # Notice a dead peer under a long-lived watch; etcd allows a ping every 5 s while a stream is open.
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 0),
)
_HOST_PORT = re.compile(r"(?:\[(?P<ip6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9._-]+))(?::(?P<port>[0-9]{1,5}))?")


class EtcdError(Exception):
    """etcd could not be reached or refused a call. The message is one line naming the endpoints and why; `code`
    is the gRPC status name of the last failure ("UNAVAILABLE", "NOT_FOUND", ...)."""

    def __init__(self, message: str, code: str = "UNAVAILABLE") -> None:
        super().__init__(message)
        self.code = code


class EtcdCompacted(EtcdError):
    """A watch cannot resume: the revisions it wanted were compacted away (`revision`: the oldest kept)."""

    def __init__(self, message: str, revision: int) -> None:
        super().__init__(message, "OUT_OF_RANGE")
        self.revision = revision


@dataclass(frozen=True)
class EtcdTLS:
    """PEM bytes: the CA that signed etcd's server certificate, and this client's certificate and key."""

    ca: bytes
    cert: bytes | None = None
    key: bytes | None = None


@dataclass(frozen=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int

    @classmethod
    def from_pb(cls, kv: epb.KeyValue) -> KeyValue:
        return cls(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)


@dataclass(frozen=True)
class WatchEvent:
    type: Literal["PUT", "DELETE"]
    kv: KeyValue


Key = bytes | str
_COMPARE_OPS = {
    "==": epb.Compare.EQUAL,
    "!=": epb.Compare.NOT_EQUAL,
    ">": epb.Compare.GREATER,
    "<": epb.Compare.LESS,
}


def _key(key: Key) -> bytes:
    return key.encode() if isinstance(key, str) else bytes(key)


def prefix_end(prefix: bytes) -> bytes:
    """The range end that covers every key starting with `prefix` (etcd's `clientv3.GetPrefixRangeEnd`)."""
    end = bytearray(prefix)
    for i in reversed(range(len(end))):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"  # every key


@dataclass(frozen=True)
class Compare:
    """One condition of a transaction: `Compare.create_revision(key, "==", 0)` (the key does not exist), ..."""

    key: bytes
    target: Literal["version", "create_revision", "mod_revision", "value", "lease"]
    op: str
    operand: int | bytes

    @classmethod
    def version(cls, key: Key, op: str, version: int) -> Compare:
        return cls._make(key, "version", op, version)

    @classmethod
    def create_revision(cls, key: Key, op: str, revision: int) -> Compare:
        return cls._make(key, "create_revision", op, revision)

    @classmethod
    def mod_revision(cls, key: Key, op: str, revision: int) -> Compare:
        return cls._make(key, "mod_revision", op, revision)

    @classmethod
    def value(cls, key: Key, op: str, value: bytes) -> Compare:
        return cls._make(key, "value", op, value)

    @classmethod
    def lease(cls, key: Key, op: str, lease_id: int) -> Compare:
        return cls._make(key, "lease", op, lease_id)

    @classmethod
    def _make(cls, key: Key, target: Any, op: str, operand: int | bytes) -> Compare:
        if op not in _COMPARE_OPS:
            raise ValueError(f"compare operator {op!r}: want one of {', '.join(_COMPARE_OPS)}")
        return cls(_key(key), target, op, operand)

    def to_pb(self) -> epb.Compare:
        targets = {
            "version": epb.Compare.VERSION,
            "create_revision": epb.Compare.CREATE,
            "mod_revision": epb.Compare.MOD,
            "value": epb.Compare.VALUE,
            "lease": epb.Compare.LEASE,
        }
        operand: dict[str, Any] = {self.target: self.operand}
        return epb.Compare(result=_COMPARE_OPS[self.op], target=targets[self.target], key=self.key, **operand)


@dataclass(frozen=True)
class Op:
    """One operation of a transaction: `Op.put`, `Op.delete`, `Op.get`, or a nested `Op.txn` (etcd >= 3.3)."""

    kind: Literal["put", "delete", "get", "txn"]
    key: bytes = b""
    value: bytes = b""
    lease: int = 0
    prefix: bool = False
    compares: tuple[Compare, ...] = ()
    success: tuple[Op, ...] = ()
    failure: tuple[Op, ...] = ()

    @classmethod
    def put(cls, key: Key, value: bytes, lease: int = 0) -> Op:
        return cls("put", _key(key), bytes(value), lease=lease)

    @classmethod
    def delete(cls, key: Key, prefix: bool = False) -> Op:
        return cls("delete", _key(key), prefix=prefix)

    @classmethod
    def get(cls, key: Key, prefix: bool = False) -> Op:
        return cls("get", _key(key), prefix=prefix)

    @classmethod
    def txn(cls, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()) -> Op:
        return cls("txn", compares=tuple(compares), success=tuple(success), failure=tuple(failure))

    def to_pb(self) -> epb.RequestOp:
        end = prefix_end(self.key) if self.prefix else b""
        match self.kind:
            case "put":
                return epb.RequestOp(request_put=epb.PutRequest(key=self.key, value=self.value, lease=self.lease))
            case "delete":
                return epb.RequestOp(request_delete_range=epb.DeleteRangeRequest(key=self.key, range_end=end))
            case "get":
                return epb.RequestOp(request_range=epb.RangeRequest(key=self.key, range_end=end))
            case _:
                return epb.RequestOp(request_txn=_txn_request(self.compares, self.success, self.failure))


def _txn_request(compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]) -> epb.TxnRequest:
    return epb.TxnRequest(
        compare=[c.to_pb() for c in compares],
        success=[o.to_pb() for o in success],
        failure=[o.to_pb() for o in failure],
    )


@dataclass
class TxnResult:
    succeeded: bool
    revision: int
    responses: list[list[KeyValue] | None] = field(default_factory=list)  # a get's kvs; None for other ops


@dataclass
class EndpointStatus:
    endpoint: str
    healthy: bool
    version: str = ""
    is_leader: bool = False
    db_size: int = 0
    error: str = ""


def parse_endpoint(text: str) -> str:
    """`host[:port]` -> `host:port` (etcd's port 2379 when none); ValueError for anything else."""
    m = _HOST_PORT.fullmatch(text.strip())
    port = int(m.group("port")) if m and m.group("port") else DEFAULT_PORT
    if m is None or not 0 < port < 65536:
        raise ValueError(f"etcd endpoint {text!r}: want host:port, such as 127.0.0.1:2379")
    host = f"[{m.group('ip6')}]" if m.group("ip6") else m.group("host")
    return f"{host}:{port}"


def parse_url(url: str) -> tuple[list[str], bool, str]:
    """`etcd://h:p[,h:p][/prefix]`, `https://...` or `http://...` -> (endpoints, TLS?, prefix). Only `http://` is
    plaintext; the prefix is the default (/aiomesos) when the URL names none. ValueError (one line) otherwise."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep or scheme.lower() not in ("etcd", "https", "http"):
        raise ValueError(f"etcd URL {url!r}: want etcd://HOST:PORT[,HOST:PORT][/PREFIX] (or https://, http://)")
    parts = urlsplit(f"{scheme}://{rest}")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(f"etcd URL {url!r}: no user, query or fragment allowed")
    if not parts.netloc:
        raise ValueError(f"etcd URL {url!r}: names no endpoint")
    endpoints = [parse_endpoint(e) for e in parts.netloc.split(",")]
    try:
        prefix = normalise_prefix(parts.path) if parts.path not in ("", "/") else DEFAULT_PREFIX
    except ValueError as e:
        raise ValueError(f"etcd URL {url!r}: {e}") from None
    return endpoints, scheme.lower() != "http", prefix


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _why(e: grpc.aio.AioRpcError) -> str:
    return f"{e.code().name} ({_one_line(e.details() or '')})"


@dataclass
class _Stubs:
    kv: egrpc.KVStub
    lease: egrpc.LeaseStub
    watch: egrpc.WatchStub
    maintenance: egrpc.MaintenanceStub
    cluster: egrpc.ClusterStub


class EtcdClient:
    """See the module's docstring. `endpoints`: `host:port` each; `tls` None: plaintext (only for http:// URLs)."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        tls: EtcdTLS | None = None,
        timeout: float = 2.0,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        if not endpoints:
            raise ValueError("etcd: no endpoint given")
        self.endpoints = [parse_endpoint(e) for e in endpoints]
        self.tls = tls
        self.timeout = timeout
        self._channels: dict[str, tuple[grpc.aio.Channel, _Stubs]] = {}
        self._preferred = 0
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._closed = False

    @classmethod
    def from_url(cls, url: str, tls: EtcdTLS | None, *, timeout: float = 2.0) -> tuple[EtcdClient, str]:
        """A client for `url` (see `parse_url`) and the URL's prefix. TLS unless the URL is http://, so an etcd://
        or https:// URL wants `tls`; an http:// URL is plaintext whatever `tls` is. ValueError (one line)."""
        endpoints, secure, prefix = parse_url(url)
        if secure and tls is None:
            raise ValueError(f"etcd URL {url!r} is TLS: it needs a CA (and a client certificate); http:// is plaintext")
        return cls(endpoints, tls=tls if secure else None, timeout=timeout), prefix

    def __repr__(self) -> str:
        return f"EtcdClient({','.join(self.endpoints)}, {'tls' if self.tls else 'plaintext'})"

    def _stubs(self, endpoint: str) -> _Stubs:
        if self._closed:
            raise EtcdError("etcd client is closed", "CANCELLED")
        if endpoint not in self._channels:
            if self.tls is None:
                channel = grpc.aio.insecure_channel(endpoint, options=_CHANNEL_OPTIONS)
            else:
                creds = grpc.ssl_channel_credentials(
                    root_certificates=self.tls.ca, private_key=self.tls.key, certificate_chain=self.tls.cert
                )
                channel = grpc.aio.secure_channel(endpoint, creds, options=_CHANNEL_OPTIONS)
            stubs = _Stubs(
                egrpc.KVStub(channel),
                egrpc.LeaseStub(channel),
                egrpc.WatchStub(channel),
                egrpc.MaintenanceStub(channel),
                egrpc.ClusterStub(channel),
            )
            self._channels[endpoint] = (channel, stubs)
        return self._channels[endpoint][1]

    def _order(self) -> list[int]:
        n = len(self.endpoints)
        return [(self._preferred + i) % n for i in range(n)]

    async def _call(self, what: str, call: Callable[[_Stubs, float], Awaitable[T]]) -> T:
        """`call` on the endpoint that answered last, then on each other one while they are unavailable."""
        failures = []
        async with self._in_flight:
            for i in self._order():
                endpoint = self.endpoints[i]
                try:
                    result = await call(self._stubs(endpoint), self.timeout)
                except grpc.aio.AioRpcError as e:
                    if e.code() not in _RETRYABLE:
                        raise EtcdError(f"etcd {endpoint}: {what} failed: {_why(e)}", e.code().name) from None
                    failures.append(f"{endpoint} {_why(e)}")
                    continue
                self._preferred = i
                return result
        raise EtcdError(f"etcd: {what}: no endpoint answered: {'; '.join(failures)}")

    async def get(self, key: Key) -> KeyValue | None:
        k = _key(key)
        response = await self._call(f"get {k!r}", lambda s, t: s.kv.Range(epb.RangeRequest(key=k), timeout=t))
        return KeyValue.from_pb(response.kvs[0]) if response.kvs else None

    async def get_prefix(self, prefix: Key, *, page: int = 1000) -> list[KeyValue]:
        """Every key under `prefix`, sorted by key, read `page` at a time from one revision (a consistent view)."""
        start = _key(prefix)
        end = prefix_end(start)
        revision = 0
        found: list[KeyValue] = []
        while True:
            request = epb.RangeRequest(
                key=start,
                range_end=end,
                limit=page,
                revision=revision,
                sort_order=epb.RangeRequest.ASCEND,
                sort_target=epb.RangeRequest.KEY,
            )
            response = await self._call(f"get prefix {_key(prefix)!r}", _range(request))
            revision = revision or response.header.revision
            found.extend(KeyValue.from_pb(kv) for kv in response.kvs)
            if not response.more or not response.kvs:
                return found
            start = response.kvs[-1].key + b"\0"

    async def put(self, key: Key, value: bytes, *, lease: int = 0) -> int:
        request = epb.PutRequest(key=_key(key), value=value, lease=lease)
        response = await self._call(f"put {request.key!r}", lambda s, t: s.kv.Put(request, timeout=t))
        return int(response.header.revision)

    async def delete(self, key: Key, *, prefix: bool = False) -> int:
        """Deletes the key (every key under it, with `prefix`); returns how many were deleted."""
        k = _key(key)
        request = epb.DeleteRangeRequest(key=k, range_end=prefix_end(k) if prefix else b"")
        response = await self._call(f"delete {k!r}", lambda s, t: s.kv.DeleteRange(request, timeout=t))
        return int(response.deleted)

    async def txn(self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()) -> TxnResult:
        request = _txn_request(compares, success, failure)
        response = await self._call("txn", lambda s, t: s.kv.Txn(request, timeout=t))
        responses: list[list[KeyValue] | None] = []
        for r in response.responses:
            if r.WhichOneof("response") == "response_range":
                responses.append([KeyValue.from_pb(kv) for kv in r.response_range.kvs])
            else:
                responses.append(None)
        return TxnResult(bool(response.succeeded), int(response.header.revision), responses)

    async def compact(self, revision: int) -> None:
        """Forget the history before `revision` (watches from earlier revisions end with EtcdCompacted)."""
        request = epb.CompactionRequest(revision=revision, physical=True)
        await self._call(f"compact to {revision}", lambda s, t: s.kv.Compact(request, timeout=t))

    async def grant_lease(self, ttl: float) -> int:
        """A new lease of `ttl` seconds (rounded up to whole seconds, at least 1); returns its id."""
        request = epb.LeaseGrantRequest(TTL=max(1, math.ceil(ttl)))
        response = await self._call("grant lease", lambda s, t: s.lease.LeaseGrant(request, timeout=t))
        if response.error:
            raise EtcdError(f"etcd: grant lease: {_one_line(response.error)}", "UNKNOWN")
        return int(response.ID)

    async def keep_alive(self, lease_id: int) -> float:
        """Refresh the lease once; returns the TTL it has now (0: etcd no longer has it)."""

        async def once(stubs: _Stubs, timeout: float) -> float:
            call = stubs.lease.LeaseKeepAlive(timeout=timeout)
            try:
                await call.write(epb.LeaseKeepAliveRequest(ID=lease_id))
                response = await call.read()
            finally:
                call.cancel()
            if response is grpc.aio.EOF:
                raise EtcdError(f"etcd: keep-alive of lease {lease_id:x}: the stream ended without an answer")
            return float(max(0, response.TTL))

        return await self._call(f"keep-alive of lease {lease_id:x}", once)

    async def revoke_lease(self, lease_id: int) -> None:
        """Revoke the lease (deleting its keys); a lease etcd no longer has is no error."""
        request = epb.LeaseRevokeRequest(ID=lease_id)
        try:
            await self._call(f"revoke lease {lease_id:x}", lambda s, t: s.lease.LeaseRevoke(request, timeout=t))
        except EtcdError as e:
            if e.code != "NOT_FOUND":
                raise

    async def members(self) -> list[str]:
        """The client URLs of the etcd cluster's members (as etcd knows them)."""
        response = await self._call(
            "member list", lambda s, t: s.cluster.MemberList(epb.MemberListRequest(), timeout=t)
        )
        return [url for member in response.members for url in member.clientURLs]

    async def status(self) -> list[EndpointStatus]:
        """The status of every endpoint, asked at once; never raises (an endpoint that does not answer says why)."""

        async def one(endpoint: str) -> EndpointStatus:
            try:
                response = await self._stubs(endpoint).maintenance.Status(epb.StatusRequest(), timeout=self.timeout)
            except grpc.aio.AioRpcError as e:
                return EndpointStatus(endpoint, healthy=False, error=_why(e))
            except EtcdError as e:
                return EndpointStatus(endpoint, healthy=False, error=str(e))
            errors = "; ".join(response.errors) or ("" if response.leader else "no leader")
            return EndpointStatus(
                endpoint,
                healthy=not errors,
                version=response.version,
                is_leader=response.leader != 0 and response.leader == response.header.member_id,
                db_size=int(response.dbSize),
                error=_one_line(errors),
            )

        return list(await asyncio.gather(*(one(e) for e in self.endpoints)))

    def watch(
        self, key: Key, *, prefix: bool = False, start_revision: int = 0
    ) -> AsyncGenerator[list[WatchEvent], None]:
        """The changes of `key` (of every key under it, with `prefix`) from `start_revision` (0: from now on), a
        batch at a time; runs until the consumer stops (or `EtcdCompacted`, or an error that no retry mends).
        A consumer that stops early closes it (`contextlib.aclosing`), which ends its stream at once."""
        return self._watch(_key(key), prefix, start_revision)

    async def _watch(self, key: bytes, prefix: bool, start_revision: int) -> AsyncGenerator[list[WatchEvent], None]:
        create = epb.WatchCreateRequest(key=key, range_end=prefix_end(key) if prefix else b"")
        next_revision = start_revision
        index = self._preferred
        pause = _WATCH_BACKOFF[0]
        while True:
            endpoint = self.endpoints[index]
            create.start_revision = next_revision
            # "hasleader": a member cut off from its cluster's leader ends the watch instead of keeping it silent.
            call = self._stubs(endpoint).watch.Watch(metadata=(("hasleader", "true"),))
            try:
                await call.write(epb.WatchRequest(create_request=create))
                async with asyncio.timeout(self.timeout):
                    created = await call.read()
                if created is grpc.aio.EOF or not created.created:
                    reason = "the watch was not created"
                else:
                    next_revision = next_revision or created.header.revision + 1
                    pause = _WATCH_BACKOFF[0]
                    async for events in _events(call, endpoint, key, next_revision):
                        next_revision = events[-1].kv.mod_revision + 1
                        yield events
                    reason = "the stream ended"
            except grpc.aio.AioRpcError as e:
                if e.code() not in (*_RETRYABLE, grpc.StatusCode.CANCELLED):
                    raise EtcdError(f"etcd {endpoint}: watch of {key!r} failed: {_why(e)}", e.code().name) from None
                reason = _why(e)
            except TimeoutError:
                reason = f"no answer within {self.timeout}s"
            finally:
                call.cancel()
            if self._closed:
                return
            index = (index + 1) % len(self.endpoints)
            log.info("etcd watch reconnecting", key=key, endpoint=endpoint, why=reason, from_revision=next_revision)
            await asyncio.sleep(pause)
            pause = min(pause * 2, _WATCH_BACKOFF[1])

    async def close(self) -> None:
        self._closed = True
        channels, self._channels = list(self._channels.values()), {}
        for channel, _ in channels:
            with contextlib.suppress(Exception):
                await channel.close()

    async def __aenter__(self) -> EtcdClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def _events(call: Any, endpoint: str, key: bytes, from_revision: int) -> AsyncIterator[list[WatchEvent]]:
    """The batches of events of one watch stream, until it ends."""
    while True:
        response = await call.read()
        if response is grpc.aio.EOF:
            return
        if response.compact_revision:
            raise EtcdCompacted(
                f"etcd {endpoint}: watch of {key!r} from revision {from_revision}: compacted up to revision "
                f"{response.compact_revision}",
                response.compact_revision,
            )
        if response.canceled:
            raise EtcdError(f"etcd {endpoint}: watch of {key!r} cancelled: {_one_line(response.cancel_reason)}")
        if response.events:
            events = [_event(e) for e in response.events]
            from_revision = events[-1].kv.mod_revision + 1
            yield events


def _range(request: epb.RangeRequest) -> Callable[[_Stubs, float], Awaitable[epb.RangeResponse]]:
    return lambda stubs, timeout: stubs.kv.Range(request, timeout=timeout)


def _event(e: epb.Event) -> WatchEvent:
    return WatchEvent("DELETE" if e.type == epb.Event.DELETE else "PUT", KeyValue.from_pb(e.kv))
