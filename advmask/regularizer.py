"""The adversary's regulariser: KL of the per-position score distribution to N(0, 1).

``Omega = kl_weight * mean_b sum_{t eligible} KL(N(mean_bt, std_bt^2) || N(0, 1))``: a sum over
the eligible positions of a sequence and a mean over the batch, the same reduction as the
per-sentence VAE loss, so ``kl_weight`` is "per sentence". As ``kl_weight`` grows the
adversary is pulled to N(0, 1) scores, whose K smallest form a uniformly random K-subset: the
adversarial masker becomes exactly-K uniform word dropout.
"""

from __future__ import annotations

import torch
from torch import Tensor

from advmask.checks import FLOAT_DTYPES, check_mask_like, check_non_negative, check_tensor


def gaussian_kl_to_standard(mean: Tensor, std: Tensor) -> Tensor:
    """Elementwise ``KL(N(mean, std^2) || N(0, 1)) = (mean^2 + std^2 - 1) / 2 - log(std)``.

    Args:
        mean: float tensor of any shape.
        std: float tensor broadcastable with ``mean``, > 0.

    Returns:
        Tensor of the broadcast shape, >= 0, zero exactly where ``mean = 0`` and ``std = 1``.

    Example:
        >>> gaussian_kl_to_standard(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 1.0]))
        tensor([0.0000, 0.5000])
    """
    return 0.5 * (mean.square() + std.square() - 1.0) - torch.log(std)


def score_kl(mean: Tensor, std: Tensor, eligible: Tensor, kl_weight: float = 1.0) -> Tensor:
    """``kl_weight * mean_b sum_{t eligible} KL(N(mean, std^2) || N(0, 1))``.

    Only eligible positions are read: values elsewhere (including NaN and inf) change neither
    the value nor the gradient, which is exactly 0 there (``torch.where`` on the inputs, not a
    multiplication by the mask).

    Args:
        mean: (B, T) float score means.
        std: (B, T) float score standard deviations, > 0 at eligible positions.
        eligible: (B, T) bool, True where a position may be dropped.
        kl_weight: ``lambda >= 0``.

    Returns:
        Scalar tensor >= 0 in the dtype of ``mean`` (0 for an empty batch).

    Raises:
        ValueError: if ``kl_weight`` is negative or not finite, or on shape mismatches.

    Example:
        >>> mean = torch.tensor([[1.0, 2.0], [3.0, float("nan")]])
        >>> eligible = torch.tensor([[True, True], [True, False]])
        >>> score_kl(mean, torch.ones_like(mean), eligible, kl_weight=2.0)  # 2 * (2.5 + 4.5) / 2
        tensor(7.)
    """
    kl_weight = check_non_negative(kl_weight, "kl_weight")
    mean = check_tensor("mean", mean, ndim=2, dtypes=FLOAT_DTYPES)
    std = check_tensor("std", std, ndim=2, dtypes=FLOAT_DTYPES)
    if std.shape != mean.shape:
        raise ValueError(
            f"std must have the shape of mean {tuple(mean.shape)}, got {tuple(std.shape)}"
        )
    eligible = check_mask_like("eligible", eligible, mean)
    # Neutral values off the eligible set (KL(N(0,1) || N(0,1)) = 0) so that NaN/inf there
    # never reach the arithmetic, in the forward or the backward pass.
    safe_mean = torch.where(eligible, mean, torch.zeros_like(mean))
    safe_std = torch.where(eligible, std, torch.ones_like(std))
    kl = gaussian_kl_to_standard(safe_mean, safe_std)
    kl = torch.where(eligible, kl, torch.zeros_like(kl))
    # sum / B is mean_b sum_t; max(B, 1) makes an empty batch 0 rather than NaN.
    return kl_weight * kl.sum() / max(mean.shape[0], 1)
