"""The adversary's KL regulariser (SPEC §1.2 step 5-6, P1.2-P1.4).

The hypothesis property tests are in tests/properties/test_regularizer.py.
"""

import pytest
import torch

from advmask.budget import eligible_positions
from advmask.regularizer import gaussian_kl_to_standard, score_kl

from .properties._helpers import random_gaussians


def test_non_negative_and_zero_only_at_the_prior() -> None:
    mean, std = random_gaussians(50, 50, seed=0)
    kl = gaussian_kl_to_standard(mean, std)
    assert bool((kl > 0).all())
    zeros = torch.zeros(3, 4, dtype=torch.float64)
    assert torch.equal(gaussian_kl_to_standard(zeros, zeros + 1), zeros)
    # Either parameter away from the prior makes it positive.
    assert float(gaussian_kl_to_standard(zeros + 1e-3, zeros + 1).min()) > 0
    assert float(gaussian_kl_to_standard(zeros, zeros + 1 + 1e-3).min()) > 0


def test_gradient_is_weight_times_mean_over_batch_size() -> None:
    # SPEC P1.4: dOmega/dmean = lambda * mean / B and dOmega/dstd = lambda (std - 1/std) / B on
    # the eligible set, exactly 0 elsewhere.
    lengths = torch.tensor([5, 0, 3, 7])
    mean, std = random_gaussians(4, 7, seed=3)
    eligible = eligible_positions(lengths, 7)
    mean.requires_grad_(True)
    std.requires_grad_(True)
    weight = 0.7
    grad_mean, grad_std = torch.autograd.grad(score_kl(mean, std, eligible, weight), (mean, std))
    zero = torch.zeros_like(mean)
    expected_mean = torch.where(eligible, weight * mean.detach() / 4, zero)
    expected_std = torch.where(eligible, weight * (std.detach() - 1 / std.detach()) / 4, zero)
    torch.testing.assert_close(grad_mean, expected_mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(grad_std, expected_std, rtol=0, atol=1e-12)


def test_gradcheck() -> None:
    mean, std = random_gaussians(3, 4, seed=4)
    eligible = eligible_positions(torch.tensor([4, 2, 0]), 4)
    inputs = (mean.requires_grad_(True), std.requires_grad_(True))
    assert torch.autograd.gradcheck(lambda m, s: score_kl(m, s, eligible, 2.0), inputs)


def test_fixed_unit_std_is_half_squared_mean() -> None:
    # The AWD authors' code fixes std = 1, so the KL is mean^2 / 2 (SPEC §15.1).
    mean, _ = random_gaussians(3, 5, seed=5)
    eligible = torch.ones(3, 5, dtype=torch.bool)
    got = score_kl(mean, torch.ones_like(mean), eligible, 2.0)
    torch.testing.assert_close(got, 2.0 * 0.5 * mean.square().sum() / 3, rtol=1e-12, atol=0)


def test_empty_batch_and_zero_weight_give_zero() -> None:
    empty = torch.zeros(0, 4)
    assert float(score_kl(empty, empty + 1, torch.zeros(0, 4, dtype=torch.bool), 1.0)) == 0.0
    mean, std = random_gaussians(2, 3, seed=6)
    assert float(score_kl(mean, std, torch.ones(2, 3, dtype=torch.bool), 0.0)) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"kl_weight": -1.0}, ValueError, ["kl_weight", "-1.0"]),
        ({"kl_weight": float("nan")}, ValueError, ["kl_weight", "nan"]),
        ({"kl_weight": "1"}, TypeError, ["kl_weight", "'1'"]),
        ({"std": torch.ones(2, 4)}, ValueError, ["std", "(2, 4)"]),
        ({"eligible": torch.ones(2, 3)}, TypeError, ["eligible", "float32"]),
        ({"mean": torch.zeros(2, 3, dtype=torch.int64)}, TypeError, ["mean", "int64"]),
    ],
)
def test_bad_input_names_argument_and_value(kwargs, error, words) -> None:
    args = {
        "mean": torch.zeros(2, 3),
        "std": torch.ones(2, 3),
        "eligible": torch.ones(2, 3, dtype=torch.bool),
        "kl_weight": 1.0,
    }
    args.update(kwargs)
    with pytest.raises(error) as info:
        score_kl(**args)
    for word in words:
        assert word in str(info.value)
