"""The Containerizer: picks the isolation the host supports, composes its isolators, launches tasks, recovers them."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import structlog

from . import _cgroups as cg
from . import _orphans, _runtime
from ._container import Container
from ._delegation import CGROUPS_PARENTS
from ._isolation import (
    KNOWN_ISOLATORS,
    IsolatorSettings,
    choose_isolators,
    compose,
    parse_isolation,
)
from ._isolation import select_backend as _select_backend
from ._launcher import Launcher, LaunchGate, abandon, namespace_init
from ._names import GPU_NVIDIA, PID_NS
from ._offload import prepare_launch
from ._process import ExecProcess, ExitedProcess, TaskProcess
from ._procfs import boot_id, boottime_ticks, process_table, running
from ._tasks import BackgroundTasks, Spawn
from ._types import ContainerizerError, LaunchError, LaunchSpec
from ._watchers import Watchers
from ._wrapper import env_reset_argv, exec_argv, tool
from .isolators import PidNamespace

if TYPE_CHECKING:
    from mesos_agent.gpus import Gpu

log = structlog.get_logger(__name__)

__all__ = ["GPU_NVIDIA", "KNOWN_ISOLATORS", "PID_NS", "Containerizer"]


def _check_container_id(container_id: str) -> None:
    if (
        not container_id
        or container_id in (".", "..")
        or any(char in container_id for char in "/\0\n")
        or container_id.startswith(_runtime.JOURNAL)
    ):
        raise LaunchError(f"container id {container_id!r} is not usable as a path component")


class Containerizer:
    """Launches tasks in per-container cgroups (v1 or v2), or as plain processes.

    ``root`` names this agent's hierarchy (e.g. ``"aiomesos/agent-<id>"``);
    container ``c`` lives in ``<controller mount>/<root>/c`` (on cgroup v2
    with ``cgroups_parent`` ``own``, or ``auto`` under systemd's
    ``Delegate=yes`` + ``DelegateSubgroup=agent``: in
    ``<the agent's own cgroup>/<root>/c``, see ``_delegation``).  ``isolation``
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
      RLIMIT_CORE 0.  With ``enforce_disk`` (any mode) RLIMIT_FSIZE is
      ``disk_mb`` and a block (a task killed by SIGXFSZ ends with
      ``limitation="disk"``; see ``isolators.posix_rlimits``).  With a
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

    Each isolator is one object (``isolators/``): it prepares a launch, may
    watch for a limit reached, measures usage and cleans up.  Their pollers
    (OOM, posix memory, disk) are background tasks started through ``spawn``
    (the agent's ``TaskGroup.create_task``; ``set_spawn`` lends it later) or,
    without one, on the running loop; either way the Containerizer tracks
    them and cancels them on ``shutdown`` and ``detach``, as it does its
    containers' reapers (always its own: a reaper lives as long as its
    container, which only the Containerizer ends).
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
        cgroups_parent: str = "auto",
        enable_cfs: bool = True,
        max_task_processes: int = 4096,
        memory_poll_interval: float = 0.5,
        runtime_dir: str | Path | None = None,
        disk_poll_interval: float = 15.0,
        enforce_disk: bool = False,
        gpus: Sequence[Gpu] = (),
        spawn: Spawn | None = None,
    ) -> None:
        relative_root = PurePosixPath(root.strip("/"))
        if (
            not relative_root.parts
            or any(part in (".", "..") for part in relative_root.parts)
            or "\n" in root
            or "\0" in root
        ):
            raise ValueError(f"cgroup root {root!r} must be a relative path like 'aiomesos/agent-1'")
        if max_task_processes < 1:
            raise ValueError("max_task_processes must be at least 1")
        if memory_poll_interval <= 0 or disk_poll_interval <= 0:
            raise ValueError("poll intervals must be positive")
        if cgroups_parent not in CGROUPS_PARENTS:
            raise ValueError(f"cgroups_parent {cgroups_parent!r}: choose from {', '.join(CGROUPS_PARENTS)}")
        self.root = str(relative_root)
        self.runtime_dir = Path(runtime_dir).absolute() if runtime_dir is not None else None
        self._containers: dict[str, Container] = {}
        self._reserved: set[str] = set()
        # Checkpointed containers whose runtime dir this Containerizer owns until release().
        self._checkpointed: set[str] = set()
        # Reapers and kills for a limit reached (always ours); pollers (through the caller's spawn if lent).
        self._owned = BackgroundTasks(guard=False)
        self._watchers = Watchers(self._containers.values, spawn)
        self._closed = False
        self._detached = False
        self._launcher = Launcher()
        self._boot_id = boot_id()
        gpus_by_index = {gpu.index: gpu for gpu in gpus}

        request = parse_isolation(isolation)
        extras = [*request.extras, GPU_NVIDIA] if request.auto and gpus_by_index else request.extras
        request = replace(request, extras=extras)
        pid_namespace = PidNamespace.on_this_host() if PID_NS in extras else None
        gpu_minors = {index: gpu.minor for index, gpu in gpus_by_index.items() if gpu.minor is not None}
        want_devices = GPU_NVIDIA in extras and bool(gpu_minors)
        self._backend: cg.Backend | None = None
        reason = ""
        if request.cgroups or want_devices:
            self._backend, reason = _select_backend(
                relative_root,
                request.cgroups,
                Path(cgroups_root_v1),
                enable_cfs,
                max_task_processes,
                want_devices,
                gpu_minors,
                cgroups_parent=cgroups_parent,
            )
        choice = choose_isolators(request, self._backend, reason, memory_poll_interval, gpus_by_index, gpu_minors)
        self.cgroups_version = self._backend.version if self._backend is not None else None
        self.isolators = choice.names
        self.warning = "; ".join(choice.warnings) or None
        settings = IsolatorSettings(memory_poll_interval, disk_poll_interval, enforce_disk, gpus_by_index)
        self._isolators = compose(choice.names, self._backend, settings, pid_namespace)
        # The pid records of posix launches of non-checkpointed tasks (for a later agent's cleanup_orphans).
        self._journal = _runtime.PidJournal(self.runtime_dir / _runtime.JOURNAL) if self.runtime_dir else None
        if self.runtime_dir is not None:
            self.runtime_dir.mkdir(parents=True, exist_ok=True)
        if self.runtime_dir is not None or pid_namespace is not None:
            env_reset_argv()  # probe env(1) now (once per process) rather than during a launch

    # ------------------------------------------------------------------ public

    @property
    def cgroup_dirs(self) -> list[str]:
        """The dirs the containers' cgroups are made in (one per hierarchy; none without cgroup isolation)."""
        return [str(root_dir) for root_dir in self._backend.root_dirs] if self._backend is not None else []

    def set_spawn(self, spawn: Spawn | None) -> None:
        """Start the pollers from now on through spawn (the agent's TaskGroup.create_task)."""
        self._watchers.tasks.spawn = spawn

    @property
    def _fast_spawn(self) -> bool:
        """Whether processes start with posix_spawn + pidfd (tests turn it off to take the fallback)."""
        return self._launcher.fast_spawn

    @_fast_spawn.setter
    def _fast_spawn(self, value: bool) -> None:
        self._launcher.fast_spawn = value

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
        container_id = spec.container_id
        _check_container_id(container_id)
        if not spec.argv:
            raise LaunchError(f"container {container_id!r}: empty argv")
        if not os.path.isdir(spec.cwd):
            raise LaunchError(f"container {container_id!r}: sandbox {spec.cwd} is not a directory")
        if container_id in self._containers or container_id in self._reserved:
            raise LaunchError(f"container {container_id!r} already exists")
        if spec.checkpoint and self.runtime_dir is None:
            raise LaunchError(f"container {container_id!r}: checkpointed launches need a Containerizer runtime_dir")
        prefix = self._launcher.user_prefix(spec.user)
        self._reserved.add(container_id)
        try:
            container = await self._start_container(spec, prefix)
            self._containers[container_id] = container
        finally:
            self._reserved.discard(container_id)
        self._watchers.watch(container)
        return container

    async def _start_container(self, spec: LaunchSpec, prefix: list[str]) -> Container:
        """Prepare (cgroups, isolators, runtime dir), spawn and record one launch; undo it all on failure."""
        container_id = spec.container_id
        isolators = self._isolators.launched
        status_file = self._prepare_runtime(container_id) if spec.checkpoint else None
        # A checkpointed task starts only once its launch record is written: an agent killed in between leaves
        # no container a later one cannot find, and reports lost no task that runs on (see _wrapper).
        gate = LaunchGate() if status_file is not None else None
        paths: list[Path] = []
        try:
            started = boottime_ticks()
            prepare = functools.partial(prepare_launch, self._backend, spec, isolators)
            launch, proc = await self._launcher.start(spec, prefix, prepare, status_file=status_file, gate=gate)
            paths = launch.cgroup_paths
            if gate is not None:
                gate.spawned()
                self._write_record(spec, proc, paths, (started, boottime_ticks()))
                gate.open()
            elif not paths and self._journal is not None:
                # No cgroup to find it by after a kill -9 of the agent: leave its pid where the next looks.
                self._record_pid(container_id, proc, (started, boottime_ticks()))
        except BaseException:
            if gate is not None:
                gate.close()  # the wrapper, if spawned, exits without starting the task
            if paths:
                cg.kill_and_remove_sync(paths, timeout=2.0)
            if status_file is not None:
                self._checkpointed.discard(container_id)
                _runtime.remove_dir(Path(status_file).parent)
            raise
        rlimits = self._isolators.rlimits
        container = Container(
            spec,
            proc,
            paths,
            self._backend,
            self._forget,
            start=self._owned.start,
            isolators=isolators,
            status_file=status_file,
            wrapped=launch.unshare is not None,
            env=launch.env,
            pid_namespace=launch.unshare is not None,
            fsize_limited=rlimits is not None and rlimits.fsize_limit(spec) is not None,
        )
        container._exec_in = self._exec
        for isolator in isolators:
            isolator.isolate(container)
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
        recorded = [Path(path) for path in record.cgroups]
        backend = self._backend
        if backend is None or backend.paths_for(container_id) != recorded:
            backend = None  # recorded under another isolation: kill and clean up by path, stats via psutil
        proc = self._launcher.adopt(record, alive_possible=same_boot)
        paths = recorded if same_boot else []
        in_hierarchy = backend is not None and bool(paths)
        container = Container(
            record.spec(),
            proc,
            paths,
            backend,
            self._forget,
            start=self._owned.start,
            isolators=self._isolators.launched if in_hierarchy else self._isolators.outside_hierarchy,
            status_file=str(status_file),
            wrapped=record.pid_namespace,
            recovered=True,
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
        self._watchers.watch(container)
        return container

    async def recover_all(self, container_ids: Iterable[str]) -> dict[str, Container | None]:
        """recover() each of container_ids."""
        return {container_id: await self.recover(container_id) for container_id in container_ids}

    def recoverable(self) -> list[str]:
        """Ids of the containers with a launch record in runtime_dir (sorted)."""
        if self.runtime_dir is None:
            return []
        try:
            entries = list(os.scandir(self.runtime_dir))
        except FileNotFoundError:
            return []
        return sorted(entry.name for entry in entries if os.path.exists(os.path.join(entry.path, _runtime.RECORD)))

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
            await asyncio.gather(*(container.kill(grace_period) for container in live), return_exceptions=True)
        await self._stop_background()
        if self._backend is not None:
            leftovers = [path for paths in self._backend.container_dirs().values() for path in paths]
            if leftovers and not cg.kill_and_remove_sync(leftovers, kill_file=self._backend.has_kill_file):
                log.error("containerizer.cgroups_leaked", paths=[str(path) for path in leftovers])
            if not self._backend.teardown():
                log.error("containerizer.root_not_removed", dirs=[str(d) for d in self._backend.root_dirs])
        for container_id in sorted(self._checkpointed):
            with contextlib.suppress(ContainerizerError):
                self.release(container_id)
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
        if self._journal is not None:
            self._journal.close()  # the records stay, for the next agent process
        for container in list(self._containers.values()):
            container._detach()
        self._containers.clear()
        await self._stop_background()

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
        table = _orphans.ProcessTable(process_table)
        cleaned: set[str] = set()
        if self._backend is not None:
            cleaned |= _orphans.clean_cgroups(self._backend, spare)
        if self.runtime_dir is not None:
            cleaned |= _orphans.clean_runtime_dirs(self.runtime_dir, spare, self._boot_id, table)
        if self._journal is not None:
            cleaned |= _orphans.clean_journal(self._journal, spare, self._boot_id, table)
        return sorted(cleaned)

    # ------------------------------------------------------------------ internals

    def _forget(self, container: Container) -> None:
        container_id = container.container_id
        if self._containers.get(container_id) is container:
            del self._containers[container_id]
        # Over (not merely no longer watched: detach, a cancelled reaper): nothing left to find after a crash.
        if self._journal is not None and container_id in self._journal and not container._done.cancelled():
            self._journal.end(container_id)

    def _prepare_runtime(self, container_id: str) -> str:
        assert self.runtime_dir is not None
        directory = self.runtime_dir / container_id
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            # A stale dir of an earlier container of that id (not running: its cgroup would exist).
            _runtime.remove_dir(directory)
            os.mkdir(directory, 0o700)
        except OSError as e:
            raise LaunchError(f"cannot create runtime dir {directory}: {e.strerror}") from e
        self._checkpointed.add(container_id)
        return str(directory / _runtime.STATUS)

    def _write_record(self, spec: LaunchSpec, proc: TaskProcess, paths: list[Path], started: tuple[int, int]) -> None:
        assert self.runtime_dir is not None
        record = _runtime.LaunchRecord.of(
            spec, proc.pid, started, self._boot_id, paths, pid_namespace=self._isolators.pid_namespace is not None
        )
        try:
            _runtime.write_record(self.runtime_dir / spec.container_id, record)
        except OSError as e:
            abandon(proc)
            raise LaunchError(f"{spec.container_id}: cannot write its launch record: {e.strerror}") from e

    def _record_pid(self, container_id: str, proc: TaskProcess, started: tuple[int, int]) -> None:
        assert self._journal is not None
        try:
            self._journal.add(container_id, proc.pid, started, self._boot_id)
        except OSError as e:
            abandon(proc)
            raise LaunchError(
                f"{container_id}: cannot write its pid record to {self._journal.path}: {e.strerror}"
            ) from e

    def _rlimits(self, spec: LaunchSpec) -> list[str]:
        """The wrapper's ulimit commands for spec (posix/rlimits; with cgroups only RLIMIT_FSIZE, if any)."""
        rlimits = self._isolators.rlimits
        return rlimits.steps(spec) if rlimits is not None else []

    async def _exec(
        self,
        container: Container,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None,
        stdout: int | None,
        stderr: int | None,
    ) -> ExecProcess:
        container_id = container.container_id
        if self._closed:
            raise ContainerizerError("containerizer is shut down")
        if container.done or container._exited or self._containers.get(container_id) is not container:
            raise ContainerizerError(f"container {container_id!r} is not running")
        if not argv:
            raise ContainerizerError(f"container {container_id!r}: empty argv")
        spec = container.spec
        prefix = self._launcher.user_prefix(spec.user)  # LaunchError is a ContainerizerError
        nsenter: str | None = None
        target: int | None = None
        if container.pid_namespace:
            pid_namespace = self._isolators.pid_namespace
            nsenter = (pid_namespace.nsenter if pid_namespace is not None else None) or tool("nsenter")
            if nsenter is None:
                raise ContainerizerError(
                    f"container {container_id!r}: entering its pid namespace needs nsenter (util-linux)"
                )
            target = await namespace_init(container)
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
        return await self._launcher.spawn_exec(container_id, argv[0], wrapper, full_env, cwd, (stdout, stderr))

    async def _stop_background(self) -> None:
        await self._watchers.stop()
        await self._owned.cancel()
