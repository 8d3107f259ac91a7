"""The command-line edge: tables and reports written to a :class:`rich.console.Console`.

The library returns tables and strings (:mod:`advmask.seqvae.report`); recipes and benchmarks
print them with these two functions.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.table import Table

__all__ = ["print_report", "print_table"]


def print_table(console: Console, table: Table) -> None:
    """Print ``table`` whole, even when the output is a file or a pipe.

    Redirected, rich assumes 80 columns and would wrap and ellipsise the numbers ("102.…");
    a non-terminal console is widened to the width the table needs.
    """
    if not console.is_terminal:
        needed = console.measure(table, options=console.options.update_width(1000)).maximum
        console.width = max(console.width, needed)
    console.print(table)


def print_report(console: Console, parts: Iterable[Table | str]) -> None:
    """Print each part in order: tables whole (:func:`print_table`), strings as written.

    Strings are printed without rich markup or highlighting: a label such as
    ``"adversarial [0.4]"`` is text, not a style.
    """
    for part in parts:
        if isinstance(part, Table):
            print_table(console, part)
        else:
            console.print(part, highlight=False, markup=False)
