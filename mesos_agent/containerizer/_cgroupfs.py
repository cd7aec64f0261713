"""cgroupfs reads and writes, and operations on a cgroup subtree (create, signal, remove).

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
from pathlib import Path, PurePosixPath

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
    paths = [path for path in paths if path.exists()]
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        if kill_file:
            for path in paths:
                with contextlib.suppress(OSError):
                    write_file(path / "cgroup.kill", "1")
        alive = sum(signal_tree(path, signal.SIGKILL) for path in paths)
        if alive == 0:
            try:
                for path in paths:
                    rmdir_tree(path)
                return True
            except OSError as e:
                if e.errno not in _RETRY_ERRNOS:
                    raise
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
