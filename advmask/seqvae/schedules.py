"""KL-weight schedules and free bits for training a sequence VAE.

A KL schedule is a callable ``schedule(step) -> beta`` of the **1-based** global step ``t``: the
weight used by the ``t``-th optimiser update (He et al. increment the weight before the update,
so the first update already uses ``start + rate``). The training loop multiplies the KL term by
``beta``; evaluation always uses the unweighted ELBO.

Polyak/EMA averaging of the parameters is not implemented here: use
``torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9995))`` and call
``update_parameters(model)`` after every optimiser step (the first call copies the parameters;
``tests/seqvae/test_schedules.py`` checks it against the closed form).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from advmask.checks import FLOAT_DTYPES, check_int, check_non_negative, check_tensor


@runtime_checkable
class KLSchedule(Protocol):
    """Anything that maps a 1-based global step to a KL weight."""

    def __call__(self, step: int) -> float:
        """The KL weight ``beta_t`` for the ``step``-th optimiser update (``step >= 1``)."""
        ...


@dataclass(frozen=True)
class ConstantKL:
    """A constant KL weight (``1.0``: the plain ELBO).

    Example:
        >>> ConstantKL()(1), ConstantKL(0.5)(1000)
        (1.0, 0.5)
    """

    value: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", check_non_negative(self.value, "value"))

    def __call__(self, step: int) -> float:
        """The constant weight (``step`` is validated, then ignored)."""
        check_int(step, "step")
        return self.value


@dataclass(frozen=True, kw_only=True)
class LinearKLAnnealing:
    """Linear warm-up of the KL weight from ``start`` to 1 (He et al. 2019).

    ``beta_t = min(1, start + t * (1 - start) / warmup_steps)`` for the 1-based step ``t``: the
    closed form of He et al.'s ``kl_weight = min(1, kl_weight + rate)`` executed before every
    update. Their ``warmup_steps`` is ``warm_up_epochs * num_train / batch_size`` (a float
    division, so it need not be an integer); the AWD authors' code uses ``start = 0.1`` and
    ``rate = 3e-5`` per step, i.e. ``warmup_steps = 0.9 / 3e-5 = 30000``.

    Args:
        start: weight before the first update, in [0, 1] (``1.0`` disables annealing).
        warmup_steps: number of updates from ``start`` to 1 (> 0; may be fractional).

    Example:
        >>> schedule = LinearKLAnnealing(start=0.1, warmup_steps=9)
        >>> [round(schedule(t), 2) for t in (1, 2, 9, 10)]
        [0.2, 0.3, 1.0, 1.0]
    """

    start: float = 0.1
    warmup_steps: float

    def __post_init__(self) -> None:
        start = check_non_negative(self.start, "start")
        if start > 1:
            raise ValueError(f"start must be in [0, 1], got {start}")
        warmup = self.warmup_steps
        if isinstance(warmup, bool) or not isinstance(warmup, (int, float)):
            raise TypeError(f"warmup_steps must be a positive number, got {warmup!r}")
        if not (math.isfinite(warmup) and warmup > 0):
            raise ValueError(f"warmup_steps must be finite and > 0, got {warmup}")
        object.__setattr__(self, "start", start)

    @property
    def rate(self) -> float:
        """Increment per step, ``(1 - start) / warmup_steps``."""
        return (1.0 - self.start) / self.warmup_steps

    def __call__(self, step: int) -> float:
        """``min(1, start + step * rate)`` for the 1-based ``step``."""
        return min(1.0, self.start + check_int(step, "step") * self.rate)


@dataclass(frozen=True, kw_only=True)
class CyclicalKLAnnealing:
    """Cyclical KL annealing (Fu et al. 2019).

    ``total_steps`` is split into ``num_cycles`` periods of ``P = total_steps / num_cycles``
    steps; in each the weight rises linearly from ``start`` to ``stop`` over the first
    ``ratio * P`` steps and stays at ``stop`` for the rest. This is the closed form of the
    reference ``frange_cycle_linear`` (``haofuml/cyclical_annealing`` README) with
    ``j = step - 1``:

    ``c = min(M - 1, ceil((j + 1) / P) - 1)``, ``i = j - floor(c * P)``,
    ``beta = min(stop, start + (stop - start) * i / (P * ratio))``.

    Steps after ``total_steps`` keep ``stop``. (Fu et al.'s language-model script restarts each
    epoch at 0.1 instead; that variant is not implemented.)

    Args:
        total_steps: ``T`` number of updates the schedule spans (>= num_cycles).
        num_cycles: ``M`` cycles (>= 1).
        ratio: ``R`` fraction of a cycle spent increasing, in (0, 1].
        start: weight at the start of a cycle, >= 0.
        stop: weight at the plateau, >= start.

    Example:
        >>> schedule = CyclicalKLAnnealing(total_steps=8, num_cycles=2, ratio=0.5)
        >>> [schedule(t) for t in range(1, 9)]
        [0.0, 0.5, 1.0, 1.0, 0.0, 0.5, 1.0, 1.0]
    """

    total_steps: int
    num_cycles: int = 4
    ratio: float = 0.5
    start: float = 0.0
    stop: float = 1.0

    def __post_init__(self) -> None:
        num_cycles = check_int(self.num_cycles, "num_cycles", 1)
        total_steps = check_int(self.total_steps, "total_steps", num_cycles)
        ratio = check_non_negative(self.ratio, "ratio")
        if not 0 < ratio <= 1:
            raise ValueError(f"ratio must be in (0, 1], got {ratio}")
        start = check_non_negative(self.start, "start")
        stop = check_non_negative(self.stop, "stop")
        if stop < start:
            raise ValueError(f"stop must be >= start, got start={start}, stop={stop}")
        for name, value in (
            ("total_steps", total_steps),
            ("num_cycles", num_cycles),
            ("ratio", ratio),
            ("start", start),
            ("stop", stop),
        ):
            object.__setattr__(self, name, value)

    @property
    def period(self) -> float:
        """``P = total_steps / num_cycles`` steps per cycle (need not be an integer)."""
        return self.total_steps / self.num_cycles

    def __call__(self, step: int) -> float:
        """The weight for the 1-based ``step``."""
        j = check_int(step, "step") - 1
        period = self.period
        cycle = min(self.num_cycles - 1, math.ceil((j + 1) / period) - 1)
        position = j - math.floor(cycle * period)
        rise = (self.stop - self.start) * position / (period * self.ratio)
        return min(self.stop, self.start + rise)


# --------------------------------------------------------------------------------------------
# Free bits
# --------------------------------------------------------------------------------------------
def _kingma(kl_per_dim: Tensor, threshold: float) -> Tensor:
    # sum_d max(lambda, mean_b KL_bd): clamp_min passes no gradient below the threshold.
    return kl_per_dim.mean(0).clamp_min(threshold).sum()


def _li_sentence(kl_per_dim: Tensor, threshold: float) -> Tensor:
    kl = kl_per_dim.sum(-1)
    target = threshold * kl_per_dim.shape[-1]
    return torch.where(kl > target, kl, torch.zeros_like(kl)).mean()


def _li_dimension(kl_per_dim: Tensor, threshold: float) -> Tensor:
    kept = torch.where(kl_per_dim > threshold, kl_per_dim, torch.zeros_like(kl_per_dim))
    return kept.sum(-1).mean()


def _li_batch(kl_per_dim: Tensor, threshold: float) -> Tensor:
    mean_kl = kl_per_dim.sum(-1).mean()
    target = threshold * kl_per_dim.shape[-1]
    return torch.where(mean_kl > target, mean_kl, torch.zeros_like(mean_kl))


FREE_BITS: dict[str, Callable[[Tensor, float], Tensor]] = {
    "kingma": _kingma,
    "li_sentence": _li_sentence,
    "li_dimension": _li_dimension,
    "li_batch": _li_batch,
}
"""Free-bits variants by name; see :func:`free_bits_kl`."""


def free_bits_kl(kl_per_dim: Tensor, threshold: float, mode: str = "kingma") -> Tensor:
    """The KL term of the training loss with free bits.

    ``threshold`` is ``lambda``, free nats **per latent dimension**; the sentence-level variants
    use ``D * lambda`` (Li et al.'s ``target_kl``, whose per-dimension target is
    ``target_kl / D``). With ``KL_{b,d}`` the per-dimension KL of sentence ``b``:

    ======================  =======================================================
    ``"kingma"``            ``sum_d max(lambda, mean_b KL_{b,d})`` (Kingma et al. 2016, one
                            group per dimension); >= ``D * lambda``
    ``"li_sentence"``       ``mean_b KL_b * 1[KL_b > D lambda]`` (Li et al. ``--fb 1``)
    ``"li_dimension"``      ``mean_b sum_d KL_{b,d} * 1[KL_{b,d} > lambda]`` (``--fb 2``)
    ``"li_batch"``          ``1[mean_b KL_b > D lambda] * mean_b KL_b`` (``--fb 3``)
    ======================  =======================================================

    Groups below their threshold get exactly zero gradient. ``max(lambda, KL)`` and
    ``1[KL > lambda] KL`` have the same gradient but different values, so compare losses only
    within one mode. Use the result only in the loss: the KL you log and report must stay the
    unthresholded ``mean_b sum_d KL_{b,d}``.

    Args:
        kl_per_dim: (B, D) float per-sentence, per-dimension KL, B >= 1 (for example
            :func:`advmask.seqvae.gaussian.gaussian_kl_per_dimension`).
        threshold: ``lambda >= 0`` nats per dimension; 0 gives the plain KL.
        mode: a key of :data:`FREE_BITS`.

    Returns:
        Scalar tensor: the batch-mean per-sentence KL term to multiply by the KL weight.

    Example:
        >>> kl = torch.tensor([[0.01, 2.0], [0.03, 4.0]])
        >>> free_bits_kl(kl, threshold=0.5)
        tensor(3.5000)
        >>> free_bits_kl(kl, threshold=0.5, mode="li_dimension")
        tensor(3.)
    """
    kl_per_dim = check_tensor("kl_per_dim", kl_per_dim, ndim=2, dtypes=FLOAT_DTYPES)
    if kl_per_dim.shape[0] == 0:
        raise ValueError(
            f"kl_per_dim must have at least one row, got shape {tuple(kl_per_dim.shape)}"
        )
    threshold = check_non_negative(threshold, "threshold")
    if mode not in FREE_BITS:
        raise ValueError(f"mode must be one of {tuple(FREE_BITS)}, got {mode!r}")
    return FREE_BITS[mode](kl_per_dim, threshold)
