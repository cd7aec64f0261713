"""Tasks: their status updates (from agents, or made by the master), acknowledgements, kills, reconciliation,
and the framework messages the master forwards to an agent's executor."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import structlog

from aiomesos.v1 import agent_pb2, scheduler_pb2
from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_master.bounds import check_message, check_reconcile
from mesos_master.records import AgentRecord, Framework, Task
from mesos_master.state import MasterState
from mesos_master.validation import CallError, validate_acknowledgements, validate_kill
from scheduler_sdk.quoting import quoted
from scheduler_sdk.resources import Resources
from scheduler_sdk.states import is_terminal

log = structlog.get_logger(__name__)
TaskStatus = tpb.TaskStatus
MasterMessage = agent_pb2.MasterMessage
Capability = rpb.FrameworkInfo.Capability


class TaskTransitions(MasterState):
    # ----------------------------------------------------------------------------- status updates
    def status_updates(self, agent_id: str, updates: Iterable[agent_pb2.AgentMessage.StatusUpdate]) -> None:
        agent = self.agents.get(agent_id)
        if agent is None:
            return
        for update in updates:
            status = update.status
            framework_id = update.framework_id
            lost = (framework_id, status.task_id)
            if lost in agent.lost_tasks:
                # Its framework was told TASK_LOST and that stays the last word: the master acknowledges.
                self._acknowledge_for_framework(agent_id, framework_id, status)
                if is_terminal(status.state):
                    agent.lost_tasks.discard(lost)
                continue
            fw = self.frameworks.get(framework_id)
            if fw is None:
                if framework_id in self.removed_framework_ids and status.uuid:
                    # Nobody will acknowledge it: acknowledge for the removed framework so nothing lingers.
                    self._acknowledge_for_framework(agent_id, framework_id, status)
                    self._shutdown_framework_on(agent_id, framework_id)
                continue
            task = fw.tasks.get(status.task_id)
            if task is not None and task.agent_id != agent_id:
                # Only the agent a task runs on speaks for it: another one (a confused or a hostile agent) is
                # not heard, and not acknowledged.
                log.warning(
                    "update for a task of another agent ignored",
                    agent_id=agent_id,
                    task_agent_id=task.agent_id,
                    framework_id=framework_id,
                    task_id=status.task_id,
                )
                continue
            if task is None:
                done = next((t for t in reversed(fw.completed_tasks) if t.task_id == status.task_id), None)
                if done is not None and done.agent_id != agent_id:
                    continue
                if done is not None:
                    # A retry of an update the framework already acknowledged past: forward, it acks again.
                    if fw.connected:
                        self.outbox.framework(fw.id).updates.append(status)
                    continue
                task = self._task_first_heard_of(fw, agent, status)
            self._apply_status(task, status)
            if fw.connected:
                self.outbox.framework(fw.id).updates.append(status)

    def _acknowledge_for_framework(self, agent_id: str, framework_id: str, status: tpb.TaskStatus) -> None:
        if status.uuid:
            self.outbox.agent(agent_id).acks.append(
                tpb.Acknowledgement(
                    agent_id=agent_id, task_id=status.task_id, uuid=status.uuid, framework_id=framework_id
                )
            )

    def _shutdown_framework_on(self, agent_id: str, framework_id: str) -> None:
        self.outbox.agent(agent_id).rest.append(
            MasterMessage(
                type=MasterMessage.SHUTDOWN_FRAMEWORK,
                shutdown_framework=MasterMessage.ShutdownFramework(framework_id=framework_id),
            )
        )

    def _task_first_heard_of(self, fw: Framework, agent: AgentRecord, status: tpb.TaskStatus) -> Task:
        """A task the master did not know of until an update about it arrived."""
        task = Task(fw.id, agent.id, tpb.TaskInfo(task_id=status.task_id, agent_id=agent.id), Resources.empty())
        fw.tasks[status.task_id] = task
        agent.tasks[(fw.id, status.task_id)] = task
        return task

    def _apply_status(self, task: Task, status: tpb.TaskStatus) -> None:
        was_terminal = is_terminal(task.state)
        latest = task.latest()
        if latest is not None and latest.uuid and latest.uuid == status.uuid:
            return  # a retry of the update we have
        if was_terminal and not is_terminal(status.state):
            return  # never leave a terminal state
        task.state = status.state
        task.statuses.append(status)
        if status.state == tpb.TASK_RUNNING and task.started_at is None:
            task.started_at = status.timestamp or self.clock()
        if not was_terminal and is_terminal(status.state):
            self.allocator.recover_resources(
                task.framework_id, task.agent_id, task.resources, None, self.clock(), role=task.role
            )

    def _forget_task(self, fw: Framework, task: Task) -> None:
        """The task is over and acknowledged (or its framework/agent is gone): move it to completed."""
        if not is_terminal(task.state):
            self.allocator.recover_resources(
                task.framework_id, task.agent_id, task.resources, None, self.clock(), role=task.role
            )
        fw.tasks.pop(task.task_id, None)
        fw.completed_tasks.append(task)
        agent = self.agents.get(task.agent_id)
        if agent is not None:
            agent.tasks.pop((fw.id, task.task_id), None)

    # ----------------------------------------------------------------------------- calls
    def kill(self, framework_id: str, call: scheduler_pb2.Call.Kill) -> None:
        fw = self._framework(framework_id)
        now = self.clock()
        validate_kill(call)
        task = fw.tasks.get(call.task_id)
        if task is None or is_terminal(task.state):
            # Unknown to the master: answer as a reconciliation would (Mesos' semantics).
            self._reconcile_one(fw, call.task_id, call.agent_id, now)
            return
        task.kill_requested = True
        agent = self.agents.get(task.agent_id)
        if agent is not None and agent.connected:
            self.outbox.agent(agent.id).kills.append(
                MasterMessage.KillTask(framework_id=framework_id, task_id=call.task_id, kill_policy=call.kill_policy)
            )

    def acknowledge(self, framework_id: str, acks: Sequence[tpb.Acknowledgement]) -> None:
        fw = self._framework(framework_id)
        validate_acknowledgements(acks)
        for ack in acks:
            task = fw.tasks.get(ack.task_id)
            agent_id = ack.agent_id or (task.agent_id if task else "")
            agent = self.agents.get(agent_id)
            if agent is not None and agent.connected:
                forwarded = tpb.Acknowledgement()
                forwarded.CopyFrom(ack)
                forwarded.framework_id = framework_id
                forwarded.agent_id = agent_id
                self.outbox.agent(agent_id).acks.append(forwarded)
            if task is not None and is_terminal(task.state):
                latest = task.latest()
                if latest is not None and latest.uuid == ack.uuid:
                    self._forget_task(fw, task)

    def reconcile(self, framework_id: str, tasks: Sequence[scheduler_pb2.Call.Reconcile.Task]) -> None:
        fw = self._framework(framework_id)
        check_reconcile(tasks)
        now = self.clock()
        wanted = list(tasks)
        if not wanted:
            for task in fw.tasks.values():
                self._reconcile_one(fw, task.task_id, task.agent_id, now)
            return
        for item in wanted:
            self._reconcile_one(fw, item.task_id, item.agent_id, now)

    def _reconcile_one(self, fw: Framework, task_id: str, agent_id: str, now: float) -> None:
        known = fw.tasks.get(task_id)
        completed = known is None
        if known is None:
            known = next((t for t in reversed(fw.completed_tasks) if t.task_id == task_id), None)
        if known is not None:
            self.outbox.framework(fw.id).updates.append(self._known_task_status(known, completed, now))
            return
        agent = self.agents.get(agent_id) if agent_id else None
        aware = fw.has(Capability.PARTITION_AWARE)
        if agent is not None and agent.connected:
            state, message = tpb.TASK_GONE if aware else tpb.TASK_LOST, "task unknown"
        elif agent is not None and agent.unreachable_at is not None:
            state, message = tpb.TASK_UNREACHABLE if aware else tpb.TASK_LOST, "its agent is unreachable"
        else:
            state = tpb.TASK_UNKNOWN if aware else tpb.TASK_LOST
            message = "task unknown to the master"
        self.outbox.framework(fw.id).updates.append(
            self._master_status(task_id, state, TaskStatus.REASON_RECONCILIATION, message, agent_id, now)
        )

    @staticmethod
    def _known_task_status(task: Task, completed: bool, now: float) -> tpb.TaskStatus:
        """What the master knows of a task, exit code included (for a completed task too: its real outcome)."""
        latest = task.latest()
        status = tpb.TaskStatus(
            task_id=task.task_id,
            state=task.state,  # type: ignore[arg-type]
            agent_id=task.agent_id,
            source=TaskStatus.SOURCE_MASTER,
            reason=TaskStatus.REASON_RECONCILIATION,
            message=("task is complete: " if completed else "") + (latest.message if latest else ""),
            timestamp=now,
        )
        if latest is not None and latest.has_exit_code:
            status.exit_code, status.has_exit_code = latest.exit_code, True
        return status

    def framework_message(self, framework_id: str, call: scheduler_pb2.Call.Message) -> None:
        self._framework(framework_id)
        check_message(call)
        agent = self.agents.get(call.agent_id)
        if agent is None or not agent.connected:
            raise CallError(f"message to agent {quoted(call.agent_id)}: that agent is not attached")
        self.outbox.agent(agent.id).rest.append(
            MasterMessage(
                type=MasterMessage.FRAMEWORK_MESSAGE,
                framework_message=MasterMessage.FrameworkMessage(
                    framework_id=framework_id, executor_id=call.executor_id, data=call.data
                ),
            )
        )
