"""Properties of the KL schedules and free bits (SPEC §9) against their reference loops.

The examples, the validation and the EMA tests (SPEC §10.1) are in tests/seqvae/test_schedules.py.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from advmask.seqvae.schedules import (
    FREE_BITS,
    CyclicalKLAnnealing,
    LinearKLAnnealing,
    free_bits_kl,
)

from .._helpers import _grad, readme_loop

RATIOS = (0.1, 0.25, 0.5, 0.7, 1.0)
CYCLES = (1, 2, 3, 4, 5, 7)


def paper_form(t: int, total: int, cycles: int, ratio: float) -> float:
    """Fu et al.'s equation with f(tau) = tau / R, 1-based t."""
    tau = ((t - 1) % math.ceil(total / cycles)) / (total / cycles)
    return tau / ratio if tau <= ratio else 1.0


@given(
    start=st.floats(0.0, 1.0),
    warmup=st.floats(0.5, 1e5),
    steps=st.lists(st.integers(1, 200_000), min_size=2, max_size=10),
)
def test_linear_monotone_bounded(start: float, warmup: float, steps: list[int]) -> None:
    schedule = LinearKLAnnealing(start=start, warmup_steps=warmup)
    steps = sorted(steps)
    values = [schedule(t) for t in steps]
    assert all(start <= v <= 1.0 for v in values)
    assert all(a <= b for a, b in itertools.pairwise(values))
    assert schedule(math.ceil(warmup) + 1) == 1.0


@given(
    n=st.integers(1, 300),
    cycles=st.sampled_from(CYCLES),
    ratio=st.sampled_from(RATIOS),
    start_stop=st.sampled_from([(0.0, 1.0), (0.0, 1.0), (0.1, 1.0), (0.2, 0.7)]),
)
def test_cyclical_matches_readme_loop(
    n: int, cycles: int, ratio: float, start_stop: tuple[float, float]
) -> None:
    cycles = min(cycles, n)
    start, stop = start_stop
    schedule = CyclicalKLAnnealing(
        total_steps=n, num_cycles=cycles, ratio=ratio, start=start, stop=stop
    )
    expected = readme_loop(n, start, stop, cycles, ratio)
    got = [schedule(j + 1) for j in range(n)]
    assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) <= 1.2e-13


@given(
    period=st.integers(1, 60),
    cycles=st.sampled_from(CYCLES),
    ratio=st.sampled_from(RATIOS),
)
def test_cyclical_matches_paper_form_integer_period(period: int, cycles: int, ratio: float) -> None:
    # The paper form and the README loop coincide only when T_tot / M is an integer (SPEC §9.2).
    total = period * cycles
    schedule = CyclicalKLAnnealing(total_steps=total, num_cycles=cycles, ratio=ratio)
    for t in range(1, total + 1):
        assert schedule(t) == pytest.approx(paper_form(t, total, cycles, ratio), abs=1e-12)


def free_bits_oracle(kl: torch.Tensor, threshold: float, mode: str) -> float:
    """Loops over sentences and dimensions, straight from SPEC §9.3."""
    rows = kl.tolist()
    batch, dims = len(rows), len(rows[0])
    if mode == "kingma":
        return sum(max(threshold, sum(r[d] for r in rows) / batch) for d in range(dims))
    if mode == "li_sentence":
        return sum(sum(r) for r in rows if sum(r) > threshold * dims) / batch
    if mode == "li_dimension":
        return sum(v for r in rows for v in r if v > threshold) / batch
    mean = sum(sum(r) for r in rows) / batch
    return mean if mean > threshold * dims else 0.0


@st.composite
def kl_matrices(draw: st.DrawFn) -> torch.Tensor:
    batch, dims = draw(st.integers(1, 5)), draw(st.integers(1, 6))
    values = draw(st.lists(st.floats(0.0, 3.0), min_size=batch * dims, max_size=batch * dims))
    return torch.tensor(values, dtype=torch.float64).reshape(batch, dims)


@given(kl=kl_matrices(), threshold=st.floats(0.0, 2.0), mode=st.sampled_from(sorted(FREE_BITS)))
def test_free_bits_matches_oracle(kl: torch.Tensor, threshold: float, mode: str) -> None:
    got = free_bits_kl(kl, threshold, mode)
    assert got.shape == () and got.dtype == torch.float64
    assert float(got) == pytest.approx(free_bits_oracle(kl, threshold, mode), abs=1e-12)


@given(kl=kl_matrices(), threshold=st.floats(0.0, 2.0))
def test_kingma_at_least_lambda_times_groups(kl: torch.Tensor, threshold: float) -> None:
    dims = kl.shape[1]
    value = float(free_bits_kl(kl, threshold))
    assert value >= threshold * dims - 1e-12
    assert value >= float(kl.sum(1).mean()) - 1e-12  # never below the plain KL either


@given(kl=kl_matrices(), mode=st.sampled_from(sorted(FREE_BITS)))
def test_free_bits_equals_plain_kl_above_threshold(kl: torch.Tensor, mode: str) -> None:
    # Put every entry (hence every group, sentence and the batch mean) above the threshold.
    kl = kl + 0.6
    plain = kl.sum(1).mean()
    torch.testing.assert_close(free_bits_kl(kl, 0.5, mode), plain, rtol=0, atol=1e-12)
    # threshold 0 is the plain KL in every mode
    torch.testing.assert_close(free_bits_kl(kl, 0.0, mode), plain, rtol=0, atol=1e-12)


@given(kl=kl_matrices(), threshold=st.floats(0.05, 2.0), mode=st.sampled_from(sorted(FREE_BITS)))
@settings(max_examples=30)
def test_free_bits_gradient_exactly_zero_below(
    kl: torch.Tensor, threshold: float, mode: str
) -> None:
    batch, dims = kl.shape
    grad = _grad(kl, threshold, mode)
    if mode == "kingma":
        group = kl.mean(0, keepdim=True).expand(batch, dims)
        active = group > threshold
        inactive = group < threshold
    elif mode == "li_sentence":
        active = (kl.sum(1, keepdim=True) > threshold * dims).expand(batch, dims)
        inactive = ~active
    elif mode == "li_dimension":
        active, inactive = kl > threshold, kl <= threshold
    else:
        active = (kl.sum(1).mean() > threshold * dims).expand(batch, dims)
        inactive = ~active
    assert torch.all(grad[inactive] == 0.0)
    assert torch.all(grad[active] == 1.0 / batch)
