"""The paired comparisons of the results page: which committed runs, and their differences.

Each :class:`Comparison` names the run folders of A and B under ``docs/results`` seed by seed;
:func:`paired` reads their ``metrics.json`` and returns the mean difference with its standard
error and 95% t-interval. ``python docs/results/make_figures.py`` prints these rows
(:func:`print_summary`) and draws them; this module holds the data and the arithmetic.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

RESULTS = Path(__file__).resolve().parent
"""The folder of the committed runs (``docs/results``)."""

# Two-sided 95% quantiles of Student's t by degrees of freedom (seeds - 1).
T_95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776}


@dataclass(frozen=True)
class Comparison:
    """A - B paired by seed.

    Attributes:
        corpus: the study's corpus, as the page names it.
        label: ``"A - B, setting"``.
        a: the run folders of A under ``docs/results``, one per seed.
        b: those of B, in the same seed order.
        chosen: whether the configurations were chosen on the validation split (``"yes"``),
            and if not, why they were run; the letters point to the notes under the page's
            table.
    """

    corpus: str
    label: str
    a: tuple[str, ...]
    b: tuple[str, ...]
    chosen: str


def _pair(
    corpus: str, label: str, a: str, b: str, chosen: str, seeds: Sequence[int] = (0, 1, 2)
) -> Comparison:
    """The runs ``a.format(seed)`` against ``b.format(seed)`` over ``seeds``."""
    return Comparison(
        corpus,
        label,
        tuple(a.format(s) for s in seeds),
        tuple(b.format(s) for s in seeds),
        chosen,
    )


SYN, SNLI, PTB, PTB_3K = "synthetic", "SNLI carve-out", "PTB, 10k sentences", "PTB, 3k sentences"
SNLI_IN0 = "SNLI, no emb. dropout"
PTB_ADAM = "PTB, all, Adam"
ADAM_NONE, ADAM_UNIFORM = "ptb-adam/none-seed{}", "ptb-adam/uniform-seed{}"
ADAM_AWD = "ptb-adam/adversarial-lambda10-seed{}"
"""The Adam study's run folders (seeds 0-2); its AWD is the validation-chosen lambda 10."""
SEEDS, FIVE = (0, 1, 2), (0, 1, 2, 3, 4)
PRESET = "no (preset lambda)"
VALIDATION = "yes"
COMPARISONS: tuple[Comparison, ...] = (
    # The study out of posterior collapse leads the page; lambda 10 was chosen on seed 0's
    # validation -ELBO (against lambda 1), seeds 1-2 follow it.
    _pair(
        PTB_ADAM,
        "AWD (lambda 10) - uniform, rate 0.4",
        ADAM_AWD,
        ADAM_UNIFORM,
        "yes (lambda)",
    ),
    _pair(
        PTB_ADAM,
        "uniform - none, rate 0.4",
        ADAM_UNIFORM,
        ADAM_NONE,
        "no (paper's rate)",
    ),
    _pair(
        PTB_ADAM,
        "AWD (lambda 10) - none, rate 0.4",
        ADAM_AWD,
        ADAM_NONE,
        "yes (lambda)",
    ),
    _pair(
        SYN,
        "AWD - uniform, rate 0.4",
        "synthetic/adversarial-seed{}",
        "synthetic/uniform-seed{}",
        "no (demo settings)",
    ),
    _pair(
        SYN,
        "AWD - none, rate 0.4",
        "synthetic/adversarial-seed{}",
        "synthetic/none-seed{}",
        "no (demo settings)",
    ),
    _pair(
        SYN,
        "uniform - none, rate 0.4",
        "synthetic/uniform-seed{}",
        "synthetic/none-seed{}",
        "no (demo settings)",
    ),
    _pair(
        SNLI,
        "AWD (lambda 0.1) - uniform, rate 0.4",
        "snli-carve/adversarial-seed{}",
        "snli-carve/uniform-seed{}",
        PRESET,
    ),
    _pair(
        SNLI,
        "uniform - none, rate 0.4",
        "snli-carve/uniform-seed{}",
        "snli-carve/none-seed{}",
        "no (paper's rate)",
    ),
    _pair(
        SNLI,
        "AWD (lambda 0.1) - none, rate 0.4",
        "snli-carve/adversarial-seed{}",
        "snli-carve/none-seed{}",
        PRESET,
    ),
    _pair(
        SNLI,
        "AWD (lambda 10) - uniform, rate 0.2",
        "snli-carve/adversarial-rate0.2-lambda10-seed{}",
        "snli-carve/uniform-rate0.2-seed{}",
        VALIDATION,
    ),
    _pair(
        SNLI,
        "uniform - none, rate 0.2",
        "snli-carve/uniform-rate0.2-seed{}",
        "snli-carve/none-seed{}",
        "yes (rate)",
    ),
    _pair(
        SNLI,
        "AWD (lambda 10) - none, rate 0.2",
        "snli-carve/adversarial-rate0.2-lambda10-seed{}",
        "snli-carve/none-seed{}",
        VALIDATION,
    ),
    _pair(
        SNLI,
        "AWD (lambda 10) - uniform, rate 0.3",
        "snli-carve/adversarial-rate0.3-lambda10-seed{}",
        "snli-carve/uniform-rate0.3-seed{}",
        "no (a)",
        FIVE,
    ),
    _pair(
        SNLI_IN0,
        "AWD (lambda 1) - uniform, rate 0.3",
        "snli-carve-dropout-in0/adversarial-seed{}",
        "snli-carve-dropout-in0/uniform-seed{}",
        "no (b)",
    ),
    _pair(
        SNLI_IN0,
        "uniform: without - with emb. dropout, rate 0.3",
        "snli-carve-dropout-in0/uniform-seed{}",
        "snli-carve/uniform-rate0.3-seed{}",
        "no (demo setting)",
    ),
    _pair(
        PTB,
        "AWD (lambda 1) - uniform, rate 0.4",
        "ptb-10k/adversarial-seed{}",
        "ptb-10k/uniform-seed{}",
        PRESET,
    ),
    _pair(
        PTB,
        "uniform - none, rate 0.4",
        "ptb-10k/uniform-seed{}",
        "ptb-10k/none-seed{}",
        "no (paper's rate)",
    ),
    _pair(
        PTB,
        "AWD (lambda 1) - none, rate 0.4",
        "ptb-10k/adversarial-seed{}",
        "ptb-10k/none-seed{}",
        PRESET,
    ),
    _pair(
        PTB,
        "AWD (lambda 10) - uniform, rate 0.2",
        "ptb-10k/adversarial-rate0.2-lambda10-seed{}",
        "ptb-10k/uniform-rate0.2-seed{}",
        VALIDATION,
    ),
    _pair(
        PTB,
        "AWD (lambda 1) - uniform, rate 0.2",
        "ptb-10k/adversarial-rate0.2-seed{}",
        "ptb-10k/uniform-rate0.2-seed{}",
        "rate only (c)",
    ),
    _pair(
        PTB,
        "uniform - none, rate 0.2",
        "ptb-10k/uniform-rate0.2-seed{}",
        "ptb-10k/none-seed{}",
        "yes (rate)",
    ),
    _pair(
        PTB,
        "AWD (lambda 10) - none, rate 0.2",
        "ptb-10k/adversarial-rate0.2-lambda10-seed{}",
        "ptb-10k/none-seed{}",
        VALIDATION,
    ),
    _pair(
        PTB,
        "AWD (lambda 1) - none, rate 0.2",
        "ptb-10k/adversarial-rate0.2-seed{}",
        "ptb-10k/none-seed{}",
        "rate only (c)",
    ),
    _pair(
        PTB_3K,
        "beta-VAE 0.5 - annealing",
        "ptb-3k-baselines/none-beta-vae0.5-seed{}",
        "ptb-3k-baselines/none-seed{}",
        "no (not tuned)",
        (0, 1),
    ),
    _pair(
        PTB_3K,
        "free bits 0.1 - annealing",
        "ptb-3k-baselines/none-free-bits0.1-seed{}",
        "ptb-3k-baselines/none-seed{}",
        "no (not tuned)",
        (0, 1),
    ),
    _pair(
        PTB_3K,
        "FBP 0.1 - annealing",
        "ptb-3k-baselines/none-fbp0.1-seed{}",
        "ptb-3k-baselines/none-seed{}",
        "no (not tuned)",
        (0, 1),
    ),
)
"""Every paired comparison of the results page that has committed runs."""


@dataclass(frozen=True)
class Difference:
    """Mean of A - B over seeds, its standard error and 95% t-interval, for one metric."""

    mean: float
    se: float
    low: float
    high: float


def paired(comparison: Comparison, key: str, split: str = "test") -> Difference:
    """The paired difference of one metric; ``se`` is the sample std over seeds / sqrt(n)."""
    values = []
    for run_a, run_b in zip(comparison.a, comparison.b, strict=True):
        a = json.loads((RESULTS / run_a / "metrics.json").read_text())
        b = json.loads((RESULTS / run_b / "metrics.json").read_text())
        if a["seed"] != b["seed"]:
            raise ValueError(f"{run_a} and {run_b} are not the same seed")
        values.append(a[split][key] - b[split][key])
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values))
    half = T_95[len(values) - 1] * se
    return Difference(mean, se, mean - half, mean + half)


def print_summary(comparisons: Sequence[Comparison]) -> None:
    """The rows of the page's summary table, as reStructuredText list-table rows.

    Each difference is "d (se)"; the 95% t-interval of each follows in brackets.
    """
    for comparison in comparisons:
        cells = [comparison.corpus, comparison.label, str(len(comparison.a))]
        for key in ("neg_elbo", "mutual_information", "kl"):
            d = paired(comparison, key)
            cells.append(f"{d.mean:+.2f} ({d.se:.2f}) [{d.low:+.2f}, {d.high:+.2f}]")
        cells.append(comparison.chosen)
        print("   * - " + "\n     - ".join(cells))


STUDY_METRICS = (
    ("ppl_iw", "PPL (IW)"),
    ("nll_iw", "NLL (IW)"),
    ("neg_elbo", "-ELBO"),
    ("kl", "KL"),
    ("mutual_information", "MI"),
    ("active_units", "AU"),
)
"""(key in ``metrics.json``'s test split, column title) of the page's leading table."""

ADAM_VARIANTS = {"none": ADAM_NONE, "uniform [0.4]": ADAM_UNIFORM, "AWD [0.4], lambda 10": ADAM_AWD}
"""The Adam study's variants: label to run folder pattern."""


def print_study_table(variants: dict[str, str], seeds: Sequence[int] = SEEDS) -> None:
    """The rows of the page's leading table: each metric's mean (std) over seeds, test split."""
    for label, pattern in variants.items():
        folders = [RESULTS / pattern.format(seed) for seed in seeds]
        runs = [json.loads((folder / "metrics.json").read_text()) for folder in folders]
        cells = [label, str(len(runs))]
        for key, _ in STUDY_METRICS:
            values = [run["test"][key] for run in runs]
            std = statistics.stdev(values) if len(values) > 1 else float("nan")
            digits = 1 if key == "active_units" else 2
            cells.append(f"{statistics.fmean(values):.{digits}f} ({std:.{digits}f})")
        print("   * - " + "\n     - ".join(cells))
