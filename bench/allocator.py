"""Allocator benchmark in the shape of Mesos' DeclineOffers benchmark.

Every agent has ``cpus:24;mem:4096;disk:4096;ports:[31000-32000]``; all frameworks are in one role and decline
every offer with a long refusal filter (3,600 s), so each cycle offers every agent to a framework that has not
declined it yet. Reported (one JSON line, also appended to bench/results/allocator.jsonl): the time to add the
agents, the first allocation cycle, the median of the next ten, the time the frameworks' declines took, the
allocator's own metrics, and peak RSS.

    python -m bench.allocator --agents 10000 --frameworks 1000
    python -m bench.allocator --quota                # 3,000 agents, roles with quota (guarantees and limits)
    python -m bench.allocator --grid                 # agents 1k/10k/50k x frameworks 100/1k/5k, in subprocesses
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

from bench.common import report
from mesos_master.allocator import HierarchicalAllocator, Quota, create_allocator
from scheduler_sdk.resources import Resources

AGENT = "cpus:24;mem:4096;disk:4096;ports:[31000-32000]"
REFUSE = 3600.0
CYCLES_AFTER_FIRST = 10
GRID_AGENTS = (1_000, 10_000, 50_000)
GRID_FRAMEWORKS = (100, 1_000, 5_000)
GRID_BUDGET_S = 600.0


def peak_rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(agents: int, frameworks: int, *, quota: bool, policy: str, roles: int) -> dict[str, Any]:
    alloc = create_allocator(policy, allocation_interval=1.0)
    assert isinstance(alloc, HierarchicalAllocator)
    total = Resources.parse(AGENT)
    role_names = [f"role{i:03}" for i in range(roles)] if quota else ["*"]
    quota_roles = role_names[: len(role_names) // 2] if quota else []
    if quota:
        # Half of the roles have quota: together they are guaranteed half of the cluster's cpus and memory,
        # each limited to twice its guarantee.
        share = 0.5 / len(quota_roles)
        for role in quota_roles:
            guarantee = Resources.of(cpus=24 * agents * share, mem=4096 * agents * share)
            limit = Resources.of(cpus=24 * agents * share * 2, mem=4096 * agents * share * 2)
            alloc.update_quota(role, Quota(guarantee, limit))
    for f in range(frameworks):
        alloc.add_framework(f"fw{f:05}", [role_names[f % len(role_names)]], {})

    t0 = time.perf_counter()
    for i in range(agents):
        alloc.add_agent(f"agent{i:06}", total, {})
    add_s = time.perf_counter() - t0

    now = 0.0
    cycles: list[float] = []
    declines: list[float] = []
    offers: list[int] = []
    for _ in range(1 + CYCLES_AFTER_FIRST):
        now += 1.0
        t0 = time.perf_counter()
        made = alloc.allocate(now)
        cycles.append(time.perf_counter() - t0)
        offers.append(len(made))
        t0 = time.perf_counter()
        for a in made:
            alloc.recover_resources(a.framework_id, a.agent_id, a.resources, REFUSE, now, role=a.role)
        declines.append(time.perf_counter() - t0)
    m = alloc.metrics()
    return {
        "agents": agents,
        "frameworks": frameworks,
        "policy": policy,
        "quota": quota,
        "roles": len(role_names),
        "quota_roles": len(quota_roles),
        "add_agents_s": round(add_s, 3),
        "first_cycle_ms": round(cycles[0] * 1000, 1),
        "next10_median_ms": round(statistics.median(cycles[1:]) * 1000, 1),
        "next10_max_ms": round(max(cycles[1:]) * 1000, 1),
        "decline_median_ms": round(statistics.median(declines) * 1000, 1),
        "offers_first_cycle": offers[0],
        "offers_median_next10": statistics.median(offers[1:]),
        "allocation_run_ms_p50": round(m["allocation_run_ms_p50"], 1),
        "allocation_run_ms_p99": round(m["allocation_run_ms_p99"], 1),
        "allocation_runs": m["allocation_runs"],
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def grid(policy: str) -> None:
    """Each combination in a fresh process (so peak RSS is its own); skip what would not fit the budget."""
    spent = 0.0
    per_agent_cycle_s: float | None = None  # seconds per agent per cycle (add + 11 cycles + declines), measured
    for agents in GRID_AGENTS:
        for frameworks in GRID_FRAMEWORKS:
            if per_agent_cycle_s is not None:
                estimate = per_agent_cycle_s * agents * 1.5 + 2.0
                if spent + estimate > GRID_BUDGET_S:
                    print(
                        json.dumps(
                            {
                                "bench": "allocator",
                                "skipped": {"agents": agents, "frameworks": frameworks},
                                "why": f"estimated {estimate:.0f} s would exceed the {GRID_BUDGET_S:.0f} s grid budget "
                                f"({spent:.0f} s spent)",
                            }
                        ),
                        flush=True,
                    )
                    continue
            argv = [sys.executable, "-m", "bench.allocator", "--agents", str(agents), "--frameworks", str(frameworks)]
            argv += ["--allocator", policy]
            t0 = time.perf_counter()
            code = subprocess.call(argv, timeout=GRID_BUDGET_S)
            took = time.perf_counter() - t0
            spent += took
            if code == 0:
                per_agent_cycle_s = max(per_agent_cycle_s or 0.0, took / agents)
    print(json.dumps({"bench": "allocator", "grid_total_s": round(spent, 1)}), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.allocator", description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=None)
    p.add_argument("--frameworks", type=int, default=None)
    p.add_argument("--quota", action="store_true", help="roles with quota guarantees and limits (default 3,000 agents)")
    p.add_argument("--roles", type=int, default=100, help="roles in --quota mode (half of them with quota)")
    p.add_argument("--allocator", default="drf", help="policy name (drf, fair, priority, random, or a plugin)")
    p.add_argument("--grid", action="store_true", help="agents 1k/10k/50k x frameworks 100/1k/5k")
    a = p.parse_args()
    if a.grid:
        grid(a.allocator)
        return
    agents = a.agents if a.agents is not None else (3_000 if a.quota else 1_000)
    frameworks = a.frameworks if a.frameworks is not None else (1_000 if a.quota else 100)
    report("allocator", run(agents, frameworks, quota=a.quota, policy=a.allocator, roles=a.roles))


if __name__ == "__main__":
    main()
