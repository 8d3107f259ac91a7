"""Gradient reversal (SPEC §5)."""

import itertools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from advmask import GradientReversal
from advmask.reversal import dann_schedule, grad_reverse


def test_forward_is_bitwise_identity() -> None:
    x = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    assert torch.equal(grad_reverse(x, 3.0), x)


@given(st.floats(0.0, 10.0))
def test_backward_is_minus_scale_times_grad(scale) -> None:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(5, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    cotangent = torch.randn(5, 3, dtype=torch.float64, generator=generator)
    (grad,) = torch.autograd.grad(grad_reverse(x, scale), x, cotangent)
    assert torch.equal(grad, (-scale) * cotangent)


def test_scale_one_is_exact_negation_and_zero_blocks() -> None:
    x = torch.randn(10, requires_grad=True)
    cotangent = torch.randn(10)
    (grad,) = torch.autograd.grad(grad_reverse(x), x, cotangent)
    assert torch.equal(grad, -cotangent)
    (blocked,) = torch.autograd.grad(grad_reverse(x, 0.0), x, cotangent)
    assert torch.all(blocked == 0)


def test_composition_multiplies_scales() -> None:
    x = torch.randn(6, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(grad_reverse(grad_reverse(x, 2.0), 3.0).sum(), x)
    assert torch.allclose(grad, torch.full_like(x, 6.0), rtol=0, atol=1e-15)


def test_negative_or_bad_scale_rejected() -> None:
    with pytest.raises(ValueError, match="scale"):
        grad_reverse(torch.ones(1), -1.0)
    with pytest.raises(ValueError, match="scale"):
        GradientReversal(float("nan"))
    with pytest.raises(TypeError, match="scale"):
        grad_reverse(torch.ones(1), torch.tensor(1.0))  # type: ignore[arg-type]


def test_module_with_schedule_advances_only_in_training() -> None:
    ramp = dann_schedule(10)
    reversal = GradientReversal(ramp)
    x = torch.ones(3, requires_grad=True)
    for _ in range(4):
        reversal(x)
    assert reversal.step == 4
    reversal.eval()
    reversal(x)
    assert reversal.step == 4
    assert math.isclose(reversal.current_scale(), ramp(4))
    (grad,) = torch.autograd.grad(reversal(x).sum(), x)
    assert torch.allclose(grad, torch.full((3,), -ramp(4)))
    restored = GradientReversal(ramp)
    restored.load_state_dict(reversal.state_dict())
    assert restored.step == 4


def test_dann_schedule_shape() -> None:
    ramp = dann_schedule(100, gamma=10.0)
    values = [ramp(s) for s in range(0, 201, 10)]
    assert values[0] == 0.0
    assert all(a <= b for a, b in itertools.pairwise(values))
    assert math.isclose(ramp(100), 2 / (1 + math.exp(-10)) - 1)
    assert ramp(200) == ramp(100)


def test_works_under_torch_compile() -> None:
    def f(x):
        return grad_reverse(x * 2.0, 0.5).sum()

    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    x = torch.randn(4, requires_grad=True)
    (grad,) = torch.autograd.grad(compiled(x), x)
    assert torch.allclose(grad, torch.full((4,), -1.0))


def test_vmap_forward_and_grad_match_the_loop() -> None:
    # _GradReverse sets generate_vmap_rule; torch.func.vmap refuses an autograd.Function
    # without it (or a vmap staticmethod).
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(5, 3, 4, dtype=torch.float64, generator=generator)
    cotangent = torch.randn(5, 3, 4, dtype=torch.float64, generator=generator)
    assert torch.equal(torch.func.vmap(lambda row: grad_reverse(row, 0.5))(x), x)

    def weighted(row, weights):
        return (grad_reverse(row * 2.0, 0.5) * weights).sum()

    per_row = torch.func.vmap(torch.func.grad(weighted))(x, cotangent)
    loop = torch.stack([torch.func.grad(weighted)(x[i], cotangent[i]) for i in range(5)])
    assert torch.equal(per_row, loop)
    assert torch.equal(per_row, (-0.5 * 2.0) * cotangent)
