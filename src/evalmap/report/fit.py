"""Terminal tables that fit the width they are given, without breaking an id or a number.

Rich squeezes a table that is too wide by wrapping or cutting cells, which splits
`smollm2_135m` across lines and turns two metric names into the same `exact_…`.
Here every column says whether it may wrap (free text) and how soon it may go:
when the table is too wide, headers first take their short forms (explained in a
legend under the table), then a column holding one value in every row is folded
into a line under the table ("model(s): qwen25_7b in every row"), then the least
needed columns are hidden (named under the table), and what is left is printed whole. If even that is too wide, cells of
several words ("5 min (4-6 min)", "[+0.105, +0.595]") wrap between their words as
a last resort. An id or a number never wraps.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace

from rich import box
from rich.cells import cell_len
from rich.table import Table

PIPED_WIDTH = 200  # a pipe without COLUMNS: wide enough that files and scripts get every column
MIN_WRAP = 12  # a free-text column is never squeezed below this (or its longest word)


def terminal_width() -> int | None:
    """The width to print at: None on a terminal (Rich asks it), else $COLUMNS, else PIPED_WIDTH."""
    if sys.stdout.isatty():
        return None
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else PIPED_WIDTH


@dataclass(frozen=True)
class Column:
    header: str
    justify: str = "left"
    wrap: bool = False  # free text that may wrap between words; ids and numbers never do
    drop: int = 0  # 0: always shown; when the table is too wide, the highest rank is hidden first (all its columns)
    short: str = ""  # the header's short form when the table is too wide, explained in the legend
    min_wrap: int = MIN_WRAP  # a wrapping column keeps at least this width (or its longest word)
    fold: bool = False  # when the table is too wide and every row holds the same value (blank = as above), say it
    # once under the table instead


def _lines(text: str) -> list[str]:
    return text.split("\n") or [""]


def _width(col: Column, cells: Sequence[str], short: bool) -> int:
    header = col.short if short and col.short else col.header
    if col.wrap:
        words = [w for text in (header, *cells) for line in _lines(text) for w in line.split()]
        longest = max((cell_len(w) for w in words), default=1)
        natural = max((cell_len(line) for text in (header, *cells) for line in _lines(text)), default=1)
        return max(longest, min(natural, col.min_wrap))
    return max(cell_len(line) for text in (header, *cells) for line in _lines(text))


def needed_width(columns: Sequence[Column], rows: Sequence[Sequence[str]], short: bool = False) -> int:
    """Characters a boxed table of these columns needs at least (cell padding 1 + 1, one rule between columns
    and one at each edge, as Rich draws it)."""
    widths = [_width(c, [r[i] for r in rows], short) for i, c in enumerate(columns)]
    return sum(w + 2 for w in widths) + len(columns) + 1


def _loose(col: Column) -> Column:
    """The last resort: the column wraps between words, down to its longest one."""
    return replace(col, wrap=True, min_wrap=0)


def _one_value(rows: Sequence[Sequence[str]], i: int) -> str | None:
    """The value every row holds in column i (blank cells repeat the one above), None when they differ."""
    values = {r[i] for r in rows if r[i]}
    return values.pop() if len(values) == 1 else None


def fit_columns(
    columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int
) -> tuple[list[int], bool, bool]:
    """For a table `width` characters wide: (indices of the columns to show, whether short headers are used,
    whether every cell must wrap between its words). A column left out was folded (`fold` and one value in
    every row) or hidden."""
    keep = list(range(len(columns)))

    def fits(short: bool, loose: bool = False) -> bool:
        shown = [_loose(columns[i]) if loose else columns[i] for i in keep]
        return needed_width(shown, [[r[i] for i in keep] for r in rows], short) <= width

    if fits(False):
        return keep, False, False
    short = any(c.short for c in columns)
    if fits(short):
        return keep, short, False
    keep = [i for i in keep if not (columns[i].fold and rows and _one_value(rows, i) is not None)]
    hidden: list[list[int]] = []  # columns of one drop rank go together (A and B, say, never one without the other)
    for rank in sorted({columns[i].drop for i in keep if columns[i].drop}, reverse=True):
        if fits(short):
            break
        hidden.append([i for i in keep if columns[i].drop == rank])
        keep = [i for i in keep if columns[i].drop != rank]
    for group in reversed(hidden[:-1]):  # a rank hidden early may fit again beside the ones hidden after it
        before = keep
        keep = sorted([*keep, *group])
        if not fits(short):
            keep = before
    return keep, short, not fits(short)


def _wrap_widths(columns: Sequence[Column], rows: Sequence[Sequence[str]], short: bool, width: int) -> list:
    """Fixed widths for the free-text columns when the table must be squeezed (None: Rich's natural width).

    Rich would squeeze the widest wrapping column first, below its longest word if it must; here each keeps
    at least `_width`, and the room left is shared in proportion to how much each would like to have."""
    mins = [_width(c, [r[i] for r in rows], short) for i, c in enumerate(columns)]
    natural = [
        max(cell_len(line) for text in (c.short if short and c.short else c.header, *[r[i] for r in rows])
            for line in _lines(text))
        for i, c in enumerate(columns)
    ]
    overhead = 3 * len(columns) + 1
    if sum(natural) + overhead <= width or not any(c.wrap for c in columns):
        return [None] * len(columns)
    spare = max(0, width - overhead - sum(mins))
    wants = [n - m if c.wrap else 0 for c, n, m in zip(columns, natural, mins, strict=True)]
    total = sum(wants) or 1
    return [m + spare * w // total if c.wrap else None for c, m, w in zip(columns, mins, wants, strict=True)]


def fit_table(
    title: str | None, columns: Sequence[Column], rows: Sequence[Sequence], width: int, terminal: bool,
    caption: str | None = None,
) -> Table:
    """A Rich table of `rows` that fits `width`: short headers, then hidden columns, as `fit_columns` decides;
    the caption ends with the legend of the short headers used and the names of the hidden columns."""
    text_rows = [["" if v is None else str(v) for v in row] for row in rows]
    keep, short, loose = fit_columns(columns, text_rows, width)
    if loose:
        columns = [_loose(c) for c in columns]
    table = Table(
        title=title, box=box.SIMPLE_HEAVY if terminal else box.ASCII, header_style="bold" if terminal else "",
        title_justify="left", caption_justify="left",
    )
    widths = _wrap_widths([columns[i] for i in keep], [[r[i] for i in keep] for r in text_rows], short, width)
    for i, w in zip(keep, widths, strict=True):
        c = columns[i]
        table.add_column(c.short if short and c.short else c.header, justify=c.justify, no_wrap=not c.wrap,
                         overflow="fold", width=w)
    for row in text_rows:
        table.add_row(*[row[i] for i in keep])
    notes = [caption] if caption else []
    folded = [f"{c.header}: {_one_value(text_rows, i)}" for i, c in enumerate(columns)
              if i not in keep and c.fold and text_rows and _one_value(text_rows, i) is not None]
    if folded:
        notes.append("In every row: " + "; ".join(folded) + ".")
    legend = [f"{c.short} = {c.header}" for i, c in enumerate(columns) if i in keep and short and c.short]
    if legend:
        notes.append("Legend: " + "; ".join(legend) + ".")
    hidden = [c.header for i, c in enumerate(columns)
              if i not in keep and not (c.fold and text_rows and _one_value(text_rows, i) is not None)]
    if hidden:
        notes.append(
            f"Hidden to fit {width} columns: {', '.join(hidden)} (a wider terminal or COLUMNS shows them; "
            "--format json has every field)."
        )
    table.caption = "\n".join(notes) or None
    return table
