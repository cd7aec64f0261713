"""`aiomesos task logs`, `aiomesos task ls` and `aiomesos top`.

A task's files are read from its agent directly: the master says where the task ran (GetTasks, active and
completed) and at which address that agent serves its API (GetAgents). `top` asks the master, which gathers
every agent's containers and their usage statistics; CPU % comes from two samples taken an interval apart."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from aiomesos.v1 import agent_pb2
from aiomesos.v1 import operator_pb2 as opb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk._daemon.flags import FlagParser, UsageError, non_negative_int, positive_float
from scheduler_sdk.cli.tables import Column, FitTable, console, print_table
from scheduler_sdk.operator import AgentClient, AgentError, OperatorClient

ContainerKey = tuple[str, str, str, str]  # agent id, framework id, task id, container id


def add_parsers(sub: Any, with_master: Callable[[FlagParser], FlagParser]) -> None:
    """Add `task` (logs, ls) and `top` to the `aiomesos` subcommands."""
    task = sub.add_parser("task", help="a task's output and sandbox, read from its agent")
    tsub = task.add_subparsers(dest="task_command", metavar="ACTION", parser_class=FlagParser)
    tsub.required = True

    logs = with_master(tsub.add_parser("logs", help="print a task's stdout (or stderr); --follow streams it"))
    logs.add_argument("task_id", metavar="TASK")
    logs.add_argument("--stderr", action="store_true", help="the task's stderr instead of its stdout")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing what is appended until the task ends")
    logs.add_argument("--tail", type=non_negative_int, default=None, metavar="N", help="start at the last N lines")
    logs.add_argument("--framework", default="", help="the task's framework id (when the task id is not unique)")

    ls = with_master(tsub.add_parser("ls", help="list a task's sandbox (or a directory in it)"))
    ls.add_argument("task_id", metavar="TASK")
    ls.add_argument("path", nargs="?", default="", metavar="PATH", help="relative to the sandbox")
    ls.add_argument("--framework", default="", help="the task's framework id (when the task id is not unique)")
    ls.add_argument("--json", action="store_true", help="print a JSON array")

    top = with_master(sub.add_parser("top", help="running tasks' CPU, memory and disk against their limits, live"))
    top.add_argument("--interval", type=positive_float, default=1.0, help="seconds between samples")
    top.add_argument("--once", action="store_true", help="take two samples --interval apart, print once and exit")
    top.add_argument("--json", action="store_true", help="print a JSON array (implies --once)")


# ----------------------------------------------------------------------------------------- finding a task
@dataclass(frozen=True, slots=True)
class TaskLocation:
    task_id: str
    framework_id: str
    agent_id: str
    address: str


async def locate_task(master: str, task_id: str, framework_id: str = "") -> TaskLocation:
    """Where a task ran, from the master: its framework, its agent and that agent's API address."""
    async with OperatorClient(master) as client:
        tasks = await client.tasks()
        active = [t for t in tasks.tasks if _matches(t, task_id, framework_id)]
        completed = [t for t in tasks.completed_tasks if _matches(t, task_id, framework_id)]
        which = f"task {task_id!r}" + (f" of framework {framework_id!r}" if framework_id else "")
        if not active and not completed:
            raise UsageError(f"unknown {which}: the master knows no such task")
        frameworks = sorted({t.framework_id for t in active + completed})
        if len(frameworks) > 1:
            raise UsageError(
                f"task id {task_id!r} is ambiguous: frameworks {', '.join(frameworks)} have one; pass --framework"
            )
        # The running one, else the last to complete.
        chosen = active[-1] if active else completed[-1]
        agent_id = chosen.task.agent_id or next((s.agent_id for s in reversed(chosen.statuses) if s.agent_id), "")
        if not agent_id:
            raise UsageError(f"{which} has not been placed on an agent yet")
        agents = await client.agents()
    agent = next((a for a in agents.agents if a.agent_info.id == agent_id), None)
    if agent is None or not agent.agent_info.address:
        raise UsageError(f"{which} ran on agent {agent_id}, which the master no longer knows")
    return TaskLocation(task_id, chosen.framework_id, agent_id, agent.agent_info.address)


def _matches(t: opb.TaskSummary, task_id: str, framework_id: str) -> bool:
    return t.task.task_id == task_id and (not framework_id or t.framework_id == framework_id)


def _agent_failure(e: AgentError, where: TaskLocation) -> UsageError:
    if e.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return UsageError(f"{e} (task {where.task_id!r} ran on agent {where.agent_id})")
    return UsageError(str(e))


# ----------------------------------------------------------------------------------------- task logs / ls
async def cmd_task(args: argparse.Namespace) -> int:
    if args.task_command == "logs":
        return await cmd_logs(args)
    return await cmd_ls(args)


async def cmd_logs(args: argparse.Namespace) -> int:
    where = await locate_task(args.master, args.task_id, args.framework)
    path = "stderr" if args.stderr else "stdout"
    out = sys.stdout.buffer
    try:
        async with AgentClient(where.address) as agent:
            offset, tail = 0, args.tail or 0
            if args.tail == 0:  # nothing of what is there: start at the end
                listed = await agent.list_files(where.task_id, path, framework_id=where.framework_id)
                offset = int(listed[0].size) if listed else 0
            async for chunk in agent.read_file(
                where.task_id,
                path,
                framework_id=where.framework_id,
                offset=offset,
                follow=args.follow,
                tail_lines=tail,
            ):
                out.write(chunk.data)
                out.flush()
    except AgentError as e:
        raise _agent_failure(e, where) from None
    return 0


async def cmd_ls(args: argparse.Namespace) -> int:
    where = await locate_task(args.master, args.task_id, args.framework)
    try:
        async with AgentClient(where.address) as agent:
            entries = await agent.list_files(where.task_id, args.path, framework_id=where.framework_id)
    except AgentError as err:
        raise _agent_failure(err, where) from None
    if args.json:
        rows = [{"path": e.path, "is_dir": e.is_dir, "size": e.size, "mtime": e.mtime, "mode": e.mode} for e in entries]
        print(json.dumps(rows, indent=2))
        return 0
    base = args.path.strip("/")
    for e in entries:
        name = e.path
        if base and name.startswith(base + "/"):
            name = name[len(base) + 1 :]
        if e.is_dir:
            name += "/"
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.mtime))
        print(f"{e.mode} {e.size:>10} {stamp} {name}")
    return 0


# ----------------------------------------------------------------------------------------- top
async def sample(client: OperatorClient) -> tuple[dict[ContainerKey, agent_pb2.ContainerStatus], list[str]]:
    response = await client.containers()
    containers = {(c.agent_id, c.framework_id, c.task_id, c.container_id): c for c in response.containers}
    return containers, list(response.unreachable_agents)


def _cpu_time(s: agent_pb2.ResourceStatistics) -> float:
    return s.cpus_user_time_secs + s.cpus_system_time_secs


def usage_rows(
    before: dict[ContainerKey, agent_pb2.ContainerStatus], after: dict[ContainerKey, agent_pb2.ContainerStatus]
) -> list[dict[str, Any]]:
    """One row per container of the later sample, sorted by CPU (busiest first). CPU % is of one core, from the
    CPU time used between the two samples; None for a container the first sample did not have."""
    rows = []
    for key, c in after.items():
        s = c.statistics
        cpu_percent: float | None = None
        prev = before.get(key)
        if prev is not None:
            elapsed = s.timestamp - prev.statistics.timestamp
            if elapsed > 0:
                used = max(0.0, _cpu_time(s) - _cpu_time(prev.statistics))
                cpu_percent = round(100.0 * used / elapsed, 1)
        rows.append(
            {
                "task_id": c.task_id,
                "framework_id": c.framework_id,
                "agent_id": c.agent_id,
                "container_id": c.container_id,
                "state": tpb.TaskState.Name(c.state),
                "cpu_percent": cpu_percent,
                "cpus_limit": s.cpus_limit,
                "mem_rss_bytes": s.mem_rss_bytes,
                "mem_limit_bytes": s.mem_limit_bytes,
                "disk_used_bytes": s.disk_used_bytes,
                "disk_limit_bytes": s.disk_limit_bytes,
                "processes": s.processes,
                "threads": s.threads,
            }
        )
    rows.sort(key=_busiest_first)
    return rows


def _busiest_first(row: dict[str, Any]) -> tuple[float, str]:
    cpu = row["cpu_percent"]
    return (-(cpu if cpu is not None else -1.0), str(row["task_id"]))


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


USAGE_COLUMNS = [
    Column("TASK", id=True),
    Column("FRAMEWORK", id=True),
    Column("AGENT", id=True),
    Column("CPU %", "right"),
    Column("OF LIMIT", "right"),
    Column("MEM", "right"),
    Column("OF LIMIT", "right"),
    Column("DISK", "right"),
    Column("OF LIMIT", "right"),
    Column("PROCS", "right"),
    Column("THREADS", "right"),
]


def of_limit(used: float, limit: float) -> str:
    """`64.0 MiB (12%)`: a limit in bytes and how much of it is used; `-` for no limit."""
    return "-" if not limit else f"{_bytes(limit)} ({100.0 * used / limit:.0f}%)"


def usage_table(rows: list[dict[str, Any]], unreachable: list[str], master: str) -> FitTable:
    from rich.text import Text

    title = Text(f"{len(rows)} running tasks on {master} at {time.strftime('%H:%M:%S')}")
    if unreachable:
        title.append(f" (no answer from agents {', '.join(unreachable)})", style="red")
    table = FitTable(title, USAGE_COLUMNS)
    for r in rows:
        cpu, limit = r["cpu_percent"], r["cpus_limit"]
        cpu_text = "-" if cpu is None else f"{cpu:.1f}"
        cpu_limit = "-" if not limit else f"{limit:g} cpus" + ("" if cpu is None else f" ({cpu / limit:.0f}%)")
        table.add_row(
            r["task_id"],
            r["framework_id"],
            r["agent_id"],
            cpu_text,
            cpu_limit,
            _bytes(r["mem_rss_bytes"]),
            of_limit(r["mem_rss_bytes"], r["mem_limit_bytes"]),
            _bytes(r["disk_used_bytes"]),
            of_limit(r["disk_used_bytes"], r["disk_limit_bytes"]),
            str(r["processes"]),
            str(r["threads"]),
        )
    return table


async def cmd_top(args: argparse.Namespace) -> int:
    async with OperatorClient(args.master) as client:
        before, _ = await sample(client)
        if args.once or args.json:
            await asyncio.sleep(args.interval)
            after, unreachable = await sample(client)
            rows = usage_rows(before, after)
            if args.json:
                print(json.dumps(rows, indent=2))
            else:
                print_table(usage_table(rows, unreachable, args.master))
            return 0

        from rich.live import Live

        with Live(console=console(), auto_refresh=False, transient=False) as live:
            while True:
                await asyncio.sleep(args.interval)
                after, unreachable = await sample(client)
                live.update(usage_table(usage_rows(before, after), unreachable, args.master), refresh=True)
                before = after
