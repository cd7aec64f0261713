"""The Containerizer: picks the isolation the host supports and launches tasks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shlex
import shutil
from pathlib import Path, PurePosixPath

import structlog

from . import _cgroups as cg
from ._container import LAUNCH_FAILED_STATUS, WRAPPER_MARK, Container
from ._process import AsyncioProcess, PidfdProcess, TaskProcess, pidfd_supported, spawn_asyncio, spawn_posix
from ._types import LaunchError, LaunchSpec

log = structlog.get_logger(__name__)

POSIX_CPU = "posix/cpu"
POSIX_MEM = "posix/mem"
_POSIX_FOR = {cg.CPU: POSIX_CPU, cg.CPUACCT: POSIX_CPU, cg.MEM: POSIX_MEM}
_ALIASES: dict[str, tuple[str, ...]] = {
    "cgroups/all": cg.CGROUP_ISOLATORS,
    "cgroups/memory": (cg.MEM,),
    "posix": (POSIX_CPU, POSIX_MEM),
}
KNOWN_ISOLATORS: tuple[str, ...] = (*cg.CGROUP_ISOLATORS, POSIX_CPU, POSIX_MEM, *_ALIASES)
_OUT_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC


def _parse_isolation(isolation: str) -> tuple[list[str], list[str], bool]:
    """(cgroup isolators wanted, posix isolators wanted, auto?)."""
    text = isolation.strip()
    if text == "auto":
        return list(cg.CGROUP_ISOLATORS), [], True
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError(f"isolation {isolation!r} names no isolator; use 'auto', 'posix' or a comma list")
    unknown = [n for n in names if n not in KNOWN_ISOLATORS]
    if unknown:
        raise ValueError(
            f"unknown isolator(s) {', '.join(map(repr, unknown))} in isolation={isolation!r}; "
            f"known: auto, {', '.join(KNOWN_ISOLATORS)}"
        )
    expanded: list[str] = []
    for n in names:
        expanded.extend(_ALIASES.get(n, (n,)))
    cgroups = [i for i in cg.CGROUP_ISOLATORS if i in expanded]
    posix = [i for i in (POSIX_CPU, POSIX_MEM) if i in expanded]
    return cgroups, posix, False


def _check_container_id(cid: str) -> None:
    if not cid or cid in (".", "..") or any(c in cid for c in "/\0\n"):
        raise LaunchError(f"container id {cid!r} is not usable as a path component")


class Containerizer:
    """Launches tasks in per-container cgroups (v1 or v2), or as plain processes.

    ``root`` names this agent's hierarchy (e.g. ``"aiomesos/agent-<id>"``);
    container ``c`` lives in ``<controller mount>/<root>/c``.  ``isolation``
    is ``"auto"`` (every cgroup isolator the host supports), ``"posix"``, or
    a comma list of ``cgroups/cpu``, ``cgroups/cpuacct``, ``cgroups/mem``,
    ``cgroups/pids``, ``posix/cpu``, ``posix/mem`` (``cgroups/all`` and
    ``posix`` are shorthands).  Unknown names raise ValueError.

    When the cgroup isolators cannot be used (not root, read-only or missing
    hierarchies), this falls back to posix isolation and sets ``warning`` to a
    one-line explanation; requested cgroup isolators the host lacks are
    replaced by their posix counterpart the same way.
    """

    isolators: list[str]
    cgroups_version: int | None
    warning: str | None

    def __init__(
        self,
        root: str,
        *,
        isolation: str = "auto",
        cgroups_root_v1: Path = Path("/sys/fs/cgroup"),
        enable_cfs: bool = True,
        max_task_processes: int = 4096,
        memory_poll_interval: float = 0.5,
    ) -> None:
        rel = PurePosixPath(root.strip("/"))
        if not rel.parts or any(p in (".", "..") for p in rel.parts) or "\n" in root or "\0" in root:
            raise ValueError(f"cgroup root {root!r} must be a relative path like 'aiomesos/agent-1'")
        if max_task_processes < 1:
            raise ValueError("max_task_processes must be at least 1")
        self.root = str(rel)
        self._memory_poll_interval = memory_poll_interval
        self._containers: dict[str, Container] = {}
        self._reserved: set[str] = set()
        self._poller: asyncio.Task[None] | None = None
        self._poller_loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._users: dict[str, tuple[int, int]] = {}
        self._fast_spawn = pidfd_supported()
        self._backend: cg.Backend | None = None
        self.cgroups_version = None
        self.warning = None

        wanted, posix, auto = _parse_isolation(isolation)
        missing: list[str] = []
        if wanted:
            self._backend, reason = _select_backend(rel, wanted, Path(cgroups_root_v1), enable_cfs, max_task_processes)
            if self._backend is None:
                self.warning = (
                    f"cgroups isolation unavailable ({reason}); falling back to posix isolation: "
                    "task cpu, memory and process limits are NOT enforced"
                )
                missing = wanted
            else:
                self.cgroups_version = self._backend.version
                missing = [i for i in wanted if i not in self._backend.isolators]
                if missing and not auto:
                    self.warning = (
                        f"isolator(s) {', '.join(missing)} not supported by this host's cgroup "
                        f"v{self._backend.version} hierarchy; using posix isolation for them"
                    )
        chosen = list(self._backend.isolators) if self._backend else []
        if self._backend is None or not auto:
            for i in [*missing, *posix]:
                p = _POSIX_FOR.get(i, i if i.startswith("posix/") else "")
                if p and p not in chosen:
                    chosen.append(p)
        self.isolators = chosen

    # ------------------------------------------------------------------ public

    async def launch(self, spec: LaunchSpec) -> Container:
        """Start a task; returns once its process exists.

        The task starts through a tiny ``/bin/sh`` wrapper that changes to
        the sandbox, moves itself into the container's cgroups (created and
        limited beforehand) and then ``exec``s ``spec.argv``; the exit status
        is therefore the task's own.

        Raises LaunchError when the cgroups, the output files or the process
        cannot be created (nothing is left behind then).  Should the wrapper
        fail to enter the cgroups (the task's command never runs then), the
        container ends with exit status 125 (LAUNCH_FAILED_STATUS) and
        ``wait()`` returns a Termination whose message starts with "launch
        failed:"; the wrapper's complaint is in the task's stderr.
        """
        if self._closed:
            raise LaunchError("containerizer is shut down")
        cid = spec.container_id
        _check_container_id(cid)
        if not spec.argv:
            raise LaunchError(f"container {cid!r}: empty argv")
        if not os.path.isdir(spec.cwd):
            raise LaunchError(f"container {cid!r}: sandbox {spec.cwd} is not a directory")
        if cid in self._containers or cid in self._reserved:
            raise LaunchError(f"container {cid!r} already exists")
        prefix = self._user_prefix(spec.user)
        self._reserved.add(cid)
        try:
            paths = self._backend.create(spec) if self._backend is not None else []
            try:
                proc = await self._spawn(spec, paths, prefix)
            except BaseException:
                if paths:
                    cg.kill_and_remove_sync(paths, timeout=2.0)
                raise
            container = Container(spec, proc, paths, self._backend, self._forget)
            self._containers[cid] = container
        finally:
            self._reserved.discard(cid)
        if container._oom_file is not None and spec.mem_mb is not None:
            self._ensure_poller()
        return container

    def containers(self) -> list[Container]:
        """The containers launched and not yet over."""
        return list(self._containers.values())

    async def shutdown(self, grace_period: float = 0.0) -> None:
        """Kill every container and remove every cgroup under root, root included."""
        self._closed = True
        running = list(self._containers.values())
        if running:
            await asyncio.gather(*(c.kill(grace_period) for c in running), return_exceptions=True)
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
        if self._backend is not None:
            leftovers = [p for paths in self._backend.container_dirs().values() for p in paths]
            if leftovers and not cg.kill_and_remove_sync(leftovers, kill_file=self._backend.has_kill_file):
                log.error("containerizer.cgroups_leaked", paths=[str(p) for p in leftovers])
            if not self._backend.teardown():
                log.error("containerizer.root_not_removed", dirs=[str(d) for d in self._backend.root_dirs])

    def cleanup_orphans(self) -> list[str]:
        """Kill the processes of container cgroups left under root by an earlier agent; remove them.

        Returns the ids of the containers cleaned up (sorted).  Containers
        of this Containerizer are left alone.
        """
        if self._backend is None:
            return []
        cleaned = []
        for cid, paths in sorted(self._backend.container_dirs().items()):
            if cid in self._containers or cid in self._reserved:
                continue
            ok = cg.kill_and_remove_sync(paths, kill_file=self._backend.has_kill_file)
            log.info("containerizer.orphan_cleaned", container_id=cid, removed=ok)
            cleaned.append(cid)
        return cleaned

    # ------------------------------------------------------------------ internals

    def _forget(self, container: Container) -> None:
        if self._containers.get(container.container_id) is container:
            del self._containers[container.container_id]

    def _user_prefix(self, user: str | None) -> list[str]:
        if user is None:
            return []
        ids = self._users.get(user)
        if ids is None:
            try:
                pw = pwd.getpwnam(user)
            except KeyError:
                raise LaunchError(f"unknown user {user!r}") from None
            ids = self._users[user] = (pw.pw_uid, pw.pw_gid)
        uid, gid = ids
        if uid == os.geteuid():
            return []
        setpriv = shutil.which("setpriv") or next(
            (p for p in ("/usr/bin/setpriv", "/bin/setpriv") if os.path.exists(p)), None
        )
        if setpriv is None:
            raise LaunchError(f"cannot run as user {user!r}: setpriv (util-linux) is not installed")
        return [setpriv, f"--reuid={uid}", f"--regid={gid}", "--init-groups", "--"]

    async def _spawn(self, spec: LaunchSpec, paths: list[Path], prefix: list[str]) -> TaskProcess:
        try:
            out = os.open(spec.stdout_path, _OUT_FLAGS, 0o644)
        except OSError as e:
            raise LaunchError(f"cannot open {spec.stdout_path}: {e.strerror}") from e
        try:
            try:
                err = os.open(spec.stderr_path, _OUT_FLAGS, 0o644)
            except OSError as e:
                raise LaunchError(f"cannot open {spec.stderr_path}: {e.strerror}") from e
            try:
                if self._fast_spawn:
                    argv = _wrapper_argv(spec, paths, prefix, cd=True)
                    try:
                        pid = spawn_posix(argv, spec.env, out, err)
                    except NotImplementedError:  # no POSIX_SPAWN_SETSID in this libc
                        self._fast_spawn = False
                    else:
                        return _watch(pid, kill_group_on_exit=not paths)
                argv = _wrapper_argv(spec, paths, prefix, cd=False)
                return AsyncioProcess(await spawn_asyncio(argv, spec.env, spec.cwd, out, err))
            except OSError as e:
                raise LaunchError(f"{spec.container_id}: cannot start {spec.argv[0]!r}: {e}") from e
            finally:
                os.close(err)
        finally:
            os.close(out)

    def _ensure_poller(self) -> None:
        loop = asyncio.get_running_loop()
        if self._poller is None or self._poller.done() or self._poller_loop is not loop:
            self._poller_loop = loop
            self._poller = loop.create_task(self._poll_oom(), name="containerizer-oom-poller")

    async def _poll_oom(self) -> None:
        """Notice OOM kills of a container's non-main processes (reads one file per container)."""
        while True:
            await asyncio.sleep(self._memory_poll_interval)
            watching = False
            for container in list(self._containers.values()):
                if container._spec.mem_mb is not None and container._watch_oom():
                    watching = True
            if not watching:
                return


def _wrapper_argv(spec: LaunchSpec, paths: list[Path], prefix: list[str], *, cd: bool) -> list[str]:
    """argv of the launch wrapper: [cd to the sandbox;] enter the cgroups; exec the task."""
    q = shlex.quote
    steps = []
    if cd:
        cwd = os.path.abspath(spec.cwd)
        complaint = q(f"{WRAPPER_MARK} cannot change to {cwd}")
        steps.append(f"cd -- {q(cwd)} || {{ echo {complaint} >&2; exit {LAUNCH_FAILED_STATUS}; }}")
    if paths:
        joins = " && ".join(f"echo 0 >{q(f'{p}/cgroup.procs')}" for p in paths)
        complaint = q(f"{WRAPPER_MARK} cannot enter the container's cgroups")
        steps.append(f"{joins} || {{ echo {complaint} >&2; exit {LAUNCH_FAILED_STATUS}; }}")
    if not steps and not prefix:
        return list(spec.argv)
    run = "".join(q(a) + " " for a in prefix)
    steps.append(f'exec {run}"$@"')
    return ["/bin/sh", "-c", "; ".join(steps), "aiomesos-launch", *spec.argv]


def _watch(pid: int, *, kill_group_on_exit: bool) -> PidfdProcess:
    try:
        return PidfdProcess(pid, asyncio.get_running_loop(), kill_group_on_exit=kill_group_on_exit)
    except BaseException:
        # Cannot watch it: do not leave it running unobserved.
        with contextlib.suppress(OSError):
            os.killpg(pid, 9)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        raise


def _select_backend(
    root: PurePosixPath, wanted: list[str], base: Path, enable_cfs: bool, max_task_processes: int
) -> tuple[cg.Backend | None, str]:
    """The backend to use for the wanted cgroup isolators, or None and why not."""
    mounts = cg.detect_mounts()
    v1 = cg.v1_mounts(mounts, base)
    v1_ok = [i for i in wanted if cg.V1_SUBSYSTEM[i] in v1]
    v2_mount = cg.v2_mount(mounts, base)
    v2_ctrls = cg.v2_controllers(v2_mount) if v2_mount is not None else set()
    v2_ok = [i for i in wanted if cg.V2_CONTROLLER[i] in v2_ctrls]

    candidates: list[cg.Backend] = []
    if v1_ok:
        candidates.append(cg.V1Backend(root, v1_ok, v1, enable_cfs, max_task_processes))
    if v2_ok and v2_mount is not None:
        v2 = cg.V2Backend(root, v2_ok, v2_mount, enable_cfs, max_task_processes)
        if len(v2_ok) >= len(v1_ok):
            candidates.insert(0, v2)
        else:
            candidates.append(v2)
    if not candidates:
        return None, f"no cgroup v1 or v2 hierarchy with cpu, memory or pids controllers under {base}"

    reasons = []
    for backend in candidates:
        try:
            backend.setup()
            return backend, ""
        except OSError as e:
            backend.teardown()
            what = f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
            reasons.append(f"cgroup v{backend.version}: {what}")
    if os.geteuid() != 0:
        reasons.append("not running as root")
    return None, "; ".join(reasons)
