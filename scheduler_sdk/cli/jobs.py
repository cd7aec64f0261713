"""`aiomesos job validate|run|list|status|stop|logs|history|scale|endpoints|promote|revert` (the jobs service's
users) and `aiomesos jobs serve` (the service itself, docs/jobs.md). This is the entry point, with batch and
workflow jobs; services and streams (`job scale` and the rest, and what `job run|status|history` show of them) are
cli/jobs_service.py, what both print alike cli/jobs_common.py.

The job commands talk to the jobs service's gRPC API (JobsClient) at `--jobs HOST:PORT`, else the client
config's `jobs`, else 127.0.0.1:5060; `job logs` finds the task in the service and reads its output from its
agent as `aiomesos task logs` does. A spec is validated here before it is sent: a bad one is never submitted.
Errors are one line: exit 2 for bad input, an unknown job or an unreachable service, 1 for a failed operation (a
run in progress); a refused scale, promote or revert (not a running service, no canary waiting) is bad input."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import grpc

from aiomesos.v1 import jobs_pb2 as jpb
from scheduler_sdk._daemon.flags import FlagParser, UsageError, address, non_negative_int
from scheduler_sdk.cli import jobs_common as common
from scheduler_sdk.cli import jobs_service, tables
from scheduler_sdk.cli import task as task_cli
from scheduler_sdk.cli.jobs_common import (
    DEFAULT_JOBS,
    ENDED,
    RUNNING,
    STYLES,
    Command,
    Measure,
    plural,
    print_json,
    short_time,
    table,
    task_why,
    to_json,
    took,
)
from scheduler_sdk.frameworks.jobs.client import JobsClient, JobsError
from scheduler_sdk.frameworks.jobs.spec import LONG_RUNNING, JobSpec, SpecError, load_spec


# ----------------------------------------------------------------------------------------- parsers
def add_parsers(sub: Any, with_master: Callable[[FlagParser], FlagParser]) -> None:
    """Add `job ACTION ...` and `jobs serve ...` to the `aiomesos` subcommands."""
    job = sub.add_parser("job", help="submit, follow and inspect jobs on the jobs service (docs/jobs.md)")
    jsub = job.add_subparsers(dest="job_command", metavar="ACTION", parser_class=FlagParser)
    jsub.required = True

    def on_service(sp: FlagParser) -> FlagParser:
        sp.add_flag(
            "--jobs",
            type=address,
            default=None,
            help=f"the jobs service, HOST:PORT (default: the client config's, else {DEFAULT_JOBS})",
        )
        return with_master(sp)

    validate = jsub.add_parser("validate", help="check a job spec file here, without submitting it")
    validate.add_argument("file", metavar="FILE")

    run = on_service(
        jsub.add_parser(
            "run", help="submit a job spec and follow its run until it ends (a service's, stream's: its deployment)"
        )
    )
    run.add_argument("file", metavar="FILE")
    run.add_argument("--detach", action="store_true", help="print the job and run id and return at once")
    run.add_argument("--dry-run", action="store_true", help="have the service check the spec (and that it fits) only")

    ls = on_service(jsub.add_parser("list", help="every job, with its latest run"))
    ls.add_argument("--json", action="store_true", help="print a JSON array")

    status = on_service(
        jsub.add_parser(
            "status",
            help="a job's run: its steps (a workflow's DAG) and every task (a service's: version, health, ports)",
        )
    )
    status.add_argument("job_id", metavar="JOB")
    status.add_argument("--run", default="", metavar="RUN", help="this run (default: the latest)")
    status.add_argument("--json", action="store_true", help="print the JobStatus as JSON")

    stop = on_service(jsub.add_parser("stop", help="stop a job's run in progress (and its schedule)"))
    stop.add_argument("job_id", metavar="JOB")

    logs = on_service(jsub.add_parser("logs", help="print a task's stdout (or stderr), read from its agent"))
    logs.add_argument("job_id", metavar="JOB")
    logs.add_argument("--task", type=non_negative_int, default=None, metavar="N", help="the task index (default: 0)")
    logs.add_argument("--step", default="", metavar="S", help="the workflow step (default: the first)")
    logs.add_argument("--run", default="", metavar="RUN", help="this run (default: the latest)")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing what is appended until the task ends")
    logs.add_argument("--stderr", action="store_true", help="the task's stderr instead of its stdout")
    logs.add_argument("--tail", type=non_negative_int, default=None, metavar="N", help="start at the last N lines")

    history = on_service(
        jsub.add_parser(
            "history", help="a job's runs, oldest first (skipped cron times too; a service's versions and deployments)"
        )
    )
    history.add_argument("job_id", metavar="JOB")
    history.add_argument("--json", action="store_true", help="print a JSON array (a service's: an object, see docs)")
    jobs_service.add_parsers(jsub, on_service)

    jobs = sub.add_parser("jobs", help="run the jobs service: aiomesos jobs serve --master M --work-dir D")
    jobs.add_argument("action", choices=["serve"], help="serve: run the daemon (see `aiomesos jobs serve --help`)")
    jobs.add_argument("args", nargs=argparse.REMAINDER, help="the daemon's flags")


# ----------------------------------------------------------------------------------------- rendering (pure)
class Counts(NamedTuple):
    tasks: int
    succeeded: int
    failed: int
    running: int


def run_counts(run: jpb.RunStatus) -> Counts:
    states = [t.state for t in run.tasks]
    return Counts(len(states), states.count("succeeded"), states.count("failed"), sum(s in RUNNING for s in states))


def progress_line(status: jpb.JobStatus) -> str:
    """`x: 12/20 succeeded, 1 failed, 7 running` (what `job run` prints when stdout is not a terminal)."""
    c = run_counts(status.run)
    return f"{status.job.job_id}: {c.succeeded}/{c.tasks} succeeded, {c.failed} failed, {c.running} running"


def measure(status: jpb.JobStatus) -> Measure:
    """The bar on a terminal: the succeeded tasks of all, the failed and running ones beside it."""
    c = run_counts(status.run)
    return Measure(c.succeeded, c.tasks or None, f"{c.failed} failed, {c.running} running")


def run_ended(status: jpb.JobStatus) -> bool:
    return status.run.state in ENDED


def outcome(job_id: str, run: jpb.RunStatus, now: float | None = None) -> tuple[int, str]:
    """How a run that has ended ends `job run`: exit code 0 when it succeeded, else 1, and the line that says so
    (for a failed run: its first failed task, its exit code and why)."""
    c = run_counts(run)
    end = run.ended_at or (time.time() if now is None else now)
    head = f"run {run.run_id} of {job_id} {run.state}"
    if run.state == "succeeded":
        return 0, f"{head}: {c.succeeded}/{c.tasks} tasks in {took(max(0.0, end - run.created_at))}"
    failed = next((t for t in run.tasks if t.state == "failed"), None)
    if failed is None:
        return 1, f"{head}: {c.succeeded}/{c.tasks} tasks succeeded"
    code = f"exit code {failed.exit_code}" if failed.HasField("exit_code") else "no exit code"
    why = f": {failed.message}" if failed.message else ""
    where = f"step {failed.step} task {failed.index} (attempt {failed.attempt})"
    return 1, f"{head}: {where} failed, {code}{why}"


def _depths(steps: Sequence[jpb.StepStatus]) -> dict[str, int]:
    """Each step's depth: the longest chain of dependencies above it (0: depends on nothing). Kahn's order; a
    dependency on an unknown step is ignored, steps in a cycle (the service refuses those) stay where they are."""
    names = {s.name for s in steps}
    deps = {s.name: [d for d in s.depends_on if d in names] for s in steps}
    children: dict[str, list[str]] = {s.name: [] for s in steps}
    for name, parents in deps.items():
        for parent in parents:
            children[parent].append(name)
    left = {name: len(parents) for name, parents in deps.items()}
    depth = dict.fromkeys(names, 0)
    ready = [s.name for s in steps if not left[s.name]]
    while ready:
        name = ready.pop(0)
        for child in children[name]:
            depth[child] = max(depth[child], depth[name] + 1)
            left[child] -= 1
            if not left[child]:
                ready.append(child)
    return depth


def draw_dag(steps: Sequence[jpb.StepStatus], *, color: bool = False) -> str:
    """A workflow's steps as layers (a layer: the steps at one depth, in spec order) with each step's state, and
    between two layers the edges into the lower one, e.g. for a -> b, c -> d:

        1  a (succeeded)   c (running)
             a -> b
             c -> d
        2  b (waiting)   d (waiting)

    `color`: rich markup for a terminal (states coloured)."""
    from rich.markup import escape

    depth = _depths(steps)
    layers: dict[int, list[jpb.StepStatus]] = {}
    for s in steps:
        layers.setdefault(depth[s.name], []).append(s)

    def text(s: str) -> str:
        return escape(s) if color else s

    def node(s: jpb.StepStatus) -> str:
        style = STYLES.get(s.state, "") if color else ""
        state = f"[{style}]{text(s.state)}[/]" if style else text(s.state)
        return f"[bold]{text(s.name)}[/] ({state})" if color else f"{s.name} ({state})"

    lines: list[str] = []
    width = len(str(len(layers)))
    for number, level in enumerate(sorted(layers), start=1):
        if number > 1:
            for s in layers[level]:
                lines.extend(f"{' ' * (width + 4)}{text(d)} -> {text(s.name)}" for d in s.depends_on)
        lines.append(f"{number:>{width}}  " + "   ".join(node(s) for s in layers[level]))
    return "\n".join(lines)


def job_rows(jobs: Sequence[jpb.JobSummary], now: float | None = None) -> list[list[str]]:
    """`job list`: ID, TYPE, ROLE, STATE, RUN, SUCCEEDED, FAILED, RUNNING, SCHEDULE, NEXT RUN. A service's
    (stream's) SUCCEEDED is `2/3 healthy`: its healthy instances of those wanted (jobs_service.list_cells)."""
    return [
        [
            j.job_id,
            j.type,
            j.role,
            j.state,
            j.run_id or "-",
            *_count_cells(j),
            j.schedule or "-",
            short_time(j.next_run_at, now) if j.schedule else "-",
        ]
        for j in jobs
    ]


def _count_cells(j: jpb.JobSummary) -> list[str]:
    if not j.run_id:
        return ["-", "-", "-"]
    if j.type in LONG_RUNNING:
        return jobs_service.list_cells(j)
    return [f"{j.succeeded}/{j.tasks}", str(j.failed), str(j.running)]


JOB_COLUMNS = ["ID", "TYPE", "ROLE", "STATE", "RUN", "SUCCEEDED", "FAILED", "RUNNING", "SCHEDULE", "NEXT RUN"]


def task_rows(run: jpb.RunStatus, now: float | None = None) -> list[list[str]]:
    """`job status`: STEP, INDEX, ATTEMPT, STATE, AGENT, START, END, EXIT, WHY (a queued task: why it waits;
    an ended one: its last message)."""
    return [
        [
            t.step,
            str(t.index),
            str(t.attempt),
            t.state,
            t.hostname or t.agent_id or "-",
            short_time(t.started_at, now),
            short_time(t.ended_at, now),
            str(t.exit_code) if t.HasField("exit_code") else "-",
            task_why(t),
        ]
        for t in run.tasks
    ]


TASK_COLUMNS = ["STEP", "INDEX", "ATTEMPT", "STATE", "AGENT", "START", "END", "EXIT", "WHY"]


def run_rows(runs: Sequence[jpb.RunSummary], now: float | None = None) -> list[list[str]]:
    """`job history`: RUN, TRIGGER, SCHEDULED FOR, STATE, CREATED, ENDED, SUCCEEDED, FAILED."""
    return [
        [
            r.run_id or "-",
            r.trigger or "-",
            short_time(r.scheduled_for, now),
            r.state,
            short_time(r.created_at, now),
            short_time(r.ended_at, now),
            f"{r.succeeded}/{r.tasks}" if r.tasks else "-",
            str(r.failed) if r.tasks else "-",
        ]
        for r in runs
    ]


RUN_COLUMNS = ["RUN", "TRIGGER", "SCHEDULED FOR", "STATE", "CREATED", "ENDED", "SUCCEEDED", "FAILED"]


def status_summary(status: jpb.JobStatus, now: float | None = None) -> list[str]:
    """The lines above `job status`'s table: the job, then its run."""
    head = common.job_head(status.job, now)
    if not status.HasField("run"):
        return [head, f"no run yet ({status.job.state})"]
    r = status.run
    c = run_counts(r)
    trigger = r.trigger + (f" for {short_time(r.scheduled_for, now)}" if r.scheduled_for else "")
    trigger = f" ({trigger.strip()})" if trigger else ""
    when = f"created {short_time(r.created_at, now)}" + (f", ended {short_time(r.ended_at, now)}" if r.ended_at else "")
    counts = f"{c.succeeded}/{c.tasks} succeeded, {c.failed} failed, {c.running} running"
    return [head, f"run {r.run_id}{trigger}: {r.state}, {when}; {counts}"]


# ----------------------------------------------------------------------------------------- following a run
async def _follow(jobs: JobsClient, job_id: str, run_id: str) -> int:
    status = await common.follow(jobs, job_id, run_id, run_ended, line=progress_line, measure=measure, unit="succeeded")
    code, line = outcome(job_id, status.run)
    print(line, flush=True)
    return code


# ----------------------------------------------------------------------------------------- commands
def load_job_spec(path: str) -> JobSpec:
    """The spec in a file, validated here (spec.load_spec); any problem is a UsageError, one line."""
    try:
        spec = load_spec(path)
        return spec if spec.source else dataclasses.replace(spec, source=Path(path).read_text())
    except SpecError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror or e}") from None


def spec_summary(spec: JobSpec) -> str:
    """`batch job 'x', 20 tasks` / `workflow job 'p', 4 steps, 5 tasks` (+ its schedule); a service's instances
    and a stream's stages and workers (jobs_service.spec_summary)."""
    counts = [s.count for s in spec.steps]
    if spec.long_running:
        return jobs_service.spec_summary(spec.name, spec.type, spec.lifecycle, counts)
    steps = f"{plural(len(counts), 'step')}, " if spec.type == "workflow" else ""
    what = f"{spec.type} job {spec.name!r}, {steps}{plural(sum(counts), 'task')}"
    return what + (f", schedule '{spec.schedule}'" if spec.schedule else "")


async def cmd_validate(args: argparse.Namespace) -> int:
    print(f"{args.file}: valid ({spec_summary(load_job_spec(args.file))})")
    return 0


async def cmd_run(args: argparse.Namespace) -> int:
    spec = load_job_spec(args.file)  # a bad spec is never submitted
    async with common.client(args) as client:
        response = await client.submit(spec.source, args.file, dry_run=args.dry_run)
        if args.dry_run:
            print(f"{args.file}: valid and fits the cluster ({spec_summary(spec)}); dry run: nothing submitted")
            return 0
        replaced = " (its spec replaced)" if response.updated else ""
        print(f"job {response.job_id}{replaced}" + (f", run {response.run_id}" if response.run_id else ""), flush=True)
        if spec.long_running:  # follow its deployment, not the run (which lasts until stopped)
            return (
                0
                if args.detach
                else await jobs_service.follow_deployment(client, response.job_id, response.run_id, response.version)
            )
        if not response.run_id:
            if response.next_run_at:
                print(f"scheduled: next run at {short_time(response.next_run_at)}")
            return 0
        if args.detach:
            return 0
        return await _follow(client, response.job_id, response.run_id)


async def cmd_list(args: argparse.Namespace) -> int:
    async with common.client(args) as client:
        jobs = await client.list_jobs()
    return common.listing(args.json, jobs, table(f"{len(jobs)} jobs", JOB_COLUMNS, job_rows(jobs), state_column=3))


async def cmd_status(args: argparse.Namespace) -> int:
    async with common.client(args) as client:
        status = await client.get_job(args.job_id, args.run)
    if args.json:
        print_json(to_json(status))
        return 0
    console = tables.console()
    if status.job.type in LONG_RUNNING:
        lines, shown = jobs_service.status_lines(status), jobs_service.instance_tables(status)
    else:
        lines, shown = status_summary(status), [_task_table(status.run)] if status.HasField("run") else []
    for line in lines:
        console.print(line, markup=False)
    if status.job.type == "workflow" and status.run.steps:
        color = sys.stdout.isatty()
        console.print()
        console.print(draw_dag(status.run.steps, color=color), markup=color)
        console.print()
    for t in shown:
        console.print(t)
    return 0


def _task_table(run: jpb.RunStatus) -> Any:
    return table(f"{len(run.tasks)} tasks", TASK_COLUMNS, task_rows(run), state_column=3)


async def cmd_stop(args: argparse.Namespace) -> int:
    async with common.client(args) as client:
        response = await client.stop_job(args.job_id)
    if response.run_id:
        print(f"stopped run {response.run_id} of {args.job_id} ({response.killed} tasks killed)")
    else:
        print(f"{args.job_id}: no run in progress; stopped")
    return 0


async def cmd_history(args: argparse.Namespace) -> int:
    """A service's (stream's) versions and deployments too; its `--json` is the JobHistoryResponse (an object)."""
    async with common.client(args) as client:
        history = await client.job_history(args.job_id)
    runs = table(f"{len(history.runs)} runs of {args.job_id}", RUN_COLUMNS, run_rows(history.runs), state_column=3)
    if not history.versions:  # batch, workflow
        return common.listing(args.json, history.runs, runs)
    if args.json:
        print_json(to_json(history))
        return 0
    console = tables.console()
    for t in [runs, *jobs_service.history_tables(args.job_id, history)]:
        console.print(t)
    return 0


def pick_task(status: jpb.JobStatus, step: str, index: int | None) -> jpb.TaskSlot:
    """The task `job logs` reads: index `index` (default: the first) of step `step` (default: the first)."""
    run = status.run
    job = status.job.job_id
    if not status.HasField("run"):
        raise UsageError(f"job {job!r} has no run yet")
    steps = [s.name for s in run.steps] or list(dict.fromkeys(t.step for t in run.tasks))
    step = step or (steps[0] if steps else "")
    if step not in steps:
        raise UsageError(f"no step {step!r} in run {run.run_id} of {job} (steps: {', '.join(steps) or 'none'})")
    slots = [t for t in run.tasks if t.step == step]
    slot = next((t for t in slots if index is None or t.index == index), None)
    if slot is None:
        has = f"0..{len(slots) - 1}" if slots else "none"
        raise UsageError(f"no task {index} in step {step} of run {run.run_id} (its tasks: {has})")
    if not slot.task_id or not slot.agent_id:
        why = f": {slot.why_waiting}" if slot.why_waiting else ""
        raise UsageError(f"task {slot.index} of step {step} (run {run.run_id}) has not run: {slot.state}{why}")
    return slot


async def cmd_logs(args: argparse.Namespace) -> int:
    async with common.client(args) as client:
        status = await client.get_job(args.job_id, args.run)
    slot = pick_task(status, args.step, args.task)
    # `aiomesos task logs TASK` with this parser's --stderr/--follow/--tail (and --master/--config).
    args.task_id, args.framework = slot.task_id, ""
    return await task_cli.cmd_logs(args)


JOB_COMMANDS: dict[str, Command] = {
    "validate": cmd_validate,
    "run": cmd_run,
    "list": cmd_list,
    "status": cmd_status,
    "stop": cmd_stop,
    "logs": cmd_logs,
    "history": cmd_history,
    **jobs_service.COMMANDS,
}


async def cmd_job(args: argparse.Namespace) -> int:
    try:
        return await JOB_COMMANDS[args.job_command](args)
    except JobsError as e:
        # e.g. a run in progress: the operation failed; a scale of a stopped service, a promote with no canary
        # waiting are bad input (the request makes no sense now)
        if e.code == grpc.StatusCode.FAILED_PRECONDITION and args.job_command not in jobs_service.COMMANDS:
            print(f"aiomesos job: error: {e}", file=sys.stderr)
            return 1
        raise UsageError(str(e)) from None  # a bad spec, an unknown job, an unreachable service


def cmd_jobs(args: argparse.Namespace) -> Coroutine[Any, Any, int]:
    """`aiomesos jobs serve ...`: the daemon, in this process. It runs its own event loop, so it runs here, when
    main asks for the command's coroutine and before main starts a loop; what is returned only hands back its
    exit code."""
    daemon = importlib.import_module("scheduler_sdk.frameworks.jobs.daemon")  # its imports only for `jobs serve`
    return _exit_code(int(daemon.main(list(args.args))))


async def _exit_code(code: int) -> int:
    return code


COMMANDS: dict[str, Command] = {"job": cmd_job, "jobs": cmd_jobs}
