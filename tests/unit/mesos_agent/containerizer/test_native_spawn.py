"""The GIL-free posix_spawn: what the child gets (session, signals, descriptors), errors, and a cancelled spawn."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import pytest

from mesos_agent.containerizer import _process
from mesos_agent.containerizer._native_spawn import native_spawner

SPAWNER = native_spawner(_process._DEFAULT_SIGNALS)
needs_glibc = pytest.mark.skipif(SPAWNER is None, reason="no glibc >= 2.26 here")


def _wait(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@needs_glibc
def test_the_child_has_its_own_session_default_signals_and_the_given_descriptors(tmp_path: Path) -> None:
    assert SPAWNER is not None
    previous = signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # ignored here (as Python ignores SIGPIPE): not there
    try:
        with open(tmp_path / "out", "wb") as out, open(tmp_path / "err", "wb") as err:
            pid = SPAWNER.spawn(["/bin/cat", "/proc/self/status", "-", "/nonexistent"], {}, out.fileno(), err.fileno())
        assert _wait(pid) == 1  # the missing file
    finally:
        signal.signal(signal.SIGUSR1, previous)
    status = dict(line.split(":", 1) for line in (tmp_path / "out").read_text().splitlines())
    ignored = int(status["SigIgn"], 16)
    assert [sig for sig in _process._DEFAULT_SIGNALS if ignored & (1 << (sig - 1))] == []
    assert int(status["SigBlk"], 16) == 0
    assert status["NSsid"].split() == status["NSpid"].split()  # a session leader (stdin was /dev/null: empty)
    assert "/nonexistent" in (tmp_path / "err").read_text()


@needs_glibc
def test_stdin_from_a_descriptor_and_the_environment_as_given(tmp_path: Path) -> None:
    assert SPAWNER is not None
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    os.write(write_end, b"go\n")
    os.close(write_end)
    script = "import os, sys; print(sys.stdin.read().strip(), os.environ['A_VAR'], sorted(os.environ) == ['A_VAR'])"
    with open(tmp_path / "out", "wb") as out:
        pid = SPAWNER.spawn([sys.executable, "-c", script], {"A_VAR": "é x"}, out.fileno(), out.fileno(), read_end)
    os.close(read_end)
    assert _wait(pid) == 0
    lines = (tmp_path / "out").read_text().split()
    assert lines[0] == "go" and lines[1:3] == ["é", "x"]


@needs_glibc
def test_a_program_that_cannot_run_is_an_os_error() -> None:
    assert SPAWNER is not None
    with pytest.raises(FileNotFoundError):
        SPAWNER.spawn(["/nonexistent/program"], {}, 1, 2)


@needs_glibc
def test_spawning_off_the_loop_lets_the_loop_run() -> None:
    async def main() -> int:
        with tempfile.TemporaryFile() as out:
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0)

            task = asyncio.create_task(ticker())
            pid = await _process.spawn_off_loop(["/bin/sh", "-c", "exit 3"], {}, out.fileno(), out.fileno())
            task.cancel()
            assert ticks >= 1  # the loop ran while the child was spawned
            return _wait(pid)

    assert asyncio.run(main()) == 3


@needs_glibc
def test_a_cancelled_spawn_leaves_no_child() -> None:
    async def main() -> None:
        with tempfile.TemporaryFile() as out:
            spawn = asyncio.create_task(_process.spawn_off_loop(["/bin/sleep", "30"], {}, out.fileno(), out.fileno()))
            await asyncio.sleep(0)  # submitted to the thread
            spawn.cancel()
            with pytest.raises(asyncio.CancelledError):
                await spawn

    asyncio.run(main())
    deadline = time.monotonic() + 5
    with pytest.raises(ChildProcessError):  # reaped already: no child left at all
        while time.monotonic() < deadline:
            os.waitpid(-1, os.WNOHANG)
            time.sleep(0.01)
