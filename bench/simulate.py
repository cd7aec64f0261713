"""How fast the policy simulator replays: trace-hours replayed per second (`aiomesos simulate`, docs/simulate.md).

A synthetic trace (`mesos_master.simulation.generate`, seeded) on `--hosts` agents of cpus:32;mem:131072 in 3
zones for `--hours`, replayed in virtual time through the master's core and the placement engine, as
`aiomesos simulate TRACE` does. Reported (one JSON line, appended to bench/results/simulate.jsonl): the trace
(hours, arrivals, tasks), the replay's wall and CPU seconds, trace-hours per second of wall time and of CPU time
(other load on the machine does not inflate the latter), events, allocation cycles and engine runs, and the
figures the replay found (mean cpu utilization, queue wait p50/p99, tasks never placed).

    python -m bench.simulate                        # a day of 1,000 hosts
    python -m bench.simulate --quick                # 6 hours of 100 hosts (make bench)
    python -m bench.simulate --compare spread       # and the same trace under a second policy
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bench.common import report
from mesos_master.simulation import quiet_logging
from mesos_master.simulation.generate import GeneratorOptions, generate
from mesos_master.simulation.replay import DEFAULT_LOOP_INTERVAL, ReplayResult, policy_pair, replay
from mesos_master.simulation.trace import Trace, parse_agents

# A day of jobs of 50 tasks on average, running an hour (median, log-normal): about 2,000 jobs and 100,000
# tasks on 1,000 hosts at 40 % of the cpus, swelling by 30 % over the day (a saturated cluster costs more to
# replay: every engine run then weighs every queued task against every host, see docs/simulate.md).
SHAPE = {"load": 0.4, "mean_tasks": 50.0, "median_duration": 3600.0, "diurnal": 0.3}


def figures_of(result: ReplayResult, trace: Trace, hosts: int) -> dict[str, Any]:
    s = result.summary()
    replayed = s["replay"]
    hours = result.figures.horizon / 3600.0
    return {
        "policy": s["policy"],
        "hosts": hosts,
        "trace_hours": round(hours, 3),
        "arrivals": len(trace.arrivals),
        "tasks": trace.tasks,
        "wall_s": replayed["wall_s"],
        "cpu_s": replayed["cpu_s"],
        "trace_hours_per_s": round(hours / max(replayed["wall_s"], 1e-9), 3),
        "trace_hours_per_cpu_s": round(hours / max(replayed["cpu_s"], 1e-9), 3),
        "events": replayed["events"],
        "allocation_cycles": replayed["allocation_cycles"],
        "engine_runs": replayed["engine_runs"],
        "utilization_cpus_mean": s["utilization_mean"]["cpus"],
        "wait_p50_s": s["wait_s"]["all"]["p50"],
        "wait_p99_s": s["wait_s"]["all"]["p99"],
        "never_placed": s["never_placed"],
    }


async def main_async(a: argparse.Namespace) -> None:
    agents = parse_agents(f"{a.hosts}x cpus:32;mem:131072@zone=3,rack={max(1, a.hosts // 20)}")
    options = GeneratorOptions(hours=a.hours, seed=a.seed, **SHAPE)  # type: ignore[arg-type]
    trace = Trace(generate(agents, options))
    for policy in policy_pair(a.allocator, a.fitness, a.compare):
        result = await replay(trace, agents, policy, seed=a.seed, until=a.hours * 3600.0, loop_interval=a.loop_interval)
        report("simulate", {**figures_of(result, trace, a.hosts), "quick": a.quick, "loop_interval": a.loop_interval})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", type=int, default=1000)
    p.add_argument("--hours", type=float, default=24.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--allocator", default="drf")
    p.add_argument("--fitness", default="binpacking")
    p.add_argument("--compare", default="", help="a second allocator or fitness, replayed on the same trace")
    p.add_argument("--loop-interval", type=float, default=DEFAULT_LOOP_INTERVAL, help="the frameworks' loop interval")
    p.add_argument("--quick", action="store_true", help="100 hosts for 6 hours")
    a = p.parse_args()
    if a.quick:
        a.hosts, a.hours = 100, 6.0
    quiet_logging()
    asyncio.run(main_async(a))


if __name__ == "__main__":
    main()
