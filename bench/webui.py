"""The web UI's first paint on a cluster of `--tasks` tasks (a real, secure local cluster: master, agents, the
jobs service; the tasks are one task array of `--command`), in Debian's chromium headless (bench/browser.py).

For each page (`/tasks`, every task a row; `/`, the overview), opened `--runs` times after the login, reports
the browser's own timings (Navigation and Paint Timing, milliseconds from the navigation's start), median and
worst: `first_contentful_paint_ms`, `response_end_ms` (the master rendered and sent the page),
`dom_content_loaded_ms`, the page's bytes and its task rows; and how long until the live stream is connected
(`live_ms`: the page's script subscribed, got the snapshot, and says "live").

    python -m bench.webui [--tasks 1000] [--agents 2] [--runs 5] [--command true] [--work-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import browser
from bench.common import report
from scheduler_sdk.frameworks.jobs.client import JobsClient
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.security.credentials import add_token

ENDED = ("succeeded", "failed", "stopped")


async def run_tasks(cluster: LocalCluster, tasks: int, command: str) -> float:
    """Submit the array and wait until it ended (or, for a long command, until every task runs)."""
    spec = f"name: ui-bench\ncount: {tasks}\ncommand: {command!r}\nresources: {{cpus: 0.01, mem: 8}}\n"
    start = time.monotonic()
    async with JobsClient(cluster.jobs_address, config=cluster.client_config) as jobs:
        await jobs.submit(spec, "ui-bench.yaml")
        deadline = start + 900
        while time.monotonic() < deadline:
            status = await jobs.get_job("ui-bench")
            run = status.run
            if run.state in ENDED or sum(1 for t in run.tasks if t.state == "running") == tasks:
                return time.monotonic() - start
            await asyncio.sleep(0.5)
    raise TimeoutError(f"the {tasks} tasks did not run in 900 s")


def measure(driver: Any, url: str, runs: int) -> dict[str, Any]:
    samples = []
    live = []
    for _ in range(runs):
        started = time.monotonic()
        driver.get(url)
        samples.append(browser.paint_timing(driver))
        while driver.find_element("id", "live").text != "live":
            if time.monotonic() - started > 30:
                raise TimeoutError(f"{url}: the live stream did not connect")
            time.sleep(0.01)
        live.append((time.monotonic() - started) * 1000)
    out: dict[str, Any] = {"rows": samples[-1]["rows"], "bytes": samples[-1]["transfer_bytes"]}
    for key in ("first_contentful_paint_ms", "response_end_ms", "dom_content_loaded_ms"):
        values = [float(s[key]) for s in samples if s[key] is not None]
        out[key] = round(statistics.median(values), 1) if values else None
        out[key.replace("_ms", "_max_ms")] = round(max(values), 1) if values else None
    out["live_ms"] = round(statistics.median(live), 1)
    return out


async def main_async(args: argparse.Namespace) -> None:
    why = browser.missing()
    if why:
        raise SystemExit(f"bench.webui: {why}")
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench-webui-"))
    agent_cpus = max(4, int(args.tasks * 0.01 / args.agents) + 2)
    cluster = LocalCluster(
        work,
        agents=args.agents,
        agent_resources=f"cpus:{agent_cpus};mem:{args.tasks * 8 // args.agents + 1024};disk:2048;ports:[31000-32000]",
        master_flags=["--allocation-interval", "0.2"],
        jobs=True,
        log_level="warning",
    )
    async with cluster:
        await cluster.wait_for_http()
        seconds = await run_tasks(cluster, args.tasks, args.command)
        assert cluster.certificates is not None
        token = add_token(cluster.certificates.credentials, "bench", "operator")
        driver = browser.headless(trust=cluster.certificates.directory / "master-master.crt")
        try:
            browser.login(driver, cluster.master_http_url, token)
            pages = {
                "tasks": measure(driver, cluster.master_http_url + "/tasks", args.runs),
                "overview": measure(driver, cluster.master_http_url + "/", args.runs),
            }
        finally:
            driver.quit()
    report(
        "webui",
        {
            "tasks": args.tasks,
            "agents": args.agents,
            "command": args.command,
            "runs": args.runs,
            "tasks_seconds": round(seconds, 1),
            **{f"{page}_{k}": v for page, figures in pages.items() for k, v in figures.items()},
        },
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=1000)
    p.add_argument("--agents", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--command", default="true", help="each task's command (e.g. 'sleep 600': the tasks run)")
    p.add_argument("--work-dir", default=None)
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
