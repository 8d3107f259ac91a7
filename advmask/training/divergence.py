"""Stopping a run whose loss stopped being a number, without a host sync per step."""

from __future__ import annotations

import torch
from torch import Tensor

from advmask.training.distributed import any_rank

__all__ = ["DivergedError", "FiniteGuard"]


class DivergedError(Exception):
    """The loss (or a validation loss) is not finite; nothing after it was saved."""


class FiniteGuard:
    """Remembers, on the device, the first step whose loss was not finite.

    :meth:`observe` runs every step and reads nothing; :meth:`check` reads one number (call it
    at log rows, before every checkpoint and at epoch ends, on every rank: the decision is
    shared, so all ranks stop together).

    Args:
        device: where the losses are.

    Example:
        >>> guard = FiniteGuard(torch.device("cpu"))
        >>> guard.observe(torch.tensor(float("nan")), step=3)
        >>> guard.check(step=4, epoch=0)
        Traceback (most recent call last):
        ...
        advmask.training.divergence.DivergedError: loss is not finite at step 3 (epoch 1)
    """

    def __init__(self, device: torch.device) -> None:
        # -1: no bad step yet.
        self.first_bad_step = torch.full((), -1, dtype=torch.int64, device=device)

    def observe(self, loss: Tensor, step: int) -> None:
        """Note ``step`` if ``loss`` (a 0-d tensor) is not finite and no earlier step was."""
        self.first_bad_step = torch.where(
            (self.first_bad_step < 0) & ~torch.isfinite(loss), step, self.first_bad_step
        )

    def check(self, step: int, epoch: int) -> None:
        """Raise :class:`DivergedError` if an observed step (on any rank) was not finite.

        Args:
            step: the current step (named when another rank saw the bad step).
            epoch: the current epoch, counted from 0 (named from 1).
        """
        bad = int(self.first_bad_step)
        if any_rank(bad >= 0):
            where = f"step {bad}" if bad >= 0 else f"a step before {step}"
            raise DivergedError(f"loss is not finite at {where} (epoch {epoch + 1})")
