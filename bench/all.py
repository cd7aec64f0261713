"""`make bench`: every benchmark in turn; figures go to stdout and bench/results/*.jsonl. `--large`
(`make bench-large`): the cluster-scale runs instead."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = [
    # secure (as users run it) and --insecure side by side: what TLS and authentication cost
    ["bench.e2e", "--tasks", "500", "--agents", "2", "--security", "both"],
    # every daemon's HTTP port on and /metrics scraped each second, beside --http-port off: what metrics cost
    ["bench.metrics_overhead", "--tasks", "500", "--rounds", "2", "--scrape-interval", "1"],
    ["bench.failover", "--runs", "5", "--lease", "2"],  # HA masters on etcd: kill -9 of the leader
    ["bench.placement"],
    ["bench.placement", "--path", "scan"],  # the general path Weighted and plugin calculators take
    ["bench.agent_launch", "--tasks", "1000"],
    ["bench.agent_launch", "--tasks", "1000", "--checkpoint"],
    ["bench.allocator", "--grid"],
    ["bench.allocator", "--quota"],
    ["bench.allocator", "--quota-grid"],  # quota roles without frameworks: the cliff of issue 8
    # agents and the master killed -9 and restarted: nothing lost while alive, run twice, or leaked (issue 10)
    ["bench.chaos", "--tasks", "300", "--rounds", "3"],
    # the jobs service (issue 11): a 1,000-task array, a 200-step workflow, a 50-task gang
    ["bench.jobs", "--tasks", "1000", "--steps", "200", "--gang", "50"],
    ["bench.job_run"],  # what one status update costs a 10,000-task run (written in pieces vs whole)
    ["bench.events", "--watchers", "1,10"],  # events/s the operator event stream sustains to 10 watchers (issue 13)
    # the web UI's first paint on a cluster of 1,000 tasks, in headless chromium (issue 13)
    ["bench.webui", "--tasks", "1000"],
    # issue 14, scale: simulated agents on one secure master (attach rate, RSS, operator calls, pings, allocation,
    # placements/s), the allocation cycle in pieces through the core, one placement-SDK framework, the simulator
    ["bench.scale", "--quick"],
    ["bench.allocator", "--core", "--agents", "5000", "--frameworks", "100", "--rounds", "3"],
    ["bench.scale_placement", "--agents", "5000", "--tasks", "20000", "--processes", "1"],
    ["bench.simulate", "--quick"],
]

#: `python -m bench.all --large` (`make bench-large`): the cluster-scale runs, 30-40 minutes on 2 cores.
LARGE = [
    ["bench.scale"],  # 10k / 25k / 50k agents, then 1,000 frameworks and placements
    ["bench.allocator", "--core", "--agents", "50000", "--frameworks", "1000", "--rounds", "3"],
    ["bench.scale_placement", "--agents", "20000", "--tasks", "20000", "--processes", "1"],
    ["bench.simulate"],  # a day of a 1,000-host trace
]


def main() -> None:
    failed = 0
    for argv in LARGE if "--large" in sys.argv[1:] else BENCHMARKS:
        print(f"== python -m {' '.join(argv)}", flush=True)
        failed += subprocess.call([sys.executable, "-m", *argv]) != 0
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
