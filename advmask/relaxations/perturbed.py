"""``"perturbed"``: perturbed-optimiser top-K (Berthet et al. 2020).

The soft mask is a Monte Carlo estimate of the Gaussian-smoothed hard mask
``E_Z[hard(s + sigma Z)]``::

    Z_m ~ N(0, I) (zero off eligible),  H_m = hard_bottom_k(s + sigma Z_m),  soft = mean_m H_m

and the backward pass is Stein's identity for the same samples (Berthet et al. Prop. 3.1)::

    dL/ds ≈ (1 / (M sigma)) sum_m <g, H_m> Z_m.

The noise is drawn once per forward from ``generator`` and reused by the backward pass. The VJP
is unbiased for the Jacobian of the smoothed map, which is symmetric negative semidefinite; a
finite-``M`` estimate is neither. ``soft`` sums to ``k`` exactly and is a multiple of ``1/M``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, autograd
from torch.autograd.function import once_differentiable

from advmask.checks import check_int, check_positive
from advmask.hard_selection import hard_bottom_k
from advmask.relaxations.registry import register_relaxation
from advmask.row_draws import RowDraws


class _PerturbedBottomK(autograd.Function):
    # The noise is drawn outside, in :func:`perturbed`; what remains is a sort and an average,
    # so torch.func.vmap batches the function by running it on batched tensors.
    generate_vmap_rule = True

    @staticmethod
    def forward(
        scores: Tensor, noise: Tensor, k: Tensor, eligible: Tensor, sigma: float
    ) -> tuple[Tensor, Tensor]:
        batch, samples, length = noise.shape
        perturbed = (scores.unsqueeze(1) + sigma * noise).reshape(batch * samples, length)
        hard = hard_bottom_k(
            perturbed,
            k.repeat_interleave(samples),
            eligible.repeat_interleave(samples, dim=0),
        ).reshape(batch, samples, length)
        # The per-sample masks are a second output: setup_context sees only inputs and
        # outputs, and the backward pass needs them.
        return hard.mean(1), hard

    @staticmethod
    def setup_context(
        ctx: Any,
        inputs: tuple[Tensor, Tensor, Tensor, Tensor, float],
        output: tuple[Tensor, Tensor],
    ) -> None:
        _, noise, _, _, sigma = inputs
        _, hard = output
        ctx.mark_non_differentiable(hard)
        ctx.save_for_backward(hard, noise)
        ctx.sigma = sigma

    @staticmethod
    @once_differentiable
    def backward(
        ctx: Any, grad: Tensor, _grad_hard: Tensor
    ) -> tuple[Tensor, None, None, None, None]:
        hard, noise = ctx.saved_tensors
        # <g, H_m> per sample, then the Z-weighted average; noise is 0 off eligible.
        inner = torch.einsum("bt,bmt->bm", grad, hard)
        vjp = torch.einsum("bm,bmt->bt", inner, noise) / (noise.shape[1] * ctx.sigma)
        return vjp, None, None, None, None


@register_relaxation("perturbed")
def perturbed(
    scores: Tensor,
    k: Tensor,
    eligible: Tensor,
    *,
    generator: torch.Generator | None = None,
    row_draws: RowDraws | None = None,
    num_samples: int = 500,
    sigma: float = 0.05,
) -> Tensor:
    """Monte Carlo mean of the hard mask under Gaussian perturbations, Stein-identity backward.

    Memory O(B * num_samples * T). The defaults are the reference configuration, whose scores
    lie in [0, 1]; for scores of order 1 try ``sigma`` in 0.05..0.5.

    Args:
        scores: (B, T) float32/float64 scores, finite.
        k: (B,) int64 number to select per row, ``1 <= k[b] <= n_b - 1``.
        eligible: (B, T) bool, True where a position may be selected (``n_b >= 2`` per row).
        generator: source of the noise ``Z`` (B, num_samples, T); on the device where the noise
            should be drawn (the result is moved to the device of ``scores``). None uses the
            global generator.
        row_draws: which rows of a global batch the ``B`` rows are (``torchrun``): ``Z`` is
            then those rows of the global batch's draw (:class:`advmask.row_draws.RowDraws`).
        num_samples: M >= 1, perturbations per row.
        sigma: noise scale > 0.

    Returns:
        (B, T) soft mask in ``[0, 1]`` in the dtype of ``scores`` (1 = drop), multiples of
        ``1/M``, exactly 0 off ``eligible``; each row sums to ``k[b]``.

    Raises:
        ValueError: if ``num_samples`` < 1 or ``sigma`` is not a finite float > 0.

    Example:
        >>> soft = perturbed(torch.tensor([[0.0, 1.0, 2.0]]), torch.tensor([1]),
        ...                  torch.ones(1, 3, dtype=torch.bool), num_samples=4, sigma=0.1,
        ...                  generator=torch.Generator().manual_seed(0))
        >>> soft
        tensor([[1., 0., 0.]])
    """
    num_samples = check_int(num_samples, "num_samples")
    sigma = check_positive(sigma, "sigma")
    batch, length = scores.shape
    device = scores.device if generator is None else generator.device
    draw = torch.randn if row_draws is None else row_draws.randn
    noise = draw(
        (batch, num_samples, length), generator=generator, device=device, dtype=scores.dtype
    ).to(scores.device)
    noise = torch.where(eligible.unsqueeze(1), noise, 0.0)
    return _PerturbedBottomK.apply(scores, noise, k, eligible, sigma)[0]
