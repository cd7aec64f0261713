"""The parts of a job spec only long-running jobs (services and streams) have: the health check of their instances
(workers), how a failed one is restarted, how a new version replaces the running one; their YAML readers, and
which fields each of the two refuses. spec.py assembles them into a JobSpec (and re-exports the types: import them
from there; this module imports nothing of spec.py)."""

from __future__ import annotations

from dataclasses import dataclass

from scheduler_sdk._daemon.flags import format_duration
from scheduler_sdk.frameworks.jobs.spec_yaml import (
    Field,
    boolean,
    choice,
    duration,
    mapping_fields,
    number,
    required,
    shown,
    string,
)
from scheduler_sdk.quoting import quoted

HEALTH_TYPES = ("http", "tcp", "command")
MAX_INSTANCES = 1000  # instances of a service, workers of a stage
MAX_STAGES = 20
HOUR, DAY = 3600.0, 86400.0
# the fields of a health check, and the check types each belongs to
HEALTH_FIELDS = {
    "type": HEALTH_TYPES,
    "path": ("http",),
    "port_index": ("http", "tcp"),
    "command": ("command",),
    "delay": HEALTH_TYPES,
    "interval": HEALTH_TYPES,
    "timeout": HEALTH_TYPES,
    "grace_period": HEALTH_TYPES,
    "consecutive_failures": HEALTH_TYPES,
}
RESTART_FIELDS = ("backoff", "max_backoff", "reset_after", "crash_loop")
UPDATE_FIELDS = ("max_parallel", "min_healthy_time", "healthy_deadline", "canary", "auto_revert")
LONG_RUNNING_FIELDS = ("instances", "health_check", "restart", "update", "lifecycle", "stages")  # at the top
STAGE_FIELDS = ("name", "workers", "command", "resources", "constraints", "env", "user", "health_check")


def _until_stopped(kind: str, tasks: str) -> dict[str, str]:
    """Why a `kind` (service, stream) of `tasks` (instances, workers) has none of these fields of batch jobs."""
    return {
        **dict.fromkeys(
            ("schedule", "time_zone", "overlap", "on_missed"), f"a {kind} runs until stopped, not on a schedule"
        ),
        "timeout": f"a {kind} runs until stopped: it has no timeout",
        "gang": f"a {kind} has no gang: its {tasks} start as each fits",
        "retries": f"a {kind} restarts its {tasks}: restart",
        "on_failure": "only a workflow has on_failure",
    }


# field -> why a job of some type has no such field (spec.REFUSED: all the types)
ONLY_LONG_RUNNING = {  # in a batch job or a workflow
    "instances": "only a service has instances (type: service)",
    "health_check": "only services and streams have a health check (type: service)",
    "restart": "only services and streams have restart (a batch job has retries)",
    "update": "only services and streams have update",
    "lifecycle": "only a stream has a lifecycle (type: stream)",
    "stages": "only a stream has stages (type: stream)",
}
_IN_DATA_ORDER = "a stream's stages run in data order: stage k reads from stage k-1"
SERVICE_REFUSED = {
    **_until_stopped("service", "instances"),
    "count": "a service has instances",
    "steps": "a service has no steps: its instances run its command",
    "depends_on": "only a workflow's steps depend on others (type: workflow)",
    "stages": "only a stream has stages (type: stream)",
    "lifecycle": "services are perpetual",
}
STREAM_REFUSED = {
    **_until_stopped("stream", "workers"),
    **dict.fromkeys(
        ("command", "resources", "constraints", "env", "user", "health_check"),
        "put it in a stage: a stream's task fields belong to its stages",
    ),
    **dict.fromkeys(("count", "instances"), "put it in a stage: a stream's stages have workers"),
    "steps": "a stream has stages, not steps",
    "depends_on": _IN_DATA_ORDER,
}
STAGE_REFUSED = {  # in a stage: fields of a workflow step
    **dict.fromkeys(("count", "instances"), "a stage has workers"),
    "retries": "a stream restarts its workers: restart (a field of the stream, beside stages)",
    "timeout": STREAM_REFUSED["timeout"],
    "gang": STREAM_REFUSED["gang"],
    "depends_on": _IN_DATA_ORDER,
}


@dataclass(frozen=True)
class HealthCheckSpec:
    """A service instance's (a stream worker's) health check, run by the agent (mesos_agent/health.py). YAML:
    `{type: http, path: /health, port_index: 0, interval: 2s, timeout: 1s, delay: 0s, grace_period: 10s,
    consecutive_failures: 3}`; `{type: tcp}`; `{type: command, command: "test -f ready"}`."""

    type: str  # one of HEALTH_TYPES
    port_index: int = 0  # http/tcp: which of the task's ports (AIOMESOS_PORT<i>) is probed, on 127.0.0.1
    path: str = "/"  # http
    command: str = ""  # command: a shell command line run in the task's container; exit 0 is healthy
    delay: float = 0.0  # seconds from launch to the first check
    interval: float = 5.0  # seconds between checks
    timeout: float = 5.0  # a check not answered within this is a failure
    grace_period: float = 10.0  # failures this soon after launch do not count until the first success
    consecutive_failures: int = 3  # failures in a row that make the agent kill the task


@dataclass(frozen=True)
class RestartPolicy:
    """How a failed (or unhealthy, or lost) instance of a service or worker of a stream is started again: after
    `backoff`, doubled for each further failure in a row up to `max_backoff`; an instance healthy for `reset_after`
    forgets its failures. From `crash_loop` failures in a row on it shows as crash-looping (it is still restarted,
    at the backed-off pace, never in a tight loop)."""

    backoff: float = 1.0
    max_backoff: float = 60.0
    reset_after: float = 60.0
    crash_loop: int = 3


@dataclass(frozen=True)
class UpdatePolicy:
    """How a new version of a service (stream) replaces the running one (Nomad's `update` stanza)."""

    max_parallel: int = 1  # instances replaced at a time: healthy capacity never drops below instances - this
    min_healthy_time: float = 10.0  # a new instance counts as healthy once healthy for this long ...
    healthy_deadline: float = 300.0  # ... which must happen within this from its launch, else the update fails
    canary: int = 0  # start this many new instances first (beside the old ones) and wait for `job promote`
    auto_revert: bool = False  # an update that fails goes back to the last version that was fully healthy


# ------------------------------------------------------------------------------------------------ readers
def whole_number(f: Field, low: int, high: int, *, why: str = "") -> int:
    """A whole number from `low` to `high`; `why` says where the bound comes from ("instances"), for messages."""
    what = f"a whole number from {low} to {high}" + (f" ({why})" if why else "")
    return int(number(f, what, lambda v: low <= v <= high, whole=True))


def duration_in(f: Field, low: float, high: float) -> float:
    """A duration (as `duration` reads it) from `low` to `high` seconds."""
    seconds = duration(f, positive=False)
    if not low <= seconds <= high:
        span = (
            f"of at most {format_duration(high)}"
            if low == 0
            else f"from {format_duration(low)} to {format_duration(high)}"
        )
        raise f.error(f"must be a duration {span}, not {shown(f.node)}")
    return seconds


def health_check(f: Field, ports: int) -> HealthCheckSpec:
    """`health_check` of a service or a stage whose tasks have `ports` ports."""
    fields = mapping_fields(f, tuple(HEALTH_FIELDS), what="a mapping like {type: http, path: /health}")
    kind = choice(required(f, fields, "type"), HEALTH_TYPES)
    for name, field in fields.items():
        if kind not in HEALTH_FIELDS[name]:
            raise field.error(f"{name} is for {' and '.join(HEALTH_FIELDS[name])} checks")
    default = HealthCheckSpec(kind)
    port_index, path, command = default.port_index, default.path, default.command
    if kind in ("http", "tcp"):
        port_index = _port_index(fields.get("port_index"), fields["type"], kind, ports)
    if "path" in fields:
        path = string(fields["path"], "a URL path (e.g. /health)")
        if not path.startswith("/") or not path.isprintable() or any(c.isspace() for c in path):
            raise fields["path"].error(f"must be a URL path: starting with '/', no spaces, not {quoted(path)}")
    if kind == "command":
        command = string(required(f, fields, "command"), "a shell command line (text)")
        if not command.strip():
            raise fields["command"].error("must not be empty")

    def seconds(name: str, low: float) -> float:
        return duration_in(fields[name], low, HOUR) if name in fields else float(getattr(default, name))

    failures = default.consecutive_failures
    if "consecutive_failures" in fields:
        failures = whole_number(fields["consecutive_failures"], 1, 100)
    return HealthCheckSpec(
        type=kind,
        port_index=port_index,
        path=path,
        command=command,
        delay=seconds("delay", 0.0),
        interval=seconds("interval", 0.1),
        timeout=seconds("timeout", 0.1),
        grace_period=seconds("grace_period", 0.0),
        consecutive_failures=failures,
    )


def _port_index(f: Field | None, kind_field: Field, kind: str, ports: int) -> int:
    """Which of the task's `ports` ports an http or tcp check probes (0 when `f`, the field, is not given)."""
    if ports == 0:
        where = f if f is not None else kind_field
        raise where.error(f"the task has no ports (resources.ports: 0), so its {kind} check has no port to probe")
    if f is None:
        return 0
    index = int(number(f, "a whole number >= 0", lambda v: v >= 0, whole=True))
    if index >= ports:
        if ports == 1:
            raise f.error("the task has 1 port (resources.ports), so port_index must be 0")
        raise f.error(f"the task has {ports} ports (resources.ports), so port_index must be from 0 to {ports - 1}")
    return index


def restart_policy(f: Field) -> RestartPolicy:
    fields = mapping_fields(f, RESTART_FIELDS, what="a mapping like {backoff: 1s, max_backoff: 1m}")
    default = RestartPolicy()
    backoff = duration_in(fields["backoff"], 0.0, HOUR) if "backoff" in fields else default.backoff
    max_backoff = max(default.max_backoff, backoff)  # as retries: the cap rises to the backoff
    if "max_backoff" in fields:
        max_backoff = duration_in(fields["max_backoff"], 0.0, DAY)
        if max_backoff < backoff:
            raise fields["max_backoff"].error(
                f"must be at least the backoff ({format_duration(backoff)}), not {shown(fields['max_backoff'].node)}"
            )
    return RestartPolicy(
        backoff=backoff,
        max_backoff=max_backoff,
        reset_after=duration_in(fields["reset_after"], 1.0, DAY) if "reset_after" in fields else default.reset_after,
        crash_loop=whole_number(fields["crash_loop"], 1, 1000) if "crash_loop" in fields else default.crash_loop,
    )


def update_policy(f: Field, *, canaries: int | None) -> UpdatePolicy:
    """`update` of a service of `canaries` instances (at most that many canaries), or of a stream (None: none)."""
    fields = mapping_fields(f, UPDATE_FIELDS, what="a mapping like {max_parallel: 1, min_healthy_time: 10s}")
    default = UpdatePolicy()
    min_healthy = default.min_healthy_time
    if "min_healthy_time" in fields:
        min_healthy = duration_in(fields["min_healthy_time"], 0.0, HOUR)
    deadline = default.healthy_deadline
    if "healthy_deadline" in fields:
        deadline = duration_in(fields["healthy_deadline"], 0.0, DAY)
    if deadline <= min_healthy:
        if "healthy_deadline" in fields:
            raise fields["healthy_deadline"].error(
                f"must be longer than min_healthy_time ({format_duration(min_healthy)}), "
                f"not {shown(fields['healthy_deadline'].node)}"
            )
        raise fields["min_healthy_time"].error(
            f"must be shorter than healthy_deadline ({format_duration(deadline)}, its default): set a longer one"
        )
    canary = default.canary
    if "canary" in fields and canaries is None:
        if whole_number(fields["canary"], 0, MAX_INSTANCES):
            raise fields["canary"].error("a stream has no canaries: its update replaces workers max_parallel at a time")
    elif "canary" in fields and canaries is not None:
        canary = whole_number(fields["canary"], 0, canaries, why="instances")
    return UpdatePolicy(
        max_parallel=whole_number(fields["max_parallel"], 1, MAX_INSTANCES)
        if "max_parallel" in fields
        else default.max_parallel,
        min_healthy_time=min_healthy,
        healthy_deadline=deadline,
        canary=canary,
        auto_revert=boolean(fields["auto_revert"]) if "auto_revert" in fields else default.auto_revert,
    )
