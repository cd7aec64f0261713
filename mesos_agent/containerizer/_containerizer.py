"""The Containerizer: picks the isolation the host supports, launches tasks and recovers them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
from collections.abc import Callable, Collection, Coroutine, Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import structlog

from . import _bpf_devices, _runtime
from . import _cgroups as cg
from ._container import DISK, MEMORY, Container, MiB
from ._disk import disk_usage_many
from ._process import (
    AdoptedProcess,
    AsyncioProcess,
    ExecProcess,
    ExitedProcess,
    PidfdProcess,
    PolledProcess,
    TaskProcess,
    pidfd_supported,
    spawn_asyncio,
    spawn_posix,
)
from ._procfs import (
    ProcInfo,
    boot_id,
    boottime_ticks,
    pid_namespace_init,
    process_table,
    running,
    session_members,
    start_time,
    tree_members,
)
from ._types import ContainerizerError, LaunchError, LaunchSpec
from ._wrapper import env_reset_argv, exec_argv, rlimit_steps, tool, wrapper_argv

if TYPE_CHECKING:
    from mesos_agent.gpus import Gpu

log = structlog.get_logger(__name__)

POSIX_CPU = "posix/cpu"
POSIX_MEM = "posix/mem"
DISK_DU = "disk/du"
PID_NS = "namespaces/pid"
GPU_NVIDIA = "gpu/nvidia"
_EXTRAS = (DISK_DU, PID_NS, GPU_NVIDIA)
_POSIX_FOR = {cg.CPU: POSIX_CPU, cg.CPUACCT: POSIX_CPU, cg.MEM: POSIX_MEM}
_ALIASES: dict[str, tuple[str, ...]] = {
    "cgroups/all": cg.CGROUP_ISOLATORS,
    "cgroups/memory": (cg.MEM,),
    "posix": (POSIX_CPU, POSIX_MEM),
}
KNOWN_ISOLATORS: tuple[str, ...] = (*cg.CGROUP_ISOLATORS, POSIX_CPU, POSIX_MEM, *_EXTRAS, *_ALIASES)
_OUT_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
# How long exec_in_container waits for a just launched container's pid namespace to have its init.
_NS_INIT_WAIT = 5.0


def _parse_isolation(isolation: str) -> tuple[list[str], list[str], list[str], bool]:
    """(cgroup isolators wanted, posix isolators wanted, other isolators wanted, auto?)."""
    text = isolation.strip()
    if text == "auto":
        return list(cg.CGROUP_ISOLATORS), [], [DISK_DU], True
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
    extras = [i for i in _EXTRAS if i in expanded]
    return cgroups, posix, extras, False


def _check_container_id(cid: str) -> None:
    if not cid or cid in (".", "..") or any(c in cid for c in "/\0\n") or cid.startswith(_runtime.JOURNAL):
        raise LaunchError(f"container id {cid!r} is not usable as a path component")


class Containerizer:
    """Launches tasks in per-container cgroups (v1 or v2), or as plain processes.

    ``root`` names this agent's hierarchy (e.g. ``"aiomesos/agent-<id>"``);
    container ``c`` lives in ``<controller mount>/<root>/c``.  ``isolation``
    is ``"auto"`` (every cgroup isolator the host supports, ``disk/du``, and
    ``gpu/nvidia`` when ``gpus`` are given), ``"posix"``, or a comma list of
    ``cgroups/cpu``, ``cgroups/cpuacct``, ``cgroups/mem``, ``cgroups/pids``,
    ``posix/cpu``, ``posix/mem``, ``disk/du``, ``namespaces/pid``,
    ``gpu/nvidia`` (``cgroups/all`` and ``posix`` are shorthands).  Unknown
    names raise ValueError; so does ``namespaces/pid`` (never part of
    "auto") where it cannot work (not root, no ``unshare``).

    When the cgroup isolators cannot be used (not root, read-only or missing
    hierarchies), this falls back to posix isolation and sets ``warning`` to a
    one-line explanation; cgroup isolators the host's hierarchy lacks
    (requested, or under "auto") are replaced by their posix counterpart the
    same way, the warning naming what is missing and what stands in.  GPUs
    that cannot be confined (no device control) are warned about too.

    Isolators in brief:

    * ``posix/mem`` (no memory cgroup): the resident memory of the task's
      process tree and process group is polled every
      ``memory_poll_interval`` seconds; past ``mem_mb`` the task is killed
      (``Termination.oom_killed``, ``limitation="memory"``); each process is
      also held to ``mem_mb`` by RLIMIT_DATA (see ``_rlimits``).  Posix mode
      bounds neither cpu nor the number of processes: RLIMIT_NPROC counts
      every process of the user, not of the task, so it is not used; it sets
      RLIMIT_CORE 0, and RLIMIT_FSIZE to ``disk_mb`` with ``enforce_disk``
      (a task killed by SIGXFSZ ends with ``limitation="disk"``).  With a
      ``runtime_dir`` every posix launch leaves a pid record there, so that
      ``cleanup_orphans`` of a later agent process finds it.
    * ``disk/du``: every ``disk_poll_interval`` seconds the sandbox (the
      task's cwd) is measured (allocated blocks) in a worker thread; the
      figure is in ``stats()`` as ``disk_used_bytes`` (``disk_limit_bytes``
      from ``disk_mb``); with ``enforce_disk`` a task past ``disk_mb`` is
      killed (``limitation="disk"``).
    * ``namespaces/pid``: the task runs in its own pid and mount namespaces
      with /proc remounted, so it sees only its own processes.
    * ``gpu/nvidia``: ``LaunchSpec.gpus`` become ``CUDA_VISIBLE_DEVICES``,
      ``NVIDIA_VISIBLE_DEVICES`` (and ``CUDA_DEVICE_ORDER=PCI_BUS_ID``); the
      task is also denied every other GPU's ``/dev/nvidia<minor>``
      (nvidiactl, nvidia-uvm stay open): by the devices controller on cgroup
      v1, by an eBPF device program on its cgroup on v2 (``cgroups/devices``
      in ``isolators`` says it is on).  Where neither works (no cgroups, a
      kernel that refuses BPF) the environment is the only isolation.  Tasks
      without GPUs get ``CUDA_VISIBLE_DEVICES=""``.

    Checkpointed launches (``LaunchSpec.checkpoint``) need ``runtime_dir``:
    see ``recover``.  ``exec_in_container`` runs a command inside a running
    container (COMMAND health checks).
    """

    isolators: list[str]
    cgroups_version: int | None
    warning: str | None
    runtime_dir: Path | None

    def __init__(
        self,
        root: str,
        *,
        isolation: str = "auto",
        cgroups_root_v1: Path = Path("/sys/fs/cgroup"),
        enable_cfs: bool = True,
        max_task_processes: int = 4096,
        memory_poll_interval: float = 0.5,
        runtime_dir: str | Path | None = None,
        disk_poll_interval: float = 15.0,
        enforce_disk: bool = False,
        gpus: Sequence[Gpu] = (),
    ) -> None:
        rel = PurePosixPath(root.strip("/"))
        if not rel.parts or any(p in (".", "..") for p in rel.parts) or "\n" in root or "\0" in root:
            raise ValueError(f"cgroup root {root!r} must be a relative path like 'aiomesos/agent-1'")
        if max_task_processes < 1:
            raise ValueError("max_task_processes must be at least 1")
        if memory_poll_interval <= 0 or disk_poll_interval <= 0:
            raise ValueError("poll intervals must be positive")
        self.root = str(rel)
        self.runtime_dir = Path(runtime_dir).absolute() if runtime_dir is not None else None
        self._memory_poll_interval = memory_poll_interval
        self._disk_poll_interval = disk_poll_interval
        self._enforce_disk = enforce_disk
        self._containers: dict[str, Container] = {}
        self._reserved: set[str] = set()
        # Checkpointed containers whose runtime dir this Containerizer owns until release().
        self._checkpointed: set[str] = set()
        self._pollers: dict[str, asyncio.Task[None]] = {}
        self._poller_loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._detached = False
        self._users: dict[str, tuple[int, int]] = {}
        self._fast_spawn = pidfd_supported()
        self._backend: cg.Backend | None = None
        self._boot_id = boot_id()
        self._gpus = {g.index: g for g in gpus}
        self.cgroups_version = None
        self.warning = None

        wanted, posix, extras, auto = _parse_isolation(isolation)
        if auto and self._gpus:
            extras.append(GPU_NVIDIA)
        self._unshare: str | None = None
        if PID_NS in extras:
            self._unshare = tool("unshare")
            if self._unshare is None:
                raise ValueError("isolator namespaces/pid needs unshare(1) (util-linux), which is not installed")
            if os.geteuid() != 0:
                raise ValueError("isolator namespaces/pid needs root (mounting /proc in a new namespace)")
        gpu_minors = {i: g.minor for i, g in self._gpus.items() if g.minor is not None}
        want_devices = GPU_NVIDIA in extras and bool(gpu_minors)

        missing: list[str] = []
        warnings: list[str] = []
        if wanted or want_devices:
            self._backend, reason = _select_backend(
                rel, wanted, Path(cgroups_root_v1), enable_cfs, max_task_processes, want_devices, gpu_minors
            )
            if self._backend is None:
                if wanted:
                    warnings.append(
                        f"cgroups isolation unavailable ({reason}); falling back to posix isolation: "
                        "task cpu and process limits are NOT enforced, memory only by polling and rlimits"
                    )
                missing = wanted
            else:
                self.cgroups_version = self._backend.version
                missing = [i for i in wanted if i not in self._backend.isolators]
                if missing:
                    warnings.append(_missing_warning(self._backend, missing, memory_poll_interval))
        chosen = list(self._backend.isolators) if self._backend else []
        # What the cgroup hierarchy lacks, posix stands in for (auto included: memory polled beats unbounded).
        for i in [*missing, *posix]:
            p = _POSIX_FOR.get(i, i if i.startswith("posix/") else "")
            if p and p not in chosen:
                chosen.append(p)
        chosen.extend(extras)
        self.isolators = chosen
        self._devices = self._backend is not None and cg.DEVICES in self._backend.isolators
        if GPU_NVIDIA in extras and self._gpus and not self._devices:
            warnings.append(_gpu_warning(self._gpus, gpu_minors))
        self.warning = "; ".join(warnings) or None
        # posix isolation (no cgroup limits the task): rlimits in the launch wrapper, see _rlimits.
        self._posix = not any(i in cg.CGROUP_ISOLATORS for i in chosen)
        self._posix_data = POSIX_MEM in chosen and (self._backend is None or cg.MEM not in self._backend.isolators)
        self._nsenter: str | None = tool("nsenter") if self._unshare is not None else None
        # The pid records of posix launches of non-checkpointed tasks (for a later agent's cleanup_orphans).
        self._journal = _runtime.PidJournal(self.runtime_dir / _runtime.JOURNAL) if self.runtime_dir else None
        if self.runtime_dir is not None:
            self.runtime_dir.mkdir(parents=True, exist_ok=True)
        if self.runtime_dir is not None or self._unshare is not None:
            env_reset_argv()  # probe env(1) now (once per process) rather than during a launch

    # ------------------------------------------------------------------ public

    async def launch(self, spec: LaunchSpec) -> Container:
        """Start a task; returns once its process exists.

        The task starts through a tiny ``/bin/sh`` wrapper that changes to
        the sandbox, moves itself into the container's cgroups (created and
        limited beforehand) and then ``exec``s ``spec.argv``; the exit status
        is therefore the task's own.  With ``spec.checkpoint`` the wrapper
        stays, runs the task as its child and records its exit status in
        ``runtime_dir`` (see ``recover``).

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
        if spec.checkpoint and self.runtime_dir is None:
            raise LaunchError(f"container {cid!r}: checkpointed launches need a Containerizer runtime_dir")
        env = self._task_env(spec)
        prefix = self._user_prefix(spec.user)
        self._reserved.add(cid)
        try:
            status_file = self._prepare_runtime(cid) if spec.checkpoint else None
            paths: list[Path] = []
            try:
                paths = self._backend.create(spec) if self._backend is not None else []
                started = boottime_ticks()
                proc = await self._spawn(spec, env, paths, prefix, status_file)
                if status_file is not None:
                    self._write_record(spec, proc, paths, (started, boottime_ticks()))
                elif not paths and self._journal is not None:
                    # No cgroup to find it by after a kill -9 of the agent: leave its pid where the next looks.
                    self._record_pid(cid, proc, (started, boottime_ticks()))
            except BaseException:
                if paths:
                    cg.kill_and_remove_sync(paths, timeout=2.0)
                if status_file is not None:
                    self._checkpointed.discard(cid)
                    _runtime.remove_dir(Path(status_file).parent)
                raise
            container = Container(
                spec,
                proc,
                paths,
                self._backend,
                self._forget,
                status_file=status_file,
                wrapped=self._unshare is not None,
                posix_memory=POSIX_MEM in self.isolators,
                env=env,
                pid_namespace=self._unshare is not None,
                fsize_limited=self._fsize_limit(spec) is not None,
            )
            container._exec_in = self._exec
            self._containers[cid] = container
        finally:
            self._reserved.discard(cid)
        self._watch(container)
        return container

    @property
    def closed(self) -> bool:
        """Shut down or detached: it launches nothing more."""
        return self._closed

    def containers(self) -> list[Container]:
        """The containers launched (or recovered) and not yet over."""
        return list(self._containers.values())

    async def exec_in_container(
        self,
        container_id: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdout: int | None = None,
        stderr: int | None = None,
    ) -> ExecProcess:
        """Start a short command inside a running container (a COMMAND health check, as Mesos runs them).

        The command goes through the launch wrapper: it joins the container's
        cgroups (its cpu, memory and pids limits count it), gets the task's
        rlimits (posix), runs as the task's user (``setpriv``) in the sandbox
        with the task's environment overlaid with env, and with
        ``namespaces/pid`` it enters the task's pid and mount namespaces
        (``nsenter``; it then sees the task's processes and /proc).  stdin is
        /dev/null; stdout and stderr are the given file descriptors, else
        /dev/null.

        Returns once the command's process exists; its ``wait()`` gives the
        returncode, ``kill()`` SIGKILLs it with everything it started.  Should
        the wrapper fail to enter the container, the command never runs and
        the returncode is 125 (LAUNCH_FAILED_STATUS).  Raises
        ContainerizerError when the container is unknown or not running, or
        the command cannot be started.
        """
        container = self._containers.get(container_id)
        if container is None:
            raise ContainerizerError(f"unknown container {container_id!r} (never launched here, or over)")
        return await self._exec(container, argv, env=env, stdout=stdout, stderr=stderr)

    async def recover(self, container_id: str) -> Container | None:
        """Re-adopt a checkpointed container launched by an earlier agent process (same runtime_dir, same root).

        Returns a Container whose ``wait()``, ``kill()`` and ``stats()`` work
        as for one launched here: while the task still runs, ``wait()``
        resolves when it ends (the wrapper is watched through a pidfd, the
        agent not being its parent); when it ended while no agent was
        watching, the Container is (about to be) done and ``wait()`` gives
        the exit code or signal the wrapper recorded.  Leftover processes
        are killed and the cgroups removed as usual.  When the wrapper is gone
        without a record (it was SIGKILLed), the Termination has neither
        exit code nor signal and says so.  A pid reused since the launch is
        recognised by its start time and never signalled.

        Returns None when nothing is known about the container: no launch
        record (never checkpointed, already released), or the host has
        rebooted since and the task left no exit status.  Its cgroups, if
        any, are then left for ``cleanup_orphans``.

        Recovering a container this Containerizer already has returns it.
        """
        _check_container_id(container_id)
        if self._closed:
            raise ContainerizerError("containerizer is shut down")
        known = self._containers.get(container_id)
        if known is not None:
            return known
        if self.runtime_dir is None:
            return None
        directory = self.runtime_dir / container_id
        record = _runtime.read_record(directory)
        if record is None or record.container_id != container_id:
            return None
        status_file = directory / _runtime.STATUS
        same_boot = not record.boot_id or not self._boot_id or record.boot_id == self._boot_id
        if not same_boot and _runtime.read_status(status_file) is None:
            log.info("containerizer.recover_after_reboot", container_id=container_id)
            return None
        recorded = [Path(p) for p in record.cgroups]
        backend = self._backend
        if backend is None or backend.paths_for(container_id) != recorded:
            backend = None  # recorded under another isolation: kill and clean up by path, stats via psutil
        proc = self._adopt(record, alive_possible=same_boot)
        paths = recorded if same_boot else []
        container = Container(
            record.spec(),
            proc,
            paths,
            backend,
            self._forget,
            status_file=str(status_file),
            wrapped=record.pid_namespace,
            recovered=True,
            posix_memory=POSIX_MEM in self.isolators or backend is None,
            pid_namespace=record.pid_namespace,
        )
        container._exec_in = self._exec
        self._containers[container_id] = container
        self._checkpointed.add(container_id)
        log.info(
            "containerizer.recovered",
            container_id=container_id,
            pid=record.pid,
            running=not isinstance(proc, ExitedProcess)
            and running(record.pid, record.start_time, record.start_time_max),
        )
        self._watch(container)
        return container

    async def recover_all(self, container_ids: Iterable[str]) -> dict[str, Container | None]:
        """recover() each of container_ids."""
        return {cid: await self.recover(cid) for cid in container_ids}

    def recoverable(self) -> list[str]:
        """Ids of the containers with a launch record in runtime_dir (sorted)."""
        if self.runtime_dir is None:
            return []
        try:
            entries = list(os.scandir(self.runtime_dir))
        except FileNotFoundError:
            return []
        return sorted(e.name for e in entries if os.path.exists(os.path.join(e.path, _runtime.RECORD)))

    def release(self, container_id: str) -> None:
        """Forget a finished checkpointed container: remove its runtime dir (its recorded exit status).

        Call it once the container's end is safely recorded elsewhere (the
        agent has checkpointed the terminal status update); until then a
        later agent process can still recover the exit status.  Raises
        ContainerizerError for a container that is still running.
        """
        if container_id in self._containers or container_id in self._reserved:
            raise ContainerizerError(f"container {container_id!r} is still running")
        _check_container_id(container_id)
        self._checkpointed.discard(container_id)
        if self.runtime_dir is not None:
            _runtime.remove_dir(self.runtime_dir / container_id)

    async def shutdown(self, grace_period: float = 0.0) -> None:
        """Kill every container and remove every cgroup under root, root included, and their runtime dirs.

        After ``detach()`` this does nothing (the detached containers are left for a later agent).
        """
        if self._detached:
            return
        self._closed = True
        live = list(self._containers.values())
        if live:
            await asyncio.gather(*(c.kill(grace_period) for c in live), return_exceptions=True)
        self._stop_pollers()
        if self._backend is not None:
            leftovers = [p for paths in self._backend.container_dirs().values() for p in paths]
            if leftovers and not cg.kill_and_remove_sync(leftovers, kill_file=self._backend.has_kill_file):
                log.error("containerizer.cgroups_leaked", paths=[str(p) for p in leftovers])
            if not self._backend.teardown():
                log.error("containerizer.root_not_removed", dirs=[str(d) for d in self._backend.root_dirs])
        for cid in sorted(self._checkpointed):
            with contextlib.suppress(ContainerizerError):
                self.release(cid)
        if self._journal is not None:
            # Ours are over; what else it holds (orphans never cleaned up) stays.  Gone when empty.
            self._journal.rewrite(_runtime.read_journal(self._journal.path))

    async def detach(self) -> None:
        """Stop watching every container and leave them running (an agent restarting on purpose).

        Cgroups and runtime dirs stay; a later Containerizer on the same root
        and runtime_dir recovers the checkpointed containers (the others are
        orphans for its ``cleanup_orphans``).  This one is unusable after.
        """
        self._closed = self._detached = True
        self._stop_pollers()
        if self._journal is not None:
            self._journal.close()  # the records stay, for the next agent process
        for container in list(self._containers.values()):
            container._detach()
        self._containers.clear()

    def cleanup_orphans(self, keep: Collection[str] = frozenset()) -> list[str]:
        """Kill the containers an earlier agent process left under root, except those in keep; clean them up.

        Call it after recovering what is to be kept.  Orphans are found by
        their cgroups under root and by their runtime dirs: the launch
        record of a checkpointed container, the pid record every posix
        launch leaves (so the tasks of non-checkpointing frameworks do not
        outlive a crashed agent either).  Without cgroups their processes are
        found by recorded pid and start time: the main process's session is
        killed, or, when the main process has ended, what is left of its
        session (a session id is not reused while any member lives).  Their
        cgroups and runtime dirs are removed.  Containers of this
        Containerizer (launched, recovered, or finished and not yet
        released) and those in keep are left alone.

        Returns the ids of the containers cleaned up (sorted).
        """
        own = self._journal.live() if self._journal is not None else set()
        spare = set(self._containers) | self._reserved | self._checkpointed | own | set(keep)
        cleaned: set[str] = set()
        table: dict[int, ProcInfo] | None = None  # the process table, read once if needed
        if self._backend is not None:
            for cid, paths in sorted(self._backend.container_dirs().items()):
                if cid in spare:
                    continue
                ok = cg.kill_and_remove_sync(paths, kill_file=self._backend.has_kill_file)
                log.info("containerizer.orphan_cleaned", container_id=cid, removed=ok)
                cleaned.add(cid)
        if self.runtime_dir is not None:
            try:
                entries = [e for e in os.scandir(self.runtime_dir) if e.is_dir(follow_symlinks=False)]
            except FileNotFoundError:
                entries = []
            for entry in entries:
                cid = entry.name
                if cid in spare:
                    continue
                directory = Path(entry.path)
                record = _runtime.read_record(directory)
                if record is not None and not record.cgroups and record.boot_id == self._boot_id:
                    if table is None:
                        table = process_table()
                    _kill_posix_orphan(record, table)
                _runtime.remove_dir(directory)
                log.info("containerizer.orphan_runtime_removed", container_id=cid)
                cleaned.add(cid)
        if self._journal is not None:
            records = _runtime.read_journal(self._journal.path)
            for cid, record in sorted(records.items()):
                if cid in spare:
                    continue
                if record.boot_id == self._boot_id:
                    if table is None:
                        table = process_table()
                    _kill_posix_orphan(record, table)
                cleaned.add(cid)
            self._journal.rewrite({cid: r for cid, r in records.items() if cid in spare})
        return sorted(cleaned)

    # ------------------------------------------------------------------ internals

    def _forget(self, container: Container) -> None:
        cid = container.container_id
        if self._containers.get(cid) is container:
            del self._containers[cid]
        # Over (not merely no longer watched: detach, a cancelled reaper): nothing left to find after a crash.
        if self._journal is not None and cid in self._journal and not container._done.cancelled():
            self._journal.end(cid)

    def _task_env(self, spec: LaunchSpec) -> dict[str, str]:
        if not spec.gpus and GPU_NVIDIA not in self.isolators:
            return spec.env
        if len(set(spec.gpus)) != len(spec.gpus) or any(i < 0 for i in spec.gpus):
            raise LaunchError(f"container {spec.container_id!r}: bad GPU indices {spec.gpus}")
        if self._gpus and (unknown := [i for i in spec.gpus if i not in self._gpus]):
            raise LaunchError(f"container {spec.container_id!r}: no GPU with index {unknown} on this host")
        env = dict(spec.env)
        indices = ",".join(str(i) for i in spec.gpus)
        if self._devices and spec.gpus:
            # Behind the devices cgroup CUDA numbers the GPUs it can open from 0: name them by UUID.
            known = [self._gpus.get(i) for i in spec.gpus]
            if all(g is not None for g in known):
                env["CUDA_VISIBLE_DEVICES"] = ",".join(g.uuid for g in known if g is not None)
            else:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(str(n) for n in range(len(spec.gpus)))
        else:
            env["CUDA_VISIBLE_DEVICES"] = indices
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        env["NVIDIA_VISIBLE_DEVICES"] = indices or "void"
        return env

    def _prepare_runtime(self, cid: str) -> str:
        assert self.runtime_dir is not None
        directory = self.runtime_dir / cid
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            # A stale dir of an earlier container of that id (not running: its cgroup would exist).
            _runtime.remove_dir(directory)
            os.mkdir(directory, 0o700)
        except OSError as e:
            raise LaunchError(f"cannot create runtime dir {directory}: {e.strerror}") from e
        self._checkpointed.add(cid)
        return str(directory / _runtime.STATUS)

    def _write_record(self, spec: LaunchSpec, proc: TaskProcess, paths: list[Path], started: tuple[int, int]) -> None:
        assert self.runtime_dir is not None
        record = _runtime.LaunchRecord.of(
            spec, proc.pid, started, self._boot_id, paths, pid_namespace=self._unshare is not None
        )
        try:
            _runtime.write_record(self.runtime_dir / spec.container_id, record)
        except OSError as e:
            _abandon(proc)
            raise LaunchError(f"{spec.container_id}: cannot write its launch record: {e.strerror}") from e

    async def _exec(
        self,
        container: Container,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None,
        stdout: int | None,
        stderr: int | None,
    ) -> ExecProcess:
        cid = container.container_id
        if self._closed:
            raise ContainerizerError("containerizer is shut down")
        if container.done or container._exited or self._containers.get(cid) is not container:
            raise ContainerizerError(f"container {cid!r} is not running")
        if not argv:
            raise ContainerizerError(f"container {cid!r}: empty argv")
        spec = container._spec
        prefix = self._user_prefix(spec.user)  # LaunchError is a ContainerizerError
        nsenter: str | None = None
        target: int | None = None
        if container.pid_namespace:
            nsenter = self._nsenter or tool("nsenter")
            if nsenter is None:
                raise ContainerizerError(f"container {cid!r}: entering its pid namespace needs nsenter (util-linux)")
            target = await self._namespace_init(container)
        cwd = os.path.abspath(spec.cwd)
        wrapper = exec_argv(
            list(argv),
            cwd,
            container.cgroup_paths,
            prefix,
            rlimits=self._rlimits(spec),
            nsenter=nsenter,
            ns_target=target,
        )
        full_env = {**container._env, **(env or {})}
        null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC) if stdout is None or stderr is None else -1
        try:
            out = stdout if stdout is not None else null
            err = stderr if stderr is not None else null
            if self._fast_spawn:
                try:
                    pid = spawn_posix(wrapper, full_env, out, err)
                except NotImplementedError:
                    self._fast_spawn = False
                else:
                    return ExecProcess(_watch(pid, kill_group_on_exit=True))
            return ExecProcess(AsyncioProcess(await spawn_asyncio(wrapper, full_env, Path(cwd), out, err)))
        except OSError as e:
            raise ContainerizerError(f"container {cid!r}: cannot start {argv[0]!r}: {e}") from e
        finally:
            if null >= 0:
                os.close(null)

    async def _namespace_init(self, container: Container) -> int:
        """The init of the container's pid namespace (waiting a little for it: a container just launched may
        not have forked it yet)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _NS_INIT_WAIT
        while True:
            if container._procs_file:
                members = cg.read_pids(container._procs_file)
            else:
                members = sorted(tree_members(await asyncio.to_thread(process_table), container.pid))
            target = pid_namespace_init(members)
            if target is not None:
                return target
            if container.done or container._exited or loop.time() > deadline:
                raise ContainerizerError(f"container {container.container_id!r} has no process in its pid namespace")
            await asyncio.sleep(0.01)

    def _record_pid(self, cid: str, proc: TaskProcess, started: tuple[int, int]) -> None:
        assert self._journal is not None
        try:
            self._journal.add(cid, proc.pid, started, self._boot_id)
        except OSError as e:
            _abandon(proc)
            raise LaunchError(f"{cid}: cannot write its pid record to {self._journal.path}: {e.strerror}") from e

    def _rlimits(self, spec: LaunchSpec) -> list[str]:
        """The posix wrapper's ulimit commands for spec (none where a cgroup limits the task).

        * RLIMIT_DATA from mem (when no memory cgroup), not RLIMIT_AS: RLIMIT_DATA counts what a process
          can write to (heap, private writable mappings; Linux >= 4.7), RLIMIT_AS every reservation too,
          which JVMs, Go, CUDA and sanitizers make far beyond what they use and would fail at start.  It
          is per process: the tree as a whole is still held to mem by the resident-size poller.
        * RLIMIT_FSIZE from disk with enforce_disk (a file larger than the whole quota is over it anyway;
          the sandbox total is still measured by disk/du).
        * RLIMIT_CORE 0: no core dumps filling the sandbox.
        * Not RLIMIT_NPROC: it counts every process of the user, not of the task.
        """
        if not self._posix and not self._posix_data:
            return []
        data = int(spec.mem_mb * MiB) if self._posix_data and spec.mem_mb is not None else None
        return rlimit_steps(data, self._fsize_limit(spec), no_core=self._posix)

    def _fsize_limit(self, spec: LaunchSpec) -> int | None:
        if self._posix and self._enforce_disk and spec.disk_mb is not None and DISK_DU in self.isolators:
            return int(spec.disk_mb * MiB)
        return None

    def _adopt(self, record: _runtime.LaunchRecord, *, alive_possible: bool) -> TaskProcess:
        """A watcher for a recorded wrapper process, or an ExitedProcess when it is gone (or its pid reused)."""
        if not alive_possible:
            return ExitedProcess(record.pid)
        kill_group = not record.cgroups
        if self._fast_spawn:
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

    async def _spawn(
        self, spec: LaunchSpec, env: dict[str, str], paths: list[Path], prefix: list[str], status_file: str | None
    ) -> TaskProcess:
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
                limits = self._rlimits(spec)
                if self._fast_spawn:
                    argv = wrapper_argv(
                        spec, paths, prefix, cd=True, status_file=status_file, unshare=self._unshare, rlimits=limits
                    )
                    try:
                        pid = spawn_posix(argv, env, out, err)
                    except NotImplementedError:  # no POSIX_SPAWN_SETSID in this libc
                        self._fast_spawn = False
                    else:
                        return _watch(pid, kill_group_on_exit=not paths)
                argv = wrapper_argv(
                    spec, paths, prefix, cd=False, status_file=status_file, unshare=self._unshare, rlimits=limits
                )
                return AsyncioProcess(await spawn_asyncio(argv, env, spec.cwd, out, err))
            except OSError as e:
                raise LaunchError(f"{spec.container_id}: cannot start {spec.argv[0]!r}: {e}") from e
            finally:
                os.close(err)
        finally:
            os.close(out)

    # ------------------------------------------------------------------ pollers

    def _watch(self, container: Container) -> None:
        """Start the pollers the container needs (one of each per Containerizer, on the running loop)."""
        if container.done:
            return
        if (container._oom_file is not None and container._spec.mem_mb is not None) or container._posix_memory:
            self._ensure_poller("memory", self._poll_memory)
        if DISK_DU in self.isolators:
            self._ensure_poller("disk", self._poll_disk)

    def _ensure_poller(self, name: str, factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
        loop = asyncio.get_running_loop()
        if self._poller_loop is not loop:
            self._pollers.clear()
            self._poller_loop = loop
        task = self._pollers.get(name)
        if task is None or task.done():
            self._pollers[name] = loop.create_task(factory(), name=f"containerizer-{name}-poller")

    def _stop_pollers(self) -> None:
        for task in self._pollers.values():
            task.cancel()
        self._pollers.clear()

    async def _poll_memory(self) -> None:
        """Notice OOM kills (cgroups: one file read per container); enforce posix memory limits (/proc scan)."""
        while True:
            await asyncio.sleep(self._memory_poll_interval)
            watching = False
            posix = []
            for container in list(self._containers.values()):
                if container._posix_memory:
                    if not container.done and not container._exited:
                        posix.append(container)
                elif container._spec.mem_mb is not None and container._watch_oom():
                    watching = True
            if posix:
                watching = True
                table = await asyncio.to_thread(process_table)
                for container in posix:
                    mem_mb = container._spec.mem_mb
                    if mem_mb is None or container.done:
                        continue
                    rss = sum(table[p].rss_bytes for p in tree_members(table, container.pid) if p in table)
                    if rss > mem_mb * MiB:
                        container._exceeded(
                            MEMORY, f"memory limit {mem_mb:g} MiB exceeded (resident {rss / MiB:.1f} MiB)"
                        )
            if not watching:
                return

    async def _poll_disk(self) -> None:
        """Measure every sandbox (in a worker thread); kill the containers past their disk quota if enforced."""
        while True:
            await asyncio.sleep(self._disk_poll_interval)
            watched = [c for c in self._containers.values() if not c.done]
            if not watched:
                return
            usages = await asyncio.to_thread(disk_usage_many, [os.path.abspath(c._spec.cwd) for c in watched])
            for container, used in zip(watched, usages, strict=True):
                if used is None or container.done:
                    continue
                container.disk_used_bytes = used
                disk_mb = container._spec.disk_mb
                if self._enforce_disk and disk_mb is not None and used > disk_mb * MiB:
                    container._exceeded(
                        DISK, f"disk limit {disk_mb:g} MiB exceeded (sandbox uses {used / MiB:.1f} MiB)"
                    )


def _kill_posix_orphan(record: _runtime.LaunchRecord, table: dict[int, ProcInfo]) -> None:
    """SIGKILL what is left of a recorded main process (a task, a wrapper) without cgroups.

    It leads its own session and process group (spawned with setsid).  While it runs (the very process:
    same start time) its group and session are killed.  Once it has ended, its session id cannot have been
    reused while any member is alive, so the live members of that session (started since) are the task's
    leftovers.  A main process of the same pid but another start time is a stranger: nothing is killed.
    """
    info = table.get(record.pid)
    if info is not None and not record.started(start_time(record.pid)):
        return
    victims = session_members(table, record.pid, record.start_time)
    if info is not None and not info.zombie:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(record.pid, signal.SIGKILL)
    for pid in victims:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    if victims or info is not None:
        log.info("containerizer.orphan_killed", container_id=record.container_id, pid=record.pid, processes=victims)


def _abandon(proc: TaskProcess) -> None:
    """Kill a just-spawned main process that will not become a Container (and reap it where it is ours)."""
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, 9)
    proc.close()
    if isinstance(proc, PidfdProcess):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(proc.pid, 0)


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
    root: PurePosixPath,
    wanted: list[str],
    base: Path,
    enable_cfs: bool,
    max_task_processes: int,
    devices: bool = False,
    gpu_minors: dict[int, int] | None = None,
) -> tuple[cg.Backend | None, str]:
    """The backend to use for the wanted cgroup isolators, or None and why not.

    devices: add device control (GPU confinement): the devices controller when the v1 backend is chosen, an
    eBPF device program per container when the v2 one is (where the kernel loads it).
    """
    mounts = cg.detect_mounts()
    v1 = cg.v1_mounts(mounts, base)
    v1_ok = [i for i in wanted if cg.V1_SUBSYSTEM[i] in v1]
    v2_mount = cg.v2_mount(mounts, base)
    v2_ctrls = cg.v2_controllers(v2_mount) if v2_mount is not None else set()
    v2_ok = [i for i in wanted if cg.V2_CONTROLLER[i] in v2_ctrls]

    candidates: list[cg.Backend] = []
    if v1_ok or (devices and "devices" in v1 and not v2_ok):
        with_devices = [*v1_ok, cg.DEVICES] if devices and "devices" in v1 else v1_ok
        v1_backend = cg.V1Backend(root, with_devices, v1, enable_cfs, max_task_processes)
        v1_backend.gpu_minors = dict(gpu_minors or {})
        candidates.append(v1_backend)
    if v2_ok and v2_mount is not None:
        bpf = devices and _bpf_devices.supported()
        v2 = cg.V2Backend(root, [*v2_ok, cg.DEVICES] if bpf else v2_ok, v2_mount, enable_cfs, max_task_processes)
        v2.gpu_minors = dict(gpu_minors or {}) if bpf else {}
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


_STAND_INS = {
    cg.CPU: "posix/cpu (cpu time read from /proc; cpu NOT limited)",
    cg.CPUACCT: "posix/cpu (cpu time read from /proc)",
    cg.PIDS: "nothing (task process counts NOT limited)",
}


def _missing_warning(backend: cg.Backend, missing: list[str], memory_poll_interval: float) -> str:
    """One line: which isolators the chosen hierarchy cannot serve, and what stands in for each."""
    if isinstance(backend, cg.V2Backend):
        controllers = sorted({cg.V2_CONTROLLER[i] for i in missing})
        where = (
            f"the cgroup v2 hierarchy at {backend.mount} does not delegate the {', '.join(controllers)} controller(s)"
        )
    else:
        subsystems = sorted({cg.V1_SUBSYSTEM[i] for i in missing})
        where = f"cgroup v1 has no {', '.join(subsystems)} hierarchy mounted"
    stand_ins = dict(_STAND_INS)
    stand_ins[cg.MEM] = (
        f"posix/mem (memory enforced by polling the tasks' resident size every {memory_poll_interval:g} s, "
        "plus RLIMIT_DATA per process)"
    )
    parts = [f"{i} -> {stand_ins[i]}" for i in missing]
    return f"{where}: {'; '.join(parts)}"


def _gpu_warning(gpus: dict[int, Gpu], minors: dict[int, int]) -> str:
    if len(minors) < len(gpus):
        why = f"the device minor of GPU(s) {sorted(set(gpus) - set(minors))} is unknown"
    else:
        why = "neither a cgroup v1 devices controller nor eBPF device programs on cgroup v2 are usable here"
    return (
        f"GPU isolation is by environment only ({why}): tasks are shown their GPUs through "
        "CUDA_VISIBLE_DEVICES / NVIDIA_VISIBLE_DEVICES but can open every /dev/nvidia* device"
    )
