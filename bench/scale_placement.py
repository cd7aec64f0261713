"""`python -m bench.scale_placement`: placements per second sustained by one framework built on the SDK's placement
engine, on simulated agents attached to one real, secure master.

The framework is what a framework author writes: a `PlacementScheduler` over `PlacementEngine(BinPacking("cpus"))`
run by `run_framework`, its TaskInfos from `default_task_info` plus the simulated agents' run-time label
(``aiomesos.sim/seconds``). It is given `tasks` short tasks at once and places them as offers come; a task counts
as placed when its agent reports it (TASK_STARTING or later reaches the framework: the master accepted it and the
agent took it). ``placements_per_second`` is placed tasks over the time from the first offer to the last placement
(with `seconds`: placements within that many seconds of the first offer). Also: ``accept_calls`` (ACCEPTs sent, one
per agent used per engine run), ``engine_runs``, the engine's own time per run (``placement_run_ms_p50`` / ``_max``),
``tasks_finished`` (once all are placed, the framework waits for them to end, at most their run time + 30 s, before
it tears down), and how long the first offers took to come (``first_offer_s``).

`measure(master, config, ...)` is the figure alone, on whatever agents are attached (bench.scale calls it). Run
alone, this starts its own secure master (`LocalCluster` with no real agent) and `--agents` simulated agents, in
this process or, with ``--processes P``, in P child processes (`aiomesos simulate-agents`), so that the framework has
a core of its own; one JSON line through `bench.common.report("scale_placement", ...)`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import structlog

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from bench.common import percentile, report
from scheduler_sdk.driver import SchedulerDriver
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.operator import OperatorClient
from scheduler_sdk.placement import Assignment, BinPacking, PlacementEngine, SchedulingResult, TaskRequest
from scheduler_sdk.placement.service import PlacementScheduler, default_task_info, run_framework
from scheduler_sdk.security.config import ClientConfig
from scheduler_sdk.simulated_agents import DEFAULT_RESOURCES, SIM_SECONDS_LABEL, SimulatedAgents

PLACED = frozenset({tpb.TASK_STARTING, tpb.TASK_RUNNING, tpb.TASK_FINISHED})
MASTER_FLAGS = ["--allocation-interval", "0.2"]
FINISH_GRACE = 30.0  # seconds past a task's run time to wait for the last TASK_FINISHED
CONNECTED = 'aiomesos_master_agents{state="connected"}'


class _Timed(PlacementScheduler):
    """The placement scheduler as shipped, noting when offers first came and the engine's time per run."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.first_offer_at: float | None = None
        self.run_ms: list[float] = []

    async def offers(self, driver: SchedulerDriver, offers: Any) -> None:
        if self.first_offer_at is None and offers:
            self.first_offer_at = time.monotonic()
        await super().offers(driver, offers)

    def schedule_once(self, driver: SchedulerDriver) -> SchedulingResult | None:
        result = super().schedule_once(driver)
        if result is not None:
            self.run_ms.append(result.elapsed_ms)
        return result


def _sim_task_info(task_seconds: float) -> Any:
    label = f"{task_seconds:g}"

    def task_info(task: TaskRequest, assignment: Assignment) -> tpb.TaskInfo:
        info = default_task_info(task, assignment)
        info.labels.labels.add(key=SIM_SECONDS_LABEL, value=label)
        return info

    return task_info


async def measure(
    master: str,
    config: ClientConfig | None,
    *,
    tasks: int = 20000,
    seconds: float | None = None,
    task_seconds: float = 1.0,
    cpus: float = 0.1,
    mem: float = 32.0,
    timeout: float = 600.0,
    launch_batch: int = 2000,
) -> dict[str, float]:
    """Place `tasks` tasks of `cpus`/`mem` running `task_seconds` each on the agents attached to `master`
    (`config`: a framework's credentials) with one placement-SDK framework; returns the figures (module docstring).
    With `seconds`, stop that long after the first offer (what is placed by then counts)."""
    placed_at: dict[str, float] = {}
    finished = 0
    all_placed, all_finished = asyncio.Event(), asyncio.Event()

    def on_update(task: TaskRequest | None, status: tpb.TaskStatus) -> None:
        nonlocal finished
        if status.state in PLACED and status.task_id not in placed_at:
            placed_at[status.task_id] = time.monotonic()
            if len(placed_at) >= tasks:
                all_placed.set()
        if status.state == tpb.TASK_FINISHED:
            finished += 1
            if finished >= tasks:
                all_finished.set()

    scheduler = _Timed(
        PlacementEngine(BinPacking("cpus")),
        task_info=_sim_task_info(task_seconds),
        on_update=on_update,
        loop_interval=0.02,
        launch_batch=launch_batch,
    )
    scheduler.submit(*(TaskRequest(f"p{i}", cpus=cpus, mem=mem, payload="true") for i in range(tasks)))
    started, cpu = time.monotonic(), time.process_time()
    until = asyncio.Event()

    async def stop_when_done() -> None:
        if seconds is None:
            await all_placed.wait()
        else:
            while scheduler.first_offer_at is None:
                await asyncio.sleep(0.05)
            left = scheduler.first_offer_at + seconds - time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_placed.wait(), max(0.0, left))
        if all_placed.is_set():  # the tasks end on their agents (a teardown now would kill them)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_finished.wait(), task_seconds + FINISH_GRACE)
        until.set()

    framework = rpb.FrameworkInfo(name="bench-scale-placement", user="nobody")
    stopper = asyncio.create_task(stop_when_done())
    try:
        await run_framework(master, framework, scheduler, until=until, timeout=timeout, config=config)
    finally:
        stopper.cancel()
    first = scheduler.first_offer_at if scheduler.first_offer_at is not None else started
    end = first + seconds if seconds is not None and not all_placed.is_set() else max(placed_at.values(), default=first)
    counted = sum(1 for at in placed_at.values() if at <= end)
    elapsed = max(end - first, 1e-9)
    return {
        "tasks": float(tasks),
        "tasks_placed": float(counted),
        "placements_per_second": round(counted / elapsed, 1),
        "placement_seconds": round(elapsed, 3),
        "first_offer_s": round(first - started, 3),
        "accept_calls": float(scheduler.metrics.launched_accepts),
        "engine_runs": float(len(scheduler.run_ms)),
        "placement_run_ms_p50": round(percentile(scheduler.run_ms, 50), 2),
        "placement_run_ms_max": round(max(scheduler.run_ms, default=float("nan")), 2),
        "tasks_finished": float(finished),
        "process_cpu_s": round(time.process_time() - cpu, 2),  # this process's (the framework, and any agents here)
    }


# ------------------------------------------------------------------------------------------- run alone
@contextlib.asynccontextmanager
async def simulated_agents(cluster: LocalCluster, agents: int, processes: int, resources: str) -> AsyncIterator[None]:
    """`agents` simulated agents on the cluster's master, in this process (`processes` 0) or in child processes."""
    assert cluster.certificates is not None
    config = cluster.certificates.client_config(cluster.master_address, name="sim", role="agent")
    if processes <= 0:
        sim = SimulatedAgents(cluster.master_address, config, agents, resources=resources)
        await sim.start()
        try:
            await sim.wait_attached(timeout=max(60.0, agents / 50))
            yield
        finally:
            await sim.stop()
        return
    argv = [sys.executable, "-m", "scheduler_sdk", "simulate-agents", "--master", cluster.master_address]
    argv += ["--count", str(agents), "--processes", str(processes), "--resources", resources]
    argv += ["--ca", str(config.ca), "--cert", str(config.cert), "--key", str(config.key)]
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        await _wait_agents(cluster, agents, timeout=max(60.0, agents / 50))
        yield
    finally:
        os.killpg(child.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(30)


async def _wait_agents(cluster: LocalCluster, count: int, timeout: float) -> None:
    """Until the master counts `count` connected agents (from GetMetrics: a GetAgents of thousands is heavy)."""
    deadline = time.monotonic() + timeout
    async with OperatorClient(cluster.master_address, config=cluster.client_config) as client:
        while True:
            connected = (await client.metrics()).get(CONNECTED, 0.0)
            if connected >= count:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{connected:g} of {count} simulated agents attached after {timeout:g} s")
            await asyncio.sleep(1.0)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-scale-placement-") as tmp:
        cluster = LocalCluster(Path(tmp), agents=0, master_flags=list(MASTER_FLAGS), log_level="warning")
        await cluster.start()
        try:
            async with simulated_agents(cluster, args.agents, args.processes, args.resources):
                assert cluster.certificates is not None
                config = cluster.certificates.client_config(cluster.master_address, name="bench", role="framework")
                pid = cluster.master.process.pid if cluster.master and cluster.master.process else 0
                print(f"placing: master pid {pid}", file=sys.stderr, flush=True)  # for a profiler to attach
                master_cpu = _cpu_seconds(pid)
                figures = await measure(
                    cluster.master_address,
                    config,
                    tasks=args.tasks,
                    seconds=args.seconds,
                    task_seconds=args.task_seconds,
                    launch_batch=args.launch_batch,
                )
                # CPU seconds the master spent while the framework placed and its tasks ran: what a placement
                # costs it, a figure that a busy machine's share of the CPU does not change much.
                figures["master_cpu_s"] = round(_cpu_seconds(pid) - master_cpu, 2)
        finally:
            await cluster.stop()
    return {"agents": args.agents, "sim_processes": args.processes, "launch_batch": args.launch_batch, **figures}


def _cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.scale_placement", description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=5000)
    p.add_argument("--tasks", type=int, default=20000)
    p.add_argument("--seconds", type=float, default=None, help="stop this long after the first offer")
    p.add_argument("--task-seconds", type=float, default=1.0, help="how long each task runs on its agent")
    p.add_argument("--processes", type=int, default=0, help="simulated agents in this many child processes")
    p.add_argument("--resources", default=DEFAULT_RESOURCES, help="each simulated agent's")
    p.add_argument("--launch-batch", type=int, default=2000, help="the most tasks one ACCEPT message launches")
    args = p.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    report("scale_placement", asyncio.run(run(args)))


if __name__ == "__main__":
    main()
