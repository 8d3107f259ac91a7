"""The fair protocol: configurations chosen on validation, differences paired by seed.

Each variant's configuration (a rate, a ``lambda``) is chosen on validation
(:func:`select_on_validation`), and the chosen ones are compared on test by their differences
paired by seed (:func:`paired_differences`, :func:`comparison_line`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from advmask.seqvae.identity import run_settings
from advmask.seqvae.report.names import short_name
from advmask.seqvae.report.runs import by_dropout_kind, dropout_kind, group_runs, run_seed

__all__ = [
    "PairedDifference",
    "comparison_line",
    "comparison_lines",
    "paired_differences",
    "resolve_variant",
    "select_on_validation",
    "select_per_dropout",
    "selection_seeds",
    "shared_seeds",
]


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
    are matched by their seed (:func:`.run_seed`), never by their position in the lists; seeds
    that only one variant has are left out (``seeds`` of the result says which were paired).

    Args:
        runs_a: runs (``metrics.json`` contents as :func:`.load_runs` returns them, with a
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
    parts = [f"{short_name(metric)} {differences[metric]}" for metric in shown]
    num_pairs = differences[shown[0]].num_pairs  # the same seeds for every metric
    seeds = f"over {num_pairs} seeds" if num_pairs > 1 else "(1 seed, no se)"
    return f"{name_a} vs {name_b}: {', '.join(parts)} {units} {seeds}"


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
        groups: label -> runs over seeds (as :func:`.group_runs` returns).
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
    """For each dropout kind (:func:`.dropout_kind`), :func:`select_on_validation` among its
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

    Runs are grouped by :func:`.group_runs` (their identity); adversarial is compared with
    uniform at the same rate, and each with no dropout, paired by seed, when the two groups
    agree on every other setting they both have (a run without an adversary has none of its
    settings).

    Args:
        runs: metrics of finished runs (``model``, ``dropout``, ``rate``, ``seed``, ``test``,
            and ``config``).
        metrics: the differences to print.
    """
    groups = group_runs(runs)
    names = {label: _variant_name(group[0]) for label, group in groups.items()}
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


def _variant_name(run: Mapping[str, Any]) -> str:
    return run["dropout"] if run["dropout"] == "none" else f"{run['dropout']} [{run['rate']}]"


# What tells the dropout kinds apart, so not compared between them.
_DROPOUT_SETTINGS = frozenset({"model_dropout", "rate", "relaxation_options"})


def _comparable(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two runs of other dropout kinds share every other setting they both have."""
    settings_a, settings_b = run_settings(a), run_settings(b)
    shared = (settings_a.keys() & settings_b.keys()) - _DROPOUT_SETTINGS
    return all(settings_a[name] == settings_b[name] for name in shared)
