"""``"sinkhorn"``: entropic optimal transport to two anchors (Xie et al. 2020).

Each row's eligible scores ``x_1..x_n`` (mass ``1/n`` each) are transported to the anchors 0 and
1 (masses ``k/n`` and ``(n-k)/n``) with cost ``C_i0 = x_i^2``, ``C_i1 = (x_i - 1)^2``, optionally
divided by ``c = max C`` (``normalize_cost``, detached, as the reference ``TopK_custom``). The
plan ``Gamma`` comes from ``num_iters`` log-domain Sinkhorn iterations (``f`` then ``g``), and
``soft_i = n * Gamma_i0`` is the soft indicator of the ``k`` smallest scores. After the final
``g`` update the column marginals are exact, so every row sums to ``k`` up to rounding.

Only the gap ``C_i1 - C_i0 = 1 - 2 x_i`` enters the plan (a per-row constant of the cost is
absorbed by the row potential ``f_i``), so the iteration runs on the costs ``(0, 1 - 2 x_i)``:
the same plan, without forming ``x^2``, which overflows float32 at ``|x| >= 1.8e19``. The mask
is finite for every finite score with ``normalize_cost``, and without it while
``(1 - 2 x) / epsilon`` is representable (``|x| < 1.7e37`` in float32 at ``epsilon = 0.1``).

At convergence ``soft`` is the calibrated sigmoid ``sigmoid((t - x_i) / tau_eff)`` with
``tau_eff = epsilon * c / 2`` (``epsilon / 2`` without normalisation), because
``C_i1 - C_i0 = 1 - 2 x_i`` is affine in ``x_i``. With ``normalize_cost=True`` the effective
temperature therefore grows with the score range, and the map is not shift invariant.

Backward: ``"unrolled"`` (default) differentiates the finite iteration exactly by autograd;
``"implicit"`` uses the fixed-point Jacobian ``(d_i / tau_eff)(d_j / sum(d) - delta_ij)``,
``d = soft (1 - soft)``, at the cost of one forward pass with no graph.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, autograd
from torch.autograd.function import once_differentiable

from advmask.checks import check_bool, check_choice, check_int, check_positive
from advmask.relaxations._calibrated import calibrated_vjp
from advmask.relaxations.registry import register_relaxation
from advmask.row_draws import RowDraws

BACKWARDS = ("unrolled", "implicit")


def sinkhorn_top_k(
    scores: Tensor,
    k: Tensor,
    eligible: Tensor,
    epsilon: float,
    num_iters: int,
    normalize_cost: bool,
) -> tuple[Tensor, Tensor]:
    """Two-anchor log-domain Sinkhorn; differentiable by autograd (unrolled).

    Args:
        scores: (B, T) float scores, finite.
        k: (B,) int64, ``1 <= k[b] <= n_b - 1``.
        eligible: (B, T) bool.
        epsilon: entropic regularisation > 0.
        num_iters: number of (f, g) update pairs.
        normalize_cost: divide the cost by its (detached) maximum over eligible entries.

    Returns:
        ``(soft, tau_eff)``: (B, T) soft mask, 0 off ``eligible``; (B,) effective temperature
        ``epsilon * c / 2`` of the converged map (no gradient).
    """
    zero = torch.zeros_like(scores)
    x = torch.where(eligible, scores, zero)  # ineligible scores never enter the result
    # Only the gap C_i1 - C_i0 = 1 - 2 x_i between the two anchors' costs enters the plan: a
    # per-row constant of the cost is absorbed by the row potential f_i, so with the cost
    # (0, 1 - 2 x_i) the iterates g and the plan are those of (x_i^2, (x_i - 1)^2) exactly.
    # No square is formed: x^2 overflows float32 at |x| >= 1.8e19 (NaN masks) and the x^2
    # terms cancel in the gap long before that.
    if normalize_cost:
        # c = max C = root^2 with root = max(|x|, |x - 1|) over eligible entries (detached)
        root = torch.where(eligible, torch.maximum(x.abs(), (x - 1).abs()), zero)
        root = root.detach().amax(dim=1)  # (B,)
        # 2 (0.5 - x) / root / root, not (1 - 2x) / root^2: neither 2x nor root^2 overflows
        gap = 2 * ((0.5 - x) / root.unsqueeze(1)) / root.unsqueeze(1)
        scale = root * root
    else:
        gap = 1 - 2 * x
        scale = torch.ones_like(scores[:, 0])
    # Potentials are kept divided by epsilon (f / eps, g / eps): one division less per step.
    neg_gap = -gap / epsilon  # (B, T): -C_i1 / eps, with -C_i0 / eps = 0
    # -inf is safe in the column sums: every row has eligible entries, so each logsumexp is
    # finite, and masked entries get weight exp(-inf) = 0 and gradient 0.
    column_neg_cost = torch.where(
        eligible.unsqueeze(1), torch.stack([zero, neg_gap], dim=1), float("-inf")
    )  # (B, 2, T): anchors 0 and 1
    n = eligible.sum(1).to(scores.dtype)
    frac = k.to(scores.dtype) / n
    log_mu = -torch.log(n).unsqueeze(1)  # (B, 1)
    log_nu = torch.log(torch.stack([frac, 1 - frac], 1))  # (B, 2); 1 <= k <= n-1: finite
    g = torch.zeros_like(log_nu)
    for _ in range(num_iters):
        # Row update: a log-sum-exp over the two anchors, written as one logaddexp.
        f = log_mu - torch.logaddexp(g[:, :1], g[:, 1:] + neg_gap)
        g = log_nu - torch.logsumexp(f.unsqueeze(1) + column_neg_cost, dim=2)
    soft = n.unsqueeze(1) * torch.exp(f + g[:, :1])
    return torch.where(eligible, soft, zero), epsilon * scale / 2


class _ImplicitSinkhorn(autograd.Function):
    # A fixed iteration count and no host reads: torch.func.vmap batches the function by
    # running forward, setup_context and backward on batched tensors.
    generate_vmap_rule = True

    @staticmethod
    def forward(
        scores: Tensor,
        k: Tensor,
        eligible: Tensor,
        epsilon: float,
        num_iters: int,
        normalize_cost: bool,
    ) -> tuple[Tensor, Tensor]:
        # tau_eff is a second output: setup_context sees only inputs and outputs, and the
        # backward pass needs it.
        return sinkhorn_top_k(scores, k, eligible, epsilon, num_iters, normalize_cost)

    @staticmethod
    def setup_context(
        ctx: Any,
        inputs: tuple[Tensor, Tensor, Tensor, float, int, bool],
        output: tuple[Tensor, Tensor],
    ) -> None:
        eligible = inputs[2]
        soft, tau_eff = output
        ctx.mark_non_differentiable(tau_eff)
        ctx.save_for_backward(soft, eligible, tau_eff)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor, _grad_tau_eff: Tensor) -> tuple[Tensor | None, ...]:
        soft, eligible, tau_eff = ctx.saved_tensors
        vjp = calibrated_vjp(grad, soft, eligible, tau_eff.unsqueeze(1))
        return vjp, None, None, None, None, None


@register_relaxation("sinkhorn")
def sinkhorn(
    scores: Tensor,
    k: Tensor,
    eligible: Tensor,
    *,
    generator: torch.Generator | None = None,
    row_draws: RowDraws | None = None,
    epsilon: float = 0.1,
    num_iters: int = 200,
    normalize_cost: bool = True,
    backward: str = "unrolled",
) -> Tensor:
    """Soft indicator of the ``k`` smallest scores from entropic OT to the anchors (0, 1).

    Args:
        scores: (B, T) float32/float64 scores, finite.
        k: (B,) int64 number to select per row, ``1 <= k[b] <= n_b - 1``.
        eligible: (B, T) bool, True where a position may be selected (``n_b >= 2`` per row).
        generator, row_draws: unused (deterministic relaxation).
        epsilon: entropic regularisation > 0 (the reference default 0.1).
        num_iters: Sinkhorn iterations >= 1 (reference default 200). Small ``epsilon`` relative
            to the score gaps needs more.
        normalize_cost: divide the cost by its maximum over eligible entries (reference
            behaviour); then ``tau_eff = epsilon * c / 2`` depends on the score range.
        backward: ``"unrolled"`` (autograd through the iterations, memory O(num_iters * T)) or
            ``"implicit"`` (fixed-point Jacobian, exact only at convergence).

    Returns:
        (B, T) soft mask in the dtype of ``scores`` (1 = drop), exactly 0 off ``eligible``;
        each row sums to ``k[b]`` up to rounding; entries are in ``[0, 1]`` up to the row
        marginal error of the finite iteration.

    Raises:
        ValueError: on an invalid ``epsilon``, ``num_iters`` or ``backward``.
        TypeError: if ``normalize_cost`` is not a bool or ``num_iters`` not an int.

    Example:
        >>> soft = sinkhorn(torch.tensor([[0.0, 1.0, 2.0]], dtype=torch.float64),
        ...                 torch.tensor([1]), torch.ones(1, 3, dtype=torch.bool),
        ...                 epsilon=1.0, normalize_cost=False)
        >>> [round(v, 4) for v in soft[0].tolist()]  # = "lml" at temperature epsilon / 2
        [0.7091, 0.2481, 0.0427]
    """
    epsilon = check_positive(epsilon, "epsilon")
    num_iters = check_int(num_iters, "num_iters")
    normalize_cost = check_bool(normalize_cost, "normalize_cost")
    backward = check_choice(backward, "backward", BACKWARDS)
    if backward == "implicit":
        soft, _ = _ImplicitSinkhorn.apply(scores, k, eligible, epsilon, num_iters, normalize_cost)
        return soft
    return sinkhorn_top_k(scores, k, eligible, epsilon, num_iters, normalize_cost)[0]
