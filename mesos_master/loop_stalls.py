"""The master's event-loop stall monitor: a probe that asks to be woken every `interval` seconds and records how
late it was woken. Whatever holds the loop (a long allocation cycle, a big snapshot, a slow callback) shows up as
lateness: the histogram `aiomesos_master_event_loop_stall_seconds` and the worst since start,
`aiomesos_master_event_loop_stall_seconds_max`, in the master's registry (so `/metrics` and GetMetrics serve
them). And `FrozenHeap`, which keeps the garbage collector's full passes out of the loop's way."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator, Callable, Iterator

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


class FrozenHeap:
    """Keeps Python's garbage collector from walking the whole core in the middle of the loop. A full collection
    walks every tracked object: at 50,000 agents with an offer out on each, some hundreds of ms of CPU, at
    whatever moment the allocations of a cycle trigger it (the longest stall of the loop, longer than any piece).
    Before and after every allocation cycle what exists is frozen (`gc.freeze`: kept out of collections;
    reference counting still frees it), so collections during a cycle walk only what the cycle made. Cyclic
    garbage among the frozen is reclaimed every `refresh` seconds: unfrozen, one full collection at once (between
    cycles, not in one), frozen again."""

    def __init__(self, refresh: float = 600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.refresh = refresh
        self.clock = clock
        self.next_refresh = clock() + refresh

    def freeze(self) -> None:
        now = self.clock()
        if now >= self.next_refresh:
            self.next_refresh = now + self.refresh
            gc.unfreeze()
            gc.collect()
        gc.freeze()
