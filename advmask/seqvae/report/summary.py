"""What a recipe shows at the end of its runs: the table, its legend and the comparisons."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.table import Table
from torch import Tensor

from advmask.seqvae.report.legend import results_legend
from advmask.seqvae.report.selection import comparison_lines
from advmask.seqvae.report.tables import results_table

__all__ = ["results_report"]


def results_report(
    runs: Sequence[Mapping[str, Any]],
    title: str,
    probe_labels: Mapping[str, Tensor] | None = None,
    runs_dir: str | Path | None = None,
) -> list[Table | str]:
    """The results of finished runs, for a recipe to print in this order.

    Args:
        runs: the runs' metrics.
        title: the table's title.
        probe_labels: factor name -> (N,) int64 test labels of the probed factors; the legend
            gives each probe's chance level, the share of the most frequent label.
        runs_dir: the folder of the run folders.

    Returns:
        The table (:func:`.results_table`), its legend, one line
        per paired comparison (:func:`~advmask.seqvae.report.selection.comparison_lines`) and,
        with ``runs_dir``, a line saying where the runs are and how to tabulate them again.
        :func:`advmask.training.console.print_report` prints them.
    """
    chance = {
        name: float(labels.bincount().max()) / len(labels)
        for name, labels in sorted((probe_labels or {}).items())
    }
    table = results_table(runs, title=title)
    parts: list[Table | str] = [
        table,
        results_legend([str(column.header) for column in table.columns], chance),
        *comparison_lines(runs),
    ]
    if runs_dir is not None:
        parts.append(
            f"runs in {runs_dir}/ (one folder per variant and seed); "
            f"tabulate them again with: python recipes/compare.py {runs_dir}/*/"
        )
    return parts
