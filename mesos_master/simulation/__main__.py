"""`python -m mesos_master.simulation` (what `aiomesos simulate` runs):

    simulate TRACE [--allocator drf] [--fitness binpacking] [--compare POLICY] [--agents SPEC] [--until 24h]
                   [--seed N] [--out DIR] [--json]
    simulate generate [--agents SPEC] [--hours 24] [--load 0.7] [--roles prod:2,batch:1,dev:1] [--seed N] [--out F]
    simulate convert-google task_events.csv[.gz]... [--machine-cpus 32] [--machine-mem 131072] [--out F]

Bad input is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from mesos_master.simulation import quiet_logging
from mesos_master.simulation.frameworks import FITNESS
from mesos_master.simulation.generate import GeneratorOptions, generate, parse_roles
from mesos_master.simulation.google import convert
from mesos_master.simulation.replay import DEFAULT_LOOP_INTERVAL, Policy, ReplayResult, policy_pair, replay
from mesos_master.simulation.trace import AgentGroup, TraceError, dump_trace, load_trace, parse_agents, parse_duration
from scheduler_sdk._daemon.flags import FlagParser, UsageError

PROG = "aiomesos simulate"
DEFAULT_AGENTS = "1000x cpus:32;mem:131072@zone=3,rack=50"


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _agents(text: str) -> list[AgentGroup]:
    try:
        return parse_agents(text)
    except TraceError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("agents: ")) from None


def replay_parser() -> FlagParser:
    p = FlagParser(prog=PROG, description="Replay a workload trace in virtual time through the master's core.")
    p.add_argument("trace", type=Path, help="the trace (JSON lines: docs/simulate.md)")
    p.add_argument("--allocator", default="drf", help="the allocation policy (drf, fair, priority, random, plugins)")
    p.add_argument("--fitness", default="binpacking", choices=sorted(FITNESS), help="the placement fitness")
    p.add_argument(
        "--compare", default=None, metavar="POLICY", help="replay again with this allocator or fitness, side by side"
    )
    p.add_argument(
        "--agents",
        type=_agents,
        default=None,
        help="the cluster, e.g. '1000x cpus:32;mem:131072@zone=3' (default: the trace's agents line)",
    )
    p.add_argument("--until", type=_duration, default=None, help="stop at this trace time (e.g. 24h)")
    p.add_argument("--seed", type=int, default=0, help="the seed of a random policy")
    p.add_argument("--allocation-interval", type=_duration, default=1.0, help="seconds between allocation cycles")
    p.add_argument(
        "--loop-interval",
        type=_duration,
        default=DEFAULT_LOOP_INTERVAL,
        help="the frameworks' scheduling loop: at most one engine run per interval (PlacementScheduler's default)",
    )
    p.add_argument("--out", type=Path, default=None, help="write summary.json and the PNG plots into this directory")
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    return p


def generate_parser() -> FlagParser:
    p = FlagParser(prog=f"{PROG} generate", description="Write a synthetic trace (JSON lines).")
    p.add_argument(
        "--agents", type=_agents, default=DEFAULT_AGENTS, help="the cluster: COUNTx RESOURCES[@ATTR=SPREAD,...]"
    )
    p.add_argument("--hours", type=float, default=24.0, help="how long the trace is")
    p.add_argument("--load", type=float, default=0.7, help="the mean share of the cpus asked for")
    p.add_argument("--roles", default="prod:2,batch:1,dev:1", help="roles and their shares of the jobs")
    p.add_argument("--mean-tasks", type=float, default=4.0, help="the mean tasks per job")
    p.add_argument("--median-duration", type=_duration, default=600.0, help="the median run time of a task")
    p.add_argument("--constrained", type=float, default=0.1, help="the share of jobs with a placement constraint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="the file to write (default: stdout)")
    return p


def convert_parser() -> FlagParser:
    p = FlagParser(prog=f"{PROG} convert-google", description="Convert Google cluster trace task_events CSVs.")
    p.add_argument("files", type=Path, nargs="+", help="task_events CSV files (.csv or .csv.gz), in time order")
    p.add_argument("--machine-cpus", type=float, default=32.0, help="the cpus of the trace's largest machine")
    p.add_argument("--machine-mem", type=float, default=131072.0, help="its memory (MB)")
    p.add_argument("--agents", type=_agents, default=None, help="an agents line to write at the top")
    p.add_argument("--out", type=Path, default=None, help="the file to write (default: stdout)")
    return p


def _write_lines(lines: Sequence[str] | object, out: Path | None) -> None:
    text = "\n".join(lines) + "\n"  # type: ignore[arg-type]
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")


def cmd_generate(argv: list[str]) -> int:
    a = generate_parser().parse_args(argv)
    try:
        roles = parse_roles(a.roles)
    except ValueError as e:
        raise UsageError(str(e)) from None
    for name, value, ok in (
        ("--hours", a.hours, a.hours > 0),
        ("--load", a.load, 0 < a.load <= 10),
        ("--mean-tasks", a.mean_tasks, 1 <= a.mean_tasks <= 1000),
        ("--constrained", a.constrained, 0 <= a.constrained <= 1),
    ):
        if not ok:
            raise UsageError(f"{name}: {value} is out of range")
    options = GeneratorOptions(
        hours=a.hours,
        load=a.load,
        roles=roles,
        mean_tasks=a.mean_tasks,
        median_duration=a.median_duration,
        constrained=a.constrained,
        seed=a.seed,
    )
    _write_lines(list(dump_trace(generate(a.agents, options), a.agents)), a.out)
    return 0


def cmd_convert(argv: list[str]) -> int:
    a = convert_parser().parse_args(argv)
    result = convert(a.files, machine_cpus=a.machine_cpus, machine_mem=a.machine_mem)
    _write_lines(list(dump_trace(result.arrivals, a.agents)), a.out)
    print(
        f"{len(result.arrivals)} arrivals of {result.tasks} tasks from {result.rows} rows "
        f"({result.skipped} tasks left out: they did not both start and end in the files)",
        file=sys.stderr,
    )
    return 0


def policies(a: argparse.Namespace) -> list[Policy]:
    try:
        return policy_pair(a.allocator, a.fitness, a.compare)
    except ValueError as e:
        raise UsageError(str(e)) from None


async def replay_all(a: argparse.Namespace) -> list[ReplayResult]:
    trace = load_trace(a.trace)
    agents = a.agents if a.agents is not None else trace.agents
    if agents is None:
        raise UsageError(f"{a.trace} has no agents line: give --agents, e.g. --agents '{DEFAULT_AGENTS}'")
    return [
        await replay(
            trace,
            agents,
            p,
            seed=a.seed,
            until=a.until,
            allocation_interval=a.allocation_interval,
            loop_interval=a.loop_interval,
        )
        for p in policies(a)
    ]


def cmd_replay(argv: list[str]) -> int:
    from mesos_master.simulation.report import table

    a = replay_parser().parse_args(argv)
    results = asyncio.run(replay_all(a))
    summaries = [r.summary() for r in results]
    if a.out is not None:
        from mesos_master.simulation.plots import write_plots

        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "summary.json").write_text(json.dumps(summaries, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        write_plots(results, a.out)
    if a.json:
        print(json.dumps(summaries if len(summaries) > 1 else summaries[0], sort_keys=True))
    else:
        print(table(results))
        if a.out is not None:
            print(f"\nwrote {a.out}/summary.json, utilization.png, waits.png, shares.png")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet_logging()
    commands = {"generate": cmd_generate, "convert-google": cmd_convert}
    command = commands.get(argv[0]) if argv else None
    try:
        return command(argv[1:]) if command is not None else cmd_replay(argv)
    except (UsageError, TraceError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
