"""Virtual agents: what a real agent would answer the master, on the virtual clock, without processes.

An agent registers with `Master.register_agent` as a real one does over its stream; a RUN_TASKS message makes
each task RUNNING after `launch_latency` and FINISHED its run time later (the task's label `aiomesos.sim/seconds`,
as for `aiomesos simulate-agents`); KILL_TASKS ends a task at once (TASK_KILLED). The updates are handed back as
`Update`s for the replay to schedule; what the agents say to the master goes through `Master.status_updates`,
batched per agent per instant, as a real agent's STATUS_UPDATES message.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from aiomesos.v1 import agent_pb2
from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_master.simulation.trace import AgentGroup
from scheduler_sdk.resources import Resources

__all__ = ["SECONDS_LABEL", "Update", "VirtualAgents", "agent_infos", "capacity"]

SECONDS_LABEL = "aiomesos.sim/seconds"  # a task's run time (seconds), as the simulated agents read it
MasterMessage = agent_pb2.MasterMessage
StatusUpdate = agent_pb2.AgentMessage.StatusUpdate


@dataclass(frozen=True, slots=True)
class Update:
    """A task state an agent reports at `time`."""

    time: float
    agent_id: str
    framework_id: str
    task_id: str
    state: int


def agent_infos(groups: Sequence[AgentGroup]) -> Iterator[rpb.AgentInfo]:
    """One AgentInfo per agent: hostnames `sim-00000`..., attributes spread round-robin within each group."""
    index = itertools.count()
    for group in groups:
        resources = Resources.parse(group.resources).to_proto()
        for i in range(group.count):
            attributes = [
                rpb.Attribute(name=name, type=rpb.Value.TEXT, text=rpb.Value.Text(value=f"{name}{i % n}"))
                for name, n in group.spread
            ]
            yield rpb.AgentInfo(hostname=f"sim-{next(index):05d}", resources=resources, attributes=attributes)


def capacity(groups: Sequence[AgentGroup]) -> tuple[dict[str, float], dict[str, float]]:
    """The cluster's totals and the largest amount of each scalar any one agent has."""
    totals: dict[str, float] = {}
    largest: dict[str, float] = {}
    for group in groups:
        for name, amount in Resources.parse(group.resources).scalars().items():
            totals[name] = totals.get(name, 0.0) + amount * group.count
            largest[name] = max(largest.get(name, 0.0), amount)
    return totals, largest


class VirtualAgents:
    def __init__(self, launch_latency: float = 0.0) -> None:
        self.launch_latency = launch_latency
        self.live: dict[tuple[str, str], str] = {}  # (agent id, task id) -> framework id, until terminal
        self._uuids = itertools.count(1)

    def handle(self, agent_id: str, messages: Iterable[agent_pb2.MasterMessage], now: float) -> list[Update]:
        """The updates the master's messages to one agent lead to (REGISTERED, PING, ACKNOWLEDGE: none)."""
        out: list[Update] = []
        for message in messages:
            if message.type == MasterMessage.RUN_TASKS:
                for run in message.run_tasks.tasks:
                    out.extend(self._run(agent_id, run, now))
            elif message.type == MasterMessage.KILL_TASKS:
                for kill in message.kill_tasks.tasks:
                    if (agent_id, kill.task_id) in self.live:
                        out.append(Update(now, agent_id, kill.framework_id, kill.task_id, tpb.TASK_KILLED))
        return out

    def _run(self, agent_id: str, run: MasterMessage.RunTask, now: float) -> list[Update]:
        task, framework_id = run.task, run.framework.id
        seconds = next((float(label.value) for label in task.labels.labels if label.key == SECONDS_LABEL), 0.0)
        key = (agent_id, task.task_id)
        self.live[key] = framework_id
        started = now + self.launch_latency
        return [
            Update(started, agent_id, framework_id, key[1], tpb.TASK_RUNNING),
            Update(started + seconds, agent_id, framework_id, key[1], tpb.TASK_FINISHED),
        ]

    def report(self, updates: Sequence[Update]) -> list[StatusUpdate]:
        """The STATUS_UPDATES of one agent for these updates, dropping those of tasks already over (a task
        killed before it finished, whose FINISHED was already scheduled)."""
        out = []
        for u in updates:
            key = (u.agent_id, u.task_id)
            if key not in self.live:
                continue
            if u.state != tpb.TASK_RUNNING:
                del self.live[key]
            status = tpb.TaskStatus(
                task_id=u.task_id,
                state=u.state,  # type: ignore[arg-type]
                agent_id=u.agent_id,
                uuid=next(self._uuids).to_bytes(8, "big"),
                timestamp=u.time,
                source=tpb.TaskStatus.SOURCE_EXECUTOR,
            )
            out.append(StatusUpdate(framework_id=u.framework_id, status=status))
        return out
