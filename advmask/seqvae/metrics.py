"""Evaluation metrics of a sequence VAE with a diagonal-Gaussian posterior (He et al. 2019).

Notation: ``q(z|x) = N(mean, diag(exp(logvar)))`` and prior ``p(z) = N(0, I)``, with ``D`` latent
dimensions. All values are in nats. Conventions follow He et al. (2019),
``jxhe/vae-lagging-encoder``, except where that code departs from the estimators' definitions:

* the importance-weighted estimate uses ``log p(z_s) - log q(z_s|x)`` for every sample (not the
  analytic KL) and combines chunks of samples with one log-sum-exp over all of them;
* the perplexity denominator counts words plus one EOS per sequence (BOS is not predicted);
* mutual information uses the aggregate posterior of the *joint* ``z``, never a product of
  per-dimension aggregates (which adds the total correlation of ``q(z)`` to the estimate), and
  evaluates the own term ``log q(z_i|x_i)`` at the sample instead of its closed-form
  expectation, so that no draw exceeds its ceiling ``log N``.

The densities and the KL of the Gaussian itself are in :mod:`advmask.seqvae.gaussian`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from einops import rearrange
from torch import Tensor

from advmask.checks import FLOAT_DTYPES, check_choice, check_int, check_tensor
from advmask.seqvae.gaussian import check_posterior, log_normal_diag, log_standard_normal

_LOG_2PI = math.log(2.0 * math.pi)

__all__ = [
    "MI_ESTIMATORS",
    "active_units",
    "importance_weighted_log_likelihood",
    "mutual_information",
    "mutual_information_ceiling",
    "perplexity",
]

MI_ESTIMATORS = ("full", "batch")
"""Names accepted by :func:`mutual_information`: the aggregate posterior of the whole set, or of
consecutive minibatches (He et al.)."""


def _check_generator(generator: object, device: torch.device) -> torch.Generator | None:
    if generator is None:
        return None
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {generator!r}")
    if generator.device.type != device.type:
        raise ValueError(
            f"generator is on {generator.device} but the posterior is on {device}; "
            "draws are made on the posterior's device"
        )
    return generator


# --------------------------------------------------------------------------------------------
# Importance-weighted log-likelihood
# --------------------------------------------------------------------------------------------
def importance_weighted_log_likelihood(
    log_likelihood: Callable[[Tensor], Tensor],
    mean: Tensor,
    logvar: Tensor,
    num_samples: int = 500,
    chunk_size: int = 100,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Importance-weighted estimate of ``log p(x)`` per sequence (Burda et al.).

    ``log p_S(x) = logsumexp_s [log p(x|z_s) + log p(z_s) - log q(z_s|x)] - log S`` with
    ``z_s ~ q(z|x)`` i.i.d. The samples are decoded ``chunk_size`` at a time, for all ``N``
    sequences at once; the log-weights of all chunks are concatenated and reduced by ONE
    log-sum-exp (averaging per-chunk estimates would be a different, lower estimate).

    ``S = 1`` gives ``log w(z_1)``, a one-sample ELBO; ``E[log p_S]`` increases with ``S`` towards
    ``log p(x)``. The noise of all samples is drawn at once, ``(S, N, D)`` in ``mean``'s dtype,
    so for a given generator state the result does not depend on ``chunk_size``.

    Args:
        log_likelihood: function of ``z`` (S_chunk, N, D) returning (S_chunk, N)
            ``log p(x_n | z[s, n])`` (for example the decoder's summed token log-probabilities,
            EOS included).
        mean: (N, D) float posterior means of the ``N`` sequences.
        logvar: (N, D) float posterior log-variances, same dtype and device.
        num_samples: ``S >= 1`` importance samples per sequence (He et al.: 500).
        chunk_size: samples per call of ``log_likelihood`` (>= 1); trades memory for speed.
        generator: random generator on ``mean``'s device; None uses the global one.

    Returns:
        (N,) tensor of ``log p_S(x_n)`` in the dtype of the log-weights. NLL_IW is its negated
        mean; it is differentiable if the inputs are.

    Example:
        >>> # x = z + N(0, 1) noise, observed x = 0: the exact posterior N(0, 1/2) gives log p(x).
        >>> def log_lik(z):
        ...     return log_normal_diag(torch.zeros_like(z), z, torch.zeros_like(z))
        >>> estimate = importance_weighted_log_likelihood(
        ...     log_lik, torch.zeros(1, 1), torch.full((1, 1), math.log(0.5)), num_samples=7)
        >>> round(float(estimate), 5), round(-0.5 * math.log(2 * math.pi * 2.0), 5)
        (-1.26551, -1.26551)
    """
    if not callable(log_likelihood):
        raise TypeError(f"log_likelihood must be callable, got {log_likelihood!r}")
    mean, logvar = check_posterior(mean, logvar)
    num_samples = check_int(num_samples, "num_samples", 1)
    chunk_size = check_int(chunk_size, "chunk_size", 1)
    generator = _check_generator(generator, mean.device)
    num_rows, latent_dim = mean.shape
    if num_rows == 0:
        return mean.new_zeros(0)
    noise = torch.randn(
        (num_samples, num_rows, latent_dim),
        generator=generator,
        dtype=mean.dtype,
        device=mean.device,
    )
    std = torch.exp(0.5 * logvar)
    log_weights = []
    for start in range(0, num_samples, chunk_size):
        z = mean + std * noise[start : start + chunk_size]  # (S_chunk, N, D)
        log_p_x_given_z = log_likelihood(z)
        expected = (z.shape[0], num_rows)
        if not isinstance(log_p_x_given_z, Tensor) or tuple(log_p_x_given_z.shape) != expected:
            got = getattr(log_p_x_given_z, "shape", type(log_p_x_given_z).__name__)
            raise ValueError(
                f"log_likelihood must return a tensor of shape (S_chunk, N) = {expected} for z "
                f"of shape {tuple(z.shape)}, got {got}"
            )
        log_weights.append(
            log_p_x_given_z + log_standard_normal(z) - log_normal_diag(z, mean, logvar)
        )
    # One LSE over all S samples; chunks are only a memory device.
    return torch.logsumexp(torch.cat(log_weights), dim=0) - math.log(num_samples)


# --------------------------------------------------------------------------------------------
# Perplexity
# --------------------------------------------------------------------------------------------
def perplexity(total_nll: float, num_predictions: int) -> float:
    """``exp(total_nll / num_predictions)``: perplexity per predicted token (He et al. 2019).

    Convention: ``num_predictions`` counts every predicted token, i.e. the words of every
    sequence plus one EOS per sequence; BOS is an input only and is not counted. ``total_nll``
    must include the EOS terms (an evaluation that masks EOS out of the NLL but keeps it in the
    denominator reports an optimistic perplexity). With ``total_nll`` the summed ``-ELBO`` the
    result is an upper bound on the model's perplexity; with the summed importance-weighted NLL
    it is the IW perplexity.

    Args:
        total_nll: summed negative log-likelihood in nats over the whole split (a float or a
            0-d tensor).
        num_predictions: ``sum_b (L_b + 1)``, words plus one EOS per sequence; >= 1.

    Returns:
        The perplexity; ``>= 1`` when ``total_nll >= 0``, increasing in ``total_nll``, ``inf``
        on overflow.

    Example:
        >>> # a uniform model over 10 tokens on 2 sequences of 3 and 4 words: 9 predictions
        >>> round(perplexity(9 * math.log(10), num_predictions=3 + 4 + 2), 10)
        10.0
    """
    num_predictions = check_int(num_predictions, "num_predictions", 1)
    if isinstance(total_nll, Tensor):
        if total_nll.numel() != 1:
            raise ValueError(f"total_nll must be a scalar, got shape {tuple(total_nll.shape)}")
        total_nll = float(total_nll)
    if isinstance(total_nll, bool) or not isinstance(total_nll, (int, float)):
        raise TypeError(f"total_nll must be a float, got {total_nll!r}")
    if not math.isfinite(total_nll):
        raise ValueError(f"total_nll must be finite, got {total_nll}")
    try:
        return math.exp(total_nll / num_predictions)
    except OverflowError:
        return math.inf


# --------------------------------------------------------------------------------------------
# Mutual information I_q(x; z)
# --------------------------------------------------------------------------------------------
def _groups(num_rows: int, estimator: str, batch_size: int) -> list[tuple[int, int]]:
    """``(group_size, num_groups)`` pairs: the consecutive groups whose aggregates are used."""
    size = num_rows if estimator == "full" else min(batch_size, num_rows)
    full, rest = divmod(num_rows, size)
    return [(size, full)] + ([(rest, 1)] if rest else [])


def mutual_information_ceiling(
    num_rows: int, estimator: str = "full", batch_size: int = 32
) -> float:
    """Upper bound of every draw of :func:`mutual_information` (so also of its expectation).

    Each group of ``n`` rows contributes at most ``log n``: ``log N`` for ``"full"``; for
    ``"batch"`` the size-weighted mean of ``log n_b`` over the consecutive batches, which is
    ``log batch_size`` when ``batch_size`` divides ``N`` (and ``log N`` when ``batch_size >= N``).

    Args:
        num_rows: ``N >= 1`` posteriors.
        estimator: ``"full"`` or ``"batch"``.
        batch_size: batch size of the ``"batch"`` estimator (>= 1).

    Returns:
        The ceiling in nats.

    Example:
        >>> round(mutual_information_ceiling(1000, "full"), 4), round(math.log(1000), 4)
        (6.9078, 6.9078)
        >>> round(mutual_information_ceiling(64, "batch", batch_size=32), 4)
        3.4657
    """
    num_rows = check_int(num_rows, "num_rows", 1)
    estimator = check_choice(estimator, "estimator", MI_ESTIMATORS)
    batch_size = check_int(batch_size, "batch_size", 1)
    groups = _groups(num_rows, estimator, batch_size)
    return sum(count * size * math.log(size) for size, count in groups) / num_rows


def _pointwise_information(
    z: Tensor, mean: Tensor, logvar: Tensor, noise: Tensor, chunk_size: int
) -> Tensor:
    """``log q(z_i|x_i) - log q_hat(z_i)`` for every row, within one or more groups.

    ``log q_hat(z_i) = logsumexp_j log q(z_i|x_j) - log n`` is the group's aggregate posterior.
    The own term ``log q(z_i|x_i)`` enters both sides as the same number, so each value is at
    most ``log n`` (the sum over j contains the own term).

    Args:
        z, mean, logvar: (G, n, D) float64: G groups of n rows each; ``z`` drawn from the rows'
            own posteriors with standard-normal ``noise`` (G, n, D).
        chunk_size: rows i per block; a block holds (G, chunk, n) values.

    Returns:
        (G, n) float64 pointwise information of each row's ``z``, ``<= log n``.
    """
    group_size, latent_dim = mean.shape[1:]
    precision = torch.exp(-logvar)  # (G, n, D)
    # ||z_i - mean_j||^2_{P_j} = z_i^2 . P_j - 2 z_i . (P_j mean_j) + mean_j^2 . P_j: matmuls, so a
    # block costs chunk x n memory instead of chunk x n x D.
    precision_t = rearrange(precision, "g n d -> g d n")
    scaled_mean_t = rearrange(precision * mean, "g n d -> g d n")
    log_normaliser = logvar.sum(-1) + latent_dim * _LOG_2PI  # (G, n)
    constant = (precision * mean.square()).sum(-1) + log_normaliser
    # The own-posterior term log q(z_i|x_i) exactly, from the noise: the expansion cancels most
    # when |mean| >> std, which is when posteriors are well separated and this term dominates.
    log_q_own = -0.5 * (noise.square().sum(-1) + log_normaliser)  # (G, n)
    out = []
    for start in range(0, group_size, chunk_size):
        z_block = z[:, start : start + chunk_size]  # (G, c, D)
        quad = z_block.square() @ precision_t - 2.0 * (z_block @ scaled_mean_t)  # (G, c, n)
        log_q = -0.5 * (quad + constant.unsqueeze(1))  # log q(z_i | x_j)
        # entries (i, j = start + i) of the block: the same numbers as the numerator below
        own_block = log_q_own[:, start : start + chunk_size]
        torch.diagonal(log_q, offset=start, dim1=-2, dim2=-1).copy_(own_block)
        out.append(own_block - (torch.logsumexp(log_q, dim=-1) - math.log(group_size)))
    return torch.cat(out, dim=1)


def mutual_information(
    mean: Tensor,
    logvar: Tensor,
    estimator: str = "full",
    *,
    batch_size: int = 32,
    chunk_size: int = 512,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> float:
    """Estimate ``I_q(x; z)`` in nats from N posteriors (Hoffman & Johnson 2016).

    With one draw ``z_i ~ q(z|x_i)`` per row and groups ``b`` of consecutive rows,

    ``MI = mean_i [log q(z_i|x_i) - log q_hat_b(z_i)]``, where
    ``log q_hat_b(z) = logsumexp_{j in b} log q(z|x_j) - log n_b``

    is the aggregate posterior of the group, over the JOINT ``z`` (all ``D`` dimensions
    together). The own term ``log q(z_i|x_i)`` is evaluated at the sample, the same number that
    enters the aggregate's sum as ``j = i``; so each row contributes at most ``log n_b`` and every
    draw is at most the ceiling. Its expectation is the negative entropy
    ``-(D log(2 pi) + sum_d (1 + logvar_{i,d})) / 2`` that He et al. use in closed form: the
    expectation is the same, the variance typically lower (for posteriors that ignore ``x``
    the estimate is exactly 0), and the closed form would let a draw exceed the ceiling by the
    chi-square noise of ``z``. Estimators:

    * ``"full"``: one group, the whole set (Li et al., Dieng et al.); ceiling ``log N``.
    * ``"batch"``: consecutive groups of ``batch_size`` rows, the last one possibly smaller, and
      the per-group estimates averaged with weights ``n_b`` (He et al., batch size 32); ceiling
      about ``log batch_size``.

    The two estimators give different numbers for the same model; always report which one was
    used, ``N`` and the ceiling (:func:`mutual_information_ceiling`). Every draw is at most the
    ceiling; only the expectation is ``>= 0``, single draws can fall below.

    The computation runs in float64 without gradient, in blocks of ``chunk_size`` rows, so peak
    memory is about ``chunk_size x N`` values (512 x 10,000 float64 = 41 MB).

    Args:
        mean: (N, D) float posterior means, N >= 1 (the order of the rows defines the batches).
        logvar: (N, D) float posterior log-variances, same dtype and device.
        estimator: ``"full"`` or ``"batch"``.
        batch_size: group size of ``"batch"`` (>= 1); ignored by ``"full"``.
        chunk_size: rows per block (>= 1); does not change the result beyond rounding.
        generator: random generator on ``mean``'s device for the draw of ``z``; the noise is
            ``torch.randn((N, D), dtype=torch.float64)``.
        noise: optional (N, D) pre-drawn standard-normal noise; when given, ``generator`` is
            unused and ``z = mean + exp(logvar / 2) * noise``.

    Returns:
        The estimate in nats, a Python float.

    Example:
        >>> # posteriors that ignore x carry no information: the estimate is 0
        >>> mi = mutual_information(torch.zeros(100, 4), torch.zeros(100, 4),
        ...                         generator=torch.Generator().manual_seed(0))
        >>> abs(mi) < 1e-12
        True
        >>> # posteriors far apart: each z identifies its row, the estimate is log N
        >>> mean = 100.0 * torch.arange(100.0).reshape(100, 1)
        >>> mi = mutual_information(mean, torch.zeros(100, 1),
        ...                         generator=torch.Generator().manual_seed(0))
        >>> round(mi, 6), round(math.log(100), 6)
        (4.60517, 4.60517)
    """
    mean, logvar = check_posterior(mean, logvar)
    estimator = check_choice(estimator, "estimator", MI_ESTIMATORS)
    batch_size = check_int(batch_size, "batch_size", 1)
    chunk_size = check_int(chunk_size, "chunk_size", 1)
    num_rows, latent_dim = mean.shape
    if num_rows == 0:
        raise ValueError("mean must have at least one row (N >= 1), got shape (0, D)")
    if noise is None:
        generator = _check_generator(generator, mean.device)
        noise = torch.randn(
            (num_rows, latent_dim), generator=generator, dtype=torch.float64, device=mean.device
        )
    else:
        noise = check_tensor("noise", noise, ndim=2, dtypes=FLOAT_DTYPES)
        if noise.shape != mean.shape or noise.device != mean.device:
            raise ValueError(
                f"noise must have the shape {tuple(mean.shape)} and device of mean, got "
                f"{tuple(noise.shape)} on {noise.device}"
            )
    with torch.no_grad():
        # float64 throughout: the quadratic form is expanded into matmuls, whose terms cancel.
        mean64, logvar64 = mean.detach().double(), logvar.detach().double()
        noise64 = noise.detach().double()
        z = mean64 + torch.exp(0.5 * logvar64) * noise64
        # Recentring changes no distance but shrinks the cancelling terms of the expansion.
        centre = mean64.mean(0)
        z, mean64 = z - centre, mean64 - centre
        pointwise = []
        start = 0
        # Equal-sized groups are processed together as one batched (G, n, D) problem; at most
        # one smaller group (the last batch) follows.
        for size, count in _groups(num_rows, estimator, batch_size):
            rows = slice(start, start + count * size)
            grouped = [
                rearrange(t[rows], "(g n) d -> g n d", n=size)
                for t in (z, mean64, logvar64, noise64)
            ]
            pointwise.append(_pointwise_information(*grouped, chunk_size).flatten())
            start += count * size
        # sum_b n_b MI_b / N: the mean over all rows of their pointwise information
        return float(torch.cat(pointwise).mean())


# --------------------------------------------------------------------------------------------
# Active units
# --------------------------------------------------------------------------------------------
def active_units(mean: Tensor, threshold: float = 0.01) -> int:
    """Number of latent dimensions whose posterior mean varies across the data (Burda et al. 2016).

    ``A_d = Var_n(mean_{n,d})`` with the unbiased (N - 1) divisor over all N rows; a dimension
    is active when ``A_d >= threshold`` (He et al. use ``>=`` and 0.01; Burda et al. write ``>``,
    which differs only at equality).

    Args:
        mean: (N, D) float posterior means over the whole evaluation set, N >= 2, finite.
        threshold: activity threshold (>= 0).

    Returns:
        The number of active dimensions, in ``[0, D]``.

    Raises:
        ValueError: if ``mean`` holds a NaN or an infinity (a diverged encoder), instead of
            counting its dimensions as inactive.

    Example:
        >>> means = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.1, -1.0], [0.0, 0.2, 1.0]])
        >>> active_units(means)
        2
    """
    mean = check_tensor("mean", mean, ndim=2, dtypes=FLOAT_DTYPES)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(f"threshold must be a float >= 0, got {threshold!r}")
    if not (threshold >= 0):
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    if mean.shape[0] < 2:
        raise ValueError(
            "mean must have at least 2 rows for an unbiased variance, got shape "
            f"{tuple(mean.shape)}"
        )
    if mean.shape[1] == 0:
        return 0  # torch.var warns on an empty reduction
    finite = torch.isfinite(mean.detach())
    if not bool(finite.all()):
        # A NaN variance compares False: it would be counted inactive, which reads as collapse.
        row, dim = (int(i) for i in (~finite).nonzero()[0])
        raise ValueError(
            f"mean must be finite, got {float(mean[row, dim])} at row {row}, dimension {dim} "
            f"({int((~finite).sum())} non-finite values)"
        )
    variance = mean.detach().double().var(dim=0, correction=1)  # (D,)
    return int((variance >= threshold).sum())
