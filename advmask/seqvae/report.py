"""Results tables in the paper's format: mean (std) over seeds, one row per model.

Runs are averaged only when they share every setting but the seed: the run's ``config.json``
(written by ``recipes/seqvae_awd.py``) is read beside its ``metrics.json``, and the settings
that differ between the rows of a table get a column of their own.

Two variants are compared by the fair protocol: each variant's configuration is chosen on
validation (:func:`select_on_validation`), and the chosen ones are compared on test by their
differences paired by seed (:func:`paired_differences`, :func:`comparison_line`).

Library code never prints: these functions return data and :class:`rich.table.Table` objects
that a recipe prints.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text
from torch import Tensor

from advmask.seqvae.identity import (
    check_distinct_runs,
    run_identity,
    run_settings,
)
from advmask.seqvae.metrics import perplexity
from advmask.training.checkpoint import read_json

# (key in a run's metrics.json "test" section, column title)
COLUMNS: tuple[tuple[str, str], ...] = (
    ("ppl_iw", "PPL (IW)"),
    ("ppl_elbo", "PPL (ELBO)"),
    ("nll_iw", "NLL (IW)"),
    ("neg_elbo", "-ELBO"),
    ("kl", "KL"),
    ("mutual_information", "MI"),
    ("active_units", "AU"),
    ("pieces_per_word", "pieces/word"),
)

# Already in the model label, so never a column of their own.
_LABEL_SETTINGS = ("preset", "rate", "model_dropout")


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


def is_run_directory(path: str | Path) -> bool:
    """True for a run folder (it holds ``config.json`` or ``metrics.json``).

    Lets ``compare.py runs/<preset>/*/`` pass over the generated ``corpus/``, the
    ``sentencepiece/`` cache and ``analysis/`` folders beside the runs.
    """
    path = Path(path)
    return (path / "config.json").is_file() or (path / "metrics.json").is_file()


def load_runs(run_dirs: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Read ``metrics.json`` of each finished run directory, in order.

    A directory named twice (overlapping shell globs) is read once. The run's ``config.json``,
    where present, is added under ``"config"`` (it decides which runs are averaged, see
    :func:`~advmask.seqvae.identity.run_identity`).

    Raises:
        FileNotFoundError: naming the missing ``metrics.json`` of an unfinished run.
        ValueError: naming a file that is not valid JSON.
        advmask.seqvae.identity.DuplicateRunError: naming two folders that hold the same run
            (the same settings and seed: a copy, or a grid point trained again), which would
            count one seed twice.
    """
    runs, seen, names = [], set(), []
    for run_dir in run_dirs:
        path = Path(run_dir) / "metrics.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: is the run in {run_dir} finished?")
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            run = read_json(path)
            config_path = Path(run_dir) / "config.json"
            if config_path.is_file() and "config" not in run:
                run["config"] = read_json(config_path)
            runs.append(run)
            names.append(str(run_dir))
    check_distinct_runs(runs, names)
    return runs


def group_runs(runs: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Group runs that differ only by their seed, in first-seen order.

    Runs are grouped by their identity (:func:`~advmask.seqvae.identity.run_identity`: every
    setting that can change a result; runs without a config by their ``model`` label). The
    keys are the labels of each group's first run, with ``" #2"``, ``" #3"`` ... for further
    groups under the same label (their settings differ: :func:`differing_settings` names them).

    Raises:
        advmask.seqvae.identity.DuplicateRunError: two runs of one identity and seed (one run
            counted twice).
    """
    runs = list(runs)
    check_distinct_runs(runs)
    by_key: dict[tuple[tuple[str, str], ...], list[Mapping[str, Any]]] = {}
    for run in runs:
        by_key.setdefault(run_identity(run), []).append(run)
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for group in by_key.values():
        label = str(group[0]["model"])
        name, number = label, 1
        while name in groups:
            number += 1
            name = f"{label} #{number}"
        groups[name] = group
    return groups


def differing_settings(groups: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
    """Settings whose value differs between the groups that have them, besides the label's."""
    settings = [run_settings(group[0]) for group in groups.values()]
    names = sorted({name for s in settings for name in s} - set(_LABEL_SETTINGS))
    return [name for name in names if len({repr(s[name]) for s in settings if name in s}) > 1]


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
        groups: the rows, already grouped (label -> runs, as :func:`group_runs` returns, or a
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


def print_table(console: Console, table: Table) -> None:
    """Print ``table`` whole, even when the output is a file or a pipe.

    Redirected, rich assumes 80 columns and would wrap and ellipsise the numbers ("102.…");
    a non-terminal console is widened to the width the table needs.
    """
    if not console.is_terminal:
        needed = console.measure(table, options=console.options.update_width(1000)).maximum
        console.width = max(console.width, needed)
    console.print(table)


# --------------------------------------------------------------------------------------------
# The legend under a table
# --------------------------------------------------------------------------------------------
LEGEND: dict[str, str] = {
    "PPL (IW)": "perplexity per word + EOS from the importance-weighted NLL (lower is better)",
    "PPL (ELBO)": "the same from the -ELBO, an upper bound (lower is better)",
    "NLL (IW)": "importance-weighted negative log-likelihood per sentence, nats (lower is better)",
    "-ELBO": "negative evidence lower bound per sentence, nats (lower is better)",
    "KL": "KL(q(z|x) || p(z)) per sentence, nats: what z is charged for (0 = collapse)",
    "MI": "mutual information I(x; z) under q, nats: how much z tells about x (higher = less "
    "collapse; at most the ceiling in the caption)",
    "AU": "active units: latent dimensions whose posterior mean varies over x (higher = less "
    "collapse)",
    "pieces/word": "sentencepiece pieces per word of the raw text",
}
"""What each column of :func:`results_table` means and which direction is better."""


def results_legend(columns: Iterable[str], probe_chance: Mapping[str, float] | None = None) -> str:
    """A legend for the given column titles, one line each, for printing under a table.

    Args:
        columns: column titles as :func:`results_table` writes them (for example
            ``[str(column.header) for column in table.columns]``).
        probe_chance: factor name -> chance accuracy of its linear probe (the share of the
            most frequent value), for ``probe <factor>`` columns.

    Returns:
        Lines ``"TITLE: meaning"`` in the order of ``columns``; titles without an entry in
        :data:`LEGEND` (``model``, ``seeds``, settings) are left out. A ``probe <factor>``
        column gets a line with its chance level where ``probe_chance`` has one; factors of
        ``probe_chance`` without a column follow at the end.

    Example:
        >>> print(results_legend(["model", "KL", "probe topic"], {"topic": 0.3}))
        KL: KL(q(z|x) || p(z)) per sentence, nats: what z is charged for (0 = collapse)
        probe topic: accuracy of a linear probe reading the true topic from the posterior means on held-out sentences (higher is better; chance 0.30)
    """  # noqa: E501
    chance = dict(probe_chance or {})
    lines = []
    for title in columns:
        if title in LEGEND:
            lines.append(f"{title}: {LEGEND[title]}")
        elif title.startswith("probe "):
            name = title.removeprefix("probe ")
            lines.append(_probe_line(name, chance.pop(name, None)))
    lines += [_probe_line(name, level) for name, level in chance.items()]
    return "\n".join(lines)


def _probe_line(name: str, chance: float | None) -> str:
    level = "" if chance is None else f"; chance {chance:.2f}"
    return (
        f"probe {name}: accuracy of a linear probe reading the true {name} from the "
        f"posterior means on held-out sentences (higher is better{level})"
    )


# --------------------------------------------------------------------------------------------
# The fair protocol: configurations chosen on validation, differences paired by seed
# --------------------------------------------------------------------------------------------
def run_seed(run: Mapping[str, Any]) -> int:
    """The seed of a run: its ``seed``, else the one its ``config.json`` records.

    Raises:
        ValueError: naming the run's model when neither is there.
    """
    seed = run.get("seed")
    if seed is None:
        seed = ((run.get("config") or {}).get("run") or {}).get("seed")
    if seed is None:
        raise ValueError(f"run {run.get('model', '?')!r} records no seed, so it cannot be paired")
    return int(seed)


def dropout_kind(run: Mapping[str, Any]) -> str:
    """``"none"``, ``"uniform"`` or ``"adversarial"``: the run's ``dropout``, else its config's.

    ``"unknown"`` for a run that records neither (an old ``metrics.json`` without config).
    """
    config = run.get("config") or {}
    for kind in (
        run.get("dropout"),
        (config.get("run") or {}).get("dropout"),
        (config.get("model") or {}).get("dropout"),
    ):
        if isinstance(kind, str):
            return kind
    return "unknown"


@dataclass(frozen=True)
class PairedDifference:
    """Per-seed differences ``a - b`` of one metric between two variants.

    With :math:`d_s = a_s - b_s` over the :math:`n` paired seeds :math:`s`:
    ``mean`` :math:`= \\bar d`, ``std`` :math:`= \\sqrt{\\sum_s (d_s - \\bar d)^2 / (n - 1)}`
    and ``se`` :math:`=` ``std`` :math:`/ \\sqrt{n}`, the standard error of :math:`\\bar d`.

    Attributes:
        mean: mean difference over the paired seeds (``+inf``/``-inf``/NaN when a value is
            infinite: a diverged run).
        std: sample standard deviation of the differences (ddof = 1); None for one pair,
            NaN when a value is infinite.
        se: standard error of the mean, ``std / sqrt(num_pairs)``; None for one pair.
        num_pairs: number of seeds present in both variants.
        seeds: those seeds, sorted.
    """

    mean: float
    std: float | None
    se: float | None
    num_pairs: int
    seeds: tuple[int, ...]

    def __str__(self) -> str:
        """``"+0.18 (se 0.05)"``, or ``"+0.18"`` for one pair."""
        se = "" if self.se is None else f" (se {self.se:.2f})"
        return f"{self.mean:+.2f}{se}"


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _paired_difference(differences: Sequence[float], seeds: tuple[int, ...]) -> PairedDifference:
    n = len(differences)
    if not all(math.isfinite(d) for d in differences):
        # statistics refuses infinities; the mean is +-inf (NaN for inf - inf), no spread.
        spread = math.nan if n > 1 else None
        return PairedDifference(sum(differences) / n, spread, spread, n, seeds)
    if n == 1:
        return PairedDifference(differences[0], None, None, 1, seeds)
    std = statistics.stdev(differences)  # ddof = 1: the seeds are a sample
    return PairedDifference(statistics.fmean(differences), std, std / math.sqrt(n), n, seeds)


def paired_differences(
    runs_a: Iterable[Mapping[str, Any]],
    runs_b: Iterable[Mapping[str, Any]],
    metrics: Sequence[str],
    split: str = "test",
) -> dict[str, PairedDifference]:
    """Differences ``a - b`` per metric, paired by seed (the seeds both variants have).

    Pairing by seed makes the comparison paired: both variants of a seed share its data order
    and initialisation, so the seed-to-seed spread they share cancels in the difference. Runs
    are matched by their seed (:func:`run_seed`), never by their position in the lists; seeds
    that only one variant has are left out (``seeds`` of the result says which were paired).

    Args:
        runs_a: runs (``metrics.json`` contents as :func:`load_runs` returns them, with a
            seed and a ``split`` section) of the first variant, one per seed.
        runs_b: runs of the second variant.
        metrics: keys of the ``split`` section (for example ``"mutual_information"``).
        split: ``"test"`` or ``"valid"``.

    Returns:
        metric -> :class:`PairedDifference`, in the order of ``metrics``; a metric missing,
        None or NaN in some paired run is left out (not reported as NaN).

    Raises:
        ValueError: if no seed is present in both (naming each side's seeds), a variant has
            a seed twice, or a run records no seed.

    Example:
        >>> a = [{"seed": 1, "test": {"kl": 3.0}}, {"seed": 0, "test": {"kl": 2.0}}]
        >>> b = [{"seed": 0, "test": {"kl": 1.5}}, {"seed": 1, "test": {"kl": 1.5}}]
        >>> paired_differences(a, b, ["kl"])["kl"]
        PairedDifference(mean=1.0, std=0.7071067811865476, se=0.5, num_pairs=2, seeds=(0, 1))
    """

    def by_seed(runs: Iterable[Mapping[str, Any]], name: str) -> dict[int, Mapping[str, Any]]:
        table: dict[int, Mapping[str, Any]] = {}
        for run in runs:
            seed = run_seed(run)
            if seed in table:
                raise ValueError(f"{name} has two runs with seed {seed}: pair one run per seed")
            table[seed] = run
        return table

    a, b = by_seed(runs_a, "runs_a"), by_seed(runs_b, "runs_b")
    seeds = tuple(sorted(a.keys() & b.keys()))
    if not seeds:
        raise ValueError(
            f"no seed is in both variants: runs_a has seeds {sorted(a)}, runs_b {sorted(b)}"
        )
    differences: dict[str, PairedDifference] = {}
    for metric in metrics:
        values = [
            ((a[s].get(split) or {}).get(metric), (b[s].get(split) or {}).get(metric))
            for s in seeds
        ]
        if all(_present(x) and _present(y) for x, y in values):
            per_seed = [float(x) - float(y) for x, y in values]
            differences[metric] = _paired_difference(per_seed, seeds)
    return differences


_SHORT_NAMES = {
    "mutual_information": "MI",
    "kl": "KL",
    "nll_iw": "NLL_IW",
    "neg_elbo": "-ELBO",
    "reconstruction": "REC",
    "active_units": "AU",
    "ppl_iw": "PPL_IW",
    "ppl_elbo": "PPL_ELBO",
}


def comparison_line(
    name_a: str,
    name_b: str,
    differences: Mapping[str, PairedDifference],
    metrics: Sequence[str] = ("mutual_information", "kl", "nll_iw"),
    units: str = "nats",
) -> str:
    """One sentence: ``"A vs B: MI +0.18 (se 0.05), KL +0.26 (se 0.07) nats over 3 seeds"``.

    Each number is the mean difference ``a - b`` over the paired seeds, two decimals with its
    sign, and its standard error; with one pair there is no standard error and the sentence
    ends in ``"(1 seed, no se)"``. Put whatever qualifies a variant into its name (for
    example ``name_b="uniform at rate 0.4"``).

    Args:
        name_a: label of the first variant (the differences are ``a - b``).
        name_b: label of the second.
        differences: from :func:`paired_differences`.
        metrics: which differences to print, in this order (missing ones are skipped).
        units: unit word after the numbers.

    Raises:
        ValueError: if none of ``metrics`` is in ``differences``.

    Example:
        >>> d = {"kl": PairedDifference(0.26, 0.12, 0.07, 3, (0, 1, 2))}
        >>> comparison_line("adversarial", "uniform at rate 0.4", d)
        'adversarial vs uniform at rate 0.4: KL +0.26 (se 0.07) nats over 3 seeds'
    """
    shown = [metric for metric in metrics if metric in differences]
    if not shown:
        raise ValueError(
            f"none of {list(metrics)} is among the differences ({', '.join(differences) or '-'})"
        )
    parts = [f"{_SHORT_NAMES.get(metric, metric)} {differences[metric]}" for metric in shown]
    num_pairs = differences[shown[0]].num_pairs  # the same seeds for every metric
    seeds = f"over {num_pairs} seeds" if num_pairs > 1 else "(1 seed, no se)"
    return f"{name_a} vs {name_b}: {', '.join(parts)} {units} {seeds}"


def paired_table(
    differences: Mapping[str, PairedDifference], name_a: str, name_b: str, split: str = "test"
) -> Table:
    """A table of :func:`paired_differences`: metric, mean difference, std, se, pairs.

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


def _validation_mean(runs: Sequence[Mapping[str, Any]], metric: str) -> float | None:
    values = [(run.get("valid") or {}).get(metric) for run in runs]
    if not values or not all(_present(v) for v in values):
        return None
    if not all(math.isfinite(float(v)) for v in values):
        return math.inf  # a diverged seed: the configuration is worst, not unrankable
    return statistics.fmean(float(v) for v in values)


def shared_seeds(groups: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[int] | None:
    """The seeds every group has a run of, sorted; ``None`` if some run records no seed.

    A grid is often searched on one seed and its winner then run on more: comparing the
    winner's mean over three seeds with the others' over one would rank seeds, not
    configurations, so :func:`select_on_validation` compares on these.
    """
    try:
        seed_sets = [{run_seed(run) for run in runs} for runs in groups.values()]
    except ValueError:
        return None
    return sorted(set.intersection(*seed_sets)) if seed_sets else []


def _candidates(
    groups: Mapping[str, Sequence[Mapping[str, Any]]], metric: str
) -> dict[str, Sequence[Mapping[str, Any]]]:
    """The groups that have the validation ``metric`` in every run: those that can be ranked."""
    return {
        label: runs for label, runs in groups.items() if _validation_mean(runs, metric) is not None
    }


def selection_seeds(
    groups: Mapping[str, Sequence[Mapping[str, Any]]], metric: str = "neg_elbo"
) -> list[int] | None:
    """The seeds :func:`select_on_validation` ranks ``groups`` on: those every candidate has
    (:func:`shared_seeds`); ``None`` or ``[]`` when it ranks each group on all its runs."""
    return shared_seeds(_candidates(groups, metric))


def by_dropout_kind(
    groups: Mapping[str, Sequence[Mapping[str, Any]]],
) -> dict[str, dict[str, Sequence[Mapping[str, Any]]]]:
    """``groups`` split by :func:`dropout_kind`, kinds in the order they first appear."""
    kinds: dict[str, dict[str, Sequence[Mapping[str, Any]]]] = {}
    for label, runs in groups.items():
        kinds.setdefault(dropout_kind(runs[0]), {})[label] = runs
    return kinds


def select_on_validation(
    groups: Mapping[str, Sequence[Mapping[str, Any]]], metric: str = "neg_elbo"
) -> str:
    """The group with the lowest mean *validation* value of ``metric`` (never the test's).

    This is how a configuration (a rate, a ``lambda``) is chosen before anything is reported
    on test: the test split chooses nothing, so the test numbers of the chosen configuration
    are an unbiased estimate of what it does on new data.

    The means are over the seeds that every candidate has (:func:`shared_seeds` of the groups
    that have the metric), so that a configuration run on more seeds than the others is
    ranked on the same seeds as they are; over all of each group's runs when the candidates
    share no seed or a run records none.

    Args:
        groups: label -> runs over seeds (as :func:`group_runs` returns).
        metric: key of the runs' ``"valid"`` section; lower is better.

    Returns:
        The chosen label. Ties (equal means) go to the label that sorts first, whatever the
        order of ``groups``. A group is a candidate only if every one of its runs has the
        metric on validation (not None, not NaN); a run with an infinite value (diverged)
        makes its group's mean ``inf``, the worst.

    Raises:
        ValueError: if no group has the metric on validation in every run.
    """
    candidates = _candidates(groups, metric)
    if not candidates:
        raise ValueError(
            f"no group has the validation metric {metric!r} in every run "
            f"(groups: {', '.join(groups) or '-'})"
        )
    seeds = selection_seeds(groups, metric)
    if seeds:
        candidates = {
            label: [run for run in runs if run_seed(run) in seeds]
            for label, runs in candidates.items()
        }
    means = {label: _validation_mean(runs, metric) for label, runs in candidates.items()}
    return min(sorted(means), key=lambda label: means[label])


def select_per_dropout(
    groups: Mapping[str, Sequence[Mapping[str, Any]]], metric: str = "neg_elbo"
) -> dict[str, str]:
    """For each dropout kind (:func:`dropout_kind`), :func:`select_on_validation` among its
    groups.

    Returns:
        dropout kind -> chosen label, kinds in the order they first appear in ``groups``.

    Raises:
        ValueError: naming the kind if none of its groups has the validation metric.
    """
    chosen = {}
    for kind, candidates in by_dropout_kind(groups).items():
        try:
            chosen[kind] = select_on_validation(candidates, metric)
        except ValueError as error:
            raise ValueError(f"{kind}: {error}") from None
    return chosen


def resolve_variant(groups: Mapping[str, Sequence[Mapping[str, Any]]], name: str) -> str:
    """The label of the group that ``name`` means: a label itself, or the one group of that
    dropout kind.

    Raises:
        ValueError: if ``name`` is neither, or several groups have that dropout kind (the
            message lists their labels).
    """
    if name in groups:
        return name
    matches = [label for label, runs in groups.items() if dropout_kind(runs[0]) == name]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ValueError(
            f"no row is {name!r}: pass a dropout kind "
            f"({', '.join(dict.fromkeys(dropout_kind(r[0]) for r in groups.values())) or '-'}) "
            f"or a row label ({', '.join(map(repr, groups)) or '-'})"
        )
    raise ValueError(
        f"{len(matches)} rows are {name!r} ({', '.join(map(repr, sorted(matches)))}): name one "
        "of them"
    )


def comparison_lines(
    runs: Iterable[Mapping[str, Any]],
    metrics: Sequence[str] = ("mutual_information", "kl", "nll_iw"),
) -> list[str]:
    """One :func:`comparison_line` per pair of dropout kinds trained at the same settings.

    Runs are grouped by :func:`group_runs` (their identity); adversarial is compared with
    uniform at the same rate, and each with no dropout, paired by seed, when the two groups
    agree on every other setting they both have (a run without an adversary has none of its
    settings).

    Args:
        runs: metrics of finished runs (``model``, ``dropout``, ``rate``, ``seed``, ``test``,
            and ``config``).
        metrics: the differences to print.
    """
    groups = group_runs(runs)
    names = {label: _short_name(group[0]) for label, group in groups.items()}
    several = {name for name in names.values() if list(names.values()).count(name) > 1}
    names = {label: label if name in several else name for label, name in names.items()}
    lines = []
    for kind_a, kind_b in (
        ("adversarial", "uniform"),
        ("adversarial", "none"),
        ("uniform", "none"),
    ):
        for label_a, a in groups.items():
            for label_b, b in groups.items():
                if (a[0]["dropout"], b[0]["dropout"]) != (kind_a, kind_b):
                    continue
                if kind_b != "none" and a[0]["rate"] != b[0]["rate"]:
                    continue
                if not _comparable(a[0], b[0]):
                    continue
                differences = paired_differences(a, b, metrics)
                lines.append(comparison_line(names[label_a], names[label_b], differences))
    return lines


def _short_name(run: Mapping[str, Any]) -> str:
    return run["dropout"] if run["dropout"] == "none" else f"{run['dropout']} [{run['rate']}]"


# What tells the dropout kinds apart, so not compared between them.
_DROPOUT_SETTINGS = frozenset({"model_dropout", "rate", "relaxation_options"})


def _comparable(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two runs of other dropout kinds share every other setting they both have."""
    settings_a, settings_b = run_settings(a), run_settings(b)
    shared = (settings_a.keys() & settings_b.keys()) - _DROPOUT_SETTINGS
    return all(settings_a[name] == settings_b[name] for name in shared)


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


def print_results(
    console: Console,
    runs: Sequence[Mapping[str, Any]],
    title: str,
    probe_labels: Mapping[str, Tensor] | None = None,
    runs_dir: str | Path | None = None,
) -> None:
    """What a recipe prints at the end: the table, its legend, each paired comparison (see
    :func:`comparison_lines`) and, with ``runs_dir``, where the runs are and how to tabulate
    them again.

    Args:
        console: where to print.
        runs: the runs' metrics.
        title: the table's title.
        probe_labels: factor name -> (N,) int64 test labels of the probed factors; the legend
            gives each probe's chance level, the share of the most frequent label.
        runs_dir: the folder of the run folders.
    """
    chance = {
        name: float(labels.bincount().max()) / len(labels)
        for name, labels in sorted((probe_labels or {}).items())
    }
    table = results_table(runs, title=title)
    print_table(console, table)
    console.print(results_legend([str(c.header) for c in table.columns], chance), highlight=False)
    for line in comparison_lines(runs):
        console.print(line, highlight=False)
    if runs_dir is not None:
        console.print(
            f"runs in {runs_dir}/ (one folder per variant and seed); "
            f"tabulate them again with: python recipes/compare.py {runs_dir}/*/",
            highlight=False,
        )


def validation_line(metrics: Mapping[str, Any]) -> str:
    """``"-ELBO 39.14 KL 0.63 MI 0.62 AU 3"``: an evaluation in one line (the training log)."""
    return (
        f"-ELBO {metrics['neg_elbo']:.2f} KL {metrics['kl']:.2f} "
        f"MI {metrics['mutual_information']:.2f} AU {metrics['active_units']}"
    )


def run_line(run: Mapping[str, Any]) -> str:
    """``"synthetic uniform [0.4] seed 1: test -ELBO 37.2 ..."``: a finished run in one line."""
    return f"{run['model']} seed {run_seed(run)}: test {validation_line(run['test'])}"
