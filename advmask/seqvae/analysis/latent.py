"""What the latent space encodes: interpolation, neighbourhoods and prior samples.

* :func:`interpolate` (paper Table 3): decode along the line between the posterior means of
  two sentences.
* :func:`neighbourhood` (paper Table 8): decode codes drawn from one sentence's posterior.
* :func:`prior_samples` (paper Table 7): decode codes drawn from the prior ``N(0, I)``.

Each returns the latent codes with their :class:`~advmask.seqvae.analysis.decoding.Decoded`
text, greedy or sampled (see :func:`~advmask.seqvae.analysis.decoding.decode`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from advmask.checks import check_int, check_positive
from advmask.seqvae.analysis.decoding import Decoded, decode
from advmask.seqvae.data.batching import collate
from advmask.seqvae.vae import SequenceVAE


@dataclass(frozen=True)
class LatentWalk:
    """Latent codes and what they decode to.

    Attributes:
        z: (N, D) float latent codes.
        decoded: the :class:`~advmask.seqvae.analysis.decoding.Decoded` sequence of each code.
        weights: (N,) float interpolation weights ``t`` (``z = (1 - t) mu_a + t mu_b``), or
            None when the codes are samples.
    """

    z: Tensor
    decoded: Decoded
    weights: Tensor | None = None


@torch.no_grad()
def posterior_means(model: SequenceVAE, sequences: Sequence[Sequence[int]]) -> Tensor:
    """Posterior means of word-id sequences, in the given order.

    Args:
        model: the sequence VAE.
        sequences: word ids of each sentence, without BOS/EOS.

    Returns:
        (N, D) float posterior means, on the device of the model's parameters.
    """
    batch = collate(sequences)
    device = next(model.parameters()).device
    mean, _ = model.posterior(batch.tokens.to(device), batch.lengths.to(device))
    return mean


@torch.no_grad()
def interpolate(
    model: SequenceVAE,
    source: Sequence[int],
    target: Sequence[int],
    num_steps: int = 5,
    *,
    max_length: int = 40,
    sample: bool = False,
    generator: torch.Generator | None = None,
) -> LatentWalk:
    """Decode evenly spaced points between the posterior means of two sentences.

    Args:
        model: the sequence VAE.
        source: word ids of the first sentence (without BOS/EOS); ``t = 0``.
        target: word ids of the second sentence; ``t = 1``.
        num_steps: points on the line, both ends included, >= 2.
        max_length: most words per decoded sentence.
        sample: sample the words instead of taking the arg-max.
        generator: random generator of the sampled words.

    Returns:
        A :class:`LatentWalk` with ``weights`` ``0, 1/(n-1), ..., 1``.
    """
    check_int(num_steps, "num_steps", 2)
    means = posterior_means(model, [source, target])
    weights = torch.linspace(0.0, 1.0, num_steps, device=means.device, dtype=means.dtype)
    # Written as a + t (b - a) would not reproduce b exactly at t = 1 in floating point.
    z = (1 - weights).unsqueeze(1) * means[0] + weights.unsqueeze(1) * means[1]
    decoded = decode(model, z, max_length=max_length, sample=sample, generator=generator)
    return LatentWalk(z=z, decoded=decoded, weights=weights)


@torch.no_grad()
def neighbourhood(
    model: SequenceVAE,
    sequence: Sequence[int],
    num_samples: int = 5,
    *,
    scale: float = 1.0,
    max_length: int = 40,
    sample: bool = False,
    generator: torch.Generator | None = None,
) -> LatentWalk:
    """Decode codes drawn around one sentence: ``z = mu + scale * sigma * eps``.

    Args:
        model: the sequence VAE.
        sequence: word ids of the sentence (without BOS/EOS).
        num_samples: codes to draw, >= 1.
        scale: > 0; 1 samples the posterior ``q(z|x)``, smaller values stay closer to its mean.
        max_length: most words per decoded sentence.
        sample: sample the words instead of taking the arg-max.
        generator: random generator of the codes (and of sampled words).

    Returns:
        A :class:`LatentWalk` (``weights`` None).
    """
    check_int(num_samples, "num_samples", 1)
    check_positive(scale, "scale")
    batch = collate([sequence])
    device = next(model.parameters()).device
    mean, logvar = model.posterior(batch.tokens.to(device), batch.lengths.to(device))
    noise = torch.randn(
        (num_samples, mean.shape[1]), generator=generator, device=device, dtype=mean.dtype
    )
    z = mean + scale * torch.exp(0.5 * logvar) * noise
    decoded = decode(model, z, max_length=max_length, sample=sample, generator=generator)
    return LatentWalk(z=z, decoded=decoded)


@torch.no_grad()
def prior_samples(
    model: SequenceVAE,
    num_samples: int = 10,
    *,
    max_length: int = 40,
    sample: bool = True,
    generator: torch.Generator | None = None,
) -> LatentWalk:
    """Decode codes drawn from the prior ``N(0, I)`` (unconditional samples).

    Args:
        model: the sequence VAE.
        num_samples: codes to draw, >= 1.
        max_length: most words per decoded sentence.
        sample: sample the words (the default, as the paper) instead of the arg-max.
        generator: random generator of the codes and of the sampled words.

    Returns:
        A :class:`LatentWalk` (``weights`` None).
    """
    check_int(num_samples, "num_samples", 1)
    parameter = next(model.parameters())
    latent_dim = model.decoder.latent_dim
    z = torch.randn(
        (num_samples, latent_dim),
        generator=generator,
        device=parameter.device,
        dtype=parameter.dtype,
    )
    decoded = decode(model, z, max_length=max_length, sample=sample, generator=generator)
    return LatentWalk(z=z, decoded=decoded)
