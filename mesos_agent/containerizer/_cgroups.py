"""The cgroup hierarchies one Containerizer works in: v1 (a hierarchy per subsystem) or v2 (one unified one).

A hierarchy creates the agent's root dir (``<mount>/<root>``), one leaf per container under it, finds the
containers left there, and removes it all again; it reads the figures every cgroup has (processes, threads,
and on v2 the core ``cpu.stat``).  The limits themselves are the cgroup isolators' (``isolators/cgroups_*``),
which write into the leaves it makes.

The file helpers and mount detection live in ``_cgroupfs`` and ``_mounts``; they are re-exported here, as
are the isolator names, for the callers that know this module as the cgroups one.
"""

from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ._cgroupfs import (
    CFS_PERIOD_US,
    CLK_TCK,
    kill_and_remove_sync,
    make_dirs,
    read_bytes,
    read_counter,
    read_int,
    read_keyed,
    read_pids,
    rmdir_tree,
    signal_tree,
    write_file,
)
from ._delegation import enter_leaf
from ._mounts import Mount, detect_mounts, parse_mountinfo, parse_proc_mounts, v1_mounts, v2_controllers, v2_mount
from ._names import CGROUP_ISOLATORS, CPU, CPUACCT, DEVICES, MEM, PIDS, V1_SUBSYSTEM, V2_CONTROLLER
from ._types import LaunchError, LaunchSpec

__all__ = [
    "CFS_PERIOD_US",
    "CGROUP_ISOLATORS",
    "CLK_TCK",
    "CPU",
    "CPUACCT",
    "DEVICES",
    "MEM",
    "PIDS",
    "V1_SUBSYSTEM",
    "V2_CONTROLLER",
    "Backend",
    "Mount",
    "V1Backend",
    "V2Backend",
    "detect_mounts",
    "kill_and_remove_sync",
    "make_dirs",
    "parse_mountinfo",
    "parse_proc_mounts",
    "read_bytes",
    "read_counter",
    "read_int",
    "read_keyed",
    "read_pids",
    "rmdir_tree",
    "signal_tree",
    "v1_mounts",
    "v2_controllers",
    "v2_mount",
    "write_file",
]


@dataclass
class Backend:
    """The cgroup hierarchy (or hierarchies) one Containerizer works in.

    ``isolators`` are the cgroup isolators it serves (their names); ``enable_cfs``, ``max_task_processes``
    and ``gpu_minors`` (GPU index -> device minor) configure them (see ``_isolation.cgroup_isolators``).
    """

    root: PurePosixPath
    isolators: list[str]
    enable_cfs: bool
    max_task_processes: int
    version: int = 0
    # <mount>/<root> for each hierarchy used, in join order.
    root_dirs: list[Path] = field(default_factory=list)
    # Directories setup() created, outermost first (removed again on shutdown).
    created: list[Path] = field(default_factory=list)
    has_kill_file: bool = False
    # Whether the memory controller limits swap too (v1 memory.memsw.*, v2 memory.swap.max).
    has_swap_limit: bool = False
    # GPU index -> device minor, for device control: a task may open its own GPUs' minors only.
    gpu_minors: dict[int, int] = field(default_factory=dict)
    _root_strs: list[str] = field(default_factory=list)

    def setup(self) -> None:
        raise NotImplementedError

    def slot(self, isolator: str) -> int:
        """The index, in a container's cgroup paths, of the dir the isolator's controller lives in."""
        raise NotImplementedError

    def add_usage(self, paths: list[Path], figures: dict[str, float]) -> None:
        """Add to figures what every cgroup of this hierarchy tells, whichever isolators are on, where the
        cgroup isolators have not said it already (the pids isolator counts processes better)."""
        raise NotImplementedError

    def create(self, spec: LaunchSpec) -> list[Path]:
        """Make the container's leaf in every hierarchy (empty: the isolators write the limits)."""
        made: list[str] = []
        try:
            for root_dir in self._root_strs:
                leaf = f"{root_dir}/{spec.container_id}"
                os.mkdir(leaf)
                made.append(leaf)
        except FileExistsError as e:
            self._undo(made)
            raise LaunchError(
                f"cgroup {e.filename} already exists (a container {spec.container_id!r} is still running?)"
            ) from e
        except OSError as e:
            self._undo(made)
            raise LaunchError(f"cannot create cgroup {e.filename}: {e.strerror}") from e
        return [Path(leaf) for leaf in made]

    @staticmethod
    def _undo(made: list[str]) -> None:
        for leaf in made:
            with contextlib.suppress(OSError):
                os.rmdir(leaf)

    def paths_for(self, container_id: str) -> list[Path]:
        """The cgroup dirs a container of this backend has (whether or not they exist)."""
        return [root_dir / container_id for root_dir in self.root_dirs]

    def container_dirs(self) -> dict[str, list[Path]]:
        """Container id -> its cgroup dirs, for every container cgroup under root."""
        found: dict[str, list[Path]] = {}
        for root_dir in self.root_dirs:
            try:
                entries = list(os.scandir(root_dir))
            except FileNotFoundError:
                continue
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    found.setdefault(entry.name, []).append(Path(entry.path))
        return found

    def teardown(self) -> bool:
        """Remove the agent root dirs (which must hold no container) and created ancestors."""
        ok = True
        for root_dir in self.root_dirs:
            try:
                rmdir_tree(root_dir)
            except OSError:
                ok = False
        for directory in reversed(self.created):
            if directory in self.root_dirs:
                continue
            with contextlib.suppress(OSError):
                os.rmdir(directory)
        # Ancestors shared with other agents (e.g. "aiomesos/") go once the last of them has left:
        # rmdir fails harmlessly while another agent's root is still inside.
        for root_dir in self.root_dirs:
            parent = root_dir.parent
            for _ in range(len(self.root.parts) - 1):
                try:
                    os.rmdir(parent)
                except OSError:
                    break
                parent = parent.parent
        return ok


class V1Backend(Backend):
    """cgroup v1: one hierarchy per mounted subsystem (joint mounts used once)."""

    def __init__(
        self,
        root: PurePosixPath,
        isolators: list[str],
        mounts: dict[str, Path],
        enable_cfs: bool,
        max_task_processes: int,
    ) -> None:
        super().__init__(root, isolators, enable_cfs, max_task_processes, version=1)
        self.subsystems = sorted({V1_SUBSYSTEM[name] for name in isolators})
        # unique mount point -> subsystems it carries, join order follows subsystem order
        self.mount_dirs: dict[Path, set[str]] = {}
        for subsystem in self.subsystems:
            self.mount_dirs.setdefault(mounts[subsystem], set()).add(subsystem)
        self.root_dirs = [mount / root for mount in self.mount_dirs]
        self._root_strs = [str(root_dir) for root_dir in self.root_dirs]
        # subsystem -> index of its hierarchy's dir in a container's cgroup paths
        self._index = {
            subsystem: index for index, subsystems in enumerate(self.mount_dirs.values()) for subsystem in subsystems
        }

    def setup(self) -> None:
        for mount in self.mount_dirs:
            self.created.extend(make_dirs(mount, self.root))
        if "memory" in self._index:
            memory_root = self.root_dirs[self._index["memory"]]
            self.has_swap_limit = (memory_root / "memory.memsw.limit_in_bytes").exists()

    def slot(self, isolator: str) -> int:
        return self._index[V1_SUBSYSTEM[isolator]]

    def add_usage(self, paths: list[Path], figures: dict[str, float]) -> None:
        if "processes" not in figures:
            figures["processes"] = float(len(read_pids(paths[0] / "cgroup.procs")))
        with contextlib.suppress(OSError):
            figures["threads"] = float(len(read_bytes(paths[0] / "tasks").split()))


class V2Backend(Backend):
    """cgroup v2: one unified hierarchy; containers are leaves under <base>/<root>.

    ``base`` is the hierarchy's mount, or the agent's own cgroup when that is delegated to it (see
    ``_delegation``); then ``agent_leaf`` is where setup() first moves the agent (and every other process of
    base), since base may only enable controllers for its children while it holds no process.
    """

    def __init__(
        self,
        root: PurePosixPath,
        isolators: list[str],
        base: Path,
        enable_cfs: bool,
        max_task_processes: int,
        agent_leaf: Path | None = None,
    ) -> None:
        super().__init__(root, isolators, enable_cfs, max_task_processes, version=2)
        self.base = base
        self.agent_leaf = agent_leaf
        self.controllers = sorted({V2_CONTROLLER[name] for name in isolators if name in V2_CONTROLLER})
        self.root_dirs = [base / root]
        self._root_strs = [str(base / root)]

    def _enable(self, directory: Path) -> None:
        if not self.controllers:
            return
        subtree_control = directory / "cgroup.subtree_control"
        enabled = set(read_bytes(subtree_control).decode().split())
        missing = [controller for controller in self.controllers if controller not in enabled]
        if missing:
            write_file(subtree_control, " ".join("+" + controller for controller in missing))

    def setup(self) -> None:
        if self.agent_leaf is not None:
            enter_leaf(self.base, self.agent_leaf)
        self.created.extend(make_dirs(self.base, self.root, self._enable))
        root_dir = self.root_dirs[0]
        self._enable(root_dir)
        enabled = set(read_bytes(root_dir / "cgroup.subtree_control").decode().split())
        if not set(self.controllers) <= enabled:
            raise OSError(
                errno.EINVAL,
                f"controllers {sorted(set(self.controllers) - enabled)} not enabled",
                str(root_dir / "cgroup.subtree_control"),
            )
        self.has_swap_limit = (root_dir / "memory.swap.max").exists()
        self.has_kill_file = (root_dir / "cgroup.kill").exists()

    def slot(self, isolator: str) -> int:
        return 0

    def add_usage(self, paths: list[Path], figures: dict[str, float]) -> None:
        """The core figures: cpu time (v2 accounts it in every cgroup's cpu.stat, controller or not),
        throttling when the cpu controller is on, processes, threads."""
        directory = paths[0]
        with contextlib.suppress(OSError):
            cpu_stat = read_keyed(directory / "cpu.stat")
            figures["cpus_user_time_secs"] = cpu_stat.get("user_usec", 0) / 1e6
            figures["cpus_system_time_secs"] = cpu_stat.get("system_usec", 0) / 1e6
            if "nr_periods" in cpu_stat:
                figures["cpus_nr_periods"] = float(cpu_stat["nr_periods"])
                figures["cpus_nr_throttled"] = float(cpu_stat.get("nr_throttled", 0))
                figures["cpus_throttled_time_secs"] = cpu_stat.get("throttled_usec", 0) / 1e6
        if "processes" not in figures:
            figures["processes"] = float(len(read_pids(directory / "cgroup.procs")))
        with contextlib.suppress(OSError):
            figures["threads"] = float(len(read_bytes(directory / "cgroup.threads").split()))
