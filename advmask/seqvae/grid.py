"""The runs of an experiment: dropout kind x rate x lambda x seed, and their names.

Uniform and adversarial dropout are trained at every rate of the grid, the adversary at every
lambda too; no dropout once per seed. A run's folder and table label name a grid axis only
when it has several values, so a one-point grid keeps the short names
(``adversarial-seed0``, ``ptb adversarial [0.3]``). A baseline other than the default
``annealing`` (:mod:`advmask.seqvae.baselines`) is named in both by its tag
(``none-beta-vae0.5-seed0``, ``ptb none (beta-vae 0.5)``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Variant", "grid", "run_folder"]


@dataclass(frozen=True)
class Variant:
    """One run of the grid.

    Attributes:
        dropout: ``"none"``, ``"uniform"`` or ``"adversarial"``.
        rate: word-dropout rate (0 for ``"none"``).
        kl_weight: lambda, the weight of the adversary's KL regulariser (unused without an
            adversary, where it keeps the grid's first value).
        seed: the run's seed.
    """

    dropout: str
    rate: float
    kl_weight: float
    seed: int

    def folder(
        self, rates: Sequence[float], kl_weights: Sequence[float], baseline: str = "annealing"
    ) -> str:
        """``adversarial-seed0``, or with several rates / lambdas in the grid
        ``adversarial-rate0.3-lambda1-seed0``; ``baseline`` is a baseline's tag, named
        unless it is ``"annealing"`` (``adversarial-cyclical-seed0``)."""
        parts = [self.dropout]
        if baseline != "annealing":
            parts.append(baseline.replace(" ", ""))
        if self.dropout != "none" and len(rates) > 1:
            parts.append(f"rate{self.rate:g}")
        if self.dropout == "adversarial" and len(kl_weights) > 1:
            parts.append(f"lambda{self.kl_weight:g}")
        return "-".join([*parts, f"seed{self.seed}"])

    def folder_names(self, baseline: str = "annealing") -> list[str]:
        """Every name a grid may have given this run's folder (with or without its rate and
        lambda), the shortest first."""
        one, two = (self.rate,), (self.rate, self.rate + 1)
        lambdas_one, lambdas_two = (self.kl_weight,), (self.kl_weight, self.kl_weight + 1)
        names = [
            self.folder(rates, kl_weights, baseline)
            for rates in (one, two)
            for kl_weights in (lambdas_one, lambdas_two)
        ]
        return list(dict.fromkeys(names))

    def label(self, prefix: str, kl_weights: Sequence[float], baseline: str = "annealing") -> str:
        """The table row of the runs that differ only by seed: ``"ptb uniform [0.4]"``,
        ``"ptb adversarial [0.3, λ=10]"`` when the grid has several lambdas; a baseline's tag
        other than ``"annealing"`` is appended: ``"ptb none (beta-vae 0.5)"``."""
        suffix = "" if baseline == "annealing" else f" ({baseline})"
        if self.dropout == "none":
            return f"{prefix} none{suffix}"
        several = self.dropout == "adversarial" and len(kl_weights) > 1
        lambda_text = f", λ={self.kl_weight:g}" if several else ""
        return f"{prefix} {self.dropout} [{self.rate:g}{lambda_text}]{suffix}"


def grid(
    dropouts: Sequence[str],
    rates: Sequence[float],
    kl_weights: Sequence[float],
    seeds: Sequence[int],
) -> list[Variant]:
    """Every run, dropout kind by dropout kind, then rate, lambda and seed.

    Example:
        >>> runs = grid(("none", "adversarial"), rates=(0.4,), kl_weights=(1.0,), seeds=(0, 1))
        >>> [run.folder((0.4,), (1.0,)) for run in runs]
        ['none-seed0', 'none-seed1', 'adversarial-seed0', 'adversarial-seed1']
    """
    points = {
        "none": [(0.0, kl_weights[0])],
        "uniform": [(rate, kl_weights[0]) for rate in rates],
        "adversarial": [(rate, kl_weight) for rate in rates for kl_weight in kl_weights],
    }
    return [
        Variant(dropout, rate, kl_weight, seed)
        for dropout in dropouts
        for rate, kl_weight in points[dropout]
        for seed in seeds
    ]


def run_folder(
    parent: Path,
    variant: Variant,
    rates: Sequence[float],
    kl_weights: Sequence[float],
    baseline: str = "annealing",
    holds_this_run: Callable[[Path], bool] = lambda folder: False,
) -> Path:
    """The folder of ``variant``'s run under ``parent``: the name this grid gives it, unless
    it does not exist and a name another grid (of more or fewer rates or lambdas) gives it
    holds this run (``holds_this_run(folder)``, e.g. its ``config.json`` has the same
    settings).

    Example:
        >>> import tempfile
        >>> parent = Path(tempfile.mkdtemp())
        >>> run = Variant("adversarial", 0.4, 1.0, 0)
        >>> run_folder(parent, run, (0.4, 0.5), (1.0,)).name
        'adversarial-rate0.4-seed0'
        >>> (parent / "adversarial-seed0").mkdir()
        >>> holds = lambda folder: folder.name == "adversarial-seed0"
        >>> run_folder(parent, run, (0.4, 0.5), (1.0,), holds_this_run=holds).name
        'adversarial-seed0'
    """
    preferred = parent / variant.folder(rates, kl_weights, baseline)
    if preferred.exists():
        return preferred
    for name in variant.folder_names(baseline):
        if (parent / name).is_dir() and holds_this_run(parent / name):
            return parent / name
    return preferred
