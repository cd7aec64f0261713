"""What the operator event stream says of each record (events.proto): an agent, a framework, a task, a drain, a
quota, each as its whole current state, so a watcher applies every event as an upsert. Pure: each fills the
message it is given in place (an event's field, a snapshot's new list item), so nothing is built twice: the core
makes its events with them (through the outbox), and `events.state_snapshot` its snapshot."""

from __future__ import annotations

from aiomesos.v1 import events_pb2 as epb
from aiomesos.v1 import resources_pb2 as rpb
from mesos_master.allocator.base import Quota
from mesos_master.records import DRAINED, AgentRecord, Drain, Framework, Task

OperatorEvent = epb.OperatorEvent


def fill_agent(out: epb.EventAgent, agent: AgentRecord, drain: Drain | None, *, removed: bool = False) -> None:
    out.agent_info.CopyFrom(agent.info)
    out.active = agent.connected and not removed
    out.total.extend(agent.total.to_proto())
    out.registered_time = agent.registered_time
    out.reregistered_time = agent.reregistered_time
    if agent.unreachable_at is not None:
        out.unreachable_time = agent.unreachable_at
    if drain is not None:
        out.drain.drained = drain.state == DRAINED
        if drain.deadline is not None:
            out.drain.deadline = drain.deadline
        out.drain.mark_gone = drain.mark_gone
        out.drain.since = drain.since
        out.drain.drained_at = drain.drained_at or 0.0
    out.removed = removed


def fill_framework(out: epb.EventFramework, fw: Framework, *, active: bool = True) -> None:
    out.framework_info.CopyFrom(fw.info)
    out.active = active
    out.connected = fw.connected and active
    out.suppressed_roles.extend(sorted(fw.suppressed_roles))
    out.registered_time = fw.registered_time
    out.reregistered_time = fw.reregistered_time


def fill_task(out: epb.EventTask, task: Task) -> None:
    out.framework_id = task.framework_id
    out.agent_id = task.agent_id
    out.task.CopyFrom(task.info)
    out.state = task.state  # type: ignore[assignment]
    out.statuses.extend(task.statuses)
    out.role = task.role or ""


def fill_task_update(out: epb.EventTaskUpdate, task: Task) -> None:
    """The task's state now and the status that brought it (the latest it recorded)."""
    out.framework_id = task.framework_id
    out.agent_id = task.agent_id
    out.task_id = task.task_id
    out.state = task.state  # type: ignore[assignment]
    latest = task.latest()
    if latest is not None:
        out.status.CopyFrom(latest)


def fill_quota(out: epb.EventQuota, role: str, quota: Quota | None) -> None:
    out.role = role
    if quota is None:
        out.removed = True
        return
    out.guarantee.extend(quota.guarantee.to_proto())
    if quota.limit is not None:
        out.limit.CopyFrom(rpb.ResourceList(resources=quota.limit.to_proto()))
