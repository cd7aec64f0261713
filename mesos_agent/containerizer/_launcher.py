"""Starting a container's main process (and commands run in it), and adopting a recorded one after a restart.

``Launcher`` opens the task's output files, builds the wrapper's argv and spawns it: with ``posix_spawn``
watched through a pidfd where the host allows (``fast_spawn``), else through
``asyncio.create_subprocess_exec``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import pwd
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from . import _runtime
from ._cgroupfs import read_pids
from ._offload import off_loop, remove_cgroups_of
from ._process import (
    AdoptedProcess,
    AsyncioProcess,
    ExecProcess,
    ExitedProcess,
    PidfdProcess,
    PolledProcess,
    TaskProcess,
    kill_and_reap,
    native_spawn,
    pidfd_supported,
    spawn_asyncio,
    spawn_off_loop,
    spawn_posix,
)
from ._procfs import pid_namespace_init, process_table, start_time, tree_members
from ._types import ContainerizerError, LaunchError, LaunchSpec
from ._wrapper import LAUNCH_GO, wrapper_argv
from .isolators import LaunchInfo

if TYPE_CHECKING:
    from ._container import Container

log = structlog.get_logger(__name__)

# How long exec_in_container waits for a just launched container's pid namespace to have its init.
NAMESPACE_INIT_WAIT = 5.0

_OUT_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC


class LaunchGate:
    """The pipe a checkpointed launch's wrapper waits on before it starts the task (see ``_wrapper``): the read
    end becomes the wrapper's stdin; ``open`` writes ``LAUNCH_GO`` once the launch record is written. Closed
    without it (the launch failed, or the agent died: the kernel closes the write end), the wrapper exits
    without starting the task. Both ends are close-on-exec: no other child holds the write end open."""

    def __init__(self) -> None:
        self.read_fd, self._write_fd = os.pipe2(os.O_CLOEXEC)

    def spawned(self) -> None:
        """The wrapper has its copy of the read end: the agent's goes."""
        if self.read_fd >= 0:
            os.close(self.read_fd)
            self.read_fd = -1

    def open(self) -> None:
        """Let the task start (a wrapper already gone: nothing to tell)."""
        if self._write_fd >= 0:
            with contextlib.suppress(BrokenPipeError):
                os.write(self._write_fd, LAUNCH_GO)  # a few bytes into an empty pipe: never blocks
        self.close()

    def close(self) -> None:
        self.spawned()
        if self._write_fd >= 0:
            os.close(self._write_fd)
            self._write_fd = -1


class Launcher:
    """Spawns wrappers; ``fast_spawn`` turns itself off where this libc lacks POSIX_SPAWN_SETSID."""

    def __init__(self) -> None:
        self.fast_spawn = pidfd_supported()
        self._users: dict[str, tuple[int, int]] = {}  # user name -> (uid, gid)

    def user_prefix(self, user: str | None) -> list[str]:
        """The setpriv argv that runs a command as user ([] for the agent's own user); LaunchError if it cannot."""
        if user is None:
            return []
        ids = self._users.get(user)
        if ids is None:
            try:
                entry = pwd.getpwnam(user)
            except KeyError:
                raise LaunchError(f"unknown user {user!r}") from None
            ids = self._users[user] = (entry.pw_uid, entry.pw_gid)
        uid, gid = ids
        if uid == os.geteuid():
            return []
        setpriv = _setpriv()
        if setpriv is None:
            raise LaunchError(f"cannot run as user {user!r}: setpriv (util-linux) is not installed")
        return [setpriv, f"--reuid={uid}", f"--regid={gid}", "--init-groups", "--"]

    async def start(
        self,
        spec: LaunchSpec,
        prefix: list[str],
        prepare: Callable[[], LaunchInfo],
        *,
        status_file: str | None,
        gate: LaunchGate | None,
    ) -> tuple[LaunchInfo, TaskProcess]:
        """``prepare`` the launch (cgroups, limits) and spawn its wrapper; nothing is left on a failure. Where the
        GIL-free spawn is available both run in a worker thread, in one go (making cgroups and a spawn block, the
        spawn until the child execs), while the event loop goes on with the agent's messages."""
        spawn = native_spawn() if self.fast_spawn else None
        if spawn is not None:
            stdin = gate.read_fd if gate is not None and status_file is not None else None
            work = functools.partial(
                self.prepare_and_spawn, prepare, spec, prefix, spawn, status_file=status_file, stdin=stdin
            )
            launch, pid = await off_loop(work, undo=_undo_spawned)
            return launch, watch_child(pid, kill_group_on_exit=not launch.cgroup_paths)
        launch = prepare()
        try:
            proc = await self.spawn_task(
                spec,
                launch.env,
                launch.cgroup_paths,
                prefix,
                status_file=status_file,
                unshare=launch.unshare,
                rlimits=launch.rlimits,
                gate=gate,
            )
        except BaseException:
            remove_cgroups_of(launch)
            raise
        return launch, proc

    async def spawn_task(
        self,
        spec: LaunchSpec,
        env: dict[str, str],
        paths: list[Path],
        prefix: list[str],
        *,
        status_file: str | None,
        unshare: str | None,
        rlimits: list[str],
        gate: LaunchGate | None = None,
    ) -> TaskProcess:
        """Start the launch wrapper of spec, its output to spec's stdout / stderr files (LaunchError if not);
        with a status_file, its stdin is gate's read end (it waits for ``gate.open()`` to start the task)."""
        if status_file is not None and gate is None:
            raise LaunchError(f"{spec.container_id}: a checkpointed launch needs a LaunchGate")
        stdin = gate.read_fd if gate is not None and status_file is not None else None
        out, err = _open_outputs(spec)
        try:
            if self.fast_spawn:
                argv = wrapper_argv(
                    spec, paths, prefix, cd=True, status_file=status_file, unshare=unshare, rlimits=rlimits
                )
                try:
                    pid = spawn_posix(argv, env, out, err, stdin)
                except NotImplementedError:  # no POSIX_SPAWN_SETSID in this libc
                    self.fast_spawn = False
                else:
                    return watch_child(pid, kill_group_on_exit=not paths)
            argv = wrapper_argv(
                spec, paths, prefix, cd=False, status_file=status_file, unshare=unshare, rlimits=rlimits
            )
            return AsyncioProcess(await spawn_asyncio(argv, env, spec.cwd, out, err, stdin))
        except OSError as e:
            raise LaunchError(f"{spec.container_id}: cannot start {spec.argv[0]!r}: {e}") from e
        finally:
            os.close(err)
            os.close(out)

    @staticmethod
    def prepare_and_spawn(
        prepare: Callable[[], LaunchInfo],
        spec: LaunchSpec,
        prefix: list[str],
        spawn: Callable[[list[str], dict[str, str], int, int, int | None], int],
        *,
        status_file: str | None,
        stdin: int | None,
    ) -> tuple[LaunchInfo, int]:
        """The blocking part of a launch in one go, for a worker thread (``_offload``): ``prepare`` (the cgroups
        and the isolators' limits), the output files, the wrapper spawned with ``spawn`` (``_native_spawn``: the
        GIL released meanwhile). Returns what prepare gave and the wrapper's pid; nothing is left on a failure."""
        launch = prepare()
        try:
            out, err = _open_outputs(spec)
            try:
                argv = wrapper_argv(
                    spec,
                    launch.cgroup_paths,
                    prefix,
                    cd=True,
                    status_file=status_file,
                    unshare=launch.unshare,
                    rlimits=launch.rlimits,
                )
                try:
                    return launch, spawn(argv, launch.env, out, err, stdin)
                except OSError as e:
                    raise LaunchError(f"{spec.container_id}: cannot start {spec.argv[0]!r}: {e}") from e
            finally:
                os.close(err)
                os.close(out)
        except BaseException:
            remove_cgroups_of(launch)
            raise

    async def spawn_exec(
        self,
        container_id: str,
        command: str,
        wrapper: list[str],
        env: dict[str, str],
        cwd: str,
        outputs: tuple[int | None, int | None],
    ) -> ExecProcess:
        """Start the wrapper of a command run in a container, in its own session; stdin /dev/null, so are the
        outputs (stdout, stderr) not given."""
        stdout, stderr = outputs
        null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC) if stdout is None or stderr is None else -1
        try:
            out = stdout if stdout is not None else null
            err = stderr if stderr is not None else null
            if self.fast_spawn:
                try:
                    pid = await spawn_off_loop(wrapper, env, out, err)
                except NotImplementedError:
                    self.fast_spawn = False
                else:
                    return ExecProcess(watch_child(pid, kill_group_on_exit=True))
            return ExecProcess(AsyncioProcess(await spawn_asyncio(wrapper, env, Path(cwd), out, err)))
        except OSError as e:
            raise ContainerizerError(f"container {container_id!r}: cannot start {command!r}: {e}") from e
        finally:
            if null >= 0:
                os.close(null)

    def adopt(self, record: _runtime.LaunchRecord, *, alive_possible: bool) -> TaskProcess:
        """A watcher for a recorded wrapper process, or an ExitedProcess when it is gone (or its pid reused)."""
        if not alive_possible:
            return ExitedProcess(record.pid)
        kill_group = not record.cgroups
        if self.fast_spawn:
            try:
                fd = os.pidfd_open(record.pid)
            except ProcessLookupError:
                return ExitedProcess(record.pid)
            # Checked after opening the pidfd: if the start time matches now, the pidfd is that process's.
            if not record.started(start_time(record.pid)):
                os.close(fd)
                log.warning("containerizer.pid_reused", container_id=record.container_id, pid=record.pid)
                return ExitedProcess(record.pid)
            try:
                return AdoptedProcess(record.pid, fd, asyncio.get_running_loop(), kill_group_on_exit=kill_group)
            except BaseException:
                os.close(fd)
                raise
        if not record.started(start_time(record.pid)):
            return ExitedProcess(record.pid)
        return PolledProcess(record.pid, record.start_time, record.start_time_max, kill_group_on_exit=kill_group)


def _undo_spawned(done: tuple[LaunchInfo, int]) -> None:
    """A launch cancelled while its blocking part ran: its wrapper killed and reaped, its cgroups removed."""
    launch, pid = done
    kill_and_reap(pid)
    remove_cgroups_of(launch)


def _open_outputs(spec: LaunchSpec) -> tuple[int, int]:
    """The task's stdout and stderr files, opened for the wrapper (LaunchError if they cannot be)."""
    try:
        out = os.open(spec.stdout_path, _OUT_FLAGS, 0o644)
    except OSError as e:
        raise LaunchError(f"cannot open {spec.stdout_path}: {e.strerror}") from e
    try:
        err = os.open(spec.stderr_path, _OUT_FLAGS, 0o644)
    except OSError as e:
        os.close(out)
        raise LaunchError(f"cannot open {spec.stderr_path}: {e.strerror}") from e
    return out, err


@functools.cache
def _setpriv() -> str | None:
    """Where setpriv(1) is (looked up once: a PATH walk per launch cost an agent 4 % of its loop)."""
    return shutil.which("setpriv") or next(
        (path for path in ("/usr/bin/setpriv", "/bin/setpriv") if os.path.exists(path)), None
    )


def abandon(proc: TaskProcess) -> None:
    """Kill a just-spawned main process that will not become a Container (and reap it where it is ours)."""
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, 9)
    proc.close()
    if isinstance(proc, PidfdProcess):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(proc.pid, 0)


def watch_child(pid: int, *, kill_group_on_exit: bool) -> PidfdProcess:
    """Watch a child just spawned through a pidfd (killed and reaped if that fails: never left unobserved)."""
    try:
        return PidfdProcess(pid, asyncio.get_running_loop(), kill_group_on_exit=kill_group_on_exit)
    except BaseException:
        with contextlib.suppress(OSError):
            os.killpg(pid, 9)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        raise


async def namespace_init(container: Container) -> int:
    """The init of the container's pid namespace (waiting a little for it: a container just launched may not
    have forked it yet); ContainerizerError when there is none."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + NAMESPACE_INIT_WAIT
    while True:
        if container._procs_file:
            members = read_pids(container._procs_file)
        else:
            members = sorted(tree_members(await asyncio.to_thread(process_table), container.pid))
        target = pid_namespace_init(members)
        if target is not None:
            return target
        if container.done or container._exited or loop.time() > deadline:
            raise ContainerizerError(f"container {container.container_id!r} has no process in its pid namespace")
        await asyncio.sleep(0.01)
