"""What `aiomesos job ...`'s batch commands (cli/jobs.py) and service/stream commands (cli/jobs_service.py) share:
times and tables as the CLI prints them, JSON, following a job until it settles, and the client of the jobs
service at `--jobs`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, NamedTuple, Protocol, TextIO

from google.protobuf import json_format
from google.protobuf.message import Message

from aiomesos.v1 import jobs_pb2 as jpb
from scheduler_sdk._daemon.flags import UsageError
from scheduler_sdk.cli import tables
from scheduler_sdk.frameworks.jobs.client import JobsClient, JobsError
from scheduler_sdk.security import SecurityError
from scheduler_sdk.security.config import load_client_config

DEFAULT_JOBS = "127.0.0.1:5060"
POLL_INTERVAL = 0.5  # seconds between two GetJob calls while `job run` follows a run
UNREACHABLE_GRACE = 30.0  # seconds `job run` keeps following through an unreachable service (a restart)
ENDED = ("succeeded", "failed", "stopped")
RUNNING = ("staging", "running")
_COLOURS = {"green": "succeeded healthy", "cyan": "staging running", "yellow": "queued paused", "blue": "scheduled"}
_COLOURS |= {"red": "failed unhealthy reverted", "magenta": "cancelled stopped", "dim": "waiting skipped"}
STYLES = {state: style for style, states in _COLOURS.items() for state in states.split()}  # on a terminal

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


# ----------------------------------------------------------------------------------------- rendering (pure)
def short_time(t: float, now: float | None = None) -> str:
    """Local time: HH:MM:SS today, with the date otherwise; "-" for no time (0)."""
    if not t:
        return "-"
    local = time.localtime(t)
    today = time.localtime(time.time() if now is None else now)
    same_day = local[:3] == today[:3]
    return time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S", local)


def took(seconds: float) -> str:
    """12.3s, 4m05s, 2h03m."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def plural(n: int, word: str) -> str:
    """`1 task`, `3 tasks`."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def job_head(j: jpb.JobSummary, now: float | None = None) -> str:
    """`job x: batch, role ml, owner alice, 3 runs; schedule '0 2 * * *', next run 02:00:00`: the first line of
    `job status`."""
    head = f"job {j.job_id}: {j.type}, role {j.role}" + (f", owner {j.owner}" if j.owner else "")
    head += f", {plural(j.runs, 'run')}"
    if j.schedule:
        head += f"; schedule '{j.schedule}', next run {short_time(j.next_run_at, now)}"
    return head


def task_why(t: jpb.TaskSlot) -> str:
    """A task's WHY cell: why a queued (waiting) task waits, else its last message; "-" for neither."""
    return (t.why_waiting if t.state in ("queued", "waiting") and t.why_waiting else t.message) or "-"


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], state_column: int | None) -> Any:
    """A table as the rest of the CLI prints them; the state column coloured (on a terminal)."""
    from rich.text import Text

    t = tables.FitTable(title, columns)
    for row in rows:
        cells = [Text(cell) for cell in row]
        if state_column is not None:
            cells[state_column].stylize(STYLES.get(row[state_column], ""))
        t.add_row(*cells)
    return t


def to_json(message: Message) -> dict[str, Any]:
    """A message as JSON, field names as in the .proto, zero values included (index 0 is an index)."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def listing(as_json: bool, items: Sequence[Message], rendered: Any) -> int:
    """`--json`: the messages as a JSON array; else the table."""
    if as_json:
        print_json([to_json(m) for m in items])
    else:
        tables.console().print(rendered)
    return 0


# ----------------------------------------------------------------------------------------- following a job
class StatusSource(Protocol):
    async def get_job(self, job_id: str, run_id: str = "") -> jpb.JobStatus: ...


class View(Protocol):
    def update(self, status: jpb.JobStatus) -> None: ...


class Measure(NamedTuple):
    """Where a followed job stands, for a progress bar: `completed` of `total` (None: not known yet), `extra`
    beside it."""

    completed: int
    total: int | None
    extra: str


class PlainView:
    """Not a terminal: the progress line (`line(status)`) each time it changes."""

    def __init__(self, out: TextIO, line: Callable[[jpb.JobStatus], str]) -> None:
        self.out = out
        self.line = line
        self.last = ""

    def update(self, status: jpb.JobStatus) -> None:
        line = self.line(status)
        if line != self.last:
            print(line, file=self.out, flush=True)
            self.last = line


class BarView:
    """A terminal: a rich progress bar of `measure(status)`."""

    def __init__(self, progress: Any, measure: Callable[[jpb.JobStatus], Measure]) -> None:
        self.progress = progress
        self.measure = measure
        self.bar: Any = None

    def update(self, status: jpb.JobStatus) -> None:
        m = self.measure(status)
        if self.bar is None:
            self.bar = self.progress.add_task(status.job.job_id, total=m.total, extra=m.extra)
        self.progress.update(self.bar, total=m.total, completed=m.completed, extra=m.extra)


async def follow_job(
    client: StatusSource,
    job_id: str,
    run_id: str,
    view: View,
    until: Callable[[jpb.JobStatus], bool],
    *,
    interval: float | None = None,
    grace: float = UNREACHABLE_GRACE,
    sleep: Callable[[float], Coroutine[Any, Any, None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> jpb.JobStatus:
    """Poll the job's run every `interval` (default POLL_INTERVAL) until `until(status)`; each status goes to
    `view`. The service unreachable (restarting) for less than `grace` seconds in a row is waited through; a
    refusal (unknown job) is not."""
    unreachable_since: float | None = None
    while True:
        try:
            status = await client.get_job(job_id, run_id)
        except JobsError as e:
            if e.refused:
                raise
            unreachable_since = clock() if unreachable_since is None else unreachable_since
            if clock() - unreachable_since >= grace:
                raise
        else:
            unreachable_since = None
            view.update(status)
            if until(status):
                return status
        await sleep(POLL_INTERVAL if interval is None else interval)


def progress_bar(unit: str) -> Any:
    """The bar `job run` shows on a terminal: `JOB ━━━━━ 3/5 <unit>, <extra> 0:00:12`."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit + ", {task.fields[extra]}"),
        TimeElapsedColumn(),
        transient=False,
    )


async def follow(
    client: StatusSource,
    job_id: str,
    run_id: str,
    until: Callable[[jpb.JobStatus], bool],
    *,
    line: Callable[[jpb.JobStatus], str],
    measure: Callable[[jpb.JobStatus], Measure],
    unit: str,
) -> jpb.JobStatus:
    """`follow_job` with a progress bar on a terminal, else progress lines on stdout."""
    if sys.stdout.isatty():
        with progress_bar(unit) as bar:
            return await follow_job(client, job_id, run_id, BarView(bar, measure), until)
    return await follow_job(client, job_id, run_id, PlainView(sys.stdout, line), until)


# ----------------------------------------------------------------------------------------- plumbing
def jobs_address(args: argparse.Namespace) -> str:
    """--jobs, else the client config's `jobs` (the config --config / $AIOMESOS_CONFIG name), else the default."""
    if args.jobs:
        return str(args.jobs)
    try:
        config = load_client_config(args.config)
    except SecurityError as e:
        raise UsageError(str(e)) from None
    return config.jobs if config is not None and config.jobs else DEFAULT_JOBS


def client(args: argparse.Namespace) -> JobsClient:
    try:
        return JobsClient(jobs_address(args))
    except SecurityError as e:
        raise UsageError(str(e)) from None
