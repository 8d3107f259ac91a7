"""Results tables in the paper's format: mean (std) over seeds, one row per model.

Library code never prints: these functions return data and :class:`rich.table.Table` objects
that a recipe prints.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

# (key in a run's metrics.json "test" section, column title)
COLUMNS: tuple[tuple[str, str], ...] = (
    ("ppl_iw", "PPL (IW)"),
    ("ppl_elbo", "PPL (ELBO)"),
    ("nll_iw", "NLL (IW)"),
    ("neg_elbo", "-ELBO"),
    ("kl", "KL"),
    ("mutual_information", "MI"),
    ("active_units", "AU"),
)


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


def load_runs(run_dirs: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Read ``metrics.json`` of each finished run directory, in order.

    A directory named twice (overlapping shell globs) is read once, so that no seed counts
    twice in a mean.

    Raises:
        FileNotFoundError: naming the missing ``metrics.json`` of an unfinished run.
    """
    runs, seen = [], set()
    for run_dir in run_dirs:
        path = Path(run_dir) / "metrics.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: is the run in {run_dir} finished?")
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            runs.append(json.loads(path.read_text()))
    return runs


def group_runs(runs: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Group runs by their ``model`` label (dataset, dropout kind and rate), in first-seen order."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for run in runs:
        groups.setdefault(str(run["model"]), []).append(run)
    return groups


def results_table(
    runs: Iterable[Mapping[str, Any]], title: str = "Test results", split: str = "test"
) -> Table:
    """A table with one row per model and mean (std) over its seeds.

    Args:
        runs: contents of runs' ``metrics.json`` files (keys ``model``, ``seed``, ``split``
            sections with the :class:`advmask.evaluation.EvaluationResult` fields, and
            optionally ``probe`` with per-factor accuracies).
        title: table title.
        split: which section to report (``"test"`` or ``"valid"``).
    """
    runs = list(runs)
    probe_names = sorted({name for run in runs for name in run.get("probe", {})})
    present = [
        (key, title_)
        for key, title_ in COLUMNS
        if any(run.get(split, {}).get(key) is not None for run in runs)
    ]
    table = Table(title=title)
    table.add_column("model")
    table.add_column("seeds", justify="right")
    for _, column_title in present:
        table.add_column(column_title, justify="right")
    for name in probe_names:
        table.add_column(f"probe {name}", justify="right")
    for model, group in group_runs(runs).items():
        cells = [model, str(len(group))]
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
    return table


def print_table(console: Console, table: Table) -> None:
    """Print ``table`` whole, even when the output is a file or a pipe.

    Redirected, rich assumes 80 columns and would wrap and ellipsise the numbers ("102.…");
    a non-terminal console is widened to the width the table needs.
    """
    if not console.is_terminal:
        needed = console.measure(table, options=console.options.update_width(1000)).maximum
        console.width = max(console.width, needed)
    console.print(table)
