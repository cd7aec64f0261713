"""Job specs: what a user submits to the jobs service, as plain immutable values, and the YAML they are read from.

A batch job is a workflow of one step (named after the job): the run state machine (run.py) knows only steps.
`parse_spec(text, filename)` reads and validates YAML, raising `SpecError` that names the file, the line and the
field; `load_spec(path)` reads a file. Durations are seconds (floats) here; YAML takes "5s", "10m", "1h30m" or
a number of seconds."""

from __future__ import annotations

from dataclasses import dataclass, field

JOB_TYPES = ("batch", "workflow")  # service, stream: a later issue
OVERLAP = ("skip", "allow")  # a cron time that comes while the last run still runs
ON_MISSED = ("run_once", "skip")  # cron times missed while the service was down
ON_FAILURE = ("fail", "continue")  # a step that fails for good: cancel the rest, or run what does not depend on it
CONSTRAINT_KINDS = ("unique", "attribute", "hostname", "balanced")


class SpecError(ValueError):
    """A spec that cannot be submitted. `str(e)` is one line: "FILE:LINE: FIELD: what is wrong"."""

    def __init__(self, message: str, *, field: str = "", line: int | None = None, filename: str = "") -> None:
        self.message, self.field, self.line, self.filename = message, field, line, filename
        where = filename or "<spec>"
        if line is not None:
            where += f":{line}"
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")


@dataclass(frozen=True)
class TaskResources:
    cpus: float = 0.1
    mem: float = 64.0  # MB
    disk: float = 0.0  # MB
    gpus: float = 0.0
    ports: int = 0  # how many ports (AIOMESOS_PORT0.. and PORT0.. in the task's environment)


@dataclass(frozen=True)
class ConstraintSpec:
    """One placement constraint. YAML forms:
    `{unique: zone}` (at most one task of the step per zone; `unique: hostname`: one per host),
    `{attribute: {rack: r1}}` (only hosts whose rack is r1; a list of values: any of them),
    `{hostname: agent1.local}` (only that host; a list: any of them), `{balanced: zone}` (spread evenly);
    each may add `soft: true` (a preference: the engine ranks by it, never refuses for it)."""

    kind: str  # one of CONSTRAINT_KINDS
    attribute: str = ""  # unique/balanced: the attribute; attribute: its name; hostname: "hostname"
    values: tuple[str, ...] = ()  # attribute/hostname: the allowed values
    soft: bool = False


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 0  # relaunches after the first failure (0: none); a task runs at most 1 + attempts times
    backoff: float = 5.0  # seconds before the first relaunch; doubled for each further one ...
    max_backoff: float = 300.0  # ... up to this


@dataclass(frozen=True)
class StepSpec:
    """A task, or an array of `count` tasks (AIOMESOS_TASK_INDEX=0..count-1), with what they need."""

    name: str
    command: str  # a shell command line
    count: int = 1
    resources: TaskResources = field(default_factory=TaskResources)
    constraints: tuple[ConstraintSpec, ...] = ()
    retries: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float | None = None  # seconds a task may run (from RUNNING) before it is killed
    gang: bool = False  # all `count` tasks start together (one accept) or none does
    env: tuple[tuple[str, str], ...] = ()  # sorted (name, value) pairs
    depends_on: tuple[str, ...] = ()  # names of steps that must succeed first (workflows)
    user: str = ""  # the user the tasks run as ("": the agent's default)
    line: int | None = None  # where the step starts in the YAML, for messages


@dataclass(frozen=True)
class JobSpec:
    name: str
    type: str  # one of JOB_TYPES
    steps: tuple[StepSpec, ...]  # batch: exactly one, named like the job
    role: str = "*"
    schedule: str | None = None  # a cron expression (cron.py), UTC unless `time_zone`
    time_zone: str = "UTC"
    overlap: str = "skip"
    on_missed: str = "run_once"
    on_failure: str = "fail"
    labels: tuple[tuple[str, str], ...] = ()
    source: str = ""  # the YAML text it was read from (what the store keeps)
    filename: str = ""

    def step(self, name: str) -> StepSpec:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)
