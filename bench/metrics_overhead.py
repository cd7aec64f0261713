"""What metrics cost the master under load: bench.e2e's runs (a burst of N tasks, paced arrivals, one task at a
time) on a secure cluster with every daemon's HTTP port on and a scraper reading /metrics every
--scrape-interval seconds (far more often than Prometheus' usual 15 s), and on one with `--http-port off`, side
by side: tasks per second, ACCEPT → RUNNING, and the master's CPU seconds for the same work.

Rounds alternate (on, off, on, off, ...) so that the host's drift weighs on both alike; the median run is kept.

    python -m bench.metrics_overhead [--tasks 500] [--rounds 2] [--scrape-interval 1] [--rates 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path

from bench.common import report
from bench.e2e import _median_run, run

KEYS = (
    ("tasks_per_second", True),
    ("accept_to_running_ms_p50", False),
    ("single_task_accept_to_running_ms_p50", False),
    ("master_cpu_seconds", False),
)


def cost(on: list[dict[str, object]], off: list[dict[str, object]]) -> dict[str, object]:
    """What the HTTP port and its scrapes cost: each figure's median over the rounds, with and without, and the
    change in percent of the figure without (positive: worse with)."""
    out: dict[str, object] = {}
    for key, higher_is_better in KEYS:
        with_ = statistics.median(float(r[key]) for r in on)  # type: ignore[arg-type]
        without = statistics.median(float(r[key]) for r in off)  # type: ignore[arg-type]
        worse = (without - with_) if higher_is_better else (with_ - without)
        out[f"{key}_median_on"], out[f"{key}_median_off"] = with_, without
        out[f"metrics_cost_{key}_pct"] = round(100 * worse / without, 1) if without else float("nan")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=500)
    p.add_argument("--agents", type=int, default=2)
    p.add_argument("--rates", default="200", help="tasks per second in the paced runs, comma-separated")
    p.add_argument("--paced-seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--scrape-interval", type=float, default=1.0, help="seconds between scrapes of every daemon")
    args = p.parse_args()
    rates = tuple(float(r) for r in args.rates.split(",") if r.strip())
    runs: dict[str, list[dict[str, object]]] = {"on": [], "off": []}
    for mode in ("on", "off") * max(1, args.rounds):
        with tempfile.TemporaryDirectory(prefix="aiomesos-bench-") as tmp:
            figures = asyncio.run(
                run(
                    args.tasks,
                    args.agents,
                    Path(tmp),
                    rates,
                    args.paced_seconds,
                    secure=True,
                    http=mode == "on",
                    scrape_interval=args.scrape_interval,
                )
            )
        runs[mode].append(figures)
    on, off = _median_run(runs["on"]), _median_run(runs["off"])
    on["master_cpu_seconds_all_rounds"] = [r["master_cpu_seconds"] for r in runs["on"]]
    off["master_cpu_seconds_all_rounds"] = [r["master_cpu_seconds"] for r in runs["off"]]
    figures = {"http_on_scraped": on, "http_off": off, "rounds": args.rounds, **cost(runs["on"], runs["off"])}
    report("metrics_overhead", figures)


if __name__ == "__main__":
    main()
