"""Aggressive inference-network training (He et al. 2019, "Lagging Inference Networks and
Posterior Collapse in Variational Autoencoders").

While the *aggressive phase* lasts, every decoder update is preceded by encoder-only updates on
fresh training batches, until the encoder's loss stops falling: the inner loop sums the loss per
predicted token over windows of ``check_every`` (15) updates and stops after the first window
that is higher than the one before, or after ``max_steps`` (99) updates. The phase ends for
good at the first epoch whose held-out mutual information ``I_q(x; z)`` is lower than the
epoch's before; training is ordinary afterwards. The constants are the paper's code's.

Example:
    >>> phase = AggressivePhase()
    >>> [phase.observe(mi) for mi in (0.1, 0.3, 0.2, 0.5)]
    [True, True, False, False]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from advmask.checks import check_int, check_positive
from advmask.seqvae.data import Batch
from advmask.seqvae.metrics import mutual_information
from advmask.seqvae.vae import SequenceVAE

__all__ = ["AggressivePhase", "encoder_updates", "held_out_mutual_information"]

MAX_INNER_STEPS = 99
"""Most encoder updates before one decoder update (the paper's code: ``< 100``)."""

CHECK_EVERY = 15
"""Encoder updates per window of the inner loop's stopping test."""


@dataclass
class AggressivePhase:
    """Whether the aggressive phase still lasts; saved in checkpoints.

    Attributes:
        active: True until an epoch's held-out MI falls below the previous epoch's.
        previous_mi: the MI seen at the last epoch's end (``-inf`` before the first).
    """

    active: bool = True
    previous_mi: float = -math.inf

    def observe(self, mi: float) -> bool:
        """Record an epoch's held-out MI (nats); returns whether the phase goes on."""
        if self.active and mi < self.previous_mi:
            self.active = False
        self.previous_mi = mi
        return self.active

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.active, self.previous_mi = bool(state["active"]), float(state["previous_mi"])


def encoder_updates(
    model: SequenceVAE,
    next_batch: Callable[[], Batch],
    optimizer: torch.optim.Optimizer,
    beta: float,
    grad_clip: float,
    *,
    free_bits: float = 0.0,
    max_steps: int = MAX_INNER_STEPS,
    check_every: int = CHECK_EVERY,
) -> int:
    """Encoder-only updates until the encoder's loss per token stops falling.

    Each update draws a batch with ``next_batch()``, takes the gradient of the VAE's loss with
    respect to the encoder's parameters only (the decoder's and the masker's stay untouched;
    their ``.grad`` is cleared), clips it and steps ``optimizer`` (which may hold other
    parameters: those without a gradient are skipped).

    Args:
        model: the VAE, in training mode.
        next_batch: a fresh training batch per call.
        optimizer: an optimiser over (at least) ``model.encoder``'s parameters.
        beta: the KL weight of this step.
        grad_clip: gradient-norm clipping of the encoder.
        free_bits: as in :meth:`SequenceVAE.forward`.
        max_steps: most updates (>= 1).
        check_every: updates per window of the stopping test (>= 1).

    Returns:
        The number of updates taken, in ``[min(2 * check_every, max_steps), max_steps]``.
    """
    max_steps, check_every = (
        check_int(max_steps, "max_steps"),
        check_int(check_every, "check_every"),
    )
    grad_clip = check_positive(grad_clip, "grad_clip")
    encoder = list(model.encoder.parameters())
    previous = math.inf
    window_loss: Tensor | float = 0.0
    window_tokens: Tensor | float = 0.0
    for update in range(1, max_steps + 1):
        batch = next_batch()
        out = model(batch.tokens, batch.lengths, beta=beta, free_bits=free_bits)
        gradients = torch.autograd.grad(out.loss, encoder)
        optimizer.zero_grad(set_to_none=True)
        for parameter, gradient in zip(encoder, gradients, strict=True):
            parameter.grad = gradient
        torch.nn.utils.clip_grad_norm_(encoder, grad_clip)
        optimizer.step()
        # The loss before this update, as the paper's code sums it (one host read per window).
        window_loss = window_loss + (out.reconstruction + beta * out.kl).detach().sum()
        window_tokens = window_tokens + (batch.lengths - 1).sum()
        if update % check_every == 0:
            current = float(window_loss / window_tokens)
            if current > previous:
                break
            previous, window_loss, window_tokens = current, 0.0, 0.0
    optimizer.zero_grad(set_to_none=True)
    return update


@torch.no_grad()
def held_out_mutual_information(
    model: SequenceVAE, batches: Sequence[Batch], generator: torch.Generator | None = None
) -> float:
    """``I_q(x; z)`` (nats, the "full" estimator) of ``model``'s encoder over ``batches``.

    The encoder runs in eval mode; the model's mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        posteriors = [model.posterior(b.tokens, b.lengths) for b in batches]
    finally:
        model.train(was_training)
    means = torch.cat([mean for mean, _ in posteriors])
    logvars = torch.cat([logvar for _, logvar in posteriors])
    return mutual_information(means, logvars, "full", generator=generator)
