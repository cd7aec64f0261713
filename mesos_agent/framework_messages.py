"""Framework messages to command tasks, pure: which sandbox file a message is written to, or why it is dropped.

A framework message (`MasterMessage.FrameworkMessage`) names an executor; a command task's executor id is its task
id. With a `path`, the message is for that task: its `data` goes to the file `path` of the task's sandbox
(`mesos_agent.sandbox.write_sandbox_file` carries that out, atomically, following no link), owned by the task's
user. Dropped, and logged by the shell (`Agent.framework_message`): a message without a path (command tasks take
no executor messages), a path that is not a plain file name (`scheduler_sdk.sandbox_files`; the master refuses
those, the agent checks again), and a message for a task that is not running here or not the framework's.

Nothing here does I/O: the decision reads the tasks the state machine holds (`TaskStateMachine.tasks`), where
each task's sandbox and user are known."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aiomesos.v1 import agent_pb2
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_agent.tasks import TaskKey, TaskRun
from mesos_agent.users import TaskUser
from scheduler_sdk.enums import enum_name
from scheduler_sdk.quoting import quoted
from scheduler_sdk.sandbox_files import file_name_problem

__all__ = ["WriteSandboxFile", "sandbox_write"]

NO_PATH = "command tasks take no executor messages (the message names no file of the task's sandbox)"


@dataclass(frozen=True, slots=True)
class WriteSandboxFile:
    """Write `data` to the file `name` of the running task's sandbox, as `owner` (uid, gid: the task's user; None
    when not known, as for a task re-adopted after a restart: the sandbox directory's owner, the task's user)."""

    framework_id: str
    task_id: str
    sandbox: Path
    name: str
    data: bytes
    owner: tuple[int, int] | None


def sandbox_write(
    tasks: Mapping[TaskKey, TaskRun], message: agent_pb2.MasterMessage.FrameworkMessage
) -> WriteSandboxFile | str:
    """The write a framework message asks for, or why it is dropped."""
    if not message.path:
        return NO_PATH
    problem = file_name_problem(message.path)
    if problem is not None:
        return f"path {quoted(message.path)}: {problem}"
    task_id = message.executor_id
    run = tasks.get((message.framework_id, task_id))
    if run is None:
        if any(key[1] == task_id for key in tasks):
            return f"task {quoted(task_id)} is another framework's"
        return f"no task {quoted(task_id)} on this agent"
    if run.state != tpb.TASK_RUNNING or run.sandbox is None:
        return f"task {quoted(task_id)} is not running ({enum_name(tpb.TaskState, run.state)})"
    user = run.user
    owner = (user.uid, user.gid) if isinstance(user, TaskUser) else None
    return WriteSandboxFile(message.framework_id, task_id, run.sandbox, message.path, message.data, owner)
