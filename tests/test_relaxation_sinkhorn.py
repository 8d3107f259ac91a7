"""Oracles for the sinkhorn relaxation (SPEC §3, §12, §15.2): the calibrated sigmoid at
convergence, implicit and unrolled gradients, the squared-cost iteration, huge scores.

Each relaxation is compared with an independent computation: brute-force enumeration, a
root finder from scipy, a closed form, finite differences. The shared contract (exact hard
forward, padding, degenerate rows, sum to k, sharp limit) is in
tests/properties/test_relaxations.py and tests/test_relaxation_contract.py.
"""

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

# ----------------------------------------------------------------------------- sinkhorn


@pytest.mark.parametrize(("epsilon", "normalize_cost"), [(0.1, True), (0.4, False), (0.05, True)])
def test_converged_sinkhorn_is_the_calibrated_sigmoid(epsilon, normalize_cost) -> None:
    # SPEC §3c closed form: soft = sigmoid((t - x) / tau_eff), tau_eff = eps * c / 2 with
    # c = max over eligible of max(x^2, (x - 1)^2), or eps / 2 without normalisation.
    scores, k, eligible = random_problem(10, batch=5, length=9)
    expected = []
    for values, kk in rows(scores, k, eligible):
        c = max(max(x**2, (x - 1) ** 2) for x in values) if normalize_cost else 1.0
        expected.append(calibrated_sigmoid_oracle(values, kk, epsilon * c / 2))
    soft = relax(
        "sinkhorn",
        scores,
        k,
        eligible,
        epsilon=epsilon,
        normalize_cost=normalize_cost,
        num_iters=3000,
    )
    torch.testing.assert_close(soft, expand(expected, eligible), rtol=0, atol=1e-8)


def test_sinkhorn_implicit_gradient_equals_unrolled_at_convergence() -> None:
    scores, k, eligible = random_problem(11, batch=4, length=8)
    weights = torch.randn(scores.shape, dtype=F64, generator=torch.Generator().manual_seed(0))
    grads = []
    for backward in ("unrolled", "implicit"):
        leaf = scores.clone().requires_grad_()
        soft = relax("sinkhorn", leaf, k, eligible, num_iters=1500, backward=backward)
        grads.append(torch.autograd.grad((soft * weights).sum(), leaf)[0])
    assert grads[0].abs().max() > 1e-2  # a non-trivial gradient
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=1e-8)


def test_sinkhorn_gradcheck_unrolled() -> None:
    # Without normalisation: the detached cost scale c would otherwise be a (deliberately)
    # missing term that finite differences see.
    scores, k, eligible = random_problem(12, batch=3, length=6)
    leaf = scores.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda s: relax(
            "sinkhorn", s, k, eligible, epsilon=0.3, num_iters=25, normalize_cost=False
        ),
        (leaf,),
        eps=1e-6,
        atol=1e-5,
        rtol=1e-3,
    )


def test_sinkhorn_cost_scale_is_detached_and_read_on_eligible_only() -> None:
    # Normalised at epsilon equals unnormalised at epsilon * c in value and in gradient iff c
    # is a constant for autograd; the ineligible score 100 must not enter c.
    scores = torch.tensor([[0.4, -1.3, 2.2, 0.1, 100.0]], dtype=F64)
    eligible = torch.tensor([[True, True, True, True, False]])
    k = torch.tensor([2])
    c = max(max(x**2, (x - 1) ** 2) for x in scores[0, :4].tolist())
    results = []
    for options in ({"epsilon": 0.1}, {"epsilon": 0.1 * c, "normalize_cost": False}):
        leaf = scores.clone().requires_grad_()
        soft = relax("sinkhorn", leaf, k, eligible, num_iters=7, **options)
        (grad,) = torch.autograd.grad((soft * torch.arange(5.0, dtype=F64)).sum(), leaf)
        results.append((soft, grad))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-10, atol=1e-12)


def test_sinkhorn_column_marginals_are_exact_after_one_iteration() -> None:
    scores, k, eligible = random_problem(13, batch=5, length=9, scale=3.0)
    soft = relax("sinkhorn", scores, k, eligible, epsilon=0.01, num_iters=1)
    torch.testing.assert_close(soft.sum(1), k.to(F64), rtol=0, atol=1e-12)


def squared_cost_sinkhorn(scores, k, eligible, epsilon=0.1, num_iters=200, normalize_cost=True):
    """The iteration on the full cost (x^2, (x - 1)^2), as the reference writes it; the oracle.

    Valid only while x^2 is representable and does not swamp 1 - 2x (|x| well below 1e8).
    """
    x = torch.where(eligible, scores, torch.zeros_like(scores))
    cost = torch.stack([x**2, (x - 1) ** 2], dim=1)  # (B, 2, T)
    mask = eligible.unsqueeze(1)
    scale = torch.where(mask, cost, 0.0).detach().amax(dim=(1, 2)) if normalize_cost else 1.0
    neg_cost = -cost / (epsilon * torch.as_tensor(scale, dtype=x.dtype).reshape(-1, 1, 1))
    n = eligible.sum(1).to(x.dtype)
    frac = k.to(x.dtype) / n
    log_mu, log_nu = -torch.log(n).unsqueeze(1), torch.log(torch.stack([frac, 1 - frac], 1))
    g = torch.zeros_like(log_nu)
    for _ in range(num_iters):
        f = log_mu - torch.logsumexp(g.unsqueeze(2) + neg_cost, dim=1)
        g = log_nu - torch.logsumexp(
            torch.where(mask, f.unsqueeze(1) + neg_cost, float("-inf")), dim=2
        )
    soft = n.unsqueeze(1) * torch.exp(f + g[:, :1] + neg_cost[:, 0])
    return torch.where(eligible, soft, torch.zeros_like(soft))


@pytest.mark.parametrize("scale", [1e-3, 0.1, 1.0, 30.0])
@pytest.mark.parametrize("normalize_cost", [True, False])
def test_sinkhorn_equals_the_squared_cost_iteration_at_normal_scales(scale, normalize_cost):
    # Only the cost gap 1 - 2x between the anchors enters the plan; the per-row constant x^2 is
    # absorbed by the row potential. Value and unrolled gradient agree to rounding.
    scores, k, eligible = random_problem(21, batch=5, length=9, scale=scale)
    weights = torch.randn(scores.shape, dtype=F64, generator=torch.Generator().manual_seed(1))
    results = []
    for fn in (
        lambda s: relax("sinkhorn", s, k, eligible, num_iters=50, normalize_cost=normalize_cost),
        lambda s: squared_cost_sinkhorn(s, k, eligible, 0.1, 50, normalize_cost),
    ):
        leaf = scores.clone().requires_grad_()
        soft = fn(leaf)
        results.append((soft, torch.autograd.grad((soft * weights).sum(), leaf)[0]))
    (soft, grad), (expected_soft, expected_grad) = results
    torch.testing.assert_close(soft, expected_soft, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("scale", [1e19, 1e30])
@pytest.mark.parametrize("backward", ["unrolled", "implicit"])
def test_sinkhorn_is_finite_for_huge_scores(dtype, scale, backward) -> None:
    # x^2 overflows float32 at |x| >= 1.8e19, which made the whole mask NaN. With the
    # normalised cost tau_eff = eps * c / 2 grows as scale^2 while the scores grow as scale,
    # so the map tends to the uniform k / n (what float64 gives for the squared cost).
    scores, k, eligible = random_problem(22, batch=4, length=9, scale=scale, dtype=dtype)
    leaf = scores.clone().requires_grad_()
    soft = relax("sinkhorn", leaf, k, eligible, backward=backward)
    (grad,) = torch.autograd.grad((soft * torch.arange(9.0, dtype=dtype)).sum(), leaf)
    assert torch.isfinite(soft).all() and torch.isfinite(grad).all()
    fraction = k.to(dtype) / eligible.sum(1).to(dtype)
    uniform = torch.where(eligible, fraction.unsqueeze(1), torch.zeros((), dtype=dtype))
    atol = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(soft.detach(), uniform, rtol=0, atol=atol)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("scale", [1e19, 1e30])
def test_sinkhorn_without_normalisation_is_finite_and_sums_to_k_for_huge_scores(dtype, scale):
    # tau_eff = eps / 2 is tiny against these gaps: 200 iterations are far from converged, but
    # the result is finite and the column marginals are exact (the squared cost gave NaN in
    # float32 and rows of all 6.0 in float64).
    scores, k, eligible = random_problem(23, batch=4, length=9, scale=scale, dtype=dtype)
    soft = relax("sinkhorn", scores, k, eligible, normalize_cost=False)
    assert torch.isfinite(soft).all()
    torch.testing.assert_close(soft.sum(1), k.to(dtype), rtol=1e-5, atol=0)
