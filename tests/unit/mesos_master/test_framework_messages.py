"""MESSAGE calls: the master forwards a framework message (with the sandbox file it names) to the agent, and
refuses a path that is not a plain file name, naming `message.path`."""

from __future__ import annotations

import pytest

from mesos_master import bounds as b
from mesos_master.errors import CallError
from scheduler_sdk.sandbox_files import MAX_FILE_NAME_LENGTH, file_name_problem
from tests.unit.mesos_master.test_cluster import Call as C
from tests.unit.mesos_master.test_cluster import M, World, messages


def test_a_message_with_a_path_reaches_the_agent_with_it() -> None:
    w = World()
    fid = w.subscribe()
    aid = w.register()
    w.drain()
    w.master.framework_message(fid, C.Message(agent_id=aid, executor_id="t1", data=b"a:1\n", path="upstream"))
    [sent] = messages(w.drain(), aid, M.FRAMEWORK_MESSAGE)
    assert sent.framework_message == M.FrameworkMessage(
        framework_id=fid, executor_id="t1", data=b"a:1\n", path="upstream"
    )


def test_a_message_to_an_agent_not_attached_is_refused() -> None:
    w = World()
    fid = w.subscribe()
    with pytest.raises(CallError, match=r"message to agent 'S9': that agent is not attached"):
        w.master.framework_message(fid, C.Message(agent_id="S9", executor_id="t1", path="upstream"))


@pytest.mark.parametrize("path", ["upstream", "a", "x.y-z_1", ".hidden", "..x", "p" * MAX_FILE_NAME_LENGTH])
def test_a_plain_file_name_is_a_path(path: str) -> None:
    assert file_name_problem(path) is None
    b.check_message(C.Message(agent_id="S1", executor_id="t1", path=path))


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        (".", "message.path '.': must not be '.'"),
        ("..", "message.path '..': must not be '..'"),
        ("../etc/passwd", "message.path '../etc/passwd': '/' is not allowed"),
        ("a/b", "'/' is not allowed: a file name in the task's sandbox is letters, digits, '.', '_' and '-'"),
        ("/abs", "'/' is not allowed"),
        ("a b", "' ' is not allowed"),
        ("a\\b", "'\\\\' is not allowed"),
        ("nl\n", "'\\n' is not allowed"),
        ("nul\x00", "'\\x00' is not allowed"),
        ("é", "'é' is not allowed"),
        ("p" * (MAX_FILE_NAME_LENGTH + 1), f"message.path: 256 characters, at most {MAX_FILE_NAME_LENGTH}"),
    ],
)
def test_a_path_that_is_not_a_plain_file_name_is_refused_naming_the_field(path: str, fragment: str) -> None:
    with pytest.raises(CallError) as refused:
        b.check_message(C.Message(agent_id="S1", executor_id="t1", path=path))
    assert fragment in str(refused.value)
    assert str(refused.value).startswith("message.path")
    assert file_name_problem(path) is not None  # the agent refuses it too


def test_a_path_needs_the_task_it_is_for() -> None:
    with pytest.raises(CallError, match=r"message\.executor_id must not be empty"):
        b.check_message(C.Message(agent_id="S1", path="upstream"))
    b.check_message(C.Message(agent_id="S1", data=b"for an executor"))  # no path: as before


def test_a_bad_path_is_refused_before_anything_is_sent() -> None:
    w = World()
    fid = w.subscribe()
    aid = w.register()
    w.drain()
    with pytest.raises(CallError, match=r"message\.path '\.\./x'"):
        w.master.framework_message(fid, C.Message(agent_id=aid, executor_id="t1", data=b"d", path="../x"))
    assert messages(w.drain(), aid, M.FRAMEWORK_MESSAGE) == []
