"""A histogram kept by hand for the metrics: pure, so that a daemon's core may count into it without importing
prometheus_client (scheduler_sdk._daemon.prometheus.histogram turns it into Prometheus' histogram)."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

#: Bucket bounds (seconds) for short operations: an allocation cycle, a registry write.
FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass
class Durations:
    """Counts per bucket (not cumulative) and the sum: one `observe()` per event, O(log buckets)."""

    bounds: Sequence[float] = FAST_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, events at or below it) for each bound, then (inf, every event): Prometheus' buckets."""
        out: list[tuple[float, int]] = []
        running = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            running += n
            out.append((float(bound), running))
        out.append((float("inf"), self.count))
        return out
