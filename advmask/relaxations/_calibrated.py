"""The calibrated sigmoid: a threshold sigmoid whose soft mask sums to exactly ``k``.

For one row with eligible scores ``x_1..x_n``, temperature ``tau`` and budget ``k``::

    soft_i = sigmoid((nu - x_i) / tau),   nu = the unique root of  sum_i soft_i = k.

It is the LML projection of Amos et al. (2019) and the fixed point of two-anchor Sinkhorn
(with ``tau = epsilon * c / 2``). Differentiating the constraint gives
``dnu/dx_j = d_j / sum(d)`` with ``d = soft * (1 - soft)``, hence the Jacobian

    J = dsoft/dx = (1/tau) (d d^T / sum(d) - diag(d)),

symmetric, negative semidefinite, ``J 1 = 0``. Shared by ``"lml"`` (forward and backward) and
``"sinkhorn"`` with ``backward="implicit"`` (backward only).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, autograd
from torch.autograd.function import once_differentiable

# A bracket of 40 temperatures around the scores: sigmoid(-40) = 4e-18, so the sum is < 1 <= k
# at the lower end and > n - 1 >= k at the upper end for any realistic n.
_BRACKET = 40.0


def calibrated_threshold(scores: Tensor, k: Tensor, eligible: Tensor, temperature: float) -> Tensor:
    """The threshold ``nu`` of each row, by bisection (no gradient).

    Args:
        scores: (B, T) float scores, finite where eligible.
        k: (B,) int64 budget, ``1 <= k[b] <= n_b - 1``.
        eligible: (B, T) bool.
        temperature: tau > 0.

    Returns:
        (B,) thresholds, in the dtype of ``scores``, accurate to about one ulp.
    """
    scores = scores.detach()
    low = torch.where(eligible, scores, float("inf")).amin(1) - _BRACKET * temperature
    high = torch.where(eligible, scores, float("-inf")).amax(1) + _BRACKET * temperature
    target = k.to(scores.dtype)
    # Each halving gains one bit; the bracket is at most (range/tau + 80) temperatures wide,
    # so 100 halvings (60 in float32) reach adjacent floats. A fixed count avoids a host sync.
    for _ in range(100 if scores.dtype == torch.float64 else 60):
        middle = (low + high) / 2
        total = _soft(scores, middle, eligible, temperature).sum(1)
        above = total > target
        high = torch.where(above, middle, high)
        low = torch.where(above, low, middle)
    return (low + high) / 2


def calibrated_vjp(
    grad: Tensor, soft: Tensor, eligible: Tensor, temperature: Tensor | float
) -> Tensor:
    """Vector-Jacobian product ``grad^T J`` with the calibrated-sigmoid Jacobian.

    ``(grad^T J)_j = (d_j / tau) (sum_i grad_i d_i / sum_i d_i - grad_j)`` on eligible
    positions, 0 elsewhere, with ``d = soft * (1 - soft)``.

    Args:
        grad: (B, T) incoming gradient.
        soft: (B, T) soft mask (0 off ``eligible``).
        eligible: (B, T) bool.
        temperature: tau, a float or a (B, 1) tensor (one per row).

    Returns:
        (B, T) gradient with respect to the scores.
    """
    zero = torch.zeros_like(soft)
    grad = torch.where(eligible, grad, zero)
    slope = torch.where(eligible, soft * (1 - soft), zero)
    total = slope.sum(1, keepdim=True)
    # Every slope underflows to 0 only in the hard limit, where the Jacobian is 0 anyway.
    weighted_mean = (grad * slope).sum(1, keepdim=True) / torch.where(total > 0, total, 1.0)
    return torch.where(eligible, slope * (weighted_mean - grad) / temperature, zero)


def _soft(scores: Tensor, threshold: Tensor, eligible: Tensor, temperature: float) -> Tensor:
    soft = torch.sigmoid((threshold.unsqueeze(1) - scores) / temperature)
    return torch.where(eligible, soft, torch.zeros_like(soft))


class _CalibratedSigmoid(autograd.Function):
    # Forward and backward are plain batched tensor ops (a fixed bisection count, no host
    # reads), so torch.func.vmap can batch the function by running them on batched tensors.
    generate_vmap_rule = True

    @staticmethod
    def forward(scores: Tensor, k: Tensor, eligible: Tensor, temperature: float) -> Tensor:
        threshold = calibrated_threshold(scores, k, eligible, temperature)
        return _soft(scores, threshold, eligible, temperature)

    @staticmethod
    def setup_context(
        ctx: Any, inputs: tuple[Tensor, Tensor, Tensor, float], output: Tensor
    ) -> None:
        _, _, eligible, temperature = inputs
        ctx.save_for_backward(output, eligible)
        ctx.temperature = temperature

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:
        soft, eligible = ctx.saved_tensors
        return calibrated_vjp(grad, soft, eligible, ctx.temperature), None, None, None


def calibrated_sigmoid(scores: Tensor, k: Tensor, eligible: Tensor, temperature: float) -> Tensor:
    """``sigmoid((nu - scores) / tau)`` with ``nu`` such that each row sums to ``k``.

    Backward is the exact implicit Jacobian (module docstring); the bisection is not unrolled.

    Args:
        scores: (B, T) float32/float64 scores, finite where eligible.
        k: (B,) int64 budget, ``1 <= k[b] <= n_b - 1``.
        eligible: (B, T) bool.
        temperature: tau > 0.

    Returns:
        (B, T) soft mask in the dtype of ``scores``, 0 off ``eligible``, rows summing to ``k``.
    """
    return _CalibratedSigmoid.apply(scores, k, eligible, temperature)
