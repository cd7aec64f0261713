"""The one exponential backoff every retry uses."""

from __future__ import annotations

import random

import pytest

from scheduler_sdk.backoff import Backoff, next_delay


def test_next_delay_starts_at_initial_doubles_and_caps() -> None:
    delays = [0.0]
    for _ in range(6):
        delays.append(next_delay(delays[-1], 10.0, 60.0))
    assert delays[1:] == [10.0, 20.0, 40.0, 60.0, 60.0, 60.0]


def test_backoff_jitters_in_the_upper_half_and_resets() -> None:
    backoff = Backoff(0.5, 4.0, rng=random.Random(7))
    waits = [backoff.next() for _ in range(6)]
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert all(c / 2 <= w <= c for w, c in zip(waits, ceilings, strict=True))
    assert len(set(waits)) == len(waits)  # jittered, not a fixed schedule
    backoff.reset()
    assert 0.25 <= backoff.next() <= 0.5


@pytest.mark.parametrize(("initial", "maximum"), [(0.0, 1.0), (1.0, 0.0), (-1.0, 1.0)])
def test_backoff_refuses_nonsense_bounds(initial: float, maximum: float) -> None:
    with pytest.raises(ValueError, match="backoff needs"):
        Backoff(initial, maximum)
