"""Garbage collection of finished sandboxes: by age (`--gc-delay`, a week by default), and sooner, oldest first,
while the work dir's disk is fuller than a watermark. A sandbox of a task the agent still holds is never removed.

The decision (`select`) is a pure function of the sandboxes found, the time and the disk's fill; `collect` scans
the work dir, decides, and removes (shutil.rmtree in a worker thread); `run` does that every `interval` seconds.

A sandbox's age counts from its task's end: the agent marks it then (`SandboxRegistry.finished` touches it), and
marks those whose task ended while no agent watched (a reboot, a crash) when it starts again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import structlog

from mesos_agent.files import disk_usage
from mesos_agent.journal import AppendFile
from mesos_agent.sandbox import run_dirs, run_sandbox

log = structlog.get_logger(__name__)

DEFAULT_DELAY = 7 * 24 * 3600.0
DEFAULT_WATERMARK = 0.9


def fraction(text: str) -> float:
    """A number in (0, 1] (for `--gc-disk-watermark`)."""
    value = float(text)
    if not 0 < value <= 1:
        raise ValueError(f"{text} is not in (0, 1]")
    return value


class _Identified(Protocol):
    @property
    def id(self) -> str: ...


class _TaskInfo(Protocol):
    @property
    def task_id(self) -> str: ...


class HeldTask(Protocol):
    """What the GC reads of a task the agent holds (a `mesos_agent.tasks.TaskRun`)."""

    @property
    def framework(self) -> _Identified: ...
    @property
    def info(self) -> _TaskInfo: ...
    @property
    def container_id(self) -> str: ...
    @property
    def sandbox(self) -> Path | None: ...


class TaskHolder(Protocol):
    """What the GC reads of the agent: its work dir, its id and the tasks it holds. (The agent imports this
    module, not the other way round.)"""

    @property
    def work_dir(self) -> Path: ...
    @property
    def agent_id(self) -> str: ...
    @property
    def tasks(self) -> Mapping[tuple[str, str], HeldTask]: ...


def live_sandboxes(agent: TaskHolder) -> list[Path]:
    """The sandboxes of every task the agent holds, finished ones included until their updates are acknowledged."""
    return [
        run_sandbox(agent.work_dir, agent.agent_id, run.framework.id, run.info.task_id, run.container_id, run.sandbox)
        for run in agent.tasks.values()
    ]


@dataclass(frozen=True, slots=True)
class Sandbox:
    path: Path
    finished_at: float  # the last change to the run directory or its top-level files (mtime)
    size: int  # bytes on disk (0 when not measured)


def select(
    sandboxes: Iterable[Sandbox | tuple[Path, float, int]],
    now: float,
    disk_usage_fraction: float,
    *,
    delay_seconds: float = DEFAULT_DELAY,
    disk_watermark: float = DEFAULT_WATERMARK,
    disk_total_bytes: int = 0,
    live: Collection[Path] = (),
) -> list[Path]:
    """The sandboxes to remove, oldest first.

    - those finished more than `delay_seconds` ago;
    - while the disk is fuller than `disk_watermark` (a fraction of `disk_total_bytes`), more of the others,
      oldest first, until what they free brings it under the watermark by estimate (every finished sandbox
      when the disk's size is not known);
    - never one in `live`."""
    keep = {Path(p) for p in live}
    found = [s if isinstance(s, Sandbox) else Sandbox(Path(s[0]), float(s[1]), int(s[2])) for s in sandboxes]
    candidates = sorted((s for s in found if s.path not in keep), key=lambda s: (s.finished_at, str(s.path)))
    chosen = [s for s in candidates if now - s.finished_at >= delay_seconds]
    if disk_usage_fraction > disk_watermark:
        rest = [s for s in candidates if now - s.finished_at < delay_seconds]
        if disk_total_bytes <= 0:
            chosen += rest
        else:
            to_free = (disk_usage_fraction - disk_watermark) * disk_total_bytes
            to_free -= sum(s.size for s in chosen)
            for s in rest:
                if to_free <= 0:
                    break
                chosen.append(s)
                to_free -= s.size
    chosen.sort(key=lambda s: (s.finished_at, str(s.path)))
    return [s.path for s in chosen]


def scan(work_dir: Path, measure: bool, skip: Collection[Path] = ()) -> list[Sandbox]:
    """Every run directory under WORK_DIR/agents/*/frameworks/*/executors/*/runs/ (not the `latest` links, and
    nothing reached through a link: a directory of the layout a task replaced with a link to / must not make the
    GC remove the host's files), but those in `skip` (real paths); sizes are measured only when `measure`."""
    out: list[Sandbox] = []
    for _, _, run in run_dirs(work_dir):
        try:
            if Path(os.path.realpath(run)) in skip:
                continue
            finished = run.stat().st_mtime
            with os.scandir(run) as it:
                for item in it:
                    with contextlib.suppress(OSError):
                        finished = max(finished, item.stat(follow_symlinks=False).st_mtime)
        except OSError:
            continue
        out.append(Sandbox(run, finished, disk_usage(run) if measure else 0))
    return out


def _disk_fill(path: Path) -> tuple[float, int]:
    usage = shutil.disk_usage(path)
    return (usage.used / usage.total if usage.total else 0.0), usage.total


def _prune_parents(run: Path, work_dir: Path) -> None:
    """After a run is removed: its executor's directory once no run is left in it (a dangling `latest` link does
    not count), then the framework's directory once it has no executor. Non-recursive removals only: a launch
    creating a run meanwhile makes them fail harmlessly."""
    runs = run.parent
    latest = runs / "latest"
    if latest.is_symlink() and not latest.exists():
        with contextlib.suppress(OSError):
            latest.unlink()
    for directory in (runs, runs.parent, runs.parent.parent, runs.parent.parent.parent):
        if work_dir not in directory.parents:
            return
        try:
            directory.rmdir()
        except OSError:
            return


class SandboxGC:
    """Removes finished sandboxes of this work dir; see `select` for which.

    `live_sandboxes` gives the sandboxes of the tasks the agent holds (never removed). Nothing is collected while
    `agent_id_getter()` is empty: until the agent has recovered and registered, what is live is not known yet."""

    def __init__(
        self,
        work_dir: Path,
        agent_id_getter: Callable[[], str],
        delay_seconds: float = DEFAULT_DELAY,
        disk_watermark: float = DEFAULT_WATERMARK,
        clock: Callable[[], float] = time.time,
        *,
        live_sandboxes: Callable[[], Iterable[Path]] = lambda: (),
        disk_fill: Callable[[Path], tuple[float, int]] = _disk_fill,
    ) -> None:
        self.work_dir = work_dir
        self.agent_id_getter = agent_id_getter
        self.delay_seconds = delay_seconds
        self.disk_watermark = disk_watermark
        self.clock = clock
        self.live_sandboxes = live_sandboxes
        self.disk_fill = disk_fill
        self.removed = 0

    def select(
        self,
        sandboxes: Iterable[Sandbox | tuple[Path, float, int]],
        now: float,
        disk_usage_fraction: float,
        *,
        disk_total_bytes: int = 0,
        live: Collection[Path] = (),
    ) -> list[Path]:
        """`select` with this collector's delay and watermark (pure)."""
        return select(
            sandboxes,
            now,
            disk_usage_fraction,
            delay_seconds=self.delay_seconds,
            disk_watermark=self.disk_watermark,
            disk_total_bytes=disk_total_bytes,
            live=live,
        )

    async def collect(self) -> list[Path]:
        """One pass: the sandboxes removed."""
        if not self.agent_id_getter():
            return []
        fraction, total = await asyncio.to_thread(self.disk_fill, self.work_dir)
        over = fraction > self.disk_watermark
        # Real paths: a task's sandbox may be known through a path that differs from the scan's (links).
        # Known before the scan, the live sandboxes are not measured; but the scan runs in a thread while the
        # agent goes on launching tasks: the sandboxes to keep are those live once the scan is over. A task is
        # held (live) before its sandbox is created, so whatever the scan found is the sandbox of a task live
        # then, or of one over. A new run never reuses a path (container ids are new): what is live then is all
        # that must be kept.
        before = {Path(os.path.realpath(p)) for p in self.live_sandboxes()}
        found = await asyncio.to_thread(scan, self.work_dir, over, before)
        live = before | {Path(os.path.realpath(p)) for p in self.live_sandboxes()}
        chosen = self.select(found, self.clock(), fraction, disk_total_bytes=total, live=live)
        removed: list[Path] = []
        for path in chosen:
            try:
                await asyncio.to_thread(shutil.rmtree, path)
            except FileNotFoundError:
                continue
            except OSError as e:
                log.warning("sandbox gc: cannot remove", path=str(path), error=str(e))
                continue
            removed.append(path)
        # Executors' directories left empty go too, unless a task the agent holds has (or is about to have: a task
        # is held before its sandbox is created, in a worker thread) a run in one. Checked in the event loop, where
        # tasks are taken on, with no await until the non-recursive rmdirs are done.
        busy = {p.parent for p in self.live_sandboxes()}
        for path in removed:
            if path.parent not in busy:
                _prune_parents(path, self.work_dir)
        if removed:
            self.removed += len(removed)
            log.info(
                "sandbox gc: removed finished sandboxes",
                count=len(removed),
                disk_fill=round(fraction, 3),
                over_watermark=over,
            )
        return removed

    async def run(self, interval: float = 60.0) -> None:
        """Collect every `interval` seconds, until cancelled."""
        while True:
            try:
                await self.collect()
            except Exception:
                log.exception("sandbox gc: pass failed")
            await asyncio.sleep(interval)


class SandboxRegistry:
    """The sandboxes whose task has not been seen to end, in WORK_DIR/meta/sandboxes: a line `+PATH` (relative
    to the work dir) when a sandbox is created, `-PATH` when its task ended and the sandbox was marked finished
    (its modification time set to then: the GC's delay counts from the task's end, not from its last write).

    A task that ends while no agent process watches it (the host rebooted, or the agent crashed and the next one
    killed it as an orphan) is not marked then: the next agent process `load`s what is left and `sweep`s it,
    marking those finished whose task it did not re-adopt. Lines are appended (no file is created per task); the
    file is rewritten with what is still open now and then."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.path = work_dir / "meta" / "sandboxes"
        self._prefix = str(work_dir).rstrip("/") + "/"
        self._open: set[str] = set()
        self._lines = 0
        self._file = AppendFile(self.path)

    def _rel(self, sandbox: Path) -> str | None:
        text = str(sandbox)
        if not text.startswith(self._prefix) or "\n" in text:
            return None
        return text[len(self._prefix) :]

    def load(self) -> set[str]:
        """The sandboxes an earlier agent process left open (relative paths); they are open here too."""
        try:
            lines = self.path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            lines = []
        found: set[str] = set()
        for line in lines:
            if line.startswith("+"):
                found.add(line[1:])
            elif line.startswith("-"):
                found.discard(line[1:])
        self._open |= found
        self._lines = len(lines)
        return found

    def started(self, sandbox: Path) -> None:
        rel = self._rel(sandbox)
        if rel is not None and rel not in self._open:
            self._open.add(rel)
            self._append(f"+{rel}\n")

    def finished(self, sandbox: Path) -> None:
        """Mark the sandbox finished now (it need not exist)."""
        with contextlib.suppress(OSError):
            os.utime(sandbox)
        rel = self._rel(sandbox)
        if rel is not None and rel in self._open:
            self._open.discard(rel)
            self._append(f"-{rel}\n")

    def sweep(self, candidates: Collection[str], keep: Collection[Path]) -> int:
        """Mark finished each of `candidates` (from `load`) that is still open and not in `keep` (the sandboxes
        of the tasks re-adopted); returns how many. Then rewrites the file."""
        kept = {self._rel(p) for p in keep}
        marked = 0
        for rel in sorted(candidates):
            if rel in self._open and rel not in kept:
                self.finished(self.work_dir / rel)
                marked += 1
        self._rewrite()
        return marked

    def open(self) -> set[str]:
        return set(self._open)

    def _append(self, line: str) -> None:
        try:
            self._file.write(line.encode())
        except FileNotFoundError:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file.write(line.encode())
        self._lines += 1
        if self._lines > 2 * len(self._open) + 1024:
            self._rewrite()

    def _rewrite(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(".sandboxes.tmp")
        tmp.write_text("".join(f"+{rel}\n" for rel in sorted(self._open)))
        self._file.close()
        os.replace(tmp, self.path)
        self._lines = len(self._open)
