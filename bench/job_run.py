"""`python -m bench.job_run`: what persisting a large run costs per task status update, whole or in pieces.

A batch array of `--slots` tasks (default 10,000) is started and every task is driven RUNNING then FINISHED, one
status at a time, as the jobs service drives a `Run`. After each update the run is persisted two ways, each
timed alone: whole (`to_dict()` then `json.dumps`, what a store of one blob per run writes) and in pieces
(`header()` + `take_dirty()`, each piece through `json.dumps`, what a store of one row per slot writes). The
state machine's own `on_status` is timed too. Pure CPU, no daemons; one JSON line through `bench.common.report`.
"""

from __future__ import annotations

import argparse
import json
import time

from aiomesos.v1 import tasks_pb2 as tpb
from bench.common import percentile, report
from scheduler_sdk.frameworks.jobs.run import Launch, Run
from scheduler_sdk.frameworks.jobs.spec import JobSpec, StepSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slots", type=int, default=10_000)
    parser.add_argument("--whole-every", type=int, default=500, help="time the whole-run write on every Nth update")
    args = parser.parse_args()
    spec = JobSpec(name="bench", type="batch", steps=(StepSpec(name="bench", command="true", count=args.slots),))
    run = Run("bench", "1", spec, 0.0)
    tasks = [a.task.task_id for a in run.start(0.0) if isinstance(a, Launch)]
    run.take_dirty()
    update, whole, pieces, rows = [], [], [], 0
    n = 0
    for state in (tpb.TASK_RUNNING, tpb.TASK_FINISHED):
        for task_id in tasks:
            n += 1
            t0 = time.perf_counter()
            run.on_status(task_id, state, float(n), agent_id="a1")
            t1 = time.perf_counter()
            changed = run.take_dirty()
            json.dumps(run.header())
            for row in changed:
                json.dumps(row)
            t2 = time.perf_counter()
            update.append(t1 - t0)
            pieces.append(t2 - t1)
            rows += len(changed)
            if n % args.whole_every == 0:
                t3 = time.perf_counter()
                json.dumps(run.to_dict())
                whole.append(time.perf_counter() - t3)
    assert run.state == "succeeded"
    ms = 1000.0
    report(
        "job_run",
        {
            "slots": args.slots,
            "updates": n,
            "rows_per_update": rows / n,
            "on_status_ms_p50": percentile(update, 50) * ms,
            "on_status_ms_p99": percentile(update, 99) * ms,
            "pieces_ms_p50": percentile(pieces, 50) * ms,
            "pieces_ms_p99": percentile(pieces, 99) * ms,
            "whole_ms_p50": percentile(whole, 50) * ms,
            "whole_ms_p99": percentile(whole, 99) * ms,
        },
    )


if __name__ == "__main__":
    main()
