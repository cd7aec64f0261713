"""Tasks: their status updates (from agents, or made by the master), acknowledgements, kills, reconciliation,
and the framework messages the master forwards to an agent's executor."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import structlog

from aiomesos.v1 import agent_pb2, scheduler_pb2
from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_master.bounds import check_message
from mesos_master.reconciliation import ReconciliationTransitions
from mesos_master.records import AgentRecord, Framework, Task
from mesos_master.validation import CallError, validate_acknowledgements, validate_kill
from scheduler_sdk.quoting import quoted
from scheduler_sdk.resources import Resources
from scheduler_sdk.states import is_terminal

log = structlog.get_logger(__name__)
TaskStatus = tpb.TaskStatus
MasterMessage = agent_pb2.MasterMessage
Capability = rpb.FrameworkInfo.Capability


class TaskTransitions(ReconciliationTransitions):
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
                done = fw.completed_task(status.task_id)
                if done is not None:
                    if done.agent_id == agent_id:
                        # Over, and its framework knows (it acknowledged the end, or was told the task is lost):
                        # what the agent still sends (a retry the acknowledgement of which was lost) ends here.
                        self._acknowledge_for_framework(agent_id, framework_id, status)
                    continue
                task = self._task_first_heard_of(fw, agent, status)
            if not self._apply_status(task, status):
                # After a terminal state: a terminal state is final, the framework hears nothing after it.
                self._acknowledge_for_framework(agent_id, framework_id, status)
                continue
            if task.status_update_state is not None:
                # The framework is hearing the agent's updates in order: it has caught up once it hears the state.
                task.status_update_state = None if status.state == task.state else status.state
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
        self._publish_task_added(task)
        return task

    def _apply_status(self, task: Task, status: tpb.TaskStatus) -> bool:
        """Record an update of the task; False when it comes after a terminal one (which is final: the update is
        not recorded, and must not reach the framework). A retry of the latest update is True: the framework
        hears it again, and acknowledges it."""
        was_terminal = is_terminal(task.state)
        latest = task.latest()
        if latest is not None and latest.uuid and latest.uuid == status.uuid:
            return True
        if latest is not None and is_terminal(latest.state):
            return False
        if was_terminal and not is_terminal(status.state):
            # The agent's report (at its re-attach) says the task is over; this older update of it is still news
            # to the framework, which hears the end next. The record stays terminal.
            return True
        task.state = status.state
        task.statuses.append(status)
        self._publish_task_updated(task)
        if status.state == tpb.TASK_RUNNING and task.started_at is None:
            task.started_at = status.timestamp or self.clock()
        if not was_terminal and is_terminal(status.state):
            self.allocator.recover_resources(
                task.framework_id, task.agent_id, task.resources, None, self.clock(), role=task.role
            )
        return True

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
            # Unknown to the master: answer as a reconciliation would (Mesos' semantics); should the task turn up
            # on an agent that comes back, it is killed then.
            self._reconcile_one(fw, call.task_id, call.agent_id, now, kill=True)
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
                    framework_id=framework_id, executor_id=call.executor_id, data=call.data, path=call.path
                ),
            )
        )
