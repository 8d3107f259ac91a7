"""KL annealing, free bits (SPEC §9) and EMA of the parameters (SPEC §10.1).

The hypothesis property tests are in tests/properties/seqvae/test_schedules.py.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from advmask.seqvae.schedules import (
    ConstantKL,
    CyclicalKLAnnealing,
    KLSchedule,
    LinearKLAnnealing,
    free_bits_kl,
)

from ..properties._helpers import _grad, readme_loop


# --------------------------------------------------------------------------------------------
# Oracles (SPEC §12: small enough to live in the test suite)
# --------------------------------------------------------------------------------------------
def he_accumulated(start: float, rate: float, num_steps: int) -> list[float]:
    """He et al.'s loop: the weight is incremented BEFORE each update; entry t-1 is step t."""
    weights, weight = [], start
    for _ in range(num_steps):
        weight = min(1.0, weight + rate)
        weights.append(weight)
    return weights


# --------------------------------------------------------------------------------------------
# Constant and linear warm-up (SPEC §9.1)
# --------------------------------------------------------------------------------------------
def test_constant() -> None:
    assert ConstantKL()(1) == 1.0
    assert ConstantKL(0.25)(10**6) == 0.25
    assert isinstance(ConstantKL(), KLSchedule)
    with pytest.raises(ValueError, match="value"):
        ConstantKL(-0.5)


@pytest.mark.parametrize(("start", "warmup"), [(0.1, 30000.0), (0.0, 37.5), (0.5, 7), (0.1, 9)])
def test_linear_matches_he_accumulation(start: float, warmup: float) -> None:
    schedule = LinearKLAnnealing(start=start, warmup_steps=warmup)
    num_steps = math.ceil(warmup) + 20
    expected = he_accumulated(start, (1 - start) / warmup, num_steps)
    got = [schedule(t) for t in range(1, num_steps + 1)]
    # Float accumulation drifts by < 1e-12 over 3e4 steps (SPEC §9.1); an off-by-one step is off
    # by a whole `rate` (>= 3e-5 here).
    assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) <= 1e-9
    assert got[-1] == 1.0


def test_linear_he_defaults_31250_steps() -> None:
    # He et al. text.py: W = 10 epochs, N_train / B = 3125 batches -> 31,250 warm-up steps.
    start, warmup = 0.1, 10 * 100_000 / 32
    schedule = LinearKLAnnealing(start=start, warmup_steps=warmup)
    expected = he_accumulated(start, (1 - start) / warmup, 31_300)
    assert all(abs(schedule(t + 1) - e) <= 1e-9 for t, e in enumerate(expected))


def test_linear_first_step_already_incremented() -> None:
    schedule = LinearKLAnnealing(start=0.1, warmup_steps=9)
    # 1-based t: step 1 uses start + rate, not start (He increments before the update).
    assert schedule(1) == pytest.approx(0.2, abs=1e-15)
    assert schedule(9) == 1.0
    assert schedule(8) == pytest.approx(0.9, abs=1e-15)
    assert schedule.rate == pytest.approx(0.1, abs=1e-15)


def test_linear_no_annealing_when_start_is_one() -> None:
    schedule = LinearKLAnnealing(start=1.0, warmup_steps=10)
    assert [schedule(t) for t in (1, 5, 100)] == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"start": -0.1, "warmup_steps": 10}, ValueError, "start"),
        ({"start": 1.5, "warmup_steps": 10}, ValueError, "start"),
        ({"start": 0.1, "warmup_steps": 0}, ValueError, "warmup_steps"),
        ({"start": 0.1, "warmup_steps": float("inf")}, ValueError, "warmup_steps"),
        ({"start": 0.1, "warmup_steps": "10"}, TypeError, "warmup_steps"),
        ({"start": 0.1, "warmup_steps": True}, TypeError, "warmup_steps"),
    ],
)
def test_linear_validation(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        LinearKLAnnealing(**kwargs)


@pytest.mark.parametrize("schedule", [ConstantKL(), LinearKLAnnealing(warmup_steps=10)])
def test_step_validation(schedule: KLSchedule) -> None:
    with pytest.raises(ValueError, match=r"step must be >= 1.*got 0"):
        schedule(0)
    with pytest.raises(TypeError, match="step"):
        schedule(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="step"):
        schedule(True)  # type: ignore[arg-type]
    assert schedule(torch.tensor(3)) == schedule(3)  # 0-d int tensors are indices


# --------------------------------------------------------------------------------------------
# Cyclical (SPEC §9.2)
# --------------------------------------------------------------------------------------------
def test_cyclical_docstring_example() -> None:
    schedule = CyclicalKLAnnealing(total_steps=8, num_cycles=2, ratio=0.5)
    assert [schedule(t) for t in range(1, 9)] == [0.0, 0.5, 1.0, 1.0, 0.0, 0.5, 1.0, 1.0]


@pytest.mark.parametrize("n", [1000, 1003, 10007])
@pytest.mark.parametrize("cycles", [3, 4, 7])
def test_cyclical_matches_readme_loop_long(n: int, cycles: int) -> None:
    for ratio in (0.25, 0.7):
        schedule = CyclicalKLAnnealing(total_steps=n, num_cycles=cycles, ratio=ratio)
        expected = readme_loop(n, 0.0, 1.0, cycles, ratio)
        assert max(abs(schedule(j + 1) - e) for j, e in enumerate(expected)) <= 1.2e-13


def test_cyclical_cycle_boundaries_one_based() -> None:
    # 3 cycles of 10 steps, rising over 5: step 1, 11, 21 restart at `start` (an off-by-one
    # 0-based implementation would restart at 10, 20 instead).
    schedule = CyclicalKLAnnealing(total_steps=30, num_cycles=3, ratio=0.5, start=0.1, stop=0.9)
    for first in (1, 11, 21):
        assert schedule(first) == 0.1
        assert schedule(first + 5) == 0.9
        assert schedule(first + 9) == 0.9
    assert schedule(2) == pytest.approx(0.1 + 0.8 / 5, abs=1e-15)
    # After total_steps the weight stays at stop.
    assert [schedule(t) for t in (31, 40, 1000)] == [0.9, 0.9, 0.9]


def test_cyclical_defaults_and_period() -> None:
    schedule = CyclicalKLAnnealing(total_steps=10)
    assert (schedule.num_cycles, schedule.ratio, schedule.start, schedule.stop) == (4, 0.5, 0, 1)
    assert schedule.period == 2.5
    assert isinstance(schedule, KLSchedule)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"total_steps": 10, "num_cycles": 0}, ValueError, "num_cycles"),
        ({"total_steps": 3, "num_cycles": 4}, ValueError, "total_steps"),
        ({"total_steps": 10.0}, TypeError, "total_steps"),
        ({"total_steps": 10, "ratio": 0.0}, ValueError, "ratio"),
        ({"total_steps": 10, "ratio": 1.5}, ValueError, "ratio"),
        ({"total_steps": 10, "start": 0.8, "stop": 0.5}, ValueError, "stop"),
        ({"total_steps": 10, "start": -1.0}, ValueError, "start"),
    ],
)
def test_cyclical_validation(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        CyclicalKLAnnealing(**kwargs)


# --------------------------------------------------------------------------------------------
# Free bits (SPEC §9.3)
# --------------------------------------------------------------------------------------------


def test_kingma_gradient_zero_below_threshold() -> None:
    # Column means: 0.2 (below 0.5), 1.5 (above), 0.45 (below), 0.55 (above).
    kl = torch.tensor([[0.1, 1.0, 0.9, 0.5], [0.3, 2.0, 0.0, 0.6]], dtype=torch.float64)
    grad = _grad(kl, 0.5, "kingma")
    below = torch.tensor([True, False, True, False]).expand(2, 4)
    assert torch.equal(grad[below], torch.zeros(4, dtype=torch.float64))  # exactly 0
    # Above: d(mean_b)/d KL_bd = 1/B, as for the plain KL.
    assert torch.equal(grad[~below], torch.full((4,), 0.5, dtype=torch.float64))


def test_free_bits_docstring_values() -> None:
    kl = torch.tensor([[0.01, 2.0], [0.03, 4.0]])
    assert float(free_bits_kl(kl, 0.5)) == pytest.approx(3.5)
    assert float(free_bits_kl(kl, 0.5, "li_dimension")) == pytest.approx(3.0)
    # Sentence KLs 2.01, 4.03 vs D * lambda = 3: only the second counts.
    assert float(free_bits_kl(kl, 1.5, "li_sentence")) == pytest.approx(4.03 / 2)
    # Batch mean 3.02 > 3: kept whole; with lambda 1.6 (target 3.2) it is zero.
    assert float(free_bits_kl(kl, 1.5, "li_batch")) == pytest.approx(3.02)
    assert float(free_bits_kl(kl, 1.6, "li_batch")) == 0.0


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((torch.ones(3), 0.5), ValueError, "kl_per_dim"),
        ((torch.ones(2, 3, dtype=torch.int64), 0.5), TypeError, "kl_per_dim"),
        ((torch.ones(0, 3), 0.5), ValueError, "kl_per_dim"),
        ((torch.ones(2, 3), -0.5), ValueError, "threshold"),
        ((torch.ones(2, 3), 0.5, "bogus"), ValueError, "bogus"),
        (([[1.0]], 0.5), TypeError, "kl_per_dim"),
    ],
)
def test_free_bits_validation(args: tuple, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        free_bits_kl(*args)


# --------------------------------------------------------------------------------------------
# EMA with torch's AveragedModel (SPEC §10.1)
# --------------------------------------------------------------------------------------------
def _run_ema(thetas: torch.Tensor, decay: float) -> torch.Tensor:
    """Feed thetas[0], thetas[1], ... to AveragedModel (one update per 'optimiser step')."""
    model = torch.nn.Linear(thetas.shape[1], 1, bias=False).to(thetas.dtype)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))
    with torch.no_grad():
        for theta in thetas:
            model.weight.copy_(theta)
            ema.update_parameters(model)
    return ema.module.weight.detach()[0]


def ema_closed_form(thetas: torch.Tensor, decay: float) -> torch.Tensor:
    """theta_bar_t = b^t theta_0 + (1 - b) sum_{k=1}^t b^(t-k) theta_k, t = len(thetas) - 1."""
    t = thetas.shape[0] - 1
    powers = decay ** torch.arange(t, -1, -1, dtype=torch.float64)  # b^(t-k), k = 0..t
    weights = (1 - decay) * powers
    weights[0] = decay**t
    return (weights[:, None] * thetas.double()).sum(0)


@pytest.mark.parametrize(("dtype", "rtol"), [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_ema_matches_closed_form(dtype: torch.dtype, rtol: float) -> None:
    generator = torch.Generator().manual_seed(0)
    # 10^4 random steps around a drifting mean (so that the average is far from any theta_k).
    thetas = torch.randn(10_001, 3, generator=generator, dtype=torch.float64)
    thetas = (thetas + torch.linspace(1.0, 3.0, 10_001)[:, None]).to(dtype)
    got = _run_ema(thetas, 0.9995)
    torch.testing.assert_close(got.double(), ema_closed_form(thetas, 0.9995), rtol=rtol, atol=0)


def test_ema_first_update_copies() -> None:
    thetas = torch.tensor([[1.0, -2.0], [5.0, 7.0]], dtype=torch.float64)
    assert torch.equal(_run_ema(thetas[:1], 0.9), thetas[0])
    expected = 0.9 * thetas[0] + 0.1 * thetas[1]
    torch.testing.assert_close(_run_ema(thetas, 0.9), expected, rtol=0, atol=1e-15)


def test_ema_constant_and_extreme_decays() -> None:
    generator = torch.Generator().manual_seed(1)
    constant = torch.randn(1, 4, generator=generator, dtype=torch.float64).expand(50, 4)
    assert torch.equal(_run_ema(constant, 0.9995), constant[0])
    thetas = torch.randn(50, 4, generator=generator, dtype=torch.float64)
    assert torch.equal(_run_ema(thetas, 0.0), thetas[-1])  # beta = 0: the latest theta
    assert torch.equal(_run_ema(thetas, 1.0), thetas[0])  # beta = 1: the first theta
