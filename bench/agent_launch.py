"""Launch N tasks (`sleep 30`, cpus 0.01, mem 16) on one Containerizer with cgroups; time until all run.

"Running" means the task's command has started inside its container: a process of the container's last
joined cgroup is `sleep` (the wrapper enters every cgroup before it execs or forks the task). Reports, as one
JSON line: the seconds from the first launch until all N run; the per-task launch cost, i.e. the time
`launch()` takes in the agent (p50 / p99; most of it is the kernel starting the wrapper, so it depends on
how busy the CPUs are: the 1-minute load before the run is included); the agent's CPU time per launch. Then
kills every task and checks that no process and no cgroup is left.

    python -m bench.agent_launch [--tasks 1000] [--checkpoint] [--isolation auto] [--work-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import uvloop

from bench.common import percentile, report
from mesos_agent.containerizer import Container, Containerizer, LaunchSpec
from mesos_agent.containerizer._cgroups import read_pids

ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LC_ALL": "C"}


def _comm(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            return f.read().strip()
    except OSError:
        return b""


def _running(c: Container) -> bool:
    return any(_comm(pid) == b"sleep" for pid in read_pids(c.cgroup_paths[-1] / "cgroup.procs"))


async def run(n: int, checkpoint: bool, isolation: str, work_dir: str | None) -> int:
    work = Path(tempfile.mkdtemp(prefix="aiomesos-bench-", dir=work_dir))
    root = f"aiomesos-bench/{uuid.uuid4().hex[:12]}"
    czr = Containerizer(root, isolation=isolation, runtime_dir=work / "runtime")
    if czr.cgroups_version is None:
        print(f"bench.agent_launch: needs cgroups (root): {czr.warning}", file=sys.stderr)
        await czr.shutdown()
        return 2
    specs = []
    for i in range(n):
        sandbox = work / f"t{i}"
        sandbox.mkdir()
        specs.append(
            LaunchSpec(
                container_id=f"t{i}",
                argv=["sleep", "30"],
                env=ENV,
                cwd=sandbox,
                stdout_path=sandbox / "stdout",
                stderr_path=sandbox / "stderr",
                cpus=0.01,
                mem_mb=16,
                checkpoint=checkpoint,
            )
        )
    costs: list[float] = []
    containers: list[Container] = []
    try:
        load = os.getloadavg()[0]
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        for spec in specs:
            a = time.perf_counter()
            containers.append(await czr.launch(spec))
            costs.append(time.perf_counter() - a)
        launched = time.perf_counter() - t0
        agent_cpu = time.process_time() - cpu0
        pending = list(containers)
        while pending:
            pending = [c for c in pending if not _running(c)]
            if pending:
                await asyncio.sleep(0.002)
        all_running = time.perf_counter() - t0
        failed = [c.container_id for c in containers if c.done]

        k0 = time.perf_counter()
        await asyncio.gather(*(c.kill(0) for c in containers))
        terms = await asyncio.gather(*(c.wait() for c in containers))
        killed = time.perf_counter() - k0
        cgroups_left = [p for c in containers for p in c.cgroup_paths if p.exists()]
        procs_left = [c.pid for c in containers if os.path.exists(f"/proc/{c.pid}") and _comm(c.pid) != b""]
        report(
            "agent_launch",
            {
                "tasks": n,
                "checkpoint": checkpoint,
                "work_dir": str(work.parent),
                "isolators": czr.isolators,
                "cgroups": czr.cgroups_version,
                "seconds_all_running": round(all_running, 3),
                "seconds_launch_loop": round(launched, 3),
                "launch_ms_p50": round(percentile(costs, 50) * 1e3, 3),
                "launch_ms_p99": round(percentile(costs, 99) * 1e3, 3),
                "agent_cpu_ms_per_task": round(agent_cpu / n * 1e3, 3),
                "load_before": round(load, 2),
                "seconds_kill_all": round(killed, 3),
                "ended_early": failed,
                "killed_by_sigkill": sum(t.signal == 9 for t in terms),
                "cgroups_left": len(cgroups_left),
                "processes_left": len(procs_left),
            },
        )
        ok = not failed and not cgroups_left and all(t.signal == 9 for t in terms)
    finally:
        await czr.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.agent_launch", description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=1000)
    p.add_argument("--checkpoint", action="store_true", help="checkpointed launches (the wrapper stays)")
    p.add_argument("--isolation", default="auto")
    p.add_argument("--work-dir", default=None, help="where sandboxes and the runtime dir go (default: the temp dir)")
    args = p.parse_args(argv)
    raise SystemExit(uvloop.run(run(args.tasks, args.checkpoint, args.isolation, args.work_dir)))


if __name__ == "__main__":
    main()
