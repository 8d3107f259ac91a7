"""Oracles for the closed-form relaxations (SPEC §3, §12, §15.2): euclidean, sst, softmax, lml;
and what every built-in relaxation does with padding, bad hyper-parameters, float32, CUDA.

Each relaxation is compared with an independent computation: brute-force enumeration, a
root finder from scipy, a closed form, finite differences. The shared contract (exact hard
forward, padding, degenerate rows, sum to k, sharp limit) is in
tests/properties/test_relaxations.py and tests/test_relaxation_contract.py.
Sinkhorn and perturbed are in tests/test_relaxation_sinkhorn.py and
tests/test_relaxation_perturbed.py.
"""

import itertools
import math

import pytest
import torch

from ._relaxation_helpers import (
    F64,
    calibrated_sigmoid_oracle,
    expand,
    random_problem,
    relax,
    rows,
)

DETERMINISTIC = ["euclidean", "sst", "softmax", "sinkhorn", "lml"]


def jacobian(name, scores, k, eligible, **options):
    """(T, T) Jacobian d soft / d scores of a single-row problem."""

    def soft(row):
        return relax(name, row.unsqueeze(0), k, eligible, **options)[0]

    return torch.autograd.functional.jacobian(soft, scores[0])


# ----------------------------------------------------------------------------- all of them


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_padding_and_junk_scores_do_not_change_eligible_values(name) -> None:
    # SPEC R0.1: the eligible part equals the algorithm run on the compacted row. Ineligible
    # scores are extreme so that any leak (a max, a sum, a cost scale) shows.
    scores, k, _ = random_problem(0, batch=3, length=6)
    eligible = torch.ones_like(scores, dtype=torch.bool)
    padded = torch.cat([torch.tensor([[50.0, -30.0]], dtype=F64).expand(3, 2), scores], 1)
    padded_eligible = torch.cat([torch.zeros(3, 2, dtype=torch.bool), eligible], 1)
    compact = relax(name, scores, k, eligible)
    soft = relax(name, padded, k, padded_eligible)
    assert torch.all(soft[:, :2] == 0)
    torch.testing.assert_close(soft[:, 2:], compact, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("name", "options", "error", "fragment"),
    [
        ("euclidean", {"temperature": 0.0}, ValueError, "temperature"),
        ("sst", {"temperature": -1.0}, ValueError, "temperature must be a finite float > 0"),
        ("softmax", {"temperature": float("nan")}, ValueError, "nan"),
        ("lml", {"temperature": float("inf")}, ValueError, "inf"),
        ("sinkhorn", {"epsilon": 0}, ValueError, "epsilon"),
        ("sinkhorn", {"num_iters": 0}, ValueError, "num_iters must be >= 1, got 0"),
        ("sinkhorn", {"num_iters": 2.5}, TypeError, "num_iters"),
        ("sinkhorn", {"backward": "adjoint"}, ValueError, "'adjoint'"),
        ("sinkhorn", {"normalize_cost": 1}, TypeError, "normalize_cost"),
        ("perturbed", {"num_samples": 0}, ValueError, "num_samples"),
        ("perturbed", {"sigma": -0.1}, ValueError, "sigma must be a finite float > 0, got -0.1"),
        ("euclidean", {"tau": 1.0}, TypeError, "tau"),
    ],
)
def test_invalid_hyper_parameters_are_named(name, options, error, fragment) -> None:
    scores, k, eligible = random_problem(1)
    with pytest.raises(error, match=fragment.replace("(", r"\(").replace(".", r"\.")):
        relax(name, scores, k, eligible, **options)


@pytest.mark.parametrize("name", [*DETERMINISTIC, "perturbed"])
def test_float32_stays_float32_and_sums_to_k(name) -> None:
    scores, k, eligible = random_problem(2, batch=3, length=12, dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    soft = relax(name, scores, k, eligible, generator=generator)
    assert soft.dtype == torch.float32
    torch.testing.assert_close(soft.sum(1), k.float(), rtol=0, atol=1e-5 * float(k.max()))


# ----------------------------------------------------------------------------- euclidean


def projection_oracle(values, k, temperature):
    """clip(-x / tau + nu, 0, 1) with sum = k, nu by plain bisection (200 halvings)."""
    logits = [-x / temperature for x in values]
    low, high = -max(logits) - 1.0, 1.0 - min(logits) + 1.0
    for _ in range(200):
        middle = (low + high) / 2
        if sum(min(max(z + middle, 0.0), 1.0) for z in logits) > k:
            high = middle
        else:
            low = middle
    nu = (low + high) / 2
    return [min(max(z + nu, 0.0), 1.0) for z in logits]


@pytest.mark.parametrize("temperature", [0.05, 0.4, 1.0, 3.0])
def test_euclidean_is_the_capped_simplex_projection(temperature) -> None:
    scores, k, eligible = random_problem(3, batch=6, length=11)
    scores[1, 2:5] = scores[1, 1]  # ties: the projection is continuous, nothing special
    expected = expand(
        [projection_oracle(v, kk, temperature) for v, kk in rows(scores, k, eligible)], eligible
    )
    soft = relax("euclidean", scores, k, eligible, temperature=temperature)
    torch.testing.assert_close(soft, expected, rtol=0, atol=1e-10)


def test_euclidean_gradcheck_and_jacobian_signs() -> None:
    scores, k, eligible = random_problem(4, batch=3, length=8)
    leaf = scores.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda s: relax("euclidean", s, k, eligible, temperature=0.7),
        (leaf,),
        eps=1e-6,
        atol=1e-5,
        rtol=1e-3,
    )
    single = scores[:1]
    jac = jacobian("euclidean", single, k[:1], eligible[:1], temperature=0.7)
    soft = relax("euclidean", single, k[:1], eligible[:1], temperature=0.7)[0]
    free = (soft > 0) & (soft < 1)
    assert free.sum() >= 2  # the example exercises the free-set formula
    assert torch.all(jac.diagonal() <= 0)
    assert torch.all(jac.diagonal()[free] < 0)
    # Clipped positions neither move nor move others; shift invariance gives J 1 = 0.
    assert torch.all(jac[~free] == 0) and torch.all(jac[:, ~free] == 0)
    torch.testing.assert_close(jac.sum(1), torch.zeros(8, dtype=F64), rtol=0, atol=1e-12)


def test_euclidean_empty_free_set_gives_zero_gradient() -> None:
    # Gaps of 1 at temperature 0.01: every entry clipped to 0 or 1, so F is empty.
    scores = torch.tensor([[0.0, 1.0, 2.0, 3.0]], dtype=F64, requires_grad=True)
    soft = relax(
        "euclidean", scores, torch.tensor([2]), torch.ones(1, 4, dtype=torch.bool), temperature=0.01
    )
    assert torch.equal(soft.detach(), torch.tensor([[1.0, 1.0, 0.0, 0.0]], dtype=F64))
    (grad,) = torch.autograd.grad((soft * torch.arange(4.0, dtype=F64)).sum(), scores)
    assert torch.equal(grad, torch.zeros_like(grad))


# ----------------------------------------------------------------------------- sst


def subset_marginals(values, k, temperature):
    """Marginals P(i in S) and pair marginals P(i, j in S) by enumerating the k-subsets."""
    n = len(values)
    subsets = list(itertools.combinations(range(n), k))
    logits = [-sum(values[i] for i in subset) / temperature for subset in subsets]
    top = max(logits)
    weights = [math.exp(z - top) for z in logits]
    total = sum(weights)
    single = [0.0] * n
    pair = [[0.0] * n for _ in range(n)]
    for subset, weight in zip(subsets, weights, strict=True):
        for i in subset:
            single[i] += weight / total
            for j in subset:
                pair[i][j] += weight / total
    return single, pair


@pytest.mark.parametrize("temperature", [0.1, 0.5, 2.0])
def test_sst_matches_brute_force_enumeration(temperature) -> None:
    scores, k, eligible = random_problem(5, batch=5, length=7)
    marginals = [subset_marginals(v, kk, temperature)[0] for v, kk in rows(scores, k, eligible)]
    soft = relax("sst", scores, k, eligible, temperature=temperature)
    torch.testing.assert_close(soft, expand(marginals, eligible), rtol=0, atol=1e-10)


def test_sst_jacobian_is_the_covariance() -> None:
    # J_ij = -(1/tau) (P(i, j in S) - p_i p_j): symmetric NSD, diag < 0, off-diag >= 0.
    temperature = 0.4
    scores, k, eligible = random_problem(6, batch=1, length=6)
    k = torch.tensor([3])
    single, pair = subset_marginals(scores[0].tolist(), 3, temperature)
    p = torch.tensor(single, dtype=F64)
    expected = -(torch.tensor(pair, dtype=F64) - torch.outer(p, p)) / temperature
    jac = jacobian("sst", scores, k, eligible, temperature=temperature)
    torch.testing.assert_close(jac, expected, rtol=0, atol=1e-10)
    assert torch.all(jac.diagonal() < 0)
    assert torch.all(jac - torch.diag(jac.diagonal()) >= 0)


def test_sst_gradcheck_and_no_graph_without_grad() -> None:
    scores, k, eligible = random_problem(7, batch=3, length=6)
    leaf = scores.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda s: relax("sst", s, k, eligible, temperature=0.3),
        (leaf,),
        eps=1e-6,
        atol=1e-5,
        rtol=1e-3,
    )
    with torch.no_grad():
        inside = relax("sst", leaf, k, eligible, temperature=0.3)
    outside = relax("sst", scores, k, eligible, temperature=0.3)
    assert not inside.requires_grad and not outside.requires_grad
    torch.testing.assert_close(inside, outside, rtol=0, atol=0)


def test_sst_ties_at_the_boundary_split_evenly() -> None:
    # SPEC §3b: s = (0, 1, 1, 2, 3), K = 2 -> (1, 1/2, 1/2, 0, 0); the error is ~exp(-1/tau).
    scores = torch.tensor([[0.0, 1.0, 1.0, 2.0, 3.0]], dtype=F64)
    soft = relax(
        "sst", scores, torch.tensor([2]), torch.ones(1, 5, dtype=torch.bool), temperature=0.01
    )
    expected = torch.tensor([[1.0, 0.5, 0.5, 0.0, 0.0]], dtype=F64)
    torch.testing.assert_close(soft, expected, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- softmax


def test_softmax_spec_examples() -> None:
    eligible = torch.ones(1, 2, dtype=torch.bool)
    scores = torch.tensor([[0.0, 1.0]], dtype=F64)
    soft = relax("softmax", scores, torch.tensor([2]), eligible, temperature=1.0)
    torch.testing.assert_close(soft, torch.tensor([[1.2311, 0.7689]], dtype=F64), rtol=0, atol=1e-4)
    # With tau = 1/2: a1 = (sig(2), sig(-2)); w2 = (log sig(-2), -1 + log sig(2)) differ by
    # -1 + 2 = 1, so a2 = softmax(w2 / tau) = (sig(-2), sig(2)) and soft = (1, 1). Adding the log
    # mask after dividing by tau would give a2 = (1/2, 1/2) and soft = (1.3808, 0.6192).
    soft = relax("softmax", scores, torch.tensor([2]), eligible, temperature=0.5)
    torch.testing.assert_close(soft, torch.ones(1, 2, dtype=F64), rtol=0, atol=1e-12)


def successive_softmax_oracle(values, k, temperature):
    """The SPEC §3a loop on one compact row, in Python floats."""
    w = [-x for x in values]
    taken = [0.0] * len(values)
    soft = [0.0] * len(values)
    for _ in range(k):
        w = [
            wi + math.log(max(1 - ai, torch.finfo(torch.float32).tiny))
            for wi, ai in zip(w, taken, strict=True)
        ]
        top = max(wi / temperature for wi in w)
        exps = [math.exp(wi / temperature - top) for wi in w]
        taken = [e / sum(exps) for e in exps]
        soft = [si + ai for si, ai in zip(soft, taken, strict=True)]
    return soft


def test_softmax_per_row_k_matches_the_row_by_row_loop() -> None:
    # Rows with different k share one loop up to max k; a row must stop after its own k.
    scores, k, eligible = random_problem(8, batch=6, length=9)
    expected = [successive_softmax_oracle(v, kk, 0.3) for v, kk in rows(scores, k, eligible)]
    soft = relax("softmax", scores, k, eligible, temperature=0.3)
    torch.testing.assert_close(soft, expand(expected, eligible), rtol=0, atol=1e-12)
    # k = 1 is a plain softmax of -s / tau.
    one = relax("softmax", scores, torch.ones_like(k), eligible, temperature=0.3)
    plain = torch.softmax(torch.where(eligible, -scores / 0.3, float("-inf")), 1)
    torch.testing.assert_close(one, plain, rtol=0, atol=1e-14)


def test_softmax_gradcheck() -> None:
    scores, k, eligible = random_problem(9, batch=3, length=6)
    leaf = scores.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda s: relax("softmax", s, k, eligible, temperature=0.4),
        (leaf,),
        eps=1e-6,
        atol=1e-5,
        rtol=1e-3,
    )


# ----------------------------------------------------------------------------- lml


@pytest.mark.parametrize("temperature", [0.01, 0.1, 1.0])
def test_lml_matches_brent_root_and_sums_to_k(temperature) -> None:
    scores, k, eligible = random_problem(14, batch=5, length=10, scale=2.0)
    expected = [
        calibrated_sigmoid_oracle(v, kk, temperature) for v, kk in rows(scores, k, eligible)
    ]
    soft = relax("lml", scores, k, eligible, temperature=temperature)
    torch.testing.assert_close(soft, expand(expected, eligible), rtol=0, atol=1e-10)
    torch.testing.assert_close(soft.sum(1), k.to(F64), rtol=0, atol=1e-11)


def test_lml_gradcheck_and_jacobian_structure() -> None:
    scores, k, eligible = random_problem(15, batch=3, length=7)
    leaf = scores.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda s: relax("lml", s, k, eligible, temperature=0.3),
        (leaf,),
        eps=1e-6,
        atol=1e-5,
        rtol=1e-3,
    )
    jac = jacobian("lml", scores[:1], k[:1], eligible[:1], temperature=0.3)
    torch.testing.assert_close(jac, jac.T, rtol=0, atol=1e-14)
    assert torch.all(jac.diagonal() < 0)
    assert torch.all(jac[~torch.eye(7, dtype=torch.bool)] > 0)
    torch.testing.assert_close(jac.sum(1), torch.zeros(7, dtype=F64), rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- device


@pytest.mark.gpu
@pytest.mark.parametrize("name", [*DETERMINISTIC, "perturbed"])
def test_runs_on_cuda_like_on_cpu(name) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    scores, k, eligible = random_problem(18, batch=4, length=10)
    options = {"generator": torch.Generator("cuda").manual_seed(0)} if name == "perturbed" else {}
    leaf = scores.cuda().requires_grad_()
    soft = relax(name, leaf, k.cuda(), eligible.cuda(), **options)
    assert soft.device == leaf.device
    (grad,) = torch.autograd.grad(soft.sum() + (soft * leaf.detach()).sum(), leaf)
    assert torch.isfinite(grad).all()
    if name != "perturbed":
        cpu = relax(name, scores, k, eligible)
        torch.testing.assert_close(soft.detach().cpu(), cpu, rtol=0, atol=1e-10)
