"""The one table formatter: plain-text columns for the terminal, Markdown for files.

Every printed table of the package (``asc cv``, ``asc data check``, ``asc attention``,
``asc predict``, model complexity, sweep tables) goes through these two functions, so a
new command's table is a head, rows of cells and, where the default does not fit, an
alignment and column widths.
"""

from __future__ import annotations

from collections.abc import Sequence

RULE = None  # a row that is drawn as a rule of dashes under each column


def format_table(head: Sequence, rows: Sequence[Sequence | None], align: str | None = None,
                 widths: Sequence[int] | None = None, sep: str = "  ", rule: bool = True) -> str:
    """Plain-text table: the head, a rule of dashes (``rule``), then the rows; a row that is
    :data:`RULE` draws another rule.

    ``align``: one letter per column, ``l`` (left) or ``r`` (right); default: the first
    column left, the others right.  ``widths``: fixed column widths, where a longer cell
    overflows its column (never cut); default: each column's widest cell, head included.
    Cells are written with ``str``: format numbers before.  Trailing spaces are kept, so
    that every line of a fixed-width table has the same length."""
    n = len(head)
    align = align or "l" + "r" * (n - 1)
    cells = [[str(c) for c in row] if row is not RULE else RULE for row in [list(head), *rows]]
    if widths is None:
        widths = [max(len(row[i]) for row in cells if row is not RULE) for i in range(n)]

    def line(row: Sequence[str] | None) -> str:
        if row is RULE:
            return sep.join("-" * w for w in widths)
        return sep.join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align))

    out = [line(cells[0])] + ([line(RULE)] if rule else []) + [line(row) for row in cells[1:]]
    return "\n".join(out)


def format_markdown(head: Sequence, rows: Sequence[Sequence]) -> list[str]:
    """The lines of a Markdown table (GitHub's pipe form), cells written with ``str``."""
    return ["| " + " | ".join(map(str, head)) + " |", "|" + "---|" * len(head),
            *("| " + " | ".join(map(str, cells)) + " |" for cells in rows)]
