"""Finished runs as tables in the paper's format, and the fair comparison of two variants.

Library code never prints: these functions return data, strings and :class:`rich.table.Table`
objects; a recipe prints them (:mod:`advmask.training.console`).

* :mod:`advmask.seqvae.report.runs`: run folders read (runs of earlier versions included) and
  grouped into the seeds of one setting.
* :mod:`advmask.seqvae.report.tables`: mean (std) over seeds, one row per setting.
* :mod:`advmask.seqvae.report.names`: the metrics' names, one table for every output.
* :mod:`advmask.seqvae.report.legend`: what each column means, printed under a table.
* :mod:`advmask.seqvae.report.selection`: configurations chosen on validation, differences
  paired by seed.
* :mod:`advmask.seqvae.report.summary`: what a recipe shows at the end of its runs.
"""

from advmask.seqvae.report.legend import results_legend
from advmask.seqvae.report.names import COLUMNS, LEGEND, METRICS, MetricName
from advmask.seqvae.report.runs import (
    by_dropout_kind,
    differing_settings,
    dropout_kind,
    group_runs,
    is_run_directory,
    load_runs,
    run_seed,
)
from advmask.seqvae.report.selection import (
    PairedDifference,
    comparison_line,
    comparison_lines,
    paired_differences,
    resolve_variant,
    select_on_validation,
    select_per_dropout,
    selection_seeds,
    shared_seeds,
)
from advmask.seqvae.report.summary import results_report
from advmask.seqvae.report.tables import (
    Summary,
    format_setting,
    paired_table,
    per_word_metrics,
    results_table,
    run_line,
    summarise,
    validation_line,
)

__all__ = [
    "COLUMNS",
    "LEGEND",
    "METRICS",
    "MetricName",
    "PairedDifference",
    "Summary",
    "by_dropout_kind",
    "comparison_line",
    "comparison_lines",
    "differing_settings",
    "dropout_kind",
    "format_setting",
    "group_runs",
    "is_run_directory",
    "load_runs",
    "paired_differences",
    "paired_table",
    "per_word_metrics",
    "resolve_variant",
    "results_legend",
    "results_report",
    "results_table",
    "run_line",
    "run_seed",
    "select_on_validation",
    "select_per_dropout",
    "selection_seeds",
    "shared_seeds",
    "summarise",
    "validation_line",
]
