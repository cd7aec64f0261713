"""/proc readers: process identity (pid reuse), the process table for posix polling, the boot id."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _stat_fields(data: bytes) -> list[bytes]:
    """Fields of /proc/<pid>/stat after the ``(comm)`` field: [0] is the state (field 3)."""
    return data[data.rindex(b")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot, field 22 of /proc/<pid>/stat); None when gone.

    (pid, start time) names a process for good: a pid reused later has a later start time.
    """
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.read(fd, 4096)
        finally:
            os.close(fd)
        return int(_stat_fields(data)[19])
    except (OSError, ValueError, IndexError):
        return None


def boottime_ticks() -> int:
    """Now, in the unit and clock of /proc/<pid>/stat start times (clock ticks since boot).

    Read just before and just after starting a process, it brackets that
    process's start time without reading /proc/<pid>/stat (which waits for
    the new process to finish its exec).
    """
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME) * CLK_TCK // 1_000_000_000


def running(pid: int, started: int, started_max: int | None = None) -> bool:
    """Whether the process pid, started at started (to started_max), still runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = _stat_fields(f.read())
        st = int(fields[19])
        return started <= st <= (started if started_max is None else started_max) and fields[0] not in (b"Z", b"X")
    except (OSError, ValueError, IndexError):
        return False


@dataclass(frozen=True, slots=True)
class ProcInfo:
    ppid: int
    pgid: int
    rss_bytes: int
    sid: int = 0
    start_time: int = 0
    zombie: bool = False


def process_table() -> dict[int, ProcInfo]:
    """Every process: parent, process group, session, start time, resident memory (one read per process;
    run it in a thread)."""
    table: dict[int, ProcInfo] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return table
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = _stat_fields(f.read())
            table[int(name)] = ProcInfo(
                int(fields[1]),
                int(fields[2]),
                int(fields[21]) * PAGE_SIZE,
                int(fields[3]),
                int(fields[19]),
                fields[0] in (b"Z", b"X"),
            )
        except (OSError, ValueError, IndexError):
            continue
    return table


def tree_members(table: dict[int, ProcInfo], root: int) -> set[int]:
    """root, its descendants, and every process still in its process group (orphans included)."""
    children: dict[int, list[int]] = {}
    members = set()
    for pid, info in table.items():
        children.setdefault(info.ppid, []).append(pid)
        if info.pgid == root:
            members.add(pid)
    stack = [root, *members]
    while stack:
        pid = stack.pop()
        for child in children.get(pid, ()):
            if child not in members:
                members.add(child)
                stack.append(child)
    if root in table:
        members.add(root)
    return members


def group_members(table: dict[int, ProcInfo], pgid: int) -> list[int]:
    return [pid for pid, info in table.items() if info.pgid == pgid]


def session_members(table: dict[int, ProcInfo], sid: int, started_since: int = 0) -> list[int]:
    """The live processes of session sid that started at or after started_since (clock ticks since boot)."""
    return [p for p, i in table.items() if i.sid == sid and i.start_time >= started_since and not i.zombie]


def pid_namespace_init(pids: list[int]) -> int | None:
    """Of pids, the one that is pid 1 of a pid namespace below ours (its NSpid ends in 1), if any."""
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"NSpid:"):
                        ids = line.split()[1:]
                        if len(ids) >= 2 and ids[-1] == b"1":
                            return pid
                        break
        except OSError:
            continue
    return None
