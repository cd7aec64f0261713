"""`aiomesos job scale|endpoints|promote|revert`, and what `job run|status|history` show of a service or a stream
(docs/jobs.md): its versions, its instances' (workers') health and ports, its deployments (rolling updates). The
entry point, and everything batch and workflow, is cli/jobs.py; what both print alike is in cli/jobs_common.py.

`job run` of a service (stream) follows the deployment of the version it submitted, not a run's end: exit 0 once
it succeeded, or once its canaries are healthy and it waits for `job promote`; 1 when it failed, was reverted or
replaced by a newer one, or the job was stopped under it."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from aiomesos.v1 import jobs_pb2 as jpb
from scheduler_sdk._daemon.flags import FlagParser
from scheduler_sdk.cli import jobs_common as common
from scheduler_sdk.cli.jobs_common import ENDED, Measure, plural, short_time, to_json, took
from scheduler_sdk.frameworks.jobs.client import JobsClient

# The states of a deployment `job run` stops following at (paused: its canaries are healthy, it waits for promote)
SETTLED = ("succeeded", "failed", "reverted", "cancelled", "paused")
MAX_INSTANCES = 1000  # a service's instances, a stream stage's workers (as the service bounds them)
PROMOTE_HINT = "canaries healthy: `aiomesos job promote {job}` to go on"


# ----------------------------------------------------------------------------------------- parsers
def instance_count(text: str) -> int:
    """`job scale`'s N: a whole number >= 0 (the service says how high it may go)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of instances") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is below zero: a job scales to 0 instances or more")
    if value > MAX_INSTANCES:
        raise argparse.ArgumentTypeError(f"{value} is more than {MAX_INSTANCES} instances, the most a job has")
    return value


def version_number(text: str) -> int:
    """`job revert`'s VERSION: a whole number >= 1, as `job history` lists them."""
    try:
        value = int(text.strip().removeprefix("v"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a version (a number, as `job history` lists)") from None
    if not 1 <= value < 2**31:
        raise argparse.ArgumentTypeError(f"{value}: versions start at 1" if value < 1 else f"{value}: no such version")
    return value


def add_parsers(jsub: Any, on_service: Callable[[FlagParser], FlagParser]) -> None:
    """Add `job scale|endpoints|promote|revert` (`on_service` adds --jobs and the master/config flags)."""
    scale = on_service(jsub.add_parser("scale", help="set a service's instances (a stream stage's workers) to N"))
    scale.add_argument("job_id", metavar="JOB")
    scale.add_argument("count", type=instance_count, metavar="N")
    scale.add_argument("--stage", default="", metavar="NAME", help="a stream's stage (needed with more than one)")

    endpoints = on_service(jsub.add_parser("endpoints", help="the healthy instances' HOST:PORT, one a line"))
    endpoints.add_argument("job_id", metavar="JOB")
    endpoints.add_argument("--stage", default="", metavar="NAME", help="a stream: only this stage's workers")
    endpoints.add_argument("--json", action="store_true", help="print the endpoints (every port) as a JSON array")

    promote = on_service(jsub.add_parser("promote", help="the canaries are healthy: go on replacing the old ones"))
    promote.add_argument("job_id", metavar="JOB")

    revert = on_service(jsub.add_parser("revert", help="roll out a new version with an earlier version's spec"))
    revert.add_argument("job_id", metavar="JOB")
    revert.add_argument("version", type=version_number, metavar="VERSION")


# ----------------------------------------------------------------------------------------- rendering (pure)
def list_cells(j: jpb.JobSummary) -> list[str]:
    """`job list`'s SUCCEEDED, FAILED, RUNNING cells of a service (stream): `2/3 healthy` (of the instances
    wanted), the failed and the running ones."""
    return [f"{j.healthy}/{j.instances} healthy", str(j.failed), str(j.running)]


def spec_summary(name: str, job_type: str, lifecycle: str, counts: Sequence[int]) -> str:
    """`service job 'web', 3 instances` / `stream job 'wc' (transient), 2 stages, 5 workers`."""
    if job_type == "service":
        return f"service job {name!r}, {plural(sum(counts), 'instance')}"
    stages = plural(len(counts), "stage")
    return f"{job_type} job {name!r} ({lifecycle or 'perpetual'}), {stages}, {plural(sum(counts), 'worker')}"


def deployment_counts(d: jpb.DeploymentStatus) -> str:
    """`1/3 placed, 0/3 healthy` (new-version instances of those wanted), `, 1 canary (promoted)` with canaries."""
    text = f"{d.placed}/{d.wanted} placed, {d.healthy}/{d.wanted} healthy"
    if d.canaries:
        text += f", {d.canaries} {'canary' if d.canaries == 1 else 'canaries'}" + (" (promoted)" if d.promoted else "")
    return text


def versions(d: jpb.DeploymentStatus) -> str:
    """`v2 -> v3`, or `v1` for the first."""
    return f"v{d.from_version} -> v{d.version}" if d.from_version else f"v{d.version}"


def version_summary(status: jpb.JobStatus) -> str:
    """`job status`'s summary line: `version 3: 2/3 healthy; deployment v2 -> v3 running: 1/3 placed, 1/3 healthy;
    <its message>`."""
    j = status.job
    head = f"version {j.version}: {j.healthy}/{j.instances} healthy"
    if not status.HasField("deployment"):
        return f"{head}; no deployment yet"
    d = status.deployment
    why = f"; {d.message}" if d.message else ""
    return f"{head}; deployment {versions(d)} {d.state}: {deployment_counts(d)}{why}"


def status_lines(status: jpb.JobStatus, now: float | None = None) -> list[str]:
    """The lines above a service's (stream's) `job status` tables: the job, its run, the version summary, and when
    the canaries wait, how to go on."""
    j = status.job
    lines = [common.job_head(j, now)]
    if status.HasField("run"):
        r = status.run
        ended = f", ended {short_time(r.ended_at, now)}" if r.ended_at else ""
        lines.append(f"run {r.run_id}: {r.state}, created {short_time(r.created_at, now)}{ended}")
    lines.append(version_summary(status))
    if status.HasField("deployment") and status.deployment.state == "paused":
        lines.append(PROMOTE_HINT.format(job=j.job_id))
    return lines


def why(t: jpb.TaskSlot) -> str:
    """The WHY cell of an instance: as a batch task's, and `crash-looping: N failures in a row` first when it
    crash-loops (the service's own backoff message says so already when it waits in backoff)."""
    text = common.task_why(t)
    if t.crash_looping and not text.startswith("crash-looping"):
        looping = f"crash-looping: {plural(t.failures, 'failure')} in a row"
        return looping if text == "-" else f"{looping}; {text}"
    return text


def instance_rows(tasks: Sequence[jpb.TaskSlot], now: float | None = None) -> list[list[str]]:
    """INDEX, VERSION (`3 canary` for a canary), ATTEMPT, STATE, HEALTH, AGENT, PORTS, START, WHY."""
    return [
        [
            str(t.index),
            f"{t.version}{' canary' if t.canary else ''}" if t.version else "-",
            str(t.attempt),
            t.state,
            t.health or "-",
            t.hostname or t.agent_id or "-",
            ",".join(map(str, t.ports)) or "-",
            short_time(t.started_at, now),
            why(t),
        ]
        for t in tasks
    ]


INSTANCE_COLUMNS = ["INDEX", "VERSION", "ATTEMPT", "STATE", "HEALTH", "AGENT", "PORTS", "START", "WHY"]


def stages(run: jpb.RunStatus) -> list[tuple[str, list[jpb.TaskSlot]]]:
    """A run's instances by step, each by index: a stream's stages in data order (those with no worker too), a
    service's one."""
    groups: dict[str, list[jpb.TaskSlot]] = {s.name: [] for s in run.steps}
    for t in run.tasks:
        groups.setdefault(t.step, []).append(t)
    return [(name, sorted(tasks, key=lambda t: t.index)) for name, tasks in groups.items()]


def instance_tables(status: jpb.JobStatus, now: float | None = None) -> list[Any]:
    """`job status`'s tables: a service's instances, or one table a stream stage (`stage gen: 2 workers, 2
    healthy`)."""
    stream = status.job.type == "stream"
    tables = []
    for name, tasks in stages(status.run):
        healthy = sum(t.health == "healthy" for t in tasks)
        title = f"{plural(len(tasks), 'worker' if stream else 'instance')}, {healthy} healthy"
        title = f"stage {name}: {title}" if stream else title
        tables.append(common.table(title, INSTANCE_COLUMNS, instance_rows(tasks, now), state_column=3))
    return tables


def version_rows(items: Sequence[jpb.JobVersion], now: float | None = None) -> list[list[str]]:
    """`job history`: VERSION, CREATED, CAUSE (`revert to v1`), STABLE, OWNER."""
    return [
        [
            str(v.version),
            short_time(v.created_at, now),
            (v.cause or "-") + (f" to v{v.reverted_from}" if v.reverted_from else ""),
            "yes" if v.stable else "no",
            v.owner or "-",
        ]
        for v in items
    ]


VERSION_COLUMNS = ["VERSION", "CREATED", "CAUSE", "STABLE", "OWNER"]


def deployment_rows(items: Sequence[jpb.DeploymentStatus], now: float | None = None) -> list[list[str]]:
    """`job history`: VERSION, FROM, STATE, PLACED/HEALTHY/WANTED, CANARIES, STARTED, ENDED, MESSAGE."""
    return [
        [
            str(d.version),
            str(d.from_version) if d.from_version else "-",
            d.state,
            f"{d.placed}/{d.healthy}/{d.wanted}",
            (str(d.canaries) + (" promoted" if d.promoted else "")) if d.canaries else "-",
            short_time(d.started_at, now),
            short_time(d.ended_at, now),
            d.message or "-",
        ]
        for d in items
    ]


DEPLOYMENT_COLUMNS = ["VERSION", "FROM", "STATE", "PLACED/HEALTHY/WANTED", "CANARIES", "STARTED", "ENDED", "MESSAGE"]


def history_tables(job_id: str, history: jpb.JobHistoryResponse, now: float | None = None) -> list[Any]:
    """`job history`'s tables of a service (stream) after its runs': its versions and its deployments."""
    return [
        common.table(f"{plural(len(history.versions), 'version')} of {job_id}", VERSION_COLUMNS,
                     version_rows(history.versions, now), state_column=None),
        common.table(f"{plural(len(history.deployments), 'deployment')} of {job_id}", DEPLOYMENT_COLUMNS,
                     deployment_rows(history.deployments, now), state_column=2),
    ]  # fmt: skip


# ----------------------------------------------------------------------------------------- following a deployment
class DeploymentWatch:
    """The deployment `job run` follows: that of the version the job rolls out when first seen after the submit
    (the submit made it), until it settles (SETTLED), a newer one replaces it (a revert, another submit) or the
    run ends."""

    def __init__(self, version: int = 0) -> None:
        self.version = version  # the version the submit answered with (0: the first one seen)

    def settled(self, status: jpb.JobStatus) -> bool:
        latest = status.deployment if status.HasField("deployment") else None
        if not self.version:
            self.version = status.job.version or (latest.version if latest is not None else 0)
        if status.HasField("run") and status.run.state in ENDED:
            return True
        if latest is None or not self.version:
            return False
        return latest.version > self.version or (latest.version == self.version and latest.state in SETTLED)

    def ours(self, deployments: Sequence[jpb.DeploymentStatus]) -> jpb.DeploymentStatus | None:
        return next((d for d in reversed(deployments) if d.version == self.version), None)


def progress_line(status: jpb.JobStatus) -> str:
    """`web: v2 -> v3 running, 1/3 placed, 0/3 healthy` (what `job run` prints when stdout is not a terminal)."""
    if not status.HasField("deployment"):
        return f"{status.job.job_id}: version {status.job.version}, waiting for its deployment"
    d = status.deployment
    return f"{status.job.job_id}: {versions(d)} {d.state}, {deployment_counts(d)}"


def measure(status: jpb.JobStatus) -> Measure:
    """The bar on a terminal: healthy new-version instances of those wanted."""
    if not status.HasField("deployment"):
        return Measure(0, None, "waiting for the deployment")
    d = status.deployment
    return Measure(d.healthy, d.wanted or None, f"{d.placed} placed, {d.state}")


def outcome(job_id: str, d: jpb.DeploymentStatus | None, run: jpb.RunStatus | None) -> tuple[int, str]:
    """How `job run` ends: 0 when the deployment `d` succeeded or waits for promotion (the hint), else 1 and why."""
    if d is None or d.state not in SETTLED:
        what = f"run {run.run_id} of {job_id} {run.state}" if run is not None else f"{job_id} has no run"
        return 1, f"{what} before its deployment ended"
    head = f"deployment of {job_id} version {d.version}"
    why = f": {d.message}" if d.message else ""
    if d.state == "succeeded":
        return 0, f"{head} succeeded: {d.healthy}/{d.wanted} healthy in {took(max(0.0, d.ended_at - d.started_at))}"
    if d.state == "paused":
        return 0, PROMOTE_HINT.format(job=job_id)
    if d.state == "reverted":
        return 1, f"{head} failed and is reverted to the last stable version{why}"
    if d.state == "cancelled":
        return 1, f"{head} cancelled{why or ': a newer version replaced it'}"
    return 1, f"{head} failed{why}"


async def follow_deployment(client: JobsClient, job_id: str, run_id: str, version: int = 0) -> int:
    """`job run` of a service (stream) after the submit: follow, then print how it ended; the exit code."""
    watch = DeploymentWatch(version)
    status = await common.follow(
        client, job_id, run_id, watch.settled, line=progress_line, measure=measure, unit="healthy"
    )
    ours = watch.ours([status.deployment] if status.HasField("deployment") else [])
    if ours is None and watch.version:  # replaced by a newer one: how ours ended is in the history
        ours = watch.ours((await client.job_history(job_id)).deployments)
    code, line = outcome(job_id, ours, status.run if status.HasField("run") else None)
    print(line, flush=True)
    return code


# ----------------------------------------------------------------------------------------- commands
async def cmd_scale(args: argparse.Namespace) -> int:
    async with common.client(args) as client:
        response = await client.scale_job(args.job_id, args.count, args.stage)
    what = f"{args.job_id} stage {args.stage}" if args.stage else args.job_id
    print(f"{what}: scaled from {response.previous} to {response.count}")
    return 0


async def cmd_endpoints(args: argparse.Namespace) -> int:
    """One HOST:PORT a line (a healthy instance's first port), for scripts; `--json`: every field."""
    async with common.client(args) as client:
        endpoints = await client.get_endpoints(args.job_id, args.stage)
    if args.json:
        common.print_json([to_json(e) for e in endpoints])
    else:
        for e in endpoints:
            if e.address:
                print(e.address)
    return 0


async def cmd_promote(args: argparse.Namespace) -> int:
    async with common.client(args) as client:
        response = await client.promote_job(args.job_id)
    print(f"{args.job_id}: version {response.version} promoted: its canaries stay, the old instances are replaced")
    return 0


async def cmd_revert(args: argparse.Namespace) -> int:
    async with common.client(args) as client:
        response = await client.revert_job(args.job_id, args.version)
    print(f"{args.job_id}: version {response.version} rolls out the spec of version {response.reverted_from}")
    return 0


COMMANDS: dict[str, common.Command] = {
    "scale": cmd_scale,
    "endpoints": cmd_endpoints,
    "promote": cmd_promote,
    "revert": cmd_revert,
}
