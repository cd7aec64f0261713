"""The jobs service's figures on a local cluster (real master, agents and tasks; secure, as users run it):

- batch: a `--tasks` task array (each `true`) from submit to the run's end: tasks/s through the jobs service;
- workflow: `--steps` steps in layers of `--width`, each depending on two steps of the layer before: for every
  step, the time from its last dependency finishing to its RUNNING (p50/p99), as the service saw both;
- gang: a `--gang` task gang from submit until every member runs (they start in one accept);
- service replacement: a service of `--instances` http.server instances (HTTP health checks every 0.25 s); one
  instance's process killed `--kills` times (a different instance each time): from the kill until the instance's
  next attempt is healthy again, p50/p99;
- rolling update: a service of `--update-instances` instances updated to a new version `--max-parallel` at a
  time: the total time, and the fewest healthy instances seen (sampled every 0.1 s) during it.

    python -m bench.jobs [--tasks 1000] [--steps 200] [--width 10] [--gang 50] [--agents 2] [--instances 5]
                         [--kills 20] [--update-instances 20] [--max-parallel 2]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

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


def _service_spec(name: str, instances: int, greeting: str, max_parallel: int = 1) -> str:
    return f"""
name: {name}
type: service
instances: {instances}
command: 'echo {greeting} > index.html; exec python3 -m http.server $PORT0'
resources: {{cpus: 0.05, mem: 32, ports: 1}}
health_check: {{type: http, interval: 0.25s, timeout: 1s, grace_period: 5s, consecutive_failures: 2}}
restart: {{backoff: 0.1s, max_backoff: 1s, reset_after: 1s}}
update: {{max_parallel: {max_parallel}, min_healthy_time: 0.5s, healthy_deadline: 2m}}
"""


def _healthy(status: jpb.JobStatus) -> list[jpb.TaskSlot]:
    return [t for t in status.run.tasks if t.state == "running" and t.health == "healthy"]


async def _until(jobs: JobsClient, job_id: str, check: Any, timeout: float) -> jpb.JobStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = await jobs.get_job(job_id)
        if check(status):
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"{job_id}: not there in {timeout} s")
        await asyncio.sleep(0.05)


def _listener(port: int) -> psutil.Process:
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return psutil.Process(conn.pid)
    raise RuntimeError(f"nothing listens on port {port}")


async def replacement(jobs: JobsClient, instances: int, kills: int) -> dict[str, float]:
    await jobs.submit(_service_spec("bench-service", instances, "hello"), "bench-service.yaml")
    status = await _until(jobs, "bench-service", lambda s: len(_healthy(s)) == instances, 120)
    times = []
    for n in range(kills):
        victim = next(t for t in _healthy(status) if t.index == n % instances)
        killed = time.monotonic()
        _listener(victim.ports[0]).kill()

        def back(s: jpb.JobStatus, victim: jpb.TaskSlot = victim) -> bool:
            return any(t.index == victim.index and t.attempt > victim.attempt for t in _healthy(s))

        status = await _until(jobs, "bench-service", back, 60)
        times.append(time.monotonic() - killed)
        status = await _until(jobs, "bench-service", lambda s: len(_healthy(s)) == instances, 60)
    await jobs.stop_job("bench-service")
    return {
        "instances": instances,
        "kills": kills,
        "kill_to_healthy_p50_s": round(percentile(times, 50), 3),
        "kill_to_healthy_p99_s": round(percentile(times, 99), 3),
    }


async def rolling_update(jobs: JobsClient, instances: int, max_parallel: int) -> dict[str, float]:
    spec = _service_spec("bench-update", instances, "one", max_parallel)
    await jobs.submit(spec, "bench-update.yaml")
    await _until(jobs, "bench-update", lambda s: len(_healthy(s)) == instances, 120)
    start = time.monotonic()
    await jobs.submit(_service_spec("bench-update", instances, "two", max_parallel), "bench-update.yaml")
    lowest = instances
    while True:
        status = await jobs.get_job("bench-update")
        lowest = min(lowest, len(_healthy(status)))
        if status.deployment.version == 2 and status.deployment.state in ("succeeded", "failed", "reverted"):
            break
        if time.monotonic() - start > 600:
            raise TimeoutError("the rolling update did not end in 10 minutes")
        await asyncio.sleep(0.1)
    took = time.monotonic() - start
    await jobs.stop_job("bench-update")
    return {
        "instances": instances,
        "max_parallel": max_parallel,
        "state": status.deployment.state,
        "seconds": round(took, 2),
        "min_healthy": lowest,
        "floor": instances - max_parallel,
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
                "service_replacement": await replacement(jobs, a.instances, a.kills),
                "rolling_update": await rolling_update(jobs, a.update_instances, a.max_parallel),
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
    p.add_argument("--instances", type=int, default=5)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--update-instances", type=int, default=20)
    p.add_argument("--max-parallel", type=int, default=2)
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
