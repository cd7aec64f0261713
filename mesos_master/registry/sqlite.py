"""The embedded registry: one SQLite file in the master's work dir (WAL, synchronous=FULL). Its tables are the
registry's state, not a log: each operation updates them in place (schema 1, unchanged since the first release)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from aiomesos.v1 import resources_pb2 as pb
from mesos_master.registry.base import Registry, RegistryError, RegistryState
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

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS agents (id TEXT PRIMARY KEY, info BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS weights (role TEXT PRIMARY KEY, weight REAL NOT NULL);
CREATE TABLE IF NOT EXISTS quotas (role TEXT PRIMARY KEY, guarantee BLOB NOT NULL, lim BLOB);
CREATE TABLE IF NOT EXISTS reservations (agent_id TEXT PRIMARY KEY, resources BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS unreachable_agents (id TEXT PRIMARY KEY, since REAL NOT NULL);
CREATE TABLE IF NOT EXISTS frameworks (
    id TEXT PRIMARY KEY,
    info BLOB NOT NULL,
    removed INTEGER NOT NULL DEFAULT 0
);
"""


class SQLiteRegistry(Registry):
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # a batch on the worker thread, or a close
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            raise RegistryError(f"{path}: registry schema {row[0]} is not the supported {SCHEMA_VERSION}")

    async def load(self) -> RegistryState:
        return self.load_now()

    def load_now(self) -> RegistryState:
        """`load`, for code that is not async (tools, tests)."""
        state = RegistryState()
        for agent_id, blob in self._db.execute("SELECT id, info FROM agents"):
            state.agents[agent_id] = pb.AgentInfo.FromString(blob)
        for framework_id, blob, removed in self._db.execute("SELECT id, info, removed FROM frameworks"):
            if removed:
                state.removed_frameworks.add(framework_id)
            else:
                state.frameworks[framework_id] = pb.FrameworkInfo.FromString(blob)
        for role, weight in self._db.execute("SELECT role, weight FROM weights"):
            state.weights[role] = weight
        for role, guarantee, limit in self._db.execute("SELECT role, guarantee, lim FROM quotas"):
            state.quotas[role] = (_resources(guarantee), None if limit is None else _resources(limit))
        for agent_id, blob in self._db.execute("SELECT agent_id, resources FROM reservations"):
            state.reservations[agent_id] = _resources(blob)
        for agent_id, since in self._db.execute("SELECT id, since FROM unreachable_agents"):
            state.unreachable[agent_id] = since
        return state

    async def apply(self, operations: Sequence[Operation]) -> None:
        """One transaction for the batch, committed (fsync) on a worker thread so that the event loop serves on
        meanwhile; the dispatcher applies one batch at a time."""
        if operations:
            await asyncio.to_thread(self.apply_now, operations)

    def apply_now(self, operations: Sequence[Operation]) -> None:
        """`apply`, for code that is not async (tools, tests)."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for operation in operations:
                    self._apply_one(operation)
                self._db.execute("COMMIT")
            except BaseException as e:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(e, sqlite3.Error):
                    raise RegistryError(f"{self.path}: cannot write the registry: {e}") from None
                raise

    def _apply_one(self, operation: Operation) -> None:
        match operation:
            case AdmitAgent(info):
                self._admit_agent(info)
            case RemoveAgent(agent_id):
                self._remove_agent(agent_id)
            case MarkAgentUnreachable(agent_id, since):
                self._db.execute(
                    "INSERT INTO unreachable_agents VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET since=excluded.since",
                    (agent_id, since),
                )
            case PutFramework(info):
                self._db.execute(
                    "INSERT INTO frameworks (id, info) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET info=excluded.info",
                    (info.id, info.SerializeToString()),
                )
            case RemoveFramework(framework_id):
                self._db.execute("UPDATE frameworks SET removed=1 WHERE id=?", (framework_id,))
            case UpdateWeight(role, weight):
                self._db.execute(
                    "INSERT INTO weights VALUES (?, ?) ON CONFLICT(role) DO UPDATE SET weight=excluded.weight",
                    (role, weight),
                )
            case UpdateQuota(role, guarantee, limit):
                self._db.execute(
                    "INSERT INTO quotas VALUES (?, ?, ?) ON CONFLICT(role) DO UPDATE SET "
                    "guarantee=excluded.guarantee, lim=excluded.lim",
                    (role, _blob(guarantee), None if limit is None else _blob(limit)),
                )
            case RemoveQuota(role):
                self._db.execute("DELETE FROM quotas WHERE role=?", (role,))
            case UpdateReservations(agent_id, resources):
                self._update_reservations(agent_id, resources)
            case _:
                raise RegistryError(f"unknown registry operation {operation!r}")

    def _admit_agent(self, info: pb.AgentInfo) -> None:
        self._db.execute(
            "INSERT INTO agents (id, info) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET info=excluded.info",
            (info.id, info.SerializeToString()),
        )
        self._db.execute("DELETE FROM unreachable_agents WHERE id=?", (info.id,))

    def _remove_agent(self, agent_id: str) -> None:
        self._db.execute("DELETE FROM agents WHERE id=?", (agent_id,))
        self._db.execute("DELETE FROM unreachable_agents WHERE id=?", (agent_id,))

    def _update_reservations(self, agent_id: str, resources: Sequence[pb.Resource]) -> None:
        if not resources:
            self._db.execute("DELETE FROM reservations WHERE agent_id=?", (agent_id,))
            return
        self._db.execute(
            "INSERT INTO reservations VALUES (?, ?) ON CONFLICT(agent_id) DO UPDATE SET resources=excluded.resources",
            (agent_id, _blob(resources)),
        )

    async def close(self) -> None:
        self.close_now()

    def close_now(self) -> None:
        with self._lock:
            self._db.close()


def _blob(resources: Sequence[pb.Resource]) -> bytes:
    return pb.ResourceList(resources=resources).SerializeToString()


def _resources(blob: bytes) -> list[pb.Resource]:
    return list(pb.ResourceList.FromString(blob).resources)
