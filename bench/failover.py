"""How long a failover takes: three masters on a local etcd, agents, a framework with running tasks; kill -9 the
leader, `--runs` times. For each run: time from the kill to the first offer from the new leader, and to every
agent re-attached; the tasks running through it, and how many were lost or ran twice (both must be 0).

    python -m bench.failover [--runs 5] [--lease 2] [--agents 2] [--tasks 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import scheduler_pb2 as spb
from aiomesos.v1 import tasks_pb2 as tpb
from bench.common import report
from scheduler_sdk.driver import Scheduler, SchedulerDriver
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.operator import OperatorClient, OperatorError
from scheduler_sdk.resources import Resources
from scheduler_sdk.states import is_terminal


class Holder(Scheduler):
    """Launches `wanted` long tasks (each appends its id to `ran` when it starts), then declines; remembers when
    each offer came and every status."""

    def __init__(self, ran: Path, wanted: int) -> None:
        self.ran = ran
        self.wanted = wanted
        self.launched: list[str] = []
        self.offer_times: list[float] = []
        self.states: dict[str, list[int]] = {}
        self.subscriptions = 0

    async def registered(self, driver: SchedulerDriver, framework_id: str, master_id: str) -> None:
        self.subscriptions += 1

    async def reregistered(self, driver: SchedulerDriver, framework_id: str, master_id: str) -> None:
        self.subscriptions += 1
        driver.reconcile([(t, "") for t in self.launched])

    async def offers(self, driver: SchedulerDriver, offers: Sequence[spb.Offer]) -> None:
        self.offer_times.append(time.monotonic())
        for offer in offers:
            room = self.wanted - len(self.launched)
            if room <= 0:
                driver.decline([offer.id], refuse_seconds=0.2)
                continue
            tasks = []
            for _ in range(min(room, 10)):
                task_id = f"hold{len(self.launched):03d}"
                self.launched.append(task_id)
                tasks.append(
                    tpb.TaskInfo(
                        task_id=task_id,
                        name=task_id,
                        agent_id=offer.agent_id,
                        resources=Resources.of(cpus=0.05, mem=16).to_proto(),
                        command=rpb.CommandInfo(shell=True, value=f"touch {self.ran}/{task_id}.$$ && exec sleep 3600"),
                    )
                )
            driver.launch(offer.id, tasks)

    async def status_update(self, driver: SchedulerDriver, status: tpb.TaskStatus) -> None:
        self.states.setdefault(status.task_id, []).append(status.state)

    def running(self) -> set[str]:
        return {t for t, s in self.states.items() if s and s[-1] == tpb.TASK_RUNNING}

    def lost(self) -> set[str]:
        return {t for t, s in self.states.items() if any(is_terminal(x) for x in s)}


async def poll(check, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        result = await check() if asyncio.iscoroutinefunction(check) else check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise SystemExit(f"bench.failover: timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def attached(address: str, config: object, count: int) -> bool:
    with contextlib.suppress(OperatorError):
        async with OperatorClient(address, config=config, timeout=2.0) as client:  # type: ignore[arg-type]
            return sum(1 for a in (await client.agents()).agents if a.active) >= count
    return False


async def run(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp:
        work = Path(tmp)
        cluster = LocalCluster(
            work,
            agents=args.agents,
            masters=3,
            etcd_lease=f"{args.lease:g}s",
            log_level="warning",
            master_flags=["--allocation-interval", "0.2", "--heartbeat-interval", "2"],
            agent_flags=["--status-update-retry-min", "0.5", "--status-update-retry-max", "2"],
        )
        await cluster.start()
        (work / "ran").mkdir()
        os.chmod(work, 0o711)  # tasks run as nobody: they reach ran/ through the work dir
        os.chmod(work / "ran", 0o1777)
        holder = Holder(work / "ran", args.tasks)
        info = rpb.FrameworkInfo(name="bench-failover", failover_timeout=600)
        driver = SchedulerDriver(cluster.master_address, info, holder, backoff_max=0.5, config=cluster.client_config)
        runner = asyncio.create_task(driver.run())
        to_offer: list[float] = []
        to_agents: list[float] = []
        through: list[int] = []
        try:
            await poll(lambda: len(holder.running()) >= args.tasks, 60, "the tasks running")
            for _ in range(args.runs):
                old = await cluster.wait_for_leader()
                index = cluster.master_index(old)
                running_before = len(holder.running())
                killed = time.monotonic()
                cluster.master_daemons[index].signal(signal.SIGKILL)
                new = await cluster.wait_for_leader(60, not_at=old)
                await poll(lambda k=killed: any(t > k for t in holder.offer_times), 60, "an offer from the new leader")
                to_offer.append(next(t for t in holder.offer_times if t > killed) - killed)
                await poll(lambda a=new: attached(a, cluster.client_config, args.agents), 60, "agents re-attached")
                to_agents.append(time.monotonic() - killed)
                through.append(running_before)
                await cluster.restart_master(index=index)
            ran: dict[str, int] = {}
            for path in (work / "ran").iterdir():  # one file per start of a task: TASK_ID.PID
                ran[path.name.split(".", 1)[0]] = ran.get(path.name.split(".", 1)[0], 0) + 1
            if len(ran) < len(holder.running()):
                raise SystemExit("bench.failover: running tasks left no mark: the duplicate count would be blind")
            duplicated = sum(1 for n in ran.values() if n > 1)
            lost = len(holder.lost())
        finally:
            driver.stop(teardown=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(runner, 10)
            await cluster.stop()

    def stats(values: list[float]) -> dict[str, float]:
        return {
            "min": round(min(values), 3),
            "median": round(statistics.median(values), 3),
            "max": round(max(values), 3),
        }

    return {
        "runs": args.runs,
        "lease_s": args.lease,
        "agents": args.agents,
        "kill_to_first_offer_s": stats(to_offer),
        "kill_to_all_agents_s": stats(to_agents),
        "tasks_running_through_failover": min(through),
        "tasks_lost": lost,
        "tasks_duplicated": duplicated,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--lease", type=float, default=2.0, help="the masters' --etcd-lease, seconds")
    p.add_argument("--agents", type=int, default=2)
    p.add_argument("--tasks", type=int, default=20, help="long tasks running through every failover")
    args = p.parse_args(argv)
    figures = asyncio.run(run(args))
    line = report("failover", figures)
    if line["tasks_lost"] or line["tasks_duplicated"]:
        print("bench.failover: tasks were lost or ran twice", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
