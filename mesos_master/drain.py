"""Drain (maintenance, Mesos 1.9's DRAIN_AGENT / REACTIVATE_AGENT; what Nomad's node drain shows an operator).

A draining agent gets no new offers (its outstanding ones are rescinded, the allocator deactivates it), and the
frameworks with tasks there hear AGENT_DRAINING (at once when connected, again on every (re-)subscription while
the drain lasts, and when the agent re-attaches). At the deadline every non-terminal task still there is killed,
TASK_KILLED with REASON_AGENT_DRAINING; without a deadline the tasks run until they end by themselves. When
nothing non-terminal runs there the agent is DRAINED; with `mark_gone` it is then removed for good: told to shut
down, forgotten, and refused should it attach again with its id. ReactivateAgent ends a drain: offers resume.

The drain is in the registry (`UpdateDrain`, `RemoveDrain`, `MarkAgentGone`), so it survives a master restart or
failover; a recovered agent is not DRAINED before it has re-attached (until then its tasks are unknown).
"""

from __future__ import annotations

import math

import structlog

from aiomesos.v1 import agent_pb2, scheduler_pb2
from aiomesos.v1 import operator_pb2 as opb
from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from aiomesos.v1.events_pb2 import OperatorEvent
from mesos_master.agents import AgentTransitions
from mesos_master.errors import DeniedError, PreconditionError, UnknownIdError
from mesos_master.frameworks import FrameworkTransitions
from mesos_master.records import DRAINED, DRAINING, AgentRecord, Drain, Task
from mesos_master.registry import RegistryState
from mesos_master.registry.operations import MarkAgentGone, RemoveDrain, UpdateDrain
from mesos_master.validation import CallError
from scheduler_sdk.quoting import quoted
from scheduler_sdk.states import is_terminal

log = structlog.get_logger(__name__)

Event = scheduler_pb2.Event
MasterMessage = agent_pb2.MasterMessage
TaskStatus = tpb.TaskStatus

#: The longest drain deadline accepted (a year): beyond it is a typo, not maintenance.
MAX_DEADLINE_SECONDS = 366 * 24 * 3600.0


def drain_info(drain: Drain | None) -> opb.DrainInfo:
    """What the operator API shows of an agent's drain (state DRAIN_NONE: none)."""
    if drain is None:
        return opb.DrainInfo()
    return opb.DrainInfo(
        state=opb.DRAINED if drain.state == DRAINED else opb.DRAINING,
        deadline=drain.deadline or 0.0,
        has_deadline=drain.deadline is not None,
        mark_gone=drain.mark_gone,
        since=drain.since,
        drained_at=drain.drained_at or 0.0,
    )


class DrainTransitions(FrameworkTransitions, AgentTransitions):
    # ----------------------------------------------------------------------------- operator calls
    def drain_agent(self, agent_id: str, deadline_seconds: float | None, mark_gone: bool) -> Drain:
        """Start draining the agent (or, for one draining already, replace its deadline and mark_gone: a retry is
        harmless). Raises UnknownIdError (NOT_FOUND) or CallError (a bad deadline)."""
        agent = self.agents.get(agent_id)
        if agent is None:
            gone = " (it was drained and marked gone)" if agent_id in self.gone_agents else ""
            raise UnknownIdError(f"unknown agent {quoted(agent_id)}{gone}")
        if deadline_seconds is not None and not (
            math.isfinite(deadline_seconds) and 0 <= deadline_seconds <= MAX_DEADLINE_SECONDS
        ):
            raise CallError(f"deadline_seconds must be between 0 and {MAX_DEADLINE_SECONDS:g}, not {deadline_seconds}")
        now = self.clock()
        deadline = None if deadline_seconds is None else now + deadline_seconds
        drain = self.drains.get(agent_id)
        if drain is None:
            drain = self.drains[agent_id] = Drain(agent_id, deadline, mark_gone, since=now)
            self._rescind_agent_offers(agent_id, recover=True)
            if agent_id in self._allocator_agents:
                self.allocator.deactivate_agent(agent_id)
        else:
            drain.deadline, drain.mark_gone = deadline, mark_gone
        self._write_drain(drain)
        self._publish_agent(OperatorEvent.AGENT_DRAINING, agent)
        log.info(
            "agent draining",
            agent_id=agent_id,
            hostname=agent.info.hostname,
            deadline_seconds=deadline_seconds,
            mark_gone=mark_gone,
            tasks=len(self._live_tasks(agent)),
        )
        if drain.state == DRAINING:
            self._tell_draining(drain, agent, self._frameworks_with_tasks(agent))
        self._advance_drain(drain, now)
        return drain

    def reactivate_agent(self, agent_id: str) -> None:
        """End the agent's drain: it is offered again. Raises UnknownIdError, or PreconditionError (not draining)."""
        agent = self.agents.get(agent_id)
        if agent is None:
            raise UnknownIdError(f"unknown agent {quoted(agent_id)}")
        if self.drains.pop(agent_id, None) is None:
            raise PreconditionError(f"agent {quoted(agent_id)} is not draining or drained: nothing to reactivate")
        self.outbox.write(RemoveDrain(agent_id))
        self._publish_agent(OperatorEvent.AGENT_REACTIVATED, agent)
        if agent.connected and agent_id in self._allocator_agents:
            self.allocator.activate_agent(agent_id)
        log.info("agent reactivated", agent_id=agent_id, hostname=agent.info.hostname)

    # ----------------------------------------------------------------------------- time
    def drain_tick(self, now: float) -> None:
        """Kill what still runs on agents past their deadline; mark the empty ones DRAINED; remove the drained
        ones marked gone."""
        for drain in list(self.drains.values()):
            self._advance_drain(drain, now)

    def _advance_drain(self, drain: Drain, now: float) -> None:
        agent = self.agents.get(drain.agent_id)
        if agent is None:  # removed meanwhile (unreachable too long)
            self.drains.pop(drain.agent_id, None)
            return
        if drain.state == DRAINING:
            if drain.deadline is not None and now >= drain.deadline and agent.connected:
                self._kill_for_deadline(drain, agent)
            if agent.recovered or self._live_tasks(agent):
                return  # tasks still run there, or (not re-attached since a master restart) may
            drain.state, drain.drained_at = DRAINED, now
            self._write_drain(drain)
            self._publish_agent(OperatorEvent.AGENT_DRAINING, agent)
            log.info("agent drained", agent_id=agent.id, hostname=agent.info.hostname, seconds=now - drain.since)
        if drain.mark_gone:
            self._mark_gone(agent, now)

    def _kill_for_deadline(self, drain: Drain, agent: AgentRecord) -> None:
        message = f"killed: agent {agent.id} ({agent.info.hostname}) is draining and its drain deadline passed"
        for key, task in self._live_tasks(agent).items():
            if key in drain.killed:
                continue
            drain.killed.add(key)
            log.info("killing a task at the drain deadline", agent_id=agent.id, framework_id=key[0], task_id=key[1])
            self.outbox.agent(agent.id).kills.append(
                MasterMessage.KillTask(
                    framework_id=task.framework_id,
                    task_id=task.task_id,
                    kill_policy=task.info.kill_policy,
                    reason=TaskStatus.REASON_AGENT_DRAINING,
                    message=message,
                )
            )

    def _mark_gone(self, agent: AgentRecord, now: float) -> None:
        """Mesos' mark-gone: the agent is told to shut down and forgotten; it may never attach with its id again."""
        why = f"agent {agent.id} ({agent.info.hostname}) was drained and marked gone by the operator"
        if agent.connected:
            self.outbox.agent(agent.id).rest.append(
                MasterMessage(type=MasterMessage.SHUTDOWN, shutdown=MasterMessage.Shutdown(message=why))
            )
        self.drains.pop(agent.id, None)
        self.remove_agent(agent.id, TaskStatus.REASON_AGENT_REMOVED_BY_OPERATOR, why)
        self.gone_agents[agent.id] = now
        self.outbox.write(MarkAgentGone(agent.id, now))
        log.info("agent gone", agent_id=agent.id, hostname=agent.info.hostname)

    # ----------------------------------------------------------------------------- what others do, with a drain
    def register_agent(self, reg: agent_pb2.AgentMessage.Register, principal: str = "") -> str:
        """As AgentTransitions', but an agent marked gone is refused, and a draining one stays out of offers (its
        frameworks hear of the drain again: they may not have, from this master)."""
        claimed = reg.agent_info.id
        if claimed and claimed in self.gone_agents:
            raise DeniedError(
                f"agent {quoted(claimed)} was drained and marked gone by the operator: it may not attach again "
                "with that id (start it with a new work dir)"
            )
        agent_id = super().register_agent(reg, principal)
        drain = self.drains.get(agent_id)
        if drain is not None:
            self.allocator.deactivate_agent(agent_id)
            drain.killed.clear()  # a kill sent on the old attachment may be lost: sent again past the deadline
            if drain.state == DRAINING:
                agent = self.agents[agent_id]
                self._tell_draining(drain, agent, self._frameworks_with_tasks(agent))
        return agent_id

    def subscribe(self, info: rpb.FrameworkInfo, principal: str = "") -> str:
        """As FrameworkTransitions', and the framework hears of every drain of an agent it has tasks on."""
        framework_id = super().subscribe(info, principal)
        for drain in self.drains.values():
            agent = self.agents.get(drain.agent_id)
            if drain.state == DRAINING and agent is not None and framework_id in self._frameworks_with_tasks(agent):
                self._tell_draining(drain, agent, {framework_id})
        return framework_id

    # ----------------------------------------------------------------------------- helpers
    def _recover_drains(self, state: RegistryState) -> None:
        self.gone_agents = dict(state.gone)
        for agent_id, kept in state.drains.items():
            if agent_id in self.agents:
                self.drains[agent_id] = Drain(
                    agent_id, kept.deadline, kept.mark_gone, kept.since, state=kept.state, drained_at=kept.drained_at
                )

    def _write_drain(self, drain: Drain) -> None:
        self.outbox.write(
            UpdateDrain(drain.agent_id, drain.state, drain.deadline, drain.mark_gone, drain.since, drain.drained_at)
        )

    @staticmethod
    def _live_tasks(agent: AgentRecord) -> dict[tuple[str, str], Task]:
        return {key: task for key, task in agent.tasks.items() if not is_terminal(task.state)}

    @staticmethod
    def _frameworks_with_tasks(agent: AgentRecord) -> set[str]:
        return {task.framework_id for task in agent.tasks.values() if not is_terminal(task.state)}

    def _tell_draining(self, drain: Drain, agent: AgentRecord, framework_ids: set[str]) -> None:
        event = Event(
            type=Event.AGENT_DRAINING,
            agent_draining=Event.AgentDraining(
                agent_id=agent.id,
                hostname=agent.info.hostname,
                deadline=drain.deadline or 0.0,
                has_deadline=drain.deadline is not None,
            ),
        )
        for framework_id in sorted(framework_ids):
            fw = self.frameworks.get(framework_id)
            if fw is not None and fw.connected:
                self.outbox.framework(framework_id).rest.append(event)
