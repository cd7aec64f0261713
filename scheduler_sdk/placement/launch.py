"""What an assignment is launched as: the `TaskInfo` of a `TaskRequest` placed on an agent."""

from __future__ import annotations

from collections.abc import Iterable

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.placement.model import BASE_RESOURCES, Assignment, TaskRequest
from scheduler_sdk.resources import Resources


def default_task_info(task: TaskRequest, assignment: Assignment) -> tpb.TaskInfo:
    """TaskInfo for an assignment. `payload` is the command: a shell string, an argv list, or a CommandInfo."""
    payload = task.payload
    if isinstance(payload, rpb.CommandInfo):
        command = payload
    elif isinstance(payload, str):
        command = rpb.CommandInfo(shell=True, value=payload)
    elif isinstance(payload, (list, tuple)) and payload:
        command = rpb.CommandInfo(shell=False, value=str(payload[0]), arguments=[str(a) for a in payload])
    else:
        raise ValueError(f"task {task.id}: payload must be a command (str, argv list or CommandInfo)")
    return tpb.TaskInfo(
        task_id=task.id,
        name=task.id,
        agent_id=assignment.agent_id,
        resources=task_resources(task, assignment.ports).to_proto(),
        command=command,
    )


def task_resources(task: TaskRequest, ports: Iterable[int] = ()) -> Resources:
    """What an assigned task is launched with: its amounts (zeros left out) and its ports."""
    amounts = {n: v for n in BASE_RESOURCES if (v := getattr(task, n))}
    amounts.update({k: v for k, v in task.scalars.items() if v})
    res = Resources.from_scalars(amounts)
    port_list = sorted(ports)
    if port_list:
        res = res + Resources.ports(*((p, p) for p in port_list))
    return res
