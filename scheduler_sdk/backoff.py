"""Exponential backoff, the one kind every retry in aiomesos uses: the driver re-subscribing, an agent
re-attaching to its master, an agent resending an unacknowledged status update.

The first delay is `initial`; each next one is `factor` times the last, at most `maximum`. `Backoff` also draws
each delay at random from its upper half (`[d/2, d]`), so that many clients cut off at once do not come back in
step; status updates resend on the plain schedule (`next_delay`), as Mesos' agent does."""

from __future__ import annotations

import random


def next_delay(last: float, initial: float, maximum: float, factor: float = 2.0) -> float:
    """The delay after `last` (0: none yet, so `initial`)."""
    return initial if last <= 0 else min(last * factor, maximum)


class Backoff:
    """The delays of one retry loop: `next()` for each wait, `reset()` once the retried thing worked."""

    __slots__ = ("_last", "_random", "factor", "initial", "maximum")

    def __init__(
        self, initial: float, maximum: float, *, factor: float = 2.0, rng: random.Random | None = None
    ) -> None:
        if initial <= 0 or maximum <= 0:
            raise ValueError(f"backoff needs initial ({initial}) and maximum ({maximum}) > 0")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self._last = 0.0
        self._random = rng or random.Random()

    def next(self) -> float:
        """How long to wait before the next try, with jitter."""
        self._last = next_delay(self._last, self.initial, self.maximum, self.factor)
        return self._random.uniform(self._last / 2, self._last)

    def reset(self) -> None:
        self._last = 0.0
