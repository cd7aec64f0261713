"""`python -m bench.placement`: Fenzo's own large placement test shape, timed per scheduling run.

2,000 hosts of 16 cores, 16,000 MB and ports 1-10 (one offer each). Tasks ask in total for exactly every core,
shuffled with a fixed seed: 40 % of the cores in 8-core tasks (8,000 MB; 1,600), 40 % in 12-core tasks (12,000 MB;
1,066, as many as fit), and 1-core tasks (1,000 MB) for the rest (6,408): 9,074 tasks, each asking for one port.
CPU bin packing; 200 tasks per run; after each run the remainder of every host that got a task is offered again
(a new offer) with the task recorded as running there, hosts left alone keep their offer (a host with nothing left
is not offered). Resources only shrink, so a task that fits nowhere now never fits later: it is counted as not
placed and not retried. The first run is not timed; times are the engine's `schedule` call alone, garbage
collector left on.

One JSON line per good-enough setting (none, 0.5, 0.9) through `bench.common.report("placement", ...)`. On the
default (fast) path and the reference path, hosts are examined best fit first and these tasks have no soft
constraint, so good-enough changes nothing there (``good_enough_noop``: the rows differ only by timing noise); it
matters on the scan path. ``--path reference`` / ``--path scan`` run the same shape through the brute-force
reference path or the path other calculators take (`Weighted`, plugins), for comparison. Each line names the
candidate source the run used (``candidate_source``, see scheduler_sdk/placement/candidates/): the fast path is
``free_amount_index``, the reference ``sorted_scan``, and the scan path, since ``Weighted({BinPacking("cpus"): 1})``
depends on the task's shape only, ``shape_index`` (``good_enough_first`` with a good-enough setting).
"""

from __future__ import annotations

import argparse
import random
import time

from bench.common import report
from scheduler_sdk.placement.engine import PlacementEngine
from scheduler_sdk.placement.fitness import BinPacking, Weighted
from scheduler_sdk.placement.model import Host, OfferSlice, RunningTask, TaskRequest

HOST_CPUS = 16.0
HOST_MEM = 16_000.0
HOST_PORTS = ((1, 10),)


def _minus_ports(ranges: tuple[tuple[int, int], ...], used: set[int]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for lo, hi in ranges:
        start = None
        for p in range(lo, hi + 2):
            if p <= hi and p not in used:
                start = p if start is None else start
            elif start is not None:
                out.append((start, p - 1))
                start = None
    return tuple(out)


def make_tasks(n_hosts: int, seed: int) -> list[TaskRequest]:
    """Fenzo's shape: 40 % of the cores in 8-core tasks, 40 % in 12-core tasks (as many whole tasks as fit), then
    1-core tasks until exactly every core is asked for."""
    total = int(n_hosts * HOST_CPUS)
    eights = int(total * 0.4) // 8
    twelves = int(total * 0.4) // 12
    ones = total - 8 * eights - 12 * twelves
    shape = [(1, ones), (8, eights), (12, twelves)]
    tasks = [
        TaskRequest(id=f"t{size}-{i}", cpus=float(size), mem=size * 1000.0, ports=1, group=f"g{size}")
        for size, count in shape
        for i in range(count)
    ]
    random.Random(seed).shuffle(tasks)
    return tasks


def make_engine(path: str, good_enough: float | None) -> PlacementEngine:
    if path == "fast":  # the bisection index, best fit first
        return PlacementEngine(BinPacking("cpus"), good_enough=good_enough)
    if path == "reference":  # the same rules by brute force: score every host, sort
        return PlacementEngine(BinPacking("cpus"), good_enough=good_enough, fast_path=False)
    # "scan": the general path any other calculator takes (hostname order from the last host used), Fenzo-like
    return PlacementEngine(Weighted({BinPacking("cpus"): 1}), good_enough=good_enough)


def run_once(good_enough: float | None, n_hosts: int, batch: int, seed: int, path: str = "fast") -> dict[str, object]:
    engine = make_engine(path, good_enough)
    tasks = make_tasks(n_hosts, seed)
    hosts = {
        f"h{i:05d}": Host(
            hostname=f"h{i:05d}",
            agent_id=f"a{i}",
            offers=(OfferSlice(f"o{i}-0", cpus=HOST_CPUS, mem=HOST_MEM, ports=HOST_PORTS),),
            total_cpus=HOST_CPUS,
            total_mem=HOST_MEM,
        )
        for i in range(n_hosts)
    }
    times: list[float] = []
    placed = 0
    assigned_cpus = 0.0
    runs = 0
    offer_seq = 0
    for start in range(0, len(tasks), batch):
        pending = tasks[start : start + batch]
        t0 = time.perf_counter()
        offered = [h for h in hosts.values() if h.offers]
        result = engine.schedule(pending, offered)
        ms = (time.perf_counter() - t0) * 1000.0
        if runs > 0:
            times.append(ms)
        runs += 1
        for hostname, got in result.by_host().items():
            old = hosts[hostname]
            lease = old.offers[0]
            cpus = lease.cpus - sum(a.task.cpus for a in got)
            mem = lease.mem - sum(a.task.mem for a in got)
            left = _minus_ports(lease.ports, {p for a in got for p in a.ports})
            running = old.running + tuple(
                RunningTask(a.task.id, a.task.group, cpus=a.task.cpus, mem=a.task.mem, ports=len(a.ports)) for a in got
            )
            offer_seq += 1
            leftover = (OfferSlice(f"o{hostname}-{offer_seq}", cpus=cpus, mem=mem, ports=left),)
            hosts[hostname] = Host(
                hostname=hostname,
                agent_id=old.agent_id,
                offers=leftover if (cpus > 0 or mem > 0 or left) else (),
                running=running,
                total_cpus=HOST_CPUS,
                total_mem=HOST_MEM,
            )
            placed += len(got)
            assigned_cpus += sum(a.task.cpus for a in got)
    noop = path in ("fast", "reference") and not any(t.soft_constraints for t in tasks)
    return {
        "good_enough": good_enough,
        # Best fit first and no soft constraint: the first feasible host examined wins, whatever good_enough is,
        # so the rows of the settings only differ by timing noise.
        "good_enough_noop": noop,
        "hosts": n_hosts,
        "tasks": len(tasks),
        "runs": runs,
        "avg_ms_per_run": round(sum(times) / len(times), 2) if times else None,
        "max_ms_per_run": round(max(times), 2) if times else None,
        "tasks_placed": placed,
        "cpu_utilization": round(assigned_cpus / (n_hosts * HOST_CPUS), 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--path",
        choices=["fast", "reference", "scan"],
        default="fast",
        help="fast: the engine as used (default); reference: the same rules by brute force; scan: the general path "
        "other calculators take (cpu bin packing wrapped in Weighted), for comparison",
    )
    ap.add_argument("--good-enough", type=float, action="append", help="only these settings (repeatable)")
    args = ap.parse_args()
    settings: list[float | None] = args.good_enough or [None, 0.5, 0.9]
    for good_enough in settings:
        figures = run_once(good_enough, args.hosts, args.batch, args.seed, args.path)
        engine = make_engine(args.path, good_enough)
        source = engine.start([]).source_names[0]  # the one for tasks without soft constraints (all of these)
        report(
            "placement",
            {"fitness": engine.fitness.name, "path": args.path, "candidate_source": source, "batch": args.batch}
            | figures,
        )


if __name__ == "__main__":
    main()
