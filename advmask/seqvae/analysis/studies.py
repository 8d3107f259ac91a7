"""Studies over several runs: the adversary's scores during training and the rate ablation.

* lambda study (paper Figure 3): ``scores.csv`` of each adversarial run holds, every
  ``--score-log-every`` steps, the mean l1 norm of the score means, their std and the
  adversary's gradient norm (before clipping); :func:`read_score_log` reads it.
* rate ablation (paper Figure 2): :func:`rate_ablation` groups finished runs by dropout kind
  and rate and summarises ``-ELBO``, KL and MI over seeds; the runs must agree on every other
  setting (:mod:`advmask.seqvae.identity`), or the points would average other settings.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from advmask.seqvae.analysis.render import text_table
from advmask.seqvae.identity import check_distinct_runs, run_settings
from advmask.seqvae.report.names import METRICS
from advmask.seqvae.report.tables import Summary, format_setting, summarise
from advmask.training.checkpoint import read_json

SCORE_LOG = "scores.csv"
"""Name of the score-statistics log in a run directory."""

SCORE_COLUMNS: tuple[str, ...] = ("step", "score_l1", "score_std", "adversary_grad_norm")
"""Columns every row of :data:`SCORE_LOG` has (the recipe may add more)."""

ABLATION_METRICS: tuple[tuple[str, str], ...] = tuple(
    (key, METRICS[key].title) for key in ("neg_elbo", "kl", "mutual_information")
)
"""(key in a run's ``metrics.json`` split section, axis title) of the rate ablation."""


def read_score_log(run_dir: str | os.PathLike[str]) -> dict[str, list[float]]:
    """The columns of a run's ``scores.csv`` as float lists.

    Raises:
        FileNotFoundError: naming the file when the run logged no scores (not adversarial,
            or ``--score-log-every 0``).
        ValueError: naming the file when a column of :data:`SCORE_COLUMNS` is missing.
    """
    path = Path(run_dir) / SCORE_LOG
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: only adversarial runs with --score-log-every > 0 log scores"
        )
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = list(rows[0]) if rows else []
    missing = [c for c in SCORE_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"{path} lacks the columns {missing} (has {columns})")
    return {c: [float(row[c]) if row[c] != "" else math.nan for row in rows] for c in columns}


def read_score_logs(
    run_dirs: Iterable[str | os.PathLike[str]],
) -> dict[str, dict[str, list[float]]]:
    """The score logs of adversarial runs, labelled by their lambda and folder name.

    Returns:
        ``"lambda = <kl_weight> (<folder>)"`` -> :func:`read_score_log` of that run, in order.

    Raises:
        FileNotFoundError: naming a missing folder, ``config.json`` or ``scores.csv``.
        ValueError: naming a file that cannot be read, or a config without a lambda.
    """
    logs = {}
    for run_dir in map(Path, run_dirs):
        if not run_dir.is_dir():
            raise FileNotFoundError(f"run directory {str(run_dir)!r} does not exist")
        config = read_json(run_dir / "config.json")
        try:
            label = f"lambda = {config['model']['kl_weight']:g} ({run_dir.name})"
        except (KeyError, TypeError):
            raise ValueError(f"{run_dir / 'config.json'} records no model.kl_weight") from None
        logs[label] = read_score_log(run_dir)
    return logs


@dataclass(frozen=True)
class AblationPoint:
    """One (dropout kind, rate) of the rate ablation, summarised over its seeds.

    Attributes:
        dropout: ``"uniform"`` or ``"adversarial"`` (or ``"none"``, rate 0).
        rate: the word-dropout rate.
        metrics: :class:`~advmask.seqvae.report.tables.Summary` (mean, std, count) per key of
            :data:`ABLATION_METRICS`; a metric no run reports is left out.
        seeds: the seeds of the runs, in the order given.
    """

    dropout: str
    rate: float
    metrics: dict[str, Summary]
    seeds: tuple[int, ...]

    def record(self) -> dict[str, Any]:
        """The point as ``rate_ablation.json`` holds it: kind, rate, seeds, mean and std."""
        return {
            "dropout": self.dropout,
            "rate": self.rate,
            "seeds": list(self.seeds),
            **{key: {"mean": s.mean, "std": s.std} for key, s in self.metrics.items()},
        }


def rate_ablation(runs: Iterable[Mapping[str, Any]], split: str = "test") -> list[AblationPoint]:
    """Group finished runs by (dropout kind, rate); mean and sample std over seeds.

    Args:
        runs: parsed ``metrics.json`` of each run (see
            :func:`advmask.seqvae.report.runs.load_runs`), each with ``dropout``, ``rate``, ``seed``
            and a ``split`` section.
        split: ``"test"`` or ``"valid"``.

    Returns:
        One :class:`AblationPoint` per (dropout, rate), sorted by dropout kind, then rate.

    Raises:
        ValueError: naming the run (its ``model`` label) that lacks a needed entry, or the
            setting other than the dropout kind, rate and seed in which the runs differ (its
            values), or two runs of one setting and seed
            (:class:`~advmask.seqvae.identity.DuplicateRunError`).

    Example:
        >>> runs = [{"dropout": "uniform", "rate": 0.2, "seed": s, "test": {"kl": kl}}
        ...         for s, kl in ((0, 1.0), (1, 3.0))]
        >>> point = rate_ablation(runs)[0]
        >>> point.rate, point.metrics["kl"].mean, point.metrics["kl"].std, point.seeds
        (0.2, 2.0, 1.4142135623730951, (0, 1))
    """
    if split not in ("test", "valid"):
        raise ValueError(f"split must be 'test' or 'valid', got {split!r}")
    runs = list(runs)
    check_distinct_runs(runs)
    _check_one_setting(runs)
    groups: dict[tuple[str, float], list[Mapping[str, Any]]] = {}
    for run in runs:
        missing = [key for key in ("dropout", "rate", "seed", split) if key not in run]
        if missing:
            raise ValueError(f"run {run.get('model', '?')!r} lacks {missing} in its metrics")
        groups.setdefault((str(run["dropout"]), float(run["rate"])), []).append(run)
    points = []
    for (dropout, rate), members in sorted(groups.items()):
        metrics = {}
        for key, _ in ABLATION_METRICS:
            summary = summarise([member[split].get(key) for member in members])
            if summary is not None:
                metrics[key] = summary
        seeds = tuple(int(member["seed"]) for member in members)
        points.append(AblationPoint(dropout=dropout, rate=rate, metrics=metrics, seeds=seeds))
    return points


# The axes of the ablation: what its points may differ in, besides the seed.
_ABLATION_AXES = frozenset({"model_dropout", "rate", "relaxation_options"})


def _check_one_setting(runs: list[Mapping[str, Any]]) -> None:
    """Refuse runs that differ in a setting other than the ablation's axes (one they share)."""
    settings = [run_settings(run) for run in runs]
    names = sorted({name for s in settings for name in s} - _ABLATION_AXES)
    for name in names:
        values = {repr(s[name]): s[name] for s in settings if name in s}
        if len(values) > 1:
            shown = ", ".join(sorted(format_setting(v) for v in values.values()))
            raise ValueError(
                f"the runs differ in {name} ({shown}), not only in dropout kind, rate and seed: "
                "pass the runs of one setting"
            )


def score_log_table(logs: Mapping[str, Mapping[str, list[float]]]) -> Table:
    """The last logged row of each run's score log (:func:`read_score_log`), one row per run.

    Args:
        logs: run label -> its score log's columns; runs that logged nothing are left out.
    """
    rows = [
        (
            label,
            len(columns["step"]),
            f"{columns['score_l1'][-1]:.3g}",
            f"{columns['score_std'][-1]:.3g}",
            f"{columns['adversary_grad_norm'][-1]:.3g}",
        )
        for label, columns in logs.items()
        if columns["step"]
    ]
    columns = ("run", "rows", "l1", "std", "grad norm")
    return text_table("score statistics (last logged row)", columns, rows)


def ablation_table(points: Iterable[AblationPoint], split: str) -> Table:
    """The rate ablation (:func:`rate_ablation`): one row per dropout kind and rate."""
    rows = [
        (
            p.dropout,
            f"{p.rate:g}",
            len(p.seeds),
            *(str(p.metrics.get(key, "-")) for key, _ in ABLATION_METRICS),
        )
        for p in points
    ]
    columns = ("dropout", "rate", "seeds", *(title for _, title in ABLATION_METRICS))
    return text_table(f"rate ablation ({split}; mean (std) over seeds)", columns, rows)
