"""What masters, and everyone who looks for one, agree on: where in etcd the leader and the members are written,
what such a record holds, and how a standby master says who leads (so that a client follows it).

etcd layout under a cluster's prefix (default `/aiomesos`):
- `PREFIX/leader`: the leader's `MasterRecord` (JSON), bound to its lease: it goes when the leader does;
- `PREFIX/members/MASTER_ID`: every running master's `MasterRecord`, each bound to that master's lease;
- `PREFIX/registry/...`: the registry (written only by the leader, each write fenced by its term).

A standby master answers a call it does not serve with UNAVAILABLE and the trailing metadata `aiomesos-leader`
(the leader's host:port) when it knows one; `leader_hint` reads it back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import grpc

DEFAULT_PREFIX = "/aiomesos"
LEADER_METADATA = "aiomesos-leader"
LEADER_TOKEN_METADATA = "aiomesos-leader-token"  # the leader's bearer-token port, for clients without a certificate


def normalise_prefix(prefix: str) -> str:
    """`aiomesos`, `/aiomesos/` -> `/aiomesos`; raises ValueError for an empty or odd prefix."""
    cleaned = "/" + prefix.strip().strip("/")
    if cleaned == "/" or any(not part for part in cleaned[1:].split("/")) or any(c in cleaned for c in " \t\n\\"):
        raise ValueError(f"etcd prefix {prefix!r}: want a path such as /aiomesos")
    return cleaned


def leader_key(prefix: str) -> bytes:
    return f"{prefix}/leader".encode()


def members_prefix(prefix: str) -> bytes:
    return f"{prefix}/members/".encode()


def registry_prefix(prefix: str) -> bytes:
    return f"{prefix}/registry/".encode()


@dataclass(frozen=True, slots=True)
class MasterRecord:
    """One master as etcd shows it: where to reach it and since when it runs (and leads)."""

    master_id: str
    address: str  # host:port of its gRPC API
    hostname: str = ""
    token_address: str = ""  # host:port of its bearer-token port, if it has one
    started_at: float = 0.0
    elected_at: float = 0.0

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes) -> MasterRecord:
        """Raises ValueError for something that is not a master record."""
        try:
            raw: Any = json.loads(data)
            return cls(
                master_id=str(raw["master_id"]),
                address=str(raw["address"]),
                hostname=str(raw.get("hostname", "")),
                token_address=str(raw.get("token_address", "")),
                started_at=float(raw.get("started_at", 0.0)),
                elected_at=float(raw.get("elected_at", 0.0)),
            )
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"not a master record: {e}") from None


def standby_message(master_id: str, leader: MasterRecord | None) -> str:
    if leader is None:
        return f"master {master_id} is a standby and no leader is elected yet: try again shortly"
    return f"master {master_id} is a standby: the leader is master {leader.master_id} at {leader.address}"


def standby_metadata(leader: MasterRecord | None) -> tuple[tuple[str, str], ...]:
    if leader is None:
        return ()
    token = ((LEADER_TOKEN_METADATA, leader.token_address),) if leader.token_address else ()
    return ((LEADER_METADATA, leader.address), *token)


def leader_hint(error: grpc.RpcError, *, token: bool = False) -> str | None:
    """The leader's address a standby master named in its refusal, if it named one (`token`: its bearer-token
    port, for a client without a certificate; its main port when it has none)."""
    trailing: Any = None
    try:
        trailing = error.trailing_metadata()
    except Exception:  # a locally made error has none
        return None
    named = {key: value for key, value in trailing or () if isinstance(value, str) and value}
    if token and LEADER_TOKEN_METADATA in named:
        return named[LEADER_TOKEN_METADATA]
    return named.get(LEADER_METADATA)


# ----------------------------------------------------------------------------------------- where to look
MASTER_FORMS = "HOST:PORT, HOST:PORT,HOST:PORT... or etcd://HOST:PORT[,HOST:PORT...]/PREFIX"


@dataclass(frozen=True, slots=True)
class MasterSpec:
    """Where a client looks for the leading master: a list of masters' addresses, tried in turn (following the
    leader a standby names), or etcd's endpoints and the cluster's prefix, where the leader's record is."""

    addresses: tuple[str, ...] = ()
    etcd: tuple[str, ...] = ()
    prefix: str = DEFAULT_PREFIX

    @property
    def uses_etcd(self) -> bool:
        return bool(self.etcd)

    def __str__(self) -> str:
        if self.etcd:
            return f"etcd://{','.join(self.etcd)}{self.prefix}"
        return ",".join(self.addresses)


def check_address(text: str) -> str:
    """`HOST:PORT` (an IPv6 host in brackets), stripped; raises ValueError naming the text."""
    address = text.strip()
    host, sep, port = address.rpartition(":")
    if not sep or not host or any(c.isspace() or c in "/,@" for c in host):
        raise ValueError(f"{text!r} is not HOST:PORT")
    if not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError(f"{text!r}: the port must be 1-65535")
    return address


def _addresses(text: str) -> tuple[str, ...]:
    parts = [check_address(part) for part in text.split(",")]
    return tuple(dict.fromkeys(parts))  # the first of each, in order


def parse_master(text: str) -> MasterSpec:
    """`--master`, `$AIOMESOS_MASTER` or the client config's `master`: `host:port`, a comma-separated list of
    them, or `etcd://h:p[,h:p]/prefix` (as Mesos took zk://; no prefix: /aiomesos). Raises ValueError, one
    readable line that quotes the text."""
    raw = text.strip()
    try:
        if not raw:
            raise ValueError("empty")
        scheme, sep, rest = raw.partition("://")
        if not sep:
            return MasterSpec(addresses=_addresses(raw))
        if scheme.lower() != "etcd":
            raise ValueError(f"unknown scheme {scheme!r}")
        hosts, slash, path = rest.partition("/")
        if not hosts:
            raise ValueError("no etcd endpoint")
        prefix = normalise_prefix(path) if slash and path.strip("/") else DEFAULT_PREFIX
        return MasterSpec(etcd=_addresses(hosts), prefix=prefix)
    except ValueError as e:
        raise ValueError(f"master {text!r}: {e}; the forms are {MASTER_FORMS}") from None
