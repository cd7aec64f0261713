"""The simulated agent's pure model: launches, kills, acknowledgements and resends, as a real agent's."""

from __future__ import annotations

import itertools

import pytest

from aiomesos.v1 import agent_pb2
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.simulation.model import (
    SIM_SECONDS_LABEL,
    Counters,
    SimAgentModel,
    agent_attributes,
    parse_spread,
    task_seconds,
)

TaskStatus = tpb.TaskStatus
StatusUpdate = agent_pb2.AgentMessage.StatusUpdate


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def model(clock: Clock | None = None) -> SimAgentModel:
    ids = itertools.count()
    m = SimAgentModel(Counters(), clock or Clock(), new_uuid=lambda: f"u{next(ids)}".encode(), retry_min=10.0)
    m.on_connected("S1")
    return m


def info(task_id: str, seconds: str | None = None) -> tpb.TaskInfo:
    t = tpb.TaskInfo(task_id=task_id, name=task_id)
    if seconds is not None:
        t.labels.labels.add(key=SIM_SECONDS_LABEL, value=seconds)
    return t


def states(updates: list[StatusUpdate]) -> list[int]:
    return [u.status.state for u in updates]


def test_a_launch_reports_starting_then_running_once_starting_is_acknowledged() -> None:
    m = model()
    assert m.run_task("F1", info("t1"), 1.5, SIM_SECONDS_LABEL) == 1.5
    first = m.take_out()
    assert states(first) == [tpb.TASK_STARTING]  # only the head of a task's stream is in flight
    assert first[0].framework_id == "F1" and first[0].status.agent_id == "S1"
    assert m.counters.running == 1 and m.counters.launched == 1
    assert m.acknowledge("F1", "t1", first[0].status.uuid)
    assert states(m.take_out()) == [tpb.TASK_RUNNING]


def test_finish_after_the_run_then_the_task_is_forgotten_once_acknowledged() -> None:
    m = model()
    m.run_task("F1", info("t1"), 1.0, SIM_SECONDS_LABEL)
    for expected in (tpb.TASK_STARTING, tpb.TASK_RUNNING):
        (head,) = m.take_out()
        assert head.status.state == expected
        if expected == tpb.TASK_RUNNING:
            m.finish(("F1", "t1"))
        m.acknowledge("F1", "t1", head.status.uuid)
    (last,) = m.take_out()
    assert last.status.state == tpb.TASK_FINISHED and last.status.exit_code == 0
    assert m.counters.finished == 1 and m.counters.running == 0
    assert not m.acknowledge("F1", "t1", b"stale")
    assert m.acknowledge("F1", "t1", last.status.uuid)
    assert m.tasks == {} and m.streams == {}


def test_kill_reports_killed_with_the_masters_reason_and_unknown_tasks_lost() -> None:
    m = model()
    m.run_task("F1", info("t1", "0"), 1.0, SIM_SECONDS_LABEL)
    m.tasks[("F1", "t1")].timer = "the-timer"
    assert m.kill("F1", "t1", TaskStatus.REASON_CONTAINER_PREEMPTED, "revoked") == "the-timer"
    (starting,) = m.take_out()
    m.acknowledge("F1", "t1", starting.status.uuid)
    (running,) = m.take_out()
    m.acknowledge("F1", "t1", running.status.uuid)
    (killed,) = m.take_out()
    assert killed.status.state == tpb.TASK_KILLED
    assert (killed.status.reason, killed.status.message) == (TaskStatus.REASON_CONTAINER_PREEMPTED, "revoked")
    assert m.kill("F1", "t1") is None  # over already: nothing more
    m.kill("F1", "nope")
    (lost,) = m.take_out()
    assert lost.status.state == tpb.TASK_LOST and lost.status.reason == TaskStatus.REASON_TASK_UNKNOWN


def test_a_second_launch_of_a_running_task_changes_nothing() -> None:
    m = model()
    m.run_task("F1", info("t1"), 1.0, SIM_SECONDS_LABEL)
    m.take_out()
    assert m.run_task("F1", info("t1"), 1.0, SIM_SECONDS_LABEL) is None
    assert m.take_out() == [] and m.counters.launched == 1


def test_unacknowledged_heads_are_resent_with_backoff_and_at_once_on_reattach() -> None:
    clock = Clock()
    m = model(clock)
    m.run_task("F1", info("t1"), 1.0, SIM_SECONDS_LABEL)
    m.take_out()
    clock.now += 9.9
    assert m.due() == 0
    clock.now += 0.1
    assert m.due() == 1 and states(m.take_out()) == [tpb.TASK_STARTING]
    clock.now += 10.0
    assert m.due() == 0  # the backoff doubled: 20 s now
    m.on_disconnected()
    clock.now += 100
    assert m.due() == 0 and m.take_out() == []
    m.on_connected("S1")
    assert states(m.take_out()) == [tpb.TASK_STARTING]


def test_register_reports_each_task_with_its_oldest_unacknowledged_state() -> None:
    m = model()
    m.run_task("F1", info("t1"), 1.0, SIM_SECONDS_LABEL)
    (reported,) = m.registered_tasks()
    assert reported.framework_id == "F1" and reported.state == tpb.TASK_RUNNING
    assert reported.status_update_state == tpb.TASK_STARTING


def test_shutdown_framework_kills_only_its_tasks() -> None:
    m = model()
    m.run_task("F1", info("a"), 1.0, SIM_SECONDS_LABEL)
    m.run_task("F2", info("b"), 1.0, SIM_SECONDS_LABEL)
    m.shutdown_framework("F1")
    assert m.tasks[("F1", "a")].state == tpb.TASK_KILLED and m.tasks[("F2", "b")].state == tpb.TASK_RUNNING


@pytest.mark.parametrize(
    ("label", "default", "expected"),
    [(None, 2.0, 2.0), ("0.5", 2.0, 0.5), ("0", 2.0, None), (None, 0.0, None), ("x", 2.0, 2.0), ("-1", 2.0, 2.0)],
)
def test_task_seconds_from_the_label_else_the_default(label: str | None, default: float, expected: float) -> None:
    assert task_seconds(info("t", label), default) == expected


def test_attributes_spread_evenly() -> None:
    spread = parse_spread("zone=3, rack=100")
    assert spread == {"zone": 3, "rack": 100}
    assert [(a.name, a.text.value) for a in agent_attributes(104, spread)] == [("zone", "zone-2"), ("rack", "rack-4")]
    assert parse_spread("") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("zone", "is not NAME=COUNT"),
        ("zone=x", "is not a whole number"),
        ("zone=0", "at least 1"),
        ("a=1,a=2", "twice"),
    ],
)
def test_a_bad_spread_names_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_spread(text)
