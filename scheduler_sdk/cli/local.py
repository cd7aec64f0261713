"""`aiomesos cluster up` and `aiomesos demo`: a local cluster on this machine (LocalCluster), kept up until
Ctrl-C, or running the demo batch job through it and stopped."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk._daemon.flags import FlagParser, UsageError, non_negative_int, positive_int
from scheduler_sdk.cli import tables
from scheduler_sdk.frameworks.batch import TaskRecord, TaskSpec, run_batch
from scheduler_sdk.local_cluster import ClusterError, LocalCluster
from scheduler_sdk.resources import Resources
from scheduler_sdk.security.config import CONFIG_ENV
from scheduler_sdk.states import state_name


def add_parsers(sub: Any) -> None:
    """Add `cluster up` and `demo` to the `aiomesos` subcommands."""
    cluster = sub.add_parser("cluster", help="a local cluster on this machine")
    csub = cluster.add_subparsers(dest="cluster_command", metavar="ACTION", parser_class=FlagParser)
    csub.required = True
    up = csub.add_parser("up", help="start a master and agents here and keep them up until Ctrl-C")
    _cluster_flags(up)

    demo = sub.add_parser("demo", help="start a local cluster, run the demo batch job through it, stop it")
    _cluster_flags(demo)
    demo.add_flag("--tasks", type=int, default=20, help="how many demo tasks")


def _cluster_flags(sp: FlagParser) -> None:
    sp.add_flag("--agents", type=non_negative_int, default=2, help="how many agents")
    sp.add_flag(
        "--masters",
        type=positive_int,
        default=1,
        help="how many masters: more than one elect a leader on a local etcd (etcd-server), the registry there",
    )
    sp.add_flag(
        "--ca-dir",
        default=None,
        help="issue the cluster's certificates from the CA in this directory (default: a new CA in the work dir)",
    )
    sp.add_flag(
        "--insecure",
        action="store_true",
        help="no TLS and no authentication (loopback only); the default is a CA, certificates and credentials",
    )
    sp.add_flag("--work-dir", default=None, help="work dir (default: a new temporary dir)")
    sp.add_flag(
        "--agent-resources", default="cpus:2;mem:1024;disk:2048;ports:[31000-32000]", help="each agent's resources"
    )


def _work_dir(arg: str | None, prefix: str) -> tuple[Path, bool]:
    if not arg:
        return Path(tempfile.mkdtemp(prefix=prefix)), True
    path = Path(arg).resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--work-dir {arg}: {e.strerror}") from None
    return path, False


def _local_cluster(args: argparse.Namespace, work_dir: Path) -> LocalCluster:
    return LocalCluster(
        work_dir,
        agents=args.agents,
        masters=args.masters,
        agent_resources=args.agent_resources,
        secure=not args.insecure,
        ca_dir=Path(args.ca_dir).resolve() if args.ca_dir else None,
        jobs=True,
    )


async def cmd_cluster_up(args: argparse.Namespace) -> int:
    Resources.parse(args.agent_resources)
    work_dir, _ = _work_dir(args.work_dir, "aiomesos-cluster-")
    cluster = _local_cluster(args, work_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await cluster.start()
        print(f"master  {cluster.master_address}")
        print(f"jobs    {cluster.jobs_address}   (aiomesos job run FILE; see docs/jobs.md)")
        print(f"http    {cluster.master_http_url}   (/metrics, /health, the web UI; see docs/operations.md)")
        if cluster.etcd is not None:
            print(f"masters {','.join(cluster.master_addresses)}   (etcd {','.join(cluster.etcd.endpoints)})")
        if cluster.secure:
            print(f"config  {cluster.client_config_path}   (export {CONFIG_ENV}={cluster.client_config_path})")
            print(
                f"tokens  {cluster.token_address}: add one with aiomesos certs token NAME --role framework "
                f"--credentials {cluster.work_dir / 'certs' / 'credentials.toml'}"
            )
        else:
            print(f"        no TLS, no authentication (--insecure): export AIOMESOS_MASTER={cluster.master_address}")
        for d in cluster.agent_daemons:
            print(f"{d.name:7} work dir {d.work_dir}")
        print(f"logs    {work_dir / 'logs'}\nup: press Ctrl-C to stop", flush=True)
        await stop.wait()
    finally:
        print("stopping the cluster...", flush=True)
        leftovers = await cluster.stop()
    if leftovers:
        print(f"aiomesos cluster: error: the cluster did not stop cleanly: {'; '.join(leftovers)}", file=sys.stderr)
        return 1
    print("stopped")
    return 0


async def cmd_demo(args: argparse.Namespace) -> int:
    """The demo's cluster runs in --work-dir, kept after, or in a temporary dir, removed once the cluster has
    stopped (however the demo ends: done, failed, Ctrl-C) unless the cluster did not stop cleanly: then it is
    kept for a look at the logs, and the demo says where."""
    Resources.parse(args.agent_resources)
    if args.tasks < 1:
        raise UsageError("--tasks must be at least 1")
    if args.agents < 1:
        raise UsageError("--agents must be at least 1: the demo needs somewhere to run")
    console = tables.console()  # lines with a path are not broken (soft_wrap): they can be copied whole
    work_dir, temporary = _work_dir(args.work_dir, "aiomesos-demo-")
    console.print(f"[bold]aiomesos demo[/]: a master and {args.agents} agents in {work_dir}", soft_wrap=True)
    code, keep = 1, not temporary
    try:
        cluster = _local_cluster(args, work_dir)
        try:
            try:
                await cluster.start()
            except ClusterError:
                keep = True  # its logs say why it did not start
                raise
            code = await _run_demo(cluster, args.tasks, console)
        finally:
            leftovers = await cluster.stop()
            if leftovers:
                console.print(f"[red]the cluster did not stop cleanly: {'; '.join(leftovers)}[/]", soft_wrap=True)
                code, keep = 1, True
            else:
                console.print("cluster stopped: no process or cgroup left behind")
    finally:
        console.print(f"work dir kept: {work_dir}" if keep else _remove_work_dir(work_dir), soft_wrap=True)
    return code


def _remove_work_dir(work_dir: Path) -> str:
    """Remove a demo's temporary work dir; what happened, said for the user."""
    try:
        shutil.rmtree(work_dir)
    except OSError as e:
        return f"could not remove {work_dir}: {e.strerror or e}"
    return f"removed {work_dir}"


def demo_specs(count: int, rng: random.Random) -> list[TaskSpec]:
    return [
        TaskSpec(
            task_id=f"demo-{i:02d}",
            command=f'sleep {(t := rng.uniform(0.1, 1.0)):.2f}; echo "slept {t:.2f}s on $HOST"',
            cpus=0.25,
            mem=32,
        )
        for i in range(count)
    ]


async def _run_demo(cluster: LocalCluster, tasks: int, console: Any) -> int:
    """Run the demo batch job on a started cluster with progress bars, then print its table; 0 if every task
    finished."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    specs = demo_specs(tasks, random.Random())
    if cluster.secure:  # this process is the demo's framework: it uses the cluster's config
        os.environ[CONFIG_ENV] = str(cluster.client_config_path)
    how = "TLS, as operator/admin" if cluster.secure else "no TLS (--insecure)"
    console.print(f"cluster up: master at {cluster.master_address} ({how}); running {len(specs)} tasks")
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        bar = progress.add_task("tasks finished", total=len(specs))
        running = progress.add_task("tasks running ", total=len(specs))
        live: set[str] = set()

        def on_update(record: TaskRecord, status: tpb.TaskStatus) -> None:
            if status.state == tpb.TASK_RUNNING:
                live.add(record.spec.task_id)
            if record.terminal:
                live.discard(record.spec.task_id)
                progress.advance(bar)
            progress.update(running, completed=len(live))

        started = time.monotonic()
        scheduler = await run_batch(cluster.master_address, specs, name="demo", on_update=on_update, timeout=120)
        elapsed = time.monotonic() - started
    records = list(scheduler.records.values())
    console.print(demo_table(records, {r.spec.task_id: _sandbox_stdout(cluster, r) for r in records}))
    finished = sum(1 for r in records if r.state == tpb.TASK_FINISHED)
    console.print(f"{finished}/{len(specs)} tasks finished in {elapsed:.1f}s")
    return 0 if finished == len(specs) else 1


def demo_table(records: Sequence[TaskRecord], outputs: dict[str, str]) -> tables.FitTable:
    table = tables.FitTable("demo job", ["TASK", "AGENT", "STATE", "EXIT CODE", "DURATION", "OUTPUT"])
    for record in records:
        table.add_row(
            record.spec.task_id,
            record.hostname or record.agent_id,
            state_name(record.state),
            "-" if record.exit_code is None else str(record.exit_code),
            "-" if record.duration is None else f"{record.duration:.2f}s",
            outputs.get(record.spec.task_id, ""),
        )
    return table


def _sandbox_stdout(cluster: LocalCluster, record: TaskRecord) -> str:
    for d in cluster.agent_daemons:
        for path in (d.work_dir / "agents").glob(f"*/frameworks/*/executors/{record.spec.task_id}/runs/latest/stdout"):
            return path.read_text(errors="replace").strip()[:80]
    return ""


COMMANDS = {"cluster": cmd_cluster_up, "demo": cmd_demo}
