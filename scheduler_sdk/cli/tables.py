"""The CLI's tables, fitted to the terminal: nothing in them is ever cut short with an ellipsis.

A table narrower than the terminal prints as it is. On a narrower terminal the cells that do not fit fold onto
more lines (rich's overflow "fold"), and the id columns (then the other one-word columns: numbers, states) are
kept whole on one line as long as every other column keeps a few characters. On a terminal too
narrow to keep every id whole so, the columns fold into the rows: each row is a block of `HEADER value` lines.
Where a cell must still fold, every character of it is there. The width is decided when the table is printed
(the console's width, or a Live view's), so one table serves a wide and a narrow terminal alike."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # rich is imported when a table is made: `aiomesos --help` need not pay for it
    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.measure import Measurement
    from rich.table import Table
    from rich.text import Text

Justify = Literal["left", "right", "center"]
PADDING = 2  # a cell's padding, one space each side
FOLDED_WIDTH = 3  # the narrowest a folding column is counted at when choosing what stays whole
# The headers of the CLI's id columns, kept whole first (ids, names and addresses one copies; a table may name others).
ID_HEADERS = frozenset(
    {"ID", "TASK", "FRAMEWORK", "AGENT", "CONTAINER", "RUN", "ROLE", "HOSTNAME", "ADDRESS", "ENDPOINT"}
)


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    justify: Justify = "left"
    id: bool = False  # kept whole on one line first


def columns_of(specs: Iterable[Column | str], ids: Iterable[str] = ID_HEADERS) -> list[Column]:
    """Columns from headers (or Columns); the headers in `ids` are id columns."""
    id_headers = set(ids)
    return [s if isinstance(s, Column) else Column(s, id=s in id_headers) for s in specs]


def unbroken_columns(
    natural: Sequence[int], one_word: Sequence[bool], ids: Sequence[bool], width: int
) -> set[int] | None:
    """Which columns are kept whole on one line in `width` cells; None when not every id column can be (the
    rows are then printed as blocks). Every column when the table fits as it is; else the id columns, then the
    other columns whose cells are single words, narrowest first (the most kept for the room), as long as the
    columns that fold keep FOLDED_WIDTH characters (or their natural width, when less) and the separators
    between columns fit.
    `natural` is each column's widest cell or header, without padding."""
    n = len(natural)
    if sum(natural) + PADDING * n + max(0, n - 1) <= width:
        return set(range(n))
    used = sum(min(w, FOLDED_WIDTH) + PADDING for w in natural) + max(0, n - 1)
    kept: set[int] = set()
    words = sorted((i for i in range(n) if one_word[i] and not ids[i]), key=lambda i: natural[i])
    for i in [i for i in range(n) if ids[i]] + words:
        extra = natural[i] - min(natural[i], FOLDED_WIDTH)
        if used + extra <= width:
            kept.add(i)
            used += extra
        elif ids[i]:
            return None
    return kept if used <= width else None


class FitTable:
    """A table as the CLI prints them (title on the left, bold headers, no outer edge) that fits itself to the
    width it is printed in; `add_row` takes text (never read as markup) or rich Text."""

    def __init__(self, title: str | Text, columns: Iterable[Column | str], ids: Iterable[str] = ID_HEADERS) -> None:
        from rich.text import Text

        self.title = Text(title) if isinstance(title, str) else title  # plain text: never read as rich markup
        self.columns = columns_of(columns, ids)
        self.rows: list[list[Text]] = []

    def add_row(self, *cells: Any) -> None:
        from rich.text import Text

        if len(cells) != len(self.columns):
            raise ValueError(f"a row of {len(cells)} cells in a table of {len(self.columns)} columns")
        self.rows.append([c if isinstance(c, Text) else Text(str(c)) for c in cells])

    def table(self, width: int) -> Table:
        """The rich Table for `width` cells."""
        from rich.cells import cell_len
        from rich.table import Table

        cells = [[row[i] for row in self.rows] for i in range(len(self.columns))]
        natural = [
            max([cell_len(line) for t in [c.header, *(x.plain for x in col)] for line in t.splitlines()] or [0])
            for c, col in zip(self.columns, cells, strict=True)
        ]
        one_word = [all(len(x.plain.split()) <= 1 for x in col) for col in cells]
        kept = unbroken_columns(natural, one_word, [c.id for c in self.columns], width)
        if kept is None:
            return self._rows_as_blocks(width)
        table = Table(title=self.title, title_justify="left", show_edge=False, header_style="bold")
        for i, c in enumerate(self.columns):
            table.add_column(c.header, justify=c.justify, overflow="fold", no_wrap=i in kept)
        for row in self.rows:
            table.add_row(*row)
        return table

    def _rows_as_blocks(self, width: int) -> Table:
        """The columns folded into the rows: a block of `HEADER value` lines per row, a rule between rows. The
        headers stay whole while the values keep FOLDED_WIDTH characters."""
        from rich.cells import cell_len
        from rich.table import Table

        headers = max((cell_len(c.header) for c in self.columns), default=0)
        whole = headers + 2 * PADDING + 1 + FOLDED_WIDTH <= width
        table = Table(title=self.title, title_justify="left", show_edge=False, show_header=False)
        table.add_column(style="bold", overflow="fold", no_wrap=whole)
        table.add_column(overflow="fold")
        for row in self.rows:
            for i, (c, cell) in enumerate(zip(self.columns, row, strict=True)):
                table.add_row(c.header, cell, end_section=i == len(row) - 1)
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.table(options.max_width)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        from rich.measure import Measurement

        return Measurement.get(console, options, self.table(options.max_width))


def console(**kwargs: Any) -> Console:
    """The console the CLI prints its tables on: the terminal's width (or $COLUMNS), no highlighting of what
    looks like numbers or paths in the cells."""
    from rich.console import Console

    kwargs.setdefault("highlight", False)
    return Console(**kwargs)


def print_table(table: FitTable) -> None:
    console().print(table)
