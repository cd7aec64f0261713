"""`aiomesos`: the operator's and user's command line.

Errors are one line on stderr: exit code 2 for bad input or an unreachable master, 1 for a failed operation.
`aiomesos master` and `aiomesos agent` run the daemons (in their own process image, so the SDK never imports
them)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from aiomesos.v1 import operator_pb2 as opb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk._daemon.flags import (
    FlagParser,
    UsageError,
    master_spec,
    positive_float,
)
from scheduler_sdk.cli import certs as certs_cli
from scheduler_sdk.cli import events as events_cli
from scheduler_sdk.cli import jobs as jobs_cli
from scheduler_sdk.cli import local as local_cli
from scheduler_sdk.cli import maintenance as maintenance_cli
from scheduler_sdk.cli import masters as masters_cli
from scheduler_sdk.cli import policy as policy_cli
from scheduler_sdk.cli import simulate as simulate_cli
from scheduler_sdk.cli import simulate_agents as simulate_agents_cli
from scheduler_sdk.cli import tables
from scheduler_sdk.cli import task as task_cli
from scheduler_sdk.driver import DriverError
from scheduler_sdk.enums import enum_name
from scheduler_sdk.frameworks.batch import TaskRecord, TaskSpec, run_batch
from scheduler_sdk.local_cluster import ClusterError
from scheduler_sdk.operator import OperatorClient, OperatorError
from scheduler_sdk.resources import UNRESERVED, Resources, ResourcesError
from scheduler_sdk.security import ClientConfig, SecurityError, find_client_config
from scheduler_sdk.security.config import CONFIG_ENV
from scheduler_sdk.states import state_name

DEFAULT_MASTER = "127.0.0.1:5050"
DAEMONS = {"master": "mesos_master", "agent": "mesos_agent"}


# ----------------------------------------------------------------------------------------- parser
def build_parser() -> FlagParser:
    p = FlagParser(prog="aiomesos", description="aiomesos: a two-level cluster resource manager.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=FlagParser)
    sub.required = True
    for name, module in DAEMONS.items():
        d = sub.add_parser(name, help=f"run the {name} daemon (see `aiomesos {name} --help`)", add_help=False)
        d.add_argument("args", nargs=argparse.REMAINDER)
        d.set_defaults(module=module)

    def with_master(sp: FlagParser) -> FlagParser:
        sp.add_flag(
            "--master",
            type=master_spec,
            default=None,
            help="the master: HOST:PORT, a comma-separated list of masters, or etcd://HOST:PORT[,HOST:PORT]/PREFIX "
            f"(default: the client config's, else {DEFAULT_MASTER})",
        )
        sp.add_flag(
            "--config",
            default=None,
            help="the client config (master, CA, credential); default ~/.config/aiomesos/config.toml if there",
        )
        return sp

    for name, what in (("agents", "agents"), ("frameworks", "frameworks"), ("tasks", "tasks")):
        sp = with_master(sub.add_parser(name, help=f"list {what}"))
        sp.add_argument("--json", action="store_true", help="print a JSON array")
        if name != "agents":
            sp.add_argument("--all", action="store_true", help=f"include completed {what}")
        if name == "tasks":
            sp.add_argument("--framework", default="", help="only this framework's tasks")

    run = with_master(sub.add_parser("run", help="run a command as tasks on the cluster, like mesos-execute"))
    run.add_flag("--name", default="aiomesos-run", help="framework and task name")
    run.add_flag("--cpus", type=positive_float, default=0.5, help="cpus per task")
    run.add_flag("--mem", type=positive_float, default=64.0, help="memory per task (MB)")
    run.add_flag("--disk", type=float, default=0.0, help="disk per task (MB)")
    run.add_flag("--instances", type=int, default=1, help="how many tasks to run")
    run.add_flag("--role", default="", help="the role to subscribe with")
    run.add_argument("--env", action="append", default=[], metavar="K=V", help="environment variable for the task")
    run.add_flag("--timeout", type=positive_float, default=None, help="give up after this many seconds")
    run.add_argument(
        "cmd", nargs=argparse.REMAINDER, metavar="-- CMD ARGS", help="one argument: a shell command; several: argv"
    )

    task_cli.add_parsers(sub, with_master)
    policy_cli.add_parsers(sub, with_master)
    maintenance_cli.add_parsers(sub, with_master)
    masters_cli.add_parsers(sub, with_master)
    events_cli.add_parsers(sub, with_master)
    jobs_cli.add_parsers(sub, with_master)
    simulate_agents_cli.add_parsers(sub, with_master)
    certs_cli.add_parsers(sub)
    simulate_cli.add_parsers(sub)

    teardown = with_master(sub.add_parser("teardown", help="remove a framework and kill its tasks"))
    teardown.add_argument("framework_id")

    local_cli.add_parsers(sub)
    return p


# ----------------------------------------------------------------------------------------- listings
def _res(resources: Sequence[Any]) -> Resources:
    return Resources.from_proto(resources)


def _res_json(resources: Sequence[Any]) -> dict[str, Any]:
    return _amounts_json(_res(resources))


def _amounts_json(r: Resources) -> dict[str, Any]:
    out: dict[str, Any] = dict(r.scalars())
    for name in r.names() - set(out):
        ranges = r.ranges(name)
        out[name] = [list(x) for x in ranges] if ranges else sorted(r.set_items(name))
    return out


def reservations_json(total: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """An agent's reserved resources by role (statically or dynamically reserved alike), roles sorted."""
    res = _res(total)
    return {role: _amounts_json(res.reserved(role)) for role in sorted(res.roles() - {UNRESERVED})}


def agent_rows(resp: opb.GetAgentsResponse) -> list[dict[str, Any]]:
    rows = []
    for a in resp.agents:
        rows.append(
            {
                "id": a.agent_info.id,
                "hostname": a.agent_info.hostname,
                "address": a.agent_info.address,
                "active": a.active,
                "resources": _res_json(a.total),
                "allocated": _res_json(a.allocated),
                "reserved": reservations_json(a.total),
                "tasks": a.task_count,
                "drain": maintenance_cli.drain_json(a.drain),
                "attributes": {x.name: (x.text.value or x.scalar.value) for x in a.agent_info.attributes},
            }
        )
    return rows


def framework_rows(resp: opb.GetFrameworksResponse, include_completed: bool) -> list[dict[str, Any]]:
    rows = []
    groups = [(resp.frameworks, "active")] + ([(resp.completed_frameworks, "completed")] if include_completed else [])
    for frameworks, status in groups:
        for f in frameworks:
            rows.append(
                {
                    "id": f.framework_info.id,
                    "name": f.framework_info.name,
                    "roles": list(f.framework_info.roles) or ["*"],
                    "state": status if status == "completed" else ("connected" if f.connected else "disconnected"),
                    "tasks": f.task_count,
                    "resources": _res_json(f.allocated),
                    "offers": f.offer_count,
                    "suppressed_roles": list(f.suppressed_roles),
                }
            )
    return rows


def task_rows(resp: opb.GetTasksResponse, include_completed: bool) -> list[dict[str, Any]]:
    rows = []
    for t in list(resp.tasks) + (list(resp.completed_tasks) if include_completed else []):
        latest = t.statuses[-1] if t.statuses else None
        rows.append(
            {
                "id": t.task.task_id,
                "name": t.task.name,
                "framework_id": t.framework_id,
                "agent_id": t.task.agent_id,
                "state": state_name(t.state),
                "resources": _res_json(t.task.resources),
                "exit_code": latest.exit_code if latest is not None and latest.HasField("exit_code") else None,
                "message": latest.message if latest is not None else "",
                "reason": reason_name(latest.reason) if latest is not None and latest.reason else None,
            }
        )
    return rows


def reason_name(reason: int) -> str:
    """A status reason as Mesos names it (REASON_CONTAINER_LIMITATION_MEMORY); a number unknown here by its
    number."""
    return enum_name(tpb.TaskStatus.Reason, reason)


def print_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]], title: str) -> None:
    table = tables.FitTable(title, [header for header, _ in columns])
    for row in rows:
        table.add_row(*(_cell(row, key) for _, key in columns))
    tables.print_table(table)


def _cell(row: dict[str, Any], key: str) -> str:
    if key.startswith("res:"):
        name = key[4:]
        used = row.get("allocated", row["resources"]).get(name) if "allocated" in row else row["resources"].get(name)
        total = row["resources"].get(name)
        if "allocated" in row:
            return f"{_num(used or 0)}/{_num(total or 0)}"
        return _num(total) if total is not None else "-"
    value = row.get(key)
    if key == "drain":
        return maintenance_cli.drain_text(value)
    if key == "reserved":
        return reservations_text(value or {})
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "-"
    if isinstance(value, dict):
        return ";".join(f"{k}:{v}" for k, v in value.items()) or "-"
    return "-" if value is None else str(value)


def reservations_text(reserved: dict[str, dict[str, Any]]) -> str:
    """`eng: cpus=2, mem=1024`, a line per role; `-` for none."""
    lines = []
    for role, amounts in reserved.items():
        parts = [
            f"{name}={v:g}" if isinstance(v, int | float) else f"{name}={_ranges_text(v)}"
            for name, v in sorted(amounts.items())
        ]
        lines.append(f"{role}: {', '.join(parts)}")
    return "\n".join(lines) or "-"


def _ranges_text(value: list[Any]) -> str:
    """`[31000-31009,31100-31100]` for ranges, `{a,b}` for a set."""
    if value and isinstance(value[0], list):
        return "[" + ",".join(f"{b}-{e}" for b, e in value) + "]"
    return "{" + ",".join(map(str, value)) + "}"


def _num(value: Any) -> str:
    return str(int(value)) if float(value) == int(value) else f"{value:.2f}"


AGENT_COLUMNS = [
    ("ID", "id"),
    ("HOSTNAME", "hostname"),
    ("ADDRESS", "address"),
    ("ACTIVE", "active"),
    ("CPUS", "res:cpus"),
    ("MEM", "res:mem"),
    ("TASKS", "tasks"),
    ("RESERVED", "reserved"),
    ("DRAIN", "drain"),
    ("ATTRIBUTES", "attributes"),
]


async def cmd_list(args: argparse.Namespace) -> int:
    async with OperatorClient(args.master) as client:
        if args.command == "agents":
            rows = agent_rows(await client.agents())
            cols = AGENT_COLUMNS
        elif args.command == "frameworks":
            rows = framework_rows(await client.frameworks(), args.all)
            cols = [
                ("ID", "id"),
                ("NAME", "name"),
                ("ROLES", "roles"),
                ("STATE", "state"),
                ("TASKS", "tasks"),
                ("CPUS", "res:cpus"),
                ("MEM", "res:mem"),
                ("OFFERS", "offers"),
                ("SUPPRESSED", "suppressed_roles"),
            ]
        else:
            rows = task_rows(await client.tasks(args.framework), args.all)
            cols = [
                ("ID", "id"),
                ("NAME", "name"),
                ("FRAMEWORK", "framework_id"),
                ("AGENT", "agent_id"),
                ("STATE", "state"),
                ("CPUS", "res:cpus"),
                ("MEM", "res:mem"),
                ("EXIT", "exit_code"),
            ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_table(rows, cols, f"{len(rows)} {args.command}")
    return 0


async def cmd_teardown(args: argparse.Namespace) -> int:
    async with OperatorClient(args.master) as client:
        await client.teardown(args.framework_id)
    print(f"framework {args.framework_id} torn down")
    return 0


# ----------------------------------------------------------------------------------------- run
def _command_from(cmd: list[str]) -> str | list[str]:
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise UsageError("no command given: aiomesos run [OPTIONS] -- CMD [ARGS...]")
    return cmd[0] if len(cmd) == 1 else cmd


async def cmd_run(args: argparse.Namespace) -> int:
    command = _command_from(args.cmd)
    if args.instances < 1:
        raise UsageError("--instances must be at least 1")
    env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--env {item!r}: expected K=V")
        env[key] = value
    async with OperatorClient(args.master) as client:
        await client.state()  # fail fast, with one line, when the master is unreachable
    specs = [
        TaskSpec(
            task_id=f"{args.name}-{i}" if args.instances > 1 else args.name,
            command=command,
            cpus=args.cpus,
            mem=args.mem,
            disk=args.disk,
            env=env,
        )
        for i in range(args.instances)
    ]

    def on_update(record: TaskRecord, status: tpb.TaskStatus) -> None:
        extra = f" exit code {status.exit_code}" if status.HasField("exit_code") else ""
        why = f": {status.message}" if status.message and status.state != tpb.TASK_RUNNING else ""
        agent = f" on agent {record.agent_id}" + (f" ({record.hostname})" if record.hostname else "")
        print(f"{record.spec.task_id}  {state_name(status.state)}{agent}{extra}{why}", flush=True)

    def on_waiting(record: TaskRecord, why: str) -> None:
        print(f"{record.spec.task_id}  waiting: no offered agent can take it yet: {why}", flush=True)

    shown = command if isinstance(command, str) else shlex.join(command)
    print(f"running {shown!r} as {args.instances} task(s) on {args.master}", flush=True)
    scheduler = await run_batch(
        args.master,
        specs,
        name=args.name,
        role=args.role,
        on_update=on_update,
        on_waiting=on_waiting,
        timeout=args.timeout,
    )
    return scheduler.exit_code()


# ----------------------------------------------------------------------------------------- main
def use_client_config(args: argparse.Namespace) -> None:
    """The client config this command uses (--config, $AIOMESOS_CONFIG, the default file) is the one every
    client made in this process finds; the master is --master, else the config's, else the default."""
    try:
        path = find_client_config(args.config)
        config = ClientConfig.load(path) if path is not None else None
    except SecurityError as e:
        raise UsageError(str(e)) from None
    if path is not None:
        os.environ[CONFIG_ENV] = str(path)
    args.master = args.master or (config.master if config and config.master else DEFAULT_MASTER)


COMMANDS = {
    "agents": cmd_list,
    "frameworks": cmd_list,
    "tasks": cmd_list,
    "run": cmd_run,
    "teardown": cmd_teardown,
    **local_cli.COMMANDS,
    **policy_cli.COMMANDS,
    **maintenance_cli.COMMANDS,
    **masters_cli.COMMANDS,
    **events_cli.COMMANDS,
    **certs_cli.COMMANDS,
    **jobs_cli.COMMANDS,
    **simulate_agents_cli.COMMANDS,
    "task": task_cli.cmd_task,
    "top": task_cli.cmd_top,
}


async def _until_terminated(command: Coroutine[Any, Any, int]) -> int:
    """Run a command; SIGTERM cancels it as Ctrl-C does, so its frameworks are torn down and its local clusters
    stopped (nothing left running) before the process exits."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await command


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    maintenance = maintenance_cli.routed(argv)  # `agent drain` / `agent up`: operator commands, not the daemon
    if maintenance is not None:
        argv = maintenance
    elif argv and argv[0] in DAEMONS:
        # The daemons parse their own flags (and print their own --help).
        os.execv(sys.executable, [sys.executable, "-m", DAEMONS[argv[0]], *argv[1:]])
    elif argv and argv[0] == "simulate":  # the simulator parses its own flags too (it runs the master's core)
        raise SystemExit(simulate_cli.run(argv[1:]))
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = COMMANDS[args.command]
    try:
        if hasattr(args, "master"):
            use_client_config(args)
        code = asyncio.run(_until_terminated(handler(args)))
    except asyncio.CancelledError:
        code = 128 + signal.SIGTERM
    except (UsageError, ResourcesError) as e:
        print(f"aiomesos {args.command}: error: {e}", file=sys.stderr)
        code = 2
    except OperatorError as e:
        print(f"aiomesos {args.command}: error: {e}", file=sys.stderr)
        code = 2
    except DriverError as e:
        print(f"aiomesos {args.command}: error: {e}", file=sys.stderr)
        code = 2
    except (ClusterError, TimeoutError) as e:
        print(f"aiomesos {args.command}: error: {e}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        # The reader went away (`aiomesos events -f | head`): not an error; keep Python from complaining at exit.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    raise SystemExit(code)


if __name__ == "__main__":
    main()
