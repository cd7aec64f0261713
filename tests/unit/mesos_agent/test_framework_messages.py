"""Framework messages to command tasks: which write a message asks for (`framework_messages`, pure), and the write
itself (`sandbox.write_sandbox_file`): atomic, owned by the task's user, never through a link the task planted."""

from __future__ import annotations

import itertools
import os
import stat
from pathlib import Path

import pytest

from aiomesos.v1 import agent_pb2
from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_agent.framework_messages import NO_PATH, WriteSandboxFile, sandbox_write
from mesos_agent.sandbox import MESSAGE_FILE_MODE, write_sandbox_file
from mesos_agent.tasks import TaskKey, TaskRun
from mesos_agent.users import TaskUser

FrameworkMessage = agent_pb2.MasterMessage.FrameworkMessage
SANDBOX = Path("/work/agents/S1/frameworks/fw/executors/t1/runs/c1")
NOBODY = TaskUser("nobody", 65534, 65534)


def held(*runs: TaskRun) -> dict[TaskKey, TaskRun]:
    return {r.key: r for r in runs}


def run(
    task_id: str = "t1",
    framework_id: str = "fw",
    state: int = tpb.TASK_RUNNING,
    sandbox: Path | None = SANDBOX,
    user: TaskUser | None = NOBODY,
) -> TaskRun:
    return TaskRun(
        framework=rpb.FrameworkInfo(id=framework_id, name=framework_id),
        info=tpb.TaskInfo(task_id=task_id, name=task_id),
        container_id="c1",
        state=state,
        sandbox=sandbox,
        user=user,
    )


def message(path: str = "upstream", executor_id: str = "t1", framework_id: str = "fw") -> FrameworkMessage:
    return FrameworkMessage(framework_id=framework_id, executor_id=executor_id, data=b"h:1\n", path=path)


# ---------------------------------------------------------------------- which write (pure)
def test_a_message_for_a_running_command_task_is_written_to_its_sandbox_as_its_user() -> None:
    assert sandbox_write(held(run()), message()) == WriteSandboxFile(
        "fw", "t1", SANDBOX, "upstream", b"h:1\n", (65534, 65534)
    )


def test_the_owner_of_a_task_readopted_after_a_restart_is_its_sandboxs() -> None:
    write = sandbox_write(held(run(user=None)), message())
    assert isinstance(write, WriteSandboxFile) and write.owner is None


@pytest.mark.parametrize(
    ("runs", "msg", "why"),
    [
        ((run(),), message(path=""), NO_PATH),
        ((run(),), message(path="../x"), "path '../x': '/' is not allowed"),
        ((run(),), message(path=".."), "path '..': must not be '..'"),
        ((), message(), "no task 't1' on this agent"),
        ((run(),), message(executor_id="t2"), "no task 't2' on this agent"),
        ((run(framework_id="other"),), message(), "task 't1' is another framework's"),
        ((run(state=tpb.TASK_STARTING),), message(), "task 't1' is not running (TASK_STARTING)"),
        ((run(state=tpb.TASK_KILLING),), message(), "task 't1' is not running (TASK_KILLING)"),
        ((run(state=tpb.TASK_FINISHED),), message(), "task 't1' is not running (TASK_FINISHED)"),
        ((run(sandbox=None),), message(), "task 't1' is not running (TASK_RUNNING)"),
    ],
    ids=[
        "no-path",
        "dir",
        "dotdot",
        "unknown",
        "other-task",
        "other-framework",
        "starting",
        "killing",
        "finished",
        "no-sandbox",
    ],
)
def test_a_message_that_cannot_be_written_is_dropped_saying_why(
    runs: tuple[TaskRun, ...], msg: FrameworkMessage, why: str
) -> None:
    result = sandbox_write(held(*runs), msg)
    assert isinstance(result, str)
    assert why in result


# ---------------------------------------------------------------------- the write
@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    path.mkdir(mode=0o750)
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file the task must never reach through the agent."""
    path = tmp_path / "secret"
    path.write_bytes(b"the agent's own\n")
    return path


def own() -> tuple[int, int]:
    return (os.geteuid(), os.getegid())


def test_the_file_is_written_whole_and_a_second_write_replaces_it(sandbox: Path) -> None:
    write_sandbox_file(sandbox, "upstream", b"a:1\nb:2\n", own())
    assert (sandbox / "upstream").read_bytes() == b"a:1\nb:2\n"
    write_sandbox_file(sandbox, "upstream", b"", own())
    assert (sandbox / "upstream").read_bytes() == b""
    write_sandbox_file(sandbox, "upstream", b"x" * (1 << 20), own())
    assert (sandbox / "upstream").read_bytes() == b"x" * (1 << 20)
    assert sorted(p.name for p in sandbox.iterdir()) == ["upstream"]  # no temporary file left


def test_an_old_reader_keeps_the_whole_old_file(sandbox: Path) -> None:
    write_sandbox_file(sandbox, "upstream", b"old\n", own())
    with open(sandbox / "upstream", "rb") as reader:
        write_sandbox_file(sandbox, "upstream", b"new\n", own())
        assert reader.read() == b"old\n"  # replaced, not rewritten in place
    assert (sandbox / "upstream").read_bytes() == b"new\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_the_file_belongs_to_the_tasks_user(sandbox: Path) -> None:
    os.chown(sandbox, 65534, 65534)
    write_sandbox_file(sandbox, "given", b"d", (65534, 65533))
    write_sandbox_file(sandbox, "unknown-owner", b"d", None)  # the sandbox's owner
    given, found = (sandbox / "given").stat(), (sandbox / "unknown-owner").stat()
    assert (given.st_uid, given.st_gid) == (65534, 65533)
    assert (found.st_uid, found.st_gid) == (65534, 65534)
    assert stat.S_IMODE(given.st_mode) == MESSAGE_FILE_MODE


def test_the_file_is_readable_for_its_owner_whatever_the_umask(sandbox: Path) -> None:
    old = os.umask(0o777)
    try:
        write_sandbox_file(sandbox, "upstream", b"d", own())
    finally:
        os.umask(old)
    assert stat.S_IMODE((sandbox / "upstream").stat().st_mode) == MESSAGE_FILE_MODE


def test_a_link_planted_under_the_name_is_replaced_not_followed(sandbox: Path, outside: Path) -> None:
    (sandbox / "upstream").symlink_to(outside)
    write_sandbox_file(sandbox, "upstream", b"a:1\n", own())
    assert outside.read_bytes() == b"the agent's own\n"
    assert not (sandbox / "upstream").is_symlink()
    assert (sandbox / "upstream").read_bytes() == b"a:1\n"


def test_a_dangling_link_planted_under_the_name_creates_nothing_where_it_points(sandbox: Path, tmp_path: Path) -> None:
    target = tmp_path / "created-by-the-agent"
    (sandbox / "upstream").symlink_to(target)
    write_sandbox_file(sandbox, "upstream", b"a:1\n", own())
    assert not target.exists()
    assert (sandbox / "upstream").read_bytes() == b"a:1\n"


def test_a_link_planted_under_the_temporary_name_is_not_followed(sandbox: Path, outside: Path) -> None:
    tokens = iter(["planted", "fresh"])
    (sandbox / ".aiomesos-message.planted.tmp").symlink_to(outside)
    write_sandbox_file(sandbox, "upstream", b"a:1\n", own(), token=lambda: next(tokens))
    assert outside.read_bytes() == b"the agent's own\n"
    assert (sandbox / ".aiomesos-message.planted.tmp").is_symlink()  # the task's own, left as it was
    assert (sandbox / "upstream").read_bytes() == b"a:1\n"
    assert not (sandbox / ".aiomesos-message.fresh.tmp").exists()


def test_links_under_every_temporary_name_tried_fail_the_write(sandbox: Path, outside: Path) -> None:
    (sandbox / ".aiomesos-message.same.tmp").symlink_to(outside)
    with pytest.raises(FileExistsError):
        write_sandbox_file(sandbox, "upstream", b"a:1\n", own(), token=itertools.repeat("same").__next__)
    assert outside.read_bytes() == b"the agent's own\n"
    assert not (sandbox / "upstream").exists()


def test_a_sandbox_that_is_a_link_is_not_followed(tmp_path: Path, outside: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "run").symlink_to(elsewhere)
    with pytest.raises(OSError):
        write_sandbox_file(tmp_path / "run", "upstream", b"a:1\n", own())
    assert list(elsewhere.iterdir()) == []


def test_a_directory_planted_under_the_name_fails_the_write_and_leaves_no_temporary_file(sandbox: Path) -> None:
    (sandbox / "upstream").mkdir()
    with pytest.raises(OSError):
        write_sandbox_file(sandbox, "upstream", b"a:1\n", own())
    assert sorted(p.name for p in sandbox.iterdir()) == ["upstream"]


@pytest.mark.parametrize("name", ["../secret", "a/b", ".", "..", ""])
def test_a_name_that_is_not_a_plain_file_name_is_refused(sandbox: Path, outside: Path, name: str) -> None:
    with pytest.raises(ValueError):
        write_sandbox_file(sandbox, name, b"x", own())
    assert outside.read_bytes() == b"the agent's own\n"
    assert list(sandbox.iterdir()) == []
