"""What a framework builds to answer an offer: tasks (`task_info`) and offer operations (`launch_op`, `reserve_op`,
`unreserve_op`) for `SchedulerDriver.accept_operations`.

    task = task_info(offer, "hello-1", "echo hello", Resources.of(cpus=0.1, mem=32))
    driver.accept([offer.id], [task])
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import scheduler_pb2 as spb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.resources import Resources

Op = spb.Offer_Operation
ResourcesLike = Resources | Iterable[rpb.Resource]


def task_info(
    offer: spb.Offer,
    task_id: str,
    command: str | Sequence[str],
    resources: ResourcesLike,
    **fields: Any,
) -> tpb.TaskInfo:
    """A task for `offer`'s agent: `command` a string runs under `/bin/sh -c`, a list runs as argv (no shell).
    `name` defaults to the task id; other `fields` are TaskInfo's (kill_policy, health_check, labels, ...)."""
    if isinstance(command, str):
        cmd = rpb.CommandInfo(shell=True, value=command)
    else:
        argv = list(command)
        if not argv:
            raise ValueError("task_info: an empty argv")
        cmd = rpb.CommandInfo(shell=False, value=argv[0], arguments=argv)
    fields.setdefault("name", task_id)
    return tpb.TaskInfo(task_id=task_id, agent_id=offer.agent_id, resources=_protos(resources), command=cmd, **fields)


def launch_op(tasks: Iterable[tpb.TaskInfo]) -> spb.Offer_Operation:
    return Op(type=Op.LAUNCH, launch=Op.Launch(task_infos=list(tasks)))


def reserve_op(resources: ResourcesLike) -> spb.Offer_Operation:
    """Reserve offered unreserved resources for the role each names (`Resources.of(role="eng", cpus=1)`)."""
    return Op(type=Op.RESERVE, reserve=Op.Reserve(resources=_protos(resources)))


def unreserve_op(resources: ResourcesLike) -> spb.Offer_Operation:
    """Give offered, dynamically reserved resources back to the unreserved pool."""
    return Op(type=Op.UNRESERVE, unreserve=Op.Unreserve(resources=_protos(resources)))


def _protos(resources: ResourcesLike) -> list[rpb.Resource]:
    return resources.to_proto() if isinstance(resources, Resources) else list(resources)
