"""The SQLite registry: what the master writes survives a reopen of the file, unreachable agents included."""

from __future__ import annotations

from pathlib import Path

from aiomesos.v1 import resources_pb2 as rpb
from mesos_master.registry import (
    AdmitAgent,
    MarkAgentUnreachable,
    PutFramework,
    RemoveAgent,
    RemoveFramework,
    SQLiteRegistry,
    UpdateQuota,
    UpdateReservations,
    UpdateWeight,
)
from scheduler_sdk.resources import Resources


def test_everything_written_is_loaded_again(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite"
    r = SQLiteRegistry(path)
    a1 = rpb.AgentInfo(id="S1", hostname="h1", resources=Resources.parse("cpus:2").to_proto())
    a2 = rpb.AgentInfo(id="S2", hostname="h2", resources=Resources.parse("cpus:4").to_proto())
    r.apply(AdmitAgent(a1))
    r.apply(AdmitAgent(a2))
    r.apply(MarkAgentUnreachable("S1", 123.5))
    r.apply(MarkAgentUnreachable("S2", 200.0))
    r.apply(AdmitAgent(a2))  # S2 came back
    r.apply(PutFramework(rpb.FrameworkInfo(id="F1", name="one")))
    r.apply(PutFramework(rpb.FrameworkInfo(id="F2", name="two")))
    r.apply(RemoveFramework("F2"))
    r.apply(UpdateWeight("eng", 2.0))
    r.apply(UpdateQuota("eng", tuple(Resources.parse("cpus:1").to_proto()), None))
    r.apply(UpdateReservations("S1", tuple(Resources.parse("cpus(eng):1").to_proto())))
    r.close()

    state = SQLiteRegistry(path).load()
    assert state.agents == {"S1": a1, "S2": a2}
    assert state.unreachable == {"S1": 123.5}
    assert list(state.frameworks) == ["F1"] and state.removed_frameworks == {"F2"}
    assert state.weights == {"eng": 2.0}
    assert Resources.from_proto(state.quotas["eng"][0]) == Resources.parse("cpus:1")
    assert Resources.from_proto(state.reservations["S1"]) == Resources.parse("cpus(eng):1")


def test_a_removed_agent_leaves_the_unreachable_list(tmp_path: Path) -> None:
    r = SQLiteRegistry(tmp_path / "r.sqlite")
    r.apply(AdmitAgent(rpb.AgentInfo(id="S1", hostname="h1")))
    r.apply(MarkAgentUnreachable("S1", 1.0))
    r.apply(RemoveAgent("S1"))
    state = r.load()
    assert state.agents == {} and state.unreachable == {}
