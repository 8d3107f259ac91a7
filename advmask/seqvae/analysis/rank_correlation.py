"""Spearman's rank correlation and its bootstrap interval, resampling whole groups.

Generic statistics over (N,) tensors: :func:`spearman` (average ranks for ties, optionally
with integer frequency weights, the form a bootstrap needs) and :func:`bootstrap_ci` (a
percentile interval that resamples groups, for example sentences, not single positions). The
PMI analysis (:mod:`advmask.seqvae.analysis.pmi`) correlates with them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from advmask.checks import FLOAT_DTYPES, INT_DTYPES, check_tensor

__all__ = ["bootstrap_ci", "spearman"]


def _check_pair(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    x = check_tensor("x", x, ndim=1, dtypes=FLOAT_DTYPES)
    y = check_tensor("y", y, ndim=1, dtypes=FLOAT_DTYPES)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.shape[0]} and {y.shape[0]}")
    if not bool(torch.isfinite(x).all() & torch.isfinite(y).all()):
        raise ValueError("x and y must be finite (drop NaN positions before correlating)")
    return x.double(), y.double()


def _midranks(values: Tensor, weights: Tensor) -> Tensor:
    """(R, N) average 1-based ranks of ``values`` (N,) in the sample that ``weights`` (R, N)
    repeats: position ``n`` appears ``weights[r, n]`` times in resample ``r``."""
    unique, inverse = torch.unique(values, sorted=True, return_inverse=True)
    index = inverse.expand_as(weights)
    counts = weights.new_zeros(weights.shape[0], unique.shape[0]).scatter_add_(1, index, weights)
    ends = counts.cumsum(1)
    # A block of c tied copies holds ranks ends - c + 1 .. ends; its average is ends - (c - 1)/2.
    return (ends - (counts - 1) / 2).gather(1, index)


def _weighted_pearson(a: Tensor, b: Tensor, weights: Tensor) -> Tensor:
    total = weights.sum(1, keepdim=True)
    a = a - (weights * a).sum(1, keepdim=True) / total
    b = b - (weights * b).sum(1, keepdim=True) / total
    covariance = (weights * a * b).sum(1)
    scale = torch.sqrt((weights * a * a).sum(1) * (weights * b * b).sum(1))
    # A constant variable has no rank correlation: NaN, as scipy.stats.spearmanr gives.
    return torch.where(scale > 0, covariance / scale.clamp_min(1e-300), math.nan)


def spearman(x: Tensor, y: Tensor, weights: Tensor | None = None) -> Tensor:
    """Spearman's rank correlation: Pearson's correlation of the average ranks.

    Ties get the average of the ranks they span (``scipy.stats.spearmanr``'s convention).
    With ``weights``, each row is the correlation of the sample in which position ``n`` occurs
    ``weights[r, n]`` times: the same number as repeating the data (ties included), without
    building the repeated sample; this is how :func:`bootstrap_ci` evaluates its resamples.

    Args:
        x: (N,) float finite values.
        y: (N,) float finite values.
        weights: optional (N,) or (R, N) non-negative integer-valued float frequency weights.

    Returns:
        float64 correlation in [-1, 1]: shape () without ``weights`` or with (N,) weights,
        (R,) with (R, N) weights; NaN where ``x`` or ``y`` is constant (in that resample).

    Example:
        >>> x = torch.tensor([1.0, 2.0, 3.0, 4.0])
        >>> float(spearman(x, x**2)), float(spearman(x, -x))
        (1.0, -1.0)
    """
    x, y = _check_pair(x, y)
    if x.shape[0] < 2:
        raise ValueError(f"spearman needs at least 2 values, got {x.shape[0]}")
    if weights is None:
        frequency = torch.ones(1, x.shape[0], dtype=torch.float64, device=x.device)
    else:
        if not isinstance(weights, Tensor) or weights.ndim not in (1, 2):
            raise ValueError("weights must be a (N,) or (R, N) tensor")
        weights = check_tensor(
            "weights", weights, ndim=weights.ndim, dtypes=FLOAT_DTYPES + INT_DTYPES
        )
        if weights.shape[-1] != x.shape[0]:
            raise ValueError(
                f"weights must have shape ({x.shape[0]},) or (R, {x.shape[0]}), got "
                f"{tuple(weights.shape)}"
            )
        frequency = weights.double().reshape(-1, x.shape[0])
    rho = _weighted_pearson(_midranks(x, frequency), _midranks(y, frequency), frequency)
    return rho[0] if weights is None or weights.ndim == 1 else rho


def bootstrap_ci(
    x: Tensor,
    y: Tensor,
    groups: Tensor,
    *,
    num_resamples: int = 1000,
    level: float = 0.95,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval of :func:`spearman`, resampling whole groups.

    The positions of one sentence are not independent (one ``z``, one context), so the unit of
    resampling is the group: each resample draws ``G`` groups with replacement and keeps all
    their positions, and the interval is the ``(1 - level) / 2`` and ``(1 + level) / 2``
    quantiles of the resampled correlations (resamples where it is undefined are skipped).

    Args:
        x: (N,) float finite values.
        y: (N,) float finite values.
        groups: (N,) int64 group (sentence) of each position, ids in ``[0, G)``.
        num_resamples: bootstrap resamples, >= 1.
        level: coverage of the interval, in (0, 1).
        generator: random generator of the resampling (CPU).

    Returns:
        ``(low, high)``; ``(nan, nan)`` when no resample has a defined correlation.

    Example:
        >>> x = torch.arange(20.0)
        >>> low, high = bootstrap_ci(x, x, torch.arange(20) // 2,
        ...                          generator=torch.Generator().manual_seed(0))
        >>> low, high
        (1.0, 1.0)
    """
    x, y = _check_pair(x, y)
    groups = check_tensor("groups", groups, ndim=1, dtypes=INT_DTYPES).to(torch.int64)
    if groups.shape != x.shape:
        raise ValueError(f"groups must have shape ({x.shape[0]},), got {tuple(groups.shape)}")
    if isinstance(num_resamples, bool) or not isinstance(num_resamples, int) or num_resamples < 1:
        raise ValueError(f"num_resamples must be an int >= 1, got {num_resamples!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if x.shape[0] < 2:
        return math.nan, math.nan
    if bool((groups < 0).any()):
        raise ValueError("groups must be non-negative ids")
    num_groups = int(groups.max()) + 1
    # Resamples in chunks: each holds (chunk, N) float64 weights and ranks.
    chunk = max(1, 2**21 // x.shape[0])
    estimates = []
    for start in range(0, num_resamples, chunk):
        count = min(chunk, num_resamples - start)
        drawn = torch.randint(num_groups, (count, num_groups), generator=generator)
        times = torch.zeros(count, num_groups, dtype=torch.float64)
        times.scatter_add_(1, drawn, torch.ones_like(times))
        estimates.append(spearman(x.cpu(), y.cpu(), times[:, groups.cpu()]))
    resampled = torch.cat(estimates)
    resampled = resampled[~resampled.isnan()]
    if resampled.numel() == 0:
        return math.nan, math.nan
    tail = (1 - level) / 2
    low, high = torch.quantile(resampled, torch.tensor([tail, 1 - tail], dtype=torch.float64))
    return float(low), float(high)
