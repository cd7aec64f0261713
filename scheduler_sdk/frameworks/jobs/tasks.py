"""The values a run of a job is made of: its slots (one per step and task index), their earlier attempts, and the
actions a run asks its shell for (`Launch` a task, `Kill` one). Plain data, no behaviour beyond naming; the state
machine that moves them is `run.Run`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from scheduler_sdk.frameworks.jobs.spec import ConstraintSpec, TaskResources

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


@dataclass(frozen=True)
class Launch:
    task: TaskLaunch


@dataclass(frozen=True)
class Kill:
    task_id: str
    agent_id: str  # "" when the task was queued, not known launched: the scheduler drops it from its queue
    reason: str


Action = Launch | Kill


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

    @property
    def live(self) -> bool:
        return self.state in LIVE

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Slot:
        d = dict(d)
        d["attempts"] = [Attempt(**a) for a in d.get("attempts", [])]
        return cls(**d)
