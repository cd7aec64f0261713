"""`scheduler_sdk.quoting`: a client's value quoted in a message is cut short, and so is a whole message."""

from __future__ import annotations

from scheduler_sdk.quoting import MESSAGE_CHARACTERS, QUOTED_CHARACTERS, cut, quoted


def test_a_short_value_is_quoted_whole() -> None:
    assert quoted("t1") == "'t1'"
    assert quoted("x" * QUOTED_CHARACTERS) == repr("x" * QUOTED_CHARACTERS)


def test_a_long_value_is_cut_and_counted() -> None:
    assert quoted("x" * 10_000) == f"{'x' * QUOTED_CHARACTERS!r}…(10000 characters)"
    assert quoted(b"u" * 100) == f"{b'u' * QUOTED_CHARACTERS!r}…(100 bytes)"


def test_control_characters_are_escaped() -> None:
    assert quoted("a\nb\x1b[31m") == "'a\\nb\\x1b[31m'"


def test_a_message_is_cut_to_its_limit() -> None:
    assert cut("short") == "short"
    long = "m" * (MESSAGE_CHARACTERS + 1)
    assert cut(long) == "m" * MESSAGE_CHARACTERS + f"…({MESSAGE_CHARACTERS + 1} characters)"
