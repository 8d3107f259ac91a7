"""The names of the evaluation metrics: one table, read by the tables, the legend and the lines.

Each metric of a run's ``metrics.json`` (a key of its ``"test"`` or ``"valid"`` section) has a
column title for tables, a short name for one-line sentences (``"NLL_IW -0.11 (se 0.04)"``: no
parentheses, which would read as the standard error's) and, where it is a column, the meaning
that the legend prints under a table.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["COLUMNS", "LEGEND", "METRICS", "MetricName", "short_name"]


@dataclass(frozen=True)
class MetricName:
    """How one metric is written.

    Attributes:
        title: column title of :func:`.results_table`.
        short: name in a sentence (:func:`~advmask.seqvae.report.selection.comparison_line`).
        meaning: what it measures and which direction is better (the legend); None for a
            metric that is no column of the results table.
    """

    title: str
    short: str
    meaning: str | None = None


METRICS: dict[str, MetricName] = {
    "ppl_iw": MetricName(
        "PPL (IW)",
        "PPL_IW",
        "perplexity per word + EOS from the importance-weighted NLL (lower is better)",
    ),
    "ppl_elbo": MetricName(
        "PPL (ELBO)", "PPL_ELBO", "the same from the -ELBO, an upper bound (lower is better)"
    ),
    "nll_iw": MetricName(
        "NLL (IW)",
        "NLL_IW",
        "importance-weighted negative log-likelihood per sentence, nats (lower is better)",
    ),
    "neg_elbo": MetricName(
        "-ELBO", "-ELBO", "negative evidence lower bound per sentence, nats (lower is better)"
    ),
    "kl": MetricName(
        "KL",
        "KL",
        "KL(q(z|x) || p(z)) per sentence, nats: what z is charged for (0 = collapse)",
    ),
    "mutual_information": MetricName(
        "MI",
        "MI",
        "mutual information I(x; z) under q, nats: how much z tells about x (higher = less "
        "collapse; at most the ceiling in the caption)",
    ),
    "active_units": MetricName(
        "AU",
        "AU",
        "active units: latent dimensions whose posterior mean varies over x (higher = less "
        "collapse)",
    ),
    "pieces_per_word": MetricName(
        "pieces/word", "pieces/word", "sentencepiece pieces per word of the raw text"
    ),
    "reconstruction": MetricName("REC", "REC"),
}
"""Key in a run's ``metrics.json`` -> its names; the results table's columns in this order."""

COLUMNS: tuple[tuple[str, str], ...] = tuple(
    (key, name.title) for key, name in METRICS.items() if name.meaning is not None
)
"""(key in a run's ``"test"`` section, column title) of the results table, in order."""

LEGEND: dict[str, str] = {
    name.title: name.meaning for name in METRICS.values() if name.meaning is not None
}
"""Column title -> what the column means and which direction is better."""


def short_name(key: str) -> str:
    """The name of metric ``key`` in a sentence; an unknown key is written as it is."""
    return METRICS[key].short if key in METRICS else key
