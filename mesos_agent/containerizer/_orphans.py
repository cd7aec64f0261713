"""Finding and killing what an earlier agent process left under this Containerizer's root (``cleanup_orphans``).

Orphans are found by their cgroups under root and by their traces in the runtime dir: the launch record of
a checkpointed container, the pid journal's record of a posix launch.  Without cgroups their processes are
found by recorded pid and start time (see ``kill_posix_orphan``).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Collection
from pathlib import Path

import structlog

from . import _cgroups as cg
from . import _runtime
from ._procfs import ProcInfo, process_table, session_members, start_time

log = structlog.get_logger(__name__)


class ProcessTable:
    """The process table, read once and only when needed."""

    def __init__(self, read: Callable[[], dict[int, ProcInfo]] = process_table) -> None:
        self._read = read
        self._table: dict[int, ProcInfo] | None = None

    def get(self) -> dict[int, ProcInfo]:
        if self._table is None:
            self._table = self._read()
        return self._table


def kill_posix_orphan(record: _runtime.LaunchRecord, table: dict[int, ProcInfo]) -> None:
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


def clean_cgroups(backend: cg.Backend, spare: Collection[str]) -> set[str]:
    """Kill and remove the container cgroups under root but those in spare; their ids."""
    cleaned: set[str] = set()
    for container_id, paths in sorted(backend.container_dirs().items()):
        if container_id in spare:
            continue
        removed = cg.kill_and_remove_sync(paths, kill_file=backend.has_kill_file)
        log.info("containerizer.orphan_cleaned", container_id=container_id, removed=removed)
        cleaned.add(container_id)
    return cleaned


def clean_runtime_dirs(runtime_dir: Path, spare: Collection[str], boot_id: str, table: ProcessTable) -> set[str]:
    """Remove the runtime dirs but those in spare, killing the posix tasks their launch records name; their ids."""
    try:
        entries = [entry for entry in os.scandir(runtime_dir) if entry.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        entries = []
    cleaned: set[str] = set()
    for entry in entries:
        container_id = entry.name
        if container_id in spare:
            continue
        directory = Path(entry.path)
        record = _runtime.read_record(directory)
        if record is not None and not record.cgroups and record.boot_id == boot_id:
            kill_posix_orphan(record, table.get())
        _runtime.remove_dir(directory)
        log.info("containerizer.orphan_runtime_removed", container_id=container_id)
        cleaned.add(container_id)
    return cleaned


def clean_journal(journal: _runtime.PidJournal, spare: Collection[str], boot_id: str, table: ProcessTable) -> set[str]:
    """Kill the posix tasks the pid journal records but those in spare; rewrite it with the spared; their ids."""
    records = _runtime.read_journal(journal.path)
    cleaned: set[str] = set()
    for container_id, record in sorted(records.items()):
        if container_id in spare:
            continue
        if record.boot_id == boot_id:
            kill_posix_orphan(record, table.get())
        cleaned.add(container_id)
    journal.rewrite({container_id: kept for container_id, kept in records.items() if container_id in spare})
    return cleaned
