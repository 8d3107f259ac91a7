"""The hard exactly-K mask of the smallest scores, without gradient.

A module of its own, below both :mod:`advmask.selection` (which adds the relaxed backward
pass) and :mod:`advmask.relaxations` (``"perturbed"`` takes the hard mask of perturbed
scores): it imports neither, so neither import has to be deferred to break a cycle.
``1`` in every mask returned here means "selected" (for the maskers: "drop").
"""

from __future__ import annotations

import torch
from torch import Tensor


def hard_bottom_k(scores: Tensor, k: Tensor, eligible: Tensor) -> Tensor:
    """Exactly-K mask of the smallest eligible scores per row (no gradient).

    Ties are broken by position: of two equal scores, the one at the lower index is selected
    first. ``torch.topk`` is not used because its tie order is unspecified.

    Args:
        scores: (B, T) float scores; only eligible positions are read (others may hold
            anything, including NaN or inf).
        k: (B,) int64 number of positions to select per row, ``0 <= k[b] <= n_b``.
        eligible: (B, T) bool, True where a position may be selected.

    Returns:
        (B, T) mask in the dtype of ``scores`` (float32 for half-precision scores),
        1.0 = selected; exactly ``k[b]`` ones in row ``b``, all at eligible positions.

    Example:
        >>> hard_bottom_k(torch.tensor([[3.0, 1.0, 2.0, 0.0]]), torch.tensor([2]),
        ...               torch.tensor([[True, True, True, False]]))
        tensor([[0., 1., 1., 0.]])
    """
    # +inf sends ineligible positions after every finite eligible score; the stable sort
    # breaks ties among equal scores by position.
    key = scores.masked_fill(~eligible, float("inf"))
    order = torch.sort(key, dim=1, stable=True).indices
    positions = torch.arange(scores.shape[1], device=scores.device).expand_as(order)
    # Out of place: torch.func.vmap has a batching rule for scatter but not for scatter_.
    rank = torch.empty_like(order).scatter(1, order, positions)
    selected = (rank < k.unsqueeze(1)) & eligible
    return selected.to(mask_dtype(scores.dtype))


def mask_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype masks are computed in for scores of ``dtype``.

    float32 and float64 are kept; every other float dtype (float16, bfloat16) becomes float32.
    """
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32
