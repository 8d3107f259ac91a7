"""One evaluator for validation and test.

Every number says what it is: the per-sequence ``-ELBO`` and ``KL``, the importance-weighted
NLL with its sample count, perplexities with their denominator (words + one EOS per sequence;
BOS is not predicted) and mutual information with its estimator and ceiling.

Several processes. Every rank reads the same global batches and, for each one, encodes all its
``N`` rows and draws their noise with the calls one process makes, in the same order: the
``(N, D)`` noise of ``z`` and the ``(S, N, D)`` importance samples. It then decodes only its
own block of rows (:func:`~advmask.training.distributed.block_range`). So sequence ``n`` gets
one process's noise whichever rank decodes it, and the generators of all ranks stay in step,
by construction rather than by replaying draws. The decoder, where the time goes, is shared;
the encoder (about a quarter of an ELBO pass at the default sizes on a CPU, nothing next to 500
importance samples) runs on every rank, which also gives every rank the posteriors of the whole
split for MI and active units. Only the sums of the decoded terms and the per-sequence IW gaps
cross ranks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from advmask.seqvae.data import Batch
from advmask.seqvae.gaussian import gaussian_kl
from advmask.seqvae.metrics import (
    active_units,
    importance_weighted_log_likelihood,
    mutual_information,
    mutual_information_ceiling,
    perplexity,
)
from advmask.seqvae.vae import DEFAULT_MEMORY_BUDGET, SequenceVAE
from advmask.training.distributed import (
    all_gather_rows,
    block_range,
    rank_and_world_size,
    sum_across_ranks,
)


@dataclass(frozen=True)
class EvaluationResult:
    """Metrics of a model on one split. All NLL-type values are in nats.

    Attributes:
        neg_elbo: mean over sequences of ``-ELBO = rec + KL`` (one ``z ~ q``).
        kl: mean over sequences of ``KL(q(z|x) || p(z))``.
        reconstruction: mean over sequences of ``-log p(x|z)``, ``z ~ q``.
        ppl_elbo: ``exp(sum -ELBO / num_predictions)``, an upper bound on the perplexity.
        nll_iw: mean importance-weighted NLL with ``iw_samples`` samples (None if not run).
        ppl_iw: perplexity from ``nll_iw`` (None if not run).
        mutual_information: ``I_q(x; z)`` estimate in nats.
        mi_estimator: ``"full"`` (aggregate posterior over the whole split) or ``"batch"``.
        mi_ceiling: the estimator's upper bound, ``log N`` or ``log batch_size``.
        active_units: latent dimensions whose posterior mean varies (variance >= 0.01).
        num_sequences: sequences evaluated.
        num_words: words, without BOS and EOS.
        num_predictions: perplexity denominator, ``num_words + num_sequences`` (one EOS each).
        iw_samples: importance samples per sequence (0 = not run).
        iw_gap: mean over sequences of ``-ELBO_n - NLL_IW_n``; nonnegative in expectation
            (the IW bound is tighter), so a clearly negative value means a bug. None if not run.
        iw_gap_se: standard error of ``iw_gap`` over sequences (Monte-Carlo noise of both
            estimates; the sequences' own variation cancels in the difference).
    """

    neg_elbo: float
    kl: float
    reconstruction: float
    ppl_elbo: float
    nll_iw: float | None
    ppl_iw: float | None
    mutual_information: float
    mi_estimator: str
    mi_ceiling: float
    active_units: int
    num_sequences: int
    num_words: int
    num_predictions: int
    iw_samples: int
    iw_gap: float | None = None
    iw_gap_se: float | None = None

    def as_dict(self) -> dict[str, float | int | str | None]:
        """Plain dictionary for JSON, with the perplexity convention spelled out."""
        return {**asdict(self), "ppl_denominator": "words + EOS per sequence (BOS not predicted)"}


@torch.no_grad()
def evaluate(
    model: SequenceVAE,
    batches: Iterable[Batch],
    *,
    iw_samples: int = 0,
    iw_chunk: int = 100,
    iw_memory_budget: int = DEFAULT_MEMORY_BUDGET,
    mi_estimator: str = "full",
    mi_batch_size: int = 32,
    generator: torch.Generator | None = None,
    distributed: bool = False,
    bf16: bool = False,
) -> EvaluationResult:
    """Evaluate ``model`` (in eval mode: no masking, no dropout) on ``batches``.

    Args:
        model: the sequence VAE (pass the EMA copy to evaluate averaged weights).
        batches: the split, as :class:`advmask.seqvae.data.Batch` objects on the model's device.
        iw_samples: importance samples per sequence for the IW-NLL; 0 skips it. The paper's
            protocol uses 500 on the test split.
        iw_chunk: samples drawn per call of the decoder's likelihood (the decoder splits
            each call further to stay within ``iw_memory_budget``).
        iw_memory_budget: bytes for one chunk of decoded rows' logits and features
            (:meth:`advmask.seqvae.vae.SequenceVAE.log_likelihood`); peak memory stays below twice
            this.
        mi_estimator: ``"full"`` or ``"batch"`` (see
            :func:`advmask.seqvae.metrics.mutual_information`).
        mi_batch_size: batch size of the ``"batch"`` estimator.
        generator: random generator for every sample drawn here.
        distributed: share the decoding among the ranks of the initialised process group (see
            the module docstring). Every rank passes the *same* global ``batches`` and a
            generator in the same state (without one, the same global seed); rank ``r`` decodes
            rows :func:`~advmask.training.distributed.block_range` ``(N, r, W)`` of each batch.
            Every sequence gets the noise it gets in one process and the generator ends in the
            same state; every rank returns the same result, equal to one process's up to the
            order of floating-point additions. Without a process group it changes nothing.
        bf16: run the encoder and the decoder under bf16 autocast (``--precision bf16``): the
            matrix products and the logits in bfloat16; the posterior, ``z``, each
            sequence's ``log p(x|z)`` (accumulated in float32,
            :func:`~advmask.seqvae.low_precision_loss.low_precision_cross_entropy`), the
            log-weights, their log-sum-exp, the KL and the MI in float32 or float64.

    Returns:
        An :class:`EvaluationResult`.

    Raises:
        ValueError: if ``batches`` holds no sequence, or ``mi_estimator`` or ``mi_batch_size``
            is invalid (both checked before any work).
    """
    batches = list(batches)
    num_sequences = sum(batch.num_sequences for batch in batches)
    if num_sequences == 0:
        raise ValueError("batches is empty: nothing to evaluate")
    mi_ceiling = mutual_information_ceiling(num_sequences, mi_estimator, mi_batch_size)
    rank, world_size = rank_and_world_size() if distributed else (0, 1)
    was_training = model.training
    model.eval()
    try:
        passes = [
            _batch_pass(
                model,
                batch,
                slice(*block_range(batch.num_sequences, rank, world_size)),
                iw_samples=iw_samples,
                iw_chunk=iw_chunk,
                iw_memory_budget=iw_memory_budget,
                generator=generator,
                bf16=bf16,
            )
            for batch in batches
        ]
    finally:
        model.train(was_training)
    mean = torch.cat([batch_pass.mean for batch_pass in passes])
    logvar = torch.cat([batch_pass.logvar for batch_pass in passes])
    mi = _mutual_information(mean, logvar, mi_estimator, mi_batch_size, generator)
    totals = _split_totals(passes, world_size)
    num_words = sum(batch.num_words for batch in batches)
    num_predictions = num_words + num_sequences
    iw_gap = iw_gap_se = None
    if iw_samples > 0:
        gaps = _split_iw_gaps(passes, world_size)
        iw_gap = float(gaps.mean())
        iw_gap_se = float(gaps.std() / math.sqrt(num_sequences)) if num_sequences > 1 else 0.0
    return EvaluationResult(
        neg_elbo=totals["neg_elbo"] / num_sequences,
        kl=totals["kl"] / num_sequences,
        reconstruction=totals["rec"] / num_sequences,
        ppl_elbo=perplexity(totals["neg_elbo"], num_predictions),
        nll_iw=totals["nll_iw"] / num_sequences if iw_samples > 0 else None,
        ppl_iw=perplexity(totals["nll_iw"], num_predictions) if iw_samples > 0 else None,
        mutual_information=mi,
        mi_estimator=mi_estimator,
        mi_ceiling=mi_ceiling,
        active_units=active_units(mean),
        num_sequences=num_sequences,
        num_words=num_words,
        num_predictions=num_predictions,
        iw_samples=iw_samples,
        iw_gap=iw_gap,
        iw_gap_se=iw_gap_se,
    )


_SUMS = ("neg_elbo", "kl", "rec", "nll_iw")


@dataclass(frozen=True)
class _BatchPass:
    """What one global batch of ``N`` rows gives on one rank, whose rows are ``B_r`` of them.

    Attributes:
        mean: (N, D) float64 CPU posterior means of all the batch's rows.
        logvar: (N, D) float64 CPU posterior log-variances.
        sums: for each name of ``_SUMS``, the float32 sum over this rank's rows of the
            per-sequence ``-ELBO``, ``KL``, reconstruction NLL and IW-NLL (0.0 without IW).
        iw_gaps: (B_r,) float64 ``-ELBO_n - NLL_IW_n`` of this rank's rows; None without IW.
    """

    mean: Tensor
    logvar: Tensor
    sums: dict[str, float]
    iw_gaps: Tensor | None


def _batch_pass(
    model: SequenceVAE,
    batch: Batch,
    rows: slice,
    *,
    iw_samples: int,
    iw_chunk: int,
    iw_memory_budget: int,
    generator: torch.Generator | None,
    bf16: bool,
) -> _BatchPass:
    """Encode the whole ``batch`` and draw its noise; decode only ``rows``.

    Args:
        model: the sequence VAE, in eval mode.
        batch: one global batch, ``N`` rows.
        rows: this rank's rows ``start:stop``; all of them in one process, none on a rank
            beyond ``N`` when the batch has fewer rows than there are ranks.
        iw_samples, iw_chunk, iw_memory_budget, generator, bf16: as in :func:`evaluate`.

    Returns:
        The batch's :class:`_BatchPass`.
    """
    # Autocast around the networks only: the estimators below stay in float32/float64.
    autocast = partial(torch.autocast, batch.tokens.device.type, dtype=torch.bfloat16, enabled=bf16)
    with autocast():
        mean, logvar = model.posterior(batch.tokens, batch.lengths)  # (N, D) float32
    # Noise for all N rows, as one process draws it: row n's z does not depend on the rank.
    noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    z = mean + torch.exp(0.5 * logvar) * noise
    tokens, lengths = batch.tokens[rows], batch.lengths[rows]
    # The decoders need at least one row; a rank can have none (see ``rows``).
    has_rows = rows.stop > rows.start
    with autocast():
        rec = model.reconstruction_nll(tokens, lengths, z[rows]) if has_rows else z.new_zeros(0)
    kl = gaussian_kl(mean, logvar)[rows]
    neg_elbo = rec + kl
    sums = {
        "neg_elbo": float(neg_elbo.sum()),
        "kl": float(kl.sum()),
        "rec": float(rec.sum()),
        "nll_iw": 0.0,
    }
    iw_gaps = None
    if iw_samples > 0:
        log_p = _iw_log_likelihood(
            model,
            batch,
            rows,
            mean,
            logvar,
            num_samples=iw_samples,
            chunk_size=iw_chunk,
            memory_budget=iw_memory_budget,
            generator=generator,
            autocast=autocast,
        )
        sums["nll_iw"] = -float(log_p.sum())
        iw_gaps = neg_elbo.double().cpu() - (-log_p).double().cpu()
    return _BatchPass(mean.double().cpu(), logvar.double().cpu(), sums, iw_gaps)


def _iw_log_likelihood(
    model: SequenceVAE,
    batch: Batch,
    rows: slice,
    mean: Tensor,
    logvar: Tensor,
    *,
    num_samples: int,
    chunk_size: int,
    memory_budget: int,
    generator: torch.Generator | None,
    autocast: Callable[[], AbstractContextManager],
) -> Tensor:
    """Importance-weighted ``log p(x_n)`` of ``rows``, with one process's samples.

    The estimator is given the posterior of the whole batch, so it draws the ``(S, N, D)``
    samples one process draws; the decoder runs on this rank's rows only, and the other rows'
    ``log p(x|z)`` are zeros whose log-weights are computed and dropped (``S * N * D``
    elementwise work, next to decoding ``S * B_r`` sequences).

    Args:
        model: the sequence VAE, in eval mode.
        batch: one global batch, ``N`` rows.
        rows: this rank's rows ``start:stop`` (possibly none).
        mean: (N, D) posterior means of the whole batch.
        logvar: (N, D) posterior log-variances.
        num_samples, chunk_size, generator: as in
            :func:`advmask.seqvae.metrics.importance_weighted_log_likelihood`.
        memory_budget: as in :meth:`advmask.seqvae.vae.SequenceVAE.log_likelihood`.
        autocast: the context the decoder runs in (bf16 autocast or a disabled one); the
            log-weights and their log-sum-exp are computed outside it.

    Returns:
        (B_r,) ``log p_S(x_n)`` in nats.
    """
    tokens, lengths = batch.tokens[rows], batch.lengths[rows]
    others_after = batch.num_sequences - rows.stop

    def log_likelihood(z: Tensor) -> Tensor:
        # (S_chunk, N, D) -> (S_chunk, N): this rank's rows decoded, zeros for the others'.
        if rows.stop == rows.start:
            return z.new_zeros(z.shape[:2])
        with autocast():
            own = model.log_likelihood(tokens, lengths, z[:, rows], memory_budget=memory_budget)
        return F.pad(own, (rows.start, others_after))

    log_p = importance_weighted_log_likelihood(
        log_likelihood,
        mean,
        logvar,
        num_samples=num_samples,
        chunk_size=chunk_size,
        generator=generator,
    )
    return log_p[rows]


def _mutual_information(
    mean: Tensor,
    logvar: Tensor,
    estimator: str,
    batch_size: int,
    generator: torch.Generator | None,
) -> float:
    """MI estimate over the posteriors of the whole split, (N, D) float64 each, in split order.

    Called after every batch's draws, so every rank takes the estimator's seed from the same
    point of the stream.
    """
    cpu_generator = None
    if generator is not None:
        # A seed drawn from the stream, not the stream's own seed: the MI estimator's samples
        # must be independent of the ELBO's (a CPU generator seeded like a CPU ``generator``
        # would replay its first draws).
        seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
        cpu_generator = torch.Generator().manual_seed(seed)
    return mutual_information(
        mean, logvar, estimator=estimator, batch_size=batch_size, generator=cpu_generator
    )


def _split_totals(passes: list[_BatchPass], world_size: int) -> dict[str, float]:
    """Each of ``_SUMS`` over the split: this rank's batch sums in batch order, then all ranks'."""
    totals = {name: sum((batch_pass.sums[name] for batch_pass in passes), 0.0) for name in _SUMS}
    return sum_across_ranks(totals) if world_size > 1 else totals


def _split_iw_gaps(passes: list[_BatchPass], world_size: int) -> Tensor:
    """(N,) float64 IW gaps of every sequence of the split, rank 0's first.

    Only their mean and standard deviation are used, so the rank order, not the split's, is
    enough: it changes the result by the order of the additions only.
    """
    gaps = torch.cat([batch_pass.iw_gaps for batch_pass in passes])
    return all_gather_rows(gaps) if world_size > 1 else gaps
