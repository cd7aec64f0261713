"""Agents: REGISTER (first time or again, with the tasks the agent runs), disconnection, unreachability (a
partition), removal, and the timeouts between them."""

from __future__ import annotations

import structlog

from aiomesos.v1 import agent_pb2, scheduler_pb2
from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from aiomesos.v1.events_pb2 import OperatorEvent
from mesos_master.offers import OfferTransitions
from mesos_master.records import AgentRecord, Framework, Task, with_reservations
from mesos_master.registry.operations import AdmitAgent, MarkAgentUnreachable, RemoveAgent
from mesos_master.tasks import TaskTransitions
from mesos_master.validation import DeniedError, validate_agent_info
from scheduler_sdk.resources import Resources, ResourcesError, attribute_values
from scheduler_sdk.states import is_terminal

log = structlog.get_logger(__name__)

TaskStatus = tpb.TaskStatus
Event = scheduler_pb2.Event
MasterMessage = agent_pb2.MasterMessage
Capability = rpb.FrameworkInfo.Capability
TaskKey = tuple[str, str]  # (framework id, task id)


def text_attributes(info: rpb.AgentInfo) -> dict[str, str]:
    return attribute_values(info.attributes, info.hostname)


class AgentTransitions(OfferTransitions, TaskTransitions):
    def register_agent(self, reg: agent_pb2.AgentMessage.Register, principal: str = "") -> str:
        """An agent attaches, first time or again, as `principal` (empty: an insecure master). Returns its id;
        raises CallError (DeniedError: the id is another agent's)."""
        validate_agent_info(reg.agent_info)
        info = rpb.AgentInfo()
        info.CopyFrom(reg.agent_info)
        known = self.agents.get(info.id) if info.id else None
        if principal and known is not None and known.info.principal and known.info.principal != principal:
            raise DeniedError(f"agent {info.id} is {known.info.principal}, not {principal}")
        info.principal = principal or (known.info.principal if known is not None else "")
        agent_id = info.id = info.id or self._new_id("S")
        total = with_reservations(Resources.from_proto(info.resources), self.reservations.get(agent_id))
        agent = self.agents.get(agent_id)
        reregistered = agent is not None
        was_unreachable = agent is not None and agent.unreachable_at is not None
        agent = self._admit(agent, info, total)
        self.outbox.write(AdmitAgent(info))  # also ends its time in the registry's unreachable list
        # The agent's report is the truth about its tasks.
        reported = {(t.framework_id, t.task.task_id): t for t in reg.tasks}
        self._drop_unreported_tasks(agent, reported)
        for key, reported_task in reported.items():
            self._adopt_reported_task(agent, key, reported_task, was_unreachable)
        self._reconcile_reattached(agent_id, reported)
        used: dict[str, Resources] = {}
        for (fid, _), task in agent.tasks.items():
            if not is_terminal(task.state):
                used[fid] = used.get(fid, Resources.empty()) + task.resources
        if reregistered and agent_id in self._allocator_agents:
            self.allocator.remove_agent(agent_id)
        self.allocator.add_agent(agent_id, total, used, attributes=text_attributes(info))
        self._allocator_agents.add(agent_id)
        self._publish_agent(OperatorEvent.AGENT_ADDED, agent)
        self.outbox.agent(agent_id).first.append(
            MasterMessage(
                type=MasterMessage.REGISTERED,
                registered=MasterMessage.Registered(agent_id=agent_id, master_id=self.master_id),
            )
        )
        log.info(
            "agent attached",
            agent_id=agent_id,
            hostname=info.hostname,
            resources=str(total),
            reregistered=reregistered,
            was_unreachable=was_unreachable,
            tasks=len(reported),
        )
        return agent_id

    def _admit(self, agent: AgentRecord | None, info: rpb.AgentInfo, total: Resources) -> AgentRecord:
        """The record of an attaching agent: a new one, or the known one made connected and reachable."""
        now = self.clock()
        if agent is None:
            agent = AgentRecord(info=info, total=total, connected=True, registered_time=now)
            self.agents[info.id] = agent
            return agent
        if agent.connected:
            self.allocator.remove_agent(agent.id)
            self._rescind_agent_offers(agent.id, recover=False)
        agent.info, agent.total = info, total
        agent.connected, agent.disconnected_at, agent.reregistered_time = True, None, now
        agent.recovered, agent.unreachable_at = False, None
        return agent

    def _drop_unreported_tasks(self, agent: AgentRecord, reported: dict[TaskKey, agent_pb2.AgentTask]) -> None:
        """The tasks the master knew on the agent that it re-attached without: over (forgotten) or lost."""
        now = self.clock()
        for key, task in list(agent.tasks.items()):
            if key in reported:
                continue
            fw = self.frameworks.get(task.framework_id)
            if is_terminal(task.state):
                # Over, and the agent no longer holds its update: nobody will acknowledge it now.
                if fw is not None:
                    self._forget_task(fw, task)
                agent.tasks.pop(key, None)
                continue
            status = self._master_status(
                task.task_id,
                tpb.TASK_LOST,
                TaskStatus.REASON_AGENT_RESTARTED,
                "the agent re-attached without this task",
                agent.id,
                now,
            )
            self._apply_status(task, status)
            if fw is not None:
                self.outbox.framework(fw.id).updates.append(status)
                self._forget_task(fw, task)
            else:
                del agent.tasks[key]

    def _adopt_reported_task(
        self, agent: AgentRecord, key: TaskKey, reported: agent_pb2.AgentTask, was_unreachable: bool
    ) -> None:
        """A task the re-attaching agent runs: the master's record of it takes the state the agent reports."""
        framework_id, task_id = key
        if key in agent.lost_tasks:
            # Reported TASK_LOST while the agent was unreachable, to a framework that is not partition-aware:
            # it stays lost (Mesos kills such tasks when their agent comes back).
            self.outbox.agent(agent.id).kills.append(MasterMessage.KillTask(framework_id=framework_id, task_id=task_id))
            return
        fw = self.frameworks.get(framework_id)
        if fw is None:
            if framework_id in self.removed_framework_ids:
                self._shutdown_framework_on(agent.id, framework_id)
                return
            fw = self._framework_heard_of_from_agent(framework_id)
        task = fw.tasks.get(task_id)
        if task is None:
            done = fw.completed_task(task_id)
            lost = was_unreachable and not fw.has(Capability.PARTITION_AWARE)
            if lost or (done is not None and done.agent_id == agent.id):
                # Its framework was told it is over: it acknowledged the end, or heard TASK_LOST when its agent
                # went away (or from a reconciliation while the agent was unreachable, this master unaware of the
                # task: after a restart). A terminal state is final: the task stays over, killed; its updates end
                # at the master.
                agent.lost_tasks.add(key)
                if not is_terminal(reported.state):
                    self.outbox.agent(agent.id).kills.append(
                        MasterMessage.KillTask(framework_id=framework_id, task_id=task_id)
                    )
                return
            try:
                resources = Resources.from_proto(reported.task.resources)
            except ResourcesError:
                resources = Resources.empty()
            task = Task(framework_id, agent.id, reported.task, resources, state=reported.state)
            fw.tasks[task_id] = task
            self._publish_task_added(task)
        back_from_unreachable = task.state == tpb.TASK_UNREACHABLE
        changed = task.state != reported.state
        task.state = reported.state
        behind = reported.HasField("status_update_state") and reported.status_update_state != reported.state
        task.status_update_state = reported.status_update_state if behind else None
        agent.tasks[key] = task
        if back_from_unreachable and not is_terminal(task.state):
            # A partition-aware framework was told TASK_UNREACHABLE: tell it how the task really is now, and let
            # the record say so too (a reconciliation answers from it, not with the stale "unreachable"). A task
            # that ended meanwhile: the agent's own update says how, with its exit code.
            status = self._master_status(
                task_id, task.state, TaskStatus.REASON_NONE, "its agent is reachable again", agent.id, self.clock()
            )
            task.statuses.append(status)
            changed = True
            if fw.connected:
                self.outbox.framework(fw.id).updates.append(status)
        if changed:
            self._publish_task_updated(task)
        if task.kill_requested and not is_terminal(task.state):
            self.outbox.agent(agent.id).kills.append(MasterMessage.KillTask(framework_id=framework_id, task_id=task_id))

    def _framework_heard_of_from_agent(self, framework_id: str) -> Framework:
        """A framework the master has not heard of (its registry was lost): keep it, disconnected."""
        now = self.clock()
        fw = Framework(
            info=rpb.FrameworkInfo(id=framework_id, name=framework_id),
            connected=False,
            registered_time=now,
            disconnected_at=now,
            expires_at=now + self.agent_reregister_timeout,
        )
        self.frameworks[framework_id] = fw
        self.allocator.add_framework(framework_id, [], {}, active=False)
        self._publish_framework(OperatorEvent.FRAMEWORK_ADDED, fw)
        return fw

    def disconnect_agent(self, agent_id: str) -> None:
        agent = self.agents.get(agent_id)
        if agent is None or not agent.connected:
            return
        agent.connected = False
        agent.disconnected_at = self.clock()
        self.allocator.deactivate_agent(agent_id)
        self._rescind_agent_offers(agent_id, recover=True)
        self._publish_agent(OperatorEvent.AGENT_UPDATED, agent)
        log.info("agent disconnected", agent_id=agent_id)

    def mark_unreachable(self, agent_id: str, why: str) -> None:
        """The master stops waiting for a disconnected agent (Mesos 1.1+): its tasks are TASK_UNREACHABLE to
        PARTITION_AWARE frameworks, which keep them and hear again should the agent come back, and TASK_LOST to
        the others; every framework hears FAILURE (agent_lost). The agent stays known, so that it may re-attach."""
        agent = self.agents.get(agent_id)
        if agent is None or agent.connected or agent.unreachable_at is not None:
            return
        now = self.clock()
        self._rescind_agent_offers(agent_id, recover=False)
        message = f"agent {agent_id} ({agent.info.hostname}) is unreachable: {why}"
        for key, task in list(agent.tasks.items()):
            if is_terminal(task.state):
                continue
            fw = self.frameworks.get(task.framework_id)
            aware = fw is not None and fw.has(Capability.PARTITION_AWARE)
            state = tpb.TASK_UNREACHABLE if aware else tpb.TASK_LOST
            status = self._master_status(task.task_id, state, TaskStatus.REASON_AGENT_REMOVED, message, agent_id, now)
            self._apply_status(task, status)
            if fw is not None:
                self.outbox.framework(fw.id).updates.append(status)
            if not aware:
                agent.lost_tasks.add(key)
                if fw is not None:
                    self._forget_task(fw, task)
                else:
                    agent.tasks.pop(key, None)
        if agent_id in self._allocator_agents:
            self.allocator.remove_agent(agent_id)
            self._allocator_agents.discard(agent_id)
        agent.unreachable_at = now
        self._agent_settled(agent_id, tpb.TASK_UNREACHABLE, tpb.TASK_LOST, TaskStatus.REASON_AGENT_REMOVED, message)
        self.outbox.write(MarkAgentUnreachable(agent_id, now))
        self._publish_agent(OperatorEvent.AGENT_UNREACHABLE, agent, why)
        self._agent_lost(agent_id)
        log.warning("agent unreachable", agent_id=agent_id, why=why)

    def _agent_lost(self, agent_id: str) -> None:
        for fw in self.frameworks.values():
            if fw.connected:
                failure = Event(type=Event.FAILURE, failure=Event.Failure(agent_id=agent_id))
                self.outbox.framework(fw.id).rest.append(failure)

    def remove_agent(self, agent_id: str, reason: int, why: str) -> None:
        agent = self.agents.get(agent_id)
        if agent is None:
            return
        now = self.clock()
        self._rescind_agent_offers(agent_id, recover=False)
        del self.agents[agent_id]
        state = tpb.TASK_GONE if reason == TaskStatus.REASON_AGENT_REMOVED_BY_OPERATOR else tpb.TASK_LOST
        for task in list(agent.tasks.values()):
            fw = self.frameworks.get(task.framework_id)
            if is_terminal(task.state):
                continue
            status = self._master_status(task.task_id, state, reason, why, agent_id, now)
            self._apply_status(task, status)
            if fw is not None:
                self.outbox.framework(fw.id).updates.append(status)
                self._forget_task(fw, task)
        if agent_id in self._allocator_agents:
            self.allocator.remove_agent(agent_id)
            self._allocator_agents.discard(agent_id)
        self._agent_settled(agent_id, state, state, reason, why)
        self.outbox.write(RemoveAgent(agent_id))
        self._publish_agent(OperatorEvent.AGENT_REMOVED, agent, why, removed=True)
        if agent.unreachable_at is None:
            self._agent_lost(agent_id)  # an unreachable agent was reported lost already
        log.warning("agent removed", agent_id=agent_id, why=why)

    def expire_agents(self, now: float) -> None:
        """Mark unreachable the disconnected agents that stayed away too long; forget those unreachable too long."""
        for agent in list(self.agents.values()):
            if agent.connected:
                continue
            if agent.unreachable_at is not None:
                if now - agent.unreachable_at >= self.unreachable_agent_max_age:
                    self.remove_agent(agent.id, TaskStatus.REASON_AGENT_REMOVED, "unreachable for too long: forgotten")
                continue
            away = agent.disconnected_at
            limit = self.agent_reregister_timeout if agent.recovered else self.agent_unreachable_timeout
            if away is not None and now - away >= limit:
                what = "did not re-attach to the new master" if agent.recovered else "did not re-attach"
                self.mark_unreachable(agent.id, f"{what} within {limit:g} s")
