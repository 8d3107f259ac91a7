"""K = round-half-up(rate * n) (SPEC §2.1, §2.6) and eligibility from lengths.

The hypothesis property tests are in tests/properties/test_budget.py.
"""

import pytest
import torch

from advmask.budget import eligible_positions, num_to_drop

from .properties._helpers import reference_k


def test_half_up_not_banker() -> None:
    # torch.round / Python round give 0, 2, 2 here (half to even).
    assert num_to_drop(0.5, torch.tensor([1, 5, 3])).tolist() == [1, 3, 2]
    assert num_to_drop(0.25, torch.tensor([2, 6, 10])).tolist() == [1, 2, 3]


def test_binary_halves_just_below_point_five() -> None:
    # 0.29 * 50 = 14.499999999999998 in binary floating point; exact decimal is 14.5 -> 15.
    n = torch.tensor([50, 90, 45])
    assert num_to_drop(0.29, n[:1]).tolist() == [15]
    assert num_to_drop(0.35, n[1:2]).tolist() == [32]
    assert num_to_drop(0.7, n[2:]).tolist() == [32]


def test_exhaustive_against_fraction_reference() -> None:
    n = torch.arange(0, 301)
    for i in range(0, 101):
        rate = i / 100
        expected = [reference_k(rate, int(v)) for v in n]
        assert num_to_drop(rate, n).tolist() == expected, rate


@pytest.mark.parametrize("rate", [-0.01, 1.01, float("nan"), float("inf")])
def test_rate_out_of_range(rate) -> None:
    with pytest.raises(ValueError, match="rate"):
        num_to_drop(rate, torch.tensor([3]))


def test_rate_wrong_type() -> None:
    with pytest.raises(TypeError, match="rate"):
        num_to_drop("0.3", torch.tensor([3]))  # type: ignore[arg-type]


def test_num_eligible_must_be_integer_vector() -> None:
    with pytest.raises(TypeError, match="num_eligible"):
        num_to_drop(0.3, torch.tensor([3.0]))
    with pytest.raises(ValueError, match="num_eligible"):
        num_to_drop(0.3, torch.tensor([[3]]))


def test_eligible_positions_from_lengths_and_protection() -> None:
    lengths = torch.tensor([3, 0, 4])
    eligible = eligible_positions(lengths, 4)
    assert eligible.tolist() == [
        [True, True, True, False],
        [False, False, False, False],
        [True, True, True, True],
    ]
    bos = torch.tensor([True, False, False, False])
    protected = eligible_positions(lengths, 4, protected=bos)
    assert protected.tolist() == [
        [False, True, True, False],
        [False, False, False, False],
        [False, True, True, True],
    ]
