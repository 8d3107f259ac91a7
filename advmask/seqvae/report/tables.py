"""Results tables in the paper's format: mean (std) over seeds, one row per setting.

Runs are averaged only when they share every setting but the seed (their identity, see
:mod:`advmask.seqvae.identity`); the settings that differ between the rows of a table get a
column of their own. The functions return :class:`rich.table.Table` objects and strings; a
recipe prints them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.table import Table
from rich.text import Text

from advmask.seqvae.identity import run_settings
from advmask.seqvae.metrics import perplexity
from advmask.seqvae.report.names import COLUMNS, short_name
from advmask.seqvae.report.runs import differing_settings, group_runs, run_seed
from advmask.seqvae.report.selection import PairedDifference

__all__ = [
    "Summary",
    "format_setting",
    "paired_table",
    "per_word_metrics",
    "results_table",
    "run_line",
    "summarise",
    "validation_line",
]


@dataclass(frozen=True)
class Summary:
    """Mean and sample standard deviation of one metric over seeds.

    ``std`` is 0 for one seed and NaN when a value is infinite (a diverged run); ``str`` gives
    ``"mean (std)"``, or only the mean for one seed, with two decimals.
    """

    mean: float
    std: float
    count: int

    def __str__(self) -> str:
        if self.count == 1:
            return f"{self.mean:.2f}"
        std = f"{self.std:.2f}" if math.isfinite(self.std) else "-"
        return f"{self.mean:.2f} ({std})"


def summarise(values: Sequence[float | None]) -> Summary | None:
    """:class:`Summary` of the non-missing (not None, not NaN) ``values``, or None if none."""
    present = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not present:
        return None
    if not all(math.isfinite(v) for v in present):
        # statistics refuses infinities (a perplexity can overflow to inf): the mean is +-inf
        # (NaN for inf - inf) and the spread is undefined.
        return Summary(sum(present) / len(present), math.nan, len(present))
    std = statistics.stdev(present) if len(present) > 1 else 0.0
    return Summary(statistics.fmean(present), std, len(present))


def _cell(summary: Summary | None, num_runs: int) -> str:
    if summary is None:
        return "-"
    # Say so when some runs lack the metric, since the "seeds" column counts all runs.
    return str(summary) if summary.count == num_runs else f"{summary} [n={summary.count}]"


def _number(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else str(value)


def results_table(
    runs: Iterable[Mapping[str, Any]],
    title: str = "Test results",
    split: str = "test",
    *,
    groups: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> Table:
    """A table with one row per model and mean (std) over its seeds.

    Args:
        runs: contents of runs' ``metrics.json`` files (keys ``model``, ``seed``, ``split``
            sections with the :class:`advmask.seqvae.evaluation.EvaluationResult` fields, and
            optionally ``probe`` with per-factor accuracies).
        title: table title.
        split: which section to report (``"test"`` or ``"valid"``).
        groups: the rows, already grouped (label -> runs, as :func:`.group_runs` returns, or a
            selection of them): their labels are kept and ``runs`` is not read. By default
            ``group_runs(runs)``.
    """
    if groups is not None:
        runs = [run for group in groups.values() for run in group]
    runs = list(runs)
    probe_names = sorted({name for run in runs for name in run.get("probe", {})})
    present = [
        (key, title_)
        for key, title_ in COLUMNS
        if any(run.get(split, {}).get(key) is not None for run in runs)
    ]
    if groups is None:
        groups = group_runs(runs)
    differing = differing_settings(groups)
    table = Table(title=title)
    table.add_column("model")
    for name in differing:
        table.add_column(name)
    table.add_column("seeds", justify="right")
    for _, column_title in present:
        table.add_column(column_title, justify="right")
    for name in probe_names:
        table.add_column(f"probe {name}", justify="right")
    for model, group in groups.items():
        settings = run_settings(group[0])
        cells = [model, *(format_setting(settings.get(name)) for name in differing)]
        cells.append(str(len(group)))
        for key, _ in present:
            summary = summarise([run.get(split, {}).get(key) for run in group])
            cells.append(_cell(summary, len(group)))
        for name in probe_names:
            summary = summarise([run.get("probe", {}).get(name) for run in group])
            cells.append(_cell(summary, len(group)))
        # Text, not markup: "[n=2]" or a "[...]" in a model label must print as written.
        table.add_row(*(Text(cell) for cell in cells))
    first = runs[0].get(split, {}) if runs else {}
    if first:
        table.caption = (
            f"{split}: {first.get('num_sequences')} sequences, {first.get('num_predictions')} "
            f"predictions (words + EOS); MI estimator {first.get('mi_estimator')!r} "
            f"(ceiling {_number(first.get('mi_ceiling'))} nats); "
            f"IW samples {first.get('iw_samples')}"
        )
        if first.get("pieces_per_word") is not None:
            table.caption += (
                f"; perplexities per word of the raw text, {first.get('num_pieces')} "
                "sentencepiece pieces"
            )
    if differing:
        table.caption = (table.caption or "") + (
            f"; rows differ in {', '.join(differing)} (runs are averaged only over seeds)"
        )
    return table


def format_setting(value: Any) -> str:
    """A setting's value as a table cell: ``"-"`` for unset, lists space-separated."""
    if value is None:  # unset, or not a setting of this run (ADVERSARY_SETTINGS)
        return "-"
    if isinstance(value, tuple):
        return " ".join(map(str, value))
    return str(value)


def paired_table(
    differences: Mapping[str, PairedDifference], name_a: str, name_b: str, split: str = "test"
) -> Table:
    """A table of :func:`.paired_differences`: metric, mean difference, std, se, pairs.

    Rows keep the order of ``differences``; a cell without a value (std and se of one pair)
    is ``"-"``. The caption names the paired seeds. Differences are ``name_a - name_b``.
    """
    table = Table(title=f"{name_a} - {name_b}, paired by seed ({split})")
    table.add_column("metric")
    for column in ("mean difference", "std", "se", "pairs"):
        table.add_column(column, justify="right")
    for metric, difference in differences.items():
        table.add_row(
            Text(metric),
            f"{difference.mean:+.3f}",
            "-" if difference.std is None else f"{difference.std:.3f}",
            "-" if difference.se is None else f"{difference.se:.3f}",
            str(difference.num_pairs),
        )
    if differences:
        seeds = next(iter(differences.values())).seeds
        table.caption = f"seeds {' '.join(map(str, seeds))}; std with n - 1, se = std / sqrt(n)"
    return table


def per_word_metrics(metrics: Mapping[str, Any], num_words: int) -> dict[str, Any]:
    """Metrics of a subword (sentencepiece) run with perplexities per word of the raw text.

    The total NLL is the same whatever the units; a per-word perplexity divides it by the
    whitespace words plus one EOS per sequence, as for a word-level model. The per-piece values
    are kept as ``piece_ppl_*``, with ``num_pieces`` and ``pieces_per_word``.

    Args:
        metrics: an evaluation's metrics (``num_sequences``, ``num_words`` counting pieces,
            ``neg_elbo``, ``nll_iw`` per sequence, ``ppl_*`` per piece).
        num_words: whitespace words of the split's raw text.
    """
    sequences, pieces = metrics["num_sequences"], metrics["num_words"]
    predictions = num_words + sequences
    result = {
        **metrics,
        "piece_ppl_elbo": metrics["ppl_elbo"],
        "piece_ppl_iw": metrics["ppl_iw"],
        "num_pieces": pieces,
        "pieces_per_word": pieces / num_words if num_words else None,
        "num_words": num_words,
        "num_predictions": predictions,
        "ppl_elbo": perplexity(metrics["neg_elbo"] * sequences, predictions),
        "ppl_denominator": "words of the raw text + EOS per sequence (BOS not predicted)",
    }
    if metrics.get("nll_iw") is not None:
        result["ppl_iw"] = perplexity(metrics["nll_iw"] * sequences, predictions)
    return result


def validation_line(metrics: Mapping[str, Any]) -> str:
    """``"-ELBO 39.14 KL 0.63 MI 0.62 AU 3"``: an evaluation in one line (the training log)."""
    shown = (
        ("neg_elbo", ".2f"),
        ("kl", ".2f"),
        ("mutual_information", ".2f"),
        ("active_units", ""),
    )
    return " ".join(f"{short_name(key)} {metrics[key]:{spec}}" for key, spec in shown)


def run_line(run: Mapping[str, Any]) -> str:
    """``"synthetic uniform [0.4] seed 1: test -ELBO 37.2 ..."``: a finished run in one line."""
    return f"{run['model']} seed {run_seed(run)}: test {validation_line(run['test'])}"
