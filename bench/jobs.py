"""The jobs service's figures on a local cluster (real master, agents and tasks; secure, as users run it):

- batch: a `--tasks` task array (each `true`) from submit to the run's end: tasks/s through the jobs service;
- workflow: `--steps` steps in layers of `--width`, each depending on two steps of the layer before: for every
  step, the time from its last dependency finishing to its RUNNING (p50/p99), as the service saw both;
- gang: a `--gang` task gang from submit until every member runs (they start in one accept).

    python -m bench.jobs [--tasks 1000] [--steps 200] [--width 10] [--gang 50] [--agents 2]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from aiomesos.v1 import jobs_pb2 as jpb
from bench.common import percentile, report
from scheduler_sdk.frameworks.jobs.client import JobsClient
from scheduler_sdk.local_cluster import LocalCluster

ENDED = ("succeeded", "failed", "stopped")


async def _until_ended(jobs: JobsClient, job_id: str, timeout: float) -> tuple[float, jpb.RunStatus]:
    deadline = time.monotonic() + timeout
    while True:
        status = await jobs.get_job(job_id)
        if status.run.state in ENDED:
            return time.monotonic(), status.run
        if time.monotonic() > deadline:
            raise TimeoutError(f"{job_id} not done in {timeout} s: {status.run.state}")
        await asyncio.sleep(0.2)


async def batch(jobs: JobsClient, tasks: int) -> dict[str, float]:
    spec = f"name: bench-batch\ncount: {tasks}\ncommand: 'true'\nresources: {{cpus: 0.05, mem: 8}}\n"
    start = time.monotonic()
    await jobs.submit(spec, "bench-batch.yaml")
    end, run = await _until_ended(jobs, "bench-batch", timeout=600)
    assert run.state == "succeeded", run.state
    return {"tasks": tasks, "seconds": round(end - start, 2), "tasks_per_s": round(tasks / (end - start), 1)}


def _workflow_spec(steps: int, width: int) -> str:
    lines = ["name: bench-workflow", "type: workflow", "steps:"]
    for i in range(steps):
        layer, pos = divmod(i, width)
        deps = sorted({(layer - 1) * width + pos, (layer - 1) * width + (pos + 1) % width}) if layer else []
        dep_text = f", depends_on: [{', '.join(f's{d}' for d in deps)}]" if deps else ""
        lines.append(f"  - {{name: s{i}, command: 'true', resources: {{cpus: 0.05, mem: 8}}{dep_text}}}")
    return "\n".join(lines) + "\n"


async def workflow(jobs: JobsClient, steps: int, width: int) -> dict[str, float]:
    start = time.monotonic()
    await jobs.submit(_workflow_spec(steps, width), "bench-workflow.yaml")
    end, run = await _until_ended(jobs, "bench-workflow", timeout=900)
    assert run.state == "succeeded", run.state
    ended = {t.step: t.ended_at for t in run.tasks}
    deps = {s.name: list(s.depends_on) for s in run.steps}
    latencies = [(t.started_at - max(ended[d] for d in deps[t.step])) * 1000 for t in run.tasks if deps[t.step]]
    return {
        "steps": steps,
        "width": width,
        "seconds": round(end - start, 2),
        "deps_done_to_running_ms_p50": round(percentile(latencies, 50), 1),
        "deps_done_to_running_ms_p99": round(percentile(latencies, 99), 1),
    }


async def gang(jobs: JobsClient, size: int) -> dict[str, float]:
    spec = f"name: bench-gang\ncount: {size}\ngang: true\ncommand: 'sleep 1'\nresources: {{cpus: 0.05, mem: 8}}\n"
    submitted = time.time()
    await jobs.submit(spec, "bench-gang.yaml")
    _, run = await _until_ended(jobs, "bench-gang", timeout=300)
    starts = [t.started_at for t in run.tasks]
    return {
        "size": size,
        "submit_to_all_running_s": round(max(starts) - submitted, 3),
        "start_spread_s": round(max(starts) - min(starts), 3),
    }


async def main_async(a: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="aiomesos-bench-jobs-"))
    cluster = LocalCluster(
        work,
        agents=a.agents,
        agent_resources="cpus:8;mem:8192;disk:4096;ports:[31000-32000]",
        master_flags=["--allocation-interval", "0.2"],
        log_level="warning",
        jobs=True,
    )
    await cluster.start()
    try:
        async with JobsClient(cluster.jobs_address, config=cluster.client_config, timeout=30) as jobs:
            figures = {
                "agents": a.agents,
                "batch": await batch(jobs, a.tasks),
                "workflow": await workflow(jobs, a.steps, a.width),
                "gang": await gang(jobs, a.gang),
            }
        report("jobs", figures)
    finally:
        leftovers = await cluster.stop()
        if leftovers:
            print(f"left behind: {leftovers}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=1000)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--width", type=int, default=10)
    p.add_argument("--gang", type=int, default=50)
    p.add_argument("--agents", type=int, default=2)
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
