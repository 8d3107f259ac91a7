"""Which decoder inputs may be dropped: the one rule of the sequence VAE.

A batch is ``tokens`` (B, T) ``[BOS, w_1..w_L, EOS, PAD..]`` with ``lengths`` ``L_b + 2``. The
decoder reads ``tokens[:, :-1]`` and predicts ``tokens[:, 1:]``; of its inputs, the first
``lengths - 1`` are real (BOS and the words), and BOS is never dropped (it tells the decoder a
sentence starts). So the droppable inputs are the words ``w_1..w_L``: never BOS, EOS or padding.
Which positions of a row that leaves is the core's rule,
:func:`advmask.budget.eligible_positions`; the masker applies it to what
:func:`decoder_inputs` returns. The training step (:class:`~advmask.seqvae.vae.SequenceVAE`),
the saliency estimate and the PMI analysis all read this rule from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from advmask.budget import eligible_positions

__all__ = ["DecoderInputs", "decoder_inputs", "droppable_inputs"]


@dataclass(frozen=True)
class DecoderInputs:
    """The decoder's inputs of a batch, and what a masker needs to know which it may drop.

    Attributes:
        ids: (B, T - 1) int64 ``tokens[:, :-1]``: BOS, the words, then EOS and padding.
        lengths: (B,) int64 ``L_b + 1`` real inputs per row (BOS and the words).
        protected: (T - 1,) bool, True at position 0 (BOS): never dropped.
    """

    ids: Tensor
    lengths: Tensor
    protected: Tensor

    def droppable(self) -> Tensor:
        """(B, T - 1) bool, True at the inputs a masker may drop (the words)."""
        return eligible_positions(self.lengths, self.ids.shape[1], protected=self.protected)


def decoder_inputs(tokens: Tensor, lengths: Tensor) -> DecoderInputs:
    """The decoder inputs of a batch with the lengths and protection a masker is called with.

    Args:
        tokens: (B, T) int64 ``[BOS, w_1..w_L, EOS, PAD..]``.
        lengths: (B,) int64 ``L_b + 2``.

    Returns:
        A :class:`DecoderInputs`; pass ``(ids, lengths, protected=protected)`` to a masker.
    """
    ids = tokens[:, :-1]
    is_bos = torch.arange(ids.shape[1], device=tokens.device) == 0
    return DecoderInputs(ids=ids, lengths=lengths - 1, protected=is_bos)


def droppable_inputs(tokens: Tensor, lengths: Tensor) -> Tensor:
    """The decoder inputs a masker may drop, aligned with ``tokens``: the words ``w_1..w_L``.

    Args:
        tokens: (B, T) int64 ``[BOS, w_1..w_L, EOS, PAD..]``.
        lengths: (B,) int64 ``L_b + 2``.

    Returns:
        (B, T) bool, True at ``tokens[b, 1..L_b]``; False at BOS, EOS, padding (and so always
        in the last column, which is never a decoder input).

    Example:
        >>> droppable_inputs(torch.tensor([[1, 5, 6, 2], [1, 7, 2, 0]]), torch.tensor([4, 3]))
        tensor([[False,  True,  True, False],
                [False,  True, False, False]])
    """
    return F.pad(decoder_inputs(tokens, lengths).droppable(), (0, 1), value=False)
