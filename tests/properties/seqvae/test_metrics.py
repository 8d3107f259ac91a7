"""Properties of the evaluation metrics (SPEC §8) on generated inputs.

KL, importance-weighted log-likelihood, perplexity, MI and active units, against
torch.distributions and brute-force oracles. The examples (closed forms, the linear-Gaussian toy,
expectations over replicates, validation) are in tests/seqvae/test_metrics_likelihood.py and
tests/seqvae/test_metrics_latent.py.
"""

from __future__ import annotations

import math

import torch
from hypothesis import given
from hypothesis import strategies as st

from advmask.seqvae.gaussian import gaussian_kl, gaussian_kl_per_dimension
from advmask.seqvae.metrics import (
    MI_ESTIMATORS,
    active_units,
    importance_weighted_log_likelihood,
    mutual_information,
    mutual_information_ceiling,
    perplexity,
)

from .._helpers import F64, _posterior


@given(
    st.integers(0, 5),
    st.integers(0, 5),
    st.sampled_from([torch.float32, torch.float64]),
    st.integers(0, 2**16),
)
def test_kl_matches_torch_distributions(num_rows, latent_dim, dtype, seed) -> None:
    # Oracle: torch.distributions' closed-form Normal-Normal KL, summed over dimensions.
    mean, logvar = _posterior(num_rows, latent_dim, seed, dtype, scale=2.0)
    q = torch.distributions.Normal(mean, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    expected = torch.distributions.kl_divergence(q, p)
    tol = 1e-12 if dtype == F64 else 1e-5
    per_dim = gaussian_kl_per_dimension(mean, logvar)
    assert per_dim.shape == (num_rows, latent_dim) and per_dim.dtype == dtype
    torch.testing.assert_close(per_dim, expected, rtol=tol, atol=tol)
    kl = gaussian_kl(mean, logvar)
    assert kl.shape == (num_rows,) and bool((kl >= 0).all())
    torch.testing.assert_close(kl, expected.sum(-1), rtol=tol, atol=tol)


@given(
    st.integers(0, 4),
    st.integers(0, 3),
    st.integers(1, 9),
    st.sampled_from([torch.float32, torch.float64]),
    st.integers(0, 1000),
)
def test_iw_chunking_invariance(num_rows, latent_dim, num_samples, dtype, seed) -> None:
    # P8.4: chunk sizes 1, 3 or S give the same results given the same z's (same generator).
    # Equal up to float rounding, not bitwise: a matmul over a different number of rows may
    # take a different kernel. Drawing different z's per chunk would move the result by O(1).
    mean, logvar = _posterior(num_rows, latent_dim, seed, dtype)
    weight = torch.linspace(-1, 1, 2 * latent_dim, dtype=dtype).reshape(2, latent_dim)

    def log_lik(z: torch.Tensor) -> torch.Tensor:
        return -0.5 * (z @ weight.T - 1.0).square().sum(-1)

    results = []
    for chunk in (1, 3, num_samples):
        results.append(
            importance_weighted_log_likelihood(
                log_lik,
                mean,
                logvar,
                num_samples,
                chunk,
                generator=torch.Generator().manual_seed(seed),
            )
        )
    for result in results:
        assert result.shape == (num_rows,) and result.dtype == dtype
        assert bool(torch.isfinite(result).all())
        torch.testing.assert_close(result, results[0])


@given(st.floats(0.0, 500.0), st.floats(0.0, 500.0), st.integers(1, 10_000))
def test_perplexity_is_at_least_one_and_monotone(nll_a, nll_b, count) -> None:
    ppl_a, ppl_b = perplexity(nll_a, count), perplexity(nll_b, count)
    assert ppl_a >= 1.0 and ppl_b >= 1.0
    if nll_a <= nll_b:
        assert ppl_a <= ppl_b
    assert math.isclose(ppl_a, math.exp(nll_a / count), rel_tol=1e-15)


def _brute_force_mi(mean, logvar, noise, group_size):
    """Direct N x N x D evaluation per consecutive group; the oracle.

    ``mean_i [log q(z_i|x_i) - log q_hat(z_i)]`` with both terms from the same N x N table.
    """
    values, weights = [], []
    for start in range(0, mean.shape[0], group_size):
        mu, lv, eps = (t[start : start + group_size] for t in (mean, logvar, noise))
        n = mu.shape[0]
        z = mu + torch.exp(0.5 * lv) * eps
        log_q = torch.distributions.Normal(mu, torch.exp(0.5 * lv)).log_prob(z[:, None, :]).sum(-1)
        log_aggregate = torch.logsumexp(log_q, dim=1) - math.log(n)
        values.append(float((torch.diagonal(log_q) - log_aggregate).mean()))
        weights.append(n)
    return sum(v * w for v, w in zip(values, weights, strict=True)) / sum(weights)


@given(
    st.integers(1, 12),
    st.integers(0, 4),
    st.sampled_from(MI_ESTIMATORS),
    st.integers(1, 13),
    st.integers(1, 13),
    st.integers(0, 1000),
)
def test_mi_matches_brute_force(num_rows, latent_dim, estimator, batch_size, chunk_size, seed):
    mean, logvar = _posterior(num_rows, latent_dim, seed, scale=1.5)
    noise = torch.randn(
        num_rows, latent_dim, generator=torch.Generator().manual_seed(seed + 1), dtype=F64
    )
    group = num_rows if estimator == "full" else batch_size
    expected = _brute_force_mi(mean, logvar, noise, group)
    got = mutual_information(
        mean, logvar, estimator, batch_size=batch_size, chunk_size=chunk_size, noise=noise
    )
    assert isinstance(got, float)
    assert abs(got - expected) < 1e-10


@st.composite
def _posteriors(draw):
    """(mean, logvar) (N, D) float64 from near-identical to far apart (1e4 standard deviations)."""
    num_rows, latent_dim = draw(st.integers(1, 40)), draw(st.integers(0, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    separation = draw(st.sampled_from([0.0, 0.1, 1.0, 10.0, 1e4]))
    log_std = draw(st.floats(-6.0, 2.0))
    generator = torch.Generator().manual_seed(seed)
    mean = separation * torch.randn(num_rows, latent_dim, generator=generator, dtype=F64)
    jitter = 0.5 * torch.randn(num_rows, latent_dim, generator=generator, dtype=F64)
    return mean, 2 * log_std + jitter


@given(
    _posteriors(),
    st.sampled_from(MI_ESTIMATORS),
    st.integers(1, 13),
    st.integers(1, 13),
    st.integers(0, 1000),
)
def test_every_mi_draw_is_at_most_the_ceiling(posterior, estimator, batch_size, chunk, seed):
    # Each row's log q(z_i|x_i) - log q_hat(z_i) <= log n_b because the aggregate's sum contains
    # the own term as the same number; the tolerance covers only the rounding of the
    # log-sum-exp and of the mean (values of order 10, float64).
    mean, logvar = posterior
    value = mutual_information(
        mean,
        logvar,
        estimator,
        batch_size=batch_size,
        chunk_size=chunk,
        generator=torch.Generator().manual_seed(seed),
    )
    assert value <= mutual_information_ceiling(mean.shape[0], estimator, batch_size) + 1e-10


@given(
    st.integers(2, 30),
    st.integers(0, 6),
    st.sampled_from([torch.float32, torch.float64]),
    st.integers(0, 1000),
)
def test_active_units_property(num_rows, latent_dim, dtype, seed) -> None:
    generator = torch.Generator().manual_seed(seed)
    scales = torch.rand(latent_dim, generator=generator, dtype=F64) * 0.4  # std in [0, 0.4)
    means = (torch.randn(num_rows, latent_dim, generator=generator, dtype=F64) * scales).to(dtype)
    count = active_units(means)
    assert 0 <= count <= latent_dim
    expected = int((means.double().var(0) >= 0.01).sum()) if latent_dim else 0
    assert count == expected
    assert active_units(means * 100) >= count  # scaling up never deactivates
