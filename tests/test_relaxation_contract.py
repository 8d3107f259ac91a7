"""The contract every registered relaxation keeps (advmask.relaxations module docstring).

Algorithm-specific oracles live in tests/test_relax_<name>.py; this file checks, for every name,
what the masker relies on: the forward value is the exact hard mask, padding and degenerate rows
get zero gradient, the soft mask sums to k, and it sharpens to the hard mask.
"""

import pytest
import torch
from hypothesis import given, settings

from advmask import bottom_k, hard_bottom_k
from advmask.relaxations import RELAXATIONS
from advmask.selection import relaxed_bottom_k

from .properties.strategies import selection_problems

NAMES = ["euclidean", "sst", "softmax", "sinkhorn", "lml", "perturbed"]

# Options that make each relaxation (nearly) hard for scores with gaps >= 0.5.
SHARP = {
    "euclidean": {"temperature": 0.01},
    "sst": {"temperature": 0.01},
    "softmax": {"temperature": 0.01},
    "sinkhorn": {"epsilon": 0.05, "normalize_cost": False, "num_iters": 2000},
    "lml": {"temperature": 0.01},
    "perturbed": {"sigma": 1e-3, "num_samples": 8},
}
# Sum-to-k tolerance in float64: exact up to rounding, except lml (bisection) and sinkhorn
# (exact column marginals after the final g-update, SPEC §3c).
SUM_ATOL = {"lml": 1e-9, "sinkhorn": 1e-9}
# Sharp-limit tolerance: the others reach the hard mask to rounding, but Sinkhorn's two-anchor
# iteration converges linearly with a rate near 1 at small epsilon; on score ranges of ~10, 2000
# iterations leave up to ~4e-4 (a wrong selection would be off by ~1).
SHARP_ATOL = {"sinkhorn": 2e-3}


def test_all_names_registered() -> None:
    assert set(NAMES) <= set(RELAXATIONS)


def soft_mask(name, problem, generator=None, **options):
    scores = problem.scores.clone().requires_grad_()
    hard = hard_bottom_k(problem.scores, problem.k, problem.eligible)
    soft = relaxed_bottom_k(
        scores, problem.k, problem.eligible, hard, RELAXATIONS[name], generator, options
    )
    return scores, soft


@pytest.mark.parametrize("name", NAMES)
@given(problem=selection_problems())
@settings(max_examples=25)
def test_forward_is_hard_and_gradient_respects_padding(name, problem) -> None:
    generator = torch.Generator().manual_seed(0)
    scores = problem.scores.clone().requires_grad_()
    mask = bottom_k(scores, problem.k, problem.eligible, name, generator=generator)
    assert torch.equal(mask.detach(), hard_bottom_k(problem.scores, problem.k, problem.eligible))
    weights = torch.randn(scores.shape, dtype=scores.dtype, generator=generator)
    (grad,) = torch.autograd.grad((mask * weights).sum(), scores)
    assert torch.isfinite(grad).all()
    assert torch.all(grad[~problem.eligible] == 0)
    n = problem.eligible.sum(1)
    degenerate = (problem.k == 0) | (problem.k == n)
    assert torch.all(grad[degenerate] == 0)


@pytest.mark.parametrize("name", NAMES)
@given(problem=selection_problems())
@settings(max_examples=25)
def test_soft_sums_to_k_and_is_zero_off_eligible(name, problem) -> None:
    generator = torch.Generator().manual_seed(0)
    _, soft = soft_mask(name, problem, generator)
    assert torch.all(soft[~problem.eligible] == 0)
    torch.testing.assert_close(
        soft.sum(1), problem.k.to(soft.dtype), rtol=0, atol=SUM_ATOL.get(name, 1e-12) * 10
    )
    assert torch.isfinite(soft).all()


@pytest.mark.parametrize("name", NAMES)
@given(problem=selection_problems(min_gap=0.5, max_len=10))
@settings(max_examples=15)
def test_sharp_limit_is_the_hard_mask(name, problem) -> None:
    generator = torch.Generator().manual_seed(0)
    _, soft = soft_mask(name, problem, generator, **SHARP[name])
    hard = hard_bottom_k(problem.scores, problem.k, problem.eligible)
    torch.testing.assert_close(soft, hard, rtol=0, atol=SHARP_ATOL.get(name, 1e-6))


@pytest.mark.parametrize("name", NAMES)
def test_float32_and_half_inputs(name) -> None:
    generator = torch.Generator().manual_seed(3)
    for dtype in (torch.float32, torch.bfloat16):
        scores = torch.randn(3, 12, generator=generator).to(dtype).requires_grad_()
        eligible = torch.arange(12) < torch.tensor([[12], [7], [1]])
        k = torch.tensor([4, 2, 1])
        mask = bottom_k(scores, k, eligible, name, generator=generator)
        assert mask.dtype == torch.float32
        assert torch.equal(mask.sum(1).long(), k)
        (grad,) = torch.autograd.grad((mask * torch.arange(12.0)).sum(), scores)
        assert torch.isfinite(grad.float()).all()
        assert torch.all(grad[~eligible] == 0)
