"""Allocator benchmark in the shape of Mesos' DeclineOffers benchmark (hierarchical_allocator_tests.cpp).

Every agent has ``cpus:24;mem:4096;disk:4096;ports:[31000-32000]`` and is added with tasks already on it, as
Mesos does: ``cpus:16;mem:2014;disk:1024`` plus 16 ports spread over the range (16 two-port ranges) are used by
framework ``i % F`` on agent ``i``. So frameworks start with allocations and what is offered is fragmented
(``cpus:8;mem:2082;disk:3072`` and 17 port ranges per agent). All frameworks are in one role (``--quota``: in
roles with quota) and decline every offer for good (a refusal filter that never expires), so each round offers
every agent to a framework that has not declined it yet, until every framework has declined every agent: Mesos
runs 2 x F rounds.

Reported (one JSON line, also appended to bench/results/allocator.jsonl): the time to add the agents, the first
allocation cycle, the median of the next ten (wall clock, and process CPU time, which other load on the machine
does not inflate), the worst round and the total over all the rounds run (with how many: all 2 x F when
affordable, see ``--rounds``), the declines, the time spent in Python's garbage collector, the allocator's own
metrics (the last cycle's ``allocation_run_ms`` among them), and peak RSS.

    python -m bench.allocator --agents 10000 --frameworks 1000
    python -m bench.allocator --agents 10000 --frameworks 1000 --rounds 2000   # all of Mesos' rounds
    python -m bench.allocator --shape plain          # the old shape: empty agents, one port range
    python -m bench.allocator --quota                # 3,000 agents, roles with quota (guarantees and limits)
    python -m bench.allocator --quota --roles 3000   # quota roles no framework is subscribed to (1,000 of 1,500)
    python -m bench.allocator --quota-grid           # the --quota shapes of issue 8, 3 rounds each, in subprocesses
    python -m bench.allocator --grid                 # agents 1k/10k/50k x frameworks 100/1k/5k, in subprocesses
    python -m bench.allocator --core --agents 50000 --frameworks 1000   # through the master's core: offers built,
                                                     # the cycle in pieces, the longest loop hold, bytes per agent
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

from bench.allocator_core import run_core
from bench.common import report
from mesos_master.allocator import HierarchicalAllocator, Quota, create_allocator
from scheduler_sdk.resources import Resources

AGENT = "cpus:24;mem:4096;disk:4096;ports:[31000-32000]"
USED = "cpus:16;mem:2014;disk:1024"  # on every agent, by framework i % F (Mesos: "16 tasks, 1 cpu each")
PORT_RANGES = 16  # Mesos' makePortRanges(31000-32000, 16): [31000+62i, 31001+62i]
REFUSE = 1e12  # Mesos declines with INT_MAX seconds: never expires within a run
CYCLES_AFTER_FIRST = 10
GRID_AGENTS = (1_000, 10_000, 50_000)
GRID_FRAMEWORKS = (100, 1_000, 5_000)
GRID_BUDGET_S = 900.0
# (agents, frameworks, roles): half of the roles have quota; with more roles than frameworks, quota roles
# without any framework subscribed (a team with a guarantee and nothing running now), the shape that once took a
# cycle from milliseconds to 50 s
QUOTA_GRID = (
    (3_000, 1_000, 100),
    (3_000, 1_000, 1_000),
    (3_000, 1_000, 2_000),
    (3_000, 3_000, 3_000),
    (3_000, 1_000, 3_000),
    (10_000, 1_000, 3_000),
)
QUOTA_GRID_ROUNDS = 3
AUTO_ROUNDS_BUDGET = 1_000_000  # offers (agents x rounds with offers) the default --rounds affords; beyond: 11


def peak_rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def used_on_agent() -> Resources:
    """Mesos' used resources: cpus:16;mem:2014;disk:1024 and 16 two-port ranges spread over 31000-32000."""
    step = (32000 - 31000) // PORT_RANGES
    ports = Resources.ports(*((31000 + i * step, 31001 + i * step) for i in range(PORT_RANGES)))
    return Resources.parse(USED) + ports


class GcClock:
    """Time spent in the garbage collector (all generations) and full collections, while installed."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.full += info.get("generation") == 2


def auto_rounds(agents: int, frameworks: int) -> int:
    """All of Mesos' 2 x F rounds when the run stays within AUTO_ROUNDS_BUDGET offers; else the first cycle and
    ten more. Rounds after the F-th make no offers (everyone declined everything) and cost little."""
    full = 2 * frameworks
    return full if agents * frameworks <= AUTO_ROUNDS_BUDGET else 1 + CYCLES_AFTER_FIRST


def run(
    agents: int, frameworks: int, *, quota: bool, policy: str, roles: int, shape: str, rounds: int | None
) -> dict[str, Any]:
    alloc = create_allocator(policy, allocation_interval=1.0)
    assert isinstance(alloc, HierarchicalAllocator)
    total = Resources.parse(AGENT)
    used = used_on_agent() if shape == "mesos" else Resources.empty()
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
    framework_ids = [f"fw{f:05}" for f in range(frameworks)]
    for f, fid in enumerate(framework_ids):
        alloc.add_framework(fid, [role_names[f % len(role_names)]], {})

    t0 = time.perf_counter()
    for i in range(agents):
        alloc.add_agent(f"agent{i:06}", total, {framework_ids[i % frameworks]: used} if used else {})
    add_s = time.perf_counter() - t0

    planned = rounds if rounds is not None else auto_rounds(agents, frameworks)
    now = 0.0
    cycles: list[float] = []
    cycles_cpu: list[float] = []  # process CPU time: what the cycle costs, whatever else runs on the machine
    declines: list[float] = []
    offers: list[int] = []
    gc_clock = GcClock()
    gc.callbacks.append(gc_clock)
    started = time.perf_counter()
    try:
        for _ in range(planned):
            now += 1.0
            c0, t0 = time.process_time(), time.perf_counter()
            made = alloc.allocate(now)
            cycles.append(time.perf_counter() - t0)
            cycles_cpu.append(time.process_time() - c0)
            offers.append(len(made))
            t0 = time.perf_counter()
            for a in made:
                alloc.recover_resources(a.framework_id, a.agent_id, a.resources, REFUSE, now, role=a.role)
            declines.append(time.perf_counter() - t0)
    finally:
        gc.callbacks.remove(gc_clock)
    wall = time.perf_counter() - started
    m = alloc.metrics()
    worst = max(range(len(cycles)), key=cycles.__getitem__)
    after = cycles[1 : 1 + CYCLES_AFTER_FIRST] or cycles[:1]
    return {
        "agents": agents,
        "frameworks": frameworks,
        "policy": policy,
        "shape": shape,
        "quota": quota,
        "roles": len(role_names),
        "quota_roles": len(quota_roles),
        "add_agents_s": round(add_s, 3),
        "first_cycle_ms": round(cycles[0] * 1000, 1),
        "next10_median_ms": round(statistics.median(after) * 1000, 1),
        "next10_max_ms": round(max(after) * 1000, 1),
        "first_cycle_cpu_ms": round(cycles_cpu[0] * 1000, 1),
        "next10_median_cpu_ms": round(
            statistics.median(cycles_cpu[1 : 1 + CYCLES_AFTER_FIRST] or cycles_cpu[:1]) * 1000, 1
        ),
        "rounds": len(cycles),
        "rounds_mesos": 2 * frameworks,
        "max_round_ms": round(cycles[worst] * 1000, 1),
        "max_round": worst,
        "total_rounds_s": round(sum(cycles), 2),
        "total_with_declines_s": round(wall, 2),
        "gc_s": round(gc_clock.seconds, 2),  # of the rounds and declines: Python's collector, not the allocator
        "gc_full_collections": gc_clock.full,
        "decline_median_ms": round(statistics.median(declines) * 1000, 1),
        "offers_first_cycle": offers[0],
        "offers_median_next10": statistics.median(offers[1 : 1 + CYCLES_AFTER_FIRST] or offers[:1]),
        "offers_total": sum(offers),
        "allocation_run_ms": round(m["allocation_run_ms"], 1),
        "allocation_run_ms_p50": round(m["allocation_run_ms_p50"], 1),
        "allocation_run_ms_p99": round(m["allocation_run_ms_p99"], 1),
        "allocation_runs": m["allocation_runs"],
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def grid(policy: str, shape: str, rounds: int | None) -> None:
    """Each combination in a fresh process (so peak RSS is its own); skip what would not fit the budget."""
    spent = 0.0
    per_unit_s: float | None = None  # seconds per (agent x round), measured on the runs so far
    for agents in GRID_AGENTS:
        for frameworks in GRID_FRAMEWORKS:
            planned = rounds if rounds is not None else auto_rounds(agents, frameworks)
            units = agents * min(planned, frameworks + 1)
            if per_unit_s is not None:
                estimate = per_unit_s * units * 1.5 + 5.0
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
            argv += ["--allocator", policy, "--shape", shape]
            if rounds is not None:
                argv += ["--rounds", str(rounds)]
            t0 = time.perf_counter()
            code = subprocess.call(argv, timeout=GRID_BUDGET_S)
            took = time.perf_counter() - t0
            spent += took
            if code == 0:
                per_unit_s = max(per_unit_s or 0.0, took / units)
    print(json.dumps({"bench": "allocator", "grid_total_s": round(spent, 1)}), flush=True)


def quota_grid(policy: str, shape: str, rounds: int | None) -> None:
    """Each `QUOTA_GRID` shape in a fresh process, `QUOTA_GRID_ROUNDS` rounds unless --rounds says otherwise."""
    spent = 0.0
    for agents, frameworks, roles in QUOTA_GRID:
        argv = [sys.executable, "-m", "bench.allocator", "--quota", "--agents", str(agents)]
        argv += ["--frameworks", str(frameworks), "--roles", str(roles), "--allocator", policy, "--shape", shape]
        argv += ["--rounds", str(rounds if rounds is not None else QUOTA_GRID_ROUNDS)]
        t0 = time.perf_counter()
        subprocess.call(argv, timeout=GRID_BUDGET_S)
        spent += time.perf_counter() - t0
    print(json.dumps({"bench": "allocator", "quota_grid_total_s": round(spent, 1)}), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.allocator", description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=None)
    p.add_argument("--frameworks", type=int, default=None)
    p.add_argument("--quota", action="store_true", help="roles with quota guarantees and limits (default 3,000 agents)")
    p.add_argument("--roles", type=int, default=100, help="roles in --quota mode (half of them with quota)")
    p.add_argument("--allocator", default="drf", help="policy name (drf, fair, priority, random, or a plugin)")
    p.add_argument(
        "--shape",
        choices=("mesos", "plain"),
        default="mesos",
        help="mesos: agents added with used resources and fragmented ports (default); plain: empty agents",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=None,
        help=f"allocation rounds to run (Mesos runs 2 x frameworks; default: that many when agents x frameworks "
        f"<= {AUTO_ROUNDS_BUDGET:,}, else {1 + CYCLES_AFTER_FIRST})",
    )
    p.add_argument("--grid", action="store_true", help="agents 1k/10k/50k x frameworks 100/1k/5k")
    p.add_argument(
        "--quota-grid",
        action="store_true",
        help="the --quota shapes: 100 to 3,000 roles (half with quota) on 3,000 and 10,000 agents, 3 rounds each",
    )
    p.add_argument("--core", action="store_true", help="through the master's core (bench.allocator_core)")
    p.add_argument("--no-freeze", action="store_true", help="with --core: the collector as Python has it")
    a = p.parse_args()
    if a.rounds is not None and a.rounds < 1:
        p.error("--rounds must be at least 1")
    if a.core:
        figures = run_core(a.agents or 50_000, a.frameworks or 1_000, a.rounds or 3, freeze=not a.no_freeze)
        report("allocator", figures)
        return
    if a.grid:
        grid(a.allocator, a.shape, a.rounds)
        return
    if a.quota_grid:
        quota_grid(a.allocator, a.shape, a.rounds)
        return
    agents = a.agents if a.agents is not None else (3_000 if a.quota else 1_000)
    frameworks = a.frameworks if a.frameworks is not None else (1_000 if a.quota else 100)
    figures = run(agents, frameworks, quota=a.quota, policy=a.allocator, roles=a.roles, shape=a.shape, rounds=a.rounds)
    report("allocator", figures)


if __name__ == "__main__":
    main()
