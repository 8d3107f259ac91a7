"""Algorithm-specific oracles for the built-in relaxations (SPEC §3, §12, §15.2).

The shared contract (exact hard forward, padding, degenerate rows, sum to k, sharp limit) is in
tests/properties/test_relaxations.py and tests/test_relaxation_contract.py. Here each relaxation
is compared with an independent computation: brute-force enumeration, a root finder from scipy,
a closed form, finite differences.
"""

import itertools
import math

import pytest
import torch
from scipy.optimize import brentq
from scipy.special import expit

from advmask import AdversarialMasker
from advmask.hard_selection import hard_bottom_k
from advmask.relaxations import RELAXATIONS
from advmask.scores import build_score_network

F64 = torch.float64
DETERMINISTIC = ["euclidean", "sst", "softmax", "sinkhorn", "lml"]


def relax(name, scores, k, eligible, **options):
    return RELAXATIONS[name](scores, k, eligible, **options)


def random_problem(seed, batch=4, length=9, scale=1.0, dtype=F64):
    """Scores ~ N(0, scale^2), varied lengths >= 2 and a per-row k in [1, n - 1]."""
    generator = torch.Generator().manual_seed(seed)
    scores = scale * torch.randn(batch, length, generator=generator, dtype=dtype)
    lengths = torch.randint(2, length + 1, (batch,), generator=generator)
    lengths[0] = length
    eligible = torch.arange(length) < lengths[:, None]
    k = 1 + (torch.rand(batch, generator=generator) * (lengths - 1)).long()
    return scores, k, eligible


def rows(scores, k, eligible):
    """(compact eligible scores as floats, k as int) for each row."""
    for row in range(scores.shape[0]):
        yield scores[row][eligible[row]].tolist(), int(k[row])


def jacobian(name, scores, k, eligible, **options):
    """(T, T) Jacobian d soft / d scores of a single-row problem."""

    def soft(row):
        return relax(name, row.unsqueeze(0), k, eligible, **options)[0]

    return torch.autograd.functional.jacobian(soft, scores[0])


def calibrated_sigmoid_oracle(values, k, temperature):
    """sigmoid((nu - x) / tau) with sum = k, nu from scipy's Brent root finder."""

    def excess(nu):
        return sum(expit((nu - x) / temperature) for x in values) - k

    low, high = min(values) - 40 * temperature, max(values) + 40 * temperature
    nu = brentq(excess, low, high, xtol=1e-15, maxiter=500)
    return [float(expit((nu - x) / temperature)) for x in values]


def expand(compact_rows, eligible):
    """Scatter per-row compact lists back into a (B, T) float64 tensor (0 off eligible)."""
    out = torch.zeros(eligible.shape, dtype=F64)
    for row, values in enumerate(compact_rows):
        out[row, eligible[row]] = torch.tensor(values, dtype=F64)
    return out


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
