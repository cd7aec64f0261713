"""Naming a wire enum's value safely. A client may send any number where an enum goes (proto3 keeps unknown
values), and `Enum.Name(value)` raises for one it does not know: a message about a bad call must never fail
itself while saying so."""

from __future__ import annotations

from typing import Any


def enum_name(enum: Any, value: int) -> str:
    """`enum.Name(value)`, or `unknown (VALUE)` for a value the enum does not define."""
    try:
        return str(enum.Name(value))
    except ValueError:
        return f"unknown ({value})"
