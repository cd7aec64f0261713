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
    return ((LEADER_METADATA, leader.address),) if leader is not None else ()


def leader_hint(error: grpc.RpcError) -> str | None:
    """The leader's address a standby master named in its refusal, if it named one."""
    trailing: Any = None
    try:
        trailing = error.trailing_metadata()
    except Exception:  # a locally made error has none
        return None
    for key, value in trailing or ():
        if key == LEADER_METADATA and isinstance(value, str) and value:
            return value
    return None
