"""``"sst"``: marginals of the exponential family over K-subsets (Paulus et al. 2020).

With ``theta_i = -s_i / tau`` the distribution ``p(S) ∝ exp(sum_{i in S} theta_i)`` over subsets
of size ``k`` has log-partition ``log e_k(exp(theta))`` (elementary symmetric polynomial) and
marginals ``soft_i = P(i in S) = d log e_k / d theta_i``. This is the top-K relaxation of the
official stochastic-softmax-tricks code (the one with the cleanest properties: ``0 <= soft <= 1``,
exact sum ``k``, symmetric negative semidefinite Jacobian, ties split evenly).

``log e_j`` for ``j = 0..k`` comes from the log-space dynamic programme of Swersky et al. (2012),
one position at a time; the marginals are its gradient, taken with ``create_graph=True`` so that
the backward pass is the exact Hessian-vector product (no finite differences).
"""

from __future__ import annotations

import torch
from torch import Tensor

from advmask.checks import check_positive
from advmask.relaxations.registry import register_relaxation
from advmask.row_draws import RowDraws

# Finite "log 0": logaddexp(-inf, -inf) has a NaN gradient; -1e30 + -1e30 is still
# finite in float32, and exp(-1e30 - x) is exactly 0, so sentinel paths carry zero gradient.
NEG = -1e30


def log_elementary_symmetric(theta: Tensor, max_k: int) -> Tensor:
    """``log e_j(exp(theta))`` for ``j = 0..max_k``, by the DP over positions.

    Args:
        theta: (B, T) float log-weights; ``NEG`` marks excluded positions.
        max_k: largest subset size needed.

    Returns:
        (B, max_k + 1) float; column ``j`` holds ``log e_j``, ``NEG``-ish where unreachable.
    """
    batch = theta.shape[0]
    # log e_0 = 0 never changes; only columns 1..max_k are updated.
    head = theta.new_zeros(batch, 1)
    tail = theta.new_full((batch, max_k), NEG)
    for t in range(theta.shape[1]):
        # e_j <- e_j + e_{j-1} * exp(theta_t), all j at once from the previous values.
        previous = torch.cat([head, tail[:, :-1]], 1)
        tail = _logaddexp(tail, previous + theta[:, t : t + 1])
    return torch.cat([head, tail], 1)


def _logaddexp(a: Tensor, b: Tensor) -> Tensor:
    """``log(exp(a) + exp(b))`` written as ``high + log1p(exp(low - high))``.

    ``torch.logaddexp``'s double backward is NaN when ``|a - b|`` is huge (it evaluates
    ``inf / inf``), which the ``NEG`` sentinel triggers. Here ``exp`` only sees arguments <= 0,
    so every derivative of every order stays finite; the formula is exact for either order of
    the arguments, so choosing the branch by ``a >= b`` does not bend the derivatives at ties.
    """
    a_larger = a >= b
    high = torch.where(a_larger, a, b)
    low = torch.where(a_larger, b, a)
    return high + torch.log1p(torch.exp(low - high))


@register_relaxation("sst")
def sst(
    scores: Tensor,
    k: Tensor,
    eligible: Tensor,
    *,
    generator: torch.Generator | None = None,
    row_draws: RowDraws | None = None,
    temperature: float = 0.1,
) -> Tensor:
    """Marginal probabilities ``P(i in S)`` under ``p(S) ∝ exp(-sum_{i in S} s_i / tau)``.

    Cost O(T * max k) per row forward, about three times that backward.

    Args:
        scores: (B, T) float32/float64 scores, finite.
        k: (B,) int64 subset size per row, ``1 <= k[b] <= n_b - 1``.
        eligible: (B, T) bool, True where a position may be selected (``n_b >= 2`` per row).
        generator, row_draws: unused (deterministic relaxation).
        temperature: tau > 0; smaller is sharper.

    Returns:
        (B, T) soft mask in ``[0, 1]`` in the dtype of ``scores`` (1 = drop), exactly 0 off
        ``eligible``; each row sums to ``k[b]`` up to rounding. Differentiable in ``scores``
        when autograd is recording and ``scores`` requires grad.

    Raises:
        ValueError: if ``temperature`` is not a finite float > 0.

    Example:
        >>> soft = sst(torch.tensor([[0.0, 1.0, 1.0, 2.0]], dtype=torch.float64),
        ...            torch.tensor([2]), torch.ones(1, 4, dtype=torch.bool), temperature=0.01)
        >>> [round(v, 6) for v in soft[0].tolist()]
        [1.0, 0.5, 0.5, 0.0]
    """
    temperature = check_positive(temperature, "temperature")
    # Decided before enable_grad: under no_grad, or for scores without grad, the marginals are
    # computed on a detached leaf and returned without a graph.
    track = torch.is_grad_enabled() and scores.requires_grad
    with torch.enable_grad():
        source = scores if track else scores.detach().requires_grad_()
        theta = torch.where(eligible, -source / temperature, NEG)
        # One host sync for the loop bound; the DP costs O(T * max k) instead of O(T^2).
        log_e = log_elementary_symmetric(theta, int(k.max()))
        log_partition = log_e.gather(1, k.unsqueeze(1))
        (soft,) = torch.autograd.grad(log_partition.sum(), theta, create_graph=track)
    soft = torch.where(eligible, soft, torch.zeros_like(soft))
    return soft if track else soft.detach()
