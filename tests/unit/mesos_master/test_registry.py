"""The SQLite registry: what the master writes survives a reopen of the file, unreachable agents included."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest

from aiomesos.v1 import resources_pb2 as rpb
from mesos_master.registry import (
    AdmitAgent,
    MarkAgentUnreachable,
    PutFramework,
    RemoveAgent,
    RemoveFramework,
    RemoveQuota,
    SQLiteRegistry,
    UpdateQuota,
    UpdateReservations,
    UpdateWeight,
)
from mesos_master.registry.sqlite import RegistryError
from scheduler_sdk.resources import Resources


def test_everything_written_is_loaded_again(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite"
    r = SQLiteRegistry(path)
    a1 = rpb.AgentInfo(id="S1", hostname="h1", resources=Resources.parse("cpus:2").to_proto())
    a2 = rpb.AgentInfo(id="S2", hostname="h2", resources=Resources.parse("cpus:4").to_proto())
    r.apply_now([AdmitAgent(a1)])
    r.apply_now([AdmitAgent(a2)])
    r.apply_now([MarkAgentUnreachable("S1", 123.5)])
    r.apply_now([MarkAgentUnreachable("S2", 200.0)])
    r.apply_now([AdmitAgent(a2)])  # S2 came back
    r.apply_now([PutFramework(rpb.FrameworkInfo(id="F1", name="one"))])
    r.apply_now([PutFramework(rpb.FrameworkInfo(id="F2", name="two"))])
    r.apply_now([RemoveFramework("F2")])
    r.apply_now([UpdateWeight("eng", 2.0)])
    r.apply_now([UpdateQuota("eng", tuple(Resources.parse("cpus:1").to_proto()), None)])
    r.apply_now([UpdateReservations("S1", tuple(Resources.parse("cpus(eng):1").to_proto()))])
    r.close_now()

    state = SQLiteRegistry(path).load_now()
    assert state.agents == {"S1": a1, "S2": a2}
    assert state.unreachable == {"S1": 123.5}
    assert list(state.frameworks) == ["F1"] and state.removed_frameworks == {"F2"}
    assert state.weights == {"eng": 2.0}
    assert Resources.from_proto(state.quotas["eng"][0]) == Resources.parse("cpus:1")
    assert Resources.from_proto(state.reservations["S1"]) == Resources.parse("cpus(eng):1")


def test_a_removed_agent_leaves_the_unreachable_list(tmp_path: Path) -> None:
    r = SQLiteRegistry(tmp_path / "r.sqlite")
    r.apply_now([AdmitAgent(rpb.AgentInfo(id="S1", hostname="h1"))])
    r.apply_now([MarkAgentUnreachable("S1", 1.0)])
    r.apply_now([RemoveAgent("S1")])
    state = r.load_now()
    assert state.agents == {} and state.unreachable == {}


def test_quota_and_reservations_are_set_and_removed(tmp_path: Path) -> None:
    r = SQLiteRegistry(tmp_path / "r.sqlite")
    r.apply_now(
        [UpdateQuota("eng", tuple(Resources.parse("cpus:1").to_proto()), tuple(Resources.parse("cpus:2").to_proto()))]
    )
    r.apply_now([UpdateReservations("S1", tuple(Resources.parse("cpus(eng):1").to_proto()))])
    state = r.load_now()
    _, limit = state.quotas["eng"]
    assert limit is not None and Resources.from_proto(limit) == Resources.parse("cpus:2")
    r.apply_now([RemoveQuota("eng")])
    r.apply_now([UpdateReservations("S1", ())])
    state = r.load_now()
    assert state.quotas == {} and state.reservations == {}


def test_a_registry_file_written_before_typed_operations_still_loads(tmp_path: Path) -> None:
    """Schema 1 as the first release wrote it, filled with plain SQL: the master restarted on it reads it all."""
    path = tmp_path / "registry.sqlite"
    agent = rpb.AgentInfo(id="S1", hostname="h1", resources=Resources.parse("cpus:2").to_proto())
    db = sqlite3.connect(str(path))
    db.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE agents (id TEXT PRIMARY KEY, info BLOB NOT NULL);
        CREATE TABLE weights (role TEXT PRIMARY KEY, weight REAL NOT NULL);
        CREATE TABLE quotas (role TEXT PRIMARY KEY, guarantee BLOB NOT NULL, lim BLOB);
        CREATE TABLE reservations (agent_id TEXT PRIMARY KEY, resources BLOB NOT NULL);
        CREATE TABLE unreachable_agents (id TEXT PRIMARY KEY, since REAL NOT NULL);
        CREATE TABLE frameworks (id TEXT PRIMARY KEY, info BLOB NOT NULL, removed INTEGER NOT NULL DEFAULT 0);
        INSERT INTO meta VALUES ('schema_version', '1');
        """
    )
    cpus = rpb.ResourceList(resources=Resources.parse("cpus:1").to_proto()).SerializeToString()
    reserved = rpb.ResourceList(resources=Resources.parse("cpus(eng):1").to_proto()).SerializeToString()
    db.execute("INSERT INTO agents VALUES (?, ?)", ("S1", agent.SerializeToString()))
    db.execute("INSERT INTO unreachable_agents VALUES ('S1', 7.0)")
    db.execute(
        "INSERT INTO frameworks VALUES (?, ?, 0)", ("F1", rpb.FrameworkInfo(id="F1", name="a").SerializeToString())
    )
    db.execute(
        "INSERT INTO frameworks VALUES (?, ?, 1)", ("F2", rpb.FrameworkInfo(id="F2", name="b").SerializeToString())
    )
    db.execute("INSERT INTO weights VALUES ('eng', 3.0)")
    db.execute("INSERT INTO quotas VALUES ('eng', ?, NULL)", (cpus,))
    db.execute("INSERT INTO reservations VALUES ('S1', ?)", (reserved,))
    db.commit()
    db.close()

    state = SQLiteRegistry(path).load_now()
    assert state.agents == {"S1": agent} and state.unreachable == {"S1": 7.0}
    assert list(state.frameworks) == ["F1"] and state.removed_frameworks == {"F2"}
    assert state.weights == {"eng": 3.0}
    assert Resources.from_proto(state.quotas["eng"][0]) == Resources.parse("cpus:1") and state.quotas["eng"][1] is None
    assert Resources.from_proto(state.reservations["S1"]) == Resources.parse("cpus(eng):1")


def test_operations_are_values() -> None:
    assert RemoveAgent("S1") == RemoveAgent("S1") != RemoveAgent("S2")
    assert PutFramework(rpb.FrameworkInfo(id="F1")) == PutFramework(rpb.FrameworkInfo(id="F1"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        RemoveAgent("S1").agent_id = "S2"  # type: ignore[misc]


def test_an_unknown_operation_is_refused(tmp_path: Path) -> None:
    r = SQLiteRegistry(tmp_path / "r.sqlite")
    with pytest.raises(RegistryError, match="unknown registry operation"):
        r.apply_now(["remove_agent"])  # type: ignore[arg-type]


def test_a_failed_batch_writes_nothing(tmp_path: Path) -> None:
    """A batch is one transaction: an operation that fails undoes the ones before it in the batch."""
    r = SQLiteRegistry(tmp_path / "r.sqlite")
    with pytest.raises(RegistryError, match="unknown registry operation"):
        r.apply_now([UpdateWeight("eng", 2.0), "bogus"])  # type: ignore[list-item]
    assert r.load_now().weights == {}
    r.apply_now([UpdateWeight("eng", 3.0)])  # and the registry goes on working
    assert r.load_now().weights == {"eng": 3.0}


async def test_the_async_interface_applies_and_loads(tmp_path: Path) -> None:
    r = SQLiteRegistry(tmp_path / "r.sqlite")
    await r.apply([UpdateWeight("eng", 2.0), AdmitAgent(rpb.AgentInfo(id="S1", hostname="h1"))])
    await r.apply([])
    state = await r.load()
    assert state.weights == {"eng": 2.0} and list(state.agents) == ["S1"]
    await r.close()
