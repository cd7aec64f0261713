"""The master's heap and CPython's cyclic garbage collector. A master's heap grows with its cluster (its records,
and each agent's stream: hundreds of MB at 50,000 agents), and a full collection walks all of it: over a second
at 50,000 agents, with the event loop (pings, status updates, operator calls) stalled meanwhile. Worse, CPython
runs a full collection whenever a quarter as many objects as the heap holds have *survived* a young collection
since the last one, and a long operator page or an attach storm makes that many short-lived survivors often.

So the master freezes what has lived a while (`gc.freeze`, O(1): the collector no longer walks it, reference
counting still frees it), every `interval` seconds after collecting the young generations, and collects in full
(unfreezing first) only when the process has grown by `growth` since the last full collection (its peak RSS: a
count of the frozen objects would walk them all): the amortised cost of CPython's own rule, without the
collections that churn triggers. What a frozen cycle holds waits for that next full collection (the heap is
bounded by about `growth` times the live heap)."""

from __future__ import annotations

import asyncio
import gc
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger(__name__)

#: Seconds between freezes.
FREEZE_INTERVAL = 5.0
#: A full collection once the frozen heap is this many times what it was after the last one.
FULL_GROWTH = 1.5
#: Below this many bytes a full collection is cheap: it is not put off.
SMALL_HEAP = 256 << 20


def full_collection_due(size: int, after_last_full: int, growth: float = FULL_GROWTH) -> bool:
    """Whether the process (`size` bytes) has grown enough since the last full collection (`after_last_full`
    bytes then) to be walked in full again."""
    return size > growth * max(after_last_full, SMALL_HEAP)


def peak_rss() -> int:
    """The process's peak resident size in bytes (cheap: one getrusage)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


@dataclass
class HeapKeeper:
    interval: float = FREEZE_INTERVAL
    growth: float = FULL_GROWTH
    clock: Callable[[], float] = time.perf_counter
    size: Callable[[], int] = peak_rss
    after_last_full: int = 0
    full_collections: int = 0
    longest_full_seconds: float = 0.0

    def freeze(self) -> None:
        """Freeze what exists (O(1)), after one full collection first when it is due. The allocation loop calls
        this before and after every cycle, so that collections during a cycle walk only what the cycle made
        (at 50,000 agents a full pass triggered by a cycle's allocations was the loop's longest stall)."""
        self._freeze(self.size())

    def step(self) -> None:
        """Collect the young generations, then freeze the rest (a full collection instead when it is due)."""
        size = self.size()
        if not full_collection_due(size, self.after_last_full, self.growth):
            gc.collect(1)
        self._freeze(size)

    def _freeze(self, size: int) -> None:
        if full_collection_due(size, self.after_last_full, self.growth):
            started = self.clock()
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            self.after_last_full = size
            took = self.clock() - started
            self.full_collections += 1
            self.longest_full_seconds = max(self.longest_full_seconds, took)
            log.info("full garbage collection", seconds=round(took, 3), rss_bytes=size)
            return
        gc.freeze()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.step()
