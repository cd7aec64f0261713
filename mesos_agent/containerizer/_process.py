"""Spawning task processes and learning of their exit, on any event loop.

The fast path spawns with ``os.posix_spawn`` (a vfork-style clone: its cost
does not grow with the agent's size) and watches the child through a pidfd
registered with the loop's reader machinery: no thread per child on the
default asyncio loop, and no per-spawn re-initialisation of the event loop in
the child as uvloop's ``subprocess_exec`` does (about 2.5 ms of agent time
per task).  Where pidfds or ``POSIX_SPAWN_SETSID`` are unavailable,
``asyncio.create_subprocess_exec`` is used instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import structlog

from ._native_spawn import native_spawner
from ._offload import off_loop

log = structlog.get_logger(__name__)

# Reset every catchable signal to its default action in the child: the agent
# ignores some (Python ignores SIGPIPE and SIGXFSZ) and ignoring is inherited.
_DEFAULT_SIGNALS = tuple(sig for sig in signal.valid_signals() if sig not in (signal.SIGKILL, signal.SIGSTOP))


class TaskProcess(Protocol):
    """What a Container needs of its main process."""

    pid: int
    kill_group_on_exit: bool

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int | None:
        """The returncode (negative: killed by that signal); None when it cannot be known (not our child)."""
        ...

    def send_signal(self, sig: int) -> None: ...

    def close(self) -> None:
        """Stop watching the process (it keeps running)."""
        ...


class PidfdProcess:
    """A child process watched through a pidfd on the running loop."""

    def __init__(self, pid: int, loop: asyncio.AbstractEventLoop, kill_group_on_exit: bool = False) -> None:
        self.pid = pid
        # SIGKILL the process group when the main process exits, before reaping it:
        # its zombie still holds the group id, so the kill cannot hit a stranger.
        self.kill_group_on_exit = kill_group_on_exit
        self._loop = loop
        self._returncode: int | None = None
        self._exited: asyncio.Future[int] = loop.create_future()
        self._fd = os.pidfd_open(pid)
        try:
            loop.add_reader(self._fd, self._on_readable)
        except BaseException:
            os.close(self._fd)
            raise

    @property
    def returncode(self) -> int | None:
        return self._returncode

    def _on_readable(self) -> None:
        if self.kill_group_on_exit:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        try:
            wpid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            # Reaped by someone else (a waitpid(-1) somewhere in the agent): status unknown.
            wpid, status = self.pid, 255 << 8
            log.warning("containerizer.child_reaped_elsewhere", pid=self.pid)
        if wpid == 0:
            return
        self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = -1
        self._returncode = os.waitstatus_to_exitcode(status)
        if not self._exited.done():
            self._exited.set_result(self._returncode)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def send_signal(self, sig: int) -> None:
        if self._returncode is None and self._fd >= 0:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._fd, sig)

    def close(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1


class AdoptedProcess:
    """A process this agent process did not start (a recovered container's wrapper), watched through a pidfd.

    Its exit status is not ours to collect (the wrapper records it in the
    container's runtime dir): ``wait()`` gives None, unless the process did
    become our child (this agent process is a child subreaper).
    """

    def __init__(self, pid: int, pidfd: int, loop: asyncio.AbstractEventLoop, kill_group_on_exit: bool = False) -> None:
        self.pid = pid
        self.kill_group_on_exit = kill_group_on_exit
        self._loop = loop
        self._fd = pidfd
        self._over = False
        self._exited: asyncio.Future[int | None] = loop.create_future()
        loop.add_reader(self._fd, self._on_readable)

    @property
    def returncode(self) -> int | None:
        return self._exited.result() if self._exited.done() else None

    @property
    def over(self) -> bool:
        return self._over

    def _on_readable(self) -> None:
        self._over = True
        if self.kill_group_on_exit:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        rc: int | None = None
        try:
            wpid, status = os.waitpid(self.pid, os.WNOHANG)
            if wpid == self.pid:
                rc = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            pass
        self.close()
        if not self._exited.done():
            self._exited.set_result(rc)

    async def wait(self) -> int | None:
        return await asyncio.shield(self._exited)

    def send_signal(self, sig: int) -> None:
        if not self._over and self._fd >= 0:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._fd, sig)

    def close(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1


class PolledProcess:
    """A process this agent process did not start, watched by polling /proc (where pidfds are unavailable)."""

    def __init__(
        self,
        pid: int,
        start_time: int,
        start_time_max: int | None = None,
        interval: float = 0.5,
        kill_group_on_exit: bool = False,
    ) -> None:
        from ._procfs import running

        self.pid = pid
        self.kill_group_on_exit = kill_group_on_exit
        self._start_time = start_time
        self._start_time_max = start_time_max
        self._running = running
        self._over = False
        self._task = asyncio.get_running_loop().create_task(self._poll(interval))

    @property
    def returncode(self) -> int | None:
        return None

    @property
    def over(self) -> bool:
        return self._over

    async def _poll(self, interval: float) -> int | None:
        while self._running(self.pid, self._start_time, self._start_time_max):
            await asyncio.sleep(interval)
        self._over = True
        if self.kill_group_on_exit:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        return None

    async def wait(self) -> int | None:
        return await asyncio.shield(self._task)

    def send_signal(self, sig: int) -> None:
        if not self._over and self._running(self.pid, self._start_time, self._start_time_max):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def close(self) -> None:
        self._task.cancel()


class ExitedProcess:
    """The wrapper of a recovered container, found already gone."""

    kill_group_on_exit = False

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    async def wait(self) -> int | None:
        return None

    def send_signal(self, sig: int) -> None:
        pass

    def close(self) -> None:
        pass


class AsyncioProcess:
    """Adapter over asyncio.subprocess.Process (the fallback path)."""

    kill_group_on_exit = False

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self.pid = proc.pid

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    async def wait(self) -> int:
        return await self._proc.wait()

    def send_signal(self, sig: int) -> None:
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(sig)

    def close(self) -> None:
        pass


class ExecProcess:
    """A command started inside a container (``Containerizer.exec_in_container``).

    It leads its own session and process group: ``kill()`` SIGKILLs the
    whole group (with ``namespaces/pid``: nsenter and the command it forked
    into the task's namespace).  ``wait()`` gives its returncode (negative:
    killed by that signal).  Where it is watched through a pidfd, whatever
    is left of its group is killed as soon as it exits.
    """

    def __init__(self, proc: TaskProcess) -> None:
        self._proc = proc
        self.pid = proc.pid

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    async def wait(self) -> int:
        rc = await self._proc.wait()
        return rc if rc is not None else -signal.SIGKILL

    def kill(self) -> None:
        """SIGKILL the command's process group, leftovers included (a pidfd watcher has killed those already).

        Once the command is reaped its group id stays reserved while any member lives, so the group signalled
        is still the command's."""
        if self._proc.returncode is None or not self._proc.kill_group_on_exit:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)


def pidfd_supported() -> bool:
    needed = (hasattr(os, "pidfd_open"), hasattr(os, "posix_spawn"), hasattr(signal, "pidfd_send_signal"))
    if not all(needed):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


def spawn_posix(argv: list[str], env: dict[str, str], out_fd: int, err_fd: int, in_fd: int | None = None) -> int:
    """posix_spawn argv[0] (an absolute path) in a new session; stdin in_fd, else /dev/null."""
    stdin = (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0) if in_fd is None else (os.POSIX_SPAWN_DUP2, in_fd, 0)
    return os.posix_spawn(
        argv[0],
        argv,
        env,
        file_actions=[
            stdin,
            (os.POSIX_SPAWN_DUP2, out_fd, 1),
            (os.POSIX_SPAWN_DUP2, err_fd, 2),
        ],
        setsid=True,
        setsigmask=(),
        setsigdef=_DEFAULT_SIGNALS,
    )


async def spawn_off_loop(
    argv: list[str], env: dict[str, str], out_fd: int, err_fd: int, in_fd: int | None = None
) -> int:
    """``spawn_posix`` in a worker thread with the GIL released (``_native_spawn``): the event loop goes on while
    the child execs. Where that is not available, ``spawn_posix`` itself. Cancelled meanwhile: the spawn is
    waited for (its file descriptors are the caller's to close) and the child killed and reaped."""
    spawner = native_spawner(_DEFAULT_SIGNALS)
    if spawner is None:
        return spawn_posix(argv, env, out_fd, err_fd, in_fd)
    return await off_loop(spawner.spawn, argv, env, out_fd, err_fd, in_fd, undo=kill_and_reap)


def native_spawn() -> Callable[[list[str], dict[str, str], int, int, int | None], int] | None:
    """``spawn_posix`` with the GIL released (``_native_spawn``), or None where this libc has none."""
    spawner = native_spawner(_DEFAULT_SIGNALS)
    return spawner.spawn if spawner is not None else None


def kill_and_reap(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


async def spawn_asyncio(
    argv: list[str], env: dict[str, str], cwd: Path, out_fd: int, err_fd: int, in_fd: int | None = None
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=subprocess.DEVNULL if in_fd is None else in_fd,
        stdout=out_fd,
        stderr=err_fd,
        cwd=cwd,
        env=env,
        start_new_session=True,
    )
