"""Properties of K = round-half-up(rate * n) (SPEC §2.1, §2.6) against an exact-decimal reference.

The examples and the exhaustive check over rates 0.00-1.00 are in tests/test_budget.py.
"""

import torch
from hypothesis import given
from hypothesis import strategies as st

from advmask.budget import num_to_drop

from ._helpers import reference_k
from .strategies import RATES


@given(rate=RATES, n=st.lists(st.integers(0, 1000), min_size=1, max_size=8))
def test_matches_fraction_reference(rate, n) -> None:
    assert num_to_drop(rate, torch.tensor(n)).tolist() == [reference_k(rate, v) for v in n]


@given(rate=RATES, other=RATES, n=st.integers(0, 500), m=st.integers(0, 500))
def test_extremes_and_monotonicity(rate, other, n, m) -> None:
    counts = torch.tensor([n, m])
    assert num_to_drop(0.0, counts).tolist() == [0, 0]
    assert num_to_drop(1.0, counts).tolist() == [n, m]
    low, high = sorted((rate, other))
    assert (num_to_drop(low, counts) <= num_to_drop(high, counts)).all()
    small, large = sorted((n, m))
    k = num_to_drop(rate, torch.tensor([small, large]))
    assert k[0] <= k[1]
