"""One launched task: its main process, its cgroups and its end."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from . import _runtime
from ._cgroupfs import read_pids, rmdir_tree, signal_tree, write_file
from ._cgroups import Backend
from ._names import DISK, MEMORY, MiB
from ._process import ExecProcess, ExitedProcess, TaskProcess
from ._types import ContainerizerError, LaunchSpec, Limitation, Termination
from ._wrapper import LAUNCH_FAILED_STATUS, WRAPPER_MARK
from .isolators import CgroupIsolator, Isolator, process_tree_usage

log = structlog.get_logger(__name__)

__all__ = ["DISK", "LAUNCH_FAILED_STATUS", "MEMORY", "WRAPPER_MARK", "Container", "MiB", "Start"]

_CLEANUP_TIMEOUT = 10.0

#: How a Container starts its background work (its reaper, a kill for a limit reached): the containerizer's
#: owned tasks, cancelled on its shutdown.
Start = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None]"]


class Container:
    """A running (or finished) task.

    ``wait()`` resolves once the main process has exited and every other
    process left in the container has been killed and its cgroups removed.

    ``pid`` is the container's main process: the task itself, or for a
    checkpointed launch the launch wrapper whose child the task is.
    ``checkpointed`` containers can be recovered by a later agent process;
    ``recovered`` is true for a container this Containerizer re-adopted
    (``Containerizer.recover``) rather than launched.  ``pid_namespace``:
    the task runs in its own pid and mount namespaces.

    ``exec()`` runs a short command inside the container (see
    ``Containerizer.exec_in_container``).
    """

    container_id: str
    pid: int
    cgroup_paths: list[Path]
    checkpointed: bool
    recovered: bool
    pid_namespace: bool

    def __init__(
        self,
        spec: LaunchSpec,
        proc: TaskProcess,
        paths: list[Path],
        backend: Backend | None,
        on_done: Callable[[Container], None],
        *,
        start: Start,
        isolators: Sequence[Isolator] = (),
        status_file: str | None = None,
        wrapped: bool = False,
        recovered: bool = False,
        env: dict[str, str] | None = None,
        pid_namespace: bool = False,
        fsize_limited: bool = False,
    ) -> None:
        self.container_id = spec.container_id
        self.pid = proc.pid
        self.cgroup_paths = paths
        self.checkpointed = status_file is not None
        self.recovered = recovered
        self.pid_namespace = pid_namespace
        self._spec = spec
        # The isolators of this container: the cgroup ones (whose figures come before the hierarchy's) and the rest.
        self._cgroup_isolators = [i for i in isolators if isinstance(i, CgroupIsolator)] if paths else []
        self._other_isolators = [i for i in isolators if not isinstance(i, CgroupIsolator)]
        self._isolators = [*self._cgroup_isolators, *self._other_isolators]
        # The task's environment as launched (a recovered container's is not kept: {}).
        self._env = env if env is not None else dict(spec.env)
        # RLIMIT_FSIZE is the disk quota: a main process killed by SIGXFSZ went over it.
        self._fsize_limited = fsize_limited
        # Set by the Containerizer: how exec() runs a command in this container.
        self._exec_in: Callable[..., Awaitable[ExecProcess]] | None = None
        self._proc = proc
        self._backend = backend if paths else None
        self._on_done = on_done
        self._start = start
        # Checkpointed: the wrapper records the task's status there; it forwards signals itself, so the
        # containerizer leaves it out when signalling the task (each process gets a signal once).
        self._status_file = status_file
        # The main process reports a shell status: 128+N means killed by signal N (checkpoint, pid namespace).
        self._wrapped = wrapped or status_file is not None
        self._procs_file = f"{paths[0]}/cgroup.procs" if paths else ""
        self._kill_file = f"{paths[0]}/cgroup.kill" if paths and backend and backend.has_kill_file else ""
        self._exited = isinstance(proc, ExitedProcess)
        self._sigkill_sent = False
        # The last signal sent to the main process itself (an adopted wrapper's status may then be unknown).
        self._main_signalled: int | None = None
        self._limitation: Limitation | None = None
        self._kill_task: asyncio.Task[None] | None = None
        self._done: asyncio.Future[Termination] = asyncio.get_running_loop().create_future()
        self._reaper = start(self._reap(), f"container-reaper-{self.container_id}")

    def __repr__(self) -> str:
        return f"<Container {self.container_id} pid={self.pid} done={self._done.done()}>"

    @property
    def done(self) -> bool:
        return self._done.done()

    @property
    def spec(self) -> LaunchSpec:
        """What was launched (for a recovered container: what its launch record kept)."""
        return self._spec

    @property
    def sigkill_sent(self) -> bool:
        return self._sigkill_sent

    @property
    def isolators(self) -> list[Isolator]:
        """The isolators that prepared, watch and measure this container."""
        return self._isolators

    @property
    def watchable(self) -> bool:
        """Running, and not already being killed for a limit: what the isolators' watches look at."""
        return not self._exited and self._limitation is None and not self._done.done()

    # ------------------------------------------------------------------ public

    async def wait(self) -> Termination:
        """The container's Termination, once it is completely over (idempotent)."""
        return await asyncio.shield(self._done)

    async def kill(self, grace_period: float) -> None:
        """SIGTERM everything, give it grace_period seconds, then SIGKILL; returns when dead.

        A grace period of 0 (or less) skips SIGTERM.
        """
        if self._done.done():
            return
        if grace_period > 0:
            self._signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(grace_period):  # not wait_for: see scheduler_sdk._daemon.tasks
                    await asyncio.shield(self._done)
                return
            except TimeoutError:
                log.info("container.kill_escalated", container_id=self.container_id, grace=grace_period)
        self._sigkill_sent = True
        self._signal(signal.SIGKILL)
        await asyncio.shield(self._done)

    async def exec(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdout: int | None = None,
        stderr: int | None = None,
    ) -> ExecProcess:
        """Start argv inside this container: ``Containerizer.exec_in_container`` (ContainerizerError if not)."""
        if self._exec_in is None:
            raise ContainerizerError(f"container {self.container_id!r} cannot run commands (no containerizer)")
        return await self._exec_in(self, argv, env=env, stdout=stdout, stderr=stderr)

    def stats(self) -> dict[str, float]:
        """Best-effort usage figures with Mesos ResourceStatistics names; {} once finished.

        The cgroup isolators' figures first, then the hierarchy's own, then the other isolators'; the first
        to tell a figure wins.  What none tells (cpu time, resident memory) is read from /proc; the limits
        not read back from a cgroup are the spec's.
        """
        if self._done.done():
            return {}
        figures: dict[str, float] = {}
        self._add_usage(self._cgroup_isolators, figures)
        if self._backend is not None:
            with contextlib.suppress(OSError):
                self._backend.add_usage(self.cgroup_paths, figures)
        self._add_usage(self._other_isolators, figures)
        if "cpus_user_time_secs" not in figures or "mem_rss_bytes" not in figures:
            for key, value in process_tree_usage(self.pid).items():
                figures.setdefault(key, value)
        if self._spec.cpus is not None:
            figures.setdefault("cpus_limit", float(self._spec.cpus))
        if self._spec.mem_mb is not None:
            figures.setdefault("mem_limit_bytes", float(int(self._spec.mem_mb * MiB)))
        if self._spec.disk_mb is not None:
            figures["disk_limit_bytes"] = float(int(self._spec.disk_mb * MiB))
        return figures

    # ------------------------------------------------------------------ internals

    def _add_usage(self, isolators: Sequence[Isolator], figures: dict[str, float]) -> None:
        for isolator in isolators:
            with contextlib.suppress(OSError):
                for key, value in isolator.usage(self).items():
                    figures.setdefault(key, value)

    def _signal(self, sig: int) -> None:
        """Deliver sig once to each process of the container.

        Once only: a second SIGTERM landing while a task runs its handler (or
        has already restored the default action on the way out) would turn a
        clean exit into a death by signal.
        """
        spare_wrapper = self._status_file is not None and sig != signal.SIGKILL
        if not self._procs_file:
            # posix: the task's process group (its session leader's pid is
            # the group id, and cannot name another group while unreaped).
            if self._exited or self._proc.returncode is not None or getattr(self._proc, "over", False):
                return
            if spare_wrapper:
                # The checkpoint wrapper forwards it to the rest of its group.
                self._proc.send_signal(sig)
                self._main_signalled = sig
                return
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)
            return
        if sig == signal.SIGKILL and self._kill_file:
            with contextlib.suppress(OSError):
                write_file(self._kill_file, "1")
        pids = read_pids(self._procs_file)
        if self.pid not in pids:
            # Not in its cgroups yet (the wrapper is still joining them) or already gone.
            self._proc.send_signal(sig)
            self._main_signalled = sig
        for pid in pids:
            if spare_wrapper and pid == self.pid:
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    def _limit_reached(self, limitation: Limitation) -> None:
        """Kill the container for reaching a limit (once); wait() reports the limitation."""
        if self._limitation is not None or self._exited or self._done.done():
            return
        self._limitation = limitation
        log.warning(
            "container.limit_exceeded",
            container_id=self.container_id,
            limitation=limitation.resource,
            message=limitation.message,
        )
        self._kill_task = self._start(self.kill(0.0), f"container-limit-kill-{self.container_id}")

    def _detach(self) -> None:
        """Stop watching the container, leaving it running (its wait() is cancelled)."""
        self._proc.close()
        if not self._reaper.done():
            self._reaper.cancel()

    async def _reap(self) -> None:
        termination: Termination | None = None
        try:
            returncode = self._returncode(await self._proc.wait())
            self._exited = True
            if self.cgroup_paths and read_pids(self._procs_file):
                # Leftover children of the task: Mesos kills them with the task.
                await self._kill_all()
            elif (
                not self.cgroup_paths
                and not self._proc.kill_group_on_exit
                and not isinstance(self._proc, ExitedProcess)
            ):
                # Leftovers of a posix task: its process group (best effort once reaped).
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)
            oom = False
            for isolator in self._isolators:
                revealed = await isolator.ended(self, returncode)
                oom = oom or (revealed is not None and revealed.resource == MEMORY)
            if self.cgroup_paths:
                await self._remove_cgroups()
            termination = self._termination(returncode, oom)
        except asyncio.CancelledError:
            self._cleanup_isolators()
            self._done.cancel()
            self._on_done(self)
            raise
        except Exception as e:  # keep the future's promise whatever happens
            log.exception("container.reap_failed", container_id=self.container_id)
            termination = Termination(None, None, False, f"containerizer error: {e}")
        self._cleanup_isolators()
        self._on_done(self)
        if not self._done.done():
            self._done.set_result(termination)

    def _returncode(self, waited: int | None) -> int | None:
        """The task's returncode from what its main process's wait gave (a wrapper's shell status decoded)."""
        status = _runtime.read_status(self._status_file) if self._status_file else None
        if status is not None:
            return _runtime.decode_status(status)
        if waited is not None and waited > 0 and self._wrapped:
            return _runtime.decode_status(waited)
        if waited is None and self._sigkill_sent:
            return -signal.SIGKILL
        if waited is None and self._main_signalled is not None and self._status_file is not None:
            # A wrapper signalled before it set its traps (still joining its cgroups) dies of it unrecorded.
            return -self._main_signalled
        return waited

    def _cleanup_isolators(self) -> None:
        for isolator in self._isolators:
            try:
                isolator.cleanup(self)
            except Exception:  # an isolator's bug must not keep the container from ending
                log.exception(
                    "container.isolator_cleanup_failed", container_id=self.container_id, isolator=isolator.name
                )

    async def _kill_all(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _CLEANUP_TIMEOUT
        delay = 0.001
        while True:
            if self._kill_file:
                with contextlib.suppress(OSError):
                    write_file(self._kill_file, "1")
            if sum(signal_tree(path, signal.SIGKILL) for path in self.cgroup_paths) == 0:
                return
            if loop.time() > deadline:
                log.error("container.unkillable", container_id=self.container_id)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    async def _remove_cgroups(self) -> None:
        pending = _rmdir_each(self.cgroup_paths)
        if not pending:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _CLEANUP_TIMEOUT
        delay = 0.001
        while pending:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
            for path in list(pending):
                if self._kill_file:
                    with contextlib.suppress(OSError):
                        write_file(self._kill_file, "1")
                signal_tree(path, signal.SIGKILL)
                try:
                    rmdir_tree(path)
                    pending.remove(path)
                except OSError:
                    pass
            if pending and loop.time() > deadline:
                log.error("container.cgroup_leaked", container_id=self.container_id, paths=pending)
                return

    def _termination(self, returncode: int | None, oom: bool) -> Termination:
        exit_code, signal_number = (
            (None, None) if returncode is None else (returncode, None) if returncode >= 0 else (None, -returncode)
        )
        limitation = self._limitation
        if oom or (limitation is not None and limitation.resource == MEMORY):
            mem_mb = self._spec.mem_mb
            message = f"memory limit {mem_mb:g} MiB exceeded" if mem_mb is not None else "killed by the OOM killer"
            if limitation is not None and limitation.resource == MEMORY:
                message = limitation.message
            return Termination(exit_code, signal_number, True, message, MEMORY)
        if limitation is not None:
            return Termination(exit_code, signal_number, False, limitation.message, limitation.resource)
        if self._fsize_limited and self._spec.disk_mb is not None:
            if signal_number == signal.SIGXFSZ:
                how = "killed by SIGXFSZ"
            elif returncode == 128 + signal.SIGXFSZ:  # as a shell reports its command killed by SIGXFSZ
                how = f"a process was killed by SIGXFSZ: exited with status {returncode}"
            else:
                how = ""
            if how:
                message = f"disk limit {self._spec.disk_mb:g} MiB exceeded (a file grew past it: {how})"
                return Termination(exit_code, signal_number, False, message, DISK)
        if returncode is None:
            message = (
                "exit status unknown: the task's launch wrapper ended while the agent was away without recording it"
            )
        elif returncode == LAUNCH_FAILED_STATUS and (failure := self._wrapper_failure()):
            message = f"launch failed: {failure}"
        elif signal_number is not None:
            message = f"killed by signal {signal_number}"
        else:
            message = f"exited with status {returncode}"
        return Termination(exit_code=exit_code, signal=signal_number, oom_killed=False, message=message)

    def _wrapper_failure(self) -> str:
        """The launch wrapper's complaint at the end of stderr, if it failed."""
        try:
            with open(self._spec.stderr_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 4096))
                tail = f.read().decode(errors="replace").splitlines()
        except OSError:
            return ""
        if tail and tail[-1].startswith(WRAPPER_MARK):
            return tail[-1][len(WRAPPER_MARK) :].strip()
        return ""


def _rmdir_each(paths: Sequence[Path]) -> list[Path]:
    """Remove each (empty) cgroup dir; returns those still busy."""
    pending: list[Path] = []
    for path in paths:
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            if e.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                log.error("container.cgroup_rmdir_failed", path=str(path), error=e.strerror)
                continue
            pending.append(path)
    return pending
