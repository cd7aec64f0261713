"""Rendering a CLI table as a terminal of a given width shows it, and reading back what a reader would see."""

from __future__ import annotations

import io
from typing import Any


def render(renderable: Any, width: int) -> str:
    """What a terminal `width` cells wide shows (no colours)."""
    from rich.console import Console

    out = io.StringIO()
    Console(file=out, width=width, color_system=None, legacy_windows=False).print(renderable)
    return out.getvalue()


def assert_fits_and_nothing_is_cut(text: str, width: int) -> None:
    from rich.cells import cell_len

    assert "…" not in text, text
    assert all(cell_len(line) <= width for line in text.splitlines()), text


def assert_ids_whole(text: str, ids: list[str]) -> None:
    """Each id on one line of the output, as a word of its own (not a piece of a longer one)."""
    words = {w for line in text.splitlines() for w in line.replace("│", " ").split()}
    missing = [i for i in ids if i not in words]
    assert not missing, f"not whole on a line: {missing}\n{text}"


def column_text(text: str, column: int) -> str:
    """A column's cells read down the table and joined: a cell folded over lines reads back whole."""
    return "".join(parts[column].strip() for line in text.splitlines() if len(parts := line.split("│")) > column)
