"""Which user a task runs as, and when the agent refuses it."""

from __future__ import annotations

import pytest

from aiomesos.v1 import tasks_pb2 as tpb
from mesos_agent.users import TaskUser, UserPolicy, UserRefused

S = tpb.TaskStatus
USERS = {"root": (0, 0), "nobody": (65534, 65534), "alice": (1000, 1000), "toor": (0, 5)}


def lookup(name: str) -> tuple[int, int]:
    return USERS[name]


def policy(**kw: object) -> UserPolicy:
    return UserPolicy(agent_uid=0, agent_user="root", lookup=lookup, **kw)  # type: ignore[arg-type]


def test_no_user_is_the_default_user_and_the_command_user_wins_over_the_frameworks() -> None:
    p = policy()
    assert p.resolve("", "") == TaskUser("nobody", 65534, 65534)
    assert p.resolve("", "alice") == TaskUser("alice", 1000, 1000)
    assert p.resolve("nobody", "alice") == TaskUser("nobody", 65534, 65534)
    assert policy(default_user="alice").resolve("", "") == TaskUser("alice", 1000, 1000)


@pytest.mark.parametrize(("command", "framework"), [("root", ""), ("", "root"), ("toor", "")])
def test_root_is_refused_by_uid_unless_allowed(command: str, framework: str) -> None:
    refused = policy().resolve(command, framework)
    assert isinstance(refused, UserRefused)
    assert (refused.state, refused.reason) == (tpb.TASK_ERROR, S.REASON_TASK_UNAUTHORIZED)
    assert "uid 0" in refused.message and "--allow-root-tasks" in refused.message
    allowed = policy(allow_root=True).resolve(command, framework)
    assert isinstance(allowed, TaskUser) and allowed.uid == 0


def test_an_unknown_user_fails_the_task() -> None:
    refused = policy().resolve("mallory", "")
    assert isinstance(refused, UserRefused)
    assert (refused.state, refused.reason) == (tpb.TASK_FAILED, S.REASON_CONTAINER_LAUNCH_FAILED)
    assert "'mallory'" in refused.message and "no such user" in refused.message


def test_an_agent_not_root_runs_tasks_as_itself_and_refuses_other_users() -> None:
    p = UserPolicy(agent_uid=1000, agent_user="alice", lookup=lookup)
    own = p.resolve("", "")
    assert isinstance(own, TaskUser) and (own.name, own.uid) == ("alice", 1000)
    assert p.resolve("alice", "") == own
    refused = p.resolve("nobody", "")
    assert isinstance(refused, UserRefused) and refused.state == tpb.TASK_FAILED
    assert "not as root" in refused.message
    assert p.check() is None


def test_the_policy_itself_is_checked() -> None:
    assert policy().check() is None
    assert "needs --allow-root-tasks" in (policy(default_user="root").check() or "")
    assert policy(default_user="root", allow_root=True).check() is None
    assert "no such user" in (policy(default_user="ghost").check() or "")
