"""How many positions to drop, and which positions may be dropped.

The number to drop is ``K = round(rate * n)`` rounded **half-up** on the exact decimal value of
``rate``. Python's ``round``, ``numpy.round`` and ``torch.round`` all round half to
even (``round(2.5) == 2``), which would make the effective rate depend on the parity of ``n``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from advmask.checks import INT_DTYPES, check_rate, check_tensor

# Binary floating point puts some exact decimal halves just below .5 (0.29 * 50 =
# 14.499999999999998); the guard restores exact-decimal half-up for rates with up to
# three decimals and n <= 1000 (checked exhaustively against fractions.Fraction).
_HALF_UP_GUARD = 1e-9


def num_to_drop(rate: float, num_eligible: Tensor) -> Tensor:
    """Number of positions to drop per row, ``round_half_up(rate * n)`` clamped to ``[0, n]``.

    Args:
        rate: fraction of eligible positions to drop, in [0, 1].
        num_eligible: (B,) integer count ``n_b`` of eligible positions per row.

    Returns:
        (B,) int64 ``k_b``; ``k_b = 0`` when ``rate = 0`` or ``n_b = 0`` and ``k_b = n_b`` when
        ``rate = 1``.

    Example:
        >>> num_to_drop(0.5, torch.tensor([1, 3, 5]))
        tensor([1, 2, 3])
    """
    rate = check_rate(rate)
    num_eligible = check_tensor("num_eligible", num_eligible, ndim=1, dtypes=INT_DTYPES)
    n = num_eligible.to(torch.int64)
    # float64: float32 adds its own rounding errors at exact halves.
    k = torch.floor(rate * n.to(torch.float64) + 0.5 + _HALF_UP_GUARD).to(torch.int64)
    return torch.minimum(k.clamp_min(0), n)


def eligible_positions(lengths: Tensor, max_length: int, protected: Tensor | None = None) -> Tensor:
    """Positions that may be dropped: ``t < lengths[b]`` and not protected.

    Eligibility comes from lengths, never from token ids: an EOS or BOS id can appear anywhere
    depending on how a batch was padded.

    Args:
        lengths: (B,) integer number of valid positions per row.
        max_length: padded length ``T``.
        protected: optional (B, T) or (T,) bool, True where a position must never be dropped
            (for example BOS at position 0).

    Returns:
        (B, T) bool, True = eligible for dropping.

    Example:
        >>> eligible_positions(torch.tensor([3, 1]), 4)
        tensor([[ True,  True,  True, False],
                [ True, False, False, False]])
    """
    positions = torch.arange(max_length, device=lengths.device)
    eligible = positions.unsqueeze(0) < lengths.unsqueeze(1)
    if protected is not None:
        eligible = eligible & ~protected
    return eligible
