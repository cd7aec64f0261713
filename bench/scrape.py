"""What watching a cluster costs: a Prometheus-like scraper of every daemon's /metrics (with the operator's
certificate, over TLS), and the master process' CPU time over a run."""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp
import psutil

from bench.common import percentile
from scheduler_sdk._daemon.http import client_ssl_context
from scheduler_sdk.local_cluster import LocalCluster


class Scraper:
    """Reads the master's and every agent's /metrics every `interval` seconds, as a Prometheus would."""

    def __init__(self, cluster: LocalCluster, interval: float) -> None:
        self.cluster = cluster
        self.interval = interval
        self.master_ms: list[float] = []
        self.errors = 0
        self.bytes = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.cluster.wait_for_http()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        certs = self.cluster.certificates
        context = None
        if certs is not None:
            cert, key = certs.issue("admin", "operator")
            context = client_ssl_context(certs.ca_cert, cert, key)
        urls = [self.cluster.master_http_url, *self.cluster.agent_http_urls]
        async with aiohttp.ClientSession() as session:
            while True:
                for i, url in enumerate(urls):
                    started = time.perf_counter()
                    try:
                        async with session.get(url + "/metrics", ssl=context if context else False) as r:
                            body = await r.read()
                            if r.status != 200:
                                self.errors += 1
                                continue
                    except aiohttp.ClientError:
                        self.errors += 1
                        continue
                    self.bytes += len(body)
                    if i == 0:
                        self.master_ms.append((time.perf_counter() - started) * 1000)
                await asyncio.sleep(self.interval)

    async def stop(self) -> dict[str, object]:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return {
            "scrape_interval_seconds": self.interval,
            "master_scrapes": len(self.master_ms),
            "master_scrape_ms_p50": round(percentile(self.master_ms, 50), 2),
            "master_scrape_ms_p99": round(percentile(self.master_ms, 99), 2),
            "scrape_errors": self.errors,
            "scraped_bytes": self.bytes,
        }


class MasterCpu:
    """The master process' CPU seconds (user + system) since this was made."""

    def __init__(self, cluster: LocalCluster) -> None:
        assert cluster.master is not None and cluster.master.process is not None
        self.process = psutil.Process(cluster.master.process.pid)
        self.start = self._now()

    def _now(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def used(self) -> float:
        return round(self._now() - self.start, 3)
