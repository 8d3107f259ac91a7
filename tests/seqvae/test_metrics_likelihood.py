"""Likelihood metrics (SPEC §8): Gaussian KL and densities, importance-weighted NLL, perplexity.

The hypothesis property tests are in tests/properties/seqvae/test_metrics.py; mutual
information and active units are in tests/seqvae/test_metrics_latent.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from advmask.seqvae.gaussian import gaussian_kl, log_normal_diag, log_standard_normal
from advmask.seqvae.metrics import (
    importance_weighted_log_likelihood,
    perplexity,
)

from ..properties._helpers import F64, _posterior


# --------------------------------------------------------------------------------------------
# Gaussian KL and densities
# --------------------------------------------------------------------------------------------
def test_kl_is_exactly_zero_at_the_prior() -> None:
    zeros = torch.zeros(3, 5, dtype=F64)
    assert torch.equal(gaussian_kl(zeros, zeros), torch.zeros(3, dtype=F64))


def test_kl_catches_logvar_sign_and_variance_confusion() -> None:
    # logvar = log 4: KL = (0 + 4 - log 4 - 1) / 2; a sign slip (+log 4) or using std would differ.
    kl = gaussian_kl(torch.zeros(1, 1, dtype=F64), torch.full((1, 1), math.log(4.0), dtype=F64))
    assert abs(float(kl) - 0.5 * (3.0 - math.log(4.0))) < 1e-15


def test_kl_is_accurate_for_tiny_logvar() -> None:
    # exp(l) - l - 1 cancels catastrophically in float32 (absolute error ~1e-7 on a value of
    # 2.5e-9); expm1(l) - l only loses the bits of the subtraction (relative ~eps / l = 1e-3).
    logvar = torch.full((1, 1), 1e-4, dtype=torch.float32)
    kl = gaussian_kl(torch.zeros(1, 1), logvar)
    value = float(logvar)  # the float32 number actually used
    exact = 0.5 * (math.expm1(value) - value)
    assert abs(float(kl) - exact) < 1e-3 * exact
    naive = 0.5 * (torch.exp(logvar) - logvar - 1)
    assert abs(float(naive) - exact) > 0.1 * exact


def test_kl_gradcheck() -> None:
    mean, logvar = _posterior(3, 4, seed=1)
    mean.requires_grad_(True)
    logvar.requires_grad_(True)
    assert torch.autograd.gradcheck(gaussian_kl, (mean, logvar), eps=1e-6, atol=1e-5, rtol=1e-3)


def test_log_densities_match_torch_distributions() -> None:
    mean, logvar = _posterior(4, 3, seed=2)
    z = torch.randn(5, 4, 3, generator=torch.Generator().manual_seed(3), dtype=F64)
    expected = torch.distributions.Normal(mean, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    torch.testing.assert_close(log_normal_diag(z, mean, logvar), expected, rtol=1e-12, atol=1e-12)
    standard = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    torch.testing.assert_close(log_standard_normal(z), standard, rtol=1e-12, atol=1e-12)
    assert log_normal_diag(z, mean, logvar).shape == (5, 4)


@pytest.mark.parametrize(
    ("mean", "logvar", "error", "match"),
    [
        (torch.zeros(3), torch.zeros(3), ValueError, "mean must have 2 dimensions"),
        (torch.zeros(2, 3), torch.zeros(2, 4), ValueError, "logvar must have the shape"),
        (torch.zeros(2, 3), torch.zeros(2, 3, dtype=F64), TypeError, "logvar must have the dtype"),
        (
            torch.zeros(2, 3, dtype=torch.int64),
            torch.zeros(2, 3),
            TypeError,
            "mean must have dtype",
        ),
        ([[0.0]], torch.zeros(1, 1), TypeError, "mean must be a torch.Tensor"),
    ],
)
def test_posterior_validation(mean, logvar, error, match) -> None:
    with pytest.raises(error, match=match):
        gaussian_kl(mean, logvar)


def test_log_density_validation() -> None:
    with pytest.raises(ValueError, match="share the last dimension"):
        log_normal_diag(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="z must be a tensor"):
        log_standard_normal(torch.tensor(1.0))


# --------------------------------------------------------------------------------------------
# Importance-weighted log-likelihood: linear-Gaussian toy (SPEC §8.6)
# --------------------------------------------------------------------------------------------
class LinearGaussian:
    """p(z) = N(0, I_D), p(x|z) = N(W z + b, s^2 I_n); log p(x) and the posterior are exact."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, noise_std: float) -> None:
        self.weight, self.bias, self.noise_std = weight, bias, noise_std

    def log_likelihood(self, x: torch.Tensor):
        """Callable z (S, N, D) -> (S, N) log p(x_n | z) for the observations x (N, n)."""

        def log_lik(z: torch.Tensor) -> torch.Tensor:
            residual = x - (z @ self.weight.T + self.bias)  # (S, N, n)
            variance = self.noise_std**2
            return -0.5 * (math.log(2 * math.pi * variance) + residual.square() / variance).sum(-1)

        return log_lik

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        n = self.weight.shape[0]
        covariance = self.weight @ self.weight.T + self.noise_std**2 * torch.eye(n, dtype=F64)
        return torch.distributions.MultivariateNormal(self.bias, covariance).log_prob(x)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact posterior mean (N, D) and covariance (D, D)."""
        latent_dim = self.weight.shape[1]
        scaled = self.weight / self.noise_std
        precision = torch.eye(latent_dim, dtype=F64) + scaled.T @ scaled
        covariance = torch.linalg.inv(precision)
        mean = (x - self.bias) @ self.weight @ covariance / self.noise_std**2
        return mean, covariance

    def elbo(self, x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Closed-form ELBO of a diagonal q = N(mean, diag exp(logvar))."""
        n = self.weight.shape[0]
        variance = self.noise_std**2
        residual = x - mean @ self.weight.T - self.bias
        trace = (logvar.exp() * self.weight.square().sum(0)).sum(-1)
        expected_log_lik = (
            -0.5 * n * math.log(2 * math.pi * variance)
            - 0.5 * (residual.square().sum(-1) + trace) / variance
        )
        return expected_log_lik - gaussian_kl(mean, logvar)


def _orthogonal_toy(seed: int = 0, n: int = 4, latent_dim: int = 3) -> LinearGaussian:
    generator = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(n, latent_dim, generator=generator, dtype=F64))
    scales = torch.tensor([2.0, 1.0, 0.5, 3.0], dtype=F64)[:latent_dim]
    bias = torch.randn(n, generator=generator, dtype=F64)
    return LinearGaussian(basis * scales, bias, noise_std=0.7)


def _general_toy() -> tuple[LinearGaussian, torch.Tensor]:
    generator = torch.Generator().manual_seed(5)
    weight = torch.randn(3, 2, generator=generator, dtype=F64)
    toy = LinearGaussian(weight, torch.zeros(3, dtype=F64), noise_std=0.5)
    x = torch.tensor([1.5, -2.0, 0.5], dtype=F64)
    return toy, x


def test_iw_zero_variance_with_exact_posterior() -> None:
    # P8.3: W has orthogonal columns, so the exact posterior is diagonal; with q equal to it,
    # every log-weight equals log p(x) and so does log p_S, for every S and every draw.
    toy = _orthogonal_toy()
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(1), dtype=F64) * 2
    mean, covariance = toy.posterior(x)
    assert torch.allclose(covariance, torch.diag(covariance.diagonal()), atol=1e-14)
    logvar = covariance.diagonal().log().expand_as(mean).contiguous()
    log_p = toy.log_marginal(x)
    for num_samples, chunk_size in [(1, 1), (7, 3), (50, 50), (200, 64)]:
        estimate = importance_weighted_log_likelihood(
            toy.log_likelihood(x),
            mean,
            logvar,
            num_samples,
            chunk_size,
            generator=torch.Generator().manual_seed(num_samples),
        )
        assert estimate.shape == (6,)
        assert (estimate - log_p).abs().max() < 1e-10


def test_iw_with_one_sample_is_the_log_weight_bitwise() -> None:
    # P8.1: S = 1 gives log w(z_1) = log p(x|z_1) + log p(z_1) - log q(z_1|x), identically.
    toy, x = _general_toy()
    xs = x.expand(5, 3)
    mean, logvar = _posterior(5, 2, seed=3)
    seen: list[torch.Tensor] = []

    def recording(z: torch.Tensor) -> torch.Tensor:
        seen.append(z)
        return toy.log_likelihood(xs)(z)

    estimate = importance_weighted_log_likelihood(
        recording, mean, logvar, num_samples=1, generator=torch.Generator().manual_seed(0)
    )
    (z,) = seen
    assert z.shape == (1, 5, 2)
    log_w = toy.log_likelihood(xs)(z) + log_standard_normal(z) - log_normal_diag(z, mean, logvar)
    assert torch.equal(estimate, log_w[0])


def test_iw_brute_force_logsumexp_of_seen_samples() -> None:
    # Oracle: mean of the S importance weights, computed in the linear domain from the z's the
    # callable saw. Catches averaging per-chunk estimates and using the analytic KL per sample.
    toy, x = _general_toy()
    xs = x.expand(4, 3)
    mean, logvar = _posterior(4, 2, seed=4)
    seen: list[torch.Tensor] = []

    def recording(z: torch.Tensor) -> torch.Tensor:
        seen.append(z)
        return toy.log_likelihood(xs)(z)

    estimate = importance_weighted_log_likelihood(
        recording,
        mean,
        logvar,
        num_samples=10,
        chunk_size=3,
        generator=torch.Generator().manual_seed(1),
    )
    assert [z.shape[0] for z in seen] == [3, 3, 3, 1]
    z = torch.cat(seen)
    p_x_given_z = toy.log_likelihood(xs)(z).exp()
    q = torch.distributions.Normal(mean, torch.exp(0.5 * logvar)).log_prob(z).sum(-1).exp()
    p = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1).exp()
    expected = (p_x_given_z * p / q).mean(0).log()
    torch.testing.assert_close(estimate, expected, rtol=1e-10, atol=1e-10)


def test_iw_is_the_elbo_for_one_sample_and_increases_with_samples() -> None:
    # P8.1/P8.2 on a linear-Gaussian toy with a mean-field q that is NOT the posterior.
    # R independent rows (same x, same q) give R independent estimates; SE = std / sqrt(R).
    toy, x = _general_toy()
    post_mean, post_cov = toy.posterior(x)
    mean_q = (post_mean + 0.3).expand(1, 2)
    logvar_q = (post_cov.diagonal().log() + 0.5).expand(1, 2)
    elbo = float(toy.elbo(x, mean_q, logvar_q)[0])
    log_p = float(toy.log_marginal(x))
    assert elbo < log_p - 0.3  # the gaps tested below are real

    replicates = 4000
    xs = x.expand(replicates, 3)
    means, logvars = mean_q.expand(replicates, 2), logvar_q.expand(replicates, 2)
    averages, standard_errors = {}, {}
    for num_samples in (1, 10, 100):
        estimate = importance_weighted_log_likelihood(
            toy.log_likelihood(xs),
            means,
            logvars,
            num_samples,
            generator=torch.Generator().manual_seed(num_samples),
        )
        averages[num_samples] = float(estimate.mean())
        standard_errors[num_samples] = float(estimate.std()) / math.sqrt(replicates)
    # E[log p_1] = ELBO (4 SE).
    assert abs(averages[1] - elbo) < 4 * standard_errors[1]
    # Non-decreasing in S (4 SE of the difference of independent means) and below log p(x).
    for small, large in ((1, 10), (10, 100)):
        se = math.hypot(standard_errors[small], standard_errors[large])
        assert averages[large] > averages[small] - 4 * se
    assert averages[10] > averages[1] + 4 * math.hypot(standard_errors[1], standard_errors[10])
    for num_samples, average in averages.items():
        assert average < log_p + 4 * standard_errors[num_samples]
    assert averages[100] > log_p - 0.05


def test_iw_validation() -> None:
    mean, logvar = _posterior(2, 3)

    def log_lik(z):
        return z.sum(-1)

    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        importance_weighted_log_likelihood(log_lik, mean, logvar, num_samples=0)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        importance_weighted_log_likelihood(log_lik, mean, logvar, chunk_size=0)
    with pytest.raises(TypeError, match="num_samples"):
        importance_weighted_log_likelihood(log_lik, mean, logvar, num_samples=2.5)
    with pytest.raises(TypeError, match="num_samples"):
        importance_weighted_log_likelihood(log_lik, mean, logvar, num_samples=True)
    with pytest.raises(TypeError, match="log_likelihood must be callable"):
        importance_weighted_log_likelihood(None, mean, logvar)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"log_likelihood must return .* \(S_chunk, N\)"):
        importance_weighted_log_likelihood(lambda z: z, mean, logvar, num_samples=4)
    with pytest.raises(TypeError, match=r"generator must be a torch\.Generator"):
        importance_weighted_log_likelihood(log_lik, mean, logvar, generator=0)  # type: ignore[arg-type]


def test_iw_with_no_rows_does_not_call_the_likelihood() -> None:
    def fail(z):
        raise AssertionError("called")

    out = importance_weighted_log_likelihood(fail, torch.zeros(0, 3), torch.zeros(0, 3))
    assert out.shape == (0,)


# --------------------------------------------------------------------------------------------
# Perplexity
# --------------------------------------------------------------------------------------------
def test_perplexity_of_a_uniform_model_is_the_vocabulary_size() -> None:
    # Every prediction (each word and the EOS of every sequence; BOS is never predicted) costs
    # log V, so with the right denominator PPL = V exactly. Counting words only (the authors'
    # EOS-masking pitfall in reverse) or adding BOS would move it away from V.
    vocab, word_counts = 50, [3, 0, 7, 1]
    num_predictions = sum(word_counts) + len(word_counts)
    total_nll = num_predictions * math.log(vocab)
    assert math.isclose(perplexity(total_nll, num_predictions), vocab, rel_tol=1e-12)
    assert perplexity(total_nll, sum(word_counts)) > vocab + 1
    assert perplexity(total_nll, num_predictions + len(word_counts)) < vocab - 1


def test_perplexity_accepts_scalar_tensors_and_overflows_to_inf() -> None:
    assert perplexity(torch.tensor(0.0), 3) == 1.0
    assert perplexity(1e6, 1) == math.inf


@pytest.mark.parametrize(
    ("total", "count", "error", "match"),
    [
        (1.0, 0, ValueError, "num_predictions must be >= 1"),
        (1.0, 2.0, TypeError, "num_predictions"),
        (float("nan"), 2, ValueError, "total_nll must be finite"),
        ("1", 2, TypeError, "total_nll"),
        (torch.ones(2), 2, ValueError, "total_nll must be a scalar"),
    ],
)
def test_perplexity_validation(total, count, error, match) -> None:
    with pytest.raises(error, match=match):
        perplexity(total, count)
