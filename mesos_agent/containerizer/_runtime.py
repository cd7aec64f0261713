"""What a container leaves on disk for a later agent process.

Every other container launched without cgroups (posix isolation) gets a
pid record in the journal ``<runtime_dir>/.pid-journal``: one appended line
``+ PID START START_MAX BOOT_ID CONTAINER_ID`` right after the spawn (the
main process, its start time bracketed in clock ticks since boot, the boot
id), one line ``- CONTAINER_ID`` when the container is over.  One append to
a file kept open, a few microseconds: creating a file per launch costs
hundreds on a busy ext4.  The journal is rewritten with only the live
records now and then, and by ``cleanup_orphans``.  It is how a later agent
process finds the tasks of non-checkpointing frameworks that a ``kill -9`` of
the agent left running (with cgroups, their cgroups are the trace); they are
never recovered, only cleaned up.

For a checkpointed container, ``<runtime_dir>/<container_id>/`` holds

* ``container.json``: the launch record, written atomically right after the
  launch: the wrapper's pid and start time (a pid alone could name another
  process by then; the start time is bracketed by clock readings taken
  around the spawn, [start_time, start_time_max] in clock ticks since boot),
  the boot id, the cgroup paths and the limits;
* ``status``: the task's wait status as ``/bin/sh`` reports it (0-255; a
  death by signal N is 128+N), written atomically by the launch wrapper
  when the task ends, whether or not an agent is there to see it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import structlog

from mesos_agent.journal import AppendFile

from ._types import LaunchSpec

log = structlog.get_logger(__name__)

RECORD = "container.json"
STATUS = "status"
RECORD_VERSION = 1
_NSIG = int(getattr(signal, "NSIG", 65))


@dataclass(frozen=True)
class LaunchRecord:
    container_id: str
    pid: int
    start_time: int
    boot_id: str
    cgroups: list[str]
    cwd: str
    stdout: str
    stderr: str
    cpus: float | None = None
    mem_mb: float | None = None
    disk_mb: float | None = None
    gpus: list[int] = field(default_factory=list)
    pid_namespace: bool = False
    user: str | None = None
    launched_at: float = 0.0
    start_time_max: int | None = None
    version: int = RECORD_VERSION

    def started(self, start_time: int | None) -> bool:
        """Whether a process that started at start_time is the recorded wrapper (and not a reused pid)."""
        if start_time is None:
            return False
        latest = self.start_time if self.start_time_max is None else self.start_time_max
        return self.start_time <= start_time <= latest

    @classmethod
    def of(
        cls,
        spec: LaunchSpec,
        pid: int,
        start_time: tuple[int, int],
        boot_id: str,
        cgroups: list[Path],
        pid_namespace: bool,
    ) -> LaunchRecord:
        return cls(
            container_id=spec.container_id,
            pid=pid,
            start_time=start_time[0],
            start_time_max=start_time[1],
            boot_id=boot_id,
            cgroups=[str(p) for p in cgroups],
            cwd=os.path.abspath(spec.cwd),
            stdout=str(spec.stdout_path),
            stderr=str(spec.stderr_path),
            cpus=spec.cpus,
            mem_mb=spec.mem_mb,
            disk_mb=spec.disk_mb,
            gpus=list(spec.gpus),
            pid_namespace=pid_namespace,
            user=spec.user,
            launched_at=time.time(),
        )

    def spec(self) -> LaunchSpec:
        """The launch spec, as far as recovery needs it (the command and its environment are not kept)."""
        return LaunchSpec(
            container_id=self.container_id,
            argv=[],
            env={},
            cwd=Path(self.cwd),
            stdout_path=Path(self.stdout),
            stderr_path=Path(self.stderr),
            cpus=self.cpus,
            mem_mb=self.mem_mb,
            user=self.user,
            checkpoint=True,
            disk_mb=self.disk_mb,
            gpus=tuple(self.gpus),
        )


_FIELDS = tuple(f.name for f in fields(LaunchRecord))


def write_record(directory: Path, record: LaunchRecord) -> None:
    data = json.dumps({name: getattr(record, name) for name in _FIELDS}, separators=(",", ":")).encode()
    tmp = directory / (RECORD + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, directory / RECORD)


def read_record(directory: Path) -> LaunchRecord | None:
    """The launch record in directory; None when missing or unreadable (logged)."""
    try:
        raw: Any = json.loads((directory / RECORD).read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log.error("containerizer.record_unreadable", dir=str(directory), error=str(e))
        return None
    try:
        if not isinstance(raw, dict) or raw.get("version") != RECORD_VERSION:
            raise ValueError(f"unknown record version {raw.get('version') if isinstance(raw, dict) else raw!r}")
        record = LaunchRecord(**{k: v for k, v in raw.items() if k in _FIELDS})
        if not isinstance(record.pid, int) or record.pid <= 0 or not isinstance(record.start_time, int):
            raise ValueError("bad pid or start time")
        return record
    except (TypeError, ValueError) as e:
        log.error("containerizer.record_unreadable", dir=str(directory), error=str(e))
        return None


#: The pid journal's name in runtime_dir (not a usable container id).
JOURNAL = ".pid-journal"


class PidJournal:
    """The pid records of one Containerizer's running posix containers (see the module docstring).

    Appends are not fsynced: they survive the agent process, not the host (nor do the tasks).
    """

    def __init__(self, path: Path, compact_after: int = 1024) -> None:
        self.path = path
        self._file = AppendFile(path)
        self._live: dict[str, bytes] = {}  # container id -> its "+" line
        self._ended = 0
        self._compact_after = compact_after

    def add(self, cid: str, pid: int, started: tuple[int, int], boot_id: str) -> None:
        """Record a launch (OSError when the journal cannot be written)."""
        line = _journal_line(pid, started[0], started[1], boot_id, cid)
        self._file.write(line)  # reopened should another Containerizer on this runtime_dir have rewritten it
        self._live[cid] = line

    def end(self, cid: str) -> None:
        """Record that a container is over (best effort: a failure only leaves a record of a dead process)."""
        if self._live.pop(cid, None) is None:
            return
        try:
            self._file.write(f"- {cid}\n".encode())
        except OSError as e:
            log.warning("containerizer.pid_journal_write_failed", path=str(self.path), error=e.strerror)
        self._ended += 1
        if self._ended >= max(self._compact_after, 2 * len(self._live)):
            # What the journal holds beyond ours (orphans not cleaned up yet, records kept) stays.
            self.rewrite(read_journal(self.path))

    def __contains__(self, cid: object) -> bool:
        return cid in self._live

    def live(self) -> set[str]:
        """The containers recorded through this journal and not over."""
        return set(self._live)

    def rewrite(self, others: dict[str, LaunchRecord]) -> None:
        """Replace the journal (atomically) by this journal's live records plus others; remove it when empty."""
        lines = [
            _journal_line(r.pid, r.start_time, r.start_time_max, r.boot_id, cid)
            for cid, r in others.items()
            if cid not in self._live
        ]
        lines.extend(self._live.values())
        self.close()
        self._ended = 0
        try:
            if not lines:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
                return
            tmp = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, b"".join(lines))
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError as e:
            log.warning("containerizer.pid_journal_rewrite_failed", path=str(self.path), error=e.strerror)

    def close(self) -> None:
        self._file.close()


def _journal_line(pid: int, start_time: int, start_time_max: int | None, boot_id: str | None, cid: str) -> bytes:
    return f"+ {pid} {start_time} {start_time_max} {boot_id or '-'} {cid}\n".encode()


def read_journal(path: Path) -> dict[str, LaunchRecord]:
    """The records of the containers a pid journal says are still running (container id -> minimal record)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as e:
        log.error("containerizer.record_unreadable", path=str(path), error=str(e))
        return {}
    live: dict[str, LaunchRecord] = {}
    for line in data.decode(errors="replace").splitlines():
        if line.startswith("- "):
            live.pop(line[2:], None)
            continue
        parts = line.split(" ", 5)
        try:
            if len(parts) != 6 or parts[0] != "+" or not parts[5]:
                raise ValueError
            pid, start, start_max = int(parts[1]), int(parts[2]), int(parts[3])
            if pid <= 0:
                raise ValueError
        except ValueError:
            # A torn last line of a crash, or junk: skip it.
            log.warning("containerizer.pid_journal_line_skipped", path=str(path), line=line[:100])
            continue
        boot = "" if parts[4] == "-" else parts[4]
        live[parts[5]] = LaunchRecord(parts[5], pid, start, boot, [], "", "", "", start_time_max=start_max)
    return live


def read_status(path: Path | str) -> int | None:
    """The wait status the launch wrapper recorded (0-255), or None when there is none (yet)."""
    try:
        with open(path, "rb") as f:
            text = f.read().strip()
        value = int(text)
    except (OSError, ValueError):
        return None
    return value if 0 <= value <= 255 else None


def decode_status(status: int) -> int:
    """A shell wait status as a returncode: 128+N (N a signal number) becomes -N.

    A task that itself exits with 129-192 is therefore reported as killed by
    that signal: shells make the two indistinguishable.
    """
    if 128 < status < 128 + _NSIG:
        return -(status - 128)
    return status


def remove_dir(directory: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(directory)
