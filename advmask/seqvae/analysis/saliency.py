"""Which words the masker drops: per-token drop probabilities of a trained model (paper Table 2).

The adversary's scores are Gaussian per position, and the ``K`` smallest sampled scores are
dropped, so ``P(token t dropped)`` has no closed form; it is estimated by sampling the score
distribution (:func:`advmask.maskers.drop_probabilities`). For uniform word dropout it is exact:
``K / n`` at every eligible position (``rate`` in Bernoulli mode).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from advmask.checks import check_tokens_lengths
from advmask.maskers import AdversarialMasker, UniformMasker, drop_probabilities
from advmask.seqvae.data.vocab import Vocabulary
from advmask.seqvae.decoder_inputs import decoder_inputs
from advmask.seqvae.vae import SequenceVAE


@dataclass(frozen=True)
class Saliency:
    """Drop probabilities of the decoder inputs of a batch, aligned with ``tokens``.

    Position ``t`` refers to ``tokens[:, t]`` as a decoder *input*: BOS, EOS and padding are
    never dropped and have probability 0.

    Attributes:
        tokens: (B, T) int64 ``[BOS, words, EOS, PAD..]``.
        lengths: (B,) int64 non-padding tokens per row (``L_b + 2``).
        probability: (B, T) float ``P(dropped)`` in [0, 1]; row ``b`` sums to ``k[b]`` (exactly
            for uniform dropout, up to Monte-Carlo error otherwise).
        sampled: (B, T) bool, one draw of the masker (True = dropped; ``k[b]`` per row).
        k: (B,) int64 number of words dropped per row.
        eligible: (B, T) bool, True at the words ``w_1..w_L``.
        num_samples: Monte-Carlo samples behind ``probability`` (0 when it is exact).
    """

    tokens: Tensor
    lengths: Tensor
    probability: Tensor
    sampled: Tensor
    k: Tensor
    eligible: Tensor
    num_samples: int

    @property
    def standard_error(self) -> Tensor:
        """(B, T) Monte-Carlo standard error ``sqrt(p (1 - p) / S)`` (0 when exact)."""
        if self.num_samples == 0:
            return torch.zeros_like(self.probability)
        p = self.probability
        return torch.sqrt(p * (1 - p) / self.num_samples)

    @property
    def uniform(self) -> Tensor:
        """(B, T) ``k / n`` at eligible positions: what uniform dropout would give, 0 elsewhere."""
        n = self.eligible.sum(1, keepdim=True).clamp_min(1)
        return torch.where(self.eligible, self.k.unsqueeze(1) / n, 0.0)

    def records(self, vocab: Vocabulary) -> list[dict[str, Any]]:
        """Each sentence as ``saliency.json`` holds it: its ``words``, their ``probability`` of
        being dropped (4 decimals), the ``sampled`` draw (True = dropped) and ``k``."""
        records = []
        for row in range(self.tokens.shape[0]):
            words = slice(1, int(self.lengths[row]) - 1)  # w_1..w_L
            records.append(
                {
                    "words": vocab.decode(self.tokens[row, words].tolist()),
                    "probability": [round(float(p), 4) for p in self.probability[row, words]],
                    "sampled": self.sampled[row, words].tolist(),
                    "k": int(self.k[row]),
                }
            )
        return records


@torch.no_grad()
def token_saliency(
    model: SequenceVAE,
    tokens: Tensor,
    lengths: Tensor,
    *,
    num_samples: int = 1000,
    generator: torch.Generator | None = None,
) -> Saliency:
    """``P(dropped)`` of every word of a batch under the model's masker.

    Args:
        model: a sequence VAE with an :class:`~advmask.maskers.AdversarialMasker` or
            :class:`~advmask.maskers.UniformMasker`.
        tokens: (B, T) int64 ``[BOS, words, EOS, PAD..]``.
        lengths: (B,) int64 ``L_b + 2``.
        num_samples: score samples of the Monte-Carlo estimate (adversarial masker); the
            standard error of each probability is at most ``0.5 / sqrt(num_samples)``.
        generator: random generator of the score noise and of the sampled mask.

    Returns:
        A :class:`Saliency`.

    Raises:
        ValueError: if the model has no masker (nothing is ever dropped), or a uniform masker
            in Bernoulli mode (no fixed K).
    """
    tokens, lengths = check_tokens_lengths(tokens, lengths)
    masker = model.masker
    if masker is None:
        raise ValueError("model.masker is None: a model trained without word dropout drops nothing")
    if not isinstance(masker, (AdversarialMasker, UniformMasker)):
        raise TypeError(
            f"model.masker must be an AdversarialMasker or UniformMasker, got "
            f"{type(masker).__name__}"
        )
    if isinstance(masker, UniformMasker) and masker.mode != "exact":
        raise ValueError(
            f"model.masker.mode must be 'exact' (K words per sentence), got {masker.mode!r}"
        )
    inputs = decoder_inputs(tokens, lengths)
    # K and the scores' mean and std, without drawing noise (in either mode).
    out = masker.mean_mask(inputs.ids, inputs.lengths, protected=inputs.protected)
    mean, std = out.mean.float(), out.std.float()
    if isinstance(masker, AdversarialMasker):
        probability = drop_probabilities(mean, std, out.k, out.eligible, num_samples, generator)
        used_samples = num_samples
    else:
        # Exactly-K uniform dropout drops a uniform K-subset: P = K / n, no sampling needed.
        n = out.eligible.sum(1, keepdim=True).clamp_min(1)
        probability = torch.where(out.eligible, out.k.unsqueeze(1) / n, 0.0)
        used_samples = 0
    # One draw of the masker itself (uniform: mean 0, std 1 scores, a uniform K-subset).
    sampled = drop_probabilities(mean, std, out.k, out.eligible, 1, generator)

    def aligned(values: Tensor) -> Tensor:  # (B, T - 1) inputs -> (B, T), last column 0
        return torch.cat([values, values.new_zeros(values.shape[0], 1)], dim=1)

    return Saliency(
        tokens=tokens,
        lengths=lengths,
        probability=aligned(probability),
        sampled=aligned(sampled) > 0.5,
        k=out.k,
        eligible=aligned(out.eligible),
        num_samples=used_samples,
    )
