"""The embedded registry: one SQLite file in the master's work dir (WAL, synchronous=FULL)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from aiomesos.v1 import resources_pb2 as pb
from mesos_master.registry.base import Registry, RegistryState

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS agents (id TEXT PRIMARY KEY, info BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS frameworks (
    id TEXT PRIMARY KEY,
    info BLOB NOT NULL,
    removed INTEGER NOT NULL DEFAULT 0
);
"""


class RegistryError(RuntimeError):
    pass


class SQLiteRegistry(Registry):
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            raise RegistryError(f"{path}: registry schema {row[0]} is not the supported {SCHEMA_VERSION}")

    def load(self) -> RegistryState:
        state = RegistryState()
        for agent_id, blob in self._db.execute("SELECT id, info FROM agents"):
            state.agents[agent_id] = pb.AgentInfo.FromString(blob)
        for framework_id, blob, removed in self._db.execute("SELECT id, info, removed FROM frameworks"):
            if removed:
                state.removed_frameworks.add(framework_id)
            else:
                state.frameworks[framework_id] = pb.FrameworkInfo.FromString(blob)
        return state

    def admit_agent(self, info: pb.AgentInfo) -> None:
        self._db.execute(
            "INSERT INTO agents (id, info) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET info=excluded.info",
            (info.id, info.SerializeToString()),
        )

    def remove_agent(self, agent_id: str) -> None:
        self._db.execute("DELETE FROM agents WHERE id=?", (agent_id,))

    def put_framework(self, info: pb.FrameworkInfo) -> None:
        self._db.execute(
            "INSERT INTO frameworks (id, info) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET info=excluded.info",
            (info.id, info.SerializeToString()),
        )

    def remove_framework(self, framework_id: str) -> None:
        self._db.execute("UPDATE frameworks SET removed=1 WHERE id=?", (framework_id,))

    def close(self) -> None:
        self._db.close()
