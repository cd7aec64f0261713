"""The registry in etcd, for highly available masters: one key per record under PREFIX/registry/, every write one
transaction guarded by the leader's fence (its term: the leader key's create_revision), so a deposed leader can
write nothing.

Keys (each name percent-encoded, so that a role's '/' stays inside its name):
  agents/ID (AgentInfo)          frameworks/ID (FrameworkInfo)    removed_frameworks/ID ("1")
  weights/ROLE (float, text)     quotas/ROLE (operator QuotaInfo)  reservations/AGENT (ResourceList)
  unreachable/AGENT (time, text)

`apply` writes a batch as one transaction per chunk of at most 128 operations and under 1 MiB (etcd's default
limits), in order: a batch that fits one chunk is atomic; a bigger one is applied chunk by chunk (each atomic,
each fenced). Within a chunk the last write of a key wins, as applying the operations one by one would (etcd
refuses two writes of one key in a transaction). A failed fence raises FencedError and writes nothing of that
chunk. The etcd client belongs to the caller: `close` leaves it open.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote

import structlog
from google.protobuf.message import DecodeError

from aiomesos.v1 import operator_pb2 as opb
from aiomesos.v1 import resources_pb2 as pb
from mesos_master.registry.base import FencedError, Registry, RegistryError, RegistryState
from mesos_master.registry.operations import (
    AdmitAgent,
    MarkAgentUnreachable,
    Operation,
    PutFramework,
    RemoveAgent,
    RemoveFramework,
    RemoveQuota,
    UpdateQuota,
    UpdateReservations,
    UpdateWeight,
)
from scheduler_sdk.etcd import Compare, EtcdClient, EtcdError, Op
from scheduler_sdk.masters import registry_prefix

log = structlog.get_logger(__name__)

MAX_TXN_OPS = 128  # etcd's --max-txn-ops
MAX_TXN_BYTES = 1 << 20  # under etcd's --max-request-bytes (1.5 MiB)
_OP_OVERHEAD = 32  # what a put costs on the wire besides its key and value (generously)
AGENTS, FRAMEWORKS, REMOVED, WEIGHTS, QUOTAS, RESERVATIONS, UNREACHABLE = (
    "agents",
    "frameworks",
    "removed_frameworks",
    "weights",
    "quotas",
    "reservations",
    "unreachable",
)
REMOVED_MARK = b"1"


@dataclass(frozen=True)
class _Put:
    value: bytes
    if_exists: bytes = b""  # only if this key exists before the transaction (a nested txn)


_Write = _Put | None  # None: delete


class _Chunk:
    """The writes of consecutive operations, the last one of each key kept."""

    def __init__(self) -> None:
        self.writes: dict[bytes, _Write] = {}
        self.size = 0

    def fits(self, writes: list[tuple[bytes, _Write]]) -> bool:
        new_keys = {k for k, _ in writes if k not in self.writes}
        return len(self.writes) + len(new_keys) <= MAX_TXN_OPS and self.size + _size(writes) <= MAX_TXN_BYTES

    def add(self, writes: list[tuple[bytes, _Write]]) -> None:
        self.size += _size(writes)
        for key, write in writes:
            self.writes[key] = write

    def ops(self) -> list[Op]:
        ops = []
        for key, write in self.writes.items():
            if write is None:
                ops.append(Op.delete(key))
            elif write.if_exists:
                ops.append(Op.txn([Compare.version(write.if_exists, ">", 0)], [Op.put(key, write.value)]))
            else:
                ops.append(Op.put(key, write.value))
        return ops


def _size(writes: list[tuple[bytes, _Write]]) -> int:
    return sum(len(k) + _OP_OVERHEAD + (0 if w is None else len(w.value) + len(w.if_exists)) for k, w in writes)


class EtcdRegistry(Registry):
    def __init__(self, client: EtcdClient, prefix: str, fence: Compare | None) -> None:
        self.client = client
        self.base = registry_prefix(prefix)
        self.fence = fence

    def key(self, kind: str, name: str) -> bytes:
        return self.base + f"{kind}/{quote(name, safe='')}".encode()

    async def load(self) -> RegistryState:
        try:
            kvs = await self.client.get_prefix(self.base)
        except EtcdError as e:
            raise RegistryError(f"etcd registry: cannot load: {e}") from None
        state = RegistryState()
        for kv in kvs:
            kind, _, name = kv.key[len(self.base) :].decode(errors="replace").partition("/")
            try:
                _load_one(state, kind, unquote(name), kv.value)
            except (DecodeError, ValueError) as e:
                raise RegistryError(f"etcd registry: key {kv.key.decode(errors='replace')}: bad value: {e}") from None
        for framework_id in state.removed_frameworks:
            state.frameworks.pop(framework_id, None)
        return state

    async def apply(self, operations: Sequence[Operation]) -> None:
        chunk = _Chunk()
        for operation in operations:
            writes = self._writes(operation, chunk)
            if not chunk.fits(writes):
                await self._commit(chunk)
                chunk = _Chunk()
                writes = self._writes(operation, chunk)
                if not chunk.fits(writes):
                    raise RegistryError(f"etcd registry: {type(operation).__name__} is too big for one transaction")
            chunk.add(writes)
        if chunk.writes:
            await self._commit(chunk)

    def _writes(self, operation: Operation, chunk: _Chunk) -> list[tuple[bytes, _Write]]:
        """The key writes of one operation, given the writes before it in its chunk."""
        match operation:
            case AdmitAgent(info):
                admitted = _Put(info.SerializeToString())
                return [(self.key(AGENTS, info.id), admitted), (self.key(UNREACHABLE, info.id), None)]
            case RemoveAgent(agent_id):
                return [(self.key(AGENTS, agent_id), None), (self.key(UNREACHABLE, agent_id), None)]
            case MarkAgentUnreachable(agent_id, since):
                return [(self.key(UNREACHABLE, agent_id), _Put(repr(float(since)).encode()))]
            case PutFramework(info):
                return [(self.key(FRAMEWORKS, info.id), _Put(info.SerializeToString()))]
            case RemoveFramework(framework_id):
                return self._remove_framework(framework_id, chunk)
            case UpdateWeight(role, weight):
                return [(self.key(WEIGHTS, role), _Put(repr(float(weight)).encode()))]
            case UpdateQuota(role, guarantee, limit):
                quota = opb.QuotaInfo(role=role, guarantee=guarantee, limit=limit or (), has_limit=limit is not None)
                return [(self.key(QUOTAS, role), _Put(quota.SerializeToString()))]
            case RemoveQuota(role):
                return [(self.key(QUOTAS, role), None)]
            case UpdateReservations(agent_id, resources):
                value = pb.ResourceList(resources=resources).SerializeToString()
                return [(self.key(RESERVATIONS, agent_id), _Put(value) if resources else None)]
            case _:
                raise RegistryError(f"unknown registry operation {operation!r}")

    def _remove_framework(self, framework_id: str, chunk: _Chunk) -> list[tuple[bytes, _Write]]:
        """As SQLite's: a framework the registry has is marked removed (for good); an unknown one is no change."""
        framework, removed = self.key(FRAMEWORKS, framework_id), self.key(REMOVED, framework_id)
        if framework not in chunk.writes:  # it exists if it did before this chunk
            return [(removed, _Put(REMOVED_MARK, if_exists=framework)), (framework, None)]
        if chunk.writes[framework] is not None:  # put earlier in this chunk
            return [(removed, _Put(REMOVED_MARK)), (framework, None)]
        return []  # removed earlier in this chunk already

    async def _commit(self, chunk: _Chunk) -> None:
        compares = [self.fence] if self.fence is not None else []
        failure = [Op.get(self.fence.key)] if self.fence is not None else []
        try:
            result = await self.client.txn(compares, chunk.ops(), failure)
        except EtcdError as e:
            raise RegistryError(f"etcd registry: cannot write: {e}") from None
        if not result.succeeded:
            assert self.fence is not None
            kvs = result.responses[0] if result.responses else None
            now = f"its create_revision is now {kvs[0].create_revision}" if kvs else "it is gone"
            raise FencedError(
                f"etcd registry: this master no longer leads: the leader key {self.fence.key.decode()} is not this "
                f"term's (create_revision {self.fence.operand!r}): {now}; nothing was written"
            )

    async def close(self) -> None:
        """Nothing to close: the client is the caller's."""


def _load_one(state: RegistryState, kind: str, name: str, value: bytes) -> None:
    match kind:
        case "agents":
            state.agents[name] = pb.AgentInfo.FromString(value)
        case "frameworks":
            state.frameworks[name] = pb.FrameworkInfo.FromString(value)
        case "removed_frameworks":
            state.removed_frameworks.add(name)
        case "weights":
            state.weights[name] = float(value)
        case "quotas":
            quota = opb.QuotaInfo.FromString(value)
            state.quotas[name] = (list(quota.guarantee), list(quota.limit) if quota.has_limit else None)
        case "reservations":
            state.reservations[name] = list(pb.ResourceList.FromString(value).resources)
        case "unreachable":
            state.unreachable[name] = float(value)
        case _:
            log.warning("etcd registry: a key of an unknown kind, left alone", kind=kind, name=name)
