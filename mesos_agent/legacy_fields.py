"""Checkpoints written before the proto3 `optional` fields marked a value as set with a twin `has_*` boolean, whose
field number is reserved now; a value of 0 or false was not on the wire at all. A recovered record whose `has_*`
was true gets its value set to that zero, so an exit code 0, an unhealthy status or a health check's 0 s delay
survive an agent upgrade with tasks running. (Records written since carry the presence themselves.)"""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet

from aiomesos.v1 import tasks_pb2 as tpb

_VARINT = 0
# value field -> the field number its has_* twin had
_TASK_STATUS = {"healthy": 11, "exit_code": 13}
_HEALTH_CHECK = {
    "delay_seconds": 6,
    "interval_seconds": 8,
    "timeout_seconds": 10,
    "consecutive_failures": 12,
    "grace_period_seconds": 14,
}


def task_status(status: tpb.TaskStatus) -> tpb.TaskStatus:
    _restore(status, _TASK_STATUS)
    return status


def task_info(task: tpb.TaskInfo) -> tpb.TaskInfo:
    if task.HasField("health_check"):
        _restore(task.health_check, _HEALTH_CHECK)
    return task


def _restore(message: Message, twins: Mapping[str, int]) -> None:
    unknown = UnknownFieldSet(message)
    fields = (unknown[i] for i in range(len(unknown)))
    flagged = {f.field_number for f in fields if f.wire_type == _VARINT and f.data}
    for name, number in twins.items():
        if number in flagged and not message.HasField(name):
            setattr(message, name, type(getattr(message, name))())  # its zero, now set
