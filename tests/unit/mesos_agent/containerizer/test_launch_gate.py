"""A checkpointed task starts only once the agent has written its launch record.

The race (bench.chaos, 1 run in 5 before): the agent spawned the launch wrapper, which started the task at once,
and was killed -9 before it wrote the launch record. The next agent found the task in its checkpoint but no
record of its container, reported it TASK_LOST ("the task's container was not found after a restart"), and the
task ran on unseen to its end: a false TASK_LOST, and a framework that relaunches it runs it twice. The wrapper
now waits on its stdin (the agent's LaunchGate) for LAUNCH_GO, which the agent writes after the record; a pipe
that ends without it (the agent died: the kernel closes its end) ends the wrapper before the task ever ran.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from mesos_agent.containerizer import LAUNCH_FAILED_STATUS, LaunchSpec
from mesos_agent.containerizer._launcher import LaunchGate
from mesos_agent.containerizer._runtime import STATUS, read_status
from mesos_agent.containerizer._wrapper import WRAPPER_MARK, wrapper_argv

ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LC_ALL": "C"}


def _wrapper(tmp_path: Path) -> tuple[list[str], Path, Path]:
    """The wrapper of a checkpointed task that leaves a mark when it runs, and what it reads on stdin."""
    ran, stdin_seen = tmp_path / "ran", tmp_path / "stdin"
    command = f"touch {ran}; cat > {stdin_seen}"
    spec = LaunchSpec("c1", ["/bin/sh", "-c", command], ENV, tmp_path, tmp_path / "out", tmp_path / "err")
    return wrapper_argv(spec, [], [], cd=True, status_file=str(tmp_path / STATUS)), ran, stdin_seen


def _run(argv: list[str], gate: LaunchGate, tmp_path: Path) -> subprocess.Popen[bytes]:
    with open(tmp_path / "err", "wb") as err:
        wrapper = subprocess.Popen(argv, stdin=gate.read_fd, stderr=err, env=ENV, start_new_session=True)
    gate.spawned()
    return wrapper


def test_the_task_never_starts_when_the_agent_dies_before_its_launch_record(tmp_path: Path) -> None:
    argv, ran, _ = _wrapper(tmp_path)
    gate = LaunchGate()
    wrapper = _run(argv, gate, tmp_path)
    gate.close()  # what a kill -9 of the agent does to its end of the pipe, before it wrote the record
    assert wrapper.wait(10) == LAUNCH_FAILED_STATUS
    assert not ran.exists(), "the task ran although its launch was never recorded"
    assert read_status(tmp_path / STATUS) == LAUNCH_FAILED_STATUS  # a later agent that finds the record knows
    last = (tmp_path / "err").read_text().splitlines()[-1]
    assert last.startswith(WRAPPER_MARK) and "never started" in last


def test_the_task_starts_once_the_record_is_written_with_dev_null_for_stdin(tmp_path: Path) -> None:
    argv, ran, stdin_seen = _wrapper(tmp_path)
    gate = LaunchGate()
    wrapper = _run(argv, gate, tmp_path)
    assert not ran.exists()
    gate.open()
    assert wrapper.wait(10) == 0
    assert ran.exists() and stdin_seen.read_bytes() == b""
    assert read_status(tmp_path / STATUS) == 0


@pytest.mark.parametrize("word", [b"", b"no\n", b"go"])
def test_anything_but_the_word_and_its_newline_does_not_start_it(tmp_path: Path, word: bytes) -> None:
    argv, ran, _ = _wrapper(tmp_path)
    read_fd, write_fd = os.pipe()
    gate = LaunchGate()
    gate.close()
    gate.read_fd = read_fd
    wrapper = _run(argv, gate, tmp_path)
    os.write(write_fd, word)
    os.close(write_fd)
    assert wrapper.wait(10) == LAUNCH_FAILED_STATUS
    assert not ran.exists()


def test_a_gate_closes_its_ends_once(tmp_path: Path) -> None:
    gate = LaunchGate()
    ends = [gate.read_fd, gate._write_fd]
    gate.open()
    gate.open()
    gate.close()
    for fd in ends:
        with pytest.raises(OSError):
            os.fstat(fd)
