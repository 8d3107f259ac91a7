"""``"lml"``: the calibrated sigmoid, i.e. the LML projection (Amos, Koltun & Kolter, 2019).

``soft_i = sigmoid((nu - s_i) / tau)`` with the threshold ``nu`` chosen so that every row sums to
exactly ``k``. It equals two-anchor Sinkhorn at
convergence, without the iterations: ``nu`` is found by bisection and the backward pass is the
closed-form implicit Jacobian ``J = (1/tau)(d d^T / sum(d) - diag(d))``, ``d = soft (1 - soft)``,
which is symmetric with ``diag(J) < 0``, ``off-diag(J) > 0`` and ``J 1 = 0``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from advmask.checks import check_positive
from advmask.relaxations._calibrated import calibrated_sigmoid
from advmask.relaxations.registry import register_relaxation
from advmask.row_draws import RowDraws


@register_relaxation("lml")
def lml(
    scores: Tensor,
    k: Tensor,
    eligible: Tensor,
    *,
    generator: torch.Generator | None = None,
    row_draws: RowDraws | None = None,
    temperature: float = 0.1,
) -> Tensor:
    """Calibrated-sigmoid soft mask of the ``k`` smallest eligible scores.

    Args:
        scores: (B, T) float32/float64 scores, finite.
        k: (B,) int64 number to select per row, ``1 <= k[b] <= n_b - 1``.
        eligible: (B, T) bool, True where a position may be selected (``n_b >= 2`` per row).
        generator, row_draws: unused (deterministic relaxation).
        temperature: tau > 0; smaller is sharper.

    Returns:
        (B, T) soft mask in the dtype of ``scores``, in (0, 1) on ``eligible`` (1 = drop),
        exactly 0 elsewhere; each row sums to ``k[b]`` up to the bisection's rounding.

    Raises:
        ValueError: if ``temperature`` is not a finite float > 0.

    Example:
        >>> soft = lml(torch.tensor([[0.0, 1.0, 2.0]], dtype=torch.float64), torch.tensor([1]),
        ...            torch.ones(1, 3, dtype=torch.bool), temperature=0.5)
        >>> [round(v, 4) for v in soft[0].tolist()], round(float(soft.sum()), 12)
        ([0.7091, 0.2481, 0.0427], 1.0)
    """
    temperature = check_positive(temperature, "temperature")
    return calibrated_sigmoid(scores, k, eligible, temperature)
