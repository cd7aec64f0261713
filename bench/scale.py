"""The whole master at cluster scale: a real, secure master daemon with simulated agents (`aiomesos
simulate-agents`, in child processes) attached in steps (10k, 25k, 50k), then 1,000 light frameworks (a child
process: each subscribes and declines every offer with a refusal filter, many per channel).

Reported (one JSON line, appended to bench/results/scale.jsonl): per step, agents attached per second and the
master's RSS (psutil on the daemon's pid), operator calls while the agents ping (GetState and GetAgents, a page of
500 items as kubectl asks, and the master's default page of 1 MiB; GetMetrics), the PING lag (from the master
queueing a ping to the agent reading it) p99; at the last step with the frameworks, the allocation cycle (from
GetMetrics' aiomesos_master_allocation_run_seconds over the window), the loop's longest stall
(aiomesos_master_event_loop_stall_seconds_max, where the master has it) and the same operator calls again; and,
placements per second of one placement-SDK framework (bench.scale_placement).

    python -m bench.scale                       # 10k, 25k, 50k agents, 1,000 frameworks
    python -m bench.scale --quick               # 2,000 agents, 50 frameworks (what `make bench` runs)
    python -m bench.scale --agents 10000 --frameworks 0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from aiomesos.v1 import operator_pb2 as opb
from bench import scale_placement
from bench.common import percentile, report
from bench.scale_frameworks import LIGHT_PREFIX
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.operator import OperatorClient

QUICK_AGENTS = (2_000,)
QUICK_FRAMEWORKS = 50
AGENTS_PER_PROCESS = 25_000
KUBECTL_CHUNK = 500  # kubectl's --chunk-size default: how a client pages through a long list
MASTER_FLAGS = ["--allocation-interval", "1"]


class Children:
    """The load's child processes (simulated agents, frameworks): their latest JSON report each."""

    def __init__(self, stderr: int | None = asyncio.subprocess.DEVNULL) -> None:
        self.stderr = stderr  # None: the children's stderr is this process's (--verbose)
        self.procs: list[asyncio.subprocess.Process] = []
        self.latest: list[dict[str, Any]] = []
        self.history: list[list[dict[str, Any]]] = []
        self._readers: list[asyncio.Task[None]] = []

    async def spawn(self, argv: list[str]) -> int:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=os.environ
        )
        index = len(self.procs)
        self.procs.append(proc)
        self.latest.append({})
        self.history.append([])
        self._readers.append(asyncio.create_task(self._follow(index, proc)))
        return index

    async def _follow(self, index: int, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            with contextlib.suppress(ValueError):
                report_ = json.loads(raw)
                self.latest[index] = report_
                self.history[index].append({**report_, "_at": time.monotonic()})

    def alive(self, index: int) -> bool:
        return self.procs[index].returncode is None

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.terminate()
        for proc in self.procs:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30):
                    await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        for reader in self._readers:
            reader.cancel()


def agents_argv(master: str, cluster: LocalCluster, count: int, first: int, processes: int) -> list[str]:
    assert cluster.certificates is not None
    cert, key = cluster.certificates.issue("sim", "agent")
    return [
        sys.executable, "-m", "scheduler_sdk", "simulate-agents", "--master", master, "--count", str(count),
        "--first-index", str(first), "--processes", str(processes), "--ca", str(cluster.certificates.ca_cert),
        "--cert", str(cert), "--key", str(key), "--attributes-spread", "zone=3,rack=100", "--task-seconds", "1",
        "--report-interval", "1", "--json",
    ]  # fmt: skip


async def timed_calls(client: OperatorClient, method: str, request: Any, count: int, pause: float) -> list[float]:
    """Latencies (ms) of `count` calls, one at a time, `pause` seconds apart."""
    out = []
    for _ in range(count):
        started = time.perf_counter()
        await client._call(method, request)
        out.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(pause)
    return out


async def operator_figures(client: OperatorClient, calls: int) -> dict[str, float]:
    """p50/p99 (ms) of the operator's calls, asked one after another (as a dashboard or a script would)."""
    shapes = {
        "get_state_page500": ("GetState", opb.GetStateRequest(limit=KUBECTL_CHUNK), calls),
        "get_agents_page500": ("GetAgents", opb.GetAgentsRequest(limit=KUBECTL_CHUNK), calls),
        "get_state_default_page": ("GetState", opb.GetStateRequest(), max(10, calls // 5)),
        "get_metrics": ("GetMetrics", opb.GetMetricsRequest(), max(10, calls // 5)),
    }
    figures: dict[str, float] = {}
    for name, (method, request, n) in shapes.items():
        latencies = await timed_calls(client, method, request, n, 0.02)
        figures[f"{name}_p50_ms"] = round(percentile(latencies, 50), 1)
        figures[f"{name}_p99_ms"] = round(percentile(latencies, 99), 1)
    return figures


def rss_mb(pid: int) -> float:
    return round(psutil.Process(pid).memory_info().rss / 1e6, 1)


def attached(children: Children, indexes: list[int]) -> int:
    return sum(int(children.latest[i].get("attached", 0)) for i in indexes)


def ping_lag_p99(children: Children, indexes: list[int], since: float) -> float | None:
    """The worst per-second p99 of the ping lag the agents saw since `since` (ms)."""
    lags = [
        r["ping_lag_p99_ms"]
        for i in indexes
        for r in children.history[i]
        if r["_at"] >= since and r.get("ping_lag_p99_ms") is not None
    ]
    return round(max(lags), 1) if lags else None


async def wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached in {timeout:g} s")
        await asyncio.sleep(0.2)


def histogram_window(before: dict[str, float], after: dict[str, float], name: str) -> dict[str, float]:
    """The mean, and the bucket bound that 99 % of the observations were under, of a histogram between two
    GetMetrics samples."""
    count = after.get(f"{name}_count", 0.0) - before.get(f"{name}_count", 0.0)
    total = after.get(f"{name}_sum", 0.0) - before.get(f"{name}_sum", 0.0)
    if count <= 0:
        return {"count": 0}
    buckets = sorted(
        (float(k.split('le="')[1].rstrip('"}')), after[k] - before.get(k, 0.0))
        for k in after
        if k.startswith(f"{name}_bucket{{")
    )
    p99 = next((le for le, n in buckets if n >= 0.99 * count), float("inf"))
    return {"count": count, "mean_ms": round(1000 * total / count, 1), "p99_bound_ms": 1000 * p99}


async def measure_step(
    client: OperatorClient, pid: int, children: Children, sims: list[int], calls: int, settle: float
) -> dict[str, Any]:
    await asyncio.sleep(settle)
    since = time.monotonic()
    figures: dict[str, Any] = {"master_rss_mb": rss_mb(pid)}
    figures.update(await operator_figures(client, calls))
    figures["ping_lag_p99_ms"] = ping_lag_p99(children, sims, since)
    figures["ping_interval_s"] = max((children.latest[i].get("ping_interval_seconds", 0.0) for i in sims), default=0.0)
    figures["master_rss_mb_after"] = rss_mb(pid)
    return figures


async def run(args: argparse.Namespace) -> dict[str, Any]:
    counts = QUICK_AGENTS if args.quick else tuple(int(x) for x in args.agents.split(","))
    frameworks = QUICK_FRAMEWORKS if args.quick and args.frameworks is None else (args.frameworks or 0)
    # SIGTERM (a timeout, a Ctrl-C elsewhere) cancels the run, so that the finally below stops the master and the
    # simulate-agents children instead of leaving them running.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    cluster = LocalCluster(work, agents=0, master_flags=[*MASTER_FLAGS, *args.master_flag], log_level="warning")
    await cluster.start()
    assert cluster.master is not None and cluster.master.process is not None
    pid = cluster.master.process.pid
    children = Children(None if args.verbose else asyncio.subprocess.DEVNULL)
    figures: dict[str, Any] = {"agents": list(counts), "frameworks": frameworks, "load": os.getloadavg()[0]}
    try:
        client = OperatorClient(cluster.master_address, config=cluster.client_config, timeout=60)
        figures["master_rss_mb_empty"] = rss_mb(pid)
        sims: list[int] = []
        total = 0
        steps = []
        for count in counts:
            add = count - total
            processes = max(1, -(-add // AGENTS_PER_PROCESS))
            started = time.monotonic()
            sims.append(await children.spawn(agents_argv(cluster.master_address, cluster, add, total, processes)))
            target = count
            await wait_for(lambda t=target: attached(children, sims) >= t, args.attach_timeout, f"{count} agents")
            elapsed = time.monotonic() - started
            total = count
            step = {"agents": count, "attach_per_second": round(add / elapsed, 1), "attach_seconds": round(elapsed, 1)}
            step.update(await measure_step(client, pid, children, sims, args.calls, args.settle))
            print(json.dumps(step), file=sys.stderr, flush=True)
            steps.append(step)
        figures["steps"] = steps
        if frameworks:
            figures["with_frameworks"] = await measure_frameworks(
                args, cluster, client, pid, children, sims, frameworks
            )
        figures["placement"] = await measure_placement(cluster, args)
        await client.close()
    finally:
        await children.stop()
        await cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    return figures


async def measure_frameworks(
    args: argparse.Namespace,
    cluster: LocalCluster,
    client: OperatorClient,
    pid: int,
    children: Children,
    sims: list[int],
    frameworks: int,
) -> dict[str, Any]:
    argv = [
        sys.executable, "-m", "bench.scale_frameworks", "--master", cluster.master_address,
        "--config", str(cluster.client_config_path), "--count", str(frameworks),
        "--refuse-seconds", str(args.refuse_seconds),
    ]  # fmt: skip
    started = time.monotonic()
    index = await children.spawn(argv)
    await wait_for(
        lambda: children.latest[index].get("subscribed", 0) >= frameworks or not children.alive(index),
        args.attach_timeout,
        f"{frameworks} frameworks subscribed",
    )
    subscribed_s = time.monotonic() - started
    if not children.alive(index):
        code = children.procs[index].returncode
        raise RuntimeError(f"the frameworks' process ended ({code}): {children.latest[index]}")
    children.procs[index].send_signal(signal.SIGUSR1)  # every framework revives: the offer churn starts
    await asyncio.sleep(args.settle)
    before = await client.metrics()
    since = time.monotonic()
    out: dict[str, Any] = {"subscribe_seconds": round(subscribed_s, 1)}
    out.update(await measure_step(client, pid, children, sims, args.calls, 0.0))
    await asyncio.sleep(max(0.0, args.window - (time.monotonic() - since)))
    after = await client.metrics()
    out["allocation_run"] = histogram_window(before, after, "aiomesos_master_allocation_run_seconds")
    out["allocation_last_agents_examined"] = after.get("aiomesos_master_allocation_last_agents_examined")
    out["allocation_last_offers"] = after.get("aiomesos_master_allocation_last_offers")
    stall = after.get("aiomesos_master_event_loop_stall_seconds_max")
    out["event_loop_stall_max_ms"] = round(stall * 1000, 1) if stall is not None else None
    out["declines"] = children.latest[index].get("declined", 0)
    out["offers_received"] = children.latest[index].get("offers", 0)
    out["framework_errors"] = children.latest[index].get("errors", 0)
    out["frameworks_subscribed_at_end"] = children.latest[index].get("subscribed", 0)
    out["frameworks_at_master"] = sum(
        1 for f in (await client.frameworks()).frameworks if f.framework_info.name.startswith(LIGHT_PREFIX)
    )
    return out


async def measure_placement(cluster: LocalCluster, args: argparse.Namespace) -> dict[str, Any]:
    """Placements per second of one placement-SDK framework on the agents attached (bench.scale_placement)."""
    certificates = cluster.certificates
    assert certificates is not None, "bench.scale runs a secure cluster"
    config = certificates.client_config(cluster.master_address, name="bench", role="framework")
    return await scale_placement.measure(cluster.master_address, config, tasks=args.placement_tasks)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", default="10000,25000,50000", help="the steps: agents attached in all, in order")
    p.add_argument("--frameworks", type=int, default=None, help="light frameworks at the last step (default 1000)")
    p.add_argument("--quick", action="store_true", help=f"{QUICK_AGENTS[0]} agents, {QUICK_FRAMEWORKS} frameworks")
    p.add_argument("--calls", type=int, default=None, help="operator calls of each kind per step (100; --quick: 30)")
    p.add_argument("--settle", type=float, default=5.0, help="seconds to wait after each step before measuring")
    p.add_argument("--window", type=float, default=30.0, help="seconds the allocation cycle is watched for")
    p.add_argument("--refuse-seconds", type=float, default=5.0, help="the frameworks' refusal filter")
    p.add_argument("--attach-timeout", type=float, default=600.0)
    p.add_argument("--placement-tasks", type=int, default=20_000)
    p.add_argument("--verbose", action="store_true", help="the children's stderr on this one's")
    p.add_argument("--master-flag", action="append", default=[], help="a further master flag (repeatable)")
    args = p.parse_args(argv)
    if args.frameworks is None and not args.quick:
        args.frameworks = 1000
    if args.calls is None:
        args.calls = 30 if args.quick else 100
    try:
        figures = asyncio.run(run(args))
    except asyncio.CancelledError:
        print("bench.scale: stopped by SIGTERM (the master and the simulated agents were stopped)", file=sys.stderr)
        raise SystemExit(143) from None
    report("scale", figures)


if __name__ == "__main__":
    main()
