"""Cgroup file system helpers and the v1 / v2 backends.

Everything here is synchronous and cheap: cgroupfs reads and writes are
served from kernel memory, so they run directly on the event loop.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import structlog

from . import _bpf_devices
from ._types import LaunchError, LaunchSpec

log = structlog.get_logger(__name__)

# Isolator names, in canonical order.
CPU = "cgroups/cpu"
CPUACCT = "cgroups/cpuacct"
MEM = "cgroups/mem"
PIDS = "cgroups/pids"
CGROUP_ISOLATORS: tuple[str, ...] = (CPU, CPUACCT, MEM, PIDS)
# Device control, used only to confine tasks to their GPUs: the devices controller on v1, an eBPF
# program per container cgroup on v2 (which has no devices files; see _bpf_devices).
DEVICES = "cgroups/devices"

# Which v1 subsystem each isolator needs.
V1_SUBSYSTEM: dict[str, str] = {CPU: "cpu", CPUACCT: "cpuacct", MEM: "memory", PIDS: "pids", DEVICES: "devices"}
# Which v2 controller each isolator needs (cpu accounting comes with the cpu controller's cpu.stat).
V2_CONTROLLER: dict[str, str] = {CPU: "cpu", CPUACCT: "cpu", MEM: "memory", PIDS: "pids"}

NVIDIA_MAJOR = 195
CFS_PERIOD_US = 100_000
CLK_TCK = float(os.sysconf("SC_CLK_TCK"))
_RETRY_ERRNOS = (errno.EBUSY, errno.ENOTEMPTY, errno.EAGAIN)


# --------------------------------------------------------------------------- files


def write_file(path: str | Path, data: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)


def read_bytes(path: str | Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks: list[bytes] = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def read_pids(procs_file: str | Path) -> list[int]:
    """The pids listed in a ``cgroup.procs`` file; empty when it is gone."""
    try:
        data = read_bytes(procs_file)
    except (FileNotFoundError, NotADirectoryError, ProcessLookupError, OSError):
        return []
    return [int(x) for x in data.split()]


def read_keyed(path: str | Path) -> dict[str, int]:
    """Parse a flat keyed file (``key value`` per line) such as memory.stat."""
    out: dict[str, int] = {}
    for line in read_bytes(path).splitlines():
        parts = line.split()
        if len(parts) == 2:
            with contextlib.suppress(ValueError):
                out[parts[0].decode()] = int(parts[1])
    return out


def read_counter(path: str | Path, key: bytes) -> int:
    """The value of one key of a flat keyed file, 0 when absent or unreadable."""
    try:
        data = read_bytes(path)
    except OSError:
        return 0
    for line in data.splitlines():
        if line.startswith(key):
            parts = line.split()
            if len(parts) == 2 and parts[0] == key:
                try:
                    return int(parts[1])
                except ValueError:
                    return 0
    return 0


def read_int(path: str | Path) -> int | None:
    """An integer file; ``max`` (v2 "unlimited") and errors give None."""
    try:
        text = read_bytes(path).split()
    except OSError:
        return None
    if not text or text[0] == b"max":
        return None
    try:
        return int(text[0])
    except ValueError:
        return None


# --------------------------------------------------------------------------- mounts


@dataclass(frozen=True)
class Mount:
    mount_point: Path
    fstype: str
    options: frozenset[str]


def _unescape(field_: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    if "\\" not in field_:
        return field_
    out = []
    i = 0
    while i < len(field_):
        if field_[i] == "\\" and i + 4 <= len(field_) and field_[i + 1 : i + 4].isdigit():
            out.append(chr(int(field_[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field_[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    """The cgroup and cgroup2 mounts listed in /proc/self/mountinfo text."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        lf = left.split()
        rf = right.split()
        if len(lf) < 5 or len(rf) < 3 or rf[0] not in ("cgroup", "cgroup2"):
            continue
        mounts.append(Mount(Path(_unescape(lf[4])), rf[0], frozenset(rf[2].split(","))))
    return mounts


def parse_proc_mounts(text: str) -> list[Mount]:
    """Same as parse_mountinfo, from /proc/mounts text (the fallback)."""
    mounts = []
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 4 and f[2] in ("cgroup", "cgroup2"):
            mounts.append(Mount(Path(_unescape(f[1])), f[2], frozenset(f[3].split(","))))
    return mounts


def detect_mounts() -> list[Mount]:
    for path, parser in (("/proc/self/mountinfo", parse_mountinfo), ("/proc/mounts", parse_proc_mounts)):
        try:
            with open(path) as f:
                return parser(f.read())
        except OSError:
            continue
    return []


def _under(path: Path, base: Path) -> bool:
    return path == base or base in path.parents


def v1_mounts(mounts: Iterable[Mount], base: Path) -> dict[str, Path]:
    """Subsystem name -> mount point, for the v1 subsystems we know, mounted under base."""
    wanted = set(V1_SUBSYSTEM.values())
    found: dict[str, Path] = {}
    for m in mounts:
        if m.fstype != "cgroup" or not _under(m.mount_point, base):
            continue
        for opt in m.options & wanted:
            found.setdefault(opt, m.mount_point)
    return found


def v2_mount(mounts: Iterable[Mount], base: Path) -> Path | None:
    """The cgroup2 mount at base, else the first one under base."""
    candidates = [m.mount_point for m in mounts if m.fstype == "cgroup2" and _under(m.mount_point, base)]
    if base in candidates:
        return base
    return candidates[0] if candidates else None


def v2_controllers(mount: Path) -> set[str]:
    try:
        return set(read_bytes(mount / "cgroup.controllers").decode().split())
    except OSError:
        return set()


# --------------------------------------------------------------------------- tree ops


def make_dirs(base: Path, rel: PurePosixPath, on_dir: Callable[[Path], None] | None = None) -> list[Path]:
    """mkdir -p base/rel; calls on_dir(parent) before creating each child.

    Returns the directories it created (outermost first).  Tolerates a
    concurrent creator or remover of the same ancestors.
    """
    created: list[Path] = []
    current = base
    for part in rel.parts:
        child = current / part
        for _attempt in range(20):
            if on_dir is not None:
                on_dir(current)
            try:
                os.mkdir(child)
                created.append(child)
                break
            except FileExistsError:
                break
            except FileNotFoundError:
                # An ancestor was removed under us (another agent shutting down): rebuild it.
                if current == base:
                    raise
                created.extend(make_dirs(base, PurePosixPath(*current.relative_to(base).parts), on_dir))
        else:
            raise OSError(errno.EAGAIN, "cgroup directory keeps disappearing", str(child))
        current = child
    return created


def signal_tree(directory: Path, sig: int) -> int:
    """Send sig to every process in directory's cgroup and its descendants; returns the count."""
    count = 0
    for dirpath, _dirs, _files in os.walk(directory):
        for pid in read_pids(os.path.join(dirpath, "cgroup.procs")):
            count += 1
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
    return count


def rmdir_tree(directory: Path) -> None:
    """rmdir directory and any child cgroups, deepest first; missing is fine."""
    for dirpath, _dirs, _files in os.walk(directory, topdown=False):
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(dirpath)


def kill_and_remove_sync(paths: Iterable[Path], timeout: float = 10.0, kill_file: bool = False) -> bool:
    """Kill every process in the cgroups at paths and remove them, blocking.

    Returns False when something could not be removed before the timeout.
    """
    paths = [p for p in paths if p.exists()]
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        if kill_file:
            for p in paths:
                with contextlib.suppress(OSError):
                    write_file(p / "cgroup.kill", "1")
        alive = sum(signal_tree(p, signal.SIGKILL) for p in paths)
        if alive == 0:
            try:
                for p in paths:
                    rmdir_tree(p)
                return True
            except OSError as e:
                if e.errno not in _RETRY_ERRNOS:
                    raise
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


# --------------------------------------------------------------------------- backends


@dataclass
class Backend:
    """The cgroup hierarchy (or hierarchies) one Containerizer works in."""

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
    # GPU index -> device minor, for device control: a task may open its own GPUs' minors only.
    gpu_minors: dict[int, int] = field(default_factory=dict)
    _root_strs: list[str] = field(default_factory=list)

    def denied_devices(self, spec: LaunchSpec) -> list[tuple[int, int]]:
        """The (major, minor) character devices the container must not open: every GPU not its own."""
        own = set(spec.gpus)
        return [(NVIDIA_MAJOR, minor) for index, minor in sorted(self.gpu_minors.items()) if index not in own]

    def setup(self) -> None:
        raise NotImplementedError

    def create(self, spec: LaunchSpec) -> list[Path]:
        raise NotImplementedError

    def oom_file(self, paths: list[Path]) -> str | None:
        raise NotImplementedError

    def stats(self, paths: list[Path]) -> dict[str, float]:
        raise NotImplementedError

    def _mkdir_leaves(self, container_id: str) -> list[str]:
        made: list[str] = []
        try:
            for rd in self._root_strs:
                leaf = f"{rd}/{container_id}"
                os.mkdir(leaf)
                made.append(leaf)
        except FileExistsError as e:
            self._undo(made)
            raise LaunchError(
                f"cgroup {e.filename} already exists (a container {container_id!r} is still running?)"
            ) from e
        except OSError as e:
            self._undo(made)
            raise LaunchError(f"cannot create cgroup {e.filename}: {e.strerror}") from e
        return made

    @staticmethod
    def _undo(made: list[str]) -> None:
        for p in made:
            with contextlib.suppress(OSError):
                os.rmdir(p)

    def _write_limits(self, made: list[str], writes: list[tuple[str, str, bool]]) -> list[Path]:
        """Write (path, value, required) limits; a failed optional write (swap tuning) is logged."""
        for path, value, required in writes:
            try:
                write_file(path, value)
            except OSError as e:
                if not required:
                    log.warning("containerizer.optional_limit_failed", path=path, error=e.strerror)
                    continue
                self._undo(made)
                raise LaunchError(f"cannot write {value!r} to {path}: {e.strerror}") from e
        return [Path(p) for p in made]

    def paths_for(self, container_id: str) -> list[Path]:
        """The cgroup dirs a container of this backend has (whether or not they exist)."""
        return [rd / container_id for rd in self.root_dirs]

    def container_dirs(self) -> dict[str, list[Path]]:
        """Container id -> its cgroup dirs, for every container cgroup under root."""
        found: dict[str, list[Path]] = {}
        for rd in self.root_dirs:
            try:
                entries = list(os.scandir(rd))
            except FileNotFoundError:
                continue
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    found.setdefault(entry.name, []).append(Path(entry.path))
        return found

    def teardown(self) -> bool:
        """Remove the agent root dirs (which must hold no container) and created ancestors."""
        ok = True
        for rd in self.root_dirs:
            try:
                rmdir_tree(rd)
            except OSError:
                ok = False
        for d in reversed(self.created):
            if d in self.root_dirs:
                continue
            with contextlib.suppress(OSError):
                os.rmdir(d)
        # Ancestors shared with other agents (e.g. "aiomesos/") go once the last of them has left:
        # rmdir fails harmlessly while another agent's root is still inside.
        for rd in self.root_dirs:
            parent = rd.parent
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
        self.subsystems = sorted({V1_SUBSYSTEM[i] for i in isolators})
        # unique mount point -> subsystems it carries, join order follows subsystem order
        self.mount_dirs: dict[Path, set[str]] = {}
        for s in self.subsystems:
            self.mount_dirs.setdefault(mounts[s], set()).add(s)
        self.root_dirs = [m / root for m in self.mount_dirs]
        self._root_strs = [str(d) for d in self.root_dirs]
        self._index = {s: i for i, (_m, subs) in enumerate(self.mount_dirs.items()) for s in subs}
        self.has_memsw = False

    def setup(self) -> None:
        for mount in self.mount_dirs:
            self.created.extend(make_dirs(mount, self.root))
        if "memory" in self._index:
            self.has_memsw = (self.root_dirs[self._index["memory"]] / "memory.memsw.limit_in_bytes").exists()

    def create(self, spec: LaunchSpec) -> list[Path]:
        made = self._mkdir_leaves(spec.container_id)
        writes: list[tuple[str, str, bool]] = []
        idx = self._index
        if "cpu" in idx and spec.cpus is not None:
            d = made[idx["cpu"]]
            writes.append((f"{d}/cpu.shares", str(max(2, int(spec.cpus * 1024))), True))
            if self.enable_cfs:
                quota = max(1000, int(spec.cpus * CFS_PERIOD_US))
                writes.append((f"{d}/cpu.cfs_quota_us", str(quota), True))
        if "memory" in idx and spec.mem_mb is not None:
            d = made[idx["memory"]]
            limit = str(int(spec.mem_mb * 1024 * 1024))
            writes.append((f"{d}/memory.limit_in_bytes", limit, True))
            if self.has_memsw:
                writes.append((f"{d}/memory.memsw.limit_in_bytes", limit, False))
            writes.append((f"{d}/memory.swappiness", "0", False))
        if "pids" in idx:
            writes.append((f"{made[idx['pids']]}/pids.max", str(self.max_task_processes), True))
        if "devices" in idx:
            d = made[idx["devices"]]
            for major, minor in self.denied_devices(spec):
                writes.append((f"{d}/devices.deny", f"c {major}:{minor} rwm", True))
        return self._write_limits(made, writes)

    def oom_file(self, paths: list[Path]) -> str | None:
        i = self._index.get("memory")
        return None if i is None else f"{paths[i]}/memory.oom_control"

    def stats(self, paths: list[Path]) -> dict[str, float]:
        out: dict[str, float] = {}
        idx = self._index
        if "cpuacct" in idx:
            with contextlib.suppress(OSError):
                st = read_keyed(paths[idx["cpuacct"]] / "cpuacct.stat")
                out["cpus_user_time_secs"] = st.get("user", 0) / CLK_TCK
                out["cpus_system_time_secs"] = st.get("system", 0) / CLK_TCK
        if "cpu" in idx:
            d = paths[idx["cpu"]]
            with contextlib.suppress(OSError):
                st = read_keyed(d / "cpu.stat")
                out["cpus_nr_periods"] = float(st.get("nr_periods", 0))
                out["cpus_nr_throttled"] = float(st.get("nr_throttled", 0))
                out["cpus_throttled_time_secs"] = st.get("throttled_time", 0) / 1e9
            quota = read_int(d / "cpu.cfs_quota_us")
            if quota is not None and quota > 0:
                out["cpus_limit"] = quota / CFS_PERIOD_US
        if "memory" in idx:
            d = paths[idx["memory"]]
            with contextlib.suppress(OSError):
                st = read_keyed(d / "memory.stat")
                out["mem_rss_bytes"] = float(st.get("total_rss", st.get("rss", 0)))
                out["mem_cache_bytes"] = float(st.get("total_cache", st.get("cache", 0)))
            usage = read_int(d / "memory.usage_in_bytes")
            if usage is not None:
                out["mem_total_bytes"] = float(usage)
            limit = read_int(d / "memory.limit_in_bytes")
            if limit is not None and limit < (1 << 62):
                out["mem_limit_bytes"] = float(limit)
        if "pids" in idx:
            cur = read_int(paths[idx["pids"]] / "pids.current")
            if cur is not None:
                out["processes"] = float(cur)
        if paths:
            if "processes" not in out:
                out["processes"] = float(len(read_pids(paths[0] / "cgroup.procs")))
            with contextlib.suppress(OSError):
                out["threads"] = float(len(read_bytes(paths[0] / "tasks").split()))
        return out


class V2Backend(Backend):
    """cgroup v2: one unified hierarchy; containers are leaves under <mount>/<root>."""

    def __init__(
        self,
        root: PurePosixPath,
        isolators: list[str],
        mount: Path,
        enable_cfs: bool,
        max_task_processes: int,
    ) -> None:
        super().__init__(root, isolators, enable_cfs, max_task_processes, version=2)
        self.mount = mount
        self.controllers = sorted({V2_CONTROLLER[i] for i in isolators if i in V2_CONTROLLER})
        self.root_dirs = [mount / root]
        self._root_strs = [str(mount / root)]
        self.has_swap_max = False

    def _enable(self, directory: Path) -> None:
        if not self.controllers:
            return
        ctl = directory / "cgroup.subtree_control"
        enabled = set(read_bytes(ctl).decode().split())
        missing = [c for c in self.controllers if c not in enabled]
        if missing:
            write_file(ctl, " ".join("+" + c for c in missing))

    def setup(self) -> None:
        self.created.extend(make_dirs(self.mount, self.root, self._enable))
        rd = self.root_dirs[0]
        self._enable(rd)
        enabled = set(read_bytes(rd / "cgroup.subtree_control").decode().split())
        if not set(self.controllers) <= enabled:
            raise OSError(
                errno.EINVAL,
                f"controllers {sorted(set(self.controllers) - enabled)} not enabled",
                str(rd / "cgroup.subtree_control"),
            )
        self.has_swap_max = (rd / "memory.swap.max").exists()
        self.has_kill_file = (rd / "cgroup.kill").exists()

    def create(self, spec: LaunchSpec) -> list[Path]:
        made = self._mkdir_leaves(spec.container_id)
        d = made[0]
        ctl = self.controllers
        writes: list[tuple[str, str, bool]] = []
        if "cpu" in ctl and spec.cpus is not None:
            shares = max(2, int(spec.cpus * 1024))
            writes.append((f"{d}/cpu.weight", str(1 + ((shares - 2) * 9999) // 262142), True))
            if self.enable_cfs:
                quota = max(1000, int(spec.cpus * CFS_PERIOD_US))
                writes.append((f"{d}/cpu.max", f"{quota} {CFS_PERIOD_US}", True))
        if "memory" in ctl and spec.mem_mb is not None:
            writes.append((f"{d}/memory.max", str(int(spec.mem_mb * 1024 * 1024)), True))
            if self.has_swap_max:
                writes.append((f"{d}/memory.swap.max", "0", False))
        if "pids" in ctl:
            writes.append((f"{d}/pids.max", str(self.max_task_processes), True))
        if DEVICES in self.isolators and (deny := self.denied_devices(spec)):
            try:
                _bpf_devices.attach_deny(d, deny)
            except OSError as e:
                self._undo(made)
                raise LaunchError(f"cannot attach the device filter to {d}: {e.strerror}") from e
        return self._write_limits(made, writes)

    def oom_file(self, paths: list[Path]) -> str | None:
        return f"{paths[0]}/memory.events" if "memory" in self.controllers else None

    def stats(self, paths: list[Path]) -> dict[str, float]:
        out: dict[str, float] = {}
        d = paths[0]
        with contextlib.suppress(OSError):
            st = read_keyed(d / "cpu.stat")
            out["cpus_user_time_secs"] = st.get("user_usec", 0) / 1e6
            out["cpus_system_time_secs"] = st.get("system_usec", 0) / 1e6
            if "nr_periods" in st:
                out["cpus_nr_periods"] = float(st["nr_periods"])
                out["cpus_nr_throttled"] = float(st.get("nr_throttled", 0))
                out["cpus_throttled_time_secs"] = st.get("throttled_usec", 0) / 1e6
        if "cpu" in self.controllers:
            with contextlib.suppress(OSError, ValueError):
                quota, period = read_bytes(d / "cpu.max").split()
                if quota != b"max":
                    out["cpus_limit"] = int(quota) / int(period)
        if "memory" in self.controllers:
            with contextlib.suppress(OSError):
                st = read_keyed(d / "memory.stat")
                out["mem_rss_bytes"] = float(st.get("anon", 0))
                out["mem_cache_bytes"] = float(st.get("file", 0))
            cur = read_int(d / "memory.current")
            if cur is not None:
                out["mem_total_bytes"] = float(cur)
            limit = read_int(d / "memory.max")
            if limit is not None:
                out["mem_limit_bytes"] = float(limit)
        cur = read_int(d / "pids.current") if "pids" in self.controllers else None
        out["processes"] = float(cur if cur is not None else len(read_pids(d / "cgroup.procs")))
        with contextlib.suppress(OSError):
            out["threads"] = float(len(read_bytes(d / "cgroup.threads").split()))
        return out
