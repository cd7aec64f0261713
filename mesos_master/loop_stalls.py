"""The master's event-loop stall monitor: a probe that asks to be woken every `interval` seconds and records how
late it was woken. Whatever holds the loop (a long allocation cycle, a big snapshot, a slow callback) shows up as
lateness: the histogram `aiomesos_master_event_loop_stall_seconds` and the worst since start,
`aiomesos_master_event_loop_stall_seconds_max`, in the master's registry (so `/metrics` and GetMetrics serve
them)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from scheduler_sdk._daemon.durations import Durations
from scheduler_sdk._daemon.prometheus import histogram
from scheduler_sdk._daemon.tasks import cancel_and_wait

NAME = "aiomesos_master_event_loop_stall_seconds"
#: Lateness bounds (seconds): a healthy loop wakes the probe within a millisecond or two.
STALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
PROBE_INTERVAL = 0.05


class LoopStallMonitor:
    """Lateness of a periodic probe (`run`); a Prometheus collector of its figures (`collect`)."""

    def __init__(self, interval: float = PROBE_INTERVAL) -> None:
        self.interval = interval
        self.lateness = Durations(STALL_BUCKETS)
        self.worst = 0.0

    def observe(self, late: float) -> None:
        late = max(late, 0.0)
        self.lateness.observe(late)
        if late > self.worst:
            self.worst = late

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(self.interval)
            self.observe(loop.time() - asked - self.interval)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The probe runs in the background while in the block."""
        probe = asyncio.get_running_loop().create_task(self.run())
        try:
            yield
        finally:
            await cancel_and_wait(probe)

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield histogram(NAME, f"how late a probe asking to be woken every {self.interval:g} s was woken", self.lateness)
        yield GaugeMetricFamily(NAME + "_max", "the longest the event loop was held, since start", value=self.worst)
