"""A trace run for real, in real time, on a running cluster: the check of the replay.

The same frameworks as in a replay (frameworks.py's `RoleFramework`: one `PlacementScheduler` per role, the
same engine and TaskInfos, `sleep D` tasks), here each behind a real `SchedulerDriver` over gRPC
(`run_framework`), submitting each arrival at its time. The records come out on the trace's clock (seconds since
the run began), so `metrics.figures` reads them as it reads a replay's.
"""

from __future__ import annotations

import asyncio
import time

from mesos_master.simulation.frameworks import RoleFramework
from mesos_master.simulation.metrics import TaskRecord
from mesos_master.simulation.trace import Trace
from scheduler_sdk.placement.service import run_framework
from scheduler_sdk.security.config import ClientConfig

__all__ = ["run_live"]


async def run_live(
    trace: Trace,
    master: str,
    *,
    config: ClientConfig | None = None,
    fitness: str = "binpacking",
    timeout: float = 120.0,
) -> list[TaskRecord]:
    """Run `trace` on the cluster at `master` until every task has ended; the tasks' records. Raises
    TimeoutError after `timeout` seconds (the frameworks are torn down either way)."""
    started = time.monotonic()

    def clock() -> float:
        return time.monotonic() - started

    records: dict[str, TaskRecord] = {}
    done = asyncio.Event()

    def on_record(record: TaskRecord) -> None:
        if record.end is not None and len(records) == trace.tasks and all(r.end is not None for r in records.values()):
            done.set()

    roles = sorted({a.role for a in trace.arrivals})
    frameworks = {role: RoleFramework(role, fitness, clock, records, on_record=on_record) for role in roles}
    runners = [
        asyncio.create_task(run_framework(master, fw.info, fw.scheduler, until=done, config=config))
        for fw in frameworks.values()
    ]
    try:
        async with asyncio.timeout(timeout):
            for arrival in trace.arrivals:
                delay = arrival.time - clock()
                if delay > 0:
                    await asyncio.sleep(delay)
                frameworks[arrival.role].submit(arrival)
            await done.wait()
    finally:
        done.set()  # every framework tears down
        for runner in runners:
            await runner
    return list(records.values())
