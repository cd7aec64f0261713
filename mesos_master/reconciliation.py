"""Reconciliation (RECONCILE, and a KILL of a task the master does not know), with Mesos' semantics: the master
never answers what it cannot know yet.

A task the master knows: its latest state. A task it does not know, on an agent that is attached: TASK_GONE
(TASK_LOST for a framework that is not PARTITION_AWARE): the agent's report is the truth. On an unreachable
agent: TASK_UNREACHABLE (TASK_LOST). Unknown agent: TASK_UNKNOWN (TASK_LOST). But on an agent that may still
come back with it (known from the registry and not re-attached since this master started, or disconnected), or,
without an agent id, while any agent is still recovering after a master restart, there is no answer yet: Mesos
drops such a request and lets the framework ask again; we remember it (`PendingReconciliations`, bounded per
framework) and answer once the truth is known: when the agent re-attaches (the state it reports; TASK_GONE /
TASK_LOST when it re-attached without the task), is marked unreachable, or is removed. Answering TASK_LOST for a
task that is still running is the classic double-run: the framework launches it again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import structlog

from aiomesos.v1 import agent_pb2, scheduler_pb2
from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_master.bounds import MAX_PENDING_RECONCILIATIONS, check_reconcile
from mesos_master.records import Framework, Task, TaskKey
from mesos_master.state import MasterState
from scheduler_sdk.states import is_terminal

log = structlog.get_logger(__name__)
TaskStatus = tpb.TaskStatus
MasterMessage = agent_pb2.MasterMessage
Capability = rpb.FrameworkInfo.Capability


class ReconciliationTransitions(MasterState):
    def reconcile(self, framework_id: str, tasks: Sequence[scheduler_pb2.Call.Reconcile.Task]) -> None:
        """Explicit (the tasks listed) or implicit (none listed: every task the master knows of the framework)."""
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

    def _reconcile_one(self, fw: Framework, task_id: str, agent_id: str, now: float, *, kill: bool = False) -> None:
        if self._answer_known(fw, task_id, now, kill=kill):
            return
        if self._may_come_back_with(agent_id):
            if not self.pending_reconciliations.add(agent_id, (fw.id, task_id), kill, MAX_PENDING_RECONCILIATIONS):
                log.warning(
                    "reconciliation dropped unanswered: too many waiting",
                    framework_id=fw.id,
                    task_id=task_id,
                    limit=MAX_PENDING_RECONCILIATIONS,
                )
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

    def _may_come_back_with(self, agent_id: str) -> bool:
        """Could a task the master does not know still turn up on this agent (any agent, for "")?"""
        if not agent_id:
            return bool(self.recovering_agents)
        agent = self.agents.get(agent_id)
        return agent is not None and not agent.connected and agent.unreachable_at is None

    def _answer_known(self, fw: Framework, task_id: str, now: float, *, kill: bool = False) -> bool:
        """Answer with what the master knows of the task (and, for a KILL, kill it); False when it knows nothing."""
        task = fw.tasks.get(task_id)
        completed = task is None
        if task is None:
            task = fw.completed_task(task_id)
        if task is None:
            return False
        self.outbox.framework(fw.id).updates.append(self._known_task_status(task, completed, now))
        if kill and not completed and not is_terminal(task.state):
            task.kill_requested = True
            agent = self.agents.get(task.agent_id)
            if agent is not None and agent.connected:
                self.outbox.agent(agent.id).kills.append(MasterMessage.KillTask(framework_id=fw.id, task_id=task_id))
        return True

    @staticmethod
    def _known_task_status(task: Task, completed: bool, now: float) -> tpb.TaskStatus:
        """What the master knows of a task, exit code included (for a completed task too: its real outcome)."""
        # The state the framework hears next when the agent's updates run behind its report (Mesos answers with
        # status_update_state too): never a state before the updates that lead to it.
        state = task.status_update_state if task.status_update_state is not None else task.state
        latest = task.latest()
        if latest is not None and latest.state != state:
            latest = None  # its message and exit code are of another state
        status = tpb.TaskStatus(
            task_id=task.task_id,
            state=state,  # type: ignore[arg-type]
            agent_id=task.agent_id,
            source=TaskStatus.SOURCE_MASTER,
            reason=TaskStatus.REASON_RECONCILIATION,
            message=("task is complete: " if completed else "") + (latest.message if latest else ""),
            timestamp=now,
        )
        if latest is not None and latest.HasField("exit_code"):
            status.exit_code = latest.exit_code
        return status

    # ----------------------------------------------------------------------------- answering what waited
    def _reconcile_reattached(self, agent_id: str, reported: Iterable[TaskKey]) -> None:
        """The agent re-attached and its report is in the master's records: the requests that waited for it (and
        the requests without an agent id for the tasks it reported) get their answer."""
        now = self.clock()
        for key in reported:
            kill = self.pending_reconciliations.take_one("", key)
            fw = self.frameworks.get(key[0])
            if kill is not None and fw is not None and fw.connected:
                self._answer_known(fw, key[1], now, kill=kill)
        self._agent_settled(
            agent_id,
            tpb.TASK_GONE,
            tpb.TASK_LOST,
            TaskStatus.REASON_RECONCILIATION,
            "its agent re-attached without this task",
        )

    def _agent_settled(self, agent_id: str, aware_state: int, state: int, reason: int, message: str) -> None:
        """The agent will not come back with a task the master has not heard of (it re-attached, or it is
        unreachable or removed): answer what waited for it, a task still unknown with `aware_state` (for a
        PARTITION_AWARE framework) or `state`; and, once no agent recovers any more, what waited for any agent."""
        self.recovering_agents.discard(agent_id)
        now = self.clock()
        for (framework_id, task_id), kill in self.pending_reconciliations.take(agent_id).items():
            fw = self.frameworks.get(framework_id)
            if fw is None or not fw.connected or self._answer_known(fw, task_id, now, kill=kill):
                continue
            answer = aware_state if fw.has(Capability.PARTITION_AWARE) else state
            self.outbox.framework(fw.id).updates.append(
                self._master_status(task_id, answer, reason, message, agent_id, now)
            )
        if not self.recovering_agents and self.pending_reconciliations.waiting_for(""):
            for (framework_id, task_id), kill in self.pending_reconciliations.take("").items():
                fw = self.frameworks.get(framework_id)
                if fw is not None and fw.connected:
                    self._reconcile_one(fw, task_id, "", now, kill=kill)
