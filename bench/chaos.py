"""Chaos: N short tasks on local agents while an agent and the master are killed -9 and restarted, round after
round, the agent coming back only after the master (an agent slow to re-attach). The framework checkpoints, has
a failover timeout, and on every resubscription reconciles explicitly (every task it has not seen end, with its
agent id) and implicitly, as a careful Mesos framework does.

What must be 0 (issue 10: a terminal state is final; nothing runs twice; nothing leaks):
- lost_while_alive: tasks reported TASK_LOST/TASK_GONE that ran to their end (each task writes a file when done);
- launched_twice: tasks whose command ran more than once (each run appends a line to its file);
- after_terminal: statuses that differ from a task's first terminal state, arriving after it;
- leaks: cgroups or task processes left once the cluster has stopped.
Also: per round, seconds from kill -9 of the master to the framework resubscribed, and to every agent attached.

    python -m bench.chaos [--tasks 300] [--agents 2] [--rounds 3] [--agent-delay 2] [--security on|off]
                          [--seed N] [--keep DIR] [--log-level warning|info|debug]

--keep DIR runs in DIR (created; must not exist) and leaves it, with the daemons' logs/, for a post-mortem.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import tempfile
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path

import psutil

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import scheduler_pb2 as spb
from aiomesos.v1 import tasks_pb2 as tpb
from bench.common import percentile, report
from scheduler_sdk.driver import Scheduler, SchedulerDriver
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.operator import OperatorClient, OperatorError
from scheduler_sdk.resources import Resources
from scheduler_sdk.states import is_terminal

TASK = Resources.of(cpus=0.05, mem=8)
LOST = {tpb.TASK_LOST, tpb.TASK_GONE}


class Chaos(Scheduler):
    def __init__(self, n: int, marks: Path, seed: int) -> None:
        self.n = n
        self.marks = marks
        self.rng = random.Random(seed)
        self.pending = deque(f"t{i}" for i in range(n))
        self.where: dict[str, str] = {}  # task id -> agent id
        self.states: dict[str, list[int]] = defaultdict(list)
        self.history: dict[str, list[str]] = defaultdict(list)  # every status heard, for what must be 0
        self.terminal: dict[str, int] = {}
        self.after_terminal = 0
        self.changed_after_terminal: set[str] = set()
        self.registrations = 0
        self.done = asyncio.Event()

    async def registered(self, driver: SchedulerDriver, framework_id: str, master_id: str) -> None:
        self.registrations += 1

    async def reregistered(self, driver: SchedulerDriver, framework_id: str, master_id: str) -> None:
        self.registrations += 1
        driver.reconcile([(t, a) for t, a in self.where.items() if t not in self.terminal])
        driver.reconcile()

    async def offers(self, driver: SchedulerDriver, offers: Sequence[spb.Offer]) -> None:
        for offer in offers:
            free = Resources.from_proto(offer.resources)
            batch = []
            while self.pending and free.contains(TASK):
                task_id = self.pending.popleft()
                free = free - TASK
                self.where[task_id] = offer.agent_id
                batch.append(self._task(task_id, offer.agent_id))
            if batch:
                driver.accept([offer.id], batch, refuse_seconds=0.2)
            else:
                driver.decline([offer.id], refuse_seconds=0.5)

    def _task(self, task_id: str, agent_id: str) -> tpb.TaskInfo:
        seconds = round(self.rng.uniform(0.5, 4.0), 2)
        runs, done = self.marks / f"{task_id}.runs", self.marks / f"{task_id}.done"
        return tpb.TaskInfo(
            task_id=task_id,
            name=task_id,
            agent_id=agent_id,
            resources=TASK.to_proto(),
            command=rpb.CommandInfo(shell=True, value=f"echo run >> {runs}; sleep {seconds}; echo done > {done}"),
        )

    async def status_update(self, driver: SchedulerDriver, status: tpb.TaskStatus) -> None:
        task_id, state = status.task_id, status.state
        self.history[task_id].append(
            f"{tpb.TaskState.Name(state)}/{tpb.TaskStatus.Reason.Name(status.reason)}/{status.message[:80]}"
        )
        first_end = self.terminal.get(task_id)
        if first_end is not None:
            if state != first_end:
                self.after_terminal += 1
                self.changed_after_terminal.add(task_id)
            return
        self.states[task_id].append(state)
        if is_terminal(state):
            self.terminal[task_id] = state
            if len(self.terminal) == self.n:
                self.done.set()

    def running(self) -> int:
        return sum(1 for t, s in self.states.items() if t not in self.terminal and tpb.TASK_RUNNING in s)


async def _until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    """Poll `check` (async) until true; returns when (time.monotonic()); raises after `timeout`."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        await asyncio.sleep(0.05)
    return time.monotonic()


async def _attached(cluster: LocalCluster, count: int) -> bool:
    try:
        async with OperatorClient(cluster.master_address, config=cluster.client_config) as client:
            return sum(a.active for a in (await client.agents()).agents) >= count
    except OperatorError:
        return False


async def _round(cluster: LocalCluster, chaos: Chaos, rng: random.Random, agent_delay: float) -> dict[str, float]:
    """kill -9 one agent and the master; restart the master, then (after `agent_delay`) the agent."""
    assert cluster.master is not None
    index = rng.randrange(len(cluster.agent_daemons))
    victim = cluster.agent_daemons[index]
    victim.signal(signal.SIGKILL)
    await victim.wait(10)
    port = int(cluster.master_address.rsplit(":", 1)[1])
    token_port = int(cluster.token_address.rsplit(":", 1)[1]) if cluster.token_address else 0
    registrations = chaos.registrations
    killed = time.monotonic()
    cluster.master.signal(signal.SIGKILL)
    await cluster.master.wait(10)
    await cluster.start_master(port=port, token_port=token_port)
    await asyncio.sleep(agent_delay)  # the agent is slow to come back
    cluster.add_agent(index)

    async def resubscribed() -> bool:
        return chaos.registrations > registrations

    async def all_attached() -> bool:
        return await _attached(cluster, len(cluster.agent_daemons))

    resubscribed_at = await _until(resubscribed, 60, "the framework's resubscription")
    attached_at = await _until(all_attached, 60, "every agent's re-attach")
    return {"to_resubscribed_s": resubscribed_at - killed, "to_all_agents_s": attached_at - killed}


@contextlib.contextmanager
def _work_dir(keep: Path | None) -> Iterator[Path]:
    """A temporary directory, or `keep` (created, left behind) for a post-mortem of the daemons' logs."""
    if keep is None:
        with tempfile.TemporaryDirectory(prefix="aiomesos-chaos-") as tmp:
            yield Path(tmp)
    else:
        keep.mkdir(parents=True)
        yield keep.resolve()


async def run(
    tasks: int,
    agents: int,
    rounds: int,
    agent_delay: float,
    secure: bool,
    seed: int,
    keep: Path | None = None,
    log_level: str = "warning",
) -> dict[str, object]:
    rng = random.Random(seed)
    with _work_dir(keep) as work:
        work.chmod(0o711)  # traversable: tasks run as another user (nobody) and must reach their sandboxes
        marks = work / "marks"
        marks.mkdir()
        marks.chmod(0o777)  # tasks run as another user
        cluster = LocalCluster(
            work / "cluster",
            agents=agents,
            agent_resources="cpus:4;mem:4096;disk:1000",
            master_flags=["--allocation-interval", "0.1"],
            agent_flags=["--status-update-retry-min", "1", "--status-update-retry-max", "4"],
            log_level=log_level,
            secure=secure,
        )
        chaos = Chaos(tasks, marks, seed)
        failovers: list[dict[str, float]] = []
        await cluster.start()
        try:
            info = rpb.FrameworkInfo(name="bench-chaos", checkpoint=True, failover_timeout=600)
            driver = SchedulerDriver(cluster.master_address, info, chaos, config=cluster.client_config, backoff_max=0.5)
            runner = asyncio.create_task(driver.run())
            try:
                for r in range(rounds):
                    goal = (r + 1) * tasks // (rounds + 1)

                    async def progressed(goal: int = goal) -> bool:
                        return (len(chaos.terminal) >= goal and chaos.running() > 0) or len(chaos.terminal) == tasks

                    await _until(progressed, 300, f"round {r}'s progress")
                    failovers.append(await _round(cluster, chaos, rng, agent_delay))
                await asyncio.wait_for(chaos.done.wait(), 300)
            finally:
                driver.stop(teardown=True)
                await asyncio.wait_for(runner, 10)
        finally:
            problems = await cluster.stop()
        left = [p.pid for p in psutil.process_iter(["cmdline"]) if str(marks) in " ".join(p.info["cmdline"] or [])]
        runs = {t: _lines(marks / f"{t}.runs") for t in chaos.states}
        ended = {t for t in chaos.states if (marks / f"{t}.done").exists()}
    lost = {t for t, s in chaos.terminal.items() if s in LOST}
    resub = [f["to_resubscribed_s"] for f in failovers]
    agents_back = [f["to_all_agents_s"] for f in failovers]
    return {
        "security": "on" if secure else "off",
        "tasks": tasks,
        "agents": agents,
        "rounds": rounds,
        "agent_delay_s": agent_delay,
        "finished": sum(s == tpb.TASK_FINISHED for s in chaos.terminal.values()),
        "ended_otherwise": sum(s not in LOST and s != tpb.TASK_FINISHED for s in chaos.terminal.values()),
        "lost": len(lost),
        "lost_never_ran": sum(runs.get(t, 0) == 0 for t in lost),
        "lost_while_alive": len(lost & ended),
        "launched_twice": sum(n > 1 for n in runs.values()),
        "after_terminal": chaos.after_terminal,
        "leaks": len(problems) + len(left),
        "leak_details": problems + [f"task process {pid} left" for pid in left],
        "lost_while_alive_details": {t: chaos.history[t] for t in sorted(lost & ended)},
        "after_terminal_details": {t: chaos.history[t] for t in sorted(chaos.changed_after_terminal)},
        "master_kill_to_resubscribed_s": _spread(resub),
        "master_kill_to_all_agents_attached_s": _spread(agents_back),
    }


def _lines(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


def _spread(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {"min": round(min(values), 2), "median": round(percentile(values, 50), 2), "max": round(max(values), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--agent-delay", type=float, default=2.0, help="seconds the agent stays away after the master")
    parser.add_argument("--security", choices=["on", "off"], default="on")
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--keep", type=Path, help="run in this new directory and leave it (logs/ for a post-mortem)")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning"])
    args = parser.parse_args()
    figures = asyncio.run(
        run(
            args.tasks,
            args.agents,
            args.rounds,
            args.agent_delay,
            args.security == "on",
            args.seed,
            args.keep,
            args.log_level,
        )
    )
    report("chaos", figures)
    must_be_zero = ("lost_while_alive", "launched_twice", "after_terminal", "leaks")
    raise SystemExit(1 if any(figures[k] for k in must_be_zero) else 0)


if __name__ == "__main__":
    main()
