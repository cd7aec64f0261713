"""The pure part of a simulated agent: what it reports for the tasks the master launches and kills, and its
reliable status-update streams (per task, only the head is in flight; it is resent with backoff until the
framework acknowledges it through the master, then the next goes), as a real agent's are. No I/O: the shell
(`scheduler_sdk.simulated_agents`) feeds it the master's messages and the clock, takes what it has to send
(`take_out`) once per event-loop turn, and runs the timers it asks for (`run_task` returns the run time)."""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from aiomesos.v1 import agent_pb2
from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.backoff import next_delay
from scheduler_sdk.states import is_terminal

TaskStatus = tpb.TaskStatus
StatusUpdate = agent_pb2.AgentMessage.StatusUpdate
TaskKey = tuple[str, str]  # (framework id, task id)

#: The label of a task that says how long its simulated run takes (seconds, a float; 0: until killed).
SIM_SECONDS_LABEL = "aiomesos.sim/seconds"
#: A real agent's first resend of an unacknowledged update (Mesos' status_update_retry_interval_min).
RETRY_MIN = 10.0
RETRY_MAX = 600.0


def task_seconds(info: tpb.TaskInfo, default: float, label: str = SIM_SECONDS_LABEL) -> float | None:
    """How long a simulated task runs: its `label` when that is a number >= 0, else `default`; None for 0
    (it runs until it is killed)."""
    seconds = default
    if label:
        for item in info.labels.labels:
            if item.key == label:
                try:
                    value = float(item.value)
                except ValueError:
                    break
                if math.isfinite(value) and value >= 0:
                    seconds = value
                break
    return seconds if seconds > 0 else None


def parse_spread(text: str | None) -> dict[str, int]:
    """`zone=3,rack=100`: each attribute and how many distinct values the agents spread over. ValueError names
    the piece that is wrong."""
    spread: dict[str, int] = {}
    for raw in (text or "").split(","):
        part = raw.strip()
        if not part:
            continue
        name, sep, count = part.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"--attributes-spread: {part!r} is not NAME=COUNT")
        try:
            n = int(count)
        except ValueError:
            raise ValueError(f"--attributes-spread: {name}'s count {count.strip()!r} is not a whole number") from None
        if n < 1:
            raise ValueError(f"--attributes-spread: {name}'s count must be at least 1, not {n}")
        if name in spread:
            raise ValueError(f"--attributes-spread: {name} appears twice")
        spread[name] = n
    return spread


def agent_attributes(index: int, spread: Mapping[str, int]) -> list[rpb.Attribute]:
    """The text attributes of the agent numbered `index`: NAME = NAME-(index mod COUNT), so that the agents
    spread evenly over each attribute's values (`zone=3`: zone-0, zone-1, zone-2)."""
    return [
        rpb.Attribute(name=name, type=rpb.Value.TEXT, text=rpb.Value.Text(value=f"{name}-{index % count}"))
        for name, count in spread.items()
    ]


@dataclass
class Counters:
    """What all the simulated agents of a process did, summed (the shell reports these)."""

    launched: int = 0
    running: int = 0  # tasks whose latest state is TASK_RUNNING
    finished: int = 0
    killed: int = 0
    updates_sent: int = 0  # status updates sent (resends included)
    acknowledged: int = 0


@dataclass(slots=True)
class _Stream:
    framework_id: str
    pending: deque[tpb.TaskStatus] = field(default_factory=deque)
    sent_at: float | None = None
    backoff: float = 0.0


@dataclass(slots=True)
class SimTask:
    info: tpb.TaskInfo
    state: int
    timer: object = None  # the shell's handle of the run timer (cancelled by a kill)


def _new_uuid() -> bytes:
    return os.urandom(16)


class SimAgentModel:
    """One simulated agent's tasks and update streams. The shell sets `connected` as its stream comes and goes;
    `take_out` hands over the updates to send now (one STATUS_UPDATES message's worth)."""

    __slots__ = (
        "agent_id",
        "clock",
        "connected",
        "counters",
        "new_uuid",
        "out",
        "retry_max",
        "retry_min",
        "streams",
        "tasks",
    )

    def __init__(
        self,
        counters: Counters,
        clock: Callable[[], float],
        *,
        new_uuid: Callable[[], bytes] = _new_uuid,
        retry_min: float = RETRY_MIN,
        retry_max: float = RETRY_MAX,
    ) -> None:
        self.agent_id = ""
        self.counters = counters
        self.clock = clock
        self.new_uuid = new_uuid
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.connected = False
        self.tasks: dict[TaskKey, SimTask] = {}
        self.streams: dict[TaskKey, _Stream] = {}
        self.out: list[StatusUpdate] = []

    # ------------------------------------------------------------------ from the master
    def run_task(self, framework_id: str, info: tpb.TaskInfo, default_seconds: float, label: str) -> float | None:
        """RUN_TASKS: the task starts at once (TASK_STARTING, then TASK_RUNNING). Returns how long it runs (the
        shell calls `finish` then), None when it runs until killed, or was launched twice (it runs already)."""
        key = (framework_id, info.task_id)
        known = self.tasks.get(key)
        if known is not None and not is_terminal(known.state):
            return None  # the same launch again: the task already runs
        self.tasks[key] = SimTask(info, tpb.TASK_STAGING)
        self.counters.launched += 1
        self._update(key, tpb.TASK_STARTING)
        self._update(key, tpb.TASK_RUNNING)
        return task_seconds(info, default_seconds, label)

    def finish(self, key: TaskKey) -> None:
        """The task's run time is over: TASK_FINISHED (exit code 0)."""
        task = self.tasks.get(key)
        if task is not None and not is_terminal(task.state):
            self._update(key, tpb.TASK_FINISHED, message="simulated run over", exit_code=0)

    def kill(self, framework_id: str, task_id: str, reason: int = TaskStatus.REASON_NONE, message: str = "") -> object:
        """KILL_TASKS: TASK_KILLED (the reason and message the master gave), or TASK_LOST (REASON_TASK_UNKNOWN)
        for a task the agent does not know. Returns the run timer to cancel (None: none)."""
        key = (framework_id, task_id)
        task = self.tasks.get(key)
        if task is None:
            self._append(
                key,
                _status(task_id, tpb.TASK_LOST, self.agent_id, self.clock(), self.new_uuid(), TaskStatus.SOURCE_AGENT),
                TaskStatus.REASON_TASK_UNKNOWN,
                "the agent does not know this task",
            )
            return None
        if is_terminal(task.state):
            return None
        self._update(key, tpb.TASK_KILLED, reason=reason, message=message or "killed")
        timer, task.timer = task.timer, None
        return timer

    def shutdown_framework(self, framework_id: str) -> list[object]:
        """SHUTDOWN_FRAMEWORK: every task of the framework is killed. Returns their timers to cancel."""
        keys = [k for k, t in self.tasks.items() if k[0] == framework_id and not is_terminal(t.state)]
        return [self.kill(fid, tid, message="its framework was shut down") for fid, tid in keys]

    def acknowledge(self, framework_id: str, task_id: str, uuid: bytes) -> bool:
        """ACKNOWLEDGE: the head of the task's stream goes; the next is sent (False: a stale or duplicate ack)."""
        key = (framework_id, task_id)
        stream = self.streams.get(key)
        if stream is None or not stream.pending or stream.pending[0].uuid != uuid:
            return False
        stream.pending.popleft()
        self.counters.acknowledged += 1
        stream.sent_at, stream.backoff = None, 0.0
        if stream.pending:
            self._send_head(stream)
        else:
            del self.streams[key]
            task = self.tasks.get(key)
            if task is not None and is_terminal(task.state):
                del self.tasks[key]  # over and acknowledged: forgotten
        return True

    def on_connected(self, agent_id: str) -> None:
        """(Re-)attached: every head goes at once, its backoff afresh (as a real agent's)."""
        self.agent_id = agent_id
        self.connected = True
        self.out.clear()
        for stream in self.streams.values():
            stream.sent_at, stream.backoff = None, 0.0
            self._send_head(stream)

    def on_disconnected(self) -> None:
        self.connected = False
        self.out.clear()

    def due(self) -> int:
        """Resend the heads whose retry time has come; returns how many."""
        if not self.connected:
            return 0
        now = self.clock()
        late = [s for s in self.streams.values() if s.sent_at is not None and now - s.sent_at >= s.backoff]
        for stream in late:
            self._send_head(stream)
        return len(late)

    def take_out(self) -> list[StatusUpdate]:
        out, self.out = self.out, []
        self.counters.updates_sent += len(out)
        return out

    def registered_tasks(self) -> list[agent_pb2.AgentTask]:
        """What REGISTER reports: every task the agent runs or has unacknowledged updates for."""
        reported = []
        for (framework_id, _), task in self.tasks.items():
            item = agent_pb2.AgentTask(framework_id=framework_id, task=task.info, state=task.state)  # type: ignore[arg-type]
            stream = self.streams.get((framework_id, task.info.task_id))
            if stream is not None and stream.pending:
                item.status_update_state = stream.pending[0].state
            reported.append(item)
        return reported

    def timers(self) -> Iterable[object]:
        return [t.timer for t in self.tasks.values() if t.timer is not None]

    # ------------------------------------------------------------------ updates
    def _update(
        self,
        key: TaskKey,
        state: int,
        *,
        reason: int = TaskStatus.REASON_NONE,
        message: str = "",
        exit_code: int | None = None,
    ) -> None:
        task = self.tasks[key]
        if task.state == tpb.TASK_RUNNING:
            self.counters.running -= 1
        task.state = state
        if state == tpb.TASK_RUNNING:
            self.counters.running += 1
        elif state == tpb.TASK_FINISHED:
            self.counters.finished += 1
        elif state == tpb.TASK_KILLED:
            self.counters.killed += 1
        status = _status(key[1], state, self.agent_id, self.clock(), self.new_uuid(), TaskStatus.SOURCE_EXECUTOR)
        if exit_code is not None:
            status.exit_code = exit_code
        self._append(key, status, reason, message)

    def _append(self, key: TaskKey, status: tpb.TaskStatus, reason: int, message: str) -> None:
        if reason:
            status.reason = reason  # type: ignore[assignment]
        if message:
            status.message = message
        stream = self.streams.get(key)
        if stream is None:
            stream = self.streams[key] = _Stream(key[0])
        stream.pending.append(status)
        if len(stream.pending) == 1:
            self._send_head(stream)

    def _send_head(self, stream: _Stream) -> None:
        if not self.connected:
            return
        stream.backoff = next_delay(0.0 if stream.sent_at is None else stream.backoff, self.retry_min, self.retry_max)
        stream.sent_at = self.clock()
        head = stream.pending[0]
        self.out.append(StatusUpdate(framework_id=stream.framework_id, status=head))


def _status(task_id: str, state: int, agent_id: str, now: float, uuid: bytes, source: int) -> tpb.TaskStatus:
    return tpb.TaskStatus(
        task_id=task_id,
        state=state,  # type: ignore[arg-type]
        source=source,  # type: ignore[arg-type]
        agent_id=agent_id,
        executor_id=task_id,
        timestamp=now,
        uuid=uuid,
    )
