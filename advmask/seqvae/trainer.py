"""A training step the way a run's baseline trains (:mod:`advmask.seqvae.baselines`).

Most baselines change only the KL weight (beta) and the free bits of
:func:`~advmask.seqvae.step.train_step`; three change the step itself, and
:class:`BaselineTrainer` carries that out:

- ``fbp``: before the first step after the pretraining, the decoder is initialised again
  (:meth:`~advmask.seqvae.SequenceVAE.reset_decoder`), and so is its running average.
- ``lagging``: at each epoch's start the held-out MI decides whether the aggressive phase goes
  on; while it does, each step is encoder-only updates on random training batches
  (:func:`~advmask.seqvae.lagging.encoder_updates`) followed by an update of everything but the
  encoder.
- ``sa-vae``: the forward pass refines the posterior
  (:func:`~advmask.seqvae.semi_amortized.refine_posterior`) before ``z`` is drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import torch
from torch import Tensor
from torch.optim.swa_utils import AveragedModel

from advmask.seqvae.baselines import Baseline
from advmask.seqvae.data import Batch
from advmask.seqvae.lagging import AggressivePhase, encoder_updates, held_out_mutual_information
from advmask.seqvae.semi_amortized import refine_posterior
from advmask.seqvae.step import Optimizers, StepSettings, train_step
from advmask.seqvae.vae import SequenceVAE, VAEOutput
from advmask.training.distributed import BatchShard
from advmask.training.logs import ratio

__all__ = ["BaselineTrainer"]


class BaselineTrainer:
    """Takes each training step of a run as its baseline prescribes; checkpointed as a player.

    Args:
        baseline: the run's :class:`~advmask.seqvae.baselines.Baseline` (its free bits replace
            ``settings.free_bits``).
        model: the VAE.
        optimizers, settings: as in :func:`~advmask.seqvae.step.train_step`.
        forward: ``model``'s DDP / compiled wrapper; None: ``model`` itself.
        steps_per_epoch: updates per epoch (``lagging`` looks at the held-out MI at each
            epoch's start).
        batches: ``lagging``: ``batches(split)`` -> that split's batches, called once for
            ``"train"`` (its encoder-only updates draw from them) and ``"valid"`` (its MI).
        averaged: the running average of ``model``'s weights, if any: updated after every
            step (``fbp`` restarts its decoder's with the reset).
        seed: seeds ``lagging``'s draws of batches and its MI estimates.

    Raises:
        ValueError: ``lagging`` without ``batches``, or ``lagging`` or ``sa-vae`` under
            ``torch.distributed`` (both run in one process).
    """

    def __init__(
        self,
        baseline: Baseline,
        model: SequenceVAE,
        optimizers: Optimizers,
        settings: StepSettings,
        *,
        steps_per_epoch: int,
        forward: Callable[..., VAEOutput] | None = None,
        batches: Callable[[str], Sequence[Batch]] | None = None,
        averaged: AveragedModel | None = None,
        seed: int = 0,
    ) -> None:
        if baseline.runs_in_one_process and torch.distributed.is_initialized():
            raise ValueError(f"baseline {baseline.name!r} runs in one process, not distributed")
        if baseline.aggressive and batches is None:
            raise ValueError("baseline 'lagging' needs batches")
        self.baseline, self.model, self.averaged = baseline, model, averaged
        self.steps_per_epoch, self.seed, self.optimizers = steps_per_epoch, seed, optimizers
        self.settings = replace(settings, free_bits=baseline.free_bits)
        self.train_batches: Sequence[Batch] = batches("train") if baseline.aggressive else ()
        self.held_out: Sequence[Batch] = batches("valid") if baseline.aggressive else ()
        self.phase = AggressivePhase(active=baseline.aggressive)
        self.batch_generator = torch.Generator().manual_seed(seed)
        forward = model if forward is None else forward
        if baseline.svi_steps:
            refine = partial(refine_posterior, model, steps=baseline.svi_steps, lr=baseline.svi_lr)
            forward = partial(forward, refine=refine)
        self.forward = forward

    def step(
        self, batch: Batch | BatchShard[Batch], number: int
    ) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """Step ``number`` (1-based) on ``batch`` (or this rank's shard), then the average.

        Returns:
            (statistics of :func:`~advmask.seqvae.step.train_step`, plus ``encoder_updates``
            per step with ``lagging``; log columns: ``kl_weight`` (the step's beta; the
            column keeps its name so that older logs read alike), and ``aggressive`` with
            ``lagging``).
        """
        baseline, beta = self.baseline, self.baseline.beta(number)
        if baseline.pretrain_steps and number == baseline.pretrain_steps + 1:
            self.model.reset_decoder()
            if self.averaged is not None:
                decoder = self.model.decoder.state_dict()
                self.averaged.module.decoder.load_state_dict(decoder)
        stats, columns = self._step(batch, number, beta)
        if self.averaged is not None:
            self.averaged.update_parameters(self.model)
        return stats, columns

    def _take_step(self, batch: Batch | BatchShard[Batch], beta: float, **options: Any) -> dict:
        # train_step looked up at each call: tests wrap it to interrupt or record a step.
        return train_step(
            self.model, batch, beta, self.optimizers, self.settings, forward=self.forward, **options
        )

    def _step(
        self, batch: Batch | BatchShard[Batch], number: int, beta: float
    ) -> tuple[dict, dict]:
        baseline, columns = self.baseline, {"kl_weight": beta}
        if not baseline.aggressive:
            return self._take_step(batch, beta), columns
        epoch, step_in_epoch = divmod(number - 1, self.steps_per_epoch)
        if epoch > 0 and step_in_epoch == 0 and self.phase.active:
            device = self.held_out[0].tokens.device  # the MI's noise is drawn there
            generator = torch.Generator(device).manual_seed(self.seed + epoch)
            self.phase.observe(held_out_mutual_information(self.model, self.held_out, generator))
        updates = 0
        if self.phase.active:
            updates = encoder_updates(
                self.model,
                self._random_batch,
                self.optimizers.vae,
                beta,
                self.settings.grad_clip,
                free_bits=baseline.free_bits,
            )
        stats = self._take_step(batch, beta, update_encoder=not self.phase.active)
        device = stats["loss"].device
        stats["encoder_updates"] = ratio(torch.tensor(float(updates), device=device), 1.0)
        return stats, columns | {"aggressive": int(self.phase.active)}

    def _random_batch(self) -> Batch:
        index = torch.randint(len(self.train_batches), (1,), generator=self.batch_generator)
        return self.train_batches[int(index)]

    def state_dict(self) -> dict[str, Any]:
        return {"phase": self.phase.state_dict(), "batches": self.batch_generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.phase.load_state_dict(state["phase"])
        self.batch_generator.set_state(state["batches"].cpu())
