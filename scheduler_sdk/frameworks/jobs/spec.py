"""Job specs: what a user submits to the jobs service, as plain immutable values, and the YAML they are read from.

A batch job is a workflow of one step (named after the job): the run state machine (run.py) knows only steps. So is
a service (its step's count: the instances), and a stream is its stages as steps (count: workers), in data order;
what only those two have (health check, restart and update policies) is in spec_service.py, re-exported here.
`parse_spec(text, filename)` reads and validates YAML, raising `SpecError` that names the file, the line and the
field; `load_spec(path)` reads a file. Durations are seconds (floats) here; YAML takes "5s", "10m", "1h30m" or
a number of seconds."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from zoneinfo import available_timezones

import yaml
from yaml.nodes import MappingNode

from scheduler_sdk.frameworks.jobs.cron import CronSchedule, zone
from scheduler_sdk.frameworks.jobs.spec_service import HEALTH_TYPES as HEALTH_TYPES
from scheduler_sdk.frameworks.jobs.spec_service import (
    LONG_RUNNING_FIELDS,
    MAX_INSTANCES,
    MAX_STAGES,
    ONLY_LONG_RUNNING,
    SERVICE_REFUSED,
    STAGE_FIELDS,
    STAGE_REFUSED,
    STREAM_REFUSED,
    HealthCheckSpec,
    RestartPolicy,
    UpdatePolicy,
    health_check,
    restart_policy,
    update_policy,
    whole_number,
)
from scheduler_sdk.frameworks.jobs.spec_yaml import (
    LOADER,
    MAPPING_HINT,
    Field,
    FieldError,
    boolean,
    choice,
    compose,
    did_you_mean,
    duration,
    find,
    list_items,
    mapping_fields,
    not_what,
    number,
    pairs,
    required,
    shown,
    string,
    text_map,
    user_fields,
    values_of,
)
from scheduler_sdk.quoting import quoted

JOB_TYPES = ("batch", "workflow", "service", "stream")
LONG_RUNNING = ("service", "stream")  # run until stopped: instances (workers) replaced, updated, scaled
LIFECYCLES = ("perpetual", "transient")  # a stream's placement objective: perpetual ones on hosts apart
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
    health_check: HealthCheckSpec | None = None  # services and streams: the instances' (workers') health check


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
    # services and streams (LONG_RUNNING): a service is one stage named like the job (count = instances), a
    # stream is its stages in order (count = workers), each a StepSpec
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    update: UpdatePolicy = field(default_factory=UpdatePolicy)
    lifecycle: str = ""  # streams: perpetual (default) | transient; services: perpetual; batch/workflow: ""

    @property
    def long_running(self) -> bool:
        return self.type in LONG_RUNNING

    def step(self, name: str) -> StepSpec:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)


# ------------------------------------------------------------------------------------------------ the parser
TOP_FIELDS = ("name", "type", "role", "schedule", "time_zone", "overlap", "on_missed", "on_failure", "labels")
TASK_FIELDS = ("command", "count", "resources", "constraints", "retries", "timeout", "gang", "env", "user")
STEP_FIELDS = ("name", *TASK_FIELDS, "depends_on")
RESOURCE_FIELDS = ("cpus", "mem", "disk", "gpus", "ports")
RETRY_FIELDS = ("attempts", "backoff", "max_backoff")
MAX_COUNT = 10_000  # tasks in one array
MAX_ATTEMPTS = 100
MAX_PORTS = 100
NAME_RULES = "lowercase letters, digits and '-', starting with a letter or a digit, at most 63 characters"
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# what the service and the placement set in every task's environment: a spec may not set them
_RESERVED_ENV = re.compile(
    r"AIOMESOS_(JOB|RUN|STEP|TASK_INDEX|ATTEMPT|VERSION|STAGE|STAGE_NUMBER|WORKER_INDEX|UPSTREAM|UPSTREAM_FILE|PORT\d+)"
    r"|PORT\d+"
)
_ROLE_CHARACTERS = frozenset(map(chr, range(0x21, 0x7F))) - {"/", "\\"}
_MAX_SCHEDULE = 200


REFUSED: dict[str, dict[str, str]] = {  # job type -> top-level field -> why it has no such field
    "batch": {
        **ONLY_LONG_RUNNING,
        "steps": "a batch job has no steps (a workflow has: type: workflow)",
        "on_failure": "only a workflow has on_failure",
        "depends_on": "only a workflow's steps depend on others (type: workflow)",
    },
    "workflow": {
        **ONLY_LONG_RUNNING,
        **dict.fromkeys((*TASK_FIELDS, "depends_on"), "put it in a step: a workflow's task fields belong to its steps"),
    },
    "service": SERVICE_REFUSED,
    "stream": STREAM_REFUSED,
}


def load_spec(path: str | os.PathLike[str]) -> JobSpec:
    """`parse_spec` of the file at `path` (its name in every message); SpecError if it cannot be read."""
    filename = os.fspath(path)
    try:
        with open(filename, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise SpecError("not UTF-8 text", filename=filename) from None
    except OSError as e:
        raise SpecError(f"cannot read it: {e.strerror or e}", filename=filename) from None
    return parse_spec(text, filename)


def parse_spec(text: str, filename: str = "") -> JobSpec:
    """The job spec in YAML `text`, validated; SpecError naming the file, the line and the field otherwise.

    Every message comes from the composed node tree, so its line is the line of the offending key or value.
    `env` and `labels` values are strings or numbers; a number is kept as the text it was written as (`0755` stays
    "0755"); a boolean or a null is refused (quote it). A batch job's one step is named like the job."""
    try:
        return _job(Field(compose(text), ""), text, filename)
    except FieldError as e:
        raise SpecError(e.message, field=e.field, line=e.line, filename=filename) from None


def _job(top: Field, text: str, filename: str) -> JobSpec:
    fields = mapping_fields(
        top, (*TOP_FIELDS, *TASK_FIELDS, "depends_on", "steps", *LONG_RUNNING_FIELDS), what=MAPPING_HINT
    )
    job_type = choice(fields["type"], JOB_TYPES) if "type" in fields else "batch"
    refused = REFUSED[job_type]
    for key, f in fields.items():
        if key in refused:
            raise f.error(refused[key])
    name = _name(required(top, fields, "name"))
    if job_type == "workflow":
        steps = _workflow_steps(required(top, fields, "steps"))
    elif job_type == "stream":
        steps = _stages(required(top, fields, "stages"))
    elif job_type == "service":
        steps = (_long_running_step(top, fields, name, "instances"),)
    else:
        steps = (_step(top, fields, name),)
    lifecycle = "perpetual" if job_type == "service" else ""
    if job_type == "stream":
        lifecycle = choice(fields["lifecycle"], LIFECYCLES) if "lifecycle" in fields else "perpetual"
    canaries = steps[0].count if job_type == "service" else None
    return JobSpec(
        name=name,
        type=job_type,
        steps=steps,
        role=_role(fields["role"]) if "role" in fields else "*",
        schedule=_schedule(fields["schedule"]) if "schedule" in fields else None,
        time_zone=_time_zone(fields["time_zone"]) if "time_zone" in fields else "UTC",
        overlap=choice(fields["overlap"], OVERLAP) if "overlap" in fields else "skip",
        on_missed=choice(fields["on_missed"], ON_MISSED) if "on_missed" in fields else "run_once",
        on_failure=choice(fields["on_failure"], ON_FAILURE) if "on_failure" in fields else "fail",
        labels=text_map(fields["labels"], _label_key) if "labels" in fields else (),
        source=text,
        filename=filename,
        restart=restart_policy(fields["restart"]) if "restart" in fields else RestartPolicy(),
        update=update_policy(fields["update"], canaries=canaries) if "update" in fields else UpdatePolicy(),
        lifecycle=lifecycle,
    )


def check_fits(spec: JobSpec, agents: Sequence[Mapping[str, float]]) -> None:
    """SpecError (field `resources` of the step, at its line) when a task of some step needs more of a resource
    than any agent has in all, or more than one agent has of all its resources together, or a gang step's `count`
    tasks cannot all fit the whole cluster at once (counted agent by agent, on empty agents). `agents`: each agent's
    total resources, e.g. {"cpus": 2, "mem": 1024, "ports": 1001} (`ports`: how many). No agents known (a cluster
    still starting): nothing is checked."""
    if not agents:
        return
    for index, step in enumerate(spec.steps):
        needs = {r: float(getattr(step.resources, r)) for r in RESOURCE_FIELDS if getattr(step.resources, r) > 0}
        for resource, need in needs.items():
            largest = max(float(a.get(resource, 0.0)) for a in agents)
            if need > largest:
                why = f"needs {resource} {need:g} per task; the largest agent has {largest:g}"
                raise _resources_error(spec, index, why)
        each = ", ".join(f"{r} {n:g}" for r, n in needs.items())
        fits = [min((math.floor(a.get(r, 0.0) / n + 1e-9) for r, n in needs.items()), default=1) for a in agents]
        if not any(fits):
            raise _resources_error(spec, index, f"needs {each} per task; no agent has all of that")
        if step.gang and sum(fits) < step.count:
            why = f"a gang of {step.count} starts all at once, but the whole cluster fits {sum(fits)} of its tasks"
            raise _resources_error(spec, index, f"{why} ({each} each)")


def spec_diff(old: JobSpec, new: JobSpec) -> str:
    """How `new` differs from `old`, two versions of one job: "none" when they are equal but for where they were
    read from (source, filename, lines), "scale" when the two are long-running jobs of the same steps (stages) and
    differ only in their counts (instances, workers), "update" otherwise (a rollout; a change of type too, which
    the caller refuses)."""
    if _plain(old) == _plain(new):
        return "none"
    if old.long_running and new.long_running and _plain(old, counts=False) == _plain(new, counts=False):
        return "scale"
    return "update"


def _plain(spec: JobSpec, *, counts: bool = True) -> JobSpec:
    """`spec` without what does not matter to its tasks (where it was read from; without `counts`, the counts)."""
    steps = tuple(replace(s, line=None, count=s.count if counts else 0) for s in spec.steps)
    return replace(spec, steps=steps, source="", filename="")


def _resources_error(spec: JobSpec, index: int, message: str) -> SpecError:
    step = spec.steps[index]
    steps = {"workflow": "steps", "stream": "stages"}.get(spec.type)  # the list a step is in, if any
    path: list[str | int] = [steps, index, "resources"] if steps else ["resources"]
    line = step.line
    if spec.source:
        try:
            root = yaml.compose(spec.source, Loader=LOADER)
        except yaml.YAMLError:
            root = None
        node = find(root, path) if root is not None else None
        if node is not None:
            line = node.start_mark.line + 1
    field = f"{steps}[{index}].resources" if steps else "resources"
    return SpecError(message, field=field, line=line, filename=spec.filename)


def _env_key(name: str) -> str | None:
    if not _ENV_NAME.fullmatch(name):
        return f"{quoted(name)} is not an environment variable name (letters, digits and _, not first a digit)"
    if _RESERVED_ENV.fullmatch(name):
        return f"{quoted(name)} is set by the jobs service in every task"
    return None


def _label_key(name: str) -> str | None:
    return None if name.strip() else "a label name must not be empty"


# ------------------------------------------------------------------------------------------- the fields
def _name(f: Field) -> str:
    name = string(f, "a name")
    if not _NAME.fullmatch(name):
        raise f.error(f"{quoted(name)} is not a name: {NAME_RULES}")
    return name


def _role(f: Field) -> str:
    role = string(f, "a role")
    if role == "*":
        return role
    parts = role.split("/")
    if len(role) > 255 or any(
        p in ("", ".", "..") or p.startswith("-") or not _ROLE_CHARACTERS.issuperset(p) for p in parts
    ):
        raise f.error(
            f"{quoted(role)} is not a role: '/'-separated names of visible ASCII, none empty, '.', '..' or "
            "starting with '-' (or *)"
        )
    return role


def _schedule(f: Field) -> str:
    expr = string(f, 'a cron expression (e.g. "0 2 * * *")')
    if len(expr) > _MAX_SCHEDULE:
        raise f.error(f"a cron expression of {len(expr)} characters is too long")
    try:
        CronSchedule.parse(expr)
    except ValueError as e:
        raise f.error(str(e)) from None
    return expr


def _time_zone(f: Field) -> str:
    name = string(f, "a time zone name (e.g. Europe/Berlin, or UTC)")
    try:
        zone(name)
    except ValueError:
        hint = did_you_mean(name, available_timezones()) if len(name) <= 64 else ""
        raise f.error(f"unknown time zone {quoted(name)}{hint} (an IANA name like Europe/Berlin, or UTC)") from None
    return name


def _resources(f: Field, default: TaskResources) -> TaskResources:
    """`resources`, each one not given as in `default`."""
    fields = mapping_fields(f, RESOURCE_FIELDS, what="a mapping like {cpus: 1, mem: 512}")

    def get(name: str, what: str, ok: Callable[[float], bool], *, whole: bool = False) -> float:
        return float(number(fields[name], what, ok, whole=whole)) if name in fields else float(getattr(default, name))

    return TaskResources(
        cpus=get("cpus", "a number > 0", lambda v: v > 0),
        mem=get("mem", "a number of MB > 0", lambda v: v > 0),
        disk=get("disk", "a number of MB >= 0", lambda v: v >= 0),
        gpus=get("gpus", "a whole number >= 0", lambda v: v >= 0, whole=True),
        ports=int(get("ports", f"a whole number from 0 to {MAX_PORTS}", lambda v: 0 <= v <= MAX_PORTS, whole=True)),
    )


def _retries(f: Field) -> RetryPolicy:
    fields = mapping_fields(f, RETRY_FIELDS, what="a mapping like {attempts: 3, backoff: 5s}")
    default = RetryPolicy()
    attempts = default.attempts
    if "attempts" in fields:
        what = f"a whole number from 0 to {MAX_ATTEMPTS}"
        attempts = int(number(fields["attempts"], what, lambda v: 0 <= v <= MAX_ATTEMPTS, whole=True))
    backoff = duration(fields["backoff"], positive=False) if "backoff" in fields else default.backoff
    if "max_backoff" not in fields:
        return RetryPolicy(attempts, backoff, max(default.max_backoff, backoff))
    max_backoff = duration(fields["max_backoff"], positive=True)
    if max_backoff < backoff:
        raise fields["max_backoff"].error(
            f"must be at least the backoff ({backoff:g}s), not {shown(fields['max_backoff'].node)}"
        )
    return RetryPolicy(attempts, backoff, max_backoff)


def _constraint(f: Field) -> ConstraintSpec:
    """One of the forms in ConstraintSpec's docstring."""
    if not isinstance(f.node, MappingNode):
        raise f.error(f"must be a mapping like {{unique: zone}}, {not_what(f.node)}")
    known = ", ".join(CONSTRAINT_KINDS)
    kinds: list[tuple[str, Field]] = []
    soft: Field | None = None
    for name, key_node, value_node in pairs(f):
        if name not in (*CONSTRAINT_KINDS, "soft"):
            hint = did_you_mean(name, (*CONSTRAINT_KINDS, "soft"))
            raise Field(key_node, f.path).error(
                f"unknown constraint kind {quoted(name)}{hint}; the kinds are {known} (and soft: true)"
            )
        if name == "soft":
            soft = f.key(name, value_node)
        elif kinds:
            raise Field(key_node, f.path).error(
                f"one kind per constraint, not both {kinds[0][0]} and {name} (write two constraints)"
            )
        else:
            kinds.append((name, f.key(name, value_node)))
    if not kinds:
        raise f.error(f"needs one of {known}")
    kind, value = kinds[0]
    is_soft = boolean(soft) if soft is not None else False
    if kind in ("unique", "balanced"):
        attribute = string(value, "an attribute name (e.g. zone, or hostname)")
        if not attribute.strip():
            raise value.error("an attribute name must not be empty")
        return ConstraintSpec(kind, attribute=attribute, soft=is_soft)
    if kind == "hostname":
        return ConstraintSpec(kind, attribute="hostname", values=values_of(value), soft=is_soft)
    attributes = user_fields(value, "a mapping like {rack: r1}")
    if len(attributes) != 1:
        raise value.error(f"must name one attribute, not {len(attributes)} (write one constraint for each)")
    attribute, values = attributes[0]
    return ConstraintSpec(kind, attribute=attribute, values=values_of(values), soft=is_soft)


def _step(where: Field, fields: Mapping[str, Field], name: str, *, ports: int = 0) -> StepSpec:
    """The task fields of a batch job (top level) or of a workflow step; `ports` when resources.ports is not given."""
    command = string(required(where, fields, "command"), "a shell command line (text)")
    if not command.strip():
        raise fields["command"].error("must not be empty")
    count = 1
    if "count" in fields:
        what = f"a whole number from 1 to {MAX_COUNT}"
        count = int(number(fields["count"], what, lambda v: 1 <= v <= MAX_COUNT, whole=True))
    constraints: tuple[ConstraintSpec, ...] = ()
    if "constraints" in fields:
        constraints = tuple(_constraint(i) for i in list_items(fields["constraints"], "constraints"))
    user = string(fields["user"], "a user name") if "user" in fields else ""
    if not user.isprintable() or user != user.strip():
        raise fields["user"].error(f"{quoted(user)} is not a user name")
    return StepSpec(
        name=name,
        command=command,
        count=count,
        resources=_resources(fields["resources"], TaskResources(ports=ports))
        if "resources" in fields
        else TaskResources(ports=ports),
        constraints=constraints,
        retries=_retries(fields["retries"]) if "retries" in fields else RetryPolicy(),
        timeout=duration(fields["timeout"], positive=True) if "timeout" in fields else None,
        gang=boolean(fields["gang"]) if "gang" in fields else False,
        env=text_map(fields["env"], _env_key) if "env" in fields else (),
        depends_on=tuple(name for name, _ in _depends_on(fields["depends_on"])) if "depends_on" in fields else (),
        user=user,
        line=where.line,
    )


def _depends_on(f: Field) -> list[tuple[str, Field]]:
    out: list[tuple[str, Field]] = []
    for item in list_items(f, "step names"):
        name = string(item, "a step name")
        if any(name == n for n, _ in out):
            raise item.error(f"{quoted(name)} is listed twice")
        out.append((name, item))
    return out


def _long_running_step(where: Field, fields: Mapping[str, Field], name: str, count_field: str) -> StepSpec:
    """A service's one step (`count_field` instances) or a stream's stage (workers): a task with 1 port unless
    resources say otherwise, and its health check."""
    step = _step(where, fields, name, ports=1)
    count = whole_number(fields[count_field], 0, MAX_INSTANCES) if count_field in fields else 1
    check = health_check(fields["health_check"], step.resources.ports) if "health_check" in fields else None
    return replace(step, count=count, health_check=check)


def _named_steps(
    f: Field,
    kind: str,
    allowed: Sequence[str],
    refused: Mapping[str, str],
    read: Callable[[Field, dict[str, Field], str], StepSpec],
    *,
    most: int | None = None,
) -> list[tuple[StepSpec, dict[str, Field]]]:
    """The items of the list `f` of `kind`s (workflow steps, stream stages; 1 to `most`), each a mapping of
    `allowed` fields (those in `refused` refused with its message) with a unique `name`, read by `read(item,
    fields, name)`; with the fields of each."""
    items = list_items(f, f"{kind}s")
    if not items:
        raise f.error(f"must list at least one {kind}")
    if most is not None and len(items) > most:
        raise f.error(f"must list at most {most} {kind}s, not {len(items)}")
    out: list[tuple[StepSpec, dict[str, Field]]] = []
    where: dict[str, int] = {}
    for index, item in enumerate(items):
        fields = mapping_fields(item, allowed, what=f"a {kind}: a mapping of fields (name: ..., command: ...)")
        for key, field_ in fields.items():
            if key in refused:
                raise field_.error(refused[key])
        name = _name(required(item, fields, "name"))
        if name in where:
            raise fields["name"].error(f"{quoted(name)} is already the name of {f.path}[{where[name]}]")
        where[name] = index
        out.append((read(item, fields, name), fields))
    return out


def _stages(f: Field) -> tuple[StepSpec, ...]:
    """A stream's stages, in data order: each reads from the one before it."""
    stages = _named_steps(
        f,
        "stage",
        (*STAGE_FIELDS, *STAGE_REFUSED),
        STAGE_REFUSED,
        lambda item, fields, name: _long_running_step(item, fields, name, "workers"),
        most=MAX_STAGES,
    )
    return tuple(stage for stage, _ in stages)


def _workflow_steps(f: Field) -> tuple[StepSpec, ...]:
    named = _named_steps(f, "step", STEP_FIELDS, {}, _step)
    steps = [step for step, _ in named]
    where = {step.name: index for index, step in enumerate(steps)}
    deps = [_depends_on(fields["depends_on"]) if "depends_on" in fields else [] for _, fields in named]
    for index, names in enumerate(deps):
        for name, item in names:
            if name == steps[index].name:
                raise item.error("a step cannot depend on itself")
            if name not in where:
                raise item.error(f"unknown step {quoted(name)}{did_you_mean(name, where)}")
    cycle = _cycle([[where[n] for n, _ in names] for names in deps])
    if cycle:
        raise named[cycle[0]][1]["depends_on"].error("cycle " + " -> ".join(steps[i].name for i in cycle))
    return tuple(steps)


def _cycle(deps: Sequence[Sequence[int]]) -> list[int]:
    """A cycle in the graph (step -> the steps it depends on) as [a, b, ..., a], or [] if there is none.
    Kahn's algorithm removes every step whose dependencies are all removed; each step left depends on one left, so
    following those from the first one left must come round: no recursion, whatever the depth."""
    waiting = [len(d) for d in deps]
    dependents: list[list[int]] = [[] for _ in deps]
    for step, ds in enumerate(deps):
        for d in ds:
            dependents[d].append(step)
    ready = [s for s, n in enumerate(waiting) if n == 0]
    while ready:
        for later in dependents[ready.pop()]:
            waiting[later] -= 1
            if waiting[later] == 0:
                ready.append(later)
    left = [s for s, n in enumerate(waiting) if n > 0]
    if not left:
        return []
    path: list[int] = []
    seen: dict[int, int] = {}
    step = left[0]
    while step not in seen:
        seen[step] = len(path)
        path.append(step)
        step = next(d for d in deps[step] if waiting[d] > 0)
    return [*path[seen[step] :], step]
