"""format_duration, the inverse of parse_duration that messages use ("timed out after 30m")."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler_sdk._daemon.flags import format_duration, parse_duration


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(1800, "30m"), (5400, "1h30m"), (2.5, "2.5s"), (0.25, "250ms"), (0, "0s"), (90061, "1d1h1m1s"), (3600, "1h")],
)
def test_format_duration_reads_like_the_spec(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text and parse_duration(text) == seconds


@given(st.floats(min_value=0, max_value=10**7, allow_nan=False))
def test_format_duration_parses_back_to_within_a_millisecond(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, abs=0.001)
