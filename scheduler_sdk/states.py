"""Task states as Mesos defines them: which are terminal, and their names."""

from __future__ import annotations

from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.enums import enum_name

TERMINAL_STATES = frozenset(
    {
        tpb.TASK_FINISHED,
        tpb.TASK_FAILED,
        tpb.TASK_KILLED,
        tpb.TASK_ERROR,
        tpb.TASK_LOST,
        tpb.TASK_DROPPED,
        tpb.TASK_GONE,
        tpb.TASK_GONE_BY_OPERATOR,
    }
)


def is_terminal(state: int) -> bool:
    return state in TERMINAL_STATES


def state_name(state: int) -> str:
    return enum_name(tpb.TaskState, state)
