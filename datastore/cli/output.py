"""How the CLI prints rows: a table on a terminal, one tab-separated line per row in a pipe.

A table is for eyes; ``grep``, ``cut``, ``awk`` and ``sort`` want whole values on one line. So
every listing command prints through :func:`rows`: on a terminal a Rich table whose columns are
dropped, least important first, until it fits the width (a name is never cut to ``mytrainin…``);
in a pipe or a file, the full values of each row joined by tabs, no header, no colour, no
wrapping (``--json`` is there for structure). Hints ("create one with …") go to stderr in a pipe,
so stdout holds data only.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NoReturn

from rich.console import Console
from rich.table import Table

#: Width a foldable column is counted at when deciding what fits (it wraps inside that).
FOLDED_WIDTH = 24


@dataclass(frozen=True)
class Column:
    """One column of a listing.

    Attributes:
        header: Its title on a terminal.
        keep: Importance; on a narrow terminal the lowest goes first. The first column is never dropped.
        fold: Long free text (a source URL, a directory) that may wrap inside its cell instead of
            widening the table.
    """

    header: str
    keep: int = 50
    fold: bool = False


def cell(value: object) -> str:
    """A value as one tab-free, newline-free field (escaped the way ``ls -b`` does)."""
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def fitting(columns: Sequence[Column], table: Sequence[Sequence[str]], width: int) -> list[int]:
    """Indexes of the columns to show in ``width`` characters (a Rich table's borders and padding counted).

    Columns are dropped lowest ``keep`` first (ties: the rightmost) until the rest fits or only
    the first is left.
    """
    def natural(i: int) -> int:
        w = max([len(columns[i].header), *(len(r[i]) for r in table)])
        return min(w, FOLDED_WIDTH) if columns[i].fold else w

    shown = list(range(len(columns)))
    while len(shown) > 1 and 1 + sum(natural(i) + 3 for i in shown) > width:
        victim = min(shown[1:], key=lambda i: (columns[i].keep, -i))
        shown.remove(victim)
    return shown


def rows(console: Console, columns: Sequence[Column], table: Iterable[Sequence[object]]) -> None:
    """Print ``table`` as a fitted Rich table on a terminal, else as tab-separated lines."""
    if not console.is_terminal:
        write = sys.stdout.write
        for row in table:
            write("\t".join(cell(v) for v in row) + "\n")
        sys.stdout.flush()
        return
    texts = [[str(v) for v in row] for row in table]
    shown = fitting(columns, texts, console.width)
    t = Table()
    for i in shown:
        c = columns[i]
        t.add_column(c.header, no_wrap=not c.fold, overflow="fold")
    for row in texts:
        t.add_row(*(row[i] for i in shown))
    console.print(t)


def pairs(console: Console, items: Iterable[tuple[str, object]]) -> None:
    """``key value`` rows: an aligned grid on a terminal, ``key<TAB>value`` lines (full values) in a pipe."""
    if not console.is_terminal:
        for k, v in items:
            sys.stdout.write(f"{k}\t{cell(v)}\n")
        sys.stdout.flush()
        return
    t = Table(show_header=False, box=None)
    t.add_column(no_wrap=True)
    t.add_column(overflow="fold")  # digests and URLs wrap instead of being cut with "…"
    for k, v in items:
        t.add_row(f"[bold]{k}[/]", str(v))
    console.print(t)


def hint(out: Console, err: Console, text: str) -> None:
    """A note for a person: on stdout at a terminal, on stderr in a pipe (stdout holds data only)."""
    (out if out.is_terminal else err).print(text, style="dim", highlight=False, markup=False)


def quiet_broken_pipe() -> NoReturn:
    """The reader of stdout went away (``datastore list | head -1``): stop quietly, status 0, like ``ls``.

    Points stdout at /dev/null first, so the interpreter's flush at exit does not fail again.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    sys.exit(0)
