"""Figures of the analyses (PNG and SVG), drawn with matplotlib, an optional extra.

Install it with ``pip install -e ".[plot]"``. matplotlib is imported when a figure is drawn, not
with :mod:`advmask.seqvae.analysis`, and always with the non-interactive ``Agg`` backend (no display
needed). Each function writes one file per requested format and returns their paths.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from advmask.seqvae.analysis.aggregate import DropProfile
from advmask.seqvae.analysis.pmi import PMISummary
from advmask.seqvae.analysis.studies import ABLATION_METRICS, AblationPoint

FORMATS: tuple[str, ...] = ("png", "svg")
"""File formats written by default."""


def pyplot() -> Any:
    """``matplotlib.pyplot`` with the non-interactive ``Agg`` backend selected.

    Returns:
        The ``matplotlib.pyplot`` module.

    Raises:
        ImportError: if matplotlib (the ``plot`` extra) is not installed, saying how to get it.
    """
    # Imported here, not at the top: matplotlib is an optional extra, and importing
    # advmask.seqvae.analysis must work without it.
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError(
            'plotting needs matplotlib, an optional extra: pip install -e ".[plot]" '
            '(or pip install "matplotlib>=3.7")'
        ) from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(
    figure: Any, stem: str | os.PathLike[str], formats: Sequence[str] = FORMATS
) -> list[Path]:
    """Write ``figure`` once per format as ``stem.<format>``, then close it.

    Args:
        figure: a ``matplotlib.figure.Figure``.
        stem: output path without extension; missing parent folders are created.
        formats: a non-empty subset of :data:`FORMATS`.

    Returns:
        The written paths, in the order of ``formats``.

    Raises:
        ValueError: if ``formats`` is empty or names an unknown format.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"formats must be a non-empty subset of {FORMATS}, got {list(formats)}")
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for extension in formats:
        path = stem.with_name(f"{stem.name}.{extension}")
        figure.savefig(path, dpi=150, bbox_inches="tight")
        paths.append(path)
    pyplot().close(figure)
    return paths


def plot_drop_profiles(
    profiles: Sequence[DropProfile],
    stem: str | os.PathLike[str],
    *,
    title: str = "What the adversary drops",
    formats: Sequence[str] = FORMATS,
) -> list[Path]:
    """Bar charts of mean ``P(dropped)`` per group, one panel per profile (paper Figure 4a).

    The dashed line in each bar is what uniform dropout would give the same tokens.

    Args:
        profiles: from :func:`~advmask.seqvae.analysis.drop_by_frequency` and
            :func:`~advmask.seqvae.analysis.drop_by_position`.
        stem: output path without extension (``.../dropped`` writes ``dropped.png``, ...).
        title: figure title.
        formats: a subset of :data:`FORMATS`.

    Returns:
        The written paths.
    """
    plt = pyplot()
    figure, axes = plt.subplots(1, len(profiles), figsize=(5.5 * len(profiles), 3.8), squeeze=False)
    for axis, profile in zip(axes[0], profiles, strict=True):
        positions = list(range(len(profile.labels)))
        axis.bar(positions, profile.probability.tolist(), color="#c0392b", label="adversarial")
        axis.hlines(
            profile.uniform.tolist(),
            [p - 0.4 for p in positions],
            [p + 0.4 for p in positions],
            colors="black",
            linestyles="dashed",
            linewidth=1.5,
            zorder=3,
            label="uniform (same tokens)",
        )
        # Head room above the bars for the legend.
        top = max(profile.probability.max().item(), profile.uniform.max().item())
        axis.set_ylim(0, 1.3 * top if top > 0 else 1)
        # Long or many labels collide when horizontal (frequency bins like "1001-10000").
        crowded = (
            len(positions) > 8 or max(map(len, profile.labels), default=0) * len(positions) > 40
        )
        axis.set_xticks(
            positions,
            profile.labels,
            rotation=45 if crowded else 0,
            ha="right" if crowded else "center",
        )
        axis.set_xlabel(profile.title)
        axis.set_ylabel("mean P(dropped)")
        for position, count in zip(positions, profile.count.tolist(), strict=True):
            axis.annotate(
                f"{count}",
                (position, 0),
                ha="center",
                va="bottom",
                fontsize=6,
                rotation=90 if len(positions) > 8 else 0,
            )
        axis.legend(fontsize=8, loc="upper right", ncol=2)
    figure.suptitle(title)
    return save_figure(figure, stem, formats)


def plot_lambda_study(
    logs: Mapping[str, Mapping[str, Sequence[float]]],
    stem: str | os.PathLike[str],
    *,
    formats: Sequence[str] = FORMATS,
) -> list[Path]:
    """The adversary's score statistics during training, one line per run (paper Figure 3).

    Args:
        logs: run label (for example ``"lambda = 1"``) to the columns of its ``scores.csv``
            (see :func:`~advmask.seqvae.analysis.read_score_log`).
        stem: output path without extension.
        formats: a subset of :data:`FORMATS`.

    Returns:
        The written paths.
    """
    plt = pyplot()
    panels = (
        ("score_l1", "mean l1 norm of score means"),
        ("score_std", "mean score std"),
        ("adversary_grad_norm", "adversary gradient norm"),
    )
    figure, axes = plt.subplots(1, len(panels), figsize=(15, 3.8))
    for axis, (column, label) in zip(axes, panels, strict=True):
        for run_label, columns in logs.items():
            axis.plot(columns["step"], columns[column], label=run_label)
        axis.set_xlabel("training step")
        axis.set_ylabel(label)
    axes[0].legend(fontsize=8)
    figure.suptitle("Adversary's scores during training")
    return save_figure(figure, stem, formats)


def plot_rate_ablation(
    points: Sequence[AblationPoint],
    stem: str | os.PathLike[str],
    *,
    title: str = "Rate ablation (mean and std over seeds)",
    formats: Sequence[str] = FORMATS,
) -> list[Path]:
    """-ELBO, KL and MI against the rate, one line per dropout kind, std over seeds as error
    bars (paper Figure 2).

    Args:
        points: from :func:`~advmask.seqvae.analysis.rate_ablation`.
        stem: output path without extension.
        title: figure title (say which split and seeds the points summarise).
        formats: a subset of :data:`FORMATS`.

    Returns:
        The written paths.
    """
    plt = pyplot()
    figure, axes = plt.subplots(1, len(ABLATION_METRICS), figsize=(15, 3.8))
    kinds = sorted({point.dropout for point in points})
    for axis, (key, label) in zip(axes, ABLATION_METRICS, strict=True):
        for kind in kinds:
            series = [p for p in points if p.dropout == kind and key in p.metrics]
            if not series:
                continue
            axis.errorbar(
                [p.rate for p in series],
                [p.metrics[key].mean for p in series],
                yerr=[p.metrics[key].std for p in series],
                marker="o",
                capsize=3,
                label=kind,
            )
        axis.set_xlabel("word-dropout rate")
        axis.set_ylabel(label)
    axes[0].legend(fontsize=8)
    figure.suptitle(title)
    return save_figure(figure, stem, formats)


def plot_pmi(
    pmi: Tensor,
    drop_probability: Tensor | None,
    summary: PMISummary,
    stem: str | os.PathLike[str],
    *,
    quantity: str = "next-word PMI",
    title: str | None = None,
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """PMI against the drop probability: the inputs as points, binned means with error bars.

    Without drop probabilities (a model without word dropout) a histogram of the PMI. Needs
    matplotlib (an optional extra, see :mod:`advmask.seqvae.analysis.plots`).

    Args:
        pmi: (N,) float PMI of the pooled inputs (nats).
        drop_probability: (N,) float their ``P(dropped)``, or None.
        summary: from :func:`~advmask.seqvae.analysis.pmi.summarize_pmi` on the same values.
        stem: output path without extension.
        quantity: what ``pmi`` is, for the axis (``"next-word PMI"`` or ``"sentence PMI"``,
            the values of :func:`~advmask.seqvae.analysis.pmi.next_word_pmi` or
            :func:`~advmask.seqvae.analysis.pmi.sentence_pmi`); in nats.
        title: figure title; None: ``"<quantity> of the decoder inputs"``.
        formats: a subset of :data:`advmask.seqvae.analysis.plots.FORMATS`.

    Returns:
        The written paths.
    """
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    values = pmi.double().cpu()
    if drop_probability is None:
        axis.hist(values.tolist(), bins=40, color="#7f8c8d")
        axis.axvline(summary.mean_pmi_uniform, color="black", linestyle="dashed", label="mean")
        axis.set_xlabel(f"{quantity} (nats)")
        axis.set_ylabel("inputs")
        axis.legend(fontsize=8)
    else:
        p = drop_probability.double().cpu()
        axis.scatter(p.tolist(), values.tolist(), s=4, alpha=0.25, color="#7f8c8d", label="inputs")
        centres = [(b.low + b.high) / 2 for b in summary.bins]
        axis.errorbar(
            centres,
            [b.mean_pmi for b in summary.bins],
            yerr=[b.standard_error or 0.0 for b in summary.bins],
            color="#c0392b",
            marker="o",
            capsize=3,
            label="binned mean (± s.e.)",
        )
        axis.axhline(
            summary.mean_pmi_uniform,
            color="black",
            linestyle="dashed",
            linewidth=1,
            label="mean (uniform dropout)",
        )
        axis.set_xlabel("P(dropped)")
        axis.set_ylabel(f"{quantity} (nats)")
        axis.legend(fontsize=8)
        if summary.spearman is not None:
            axis.set_title(f"Spearman {summary.spearman:.3f}", fontsize=9)
    if title is None:
        title = f"{quantity[:1].upper()}{quantity[1:]} of the decoder inputs"
    figure.suptitle(title)
    return save_figure(figure, stem, formats)
