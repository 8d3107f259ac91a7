"""Result types returned by the maskers."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class MaskerOutput:
    """What a masker returns for one batch.

    Attributes:
        mask: (B, T) float, 1.0 = drop the input at that position. Row ``b`` has exactly
            ``k[b]`` ones, all at eligible positions. For the adversarial masker in training
            mode it carries the straight-through gradient, reversed. All zero in eval mode
            (a masker is then the identity, as ``nn.Dropout``).
        k: (B,) int64 number of dropped positions per row (0 in eval mode).
        regularizer: scalar tensor >= 0 to add to the loss (0 for uniform dropout and in eval
            mode).
        mean: (B, T) float mean of the per-position score distribution.
        std: (B, T) float standard deviation of the per-position score distribution.
        eligible: (B, T) bool, True where a position could be dropped.
    """

    mask: Tensor
    k: Tensor
    regularizer: Tensor
    mean: Tensor
    std: Tensor
    eligible: Tensor
