"""`aiomesos simulate-agents`: attach N simulated agents to a master (over the real agent protocol, with an
agent's credentials) to size it, without starting a process on the host; see docs/scale.md. Runs until SIGTERM,
Ctrl-C or --duration, printing what the agents see every --report-interval seconds. `--processes P` splits the
agents over P child processes (each runs this command for its share) and sums their reports."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scheduler_sdk._daemon.flags import (
    FlagParser,
    UsageError,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from scheduler_sdk.security import ClientConfig, SecurityError, find_client_config
from scheduler_sdk.simulated_agents import DEFAULT_RESOURCES, SIM_SECONDS_LABEL, SimulatedAgents

#: The figures a report sums over the processes (the others are taken from the first).
SUMMED = (
    "agents",
    "attached",
    "tasks_launched",
    "tasks_running",
    "tasks_finished",
    "tasks_killed",
    "updates_sent",
    "updates_acknowledged",
    "pings",
)


def add_parsers(sub: Any, with_master: Callable[[FlagParser], FlagParser]) -> None:
    p = with_master(
        sub.add_parser(
            "simulate-agents",
            help="attach N simulated agents to a master (a load generator to size it; starts no processes)",
        )
    )
    p.add_flag("--count", type=positive_int, required=True, help="how many agents to attach")
    p.add_flag("--resources", default=DEFAULT_RESOURCES, help="each agent's resources (resource text form)")
    p.add_flag(
        "--attributes-spread",
        default="",
        help="text attributes spread evenly over the agents, NAME=COUNT,...: zone=3,rack=100 gives zone-0..2 and "
        "rack-0..99",
    )
    p.add_flag(
        "--task-seconds",
        type=non_negative_float,
        default=1.0,
        help="how long a task runs before TASK_FINISHED, unless its label says (0: until killed)",
    )
    p.add_flag(
        "--task-seconds-label",
        default=SIM_SECONDS_LABEL,
        help="the task label whose value (seconds, a float) is the task's run time",
    )
    p.add_flag("--hostname-prefix", default="sim-", help="agents are named PREFIX0, PREFIX1, ...")
    p.add_flag("--first-index", type=non_negative_int, default=0, help="the number of the first agent")
    p.add_flag("--processes", type=positive_int, default=1, help="split the agents over this many processes")
    p.add_flag("--streams-per-channel", type=positive_int, default=500, help="agents' streams per gRPC channel")
    p.add_flag("--attach-concurrency", type=positive_int, default=64, help="attaches in flight at once")
    p.add_flag("--duration", type=positive_float, default=None, help="detach and exit after this many seconds")
    p.add_flag("--report-interval", type=positive_float, default=5.0, help="seconds between reports")
    p.add_argument("--json", action="store_true", help="one JSON object per report")
    p.add_flag("--ca", default=None, help="the cluster CA (default: the client config's)")
    p.add_flag("--cert", default=None, help="an agent's certificate, agent/NAME (default: the client config's)")
    p.add_flag("--key", default=None, help="its private key")


def agent_config(args: argparse.Namespace) -> ClientConfig | None:
    """The agents' credentials: --ca/--cert/--key, else the client config's (None: plaintext)."""
    try:
        path = find_client_config(args.config)
        config = ClientConfig.load(path) if path is not None else ClientConfig()
    except SecurityError as e:
        raise UsageError(str(e)) from None
    if (args.cert is None) != (args.key is None):
        raise UsageError("--cert and --key go together")
    ca = Path(args.ca) if args.ca else config.ca
    cert = Path(args.cert) if args.cert else config.cert
    key = Path(args.key) if args.key else config.key
    if ca is None:
        return None
    if cert is None:
        raise UsageError("simulated agents need an agent's certificate: --cert and --key (role agent)")
    return ClientConfig(master=args.master, ca=ca, cert=cert, key=key)


def shares(count: int, processes: int, first: int) -> list[tuple[int, int]]:
    """(first index, count) of each process's share of `count` agents, as even as can be."""
    processes = min(processes, count)
    base, extra = divmod(count, processes)
    out, at = [], first
    for i in range(processes):
        n = base + (1 if i < extra else 0)
        out.append((at, n))
        at += n
    return out


def summed(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One report of several processes' (their counts added, the worst ping lag kept)."""
    if not reports:
        return {}
    total: dict[str, Any] = dict(reports[0])
    for name in SUMMED:
        total[name] = sum(r.get(name, 0) for r in reports)
    lags = [r["ping_lag_p99_ms"] for r in reports if r.get("ping_lag_p99_ms") is not None]
    total["ping_lag_p99_ms"] = max(lags) if lags else None
    total["processes"] = len(reports)
    return total


def report_line(report: dict[str, Any]) -> str:
    lag = report.get("ping_lag_p99_ms")
    return (
        f"attached {report['attached']}/{report['agents']}  tasks running {report['tasks_running']}  "
        f"launched {report['tasks_launched']}  finished {report['tasks_finished']}  killed {report['tasks_killed']}  "
        f"pings {report['pings']} (interval {report['ping_interval_seconds']:g} s"
        + (f", lag p99 {lag:.1f} ms)" if lag is not None else ")")
    )


def _lag_p99_ms(lags: list[float]) -> float | None:
    if not lags:
        return None
    ordered = sorted(lags)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def _print(report: dict[str, Any], as_json: bool) -> None:
    print(json.dumps(report) if as_json else report_line(report), flush=True)


async def cmd_simulate_agents(args: argparse.Namespace) -> int:
    config = agent_config(args)
    if args.processes > 1:
        return await _parent(args)
    try:
        sim = SimulatedAgents(
            args.master,
            config,
            args.count,
            resources=args.resources,
            attributes_spread=args.attributes_spread,
            task_seconds=args.task_seconds,
            task_seconds_label=args.task_seconds_label,
            hostname_prefix=args.hostname_prefix,
            first_index=args.first_index,
            streams_per_channel=args.streams_per_channel,
            attach_concurrency=args.attach_concurrency,
        )
    except ValueError as e:
        raise UsageError(str(e)) from None
    await sim.start()
    deadline = time.monotonic() + args.duration if args.duration is not None else None
    try:
        while deadline is None or time.monotonic() < deadline:
            until = time.monotonic() + args.report_interval
            if deadline is not None:
                until = min(until, deadline)
            while time.monotonic() < until and not sim.rejected:
                await asyncio.sleep(min(0.1, max(0.0, until - time.monotonic())))
            refused = sim.rejected
            if refused:
                print(
                    f"aiomesos simulate-agents: error: the master refused {len(refused)} agents: {refused[0]}",
                    file=sys.stderr,
                )
                return 2
            report = {**sim.stats(), "ping_lag_p99_ms": _lag_p99_ms(list(sim.ping_lags))}
            sim.ping_lags.clear()
            _print(report, args.json)
    finally:
        await sim.stop()
    return 0


async def _parent(args: argparse.Namespace) -> int:
    """Run each share in a child process (this command, --processes 1, --json) and print the sums."""
    children = []
    for first, count in shares(args.count, args.processes, args.first_index):
        argv = [sys.executable, "-m", "scheduler_sdk", "simulate-agents", *_child_flags(args, first, count)]
        children.append(await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE))
    latest: list[dict[str, Any] | None] = [None] * len(children)
    failed: list[str] = []

    async def follow(i: int, child: asyncio.subprocess.Process) -> None:
        assert child.stdout is not None
        async for raw in child.stdout:
            try:
                latest[i] = json.loads(raw)
            except ValueError:
                failed.append(raw.decode(errors="replace").strip())

    async def show() -> None:
        while True:
            await asyncio.sleep(args.report_interval)
            ready = [r for r in latest if r is not None]
            if len(ready) == len(latest):  # once every process has reported
                _print(summed(ready), args.json)

    shower = asyncio.create_task(show())
    try:
        await asyncio.gather(*(follow(i, c) for i, c in enumerate(children)))
        codes = [await c.wait() for c in children]
    finally:
        shower.cancel()
        for child in children:
            if child.returncode is None:
                child.terminate()
        for child in children:
            await child.wait()
    for line in failed:
        print(line, file=sys.stderr)
    return max(codes) if codes else 0


def _child_flags(args: argparse.Namespace, first: int, count: int) -> list[str]:
    flags = [
        "--master", args.master, "--count", str(count), "--first-index", str(first), "--processes", "1",
        "--resources", args.resources, "--attributes-spread", args.attributes_spread,
        "--task-seconds", str(args.task_seconds), "--task-seconds-label", args.task_seconds_label,
        "--hostname-prefix", args.hostname_prefix, "--streams-per-channel", str(args.streams_per_channel),
        "--attach-concurrency", str(args.attach_concurrency), "--report-interval", str(args.report_interval),
        "--json",
    ]  # fmt: skip
    for name in ("config", "ca", "cert", "key", "duration"):
        value = getattr(args, name)
        if value is not None:
            flags += [f"--{name}", str(value)]
    return flags


COMMANDS = {"simulate-agents": cmd_simulate_agents}
