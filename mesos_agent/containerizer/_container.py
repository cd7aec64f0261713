"""One launched task: its main process, its cgroups and its end."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

import psutil
import structlog

from . import _runtime
from ._cgroups import Backend, read_counter, read_pids, rmdir_tree, signal_tree, write_file
from ._process import ExecProcess, ExitedProcess, TaskProcess
from ._types import ContainerizerError, LaunchSpec, Termination

log = structlog.get_logger(__name__)

#: Exit status of the launch wrapper when it cannot set the task up (enter
#: its cgroups, change to its sandbox); the task's command never ran then.
LAUNCH_FAILED_STATUS = 125
#: Prefix of the line the wrapper writes to the task's stderr in that case.
WRAPPER_MARK = "aiomesos-containerizer:"

_CLEANUP_TIMEOUT = 10.0
MiB = 1024 * 1024
MEMORY = "memory"
DISK = "disk"


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
        status_file: str | None = None,
        wrapped: bool = False,
        recovered: bool = False,
        posix_memory: bool = False,
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
        # The task's environment as launched (a recovered container's is not kept: {}).
        self._env = env if env is not None else dict(spec.env)
        # RLIMIT_FSIZE is the disk quota: a main process killed by SIGXFSZ went over it.
        self._fsize_limited = fsize_limited
        # Set by the Containerizer: how exec() runs a command in this container.
        self._exec_in: Callable[..., Awaitable[ExecProcess]] | None = None
        self._proc = proc
        self._backend = backend
        self._on_done = on_done
        # Checkpointed: the wrapper records the task's status there; it forwards signals itself, so the
        # containerizer leaves it out when signalling the task (each process gets a signal once).
        self._status_file = status_file
        # The main process reports a shell status: 128+N means killed by signal N (checkpoint, pid namespace).
        self._wrapped = wrapped or status_file is not None
        self._procs_file = f"{paths[0]}/cgroup.procs" if paths else ""
        self._kill_file = f"{paths[0]}/cgroup.kill" if paths and backend and backend.has_kill_file else ""
        self._oom_file = backend.oom_file(paths) if paths and backend else None
        # Without a memory cgroup, the Containerizer's poller enforces mem_mb on the resident memory.
        self._posix_memory = posix_memory and spec.mem_mb is not None and self._oom_file is None
        self._exited = isinstance(proc, ExitedProcess)
        self._oom_seen = False
        self._sigkill_sent = False
        # The last signal sent to the main process itself (an adopted wrapper's status may then be unknown).
        self._main_signalled: int | None = None
        self._limitation: tuple[str, str] | None = None
        self.disk_used_bytes: int | None = None
        self._kill_task: asyncio.Task[None] | None = None
        loop = asyncio.get_running_loop()
        self._done: asyncio.Future[Termination] = loop.create_future()
        self._reaper = loop.create_task(self._reap(), name=f"container-reaper-{self.container_id}")

    def __repr__(self) -> str:
        return f"<Container {self.container_id} pid={self.pid} done={self._done.done()}>"

    @property
    def done(self) -> bool:
        return self._done.done()

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
                await asyncio.wait_for(asyncio.shield(self._done), grace_period)
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
        """Best-effort usage figures with Mesos ResourceStatistics names; {} once finished."""
        if self._done.done():
            return {}
        out: dict[str, float] = {}
        if self._backend is not None and self.cgroup_paths:
            try:
                out = self._backend.stats(self.cgroup_paths)
            except OSError:
                out = {}
        if "cpus_user_time_secs" not in out or "mem_rss_bytes" not in out:
            for key, value in _psutil_stats(self.pid).items():
                out.setdefault(key, value)
        if self._spec.cpus is not None:
            out.setdefault("cpus_limit", float(self._spec.cpus))
        if self._spec.mem_mb is not None:
            out.setdefault("mem_limit_bytes", float(int(self._spec.mem_mb * MiB)))
        if self.disk_used_bytes is not None:
            out["disk_used_bytes"] = float(self.disk_used_bytes)
        if self._spec.disk_mb is not None:
            out["disk_limit_bytes"] = float(int(self._spec.disk_mb * MiB))
        return out

    # ------------------------------------------------------------------ internals

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

    def _exceeded(self, limitation: str, message: str) -> None:
        """Kill the container for exceeding a limit (once); wait() reports the limitation."""
        if self._limitation is not None or self._exited or self._done.done():
            return
        self._limitation = (limitation, message)
        log.warning("container.limit_exceeded", container_id=self.container_id, limitation=limitation, message=message)
        self._kill_task = asyncio.ensure_future(self.kill(0.0))

    def _detach(self) -> None:
        """Stop watching the container, leaving it running (its wait() is cancelled)."""
        self._proc.close()
        if not self._reaper.done():
            self._reaper.cancel()

    def _watch_oom(self) -> bool:
        """Called by the Containerizer's poller; returns whether to keep watching."""
        if self._exited or self._oom_seen or self._oom_file is None or self._done.done():
            return False
        if read_counter(self._oom_file, b"oom_kill") > 0:
            self._oom_seen = True
            log.warning("container.oom", container_id=self.container_id, mem_mb=self._spec.mem_mb)
            self._kill_task = asyncio.ensure_future(self.kill(0.0))
            return False
        return True

    def _read_oom(self) -> bool:
        return self._oom_file is not None and read_counter(self._oom_file, b"oom_kill") > 0

    async def _reap(self) -> None:
        term: Termination | None = None
        try:
            rc = await self._proc.wait()
            self._exited = True
            status = _runtime.read_status(self._status_file) if self._status_file else None
            if status is not None:
                rc = _runtime.decode_status(status)
            elif rc is not None and rc > 0 and self._wrapped:
                rc = _runtime.decode_status(rc)
            elif rc is None and self._sigkill_sent:
                rc = -signal.SIGKILL
            elif rc is None and self._main_signalled is not None and self._status_file is not None:
                # A wrapper signalled before it set its traps (still joining its cgroups) dies of it unrecorded.
                rc = -self._main_signalled
            oom = False
            if self.cgroup_paths:
                if read_pids(self._procs_file):
                    # Leftover children of the task: Mesos kills them with the task.
                    await self._kill_all()
                oom = self._oom_seen or self._read_oom()
                if not oom and rc == -signal.SIGKILL and not self._sigkill_sent and self._oom_file:
                    # The kernel bumps the counter right after signalling its victim.
                    for _ in range(10):
                        await asyncio.sleep(0.01)
                        if oom := self._read_oom():
                            break
                await self._remove_cgroups()
            elif not self._proc.kill_group_on_exit and not isinstance(self._proc, ExitedProcess):
                # Leftovers of a posix task: its process group (best effort once reaped).
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)
            term = self._termination(rc, oom)
        except asyncio.CancelledError:
            self._done.cancel()
            self._on_done(self)
            raise
        except Exception as e:  # keep the future's promise whatever happens
            log.exception("container.reap_failed", container_id=self.container_id)
            term = Termination(None, None, False, f"containerizer error: {e}")
        self._on_done(self)
        if not self._done.done():
            self._done.set_result(term)

    async def _kill_all(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _CLEANUP_TIMEOUT
        delay = 0.001
        while True:
            if self._kill_file:
                with contextlib.suppress(OSError):
                    write_file(self._kill_file, "1")
            if sum(signal_tree(p, signal.SIGKILL) for p in self.cgroup_paths) == 0:
                return
            if loop.time() > deadline:
                log.error("container.unkillable", container_id=self.container_id)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    async def _remove_cgroups(self) -> None:
        pending: list[Path] = []
        for p in self.cgroup_paths:
            try:
                os.rmdir(p)
            except FileNotFoundError:
                pass
            except OSError as e:
                if e.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                    log.error("container.cgroup_rmdir_failed", path=str(p), error=e.strerror)
                    continue
                pending.append(p)
        if not pending:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _CLEANUP_TIMEOUT
        delay = 0.001
        while pending:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
            for p in list(pending):
                if self._kill_file:
                    with contextlib.suppress(OSError):
                        write_file(self._kill_file, "1")
                signal_tree(p, signal.SIGKILL)
                try:
                    rmdir_tree(p)
                    pending.remove(p)
                except OSError:
                    pass
            if pending and loop.time() > deadline:
                log.error("container.cgroup_leaked", container_id=self.container_id, paths=pending)
                return

    def _termination(self, rc: int | None, oom: bool) -> Termination:
        exit_code, sig = (None, None) if rc is None else (rc, None) if rc >= 0 else (None, -rc)
        limitation = self._limitation[0] if self._limitation else None
        if oom or limitation == MEMORY:
            mem = self._spec.mem_mb
            message = f"memory limit {mem:g} MiB exceeded" if mem is not None else "killed by the OOM killer"
            if limitation == MEMORY and self._limitation is not None:
                message = self._limitation[1]
            return Termination(exit_code, sig, True, message, MEMORY)
        if self._limitation is not None:
            return Termination(exit_code, sig, False, self._limitation[1], self._limitation[0])
        if sig == signal.SIGXFSZ and self._fsize_limited and self._spec.disk_mb is not None:
            message = f"disk limit {self._spec.disk_mb:g} MiB exceeded (a file grew past it: killed by SIGXFSZ)"
            return Termination(exit_code, sig, False, message, DISK)
        if rc is None:
            message = (
                "exit status unknown: the task's launch wrapper ended while the agent was away without recording it"
            )
        elif rc == LAUNCH_FAILED_STATUS and (failure := self._wrapper_failure()):
            message = f"launch failed: {failure}"
        elif sig is not None:
            message = f"killed by signal {sig}"
        else:
            message = f"exited with status {rc}"
        return Termination(exit_code=exit_code, signal=sig, oom_killed=False, message=message)

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


def _psutil_stats(pid: int) -> dict[str, float]:
    try:
        main = psutil.Process(pid)
        procs = [main, *main.children(recursive=True)]
    except psutil.Error:
        return {}
    user = system = rss = 0.0
    threads = 0
    count = 0
    for p in procs:
        try:
            with p.oneshot():
                times = p.cpu_times()
                mem = p.memory_info()
                nthreads = p.num_threads()
        except psutil.Error:
            continue
        user += times.user
        system += times.system
        rss += mem.rss
        threads += nthreads
        count += 1
    return {
        "cpus_user_time_secs": user,
        "cpus_system_time_secs": system,
        "mem_rss_bytes": rss,
        "processes": float(count),
        "threads": float(threads),
    }
