"""Tables for the command line that fit the terminal: box-drawn where there is room, plain
columns where there is not, and never a word cut in two.

Left alone, rich squeezes a table wider than the terminal by narrowing its widest column first,
below that column's longest word ("thumbnails.resi…") while another column could still wrap
between its words. `FittedTable` chooses the widths itself: it narrows the column with the most
room above its longest word, one character at a time, and drops the box (3 characters per
column) for a borderless layout (2, then 1) when even the longest words do not fit in boxes.
Our widest tables (7 columns: the worker processes, the demo's job statistics) then fit 60
columns. A table whose longest words do not fit side by side even then (`jobs list`: eight
columns, and an error naming a long path) is shown as psql's expanded display (`\\x auto`)
shows it: one block per row, a `header  value` line per column, values wrapped between words.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

#: wider than any terminal: what a table measures when nothing constrains it
UNCONSTRAINED = 10_000


class FittedTable:
    """A rich `Table` (same headers, `title` and `add_row`) that fits the width it is given."""

    def __init__(self, *headers: str, title: str | None = None) -> None:
        self.table = Table(*headers, title=title)

    def add_row(self, *cells: Any) -> None:
        self.table.add_row(*cells)

    @property
    def row_count(self) -> int:
        return self.table.row_count

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        table = self.table
        naturals = [max((_width(cell, longest_word=False) for cell in _cells(c)), default=0) for c in table.columns]
        minimums = [max((_width(cell, longest_word=True) for cell in _cells(c)), default=0) for c in table.columns]
        overhead = _overhead(console, options, table, naturals)
        # boxed, then borderless with 2 blanks between cells, then with 1: the first that fits
        for padding in ((0, 1, 0, 0), (0, 0, 0, 0)):
            if sum(minimums) + overhead <= options.max_width:
                break
            table.box = box.SIMPLE_HEAD
            table.show_edge = False
            table.pad_edge = False
            table.padding = padding  # plus the box's blank separator
            overhead = _overhead(console, options, table, naturals)
        if sum(minimums) + overhead > options.max_width:
            yield from _expanded(table)
            return
        widths = fit_widths(naturals, minimums, options.max_width - overhead)
        if widths != naturals:
            for column, width in zip(table.columns, widths):
                column.width = width
        yield table

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self.table)


def fit_widths(naturals: list[int], minimums: list[int], available: int) -> list[int]:
    """Column widths summing to at most `available` where possible: narrow the column with the
    most room above its minimum, one character at a time; never below a minimum."""
    widths = list(naturals)
    excess = sum(widths) - available
    while excess > 0:
        index = max(range(len(widths)), key=lambda i: widths[i] - minimums[i])
        if widths[index] <= minimums[index]:
            break  # every column is at its longest word: nothing can shrink without a cut
        widths[index] -= 1
        excess -= 1
    return widths


def _expanded(table: Table) -> RenderResult:
    """One block per row, a `header  value` line per column (psql's expanded display)."""
    if table.title:
        yield Text(str(table.title), style="table.title")
    for row in range(table.row_count):
        record = Table.grid(padding=(0, 2))
        record.add_column(style="table.header", no_wrap=True)
        record.add_column()
        for column in table.columns:
            record.add_row(column.header, column._cells[row])
        yield Text("")
        yield record


def _cells(column: Any) -> list[Any]:
    return [column.header, *column._cells]


def _width(cell: Any, *, longest_word: bool) -> int:
    if isinstance(cell, str):
        cell = Text.from_markup(cell)
    if not isinstance(cell, Text):
        return 0
    parts = cell.plain.split() if longest_word else cell.plain.splitlines()
    return max((cell_len(part) for part in parts), default=0)


def _overhead(console: Console, options: ConsoleOptions, table: Table, naturals: list[int]) -> int:
    """Borders and padding: the unconstrained width of the table minus its cells' widths."""
    return Measurement.get(console, options.update_width(UNCONSTRAINED), table).maximum - sum(naturals)


def table(*headers: str, title: str | None = None) -> FittedTable:
    return FittedTable(*headers, title=title)
