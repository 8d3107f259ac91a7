"""Hypothesis strategies shared by every estimator test (SPEC §12)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from hypothesis import strategies as st

from advmask.budget import eligible_positions, num_to_drop

RATES = st.one_of(
    st.integers(0, 100).map(lambda i: i / 100), st.integers(0, 1000).map(lambda i: i / 1000)
)


@dataclass
class SelectionProblem:
    """A batch of scores, per-row budgets and eligible positions."""

    scores: torch.Tensor  # (B, T) float
    k: torch.Tensor  # (B,) int64
    eligible: torch.Tensor  # (B, T) bool
    lengths: torch.Tensor  # (B,) int64


@st.composite
def lengths_and_length(draw, max_batch: int = 4, max_len: int = 16, min_len: int = 1):
    """(lengths (B,), T) with every length in [0, T]."""
    length = draw(st.integers(min_len, max_len))
    batch = draw(st.integers(1, max_batch))
    lengths = draw(st.lists(st.integers(0, length), min_size=batch, max_size=batch))
    return torch.tensor(lengths, dtype=torch.int64), length


@st.composite
def distinct_scores(draw, batch: int, length: int, min_gap: float = 0.05, dtype=torch.float64):
    """(B, T) scores whose values in each row are distinct with gaps >= ``min_gap``."""
    rows = []
    for _ in range(batch):
        gaps = draw(st.lists(st.floats(min_gap, 1.0), min_size=length, max_size=length))
        start = draw(st.floats(-3.0, 3.0))
        values = torch.tensor(gaps, dtype=torch.float64).cumsum(0) + start
        perm = torch.tensor(draw(st.permutations(range(length))), dtype=torch.int64)
        rows.append(values[perm])
    return torch.stack(rows).to(dtype)


@st.composite
def tied_scores(draw, batch: int, length: int, dtype=torch.float64):
    """(B, T) scores drawn from {0, 0.5, 1}: many ties."""
    values = draw(
        st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=batch * length, max_size=batch * length)
    )
    return torch.tensor(values, dtype=dtype).reshape(batch, length)


@st.composite
def selection_problems(
    draw,
    *,
    distinct: bool = True,
    dtype=torch.float64,
    max_batch: int = 4,
    max_len: int = 16,
    min_gap: float = 0.05,
) -> SelectionProblem:
    """Scores, k from a rate (half-up), eligibility from lengths; lengths may be 0 or 1."""
    lengths, length = draw(lengths_and_length(max_batch=max_batch, max_len=max_len))
    batch = lengths.shape[0]
    if distinct:
        scores = draw(distinct_scores(batch, length, min_gap=min_gap, dtype=dtype))
    else:
        scores = draw(tied_scores(batch, length, dtype=dtype))
    eligible = eligible_positions(lengths, length)
    k = num_to_drop(draw(RATES), eligible.sum(1))
    return SelectionProblem(scores=scores, k=k, eligible=eligible, lengths=lengths)
