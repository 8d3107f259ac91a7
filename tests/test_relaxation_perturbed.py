"""Oracles for the perturbed relaxation (SPEC §3, §12, §15.2): an average of k-hot masks,
seeded, with a Stein VJP that matches finite differences of the smoothed map.

Each relaxation is compared with an independent computation: brute-force enumeration, a
root finder from scipy, a closed form, finite differences. The shared contract (exact hard
forward, padding, degenerate rows, sum to k, sharp limit) is in
tests/properties/test_relaxations.py and tests/test_relaxation_contract.py.
"""

import math

import torch

from advmask import AdversarialMasker
from advmask.hard_selection import hard_bottom_k
from advmask.scores import build_score_network

from ._relaxation_helpers import (
    F64,
    random_problem,
    relax,
)

# ----------------------------------------------------------------------------- perturbed


def test_perturbed_is_an_average_of_k_hot_masks_and_is_seeded() -> None:
    scores, k, eligible = random_problem(16, batch=4, length=9)
    options = {"num_samples": 64, "sigma": 0.3}
    first = relax(
        "perturbed", scores, k, eligible, generator=torch.Generator().manual_seed(5), **options
    )
    again = relax(
        "perturbed", scores, k, eligible, generator=torch.Generator().manual_seed(5), **options
    )
    assert torch.equal(first, again)
    assert torch.equal(first.sum(1), k.to(F64))  # sums of multiples of 1/64 are exact
    assert torch.equal(first * 64, (first * 64).round())
    assert torch.all(first[~eligible] == 0)


def test_perturbed_stein_vjp_matches_finite_differences_of_the_smoothed_map() -> None:
    # SPEC §3d. The library's Stein VJP (M samples) is compared with a central finite
    # difference (h = 0.05) of the smoothed map E[<g, H(s + sigma Z)>] under common random
    # numbers (M_ref samples). Both are sample means, so each standard error is the sample
    # standard deviation of its per-sample terms over sqrt(sample size); the Stein SE is
    # estimated from an independent draw of the same estimator. The FD bias is O(h^2 / sigma^3)
    # ~ 1e-3, far below the tolerance of 4 combined SE (~0.15).
    sigma, h, samples, reference_samples = 0.5, 0.05, 20_000, 50_000
    scores = torch.tensor([[0.3, -0.2, 0.9, 0.1, -0.6, 0.5]], dtype=F64)
    weights = torch.tensor([1.0, -1.0, 0.5, 2.0, -0.5, 0.0], dtype=F64)
    k, eligible, length = torch.tensor([2]), torch.ones(1, 6, dtype=torch.bool), 6

    leaf = scores.clone().requires_grad_()
    soft = relax(
        "perturbed",
        leaf,
        k,
        eligible,
        generator=torch.Generator().manual_seed(0),
        num_samples=samples,
        sigma=sigma,
    )
    (stein,) = torch.autograd.grad(soft, leaf, weights.unsqueeze(0))

    def hard(points):  # (M, T) -> <g, H> per sample
        return (
            hard_bottom_k(points, k.expand(points.shape[0]), eligible.expand(points.shape[0], -1))
            @ weights
        )

    noise = torch.randn(samples, length, dtype=F64, generator=torch.Generator().manual_seed(1))
    terms = hard(scores + sigma * noise).unsqueeze(1) * noise / sigma
    stein_se = terms.std(0) / math.sqrt(samples)

    noise = torch.randn(
        reference_samples, length, dtype=F64, generator=torch.Generator().manual_seed(2)
    )
    finite_difference, fd_se = torch.empty(length, dtype=F64), torch.empty(length, dtype=F64)
    for j in range(length):
        step = torch.zeros(length, dtype=F64)
        step[j] = h
        diffs = (hard(scores + step + sigma * noise) - hard(scores - step + sigma * noise)) / (
            2 * h
        )
        finite_difference[j] = diffs.mean()
        fd_se[j] = diffs.std() / math.sqrt(reference_samples)

    tolerance = 4 * torch.sqrt(stein_se**2 + fd_se**2)
    assert torch.all((stein[0] - finite_difference).abs() <= tolerance), (
        stein,
        finite_difference,
        tolerance,
    )
    # The test has power: a sign error (or a missing 1/sigma) would fail it.
    assert torch.any((-stein[0] - finite_difference).abs() > tolerance)
    assert torch.any((sigma * stein[0] - finite_difference).abs() > tolerance)


def test_perturbed_gradient_is_zero_off_eligible() -> None:
    scores, k, eligible = random_problem(17, batch=3, length=8)
    leaf = scores.clone().requires_grad_()
    soft = relax(
        "perturbed", leaf, k, eligible, generator=torch.Generator().manual_seed(0), num_samples=32
    )
    (grad,) = torch.autograd.grad((soft * torch.arange(8.0, dtype=F64)).sum(), leaf)
    assert torch.all(grad[~eligible] == 0)
    assert torch.any(grad[eligible] != 0)


def test_building_a_perturbed_masker_leaves_the_global_generator_alone() -> None:
    # The masker calls its relaxation once at construction to check the options; "perturbed"
    # drew that call's noise from the global generator, so one seed gave other initial weights
    # than with a deterministic relaxation.
    network = build_score_network("lstm", 20, embedding_dim=4, hidden_size=4)
    state = torch.get_rng_state()
    AdversarialMasker(20, 0.5, relaxation="perturbed", score_network=network)
    assert torch.equal(torch.get_rng_state(), state)

    built = {}
    for relaxation in ("perturbed", "euclidean"):
        torch.manual_seed(0)
        masker = AdversarialMasker(
            20, 0.5, relaxation=relaxation, embedding_dim=4, hidden_size=4,
            relaxation_options={"num_samples": 8} if relaxation == "perturbed" else {},
        )  # fmt: skip
        built[relaxation] = (masker.score_network.state_dict(), torch.get_rng_state())
    (weights, after), (expected_weights, expected_after) = built.values()
    assert torch.equal(after, expected_after)
    assert all(torch.equal(weights[name], expected_weights[name]) for name in weights)
