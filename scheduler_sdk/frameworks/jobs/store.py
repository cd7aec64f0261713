"""The jobs service's store: one SQLite file in its work dir (`jobs.db`), written before anything it records is
acted on, so that a restarted (or killed) service carries on where it was.

What it keeps: the framework id (to resubscribe as the same framework), every job (its spec's YAML, who submitted
it, its cron bookkeeping) and every run: its state machine's header (run.py's `Run.header`) and one row per task
slot, so that a status update writes the one slot it changed, not the whole run. Writes are small and synchronous:
the service writes a run's new state before the status update that changed it is acknowledged."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    spec_yaml TEXT NOT NULL,
    filename TEXT NOT NULL,
    owner TEXT NOT NULL,
    submitted_at REAL NOT NULL,
    stopped INTEGER NOT NULL DEFAULT 0,
    next_run_at REAL,
    last_fire REAL,
    runs INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS runs (
    job_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    state TEXT NOT NULL,
    trigger TEXT NOT NULL,
    scheduled_for REAL,
    created_at REAL NOT NULL,
    ended_at REAL,
    spec_yaml TEXT NOT NULL,
    data TEXT,
    tasks INTEGER NOT NULL DEFAULT 0,
    succeeded INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    running INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, run_id)
);
CREATE TABLE IF NOT EXISTS versions (
    job_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    spec_yaml TEXT NOT NULL,
    filename TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_at REAL NOT NULL,
    cause TEXT NOT NULL,
    reverted_from INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, version)
);
CREATE TABLE IF NOT EXISTS slots (
    job_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    step TEXT NOT NULL,
    idx INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (job_id, run_id, step, idx)
);
"""


class StoreError(Exception):
    """The store cannot be opened or written; the message says which file and why."""


@dataclass
class JobRecord:
    job_id: str
    spec_yaml: str
    filename: str
    owner: str
    submitted_at: float
    stopped: bool = False
    next_run_at: float | None = None  # a cron job: its next fire time
    last_fire: float | None = None  # a cron job: the last fire time handled (run, or skipped)
    runs: int = 0  # runs (and skipped cron times) so far: the next run's sequence number is runs + 1


@dataclass
class VersionRecord:
    """One version of a service's (stream's) spec: every submit that changes it makes one, and so does a revert."""

    job_id: str
    version: int
    spec_yaml: str
    filename: str
    owner: str
    created_at: float
    cause: str  # submit | revert | auto-revert
    reverted_from: int = 0  # revert / auto-revert: the version whose spec it copies


@dataclass
class RunRecord:
    job_id: str
    run_id: str
    seq: int
    state: str  # the run's state, or "skipped" (a cron time not run: overlap skip, or missed and on_missed skip)
    trigger: str  # submit | cron | missed
    created_at: float
    spec_yaml: str  # the spec it runs (a job's spec may be replaced while an older run finishes)
    scheduled_for: float | None = None
    ended_at: float | None = None
    data: dict[str, Any] | None = None  # Run.header() (its slots are rows of their own); None for a skipped time
    tasks: int = 0  # how its slots stand, kept with each write (for lists and histories without the slots)
    succeeded: int = 0
    failed: int = 0
    running: int = 0


class JobStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.db = sqlite3.connect(str(path), isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open the jobs store {path}: {e}") from None
        self._depth = 0

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Writes inside happen together or not at all (nested: the outermost one commits)."""
        if self._depth == 0:
            self.db.execute("BEGIN IMMEDIATE")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self.db.execute("ROLLBACK")
            raise
        self._depth -= 1
        if self._depth == 0:
            self.db.execute("COMMIT")

    # ------------------------------------------------------------------ meta
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # ------------------------------------------------------------------ jobs
    def jobs(self) -> list[JobRecord]:
        rows = self.db.execute(
            "SELECT job_id, spec_yaml, filename, owner, submitted_at, stopped, next_run_at, last_fire, runs "
            "FROM jobs ORDER BY submitted_at, job_id"
        ).fetchall()
        return [JobRecord(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], r[7], r[8]) for r in rows]

    def put_job(self, job: JobRecord) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO jobs (job_id, spec_yaml, filename, owner, submitted_at, stopped, next_run_at, "
            "last_fire, runs) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job.job_id,
                job.spec_yaml,
                job.filename,
                job.owner,
                job.submitted_at,
                int(job.stopped),
                job.next_run_at,
                job.last_fire,
                job.runs,
            ),
        )

    # ------------------------------------------------------------------ versions
    def versions(self, job_id: str) -> list[VersionRecord]:
        rows = self.db.execute(
            "SELECT job_id, version, spec_yaml, filename, owner, created_at, cause, reverted_from FROM versions "
            "WHERE job_id = ? ORDER BY version",
            (job_id,),
        ).fetchall()
        return [VersionRecord(*r) for r in rows]

    def put_version(self, v: VersionRecord) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO versions (job_id, version, spec_yaml, filename, owner, created_at, cause, "
            "reverted_from) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (v.job_id, v.version, v.spec_yaml, v.filename, v.owner, v.created_at, v.cause, v.reverted_from),
        )

    # ------------------------------------------------------------------ runs
    def runs(self, job_id: str) -> list[RunRecord]:
        rows = self.db.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE job_id = ? ORDER BY seq",
            (job_id,),
        ).fetchall()
        return [_run(r) for r in rows]

    def active_runs(self) -> list[RunRecord]:
        rows = self.db.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE ended_at IS NULL AND data IS NOT NULL "
            "ORDER BY created_at, job_id, seq"
        ).fetchall()
        return [_run(r) for r in rows]

    def put_run(self, run: RunRecord) -> None:
        self.db.execute(
            f"INSERT OR REPLACE INTO runs ({_RUN_COLUMNS}) VALUES ({', '.join('?' * _RUN_COLUMN_COUNT)})",
            (
                run.job_id,
                run.run_id,
                run.seq,
                run.state,
                run.trigger,
                run.created_at,
                run.spec_yaml,
                run.scheduled_for,
                run.ended_at,
                None if run.data is None else _json(run.data),
                run.tasks,
                run.succeeded,
                run.failed,
                run.running,
            ),
        )

    def put_slots(self, job_id: str, run_id: str, slots: list[dict[str, Any]]) -> None:
        """Slots of a run as they are now (each dict has its `step` and `index`)."""
        self.db.executemany(
            "INSERT OR REPLACE INTO slots (job_id, run_id, step, idx, data) VALUES (?, ?, ?, ?, ?)",
            [(job_id, run_id, s["step"], s["index"], _json(s)) for s in slots],
        )

    def delete_slots(self, job_id: str, run_id: str, keys: list[tuple[str, int]]) -> None:
        """Slots a run no longer has (a service scaled down, a stage removed)."""
        self.db.executemany(
            "DELETE FROM slots WHERE job_id = ? AND run_id = ? AND step = ? AND idx = ?",
            [(job_id, run_id, step, idx) for step, idx in keys],
        )

    def slots(self, job_id: str, run_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT data FROM slots WHERE job_id = ? AND run_id = ? ORDER BY step, idx", (job_id, run_id)
        ).fetchall()
        return [json.loads(r[0]) for r in rows]


_RUN_COLUMNS = (
    "job_id, run_id, seq, state, trigger, created_at, spec_yaml, scheduled_for, ended_at, data, "
    "tasks, succeeded, failed, running"
)
_RUN_COLUMN_COUNT = len(_RUN_COLUMNS.split(","))


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _run(r: tuple[Any, ...]) -> RunRecord:
    return RunRecord(
        job_id=r[0],
        run_id=r[1],
        seq=r[2],
        state=r[3],
        trigger=r[4],
        created_at=r[5],
        spec_yaml=r[6],
        scheduled_for=r[7],
        ended_at=r[8],
        data=None if r[9] is None else json.loads(r[9]),
        tasks=r[10],
        succeeded=r[11],
        failed=r[12],
        running=r[13],
    )
