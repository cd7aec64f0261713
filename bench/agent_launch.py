"""Launch N tasks (`sleep 60`, cpus 0.01, mem 16) on one agent with cgroups; time until all are RUNNING.

The tasks go through the real agent (`mesos_agent.agent.Agent` with a cgroups `Containerizer`), fed as the
master sends them: one RUN_TASKS message carrying the N launches. A stand-in for the master takes the agent's
status updates off its stream (serialized, as the gRPC stream would) and acknowledges each batch one event-loop
turn later, as the framework's acknowledgements come back through the master. The agent logs as the daemon does
(structlog JSON, `--log-level`, to a file in the work dir).

Reports, as one JSON line:

- `seconds_all_running`: from the RUN_TASKS message until the agent has sent the N TASK_RUNNING updates;
- `launch_ms_p50` / `launch_ms_p99`: the per-task launch cost in the agent (`Agent._launch`: sandbox,
  checkpoint, TASK_STARTING, the containerizer's launch), and `containerizer_launch_ms_*` for the part of it
  that is `Containerizer.launch` (most of that is the kernel starting the wrapper, so it depends on how busy
  the CPUs are: the 1-minute load before the run is included);
- `running_latency_ms_p50` / `_p99`: from the RUN_TASKS message to each task's TASK_RUNNING;
- `seconds_all_sleep_started`: until every task's `sleep` runs in its cgroup (the containerizer-level figure
  this bench used to report);
- the agent's CPU time per task, the updates sent and acknowledged.

Then kills every task through a KILL_TASKS message and checks that every task ended TASK_KILLED, every update
was acknowledged and nothing is left: no process, no cgroup, no checkpoint.

    python -m bench.agent_launch [--tasks 1000] [--checkpoint] [--isolation auto] [--log-level info] [--work-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import uvloop

from aiomesos.v1 import agent_pb2
from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from bench.common import percentile, report
from mesos_agent.agent import Agent, TaskRun
from mesos_agent.containerizer import Container, Containerizer, LaunchSpec
from mesos_agent.containerizer._cgroups import read_pids
from scheduler_sdk._daemon.logs import configure_logging
from scheduler_sdk.resources import Resources
from scheduler_sdk.states import TERMINAL_STATES

AgentMessage = agent_pb2.AgentMessage
MasterMessage = agent_pb2.MasterMessage
AGENT_ID = "bench-S0"
FRAMEWORK_ID = "bench-F0"


def _comm(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            return f.read().strip()
    except OSError:
        return b""


def _sleep_started(c: Container) -> bool:
    return any(_comm(pid) == b"sleep" for pid in read_pids(c.cgroup_paths[-1] / "cgroup.procs"))


class Master:
    """The master's side of the agent's stream: status updates in, acknowledgements out (one turn later)."""

    def __init__(self, agent: Agent, clock: Callable[[], float] = time.perf_counter) -> None:
        self.agent = agent
        self.clock = clock
        self.first: dict[tuple[str, int], float] = {}  # (task, state) -> first sent
        self.terminal: dict[str, tpb.TaskStatus] = {}
        self.sent = 0
        self.acked = 0
        self.changed = asyncio.Event()

    def send(self, message: AgentMessage) -> None:
        message.SerializeToString()  # what the stream would do with it
        if message.type != AgentMessage.STATUS_UPDATES:
            return
        now = self.clock()
        acks = []
        for u in message.status_updates.updates:
            s = u.status
            self.sent += 1
            self.first.setdefault((s.task_id, s.state), now)
            if s.state in TERMINAL_STATES:
                self.terminal[s.task_id] = s
            acks.append(
                tpb.Acknowledgement(agent_id=AGENT_ID, framework_id=u.framework_id, task_id=s.task_id, uuid=s.uuid)
            )
        asyncio.get_running_loop().call_soon(self._acknowledge, acks)
        self.changed.set()

    def _acknowledge(self, acks: list[tpb.Acknowledgement]) -> None:
        self.acked += len(acks)
        self.agent.on_master_message(
            MasterMessage(type=MasterMessage.ACKNOWLEDGE, acknowledge=MasterMessage.Acknowledge(acknowledgements=acks))
        )
        self.changed.set()

    def count(self, state: int) -> int:
        return sum(1 for (_, s) in self.first if s == state)

    async def until(self, done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 0.5))


class TimedAgent(Agent):
    """The agent, timing each task's launch."""

    launch_costs: list[float]

    async def _launch(self, run: TaskRun) -> bool:
        a = time.perf_counter()
        try:
            return await super()._launch(run)
        finally:
            self.launch_costs.append(time.perf_counter() - a)


def _task(i: int) -> tpb.TaskInfo:
    return tpb.TaskInfo(
        task_id=f"t{i}",
        name=f"t{i}",
        agent_id=AGENT_ID,
        resources=Resources.of(cpus=0.01, mem=16).to_proto(),
        command=rpb.CommandInfo(shell=False, value="sleep", arguments=["sleep", "60"]),
    )


async def run(n: int, checkpoint: bool, isolation: str, work_dir: str | None, log_level: str) -> int:
    work = Path(tempfile.mkdtemp(prefix="aiomesos-bench-", dir=work_dir))
    root = f"aiomesos-bench/{uuid.uuid4().hex[:12]}"
    czr = Containerizer(root, isolation=isolation, runtime_dir=work / "runtime")
    if czr.cgroups_version is None:
        print(f"bench.agent_launch: needs cgroups (root): {czr.warning}", file=sys.stderr)
        await czr.shutdown()
        shutil.rmtree(work, ignore_errors=True)
        return 2
    log_file = open(work / "agent.log", "w")  # noqa: SIM115 - closed below
    configure_logging(log_level, "json", stream=log_file)
    czr_costs: list[float] = []
    real_launch = czr.launch

    async def timed_launch(spec: LaunchSpec) -> Container:
        a = time.perf_counter()
        try:
            return await real_launch(spec)
        finally:
            czr_costs.append(time.perf_counter() - a)

    czr.launch = timed_launch  # type: ignore[method-assign]
    framework = rpb.FrameworkInfo(id=FRAMEWORK_ID, name="bench", checkpoint=checkpoint)
    framework.capabilities.add(type=rpb.FrameworkInfo.Capability.TASK_KILLING_STATE)
    message = MasterMessage(
        type=MasterMessage.RUN_TASKS,
        run_tasks=MasterMessage.RunTasks(
            tasks=[MasterMessage.RunTask(framework=framework, task=_task(i)) for i in range(n)]
        ),
    )
    ok = False
    figures: dict[str, Any] = {}
    try:
        async with asyncio.TaskGroup() as tg:
            tasks: set[asyncio.Task[None]] = set()

            def spawn(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
                t = tg.create_task(coro)
                tasks.add(t)
                t.add_done_callback(tasks.discard)
                return t

            info = rpb.AgentInfo(hostname=socket.gethostname(), resources=Resources.of(cpus=n, mem=n * 16).to_proto())
            agent = TimedAgent(work, info, czr, spawn=spawn)
            agent.launch_costs = []
            master = Master(agent)
            agent.send = master.send
            agent.on_registered(AGENT_ID)
            retries = tg.create_task(agent.retry_loop())
            try:
                figures, ok = await _measure(n, agent, czr, master, message, czr_costs)
            finally:
                retries.cancel()
                for t in list(tasks):
                    t.cancel()
                agent.close()
        frameworks = work / "meta" / "frameworks"
        figures["checkpoint_left"] = sorted(str(p.relative_to(work)) for p in frameworks.rglob("*"))
        figures["sandboxes_not_marked_finished"] = len(agent.sandboxes.open()) if hasattr(agent, "sandboxes") else 0
        ok = ok and not figures["checkpoint_left"] and not figures["sandboxes_not_marked_finished"]
        report(
            "agent_launch",
            {
                "tasks": n,
                "checkpoint": checkpoint,
                "through": "Agent (RUN_TASKS message, acknowledged updates)",
                "log_level": log_level,
                "work_dir": str(work.parent),
                "isolators": czr.isolators,
                "cgroups": czr.cgroups_version,
                **figures,
            },
        )
    finally:
        await czr.shutdown()
        log_file.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


async def _measure(
    n: int, agent: TimedAgent, czr: Containerizer, master: Master, message: MasterMessage, czr_costs: list[float]
) -> tuple[dict[str, Any], bool]:
    load = os.getloadavg()[0]
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    agent.on_master_message(message)
    await master.until(lambda: master.count(tpb.TASK_RUNNING) + len(master.terminal) >= n, timeout=120)
    all_running = time.perf_counter() - t0
    agent_cpu = time.process_time() - cpu0
    running = [
        master.first[(f"t{i}", tpb.TASK_RUNNING)] - t0 for i in range(n) if (f"t{i}", tpb.TASK_RUNNING) in master.first
    ]
    containers = [r.container for r in agent.tasks.values() if r.container is not None]
    pending = list(containers)
    while pending:
        pending = [c for c in pending if not c.done and not _sleep_started(c)]
        if pending:
            await asyncio.sleep(0.002)
    all_sleeping = time.perf_counter() - t0
    ended_early = sorted(master.terminal)

    k0 = time.perf_counter()
    kills = [MasterMessage.KillTask(framework_id=FRAMEWORK_ID, task_id=f"t{i}") for i in range(n)]
    for k in kills:
        k.kill_policy.grace_period.nanoseconds = 0
    agent.on_master_message(
        MasterMessage(type=MasterMessage.KILL_TASKS, kill_tasks=MasterMessage.KillTasks(tasks=kills))
    )
    await master.until(
        lambda: len(master.terminal) >= n and not agent.tasks and agent.updates.pending() == 0, timeout=120
    )
    killed = time.perf_counter() - k0
    cgroups_left = [p for c in containers for p in c.cgroup_paths if p.exists()]
    procs_left = [c.pid for c in containers if os.path.exists(f"/proc/{c.pid}") and _comm(c.pid) != b""]
    states = {tpb.TaskState.Name(s.state) for s in master.terminal.values()}  # type: ignore[arg-type]
    figures = {
        "seconds_all_running": round(all_running, 3),
        "launch_ms_p50": round(percentile(agent.launch_costs, 50) * 1e3, 3),
        "launch_ms_p99": round(percentile(agent.launch_costs, 99) * 1e3, 3),
        "containerizer_launch_ms_p50": round(percentile(czr_costs, 50) * 1e3, 3),
        "containerizer_launch_ms_p99": round(percentile(czr_costs, 99) * 1e3, 3),
        "running_latency_ms_p50": round(percentile(running, 50) * 1e3, 1),
        "running_latency_ms_p99": round(percentile(running, 99) * 1e3, 1),
        "seconds_all_sleep_started": round(all_sleeping, 3),
        "agent_cpu_ms_per_task": round(agent_cpu / n * 1e3, 3),
        "load_before": round(load, 2),
        "updates_sent": master.sent,
        "updates_acknowledged": master.acked,
        "seconds_kill_all": round(killed, 3),
        "ended_early": ended_early,
        "terminal_states": sorted(states),
        "cgroups_left": len(cgroups_left),
        "processes_left": len(procs_left),
    }
    ok = not ended_early and states == {"TASK_KILLED"} and not cgroups_left and not procs_left and len(running) == n
    return figures, ok


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.agent_launch", description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=1000)
    p.add_argument("--checkpoint", action="store_true", help="a checkpointing framework (the wrapper stays)")
    p.add_argument("--isolation", default="auto")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--work-dir", default=None, help="where sandboxes and the runtime dir go (default: the temp dir)")
    args = p.parse_args(argv)
    if args.tasks < 1:
        p.error("--tasks must be at least 1")
    raise SystemExit(uvloop.run(run(args.tasks, args.checkpoint, args.isolation, args.work_dir, args.log_level)))


if __name__ == "__main__":
    main()
