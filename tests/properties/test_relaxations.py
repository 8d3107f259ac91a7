"""The contract every registered relaxation keeps, on generated problems (advmask.relaxations).

For every name in the registry: the forward value is the exact hard mask, padding and degenerate
rows get zero gradient, the soft mask sums to k, and it sharpens to the hard mask. The names are
read from the registry, so a newly registered relaxation is checked without editing this file
(its sharp options must be added to ``SHARP``). The rest of the contract (float32 and half
inputs, torch.func.vmap) is in tests/test_relaxation_contract.py; the algorithm-specific
oracles are in tests/test_relaxations.py.
"""

import pytest
import torch
from hypothesis import given, settings

from advmask import bottom_k
from advmask.hard_selection import hard_bottom_k
from advmask.relaxations import RELAXATIONS
from advmask.selection import relaxed_bottom_k

from ._helpers import NAMES
from .strategies import selection_problems

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


def sharp_options(name: str) -> dict:
    if name not in SHARP:
        pytest.fail(f"no sharp options for relaxation {name!r}: add them to SHARP", pytrace=False)
    return SHARP[name]


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
    _, soft = soft_mask(name, problem, generator, **sharp_options(name))
    hard = hard_bottom_k(problem.scores, problem.k, problem.eligible)
    torch.testing.assert_close(soft, hard, rtol=0, atol=SHARP_ATOL.get(name, 1e-6))
