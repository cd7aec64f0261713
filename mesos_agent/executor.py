"""The command executor's rules: how a task's command becomes argv and environment, how long a kill waits,
and what terminal state a container's end means, and the status updates it sends. Pure functions; the task state
machine (`tasks.py`) runs them."""

from __future__ import annotations

import os

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_agent.containerizer import Termination
from scheduler_sdk.resources import Resources

TaskStatus = tpb.TaskStatus
DEFAULT_GRACE_PERIOD = 3.0
_AGENT_SOURCED_STATES = frozenset({tpb.TASK_LOST, tpb.TASK_DROPPED})
_INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "TZ")


def command_argv(command: rpb.CommandInfo) -> list[str]:
    """As Mesos: shell commands run under /bin/sh -c; otherwise `value` is executed with `arguments` as its argv
    (argv[0] included), so the program path comes from `value`."""
    if command.shell:
        return ["/bin/sh", "-c", command.value]
    if command.value:
        return [command.value, *list(command.arguments)[1:]]
    return list(command.arguments)


def task_environment(
    task: tpb.TaskInfo, framework_id: str, agent_id: str, sandbox: str, container_id: str, hostname: str
) -> dict[str, str]:
    env = {k: os.environ[k] for k in _INHERITED_ENV if k in os.environ}
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env.update(
        {
            "HOME": sandbox,
            "MESOS_SANDBOX": sandbox,
            "MESOS_DIRECTORY": sandbox,
            "MESOS_TASK_ID": task.task_id,
            "MESOS_FRAMEWORK_ID": framework_id,
            "MESOS_AGENT_ID": agent_id,
            "MESOS_EXECUTOR_ID": task.task_id,
            "MESOS_CONTAINER_ID": container_id,
            "HOST": hostname,
        }
    )
    resources = Resources.from_proto(task.resources)
    ports = [p for b, e in resources.ranges("ports") for p in range(b, e + 1)]
    if ports:
        env["PORTS"] = ",".join(map(str, ports))
        env["PORT"] = str(ports[0])
        for i, p in enumerate(ports):
            env[f"PORT{i}"] = str(p)
    for var in task.command.environment.variables:
        env[var.name] = var.value
    return env


def grace_period(task: tpb.TaskInfo, override: rpb.KillPolicy | None) -> float:
    for policy in (override, task.kill_policy):
        if policy is not None and policy.HasField("grace_period"):
            return max(0.0, policy.grace_period.nanoseconds / 1e9)
    return DEFAULT_GRACE_PERIOD


def terminal_status(term: Termination, killed: bool) -> tuple[int, int, str, int | None]:
    """(state, reason, message, exit code) for a container that ended."""
    code = term.exit_code if term.exit_code is not None else (128 + term.signal if term.signal else None)
    if term.limitation == "disk":
        return tpb.TASK_FAILED, TaskStatus.REASON_CONTAINER_LIMITATION_DISK, term.message, code
    if term.oom_killed:
        return tpb.TASK_FAILED, TaskStatus.REASON_CONTAINER_LIMITATION_MEMORY, term.message, code
    if killed:
        return tpb.TASK_KILLED, TaskStatus.REASON_NONE, f"task killed ({term.message})", code
    if term.exit_code == 0:
        return tpb.TASK_FINISHED, TaskStatus.REASON_NONE, term.message, 0
    return tpb.TASK_FAILED, TaskStatus.REASON_COMMAND_EXECUTOR_FAILED, term.message, code


def task_status(
    task_id: str,
    state: int,
    reason: int,
    message: str,
    agent_id: str,
    timestamp: float,
    update_uuid: bytes,
    exit_code: int | None = None,
    healthy: bool | None = None,
) -> tpb.TaskStatus:
    """A status update of a command task (its executor id is its task id)."""
    status = tpb.TaskStatus(
        task_id=task_id,
        state=state,  # type: ignore[arg-type]
        reason=reason,  # type: ignore[arg-type]
        message=message,
        source=TaskStatus.SOURCE_AGENT if state in _AGENT_SOURCED_STATES else TaskStatus.SOURCE_EXECUTOR,
        agent_id=agent_id,
        executor_id=task_id,
        timestamp=timestamp,
        uuid=update_uuid,
    )
    if exit_code is not None:
        status.exit_code = exit_code
    if healthy is not None:
        status.healthy = healthy
    return status


def unknown_task_status(task_id: str, agent_id: str, timestamp: float, update_uuid: bytes) -> tpb.TaskStatus:
    """The answer to a kill of a task this agent does not know."""
    return tpb.TaskStatus(
        task_id=task_id,
        state=tpb.TASK_LOST,
        reason=TaskStatus.REASON_TASK_UNKNOWN,
        message="the agent does not know this task",
        source=TaskStatus.SOURCE_AGENT,
        agent_id=agent_id,
        timestamp=timestamp,
        uuid=update_uuid,
    )
