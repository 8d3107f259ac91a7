"""``"euclidean"``: projection onto the capped simplex (the AWD authors' top-K).

For one row with eligible scores ``x`` and temperature ``tau``::

    soft = argmin_y || y - (-x / tau) ||^2   s.t.  0 <= y_i <= 1,  sum_i y_i = k
         = clip(-x / tau + nu, 0, 1),          nu such that the sum is k.

This is the Euclidean member of the stochastic softmax tricks (Paulus et al. 2020) and what the
AWD authors' code uses (with ``tau = 1``). Their code finds ``nu`` by a 3 x 100-point grid
search; here ``nu`` is exact: ``sum_i clip(-x_i/tau + nu, 0, 1)`` is piecewise linear in ``nu``
with breakpoints ``x_i/tau`` and ``x_i/tau + 1``, so sorting the ``2n`` breakpoints locates the
linear piece that reaches ``k`` and one division solves it. The Jacobian is exact and sparse: on
the free set ``F = {i : 0 < soft_i < 1}``,

    dL/ds_i = -(1/tau) (g_i - mean_{u in F} g_u)   for i in F,   0 elsewhere,

so ``dsoft_i/ds_i = -(1/tau)(1 - 1/|F|) <= 0``. Positions clipped at 0 or 1 get no gradient;
``tau`` sets how many positions are free (a larger ``tau`` spreads the gradient).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, autograd
from torch.autograd.function import once_differentiable

from advmask.checks import check_positive
from advmask.relaxations.registry import register_relaxation
from advmask.row_draws import RowDraws


def capped_simplex_threshold(logits: Tensor, k: Tensor, eligible: Tensor) -> Tensor:
    """Exact ``nu`` with ``sum_{i eligible} clip(logits_i + nu, 0, 1) = k`` per row (no grad).

    Args:
        logits: (B, T) float, finite where eligible.
        k: (B,) int64, ``1 <= k[b] <= n_b - 1``.
        eligible: (B, T) bool.

    Returns:
        (B,) thresholds in the dtype of ``logits``.
    """
    logits = logits.detach()
    batch = logits.shape[0]
    zero = torch.zeros_like(logits)
    # Position i starts to rise at nu = -logits_i (slope +1) and saturates at 1 - logits_i
    # (slope -1). Ineligible positions sit at the largest eligible breakpoint with slope 0, so
    # they change nothing and no inf - inf appears in the differences below.
    lower = -logits
    upper = 1 - logits
    last = torch.where(eligible, upper, float("-inf")).amax(1, keepdim=True).expand_as(logits)
    points = torch.cat([torch.where(eligible, lower, last), torch.where(eligible, upper, last)], 1)
    ones = torch.ones_like(logits)
    slopes = torch.cat([torch.where(eligible, ones, zero), torch.where(eligible, -ones, zero)], 1)
    points, order = torch.sort(points, dim=1)
    slope_after = slopes.gather(1, order).cumsum(1)
    # total(points[j]) for every j: integrate the piecewise-constant slope.
    rises = slope_after[:, :-1] * points.diff(dim=1)
    totals = torch.cat([points.new_zeros(batch, 1), rises.cumsum(1)], 1)
    # total(points[0]) = 0 < k and total(points[-1]) = n > k, so 1 <= j <= 2T - 1 and the
    # root lies on the piece [points[j-1], points[j]], where total rises through k.
    target = k.to(logits.dtype).unsqueeze(1)
    j = (totals < target).sum(1, keepdim=True).clamp(1, 2 * logits.shape[1] - 1)
    left = points.gather(1, j - 1)
    right = points.gather(1, j)
    middle = (left + right) / 2
    # On that piece the saturated and free sets are fixed (read them at its midpoint, away from
    # rounding in the cumulative sums), and sum = |U| + sum_F (logits + nu) = k is linear.
    shifted = logits + middle
    saturated = eligible & (shifted >= 1)
    free = eligible & (shifted > 0) & (shifted < 1)
    num_free = free.sum(1, keepdim=True).to(logits.dtype)
    free_sum = torch.where(free, logits, zero).sum(1, keepdim=True)
    exact = (target - saturated.sum(1, keepdim=True) - free_sum) / num_free.clamp_min(1)
    # No free position: the total is flat (= k) on the whole piece; any point of it solves.
    return torch.where(num_free > 0, exact, middle).squeeze(1)


class _CappedSimplexProjection(autograd.Function):
    # Sort, gather and where only, with no host reads: torch.func.vmap batches the function by
    # running forward, setup_context and backward on batched tensors.
    generate_vmap_rule = True

    @staticmethod
    def forward(scores: Tensor, k: Tensor, eligible: Tensor, temperature: float) -> Tensor:
        logits = -scores / temperature
        threshold = capped_simplex_threshold(logits, k, eligible)
        soft = (logits + threshold.unsqueeze(1)).clamp(0, 1)
        return torch.where(eligible, soft, torch.zeros_like(soft))

    @staticmethod
    def setup_context(
        ctx: Any, inputs: tuple[Tensor, Tensor, Tensor, float], output: Tensor
    ) -> None:
        _, _, eligible, temperature = inputs
        # Only the free set is needed backward: one bool tensor instead of the float mask.
        ctx.save_for_backward(eligible & (output > 0) & (output < 1))
        ctx.temperature = temperature

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:
        (free,) = ctx.saved_tensors
        zero = torch.zeros_like(grad)
        num_free = free.sum(1, keepdim=True).clamp_min(1).to(grad.dtype)
        free_mean = torch.where(free, grad, zero).sum(1, keepdim=True) / num_free
        # Empty free set: every entry of the where below is 0, as it should be.
        return torch.where(free, (free_mean - grad) / ctx.temperature, zero), None, None, None


@register_relaxation("euclidean")
def euclidean(
    scores: Tensor,
    k: Tensor,
    eligible: Tensor,
    *,
    generator: torch.Generator | None = None,
    row_draws: RowDraws | None = None,
    temperature: float = 1.0,
) -> Tensor:
    """Euclidean projection of ``-scores / temperature`` onto ``{y in [0,1]^n : sum y = k}``.

    Args:
        scores: (B, T) float32/float64 scores, finite.
        k: (B,) int64 number to select per row, ``1 <= k[b] <= n_b - 1``.
        eligible: (B, T) bool, True where a position may be selected (``n_b >= 2`` per row).
        generator, row_draws: unused (deterministic relaxation).
        temperature: tau > 0; scores are divided by it before projecting. ``1`` is the
            authors' setting; smaller is sharper.

    Returns:
        (B, T) soft mask in ``[0, 1]`` in the dtype of ``scores`` (1 = drop), exactly 0 off
        ``eligible``; each row sums to ``k[b]`` up to rounding.

    Raises:
        ValueError: if ``temperature`` is not a finite float > 0.

    Example:
        >>> euclidean(torch.tensor([[0.0, 0.4, 3.0, 1.0]]), torch.tensor([2]),
        ...           torch.tensor([[True, True, True, False]]))
        tensor([[1., 1., 0., 0.]])
        >>> euclidean(torch.tensor([[0.0, 0.4, 1.0]]), torch.tensor([1]),
        ...           torch.ones(1, 3, dtype=torch.bool))
        tensor([[0.7000, 0.3000, 0.0000]])
    """
    temperature = check_positive(temperature, "temperature")
    return _CappedSimplexProjection.apply(scores, k, eligible, temperature)
