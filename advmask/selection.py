"""Exactly-K selection of the smallest scores, with a relaxed backward pass.

The forward pass is the hard K-hot mask; the backward pass is the gradient of a relaxation
(straight-through, Paulus et al. 2020). ``1`` in every mask returned here means "drop".
The hard mask itself, :func:`~advmask.hard_selection.hard_bottom_k`, is defined one layer
below, in ``advmask.hard_selection``: the relaxations (``"perturbed"``) need the hard mask too,
and this module needs the relaxations. It is re-exported (and documented) here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from advmask.checks import (
    FLOAT_DTYPES,
    INT_DTYPES,
    check_mask_like,
    check_tensor,
    checks_values,
)
from advmask.hard_selection import hard_bottom_k, mask_dtype
from advmask.relaxations import Relaxation, get_relaxation

# With __all__, autodoc documents the re-exported hard_bottom_k on this module's page too.
__all__ = ["bottom_k", "hard_bottom_k", "relaxed_bottom_k", "straight_through"]


def straight_through(hard: Tensor, soft: Tensor) -> Tensor:
    """Forward value of ``hard``, gradient of ``soft``.

    Written ``hard + (soft - soft.detach())``: for finite ``soft`` the bracket is exactly
    ``+0``, so the forward value equals ``hard`` bitwise. The common spelling
    ``hard + soft - soft.detach()`` evaluates ``(hard + soft) - soft`` and returns
    0.99999994 instead of 1 in float32.

    Args:
        hard: (B, T) mask without gradient.
        soft: (B, T) finite relaxation of ``hard``, same dtype.

    Returns:
        (B, T) tensor equal to ``hard`` whose gradient flows to ``soft``.
    """
    return hard + (soft - soft.detach())


def bottom_k(
    scores: Tensor,
    k: Tensor,
    eligible: Tensor,
    relaxation: str | Relaxation | None = "euclidean",
    *,
    generator: torch.Generator | None = None,
    **options: Any,
) -> Tensor:
    """Exactly-K mask of the smallest scores, differentiable through a relaxation.

    Forward: the hard mask of :func:`~advmask.hard_selection.hard_bottom_k`. Backward: the
    gradient of the relaxation (see :mod:`advmask.relaxations`), straight-through. Rows
    with ``k = 0`` or ``k = n`` have a constant hard mask, so their gradient is exactly zero (a
    relaxation run on them would only add a spurious gradient); ineligible positions always get
    zero gradient.

    Args:
        scores: (B, T) float scores. Must be finite at eligible positions. Half-precision
            scores are upcast to float32.
        k: (B,) integer number to drop per row, ``0 <= k[b] <= eligible[b].sum()``.
        eligible: (B, T) bool, True where a position may be dropped.
        relaxation: name of a registered relaxation, a relaxation function (see
            :class:`~advmask.relaxations.Relaxation`), or None for the hard mask only.
        generator: random generator for stochastic relaxations (``"perturbed"``).
        **options: hyper-parameters of the relaxation (for example ``temperature``).

    Returns:
        (B, T) float mask, 1.0 = drop; exactly ``k[b]`` ones in row ``b``. Carries the
        relaxation's gradient when ``scores`` requires grad.

    Raises:
        ValueError: on shape mismatches, ``k`` out of ``[0, n_b]`` or non-finite eligible
            scores.

    Example:
        >>> scores = torch.tensor([[0.3, -1.0, 2.0, 0.1]], requires_grad=True)
        >>> mask = bottom_k(scores, torch.tensor([2]), torch.ones(1, 4, dtype=torch.bool))
        >>> mask
        tensor([[0., 1., 0., 1.]], grad_fn=<AddBackward0>)
    """
    relax = None if relaxation is None else get_relaxation(relaxation)
    scores = check_tensor("scores", scores, ndim=2, dtypes=FLOAT_DTYPES)
    eligible = check_mask_like("eligible", eligible, scores)
    k = check_tensor("k", k, ndim=1, dtypes=INT_DTYPES)
    if k.shape[0] != scores.shape[0]:
        raise ValueError(f"k must have shape ({scores.shape[0]},), got {tuple(k.shape)}")
    if checks_values():
        _check_k_and_scores(scores, k, eligible)
    return _unchecked_bottom_k(scores, k, eligible, relax, generator, options)


def _unchecked_bottom_k(
    scores: Tensor,
    k: Tensor,
    eligible: Tensor,
    relax: Any,
    generator: torch.Generator | None,
    options: dict[str, Any],
) -> Tensor:
    """:func:`bottom_k` of input already checked: no check here, neither of shapes nor values.

    For a caller that validated at its own boundary (:class:`~advmask.maskers.AdversarialMasker`
    builds ``k`` in range and checks its scores). Arguments as :func:`bottom_k`'s, with
    ``relax`` the relaxation itself (a function, or None for the hard mask only).
    """
    scores = scores.to(mask_dtype(scores.dtype))
    k = k.to(torch.int64)
    hard = hard_bottom_k(scores.detach(), k, eligible)
    if relax is None or not (torch.is_grad_enabled() and scores.requires_grad):
        return hard
    soft = relaxed_bottom_k(scores, k, eligible, hard, relax, generator, options)
    return straight_through(hard, soft)


def _check_k_and_scores(scores: Tensor, k: Tensor, eligible: Tensor) -> None:
    """``0 <= k <= n_b`` and finite eligible scores, read on the host in one transfer."""
    num_eligible = eligible.sum(1)
    bad_k = (k < 0) | (k > num_eligible)
    not_finite = ~torch.isfinite(scores.detach()) & eligible
    any_bad_k, any_not_finite = torch.stack([bad_k.any(), not_finite.any()]).tolist()
    if any_bad_k:
        bad = int(torch.nonzero(bad_k)[0, 0])
        raise ValueError(
            f"k must be in [0, n_b] (n_b = eligible positions of row b); row {bad} has "
            f"k={int(k[bad])}, n_b={int(num_eligible[bad])}"
        )
    if any_not_finite:
        row, col = (int(i) for i in torch.nonzero(not_finite)[0])
        raise ValueError(
            f"scores must be finite at eligible positions; scores[{row}, {col}] = "
            f"{float(scores[row, col])}"
        )


def relaxed_bottom_k(
    scores: Tensor,
    k: Tensor,
    eligible: Tensor,
    hard: Tensor,
    relax: Any,
    generator: torch.Generator | None,
    options: dict[str, Any],
) -> Tensor:
    """Soft mask from ``relax``, with degenerate rows and padding handled once for all.

    Every relaxation is called on a well-posed problem: each row has ``n >= 2`` eligible
    positions, ``1 <= k <= n - 1`` and finite scores. Rows that are not (``k = 0``, ``k = n``)
    get a harmless stand-in problem whose result is replaced by the hard row through
    ``torch.where``, which passes exactly zero gradient to the stand-in's inputs.

    Args:
        scores: (B, T) float32/float64 scores.
        k: (B,) int64, ``0 <= k[b] <= n_b``.
        eligible: (B, T) bool.
        hard: (B, T) the hard mask of ``scores``
            (:func:`~advmask.hard_selection.hard_bottom_k`), computed once by the caller.
        relax: the relaxation.
        generator: its random generator.
        options: its keyword options.

    Returns:
        (B, T) soft mask, differentiable in ``scores``, exactly 0 off ``eligible``.
    """
    batch, length = scores.shape
    if length < 2:
        # No row can have 1 <= k <= n - 1: every row is degenerate.
        return hard + 0.0 * scores.masked_fill(~eligible, 0.0)
    num_eligible = eligible.sum(1)
    active = (k >= 1) & (k < num_eligible)
    positions = torch.arange(length, device=scores.device).expand(batch, length)
    stand_in_eligible = positions < 2
    active_rows = active.unsqueeze(1)
    safe_eligible = torch.where(active_rows, eligible, stand_in_eligible)
    safe_k = torch.where(active, k, torch.ones_like(k))
    safe_scores = torch.where(active_rows & eligible, scores, positions.to(scores.dtype))
    soft = relax(safe_scores, safe_k, safe_eligible, generator=generator, **options)
    soft = torch.where(active_rows, soft, hard)
    return soft.masked_fill(~eligible, 0.0)
