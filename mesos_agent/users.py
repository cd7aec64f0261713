"""Which user a task runs as, and whether the agent lets it: the agent's safe defaults.

A task runs as its CommandInfo's user, else its framework's, else the agent's `--default-user` (`nobody`). An
agent running as root switches to that user; it refuses root itself (uid 0, whatever the name) unless started
with `--allow-root-tasks`. An agent not running as root cannot switch: its tasks run as its own user, and a task
that names another user is refused. Each refusal is a status update that says why: TASK_ERROR with
REASON_TASK_UNAUTHORIZED for root (the task as given will never be allowed here), TASK_FAILED with
REASON_CONTAINER_LAUNCH_FAILED for a user this host does not have.

`UserPolicy.resolve` is pure but for the user database lookup, which is injected."""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable
from dataclasses import dataclass, field

from aiomesos.v1 import tasks_pb2 as tpb

DEFAULT_USER = "nobody"
TaskStatus = tpb.TaskStatus


@dataclass(frozen=True, slots=True)
class TaskUser:
    name: str
    uid: int
    gid: int


@dataclass(frozen=True, slots=True)
class UserRefused:
    """Why a task may not run as the user it asked for: the terminal update to send instead."""

    state: int
    reason: int
    message: str


Lookup = Callable[[str], tuple[int, int]]  # user name -> (uid, gid); KeyError when unknown


def lookup_user(name: str) -> tuple[int, int]:
    entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid


@dataclass
class UserPolicy:
    """`agent_uid`/`agent_user`: who the agent runs as (only root switches users)."""

    default_user: str = DEFAULT_USER
    allow_root: bool = False
    agent_uid: int = field(default_factory=os.geteuid)
    agent_user: str = ""
    lookup: Lookup = lookup_user
    _known: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.agent_user:
            try:
                self.agent_user = pwd.getpwuid(self.agent_uid).pw_name
            except KeyError:
                self.agent_user = str(self.agent_uid)

    @property
    def switches(self) -> bool:
        """Whether tasks run as their own user (the agent is root) rather than as the agent's."""
        return self.agent_uid == 0

    def check(self) -> str | None:
        """What is wrong with the policy itself (for the agent's flags), if anything."""
        if not self.switches:
            return None
        try:
            uid, _ = self._ids(self.default_user)
        except KeyError:
            return f"--default-user {self.default_user!r}: no such user on this host"
        if uid == 0 and not self.allow_root:
            return f"--default-user {self.default_user!r} is root: that needs --allow-root-tasks"
        return None

    def resolve(self, command_user: str, framework_user: str) -> TaskUser | UserRefused:
        """The user a task with these users named (either may be "") runs as, or why it may not run."""
        asked = command_user or framework_user
        if not self.switches:
            if asked and asked != self.agent_user:
                return UserRefused(
                    tpb.TASK_FAILED,
                    TaskStatus.REASON_CONTAINER_LAUNCH_FAILED,
                    f"cannot run the task as user {asked!r}: the agent runs as {self.agent_user!r}, not as root, "
                    "and runs every task as its own user",
                )
            return TaskUser(self.agent_user, self.agent_uid, os.getegid())
        name = asked or self.default_user
        try:
            uid, gid = self._ids(name)
        except KeyError:
            return UserRefused(
                tpb.TASK_FAILED,
                TaskStatus.REASON_CONTAINER_LAUNCH_FAILED,
                f"cannot run the task as user {name!r}: no such user on this agent's host",
            )
        if uid == 0 and not self.allow_root:
            which = f"user {name!r} (uid 0)" if asked else f"the agent's default user {name!r} (uid 0)"
            return UserRefused(
                tpb.TASK_ERROR,
                TaskStatus.REASON_TASK_UNAUTHORIZED,
                f"refused to run the task as {which}: this agent runs no task as root unless started with "
                "--allow-root-tasks; give the task another user",
            )
        return TaskUser(name, uid, gid)

    def _ids(self, name: str) -> tuple[int, int]:
        ids = self._known.get(name)
        if ids is None:
            ids = self._known[name] = self.lookup(name)
        return ids
