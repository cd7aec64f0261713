"""What the operator event stream says of each record (events.proto): an agent, a framework, a task, a drain, a
quota, each as its whole current state, so a watcher applies every event as an upsert. Pure builders: the core
makes its events with them (through the outbox), and `events.state_snapshot` its snapshot."""

from __future__ import annotations

from aiomesos.v1 import events_pb2 as epb
from aiomesos.v1 import resources_pb2 as rpb
from mesos_master.allocator.base import Quota
from mesos_master.records import DRAINED, AgentRecord, Drain, Framework, Task

OperatorEvent = epb.OperatorEvent


def drain_view(drain: Drain | None) -> epb.EventDrain | None:
    if drain is None:
        return None
    return epb.EventDrain(
        drained=drain.state == DRAINED,
        deadline=drain.deadline,
        mark_gone=drain.mark_gone,
        since=drain.since,
        drained_at=drain.drained_at or 0.0,
    )


def agent_view(agent: AgentRecord, drain: Drain | None, *, removed: bool = False) -> epb.EventAgent:
    return epb.EventAgent(
        agent_info=agent.info,
        active=agent.connected and not removed,
        total=agent.total.to_proto(),
        registered_time=agent.registered_time,
        reregistered_time=agent.reregistered_time,
        unreachable_time=agent.unreachable_at,
        drain=drain_view(drain),
        removed=removed,
    )


def framework_view(fw: Framework, *, active: bool = True) -> epb.EventFramework:
    return epb.EventFramework(
        framework_info=fw.info,
        active=active,
        connected=fw.connected and active,
        suppressed_roles=sorted(fw.suppressed_roles),
        registered_time=fw.registered_time,
        reregistered_time=fw.reregistered_time,
    )


def task_view(task: Task) -> epb.EventTask:
    return epb.EventTask(
        framework_id=task.framework_id,
        agent_id=task.agent_id,
        task=task.info,
        state=task.state,  # type: ignore[arg-type]
        statuses=list(task.statuses),
        role=task.role or "",
    )


def task_update_view(task: Task) -> epb.EventTaskUpdate:
    """The task's state now and the status that brought it (the latest it recorded)."""
    return epb.EventTaskUpdate(
        framework_id=task.framework_id,
        agent_id=task.agent_id,
        task_id=task.task_id,
        state=task.state,  # type: ignore[arg-type]
        status=task.latest(),
    )


def quota_view(role: str, quota: Quota | None) -> epb.EventQuota:
    if quota is None:
        return epb.EventQuota(role=role, removed=True)
    limit = None if quota.limit is None else rpb.ResourceList(resources=quota.limit.to_proto())
    return epb.EventQuota(role=role, guarantee=quota.guarantee.to_proto(), limit=limit)
