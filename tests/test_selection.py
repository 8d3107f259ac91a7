"""Hard bottom-K selection (SPEC §2.3-2.4) and the straight-through combination (SPEC §4).

The hypothesis property tests are in tests/properties/test_selection.py.
"""

import pytest
import torch

from advmask import bottom_k
from advmask.hard_selection import hard_bottom_k
from advmask.relaxations import RELAXATIONS
from advmask.selection import straight_through


def test_ties_lower_index_first() -> None:
    scores = torch.tensor([[9.0, 1.0, 1.0, 1.0]])
    eligible = torch.tensor([[False, True, True, True]])
    assert hard_bottom_k(scores, torch.tensor([2]), eligible).tolist() == [[0, 1, 1, 0]]


def test_empty_rows_and_zero_length() -> None:
    scores = torch.randn(3, 5, dtype=torch.float64)
    eligible = torch.zeros(3, 5, dtype=torch.bool)
    mask = hard_bottom_k(scores, torch.zeros(3, dtype=torch.long), eligible)
    assert torch.equal(mask, torch.zeros(3, 5, dtype=torch.float64))
    empty = hard_bottom_k(torch.zeros(2, 0), torch.zeros(2, dtype=torch.long), eligible[:2, :0])
    assert empty.shape == (2, 0)


def test_half_precision_upcast() -> None:
    scores = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.bfloat16)
    mask = bottom_k(scores, torch.tensor([1]), torch.ones(1, 3, dtype=torch.bool), None)
    assert mask.dtype == torch.float32
    assert mask.tolist() == [[0.0, 1.0, 0.0]]


def test_straight_through_is_bitwise_hard_with_soft_gradient() -> None:
    generator = torch.Generator().manual_seed(0)
    hard = (torch.rand(64, 32, generator=generator) < 0.5).float()
    soft = (torch.rand(64, 32, generator=generator) * 1.5).requires_grad_()
    mask = straight_through(hard, soft)
    # The naive spelling (hard + soft) - soft is inexact here in float32.
    assert not torch.equal(hard + soft - soft.detach(), hard)
    assert torch.equal(mask, hard)
    cotangent = torch.randn(64, 32, generator=generator)
    (grad,) = torch.autograd.grad(mask, soft, cotangent)
    assert torch.equal(grad, cotangent)


def test_bottom_k_without_grad_is_hard_and_graphless() -> None:
    scores = torch.randn(2, 6)
    eligible = torch.ones(2, 6, dtype=torch.bool)
    mask = bottom_k(scores, torch.tensor([2, 3]), eligible, "euclidean")
    assert mask.grad_fn is None
    assert torch.equal(mask, hard_bottom_k(scores, torch.tensor([2, 3]), eligible))


def test_degenerate_rows_get_exactly_zero_gradient() -> None:
    calls = []

    def spy(scores, k, eligible, *, generator=None):
        calls.append((k.clone(), eligible.sum(1)))
        return torch.where(eligible, torch.sigmoid(-scores), torch.zeros_like(scores))

    RELAXATIONS["spy-test"] = spy
    try:
        scores = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
        lengths = torch.tensor([5, 5, 1, 0])
        eligible = torch.arange(5) < lengths[:, None]
        k = torch.tensor([0, 5, 1, 0])  # every row degenerate except none
        k[0] = 2  # row 0 is the only well-posed one
        mask = bottom_k(scores, k, eligible, "spy-test")
        (grad,) = torch.autograd.grad(mask.sum() * 0 + (mask * torch.arange(5.0)).sum(), scores)
    finally:
        del RELAXATIONS["spy-test"]
    assert torch.equal(mask.sum(1).long(), k)
    assert torch.all(grad[1:] == 0)
    assert torch.any(grad[0] != 0)
    # The relaxation only ever sees well-posed rows.
    seen_k, seen_n = calls[0]
    assert torch.all((seen_k >= 1) & (seen_k <= seen_n - 1))


def test_validation_errors_name_the_argument() -> None:
    eligible = torch.ones(1, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="k must be in"):
        bottom_k(torch.zeros(1, 3), torch.tensor([4]), eligible)
    with pytest.raises(ValueError, match=r"scores\[0, 1\]"):
        bottom_k(torch.tensor([[0.0, float("nan"), 1.0]]), torch.tensor([1]), eligible)
    with pytest.raises(ValueError, match="unknown relaxation 'nope'"):
        bottom_k(torch.zeros(1, 3), torch.tensor([1]), eligible, "nope")
    with pytest.raises(TypeError, match="scores"):
        bottom_k(torch.zeros(1, 3, dtype=torch.long), torch.tensor([1]), eligible)
    with pytest.raises(ValueError, match="eligible must have shape"):
        bottom_k(torch.zeros(1, 3), torch.tensor([1]), torch.ones(1, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="k must have dtype"):
        bottom_k(torch.zeros(1, 3), torch.tensor([1.0]), eligible)
    # Non-finite values off the eligible positions are fine.
    fine = bottom_k(
        torch.tensor([[0.0, 1.0, float("nan")]]),
        torch.tensor([1]),
        torch.tensor([[True, True, False]]),
        None,
    )
    assert fine.tolist() == [[1.0, 0.0, 0.0]]
