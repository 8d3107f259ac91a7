"""Draw the figures of the results page from the run files committed under ``docs/results/``.

Usage (from the repository root; needs matplotlib, ``pip install -e ".[plot]"``)::

    python docs/results/make_figures.py                  # writes docs/results/figures/*.png
    python docs/results/make_figures.py --out /tmp/figs  # somewhere else

Each figure reads committed files only: ``log.csv`` (validation rows, one per epoch),
``pmi.json`` (mean next-word PMI per bin of drop probability), ``dropped.json`` (drop
probability by word-frequency rank and position) and ``metrics.json``. The script also prints
the paired differences of ``comparisons.COMPARISONS``, the numbers of the page's summary table.
The output is deterministic: no randomness, a fixed matplotlib style, PNG without a timestamp.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# The page's comparisons live beside this script (its folder is on sys.path when it runs).
from comparisons import (
    ADAM_AWD,
    ADAM_VARIANTS,
    COMPARISONS,
    FIVE,
    PTB_ADAM,
    SEEDS,
    Comparison,
    paired,
    print_study_table,
    print_summary,
)

from advmask.seqvae.analysis import rate_ablation
from advmask.seqvae.analysis.plots import plot_rate_ablation, pyplot, save_figure

RESULTS = Path(__file__).resolve().parent
"""The folder of the committed runs (``docs/results``)."""

FIGURES = RESULTS / "figures"
"""Where the page's figures are written by default."""

FORMATS = ("png",)
"""One format: the PNGs are smaller than the SVGs and the page shows them."""

METRICS = (("neg_elbo", "-ELBO (nats)"), ("kl", "KL (nats)"), ("mutual_information", "MI (nats)"))
"""(key in a ``log.csv`` or ``metrics.json`` row, axis title) of the learning curves."""

MIN_BIN_COUNT = 30
"""PMI bins with fewer inputs than this are left out (their standard errors are huge)."""


def read_validation_curve(run: Path) -> dict[str, list[float]]:
    """The validation rows of a run's ``log.csv``, one per epoch, as float columns.

    Returns:
        ``"epoch"`` and each key of :data:`METRICS` to a list over epochs.

    Raises:
        FileNotFoundError: naming the missing ``log.csv``.
    """
    path = run / "log.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: only some committed runs have a log")
    with path.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == "valid"]
    keys = ("epoch", *(key for key, _ in METRICS))
    return {key: [float(row[key]) for row in rows] for key in keys}


def plot_learning_curves(
    runs: Mapping[str, Path], stem: Path, *, title: str, log_scale: bool = False
) -> list[Path]:
    """Validation -ELBO, KL and MI after each epoch, one line per run.

    Args:
        runs: legend label to run folder (holding ``log.csv``).
        stem: output path without extension.
        title: figure title.
        log_scale: logarithmic -ELBO and KL axes (for runs that diverge).

    Returns:
        The written paths.
    """
    plt = pyplot()
    figure, axes = plt.subplots(1, len(METRICS), figsize=(13, 3.6))
    for label, run in runs.items():
        curve = read_validation_curve(run)
        for axis, (key, _) in zip(axes, METRICS, strict=True):
            axis.plot(curve["epoch"], curve[key], marker="o", markersize=3, label=label)
    for axis, (key, axis_title) in zip(axes, METRICS, strict=True):
        axis.set_xlabel("epoch")
        axis.xaxis.get_major_locator().set_params(integer=True)
        axis.set_ylabel(f"validation {axis_title}")
        if log_scale and key != "mutual_information":
            axis.set_yscale("log")
    axes[-1].legend(fontsize=7, loc="best")
    figure.suptitle(title)
    return save_figure(figure, stem, FORMATS)


def plot_pmi_by_drop_probability(
    panels: Mapping[str, Mapping[str, Sequence[Path]]], stem: Path
) -> list[Path]:
    """Mean next-word PMI per bin of drop probability (``pmi.json``), one panel per corpus.

    Args:
        panels: panel title to (legend label to the runs of one configuration, one line per
            seed, all in the configuration's colour).
        stem: output path without extension.

    Returns:
        The written paths.
    """
    plt = pyplot()
    figure, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4), squeeze=False)
    for axis, (panel_title, configurations) in zip(axes[0], panels.items(), strict=True):
        for index, (label, runs) in enumerate(configurations.items()):
            colour = f"C{index}"
            for seed_index, run in enumerate(runs):
                summary = json.loads((run / "pmi.json").read_text())
                bins = [b for b in summary["by_drop_probability"] if b["count"] >= MIN_BIN_COUNT]
                axis.errorbar(
                    [(b["low"] + b["high"]) / 2 for b in bins],
                    [b["mean_pmi"] for b in bins],
                    yerr=[b["standard_error"] or 0.0 for b in bins],
                    color=colour,
                    marker="o",
                    markersize=3,
                    capsize=2,
                    linewidth=1,
                    alpha=0.85,
                    label=f"{label} ({len(runs)} seed{'s' if len(runs) > 1 else ''})"
                    if seed_index == 0
                    else None,
                )
        axis.set_xlabel("drop probability (bin centre)")
        axis.set_ylabel("mean next-word PMI (nats) ± s.e.")
        axis.set_xlim(0, 1)
        axis.set_title(panel_title, fontsize=10)
        axis.legend(fontsize=7, loc="upper left")
    figure.suptitle(f"Which inputs the adversary drops (test inputs, bins of >= {MIN_BIN_COUNT})")
    return save_figure(figure, stem, FORMATS)


def plot_drop_by_frequency(
    panels: Mapping[str, Mapping[str, Sequence[Path]]], stem: Path
) -> list[Path]:
    """Drop probability over the rate by word-frequency rank and for the first word.

    A value of 1 is uniform dropout's (each input dropped with probability ``rate``).

    Args:
        panels: panel title to (legend label to the runs of one configuration, one line per
            seed, all in the configuration's colour); each run holds ``dropped.json`` and
            ``metrics.json`` (for the rate).
        stem: output path without extension.

    Returns:
        The written paths.
    """
    plt = pyplot()
    figure, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4), squeeze=False)
    for axis, (panel_title, configurations) in zip(axes[0], panels.items(), strict=True):
        labels: list[str] = []
        for index, (label, runs) in enumerate(configurations.items()):
            for seed_index, run in enumerate(runs):
                dropped = json.loads((run / "dropped.json").read_text())
                rate = json.loads((run / "metrics.json").read_text())["rate"]
                groups = [*dropped["word frequency rank"], dropped["position in sentence"][0]]
                labels = [g["group"] for g in groups[:-1]] + ["first word"]
                axis.plot(
                    range(len(groups)),
                    [g["probability"] / rate for g in groups],
                    color=f"C{index}",
                    marker="o",
                    markersize=3,
                    linewidth=1,
                    alpha=0.85,
                    label=f"{label} ({len(runs)} seed{'s' if len(runs) > 1 else ''})"
                    if seed_index == 0
                    else None,
                )
        axis.axhline(1.0, color="black", linestyle="dashed", linewidth=1, label="uniform dropout")
        axis.set_xticks(range(len(labels)), labels)
        axis.set_xlabel("word frequency rank (training split)")
        axis.set_ylabel("P(dropped) / rate")
        axis.set_title(panel_title, fontsize=10)
        axis.legend(fontsize=7, loc="upper right")
    figure.suptitle("What the adversary drops, relative to uniform dropout (test split)")
    return save_figure(figure, stem, FORMATS)


def load_grid(folder: Path, seed: int) -> list[dict[str, Any]]:
    """``metrics.json`` of the runs of one seed in ``folder``, adversaries labelled by lambda."""
    runs = []
    for path in sorted(folder.glob("*/metrics.json")):
        run = json.loads(path.read_text())
        if run["seed"] != seed:
            continue
        if run["dropout"] == "adversarial":
            config = json.loads((path.parent / "config.json").read_text())
            run["dropout"] = f"adversarial, lambda {config['kl_weight']:g}"
        runs.append(run)
    return runs


def plot_rate_grid(folder: Path, stem: Path, *, corpus: str) -> list[Path]:
    """Validation -ELBO, KL and MI of seed 0 against the rate: the grid validation chose from.

    Uses :func:`~advmask.seqvae.analysis.rate_ablation` and
    :func:`~advmask.seqvae.analysis.plots.plot_rate_ablation`; no dropout is the point at 0.
    """
    # One ablation per curve: rate_ablation refuses runs that differ in lambda, which the
    # grid's adversaries do (each lambda is a curve of its own, labelled by load_grid).
    curves: dict[str, list[dict[str, Any]]] = {}
    for run in load_grid(folder, seed=0):
        curves.setdefault(run["dropout"], []).append(run)
    points = [point for runs in curves.values() for point in rate_ablation(runs, split="valid")]
    title = f"{corpus}: rate grid, validation split, seed 0 (one run per point)"
    return plot_rate_ablation(points, stem, title=title, formats=FORMATS)


def plot_paired_differences(comparisons: Sequence[Comparison], stem: Path) -> list[Path]:
    """d(-ELBO) and d(MI) of each comparison with its 95% t-interval (test split)."""
    plt = pyplot()
    panels = (
        ("neg_elbo", "d(-ELBO), nats (< 0: A fits better)"),
        ("mutual_information", "d(MI), nats (> 0: A puts more into z)"),
    )
    figure, axes = plt.subplots(1, 2, figsize=(10, 0.25 * len(comparisons) + 1.1), sharey=True)
    rows = list(range(len(comparisons)))[::-1]
    labels = [f"{c.corpus}: {c.label} ({len(c.a)})" for c in comparisons]
    for axis, (key, axis_title) in zip(axes, panels, strict=True):
        differences = [paired(c, key) for c in comparisons]
        for row, difference in zip(rows, differences, strict=True):
            colour = "#c0392b" if difference.low > 0 or difference.high < 0 else "#34495e"
            axis.plot([difference.low, difference.high], [row, row], color=colour, linewidth=1.5)
            axis.plot([difference.mean], [row], "o", color=colour, markersize=4)
        axis.axvline(0.0, color="black", linewidth=0.8)
        axis.set_xlabel(axis_title)
        axis.grid(axis="x", linewidth=0.3)
    # -ELBO differences run from tenths of a nat to 12 (FBP): linear within 1 nat, log outside.
    axes[0].set_xscale("symlog", linthresh=1.0, linscale=2.0)
    ticks = [-5.0, -1.0, -0.5, 0.0, 0.5, 1.0, 5.0, 10.0]
    axes[0].set_xticks(ticks, [f"{tick:g}" for tick in ticks])
    axes[0].set_yticks(rows, labels, fontsize=7)
    figure.suptitle(
        "Paired differences A - B over seeds (count), test split: mean and 95% t-interval "
        "(red: the interval excludes 0)",
        fontsize=9,
    )
    return save_figure(figure, stem, FORMATS)


def draw_all(out: Path) -> list[Path]:
    """Every figure of the results page, written under ``out``; returns the paths."""
    ptb, snli = RESULTS / "ptb-10k", RESULTS / "snli-carve"
    snli_in0 = RESULTS / "snli-carve-dropout-in0"
    baselines = RESULTS / "ptb-3k-baselines"
    paths = []
    adam = RESULTS / "ptb-adam"
    paths += plot_learning_curves(
        {
            "no word dropout": adam / "none-seed0",
            "uniform, rate 0.4": adam / "uniform-seed0",
            "AWD, rate 0.4, lambda 1": adam / "adversarial-lambda1-seed0",
            "AWD, rate 0.4, lambda 10": adam / "adversarial-lambda10-seed0",
        },
        out / "ptb_adam_curves",
        title="PTB, all 42,068 training sentences, Adam, seed 0",
    )
    adam_adversaries = {
        "PTB, all, Adam": {
            "rate 0.4, lambda 10": [RESULTS / ADAM_AWD.format(s) for s in SEEDS],
            "rate 0.4, lambda 1": [adam / "adversarial-lambda1-seed0"],
        }
    }
    paths += plot_pmi_by_drop_probability(adam_adversaries, out / "ptb_adam_pmi")
    paths += plot_drop_by_frequency(adam_adversaries, out / "ptb_adam_dropped")
    paths += plot_learning_curves(
        {
            "uniform, rate 0.4": RESULTS / "ptb-full-probe/uniform-seed0",
            "no word dropout": RESULTS / "ptb-full-probe/none-seed0",
        },
        out / "ptb_full_probe_curves",
        title="PTB, all 42,068 training sentences, 5 epochs, seed 0",
    )
    paths += plot_learning_curves(
        {
            "annealing": baselines / "none-seed0",
            "beta-VAE 0.5": baselines / "none-beta-vae0.5-seed0",
            "cyclical": baselines / "none-cyclical-seed0",
            "free bits 0.1": baselines / "none-free-bits0.1-seed0",
            "lagging": baselines / "none-lagging-seed0",
            "FBP 0.1": baselines / "none-fbp0.1-seed0",
            "SA-VAE": baselines / "none-sa-vae10-seed0",
            "uniform, rate 0.4": baselines / "uniform-seed0",
            "AWD, rate 0.4": baselines / "adversarial-seed0",
        },
        out / "ptb_3k_baselines_curves",
        title="PTB, 3,000 training sentences, 4 epochs, seed 0 (log scale: SA-VAE diverges)",
        log_scale=True,
    )
    panels_pmi = {
        "PTB, 10k sentences": {
            "rate 0.4, lambda 1": [ptb / f"adversarial-seed{s}" for s in SEEDS],
            "rate 0.2, lambda 10": [ptb / f"adversarial-rate0.2-lambda10-seed{s}" for s in SEEDS],
            "rate 0.2, lambda 0.1": [ptb / "adversarial-rate0.2-lambda0.1-seed0"],
        },
        "SNLI carve-out": {
            "rate 0.4, lambda 0.1": [snli / f"adversarial-seed{s}" for s in SEEDS],
            "rate 0.2, lambda 10": [snli / f"adversarial-rate0.2-lambda10-seed{s}" for s in SEEDS],
            "rate 0.3, lambda 10": [snli / f"adversarial-rate0.3-lambda10-seed{s}" for s in FIVE],
            "rate 0.3, lambda 1, no emb. dropout": [
                snli_in0 / f"adversarial-seed{s}" for s in range(3)
            ],
        },
    }
    paths += plot_pmi_by_drop_probability(panels_pmi, out / "pmi_by_drop_probability")
    panels_dropped = {
        "PTB, 10k sentences": panels_pmi["PTB, 10k sentences"],
        "SNLI carve-out": {
            "rate 0.4, lambda 0.1": [snli / f"adversarial-seed{s}" for s in SEEDS],
            "rate 0.2, lambda 10": [snli / f"adversarial-rate0.2-lambda10-seed{s}" for s in SEEDS],
            "rate 0.3, lambda 10": [snli / f"adversarial-rate0.3-lambda10-seed{s}" for s in FIVE],
            "rate 0.3, lambda 1": [snli / "adversarial-rate0.3-lambda1-seed0"],
        },
    }
    paths += plot_drop_by_frequency(panels_dropped, out / "drop_by_frequency")
    paths += plot_rate_grid(ptb, out / "rate_grid_ptb", corpus="PTB, 10k sentences")
    paths += plot_rate_grid(snli, out / "rate_grid_snli", corpus="SNLI carve-out")
    # The Adam study's comparisons get a figure of their own, shown in its section.
    in_adam_study = [c for c in COMPARISONS if c.corpus == PTB_ADAM]
    earlier = [c for c in COMPARISONS if c.corpus != PTB_ADAM]
    paths += plot_paired_differences(in_adam_study, out / "ptb_adam_paired_differences")
    paths += plot_paired_differences(earlier, out / "paired_differences")
    return paths


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=FIGURES, help="folder for the figures")
    args = parser.parse_args(argv)
    # One style whatever the user's matplotlibrc says, so that the files are reproducible.
    pyplot().rcdefaults()
    print_study_table(ADAM_VARIANTS)
    print_summary(COMPARISONS)
    for path in draw_all(args.out):
        print(f"written {path} ({path.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
