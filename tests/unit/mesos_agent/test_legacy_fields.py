"""Checkpointed records from before proto3 `optional` keep what their has_* twins said."""

from __future__ import annotations

from aiomesos.v1 import tasks_pb2 as tpb
from mesos_agent import legacy_fields


def _with_twins(message: bytes, *numbers: int, value: int = 1) -> bytes:
    """`message` as the old code wrote it: each has_* twin (field `number`, a bool) appended."""
    return message + b"".join(bytes([number << 3, value]) for number in numbers)


def test_a_status_whose_twins_said_set_gets_its_zero_values() -> None:
    old = _with_twins(tpb.TaskStatus(task_id="t", state=tpb.TASK_FINISHED).SerializeToString(), 11, 13)
    status = legacy_fields.task_status(tpb.TaskStatus.FromString(old))
    assert status.HasField("exit_code") and status.exit_code == 0
    assert status.HasField("healthy") and status.healthy is False


def test_twins_that_said_unset_and_values_already_present_are_left_alone() -> None:
    unset = legacy_fields.task_status(tpb.TaskStatus.FromString(_with_twins(b"", 11, 13, value=0)))
    assert not unset.HasField("exit_code") and not unset.HasField("healthy")
    present = tpb.TaskStatus(exit_code=7).SerializeToString()
    assert legacy_fields.task_status(tpb.TaskStatus.FromString(_with_twins(present, 13))).exit_code == 7
    fresh = legacy_fields.task_status(tpb.TaskStatus.FromString(tpb.TaskStatus(exit_code=0).SerializeToString()))
    assert fresh.HasField("exit_code")  # written since: the presence is on the wire


def test_a_health_check_keeps_its_zero_settings() -> None:
    check = _with_twins(tpb.HealthCheck(type=tpb.HealthCheck.TCP, interval_seconds=2).SerializeToString(), 6, 8, 14)
    old = tpb.TaskInfo(task_id="t").SerializeToString() + bytes([_health_check_tag(), len(check)]) + check
    task = legacy_fields.task_info(tpb.TaskInfo.FromString(old))
    hc = task.health_check
    assert hc.HasField("delay_seconds") and hc.delay_seconds == 0
    assert hc.HasField("grace_period_seconds") and hc.interval_seconds == 2
    assert not hc.HasField("timeout_seconds")
    assert not legacy_fields.task_info(tpb.TaskInfo(task_id="u")).HasField("health_check")


def _health_check_tag() -> int:
    number = tpb.TaskInfo.DESCRIPTOR.fields_by_name["health_check"].number
    return number << 3 | 2
