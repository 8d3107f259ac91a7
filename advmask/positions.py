"""Which positions of a :class:`~advmask.embedding.MaskedEmbedding` call may be dropped.

A model calls the wrapper with token ids alone; the valid positions then come from what
:meth:`~advmask.embedding.MaskedEmbedding.valid_inputs` set (:class:`ValidInputs`), else from
the padding id (:func:`lengths_from_padding`). Eligibility itself (``t < lengths[b]`` and not
protected) is :func:`advmask.budget.eligible_positions`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class ValidInputs:
    """The positions set by :meth:`~advmask.embedding.MaskedEmbedding.valid_inputs`."""

    lengths: Tensor | None
    protected: Tensor | None
    attention_mask: Tensor | None

    @property
    def width(self) -> int | None:
        """The length ``T`` of the ids these positions describe, if they fix one."""
        if self.attention_mask is not None:
            return self.attention_mask.shape[1]
        if self.protected is not None:
            return self.protected.shape[-1]
        return None

    def resolve(self, tokens: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """``(lengths (B,), protected (T,) | (B, T) bool | None)`` for a call on ``tokens``;
        ``(None, None)`` for ids of another length, which these positions do not describe."""
        batch, length = tokens.shape
        if self.width is not None and self.width != length:
            return None, None
        for name, given in (("lengths", self.lengths), ("attention_mask", self.attention_mask)):
            if given is not None and given.shape[0] != batch:
                raise ValueError(
                    f"{name} must have one row per row of the token ids ({batch}), got shape "
                    f"{tuple(given.shape)}"
                )
        lengths, protected = self.lengths, self.protected
        if lengths is None:
            lengths = torch.full((batch,), length, dtype=torch.int64, device=tokens.device)
        if self.attention_mask is not None:
            padding = (self.attention_mask == 0).to(tokens.device)
            protected = padding if protected is None else protected.to(tokens.device) | padding
        return lengths, protected


def lengths_from_padding(
    tokens: Tensor, padding_idx: int | None, protected: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    """Lengths that exclude trailing padding; padding ids elsewhere become protected."""
    batch, length = tokens.shape
    if padding_idx is None:
        return torch.full((batch,), length, dtype=torch.int64, device=tokens.device), protected
    is_padding = tokens == padding_idx
    # The run of padding at the end of each row: a cumulative product from the right.
    trailing = is_padding.flip(1).to(torch.int64).cumprod(1).sum(1)
    if protected is not None and protected.dtype == torch.bool:
        protected = protected | is_padding
    elif protected is None:
        protected = is_padding
    # (a non-bool ``protected`` is passed on unchanged for the masker to reject)
    return length - trailing, protected
