"""What a jobs `TaskLaunch` (tasks.py) is placed as and launched as: the pure part of the jobs placement.

`task_request` makes the engine's `TaskRequest` of a launch: its resources, group and constraints, and for a launch
with a lifecycle (services, streams) the soft `LifecycleAffinity` that keeps perpetual work on hosts apart from
transient work. `launch_task_info` makes the TaskInfo of a placed launch: its shell command with its environment and
ports (AIOMESOS_PORTi and PORTi, the i-th lowest port assigned), its health check (the agent's runner is
mesos_agent/health.py: an http or tcp check probes the port assigned at `port_index`, a command check runs as a
shell command with the task's environment) and the label `aiomesos.version` of a versioned launch.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Protocol

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.frameworks.jobs.spec import ConstraintSpec, HealthCheckSpec, TaskResources
from scheduler_sdk.placement.constraints import (
    AttributeValue,
    BalancedByAttribute,
    LifecycleAffinity,
    UniqueByAttribute,
)
from scheduler_sdk.placement.launch import default_task_info
from scheduler_sdk.placement.model import Assignment, TaskRequest

__all__ = ["VERSION_LABEL", "LaunchLike", "health_check_info", "launch_task_info", "placement_constraint"]
__all__ += ["task_ports", "task_request"]

VERSION_LABEL = "aiomesos.version"  # the TaskInfo label of the job version a task runs

_HEALTH_TYPES = {"http": tpb.HealthCheck.HTTP, "tcp": tpb.HealthCheck.TCP, "command": tpb.HealthCheck.COMMAND}


class LaunchLike(Protocol):
    """What placement reads of a `tasks.TaskLaunch` (the contract's fields; read-only)."""

    @property
    def task_id(self) -> str: ...
    @property
    def job_id(self) -> str: ...
    @property
    def run_id(self) -> str: ...
    @property
    def step(self) -> str: ...
    @property
    def index(self) -> int: ...
    @property
    def attempt(self) -> int: ...
    @property
    def role(self) -> str: ...
    @property
    def command(self) -> str: ...
    @property
    def user(self) -> str: ...
    @property
    def env(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def resources(self) -> TaskResources: ...
    @property
    def constraints(self) -> tuple[ConstraintSpec, ...]: ...
    @property
    def group(self) -> str: ...
    @property
    def gang(self) -> str: ...
    @property
    def gang_size(self) -> int: ...
    @property
    def ready_at(self) -> float: ...
    @property
    def health_check(self) -> HealthCheckSpec | None: ...
    @property
    def lifecycle(self) -> str: ...
    @property
    def version(self) -> int: ...


def placement_constraint(spec: ConstraintSpec) -> object:
    """The placement engine's constraint for a spec's (constraints.py): `unique` -> UniqueByAttribute,
    `attribute`/`hostname` -> AttributeValue(in_=values), `balanced` -> BalancedByAttribute; ValueError for an
    unknown kind."""
    if spec.kind == "unique":
        return UniqueByAttribute(spec.attribute or "hostname")
    if spec.kind == "attribute":
        return AttributeValue(spec.attribute, in_=spec.values)
    if spec.kind == "hostname":
        return AttributeValue("hostname", in_=spec.values)
    if spec.kind == "balanced":
        return BalancedByAttribute(spec.attribute)
    raise ValueError(f"unknown constraint kind {spec.kind!r}")


def task_request(
    launch: LaunchLike,
    ready_at: float = 0.0,
    *,
    lifecycle_of: Mapping[str, str] | None = None,
    outside: Mapping[str, Collection[str]] | None = None,
) -> TaskRequest:
    """The request a launch is placed as: its resources (gpus a scalar, ports a count), group and constraints (soft
    ones rank hosts instead of filtering them), plus, when it has a lifecycle and `lifecycle_of` is given, a soft
    `LifecycleAffinity` over `lifecycle_of` and `outside` (a launch without a lifecycle gets nothing more: batch
    placement stays as fast as it was); payload: the launch; `ready_at` on the scheduler's clock."""
    r = launch.resources
    hard = tuple(placement_constraint(c) for c in launch.constraints if not c.soft)
    soft = tuple(placement_constraint(c) for c in launch.constraints if c.soft)
    if launch.lifecycle and lifecycle_of is not None:
        soft += (LifecycleAffinity(launch.lifecycle, lifecycle_of, outside),)
    return TaskRequest(
        launch.task_id,
        cpus=r.cpus,
        mem=r.mem,
        disk=r.disk,
        ports=r.ports,
        scalars={"gpus": r.gpus} if r.gpus else {},
        group=launch.group,
        hard_constraints=hard,
        soft_constraints=soft,
        ready_at=ready_at,
        payload=launch,
    )


def task_ports(assignment: Assignment) -> tuple[int, ...]:
    """The ports an assignment gives its task, in the order the task numbers them (AIOMESOS_PORT0 is the first)."""
    return tuple(sorted(assignment.ports))


def launch_task_info(task: TaskRequest, assignment: Assignment) -> tpb.TaskInfo:
    """The TaskInfo of a placed launch: its shell command as its user, its environment plus AIOMESOS_PORTi and
    PORTi for each port it was given (in the order the agent numbers them), its resources, its health check and
    its version label. ValueError when its health check names a port it was not given."""
    launch: LaunchLike = task.payload
    ports = task_ports(assignment)
    env = dict(launch.env)
    for i, port in enumerate(ports):
        env[f"AIOMESOS_PORT{i}"] = env[f"PORT{i}"] = str(port)
    command = rpb.CommandInfo(shell=True, value=launch.command, user=launch.user)
    _set_environment(command, env)
    info = default_task_info(replace(task, payload=command), assignment)
    if launch.health_check is not None:
        info.health_check.CopyFrom(health_check_info(launch.health_check, ports, env, launch.user))
    if launch.version:
        info.labels.labels.add(key=VERSION_LABEL, value=str(launch.version))
    return info


def health_check_info(
    check: HealthCheckSpec, ports: Sequence[int], env: Mapping[str, str], user: str = ""
) -> tpb.HealthCheck:
    """The agent's HealthCheck of a spec's: every setting set (proto3 optional), so the agent's defaults never apply; an
    http/tcp check on the task's `port_index`-th port (of `ports`, as AIOMESOS_PORTi numbers them), a command check
    as a shell command with the task's environment `env`. ValueError for a port the task was not given or an
    unknown type."""
    kind = _HEALTH_TYPES.get(check.type)
    if kind is None:
        raise ValueError(f"health check type {check.type!r} is not one of {', '.join(_HEALTH_TYPES)}")
    out = tpb.HealthCheck(
        type=kind,
        delay_seconds=check.delay,
        interval_seconds=check.interval,
        timeout_seconds=check.timeout,
        consecutive_failures=check.consecutive_failures,
        grace_period_seconds=check.grace_period,
    )
    if kind == tpb.HealthCheck.COMMAND:
        out.command.CopyFrom(rpb.CommandInfo(shell=True, value=check.command, user=user))
        _set_environment(out.command, env)
        return out
    if not 0 <= check.port_index < len(ports):
        have = f"{len(ports)} port{'' if len(ports) == 1 else 's'}"
        raise ValueError(f"health check port_index {check.port_index}: the task was given {have}")
    if kind == tpb.HealthCheck.HTTP:
        out.http.CopyFrom(tpb.HealthCheck.HTTPCheckInfo(scheme="http", port=ports[check.port_index], path=check.path))
    else:
        out.tcp.port = ports[check.port_index]
    return out


def _set_environment(command: rpb.CommandInfo, env: Mapping[str, str]) -> None:
    for name in sorted(env):
        command.environment.variables.add(name=name, value=env[name])
