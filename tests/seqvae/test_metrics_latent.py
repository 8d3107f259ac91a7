"""Latent-space metrics (SPEC §8): mutual information and active units.

The hypothesis property tests are in tests/properties/seqvae/test_metrics.py; KL,
importance-weighted NLL and perplexity are in tests/seqvae/test_metrics_likelihood.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from advmask.seqvae.gaussian import gaussian_kl
from advmask.seqvae.metrics import (
    MI_ESTIMATORS,
    active_units,
    mutual_information,
    mutual_information_ceiling,
)

from ..properties._helpers import F64, _posterior

LOG_2PI = math.log(2 * math.pi)


# --------------------------------------------------------------------------------------------
# Mutual information
# --------------------------------------------------------------------------------------------


def test_mi_full_chunking_equals_unchunked() -> None:
    mean, logvar = _posterior(300, 8, seed=7, scale=2.0)
    results = [
        mutual_information(
            mean, logvar, "full", chunk_size=chunk, generator=torch.Generator().manual_seed(3)
        )
        for chunk in (1, 7, 128, 300, 1000)
    ]
    assert max(results) - min(results) < 1e-12


def test_mi_generator_and_noise_agree() -> None:
    mean, logvar = _posterior(20, 3, seed=8)
    noise = torch.randn(20, 3, generator=torch.Generator().manual_seed(4), dtype=F64)
    by_generator = mutual_information(mean, logvar, generator=torch.Generator().manual_seed(4))
    assert by_generator == mutual_information(mean, logvar, noise=noise)


@pytest.mark.parametrize("estimator", MI_ESTIMATORS)
def test_mi_of_posteriors_that_ignore_x_is_zero(estimator) -> None:
    # Exact identity: with q(z|x_j) the same for all j, q_hat = q, so every row's
    # log q(z_i|x_i) - log q_hat(z_i) is 0 for every draw (no information about x). The
    # closed-form negative entropy instead gives mean_i (||eps_i||^2 - D) / 2 (0.39 here).
    mean = torch.tensor([0.3, -1.0, 2.0], dtype=F64).expand(40, 3)
    logvar = torch.tensor([0.5, -2.0, 0.0], dtype=F64).expand(40, 3)
    noise = torch.randn(40, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    got = mutual_information(mean, logvar, estimator, batch_size=16, noise=noise)
    assert abs(got) < 1e-12


@pytest.mark.parametrize(("estimator", "batch_size"), [("full", 32), ("batch", 32), ("batch", 10)])
def test_mi_of_well_separated_posteriors_reaches_the_ceiling(estimator, batch_size) -> None:
    # Means 1000 posterior standard deviations apart: each aggregate is the own posterior up to
    # exp(-1e5), so every row contributes log n_b exactly and the estimate is the ceiling.
    # Checks the per-batch weighting (64 = 6 x 10 + 4 for batch_size 10).
    num_rows, latent_dim = 64, 2
    mean = 10.0 * torch.arange(num_rows * latent_dim, dtype=F64).reshape(num_rows, latent_dim)
    logvar = torch.full((num_rows, latent_dim), 2 * math.log(0.01), dtype=F64)
    noise = torch.randn(num_rows, latent_dim, generator=torch.Generator().manual_seed(1), dtype=F64)
    value = mutual_information(mean, logvar, estimator, batch_size=batch_size, noise=noise)
    ceiling = mutual_information_ceiling(num_rows, estimator, batch_size)
    assert abs(value - ceiling) < 1e-12
    if estimator == "full":
        assert ceiling == math.log(64)
    elif batch_size == 32:
        assert math.isclose(ceiling, math.log(32), rel_tol=1e-15)
    else:
        expected = (60 * math.log(10) + 4 * math.log(4)) / 64
        assert math.isclose(ceiling, expected, rel_tol=1e-15)


def test_mi_is_in_zero_to_ceiling_in_expectation() -> None:
    # SPEC §8.4: average R estimates with fixed (mean, logvar) and check
    # -4 SE < mean < min(log N, mean KL) + 4 SE, for both estimators.
    replicates, num_rows = 1500, 32
    mean, logvar = _posterior(num_rows, 4, seed=11, scale=0.7)
    mean_kl = float(gaussian_kl(mean, logvar).mean())
    generator = torch.Generator().manual_seed(12)
    for estimator, batch_size in (("full", 32), ("batch", 8)):
        draws = torch.tensor(
            [
                mutual_information(
                    mean, logvar, estimator, batch_size=batch_size, generator=generator
                )
                for _ in range(replicates)
            ]
        )
        average = float(draws.mean())
        se = float(draws.std()) / math.sqrt(replicates)
        ceiling = mutual_information_ceiling(num_rows, estimator, batch_size)
        assert -4 * se < average < min(ceiling, mean_kl) + 4 * se
        assert average > 20 * se  # informative posteriors: clearly above 0


def test_mi_of_well_separated_posteriors_never_exceeds_log_n() -> None:
    # 64 posteriors 2800 standard deviations apart, 20 draws: with the closed-form negative
    # entropy each draw is log N + mean_i (||eps_i||^2 - D) / 2, above log N in about half of
    # them (10 of 20 with this seed); with the sampled own term every draw is log N.
    num_rows, latent_dim = 64, 2
    mean = 10.0 * torch.arange(num_rows * latent_dim, dtype=F64).reshape(num_rows, latent_dim)
    logvar = torch.full((num_rows, latent_dim), 2 * math.log(0.01), dtype=F64)
    generator = torch.Generator().manual_seed(0)
    draws = [mutual_information(mean, logvar, generator=generator) for _ in range(20)]
    assert max(draws) <= math.log(num_rows) + 1e-12
    assert min(draws) >= math.log(num_rows) - 1e-12


def _closed_form_entropy_mi(mean, logvar, noise):
    """He et al.'s estimate: closed-form E_q[log q(z|x_i)] instead of the sampled own term."""
    z = mean + torch.exp(0.5 * logvar) * noise
    n, d = mean.shape
    neg_entropy = (-0.5 * d * LOG_2PI - 0.5 * (1 + logvar).sum(-1)).mean()
    log_q = torch.distributions.Normal(mean, torch.exp(0.5 * logvar)).log_prob(z[:, None, :])
    log_aggregate = torch.logsumexp(log_q.sum(-1), dim=1) - math.log(n)
    return float(neg_entropy - log_aggregate.mean())


def test_mi_sampled_own_term_has_lower_variance_than_the_closed_form() -> None:
    # Same draws, two estimators with the same expectation. Observed standard deviations 0.19
    # (sampled own term) and 0.23 (closed form), ratio 0.84. Over R = 1000 draws the relative
    # standard error of a sample standard deviation is about 1 / sqrt(2 R) = 2.2%, so that of
    # the ratio is at most about 3.2% (less here: the draws are paired); the bound 0.95 is
    # more than 4 standard errors above 0.84, and equal variances (ratio 1) fail it.
    replicates, num_rows, latent_dim = 1000, 32, 4
    mean, logvar = _posterior(num_rows, latent_dim, seed=11, scale=0.7)
    generator = torch.Generator().manual_seed(5)
    sampled, closed_form = [], []
    for _ in range(replicates):
        noise = torch.randn(num_rows, latent_dim, generator=generator, dtype=F64)
        sampled.append(mutual_information(mean, logvar, noise=noise))
        closed_form.append(_closed_form_entropy_mi(mean, logvar, noise))
    sampled_std = float(torch.tensor(sampled, dtype=F64).std())
    closed_form_std = float(torch.tensor(closed_form, dtype=F64).std())
    assert sampled_std < 0.95 * closed_form_std
    # same expectation: the paired difference mean_i (||eps_i||^2 - D) / 2 has mean 0 and
    # standard deviation sqrt(2 D / 4 / N) = 0.25 per draw, so 4 / sqrt(R) of that bounds it
    difference = torch.tensor(closed_form, dtype=F64) - torch.tensor(sampled, dtype=F64)
    assert abs(float(difference.mean())) < 4 * 0.25 / math.sqrt(replicates)


def test_mi_matches_quadrature_of_the_mixture_kl() -> None:
    # Oracle: E[MI_est] = (1/N) sum_i KL(q_i || q_hat) with q_hat the mixture of the N
    # posteriors. In one dimension this integral is computed by quadrature on a fine grid.
    mean = torch.tensor([[-1.0], [0.0], [0.4], [2.0], [2.5]], dtype=F64)
    logvar = torch.tensor([[0.0], [-1.0], [-0.5], [-2.0], [0.3]], dtype=F64)
    grid = torch.linspace(-15, 15, 300_001, dtype=F64)
    log_q = torch.distributions.Normal(mean, torch.exp(0.5 * logvar)).log_prob(grid)  # (N, G)
    log_mixture = torch.logsumexp(log_q, 0) - math.log(5)
    integrand = (log_q.exp() * (log_q - log_mixture)).mean(0)
    expected = float(torch.trapezoid(integrand, grid))
    assert 0 < expected < math.log(5)

    replicates = 4000
    generator = torch.Generator().manual_seed(13)
    draws = torch.tensor(
        [mutual_information(mean, logvar, generator=generator) for _ in range(replicates)]
    )
    se = float(draws.std()) / math.sqrt(replicates)
    assert abs(float(draws.mean()) - expected) < 4 * se


def _factorised_mi(mean, logvar, noise):
    """The per-dimension aggregate (a pitfall): MI plus the total correlation of q(z)."""
    z = mean + torch.exp(0.5 * logvar) * noise
    n = mean.shape[0]
    log_q = torch.distributions.Normal(mean, torch.exp(0.5 * logvar)).log_prob(z[:, None, :])
    log_own = torch.diagonal(log_q).sum(0)  # (N,) log q(z_i|x_i), joint over d
    log_aggregate = (torch.logsumexp(log_q, dim=1) - math.log(n)).sum(-1)  # product over d
    return float((log_own - log_aggregate).mean())


def test_mi_is_joint_not_factorised() -> None:
    # Well-separated posteriors on the diagonal mean_j = (a_j, a_j): the joint estimator stays
    # at log N, the per-dimension aggregate counts the separation twice (~ 2 log N).
    num_rows = 50
    line = 10.0 * torch.arange(num_rows, dtype=F64)
    mean = torch.stack([line, line], dim=1)
    logvar = torch.full((num_rows, 2), 2 * math.log(0.05), dtype=F64)
    noise = torch.randn(num_rows, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    joint = mutual_information(mean, logvar, noise=noise)
    factorised = _factorised_mi(mean, logvar, noise)
    assert abs(joint - math.log(num_rows)) < 1e-12
    assert factorised > joint + 0.9 * math.log(num_rows)


def test_mi_works_for_float32_input_and_one_row() -> None:
    mean, logvar = _posterior(10, 3, seed=9, dtype=torch.float32)
    value = mutual_information(mean, logvar, generator=torch.Generator().manual_seed(0))
    assert math.isfinite(value)
    # N = 1: the aggregate is the posterior itself; the estimate is 0 = log 1 for every draw.
    noise = torch.randn(1, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    one = mutual_information(mean[:1], logvar[:1], noise=noise)
    assert abs(one) < 1e-12


def test_mi_ceiling_values() -> None:
    assert mutual_information_ceiling(1000, "full") == math.log(1000)
    assert mutual_information_ceiling(1000, "full", batch_size=7) == math.log(1000)
    assert math.isclose(mutual_information_ceiling(96, "batch", 32), math.log(32), rel_tol=1e-15)
    assert math.isclose(mutual_information_ceiling(20, "batch", 32), math.log(20), rel_tol=1e-15)
    assert mutual_information_ceiling(1, "full") == 0.0
    mixed = mutual_information_ceiling(100, "batch", 32)
    assert math.isclose(mixed, (96 * math.log(32) + 4 * math.log(4)) / 100, rel_tol=1e-15)
    assert mixed < math.log(32)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"estimator": "factorised"}, ValueError, "estimator must be one of"),
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        ({"chunk_size": 0}, ValueError, "chunk_size must be >= 1"),
        ({"noise": torch.zeros(3, 2)}, ValueError, "noise must have the shape"),
        ({"generator": "seed"}, TypeError, "generator must be a torch.Generator"),
    ],
)
def test_mi_validation(kwargs, error, match) -> None:
    mean, logvar = _posterior(4, 2)
    with pytest.raises(error, match=match):
        mutual_information(mean, logvar, **kwargs)


def test_mi_rejects_empty_input_and_bad_ceiling_arguments() -> None:
    with pytest.raises(ValueError, match="at least one row"):
        mutual_information(torch.zeros(0, 2), torch.zeros(0, 2))
    with pytest.raises(ValueError, match="num_rows must be >= 1"):
        mutual_information_ceiling(0)
    with pytest.raises(ValueError, match="estimator must be one of"):
        mutual_information_ceiling(10, "per_dim")


# --------------------------------------------------------------------------------------------
# Active units
# --------------------------------------------------------------------------------------------
def test_active_units_counts_dimensions_by_unbiased_variance() -> None:
    # Columns of +-c over N = 4 rows: mean 0, unbiased variance 4c^2/3, biased c^2.
    # Target variances 0, 0.001, 0.005, 0.02, 1 (two active), then 0.012: active with the
    # unbiased (N - 1) divisor, inactive with the biased one (c^2 = 0.009): catches N vs N - 1.
    signs = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=F64)
    variances = torch.tensor([0.0, 0.001, 0.005, 0.02, 1.0, 0.012], dtype=F64)
    means = signs[:, None] * torch.sqrt(0.75 * variances)[None, :] + torch.arange(6.0)
    torch.testing.assert_close(means.var(0), variances, rtol=1e-12, atol=1e-15)
    assert active_units(means) == 3
    assert active_units(means, threshold=0.0) == 6
    assert active_units(means, threshold=2.0) == 0


def test_active_units_threshold_is_inclusive() -> None:
    # Column [0, 1]: unbiased variance exactly 0.5; He et al. count A_d >= threshold.
    means = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=F64)
    assert active_units(means, threshold=0.5) == 1


def test_active_units_validation() -> None:
    with pytest.raises(ValueError, match="at least 2 rows"):
        active_units(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="mean must have 2 dimensions"):
        active_units(torch.zeros(5))
    with pytest.raises(ValueError, match="threshold must be >= 0"):
        active_units(torch.zeros(3, 2), threshold=-0.1)
    with pytest.raises(TypeError, match="threshold"):
        active_units(torch.zeros(3, 2), threshold="0.01")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_active_units_refuses_non_finite_means(bad) -> None:
    # A NaN variance compares False with the threshold, so a diverged encoder used to report
    # 0 active units, which reads as posterior collapse.
    means = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    means[2, 1] = bad
    with pytest.raises(ValueError, match=rf"mean must be finite, got {bad} at row 2, dimension 1"):
        active_units(means)
