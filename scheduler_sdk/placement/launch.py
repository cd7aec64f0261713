"""What an assignment is launched as: the `TaskInfo` of a `TaskRequest` placed on an agent."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache

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
        resources=task_resources_proto(task, assignment.ports),
        command=command,
    )


def task_resources(task: TaskRequest, ports: Iterable[int] = ()) -> Resources:
    """What an assigned task is launched with: its amounts (zeros left out) and its ports."""
    res = Resources.from_scalars(_amounts(task))
    port_list = sorted(ports)
    if port_list:
        res = res + Resources.ports(*((p, p) for p in port_list))
    return res


def task_resources_proto(task: TaskRequest, ports: Iterable[int] = ()) -> list[rpb.Resource]:
    """`task_resources(task, ports).to_proto()`, the same list, without reading the amounts anew for each task:
    the tasks of a framework come in a few shapes, and each shape's scalars are made into protos once."""
    scalars = _scalar_protos(*_shape(task))
    port_list = sorted(ports)
    if not port_list:
        return list(scalars)
    return [*scalars, *Resources.ports(*((p, p) for p in port_list)).to_proto()]


def _amounts(task: TaskRequest) -> dict[str, float]:
    amounts = {n: v for n in BASE_RESOURCES if (v := getattr(task, n))}
    amounts.update({k: v for k, v in task.scalars.items() if v})
    return amounts


def _shape(task: TaskRequest) -> tuple[float, float, float, float, tuple[tuple[str, float], ...]]:
    scalars: Mapping[str, float] = task.scalars
    return task.cpus, task.mem, task.disk, task.network, tuple(sorted(scalars.items())) if scalars else ()


@lru_cache(maxsize=4096)
def _scalar_protos(
    cpus: float, mem: float, disk: float, network: float, scalars: tuple[tuple[str, float], ...]
) -> tuple[rpb.Resource, ...]:
    """The protos of one shape's scalars (read-only: a TaskInfo built with them holds copies)."""
    amounts = {n: v for n, v in zip(BASE_RESOURCES, (cpus, mem, disk, network), strict=True) if v}
    amounts.update({k: v for k, v in scalars if v})
    return tuple(Resources.from_scalars(amounts).to_proto())
