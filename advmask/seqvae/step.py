"""One training step of a sequence VAE and its adversary: two players, one backward pass."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from advmask.row_draws import RowDraws
from advmask.seqvae.data import Batch
from advmask.seqvae.vae import SequenceVAE, VAEOutput
from advmask.training.distributed import BatchShard
from advmask.training.logs import ratio

__all__ = ["SCORE_STATISTICS", "Optimizers", "StepSettings", "train_step"]

SCORE_STATISTICS = (
    "score_l1",
    "score_mean_abs",
    "score_std",
    "adversary_grad_norm",
    "regularizer",
)
"""The adversary's statistics that :func:`train_step` returns besides the losses: the mean l1
norm of a sentence's score means (the paper's Figure 3), the mean ``|mu|`` and ``sigma`` per
token, the gradient norm before clipping and the KL regulariser."""


@dataclass(frozen=True)
class Optimizers:
    """The two players' optimisers.

    Attributes:
        vae: steps ``model.vae_parameters()``.
        adversary: steps ``model.masker.parameters()``; None without an adversary.
    """

    vae: torch.optim.Optimizer
    adversary: torch.optim.Optimizer | None = None


@dataclass(frozen=True)
class StepSettings:
    """How every step of a run is taken.

    Attributes:
        grad_clip: gradient-norm clipping of each player.
        free_bits: KL floor per latent dimension (0 = off).
        bf16: run the forward pass under bf16 autocast (``--precision bf16``): the products,
            the recurrences and the logits in bfloat16; the posterior, the adversary's scores
            and the selection, the loss (accumulated in float32 from the bf16 logits) and,
            through autocast's casts, the gradients of the float32 parameters and the
            optimiser states in float32.
    """

    grad_clip: float = 5.0
    free_bits: float = 0.0
    bf16: bool = False


def train_step(
    model: SequenceVAE,
    batch: Batch | BatchShard[Batch],
    beta: float,
    optimizers: Optimizers,
    settings: StepSettings = StepSettings(),
    *,
    forward: Callable[..., VAEOutput] | None = None,
    update_encoder: bool = True,
) -> dict[str, Tensor]:
    """One update of the VAE and (through the gradient reversal) of the adversary.

    The adversary's parameters receive the *reversed* gradient of the VAE's loss from the same
    backward pass, plus the plain gradient of its KL regulariser; each player has its own
    optimiser and its gradient norm is clipped separately. Under DDP (``forward`` wraps
    ``model``, ``batch`` is this rank's :class:`~advmask.training.distributed.BatchShard`) the
    loss is scaled to this rank's share of the global batch mean, the per-row random draws are
    the global batch's rows (the forward pass is given a :class:`~advmask.row_draws.RowDraws`
    of the shard's ``start``, ``stop`` and ``total``), and both
    players' gradients are averaged over the ranks before clipping, so every rank takes the
    step one process takes on the whole batch.

    Example:
        >>> from advmask.seqvae import ModelSpec, build_sequence_vae
        >>> from advmask.seqvae.data import collate
        >>> model = build_sequence_vae(ModelSpec(vocab_size=9, embedding_dim=4, hidden_size=4,
        ...                                      latent_dim=2, dropout="uniform"))
        >>> optimizers = Optimizers(torch.optim.SGD(model.vae_parameters(), lr=0.1))
        >>> stats = train_step(model, collate([[5, 6], [7]]), 1.0, optimizers)
        >>> sorted(stats)
        ['drop_fraction', 'kl', 'loss', 'reconstruction']

    Args:
        model: the VAE (its ``masker`` is the adversary, or None).
        batch: the batch (B, T); under DDP this rank's shard of the global batch.
        beta: the KL weight of this step (annealing).
        optimizers: the VAE's and (with an adversary) the adversary's optimiser.
        settings: clipping, free bits, precision.
        forward: ``model``'s DDP / compiled wrapper; None: ``model`` itself.
        update_encoder: False leaves the encoder as it is (its gradients are dropped before
            clipping): the decoder updates of ``lagging``'s aggressive phase.

    Returns:
        name -> (2,) ``[sum, count]`` on the device (no host sync): ``loss``,
        ``reconstruction``, ``kl``, ``drop_fraction`` with a masker, and
        :data:`SCORE_STATISTICS` with an adversary.
    """
    shard, batch = (batch, batch.batch) if isinstance(batch, BatchShard) else (None, batch)
    forward = model if forward is None else forward
    vae_optimizer, adversary_optimizer = optimizers.vae, optimizers.adversary
    grad_clip = settings.grad_clip
    autocast = torch.autocast(batch.tokens.device.type, dtype=torch.bfloat16, enabled=settings.bf16)
    # A shard's per-row draws are its rows of the global batch's draws (one process's noise;
    # a shard holding the whole batch makes the plain draws); one process makes the plain draws.
    draws = {}
    if shard is not None:
        draws["row_draws"] = RowDraws(shard.start, shard.stop, shard.total)
    with autocast:
        out = forward(batch.tokens, batch.lengths, beta=beta, free_bits=settings.free_bits, **draws)
    vae_optimizer.zero_grad(set_to_none=True)
    if adversary_optimizer is not None:
        adversary_optimizer.zero_grad(set_to_none=True)
    (out.loss if shard is None else out.loss * shard.loss_scale).backward()
    if not update_encoder:
        for parameter in model.encoder.parameters():
            parameter.grad = None
    torch.nn.utils.clip_grad_norm_(model.vae_parameters(), grad_clip)
    vae_optimizer.step()
    rows = float(batch.num_sequences)
    stats = {
        "loss": ratio(out.loss * rows, rows),
        "reconstruction": ratio(out.reconstruction.sum(), rows),
        "kl": ratio(out.kl.sum(), rows),
    }
    if out.masker is not None:
        stats["drop_fraction"] = ratio(out.masker.k.sum(), out.masker.eligible.sum())
    if adversary_optimizer is not None:
        masker = out.masker
        assert masker is not None and model.masker is not None
        # The same on every rank (the gradients are already averaged): its mean is itself.
        stats["adversary_grad_norm"] = ratio(
            torch.nn.utils.clip_grad_norm_(model.masker.parameters(), grad_clip), 1.0
        )
        eligible = masker.eligible
        num_eligible = eligible.sum()
        absolute_means = torch.where(eligible, masker.mean.detach().abs(), 0.0)
        stats["score_l1"] = ratio(absolute_means.sum(), rows)
        stats["score_mean_abs"] = ratio(absolute_means.sum(), num_eligible)
        stats["score_std"] = ratio(
            torch.where(eligible, masker.std.detach(), 0.0).sum(), num_eligible
        )
        stats["regularizer"] = ratio(masker.regularizer * rows, rows)
        adversary_optimizer.step()
    return stats
