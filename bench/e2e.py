"""End to end: N trivial tasks (`true`) through aiomesos's own SDK on 2 local agents.

Three measurements on one local cluster:
- burst: all N tasks at once, as offers allow. Tasks per second from the first ACCEPT to the last FINISHED
  (acknowledged right after its callback), and ACCEPT → RUNNING percentiles (in a burst these are mostly the
  queue of launches ahead of a task: the last of 500 waits for the 499 before it).
- paced: tasks arrive at each of --rates per second (default 150, 200, 300 (the throughput target) and 400) for
  --paced-seconds each; the framework
  keeps the offers it gets and launches each arrival at once on them. ACCEPT → RUNNING and arrival → RUNNING
  percentiles at that load: the latency a steady stream of work sees.
- single: one task at a time on an idle cluster, ACCEPT → RUNNING.

`--security on` (the default, as users run it: TLS, client certificates, authorisation), `off` (`--insecure`
daemons on loopback), or `both`: the same runs on a secure and on an insecure cluster, side by side, and what
security costs (tasks per second and ACCEPT → RUNNING p50, secure relative to insecure).

    python -m bench.e2e [--tasks 500] [--agents 2] [--rates 150,200,300,400] [--paced-seconds 5] [--security both]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import scheduler_pb2 as spb
from aiomesos.v1 import tasks_pb2 as tpb
from bench.common import percentile, report
from bench.scrape import MasterCpu, Scraper
from scheduler_sdk.driver import Scheduler, SchedulerDriver
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.resources import Resources
from scheduler_sdk.security.config import ClientConfig

TASK = Resources.of(cpus=0.05, mem=8)


class Bench(Scheduler):
    def __init__(self, n: int) -> None:
        self.pending = [f"t{i}" for i in range(n)]
        self.accepted: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.finished: dict[str, float] = {}
        self.failed: list[str] = []
        self.done = asyncio.Event()
        self.n = n
        self.accepts = 0
        self.offers_seen = 0

    async def offers(self, driver: SchedulerDriver, offers: Sequence[spb.Offer]) -> None:
        self.offers_seen += len(offers)
        for offer in offers:
            free = Resources.from_proto(offer.resources)
            batch = []
            while self.pending and free.contains(TASK):
                task_id = self.pending.pop()
                free = free - TASK
                batch.append(_true_task(task_id, offer.agent_id))
            if batch:
                now = time.perf_counter()
                for t in batch:
                    self.accepted[t.task_id] = now
                self.accepts += 1
                driver.accept([offer.id], batch, refuse_seconds=0)
            else:
                driver.decline([offer.id], refuse_seconds=1 if self.pending else 60)

    async def status_update(self, driver: SchedulerDriver, status: tpb.TaskStatus) -> None:
        now = time.perf_counter()
        if status.state == tpb.TASK_RUNNING:
            self.running.setdefault(status.task_id, now)
        elif status.state == tpb.TASK_FINISHED:
            self.finished.setdefault(status.task_id, now)
        elif status.state in (tpb.TASK_FAILED, tpb.TASK_ERROR, tpb.TASK_LOST, tpb.TASK_DROPPED, tpb.TASK_KILLED):
            self.failed.append(f"{status.task_id}:{tpb.TaskState.Name(status.state)}:{status.message}")
        if len(self.finished) + len(self.failed) >= self.n:
            self.done.set()


class Paced(Scheduler):
    """Keeps every offer it gets; `arrive()` launches tasks at once on them (one ACCEPT per offer used)."""

    def __init__(self) -> None:
        self.held: dict[str, tuple[str, Resources]] = {}  # offer id -> (agent id, what is left of it)
        self.queue: list[str] = []
        self.arrived: dict[str, float] = {}
        self.accepted: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.failed: list[str] = []
        self.accepts = 0
        self.driver: SchedulerDriver | None = None
        # Where the time goes, on the wall clock the agents stamp their updates with (one host: one clock).
        self.accepted_wall: dict[str, float] = {}
        self.starting_made: dict[str, float] = {}
        self.running_made: dict[str, float] = {}
        self.running_seen_wall: dict[str, float] = {}

    async def offers(self, driver: SchedulerDriver, offers: Sequence[spb.Offer]) -> None:
        for offer in offers:
            self.held[offer.id] = (offer.agent_id, Resources.from_proto(offer.resources))
        self._launch(driver)

    async def offer_rescinded(self, driver: SchedulerDriver, offer_id: str) -> None:
        self.held.pop(offer_id, None)

    def arrive(self, task_ids: list[str]) -> None:
        now = time.perf_counter()
        for t in task_ids:
            self.arrived[t] = now
        self.queue.extend(task_ids)
        if self.driver is not None:
            self._launch(self.driver)

    def _launch(self, driver: SchedulerDriver) -> None:
        for offer_id, (agent_id, free) in list(self.held.items()):
            if not self.queue:
                return
            batch = []
            while self.queue and free.contains(TASK):
                free = free - TASK
                batch.append(_true_task(self.queue.pop(0), agent_id))
            if batch:
                del self.held[offer_id]  # what is left comes back in a new offer
                now, wall = time.perf_counter(), time.time()
                for t in batch:
                    self.accepted[t.task_id] = now
                    self.accepted_wall[t.task_id] = wall
                self.accepts += 1
                driver.accept([offer_id], batch, refuse_seconds=0)

    async def status_update(self, driver: SchedulerDriver, status: tpb.TaskStatus) -> None:
        now = time.perf_counter()
        if status.state == tpb.TASK_STARTING:
            self.starting_made.setdefault(status.task_id, status.timestamp)
        elif status.state == tpb.TASK_RUNNING:
            self.running.setdefault(status.task_id, now)
            self.running_made.setdefault(status.task_id, status.timestamp)
            self.running_seen_wall.setdefault(status.task_id, time.time())
        elif status.state == tpb.TASK_FINISHED:
            self.ended.setdefault(status.task_id, now)
        elif status.state in (tpb.TASK_FAILED, tpb.TASK_ERROR, tpb.TASK_LOST, tpb.TASK_DROPPED, tpb.TASK_KILLED):
            self.ended.setdefault(status.task_id, now)
            self.failed.append(f"{status.task_id}:{tpb.TaskState.Name(status.state)}:{status.message}")


def _true_task(task_id: str, agent_id: str) -> tpb.TaskInfo:
    return tpb.TaskInfo(
        task_id=task_id,
        name=task_id,
        agent_id=agent_id,
        resources=TASK.to_proto(),
        command=rpb.CommandInfo(shell=False, value="true", arguments=["true"]),
    )


async def _paced(master: str, config: ClientConfig, rate: float, seconds: float) -> dict[str, object]:
    """Tasks arriving at `rate` per second for `seconds`, each launched at once on held offers."""
    bench = Paced()
    driver = SchedulerDriver(master, rpb.FrameworkInfo(name="bench-paced"), bench, config=config)
    bench.driver = driver
    runner = asyncio.create_task(driver.run())
    total = int(rate * seconds)
    try:
        await asyncio.wait_for(driver.subscribed.wait(), 30)
        while not bench.held:
            await asyncio.sleep(0.01)
        start = time.perf_counter()
        events, messages = driver.events_received, driver.messages_sent
        sent = 0
        while sent < total:
            due = min(total, int((time.perf_counter() - start) * rate) + 1)
            if due > sent:
                bench.arrive([f"p{i}" for i in range(sent, due)])
                sent = due
            await asyncio.sleep(0.002)
        deadline = time.monotonic() + 120
        while len(bench.ended) < total and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        events, messages = driver.events_received - events, driver.messages_sent - messages
    finally:
        driver.stop(teardown=True)
        await asyncio.wait_for(runner, 10)
    accept_ms = [(bench.running[t] - bench.accepted[t]) * 1000 for t in bench.running]
    arrive_ms = [(bench.running[t] - bench.arrived[t]) * 1000 for t in bench.running]
    both = [t for t in bench.running_made if t in bench.starting_made]
    # accept → the agent made STARTING (master, agent, launch); STARTING → RUNNING made (STARTING's
    # acknowledgement round trip: only the head of a task's updates is in flight); RUNNING made → seen.
    to_starting = [(bench.starting_made[t] - bench.accepted_wall[t]) * 1000 for t in both]
    starting_to_running = [(bench.running_made[t] - bench.starting_made[t]) * 1000 for t in both]
    running_to_seen = [(bench.running_seen_wall[t] - bench.running_made[t]) * 1000 for t in both]
    return {
        "paced_rate_per_second": rate,
        "paced_tasks": total,
        "paced_finished": len(bench.ended) - len(bench.failed),
        "paced_failed": len(bench.failed),
        "paced_accept_to_running_ms_p50": round(percentile(accept_ms, 50), 1),
        "paced_accept_to_running_ms_p99": round(percentile(accept_ms, 99), 1),
        "paced_arrival_to_running_ms_p50": round(percentile(arrive_ms, 50), 1),
        "paced_arrival_to_running_ms_p99": round(percentile(arrive_ms, 99), 1),
        "paced_accept_calls": bench.accepts,
        # The framework's stream messages per task, each way (events in: offers and updates; messages out:
        # accepts and acknowledgements), as batched per event-loop turn on every hop.
        "paced_framework_events_per_task": round(events / total, 2),
        "paced_framework_messages_per_task": round(messages / total, 2),
        "paced_accept_to_starting_made_ms_p50": round(percentile(to_starting, 50), 1),
        "paced_starting_to_running_made_ms_p50": round(percentile(starting_to_running, 50), 1),
        "paced_running_made_to_seen_ms_p50": round(percentile(running_to_seen, 50), 1),
    }


async def run(
    tasks: int,
    agents: int,
    work_dir: Path,
    rates: tuple[float, ...] = (300.0,),
    paced_seconds: float = 5.0,
    secure: bool = True,
    http: bool = True,
    scrape_interval: float = 0.0,
) -> dict[str, object]:
    """One cluster's figures. `http`: the daemons' HTTP ports on (the default) or `--http-port off`;
    `scrape_interval`: with http, a Prometheus-like scraper reads every daemon's /metrics that often."""
    off = [] if http else ["--http-port", "off"]
    cluster = LocalCluster(
        work_dir,
        agents=agents,
        agent_resources="cpus:16;mem:16384;disk:1000",
        master_flags=["--allocation-interval", "0.05", *off],
        agent_flags=list(off),
        log_level="warning",
        secure=secure,
    )
    async with cluster:
        config = cluster.client_config
        scraper = Scraper(cluster, scrape_interval) if http and scrape_interval > 0 else None
        master_cpu = MasterCpu(cluster)
        if scraper is not None:
            await scraper.start()
        # Unloaded path: one task at a time, ACCEPT → RUNNING.
        single = await _one_at_a_time(cluster.master_address, config, 30)
        bench = Bench(tasks)
        driver = SchedulerDriver(cluster.master_address, rpb.FrameworkInfo(name="bench-e2e"), bench, config=config)
        runner = asyncio.create_task(driver.run())
        try:
            await asyncio.wait_for(bench.done.wait(), 300)
        finally:
            driver.stop(teardown=True)
            await asyncio.wait_for(runner, 10)
        paced = [
            await _paced(cluster.master_address, config, rate, paced_seconds) for rate in rates if paced_seconds > 0
        ]
        master_cpu_seconds = master_cpu.used()
        scrapes = await scraper.stop() if scraper is not None else {}
    first = min(bench.accepted.values())
    last = max(bench.finished.values()) if bench.finished else float("nan")
    latency_ms = [(bench.running[t] - bench.accepted[t]) * 1000 for t in bench.running]
    return {
        "security": "on" if secure else "off",
        "tasks": tasks,
        "agents": agents,
        "finished": len(bench.finished),
        "failed": len(bench.failed),
        "tasks_per_second": round(len(bench.finished) / (last - first), 1),
        "wall_seconds": round(last - first, 3),
        "accept_to_running_ms_p50": round(percentile(latency_ms, 50), 1),
        "accept_to_running_ms_p99": round(percentile(latency_ms, 99), 1),
        "single_task_accept_to_running_ms_p50": round(percentile(single, 50), 1),
        "single_task_accept_to_running_ms_p99": round(percentile(single, 99), 1),
        "accept_calls": bench.accepts,
        "offers_received": bench.offers_seen,
        "paced": paced,
        "http": "on" if http else "off",
        "master_cpu_seconds": master_cpu_seconds,
        **scrapes,
    }


async def _one_at_a_time(master: str, config: ClientConfig, n: int) -> list[float]:
    """ACCEPT → RUNNING in ms for `n` tasks launched one after another on an otherwise idle cluster."""
    latencies: list[float] = []
    for i in range(n):
        bench = Bench(1)
        bench.pending = [f"single-{i}"]
        driver = SchedulerDriver(master, rpb.FrameworkInfo(name=f"bench-single-{i}"), bench, config=config)
        runner = asyncio.create_task(driver.run())
        try:
            await asyncio.wait_for(bench.done.wait(), 30)
        finally:
            driver.stop(teardown=True)
            await asyncio.wait_for(runner, 10)
        task_id = f"single-{i}"
        latencies.append((bench.running[task_id] - bench.accepted[task_id]) * 1000)
    return latencies


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=500)
    p.add_argument("--agents", type=int, default=2)
    p.add_argument("--rates", default="150,200,300,400", help="tasks per second in the paced runs, comma-separated")
    p.add_argument("--paced-seconds", type=float, default=5.0, help="length of the paced run (0: skip it)")
    p.add_argument("--security", choices=("on", "off", "both"), default="on", help="TLS and authentication")
    p.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="with --security both: this many rounds of secure then insecure, alternating, so that the host's "
        "drift (this VM's speed varies by tens of percent over minutes) weighs on both alike; the median is kept",
    )
    args = p.parse_args()
    rates = tuple(float(r) for r in args.rates.split(",") if r.strip())
    modes = ("on", "off") * max(1, args.rounds) if args.security == "both" else (args.security,)
    runs: dict[str, list[dict[str, object]]] = {"on": [], "off": []}
    for mode in modes:
        with tempfile.TemporaryDirectory(prefix="aiomesos-bench-") as tmp:
            figures = asyncio.run(run(args.tasks, args.agents, Path(tmp), rates, args.paced_seconds, mode == "on"))
        runs[mode].append(figures)
    if args.security != "both":
        report("e2e", runs[args.security][0])
        return
    secure, insecure = _median_run(runs["on"]), _median_run(runs["off"])
    report(
        "e2e_security",
        {"secure": secure, "insecure": insecure, "rounds": args.rounds, **security_cost(secure, insecure)},
    )


def _median_run(runs: list[dict[str, object]]) -> dict[str, object]:
    """The run whose tasks per second is the median of `runs` (a whole run, so its figures belong together)."""
    ordered = sorted(runs, key=lambda r: float(r["tasks_per_second"]))  # type: ignore[arg-type]
    chosen = dict(ordered[len(ordered) // 2])
    chosen["tasks_per_second_all_rounds"] = [r["tasks_per_second"] for r in runs]
    return chosen


def security_cost(secure: dict[str, object], insecure: dict[str, object]) -> dict[str, object]:
    """What TLS and authentication cost, in percent of the insecure figure (positive: secure is worse)."""

    def change(key: str, higher_is_better: bool) -> float:
        on, off = float(secure[key]), float(insecure[key])  # type: ignore[arg-type]
        if off == 0:
            return float("nan")
        worse = (off - on) if higher_is_better else (on - off)
        return round(100 * worse / off, 1)

    return {
        "security_cost_tasks_per_second_pct": change("tasks_per_second", True),
        "security_cost_single_accept_to_running_p50_pct": change("single_task_accept_to_running_ms_p50", False),
        "security_cost_burst_accept_to_running_p50_pct": change("accept_to_running_ms_p50", False),
    }


if __name__ == "__main__":
    main()
