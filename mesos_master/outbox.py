"""What the core has to send or write, batched until the shell drains it (once per event-loop turn).

Draining batches: all offers for a framework become one OFFERS event, all its status updates one UPDATE event,
all launches for an agent one RUN_TASKS message, and so on; registry writes keep their order. What the operator
event stream is to show (`publish`) keeps its order too, each event with the principal of the framework it is
about (None: the cluster's own, shown to every watcher).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from aiomesos.v1 import agent_pb2, events_pb2, scheduler_pb2
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_master.registry.operations import Operation

Event = scheduler_pb2.Event
MasterMessage = agent_pb2.MasterMessage


@dataclass
class FrameworkMail:
    first: list[scheduler_pb2.Event] = field(default_factory=list)
    rescinds: list[str] = field(default_factory=list)
    updates: list[tpb.TaskStatus] = field(default_factory=list)
    offers: list[scheduler_pb2.Offer] = field(default_factory=list)
    rest: list[scheduler_pb2.Event] = field(default_factory=list)

    def events(self) -> list[scheduler_pb2.Event]:
        events = list(self.first)
        if self.rescinds:
            events.append(Event(type=Event.RESCIND, rescind=Event.Rescind(offer_ids=self.rescinds)))
        if self.updates:
            events.append(Event(type=Event.UPDATE, update=Event.Update(statuses=self.updates)))
        if self.offers:
            events.append(Event(type=Event.OFFERS, offers=Event.Offers(offers=self.offers)))
        events.extend(self.rest)
        return events


@dataclass
class AgentMail:
    first: list[agent_pb2.MasterMessage] = field(default_factory=list)
    runs: list[agent_pb2.MasterMessage.RunTask] = field(default_factory=list)
    kills: list[agent_pb2.MasterMessage.KillTask] = field(default_factory=list)
    acks: list[tpb.Acknowledgement] = field(default_factory=list)
    rest: list[agent_pb2.MasterMessage] = field(default_factory=list)

    def messages(self) -> list[agent_pb2.MasterMessage]:
        messages = list(self.first)
        if self.runs:
            messages.append(
                MasterMessage(type=MasterMessage.RUN_TASKS, run_tasks=MasterMessage.RunTasks(tasks=self.runs))
            )
        if self.kills:
            messages.append(
                MasterMessage(type=MasterMessage.KILL_TASKS, kill_tasks=MasterMessage.KillTasks(tasks=self.kills))
            )
        if self.acks:
            messages.append(
                MasterMessage(
                    type=MasterMessage.ACKNOWLEDGE, acknowledge=MasterMessage.Acknowledge(acknowledgements=self.acks)
                )
            )
        messages.extend(self.rest)
        return messages


class Published(NamedTuple):
    """An event of the operator stream, and whose it is: the principal of its framework (who may see it is that
    framework's view_frameworks ACL), or None for the cluster's own (agents, quota, weights: shown to all)."""

    event: events_pb2.OperatorEvent
    owner: str | None = None


@dataclass
class Drained:
    to_frameworks: dict[str, list[scheduler_pb2.Event]]
    to_agents: dict[str, list[agent_pb2.MasterMessage]]
    close_frameworks: dict[str, str]  # framework id -> why its stream ends
    writes: list[Operation]  # registry operations, in order
    events: list[Published] = field(default_factory=list)  # for the operator event stream, in order


class Outbox:
    def __init__(self) -> None:
        self._to_frameworks: dict[str, FrameworkMail] = {}
        self._to_agents: dict[str, AgentMail] = {}
        self._close: dict[str, str] = {}
        self._writes: list[Operation] = []
        self._events: list[Published] = []
        #: Whether anyone watches the event stream (the dispatcher keeps it so): when not, the core builds no
        #: events at all, and a watcher that comes gets the state then as its snapshot.
        self.watched = True

    def __bool__(self) -> bool:
        return bool(self._to_frameworks or self._to_agents or self._close or self._writes or self._events)

    def framework(self, framework_id: str) -> FrameworkMail:
        mail = self._to_frameworks.get(framework_id)
        if mail is None:
            mail = self._to_frameworks[framework_id] = FrameworkMail()
        return mail

    def agent(self, agent_id: str) -> AgentMail:
        mail = self._to_agents.get(agent_id)
        if mail is None:
            mail = self._to_agents[agent_id] = AgentMail()
        return mail

    def close(self, framework_id: str, why: str) -> None:
        self._close[framework_id] = why

    def write(self, operation: Operation) -> None:
        self._writes.append(operation)

    def publish(self, event: events_pb2.OperatorEvent, owner: str | None = None) -> None:
        if self.watched:
            self._events.append(Published(event, owner))

    def drain(self) -> Drained:
        drained = Drained(
            {framework_id: mail.events() for framework_id, mail in self._to_frameworks.items()},
            {agent_id: mail.messages() for agent_id, mail in self._to_agents.items()},
            self._close,
            self._writes,
            self._events,
        )
        self._to_frameworks, self._to_agents, self._close, self._writes, self._events = {}, {}, {}, [], []
        return drained
