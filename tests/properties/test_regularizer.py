"""Properties of the adversary's KL regulariser (SPEC §1.2 step 5-6, P1.2-P1.3).

The examples (exact gradient, gradcheck, the AWD fixed-std case, validation) are in
tests/test_regularizer.py.
"""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.distributions import Normal, kl_divergence

from advmask.budget import eligible_positions
from advmask.regularizer import gaussian_kl_to_standard, score_kl

from ._helpers import random_gaussians
from .strategies import lengths_and_length


@given(st.integers(1, 5), st.integers(1, 9), st.integers(0, 2**16))
def test_matches_torch_distributions(batch, length, seed) -> None:
    mean, std = random_gaussians(batch, length, seed)
    expected = kl_divergence(Normal(mean, std), Normal(0.0, 1.0))
    torch.testing.assert_close(gaussian_kl_to_standard(mean, std), expected, rtol=1e-10, atol=0)


@given(lengths_and_length(), st.floats(0.0, 10.0), st.integers(0, 2**16))
def test_value_is_weighted_batch_mean_of_sums_over_eligible(lengths_length, weight, seed) -> None:
    lengths, length = lengths_length
    mean, std = random_gaussians(lengths.shape[0], length, seed)
    eligible = eligible_positions(lengths, length)
    per_row = [
        float(gaussian_kl_to_standard(mean[b, : lengths[b]], std[b, : lengths[b]]).sum())
        for b in range(lengths.shape[0])
    ]
    expected = weight * sum(per_row) / len(per_row)
    got = score_kl(mean, std, eligible, weight)
    assert got.shape == ()
    assert float(got) == pytest.approx(expected, rel=1e-12, abs=1e-12)


@given(lengths_and_length(), st.integers(0, 2**16))
def test_padding_values_never_leak_into_value_or_gradient(lengths_length, seed) -> None:
    # SPEC P1.3: NaN/inf off the eligible set change neither the value nor the gradient.
    lengths, length = lengths_length
    mean, std = random_gaussians(lengths.shape[0], length, seed)
    eligible = eligible_positions(lengths, length)
    junk = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -1.0], dtype=torch.float64)
    index = torch.arange(mean.numel()).reshape(mean.shape) % junk.numel()
    results = []
    for m, s in (
        (mean, std),
        (torch.where(eligible, mean, junk[index]), torch.where(eligible, std, junk[index.flip(1)])),
    ):
        m = m.clone().requires_grad_(True)
        s = s.clone().requires_grad_(True)
        value = score_kl(m, s, eligible, 1.5)
        results.append((value, *torch.autograd.grad(value, (m, s))))
    for clean, dirty in zip(results[0], results[1], strict=True):
        assert bool(torch.isfinite(dirty).all())
        assert torch.equal(clean, dirty)
