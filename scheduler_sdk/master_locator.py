"""Finding the leading master, for every client that dials one (the driver, an agent's master link, the
OperatorClient): which address to try next, and what a failed try says about the one after.

- A list (`h1:p1,h2:p2`): each address in turn. A standby's refusal names the leader (`leader_hint`): that
  address is tried next, at once. A dead address or a standby that names nobody: the next one in the list, at
  once, until every address has been tried since the last success; then the caller backs off.
- `etcd://h:p[,h:p]/prefix`: the leader's `MasterRecord` at PREFIX/leader, read again before every try (no
  record: no leader elected right now, `NoMasterError`). etcd is reached with the client's own TLS material:
  its CA, and its certificate and key when it has them (a client with only a bearer token cannot read an etcd
  that requires client certificates: the error says so).

The policy (`MasterLocator`) is pure apart from the etcd read, which is injectable (`read_leader`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc

from scheduler_sdk.etcd import EtcdClient, EtcdError, EtcdTLS
from scheduler_sdk.masters import MasterRecord, MasterSpec, leader_hint, leader_key, parse_master
from scheduler_sdk.security.config import ClientConfig

LeaderReader = Callable[[], Awaitable[MasterRecord | None]]

#: Leader hints followed in a row without a backoff: two standbys that name each other (one of them with a
#: stale view) must not make a client spin.
MAX_REDIRECTS = 2


class NoMasterError(Exception):
    """There is no master to try right now (etcd names no leader, or cannot be read): try again later."""


class MasterLocator:
    """Where to look for the leading master, and where next after a try that failed."""

    def __init__(
        self, spec: MasterSpec | str, config: ClientConfig | None = None, *, read_leader: LeaderReader | None = None
    ) -> None:
        self.spec = parse_master(spec) if isinstance(spec, str) else spec
        self.config = config
        self._read_leader = read_leader
        self._etcd: EtcdClient | None = None  # made at the first read
        self._index = 0  # the list's next address
        self._hint: str | None = None  # the leader a standby named, tried next
        self._tried = 0  # list addresses tried since the last success or backoff
        self._redirects = 0  # hints followed in a row
        self.current = ""  # the address last handed out

    def __str__(self) -> str:
        return str(self.spec)

    async def candidate(self) -> str:
        """The address to try now; raises NoMasterError when etcd names none (or cannot be read)."""
        if self._hint is not None:
            address = self._hint
        elif self.spec.uses_etcd:
            address = self._record_address(await self._leader())
        else:
            address = self.spec.addresses[self._index]
        self.current = address
        return address

    def attached(self, address: str) -> None:
        """`address` served us: start from it next time."""
        self._hint = None
        self._tried = 0
        self._redirects = 0
        if address in self.spec.addresses:
            self._index = self.spec.addresses.index(address)

    def failed(self, address: str, error: BaseException | None = None) -> bool:
        """`address` did not serve us (unreachable, a standby, the stream broke): move on. True: try the next
        candidate at once; False: back off first (every candidate has been tried, or etcd is to be read again)."""
        hint = leader_hint(error, token=self._token_only()) if isinstance(error, grpc.RpcError) else None
        self._hint = None
        if hint and hint != address and self._redirects < MAX_REDIRECTS:
            self._hint = hint
            self._redirects += 1
            return True
        if address in self.spec.addresses:
            self._index = (self.spec.addresses.index(address) + 1) % len(self.spec.addresses)
        self._tried += 1
        if self.spec.uses_etcd or not address or self._tried >= len(self.spec.addresses):
            self._tried = 0
            self._redirects = 0
            return False
        return True

    async def close(self) -> None:
        if self._etcd is not None:
            etcd, self._etcd = self._etcd, None
            await etcd.close()

    # ------------------------------------------------------------------ etcd
    def _record_address(self, record: MasterRecord) -> str:
        # A client with a bearer token and no certificate talks to the masters' token port.
        return record.token_address if self._token_only() and record.token_address else record.address

    def _token_only(self) -> bool:
        """A client with a bearer token and no certificate: it talks to the masters' token ports."""
        return self.config is not None and bool(self.config.token) and self.config.cert is None

    async def _leader(self) -> MasterRecord:
        record = await (self._read_leader or self._read_etcd)()
        if record is None:
            raise NoMasterError(f"{self.spec}: etcd names no leading master right now")
        return record

    async def _read_etcd(self) -> MasterRecord | None:
        if self._etcd is None:
            self._etcd = EtcdClient(list(self.spec.etcd), tls=etcd_tls(self.config))
        key = leader_key(self.spec.prefix)
        try:
            kv = await self._etcd.get(key)
        except EtcdError as e:
            why = f"{self.spec}: cannot read the leader from etcd: {e}{self._token_only_note()}"
            raise NoMasterError(why) from None
        if kv is None:
            return None
        try:
            return MasterRecord.decode(kv.value)
        except ValueError as e:
            raise NoMasterError(f"{self.spec}: etcd key {key.decode()}: {e}") from None

    def _token_only_note(self) -> str:
        if self.config is not None and self.config.secure and self.config.cert is None:
            return (
                " (this client has a bearer token but no certificate: an etcd that requires client certificates "
                "refuses it; give the masters' addresses, HOST:PORT,HOST:PORT, instead of etcd://)"
            )
        return ""


def etcd_tls(config: ClientConfig | None) -> EtcdTLS | None:
    """The client's own TLS material as etcd's (`EtcdTLS`): None for a plaintext client (an insecure cluster)."""
    if config is None or config.ca is None:
        return None
    try:
        ca = config.ca.read_bytes()
        cert = config.cert.read_bytes() if config.cert is not None else None
        key = config.key.read_bytes() if config.key is not None else None
    except OSError as e:
        raise NoMasterError(f"cannot read the client's TLS material for etcd: {e}") from None
    return EtcdTLS(ca=ca, cert=cert, key=key)
