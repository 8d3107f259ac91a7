"""The contract every registered relaxation keeps (advmask.relaxations module docstring).

Algorithm-specific oracles live in tests/test_relaxation_oracles.py, test_relaxation_sinkhorn.py
and test_relaxation_perturbed.py. For every name, the property tests in
tests/properties/test_relaxations.py check on generated problems that the forward value is the
exact hard mask, that padding and degenerate rows get zero gradient, that the soft mask
sums to k and that it sharpens to the hard mask (its sharp options must be added to ``SHARP``
there); this file checks float32 and half inputs, and that torch.func.vmap over a batch of
problems gives what a loop over them gives.

The names are read from the registry, so a newly registered relaxation is checked without
editing this file.
"""

from collections.abc import Callable, Iterator

import pytest
import torch
from torch import Tensor

import advmask
from advmask import bottom_k
from advmask.hard_selection import hard_bottom_k
from advmask.relaxations import RELAXATIONS
from advmask.selection import relaxed_bottom_k

from .properties._helpers import NAMES

BUILT_IN = {"euclidean", "sst", "softmax", "sinkhorn", "lml", "perturbed"}


def test_all_names_registered() -> None:
    assert set(NAMES) >= BUILT_IN


def test_every_registered_relaxation_is_checked() -> None:
    # A relaxation registered after collection would escape the parametrisation.
    assert set(NAMES) == set(RELAXATIONS)


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


# -- torch.func.vmap --------------------------------------------------------------------------
# Relaxations that loop int(k.max()) times: a host read of k, which vmap can batch only while k
# is the same for every problem (batched scores) and not when k itself is batched.
LOOP_BOUND_FROM_K = {"softmax", "sst"}
# Relaxations that draw noise: vmap's default randomness="error" refuses them; with "same",
# every problem gets the same noise, which is what a loop gets from a generator seeded afresh
# for each problem.
STOCHASTIC = {"perturbed"}
# in_dims of (scores, k, eligible, cotangent): only the scores batched, or everything.
BATCHED = {"scores": (0, None, None, 0), "all": (0, 0, 0, 0)}


# Options that select another code path (another autograd.Function) worth batching too.
VMAP_OPTIONS = {"sinkhorn": [{}, {"backward": "implicit"}]}


def vmap_cases() -> list:
    """Every (relaxation, options, batched argument) case, as a list: pytest 9.1+ refuses a
    generator of parameters."""
    cases = []
    for name in NAMES:
        for options in VMAP_OPTIONS.get(name, [{}]):
            for batched in BATCHED:
                marks = []
                if name in LOOP_BOUND_FROM_K and batched != "scores":
                    reason = (
                        f"{name!r} loops int(k.max()) times: data-dependent control flow on a "
                        "batched k, which vmap cannot batch"
                    )
                    marks = [pytest.mark.xfail(strict=True, raises=RuntimeError, reason=reason)]
                label = "-".join([name, *(f"{key}={value}" for key, value in options.items())])
                case = pytest.param(name, options, batched, marks=marks, id=f"{label}-{batched}")
                cases.append(case)
    return cases


@pytest.fixture
def no_value_checks() -> Iterator[None]:
    # The value checks of bottom_k read k and the scores on the host (.tolist()), which vmap
    # cannot batch; they are switched off as one would in a training loop.
    enabled = advmask.value_checks_enabled()
    advmask.set_value_checks(False)
    yield
    advmask.set_value_checks(enabled)


def vmap_problems(batched: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """3 problems of (B, T) = (4, 9) in float64, k from 0 to n (degenerate rows included).

    Returns ``(scores, k, eligible, cotangent)`` with a leading problem dimension on the
    arguments that ``batched`` names, and without it on the others.
    """
    generator = torch.Generator().manual_seed(5)
    problems, batch, length = 3, 4, 9
    scores = torch.randn(problems, batch, length, dtype=torch.float64, generator=generator)
    lengths = torch.randint(2, length + 1, (problems, batch), generator=generator)
    k = (torch.rand(problems, batch, generator=generator) * (lengths + 1)).long()
    eligible = torch.arange(length) < lengths.unsqueeze(-1)
    cotangent = torch.randn(problems, batch, length, dtype=torch.float64, generator=generator)
    if batched == "scores":
        k, eligible = k[0], eligible[0]
    return scores, k, eligible, cotangent


def check_vmap_matches_loop(
    fn: Callable[[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]],
    name: str,
    batched: str,
) -> None:
    """``vmap(fn)`` over the problems of :func:`vmap_problems` equals a loop of ``fn``."""
    in_dims = BATCHED[batched]
    scores, k, eligible, cotangent = vmap_problems(batched)
    randomness = "same" if name in STOCHASTIC else "error"
    values, grads = torch.func.vmap(fn, in_dims=in_dims, randomness=randomness)(
        scores, k, eligible, cotangent
    )
    for i in range(scores.shape[0]):
        args = [
            a[i] if dim == 0 else a
            for a, dim in zip((scores, k, eligible, cotangent), in_dims, strict=True)
        ]
        value, grad = fn(*args)
        assert grad.abs().sum() > 0  # the relaxation ran: the comparison is not 0 == 0
        # Bitwise equal on CPU today; a batched kernel may sum in another order elsewhere.
        torch.testing.assert_close(values[i], value, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(grads[i], grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("name", "options", "batched"), vmap_cases())
def test_vmap_of_bottom_k_matches_the_loop(name, options, batched, no_value_checks) -> None:
    def mask_and_grad(scores, k, eligible, cotangent):
        # A fresh generator per problem: the loop then draws the same noise for each.
        generator = torch.Generator().manual_seed(0)
        mask, pullback = torch.func.vjp(
            lambda s: bottom_k(s, k, eligible, name, generator=generator, **options), scores
        )
        return mask, pullback(cotangent)[0]

    check_vmap_matches_loop(mask_and_grad, name, batched)


@pytest.mark.parametrize(("name", "options", "batched"), vmap_cases())
def test_vmap_of_the_soft_mask_matches_the_loop(name, options, batched) -> None:
    def soft_and_grad(scores, k, eligible, cotangent):
        generator = torch.Generator().manual_seed(0)
        hard = hard_bottom_k(scores, k, eligible)
        soft, pullback = torch.func.vjp(
            lambda s: relaxed_bottom_k(s, k, eligible, hard, RELAXATIONS[name], generator, options),
            scores,
        )
        return soft, pullback(cotangent)[0]

    check_vmap_matches_loop(soft_and_grad, name, batched)
