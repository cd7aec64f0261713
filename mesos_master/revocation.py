"""Revocation, the master's side: the allocator decides which running tasks to revoke for a starved role (from
the facts the master gives it), the master kills them (reason REASON_CONTAINER_PREEMPTED on the wire, Mesos'
name for it)."""

from __future__ import annotations

from collections.abc import Iterator

import structlog

from aiomesos.v1 import agent_pb2
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_master.allocator.base import AllocatedTask
from mesos_master.records import Task
from mesos_master.state import MasterState
from scheduler_sdk.states import is_terminal

log = structlog.get_logger(__name__)

# "true" on a task: the allocator does not revoke it while it fits within its role's guarantee (see docs)
NON_REVOCABLE_LABEL = "aiomesos.non_revocable"


class RevocationTransitions(MasterState):
    def revoke(self) -> int:
        """Carry out the allocator's revocations: the allocator picks the tasks (from the running ones it is told
        about), the master kills them. Returns how many kills it sent."""
        now = self.clock()
        killed = 0
        for revocation in self.allocator.revocations(now, self._running_tasks(now)):
            fw = self.frameworks.get(revocation.framework_id)
            task = fw.tasks.get(revocation.task_id) if fw is not None else None
            if task is None or task.revoked or is_terminal(task.state):
                continue
            self._revoke_task(task, revocation.for_role)
            killed += 1
        return killed

    def _running_tasks(self, now: float) -> Iterator[AllocatedTask]:
        """The facts revocation needs about the tasks that hold resources: running ones, and those already being
        killed (whatever their state). A generator: the allocator reads it only when some role is starved."""
        for fw in self.frameworks.values():
            first_role = fw.roles()[0]
            for task in fw.tasks.values():
                if is_terminal(task.state) or not (task.state == tpb.TASK_RUNNING or task.kill_requested):
                    continue
                yield AllocatedTask(
                    framework_id=fw.id,
                    task_id=task.task_id,
                    agent_id=task.agent_id,
                    role=task.role or first_role,
                    resources=task.resources,
                    started_at=task.started_at if task.started_at is not None else now,
                    non_revocable=is_non_revocable(task),
                    killing=task.kill_requested,
                )

    def _revoke_task(self, task: Task, for_role: str) -> None:
        task.revoked = True
        task.kill_requested = True
        agent = self.agents.get(task.agent_id)
        log.info("revoking a task", task_id=task.task_id, role=task.role, for_role=for_role)
        self.counters["tasks_revoked"] = self.counters.get("tasks_revoked", 0) + 1
        if agent is not None and agent.connected:
            self.outbox.agent(agent.id).kills.append(
                agent_pb2.MasterMessage.KillTask(
                    framework_id=task.framework_id,
                    task_id=task.task_id,
                    kill_policy=task.info.kill_policy,
                    reason=tpb.TaskStatus.REASON_CONTAINER_PREEMPTED,
                )
            )


def is_non_revocable(task: Task) -> bool:
    return any(
        label.key == NON_REVOCABLE_LABEL and label.value.lower() in ("true", "1", "yes")
        for label in task.info.labels.labels
    )
