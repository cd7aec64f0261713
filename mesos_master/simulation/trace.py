"""The workload trace (JSON lines) and the cluster it runs on: parsing, checking, writing. Pure.

One object per line, an arrival of a job's tasks:

    {"time": 12.5, "job": "j42", "tasks": 4, "role": "analytics", "resources": {"cpus": 2, "mem": 4096},
     "duration": 600, "constraints": [{"unique": "hostname"}]}

`time` and `duration` are seconds (`time` from the start of the trace), `tasks` how many tasks (default 1), `role`
the role they run under (default `*`), `resources` cpus, mem, disk (MB), and any other scalar (gpus...),
`constraints` the forms of a job spec (docs/jobs.md): `{"unique": ATTR}`, `{"balanced": ATTR}`,
`{"attribute": {ATTR: VALUE_OR_LIST}}`, `{"hostname": NAME_OR_LIST}`, each with an optional `"soft": true`.
An optional line `{"agents": "1000x cpus:32;mem:131072@zone=3"}` names the cluster (see `parse_agents`); blank
lines and lines starting with `#` are skipped. Errors name the file, the line and the field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scheduler_sdk.frameworks.jobs.spec import CONSTRAINT_KINDS, ConstraintSpec
from scheduler_sdk.resources import Resources, ResourcesError

__all__ = [
    "AgentGroup",
    "Arrival",
    "Trace",
    "TraceError",
    "dump_trace",
    "load_trace",
    "parse_agents",
    "parse_duration",
    "parse_trace",
]

MAX_TASKS_PER_ARRIVAL = 100_000
_BASE = ("cpus", "mem", "disk")


class TraceError(ValueError):
    """A trace or cluster spec that cannot be read; the message names where and what."""


@dataclass(frozen=True)
class Arrival:
    time: float
    job: str
    tasks: int
    role: str
    resources: Mapping[str, float]
    duration: float
    constraints: tuple[ConstraintSpec, ...] = ()

    def task_ids(self) -> list[str]:
        return [self.job] if self.tasks == 1 else [f"{self.job}-{i}" for i in range(self.tasks)]

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "time": self.time,
            "job": self.job,
            "tasks": self.tasks,
            "role": self.role,
            "resources": dict(self.resources),
            "duration": self.duration,
        }
        if self.constraints:
            out["constraints"] = [_constraint_json(c) for c in self.constraints]
        return out


@dataclass(frozen=True)
class AgentGroup:
    """`count` agents with the same resources; attribute `name` takes `n` values (`name0`..`name{n-1}`), given
    round-robin over the group's agents."""

    count: int
    resources: str
    spread: tuple[tuple[str, int], ...] = ()

    def spec(self) -> str:
        tail = "@" + ",".join(f"{k}={n}" for k, n in self.spread) if self.spread else ""
        return f"{self.count}x {self.resources}{tail}"


@dataclass
class Trace:
    arrivals: list[Arrival]
    agents: list[AgentGroup] | None = None  # from the trace's own `agents` line, if any
    source: str = ""

    @property
    def tasks(self) -> int:
        return sum(a.tasks for a in self.arrivals)

    @property
    def span(self) -> float:
        """Seconds from 0 to the last arrival."""
        return self.arrivals[-1].time if self.arrivals else 0.0


def parse_duration(text: str) -> float:
    """`90`, `90s`, `15m`, `24h`, `2d` -> seconds (ValueError otherwise)."""
    text = text.strip()
    units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    scale = units.get(text[-1:].lower()) if text else None
    number = text[:-1] if scale is not None else text
    try:
        value = float(number) * (scale or 1.0)
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (e.g. 3600, 90s, 15m, 24h, 2d)") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"not a duration: {text!r} (must be finite and >= 0)")
    return value


def parse_agents(text: str) -> list[AgentGroup]:
    """`COUNTx RESOURCES[@ATTR=N,...]` groups joined by `+`, e.g. `800x cpus:32;mem:131072@zone=3,rack=40 +
    200x cpus:64;mem:262144;gpus:4`. RESOURCES is Mesos' text form (scalars only)."""
    groups = []
    for part in text.split("+"):
        part = part.strip()
        if not part:
            raise TraceError(f"agents: empty group in {text!r}")
        head, _, rest = part.partition("x ")
        try:
            count = int(head.strip())
        except ValueError:
            raise TraceError(f"agents: {part!r} must start with a count, e.g. '1000x cpus:32;mem:131072'") from None
        if count < 1:
            raise TraceError(f"agents: the count must be >= 1, not {count}")
        resources, _, spread_text = rest.partition("@")
        try:
            parsed = Resources.parse(resources.strip())
        except ResourcesError as e:
            raise TraceError(f"agents: {e}") from None
        if not parsed.scalar("cpus") or not parsed.scalar("mem"):
            raise TraceError(f"agents: {resources.strip()!r} needs cpus and mem")
        groups.append(AgentGroup(count, resources.strip(), _spread(spread_text)))
    return groups


def _spread(text: str) -> tuple[tuple[str, int], ...]:
    out = []
    for item in (i.strip() for i in text.split(",") if i.strip()):
        name, _, n = item.partition("=")
        try:
            values = int(n)
        except ValueError:
            values = 0
        if not name.strip() or values < 1:
            raise TraceError(f"agents: attribute spread {item!r} must be NAME=COUNT, e.g. zone=3")
        out.append((name.strip(), values))
    return tuple(out)


def load_trace(path: str | Path) -> Trace:
    try:
        with open(path, encoding="utf-8") as f:
            return parse_trace(f, str(path))
    except OSError as e:
        raise TraceError(f"{path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise TraceError(f"{path}: not a text file") from None


def parse_trace(lines: Iterable[str], source: str = "trace") -> Trace:
    """Arrivals sorted by time (stably); job ids must be unique."""
    arrivals: list[Arrival] = []
    agents: list[AgentGroup] | None = None
    seen: set[str] = set()
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}:{number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise TraceError(f"{where}: not JSON: {e.msg}") from None
        if not isinstance(obj, dict):
            raise TraceError(f"{where}: must be a JSON object")
        if "agents" in obj and "time" not in obj:
            if not isinstance(obj["agents"], str):
                raise TraceError(f"{where}: agents: must be a string like '1000x cpus:32;mem:131072'")
            try:
                agents = parse_agents(obj["agents"])
            except TraceError as e:
                raise TraceError(f"{where}: {e}") from None
            continue
        arrival = _arrival(obj, where)
        if arrival.job in seen:
            raise TraceError(f"{where}: job: {arrival.job!r} arrives twice (job ids are unique in a trace)")
        seen.add(arrival.job)
        arrivals.append(arrival)
    arrivals.sort(key=lambda a: a.time)
    return Trace(arrivals, agents, source)


def _number(obj: Mapping[str, Any], key: str, where: str, default: float | None = None) -> float:
    value = obj.get(key, default)
    if value is None:
        raise TraceError(f"{where}: {key}: missing")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise TraceError(f"{where}: {key}: must be a finite number >= 0, not {value!r}")
    return float(value)


def _arrival(obj: Mapping[str, Any], where: str) -> Arrival:
    unknown = set(obj) - {"time", "job", "tasks", "role", "resources", "duration", "constraints"}
    if unknown:
        raise TraceError(f"{where}: unknown field {sorted(unknown)[0]!r}")
    job = obj.get("job")
    if not isinstance(job, str | int) or isinstance(job, bool) or not str(job):
        raise TraceError(f"{where}: job: must be a non-empty string")
    tasks = obj.get("tasks", 1)
    if isinstance(tasks, bool) or not isinstance(tasks, int) or not 1 <= tasks <= MAX_TASKS_PER_ARRIVAL:
        raise TraceError(f"{where}: tasks: must be a whole number from 1 to {MAX_TASKS_PER_ARRIVAL}")
    role = obj.get("role", "*")
    if not isinstance(role, str) or not role:
        raise TraceError(f"{where}: role: must be a non-empty string")
    resources = obj.get("resources")
    if not isinstance(resources, dict) or not resources:
        raise TraceError(f'{where}: resources: must be an object like {{"cpus": 1, "mem": 512}}')
    amounts = {str(k): _number(resources, k, f"{where}: resources") for k in resources}
    if not any(amounts.values()):
        raise TraceError(f"{where}: resources: asks for nothing")
    constraints = obj.get("constraints", [])
    if not isinstance(constraints, list):
        raise TraceError(f"{where}: constraints: must be a list")
    return Arrival(
        time=_number(obj, "time", where),
        job=str(job),
        tasks=tasks,
        role=role,
        resources=amounts,
        duration=_number(obj, "duration", where),
        constraints=tuple(_constraint(c, f"{where}: constraints[{i}]") for i, c in enumerate(constraints)),
    )


def _constraint(obj: object, where: str) -> ConstraintSpec:
    """The job spec's forms (scheduler_sdk.frameworks.jobs.spec.ConstraintSpec), from JSON."""
    if not isinstance(obj, dict):
        raise TraceError(f'{where}: must be an object like {{"unique": "hostname"}}')
    soft = obj.get("soft", False)
    if not isinstance(soft, bool):
        raise TraceError(f"{where}: soft: must be true or false")
    kinds = [k for k in obj if k != "soft"]
    if len(kinds) != 1 or kinds[0] not in CONSTRAINT_KINDS:
        raise TraceError(f"{where}: needs exactly one of {', '.join(CONSTRAINT_KINDS)} (and soft)")
    kind, value = kinds[0], obj[kinds[0]]
    if kind in ("unique", "balanced"):
        if not isinstance(value, str) or not value:
            raise TraceError(f"{where}: {kind}: must be an attribute name")
        return ConstraintSpec(kind, attribute=value, soft=soft)
    if kind == "hostname":
        return ConstraintSpec(kind, attribute="hostname", values=_values(value, f"{where}: hostname"), soft=soft)
    if not isinstance(value, dict) or len(value) != 1:
        raise TraceError(f'{where}: attribute: must name one attribute, like {{"zone": "zone1"}}')
    [(name, values)] = value.items()
    return ConstraintSpec(kind, attribute=str(name), values=_values(values, f"{where}: attribute"), soft=soft)


def _values(value: object, where: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, str) and v for v in items):
        raise TraceError(f"{where}: must be a name or a list of names")
    return tuple(str(v) for v in items)


def _constraint_json(c: ConstraintSpec) -> dict[str, Any]:
    out: dict[str, Any]
    if c.kind in ("unique", "balanced"):
        out = {c.kind: c.attribute}
    elif c.kind == "hostname":
        out = {"hostname": list(c.values)}
    else:
        out = {"attribute": {c.attribute: list(c.values)}}
    if c.soft:
        out["soft"] = True
    return out


def dump_trace(arrivals: Iterable[Arrival], agents: list[AgentGroup] | None = None) -> Iterator[str]:
    """The JSON lines of a trace (with its `agents` line first when given)."""
    if agents:
        yield json.dumps({"agents": " + ".join(g.spec() for g in agents)})
    for a in arrivals:
        yield json.dumps(a.as_json(), separators=(",", ":"))
