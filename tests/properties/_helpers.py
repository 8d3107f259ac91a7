"""Oracles and fixtures that the property tests share with the example-based tests.

Each is used both by a property test in tests/properties/ and by an example-based test of the
same module in tests/ or tests/seqvae/, so it is defined once here and imported from both.
"""

from __future__ import annotations

import functools
import warnings
from fractions import Fraction

import scipy.stats
import torch

from advmask.relaxations import RELAXATIONS
from advmask.seqvae.factory import ModelSpec, build_sequence_vae
from advmask.seqvae.schedules import free_bits_kl
from advmask.seqvae.vae import SequenceVAE


# --------------------------------------------------------------------------------------------
# advmask.budget
# --------------------------------------------------------------------------------------------
def reference_k(rate: float, n: int) -> int:
    """Exact-decimal half-up: floor(Fraction(str(rate)) * n + 1/2)."""
    exact = Fraction(str(rate)) * n + Fraction(1, 2)
    return min(max(exact.numerator // exact.denominator, 0), n)


# --------------------------------------------------------------------------------------------
# advmask.regularizer
# --------------------------------------------------------------------------------------------
def random_gaussians(batch: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    mean = 2 * torch.randn(batch, length, dtype=torch.float64, generator=generator)
    std = torch.exp(torch.randn(batch, length, dtype=torch.float64, generator=generator))
    return mean, std


# --------------------------------------------------------------------------------------------
# advmask.relaxations
# --------------------------------------------------------------------------------------------
# Read at collection, after ``import advmask`` registered the built-in relaxations.
NAMES = sorted(RELAXATIONS)


# --------------------------------------------------------------------------------------------
# advmask.seqvae.metrics
# --------------------------------------------------------------------------------------------
F64 = torch.float64


def _posterior(num_rows: int, latent_dim: int, seed: int = 0, dtype=F64, scale: float = 1.0):
    generator = torch.Generator().manual_seed(seed)
    mean = scale * torch.randn(num_rows, latent_dim, generator=generator, dtype=F64)
    logvar = 0.5 * torch.randn(num_rows, latent_dim, generator=generator, dtype=F64) - 0.5
    return mean.to(dtype), logvar.to(dtype)


# --------------------------------------------------------------------------------------------
# advmask.seqvae.schedules
# --------------------------------------------------------------------------------------------
def readme_loop(n: int, start: float, stop: float, n_cycle: int, ratio: float) -> list[float]:
    """The reference ``frange_cycle_linear`` loop (0-based entries, float accumulation)."""
    weights = [stop] * n
    period = n / n_cycle
    increment = (stop - start) / (period * ratio)
    for cycle in range(n_cycle):
        value, i = start, 0
        while value <= stop and int(i + cycle * period) < n:
            weights[int(i + cycle * period)] = value
            value += increment
            i += 1
    return weights


def _grad(kl: torch.Tensor, threshold: float, mode: str) -> torch.Tensor:
    kl = kl.clone().requires_grad_(True)
    free_bits_kl(kl, threshold, mode).backward()
    assert kl.grad is not None
    return kl.grad


# --------------------------------------------------------------------------------------------
# advmask.seqvae.analysis (next-word PMI, Spearman)
# --------------------------------------------------------------------------------------------
VOCAB = 12


@functools.cache
def real_model(decoder: str, fill: str) -> SequenceVAE:
    torch.manual_seed(0)
    spec = ModelSpec(
        vocab_size=VOCAB,
        embedding_dim=6,
        hidden_size=8,
        latent_dim=3,
        decoder=decoder,
        fill=fill,
        dropout="adversarial",
        rate=0.4,
        adversary_embedding_dim=4,
        adversary_hidden_size=4,
        encoder_init="pytorch",
        transformer_heads=2,
        transformer_max_length=16,
    )
    model = build_sequence_vae(spec).double()
    with torch.no_grad():
        # Larger weights than the initialisation, so that PMI is far from 0 and varies.
        for parameter in model.decoder.parameters():
            parameter.mul_(30.0 if decoder != "transformer" else 5.0)
        if model.drop_vector is not None:
            model.drop_vector.normal_(0, 1)
    return model


def scipy_spearman(x, y) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConstantInputWarning: the NaN is what is compared
        return float(scipy.stats.spearmanr(x, y).statistic)
