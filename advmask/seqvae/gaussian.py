"""The diagonal Gaussian of a sequence VAE: its log-density and its KL to the prior.

Notation: ``q(z|x) = N(mean, diag(exp(logvar)))`` with ``D`` latent dimensions and prior
``p(z) = N(0, I)``; all values in nats. The training loss reads the KL
(:class:`~advmask.seqvae.vae.SequenceVAE`), the evaluation the densities
(:mod:`advmask.seqvae.metrics`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from advmask.checks import FLOAT_DTYPES, check_tensor

__all__ = [
    "check_posterior",
    "gaussian_kl",
    "gaussian_kl_per_dimension",
    "log_normal_diag",
    "log_standard_normal",
]

_LOG_2PI = math.log(2.0 * math.pi)


def check_posterior(mean: object, logvar: object) -> tuple[Tensor, Tensor]:
    """Check a posterior's parameters at a public entry point.

    Args:
        mean: (N, D) float posterior means.
        logvar: (N, D) float posterior log-variances.

    Returns:
        ``(mean, logvar)`` as given.

    Raises:
        ValueError: naming the argument, if either is not an (N, D) float tensor, or they
            differ in shape or device.
        TypeError: if their dtypes differ.
    """
    mean = check_tensor("mean", mean, ndim=2, dtypes=FLOAT_DTYPES)
    logvar = check_tensor("logvar", logvar, ndim=2, dtypes=FLOAT_DTYPES)
    if logvar.shape != mean.shape:
        raise ValueError(
            f"logvar must have the shape of mean {tuple(mean.shape)}, got {tuple(logvar.shape)}"
        )
    if logvar.dtype != mean.dtype:
        raise TypeError(f"logvar must have the dtype of mean ({mean.dtype}), got {logvar.dtype}")
    if logvar.device != mean.device:
        raise ValueError(f"logvar is on {logvar.device} but mean is on {mean.device}")
    return mean, logvar


# --------------------------------------------------------------------------------------------
# Gaussian densities and KL
# --------------------------------------------------------------------------------------------
def gaussian_kl_per_dimension(mean: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mean_d, exp(logvar_d)) || N(0, 1))`` for every row and latent dimension.

    ``KL_{n,d} = (mean_{n,d}^2 + exp(logvar_{n,d}) - logvar_{n,d} - 1) / 2``, computed with
    ``expm1`` so that it stays accurate (and exactly 0) near the prior. This is the input of the
    free-bits objective (:func:`advmask.seqvae.schedules.free_bits_kl`).

    Args:
        mean: (N, D) float posterior means.
        logvar: (N, D) float posterior log-variances, same dtype and device.

    Returns:
        (N, D) tensor of the same dtype, >= 0; differentiable.

    Example:
        >>> gaussian_kl_per_dimension(torch.tensor([[0.0, 1.0]]), torch.zeros(1, 2))
        tensor([[0.0000, 0.5000]])
    """
    mean, logvar = check_posterior(mean, logvar)
    # expm1(l) - l rather than exp(l) - l - 1: no cancellation for small |l|.
    return 0.5 * (mean.square() + (torch.expm1(logvar) - logvar))


def gaussian_kl(mean: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mean, diag(exp(logvar))) || N(0, I))`` per row: the KL term of the ELBO.

    ``KL_n = 1/2 sum_d (mean_{n,d}^2 + exp(logvar_{n,d}) - logvar_{n,d} - 1)``.

    Args:
        mean: (N, D) float posterior means.
        logvar: (N, D) float posterior log-variances, same dtype and device.

    Returns:
        (N,) tensor of the same dtype, >= 0; differentiable. Rows with ``D = 0`` give 0.

    Example:
        >>> gaussian_kl(torch.tensor([[0.0, 0.0], [1.0, 2.0]]), torch.zeros(2, 2))
        tensor([0.0000, 2.5000])
    """
    return gaussian_kl_per_dimension(mean, logvar).sum(-1)


def log_normal_diag(z: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """``log N(z; mean, diag(exp(logvar)))``, summed over the last dimension.

    ``sum_d -(log(2 pi) + logvar_d + (z_d - mean_d)^2 exp(-logvar_d)) / 2``. The three tensors
    broadcast against each other (for example ``z`` (S, N, D) against ``mean`` (N, D)).

    Args:
        z: (..., D) float points.
        mean: (..., D) float means, broadcastable with ``z``.
        logvar: (..., D) float log-variances, broadcastable with ``z``.

    Returns:
        Tensor of the broadcast shape without its last dimension.

    Example:
        >>> round(float(log_normal_diag(torch.zeros(1), torch.zeros(1), torch.zeros(1))), 6)
        -0.918939
    """
    for name, value in (("z", z), ("mean", mean), ("logvar", logvar)):
        if not isinstance(value, Tensor) or value.ndim == 0:
            raise ValueError(
                f"{name} must be a tensor with a last (latent) dimension, got {value!r}"
            )
    if not (z.shape[-1] == mean.shape[-1] == logvar.shape[-1]):
        raise ValueError(
            f"z, mean and logvar must share the last dimension, got shapes {tuple(z.shape)}, "
            f"{tuple(mean.shape)}, {tuple(logvar.shape)}"
        )
    return -0.5 * (_LOG_2PI + logvar + (z - mean).square() * torch.exp(-logvar)).sum(-1)


def log_standard_normal(z: Tensor) -> Tensor:
    """``log N(z; 0, I)``, summed over the last dimension: ``sum_d -(log(2 pi) + z_d^2) / 2``.

    Args:
        z: (..., D) float points.

    Returns:
        Tensor of shape ``z.shape[:-1]``.

    Example:
        >>> round(float(log_standard_normal(torch.zeros(2))), 6)
        -1.837877
    """
    if not isinstance(z, Tensor) or z.ndim == 0:
        raise ValueError(f"z must be a tensor with a last (latent) dimension, got {z!r}")
    return -0.5 * (_LOG_2PI + z.square()).sum(-1)
