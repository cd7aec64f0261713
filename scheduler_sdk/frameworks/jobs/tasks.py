"""The values a run of a job is made of: its slots (one per step and task index), their earlier attempts, and the
actions a run asks its shell for (`Launch` a task, `Kill` one, send a `Message`, `Revert` a version). Plain data,
no behaviour beyond naming; the state machines that move them are `run.Run` (batch and workflow jobs) and
`service_run.ServiceRun` (services and streams), on the common ground of `run_base.RunBase`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from scheduler_sdk.frameworks.jobs.spec import ConstraintSpec, HealthCheckSpec, TaskResources

SLOT_STATES = ("waiting", "queued", "staging", "running", "succeeded", "failed", "cancelled", "stopped")
LIVE = frozenset({"queued", "staging", "running"})  # handed out and not yet ended
ENDED = frozenset({"succeeded", "failed", "cancelled", "stopped"})  # for good: nothing more happens to the slot

# why we asked for a kill: decides what the task's terminal status means
KILL_TIMEOUT = "timeout"  # a failure ("timed out after 30m"), retried if attempts are left
KILL_GANG = "gang"  # another gang member failed: the gang is relaunched (or fails) as one
KILL_STOP = "stop"  # the run was stopped: the slot ends "stopped"


@dataclass(frozen=True)
class TaskLaunch:
    """One task to place and launch: what the placement engine needs, and what it puts in the TaskInfo."""

    task_id: str  # f"{job_id}.{run_id}.{step}.{index}.{attempt}"   (attempt counts from 0)
    job_id: str
    run_id: str
    step: str
    index: int
    attempt: int
    role: str  # the job's role
    command: str
    user: str
    env: tuple[tuple[str, str], ...]  # spec env + AIOMESOS_JOB/RUN/STEP/TASK_INDEX/ATTEMPT, sorted
    resources: TaskResources
    constraints: tuple[ConstraintSpec, ...]
    group: str  # f"{job_id}.{run_id}.{step}": what constraints count (unique per zone, ...)
    gang: str  # == group for a gang step, else ""
    gang_size: int  # count for a gang step, else 0
    ready_at: float  # not before (retry backoff); 0 = now
    # services and streams
    health_check: HealthCheckSpec | None = None  # the agent runs it (its port: the task's port_index-th port)
    lifecycle: str = ""  # perpetual | transient: the placement keeps the two apart (a soft constraint); "": neither
    version: int = 0  # the job version the task runs (0: batch and workflow jobs have none)


@dataclass(frozen=True)
class Launch:
    task: TaskLaunch


@dataclass(frozen=True)
class Kill:
    task_id: str
    agent_id: str  # "" when the task was queued, not known launched: the scheduler drops it from its queue
    reason: str


@dataclass(frozen=True)
class Message:
    """Write `data` to the file `path` in the sandbox of the running task `task_id` on `agent_id` (a framework
    message the agent writes into a command task's sandbox, atomically): a stream worker's upstream endpoints."""

    task_id: str
    agent_id: str
    path: str
    data: bytes


@dataclass(frozen=True)
class Revert:
    """A service's update failed and `auto_revert` is set: the shell makes a new version with the spec of
    `version` (the last stable one) and hands it to the run's `update`."""

    version: int
    reason: str


Action = Launch | Kill | Message | Revert


@dataclass
class Attempt:
    """An earlier attempt of a slot, as it ended."""

    task_id: str
    state: str  # the task state's name, e.g. "TASK_FAILED"
    exit_code: int | None = None
    started_at: float | None = None
    ended_at: float | None = None
    agent_id: str = ""
    hostname: str = ""
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "state": self.state,
            "exit_code": self.exit_code,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "agent_id": self.agent_id,
            "hostname": self.hostname,
            "message": self.message,
        }


_UNSET = object()


@dataclass
class Slot:
    """One task of a step (`index` in 0..count-1) through all its attempts; `task_id` is the current one's."""

    step: str
    index: int
    attempt: int = 0  # launches so far minus one; a retry and a free relaunch (dropped) each add one
    state: str = "waiting"  # one of SLOT_STATES
    task_id: str = ""
    task_state: str = ""  # the current attempt's last terminal state's name ("": none yet)
    agent_id: str = ""
    hostname: str = ""
    started_at: float | None = None  # the first TASK_RUNNING of the current attempt
    ended_at: float | None = None
    exit_code: int | None = None
    message: str = ""
    reason: int = 0  # tpb.TaskStatus.Reason
    why_waiting: str = ""  # the placement's reason a queued task waits
    attempts: list[Attempt] = field(default_factory=list)
    retries: int = 0  # retries used (failures relaunched)
    relaunches: int = 0  # free relaunches used (dropped before running)
    ready_at: float = 0.0  # the current attempt's not-before time
    killing: str = ""  # KILL_*: why we asked to kill the current attempt ("": we did not)
    kill_reason: str = ""  # the reason given with that Kill
    # services and streams (service_run.ServiceRun); batch and workflow slots keep the defaults (ports recorded)
    version: int = 0  # the job version the current attempt runs
    healthy: bool | None = None  # its last health: None while not known (not running, or no check result yet)
    healthy_since: float | None = None  # when it last became healthy (None: it is not)
    ports: list[int] = field(default_factory=list)  # the ports the current attempt was given (AIOMESOS_PORT0...)
    host: str = ""  # where those ports are reached: the host of its agent's address ("": unknown, use hostname)
    failures: int = 0  # failures in a row (forgotten once healthy for restart.reset_after)
    canary: bool = False  # started by an update's canary phase, beside the old instances, until promoted
    retired: bool = False  # being removed (scaled down, replaced by a canary, its stage gone): never relaunched
    launched_at: float | None = None  # when its version was handed to placement; None once healthy long enough

    # Per slot, set with object.__setattr__, and kept out of the dataclass's fields (so out of asdict, eq, repr):
    # changed since last taken (a new slot is), and where the slot lists itself when it turns dirty (its run's
    # list, so that taking what changed costs what changed)
    _dirty: ClassVar[bool] = True
    _sink: ClassVar[list[Slot] | None] = None

    def __setattr__(self, name: str, value: Any) -> None:
        if not self._dirty and self.__dict__.get(name, _UNSET) != value:
            self.mark_dirty()
        object.__setattr__(self, name, value)

    @property
    def dirty(self) -> bool:
        """Changed since the run last handed it out for storing (new slots are)."""
        return self._dirty

    def mark_dirty(self) -> None:
        if not self._dirty:
            object.__setattr__(self, "_dirty", True)
            if self._sink is not None:
                self._sink.append(self)

    def mark_clean(self) -> None:
        object.__setattr__(self, "_dirty", False)

    def report_to(self, sink: list[Slot]) -> None:
        """Put this slot in `sink` whenever it turns dirty (now too, if it is)."""
        object.__setattr__(self, "_sink", sink)
        if self._dirty:
            sink.append(self)

    @property
    def live(self) -> bool:
        return self.state in LIVE

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (built by hand: this runs for every slot an event changes)."""
        return {
            "step": self.step,
            "index": self.index,
            "attempt": self.attempt,
            "state": self.state,
            "task_id": self.task_id,
            "task_state": self.task_state,
            "agent_id": self.agent_id,
            "hostname": self.hostname,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "exit_code": self.exit_code,
            "message": self.message,
            "reason": self.reason,
            "why_waiting": self.why_waiting,
            "attempts": [a.to_dict() for a in self.attempts],
            "retries": self.retries,
            "relaunches": self.relaunches,
            "ready_at": self.ready_at,
            "killing": self.killing,
            "kill_reason": self.kill_reason,
            "version": self.version,
            "healthy": self.healthy,
            "healthy_since": self.healthy_since,
            "ports": list(self.ports),
            "host": self.host,
            "failures": self.failures,
            "canary": self.canary,
            "retired": self.retired,
            "launched_at": self.launched_at,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Slot:
        """The slot `to_dict` gave (a new slot: dirty); fields it lacks (an older record's) take their defaults."""
        fields = dict(d)
        fields["attempts"] = [Attempt(**a) for a in fields.get("attempts", [])]
        fields["ports"] = list(fields.get("ports", []))
        return cls(**fields)
