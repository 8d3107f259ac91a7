"""One evaluator for validation and test.

Every number says what it is: the per-sequence ``-ELBO`` and ``KL``, the importance-weighted
NLL with its sample count, perplexities with their denominator (words + one EOS per sequence;
BOS is not predicted) and mutual information with its estimator and ceiling.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from advmask.seqvae.data import Batch
from advmask.training.distributed import all_gather_rows, block_range, sum_across_ranks
from advmask.seqvae.metrics import (
    active_units,
    gaussian_kl,
    importance_weighted_log_likelihood,
    mutual_information,
    mutual_information_ceiling,
    perplexity,
)
from advmask.seqvae.vae import DEFAULT_MEMORY_BUDGET, SequenceVAE


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
        mi_estimator: ``"full"`` or ``"batch"`` (see :func:`advmask.seqvae.metrics.mutual_information`).
        mi_batch_size: batch size of the ``"batch"`` estimator.
        generator: random generator for every sample drawn here.
        distributed: split the work over the ranks of the initialised process group. Every
            rank passes the *same* ``batches`` and a generator in the same state; rank ``r``
            evaluates a contiguous block of the batches (:func:`advmask.training.distributed.block_range`)
            drawing and discarding the noise of the batches outside its block, so each
            sequence gets the noise it gets in one process and the generator ends in the same
            state. Sums and counts are all-reduced, posterior means and log-variances
            all-gathered in batch order, and MI and AU are computed on every rank over the
            whole split: every rank returns the same result, equal to one process's up to the
            order of floating-point additions. Without a process group it changes nothing.

    Returns:
        An :class:`EvaluationResult`.
    """
    was_training = model.training
    model.eval()
    try:
        totals = {"neg_elbo": 0.0, "kl": 0.0, "rec": 0.0, "nll_iw": 0.0}
        num_sequences = num_words = 0
        means: list[Tensor] = []
        logvars: list[Tensor] = []
        neg_elbos: list[Tensor] = []
        nll_iws: list[Tensor] = []
        batches = list(batches)
        start, stop = 0, len(batches)
        if distributed and dist.is_available() and dist.is_initialized():
            start, stop = block_range(len(batches), dist.get_rank(), dist.get_world_size())
            _skip_noise(model, batches[:start], iw_samples, generator)
        for batch in batches[start:stop]:
            tokens, lengths = batch.tokens, batch.lengths
            mean, logvar = model.posterior(tokens, lengths)
            noise = torch.randn(
                mean.shape, generator=generator, device=mean.device, dtype=mean.dtype
            )
            z = mean + torch.exp(0.5 * logvar) * noise
            rec = model.reconstruction_nll(tokens, lengths, z)
            kl = gaussian_kl(mean, logvar)
            totals["rec"] += float(rec.sum())
            totals["kl"] += float(kl.sum())
            totals["neg_elbo"] += float((rec + kl).sum())
            neg_elbos.append((rec + kl).double().cpu())
            if iw_samples > 0:
                log_p = importance_weighted_log_likelihood(
                    lambda zs, t=tokens, ln=lengths: model.log_likelihood(
                        t, ln, zs, memory_budget=iw_memory_budget
                    ),
                    mean,
                    logvar,
                    num_samples=iw_samples,
                    chunk_size=iw_chunk,
                    generator=generator,
                )
                totals["nll_iw"] -= float(log_p.sum())
                nll_iws.append(-log_p.double().cpu())
            num_sequences += tokens.shape[0]
            num_words += int((lengths - 2).sum())
            means.append(mean.double().cpu())
            logvars.append(logvar.double().cpu())
        if distributed:
            sums = sum_across_ranks(
                {**totals, "num_sequences": num_sequences, "num_words": num_words}
            )
            totals = {name: sums[name] for name in totals}
            num_sequences = round(sums["num_sequences"])
            num_words = round(sums["num_words"])
        if num_sequences == 0:
            raise ValueError("batches is empty: nothing to evaluate")
        if distributed:
            # ... and past those after it, so the generator ends where one process leaves it.
            _skip_noise(model, batches[stop:], iw_samples, generator)
        if distributed and not means and batches:
            # A rank without batches still takes part in the gathers, with (0, D) blocks.
            mean, _ = model.posterior(batches[0].tokens[:1], batches[0].lengths[:1])
            means = logvars = [mean.new_zeros((0, mean.shape[1])).double().cpu()]
        all_means, all_logvars = _rows(means), _rows(logvars)
        if distributed:
            all_means, all_logvars = all_gather_rows(all_means), all_gather_rows(all_logvars)
            neg_elbos = [all_gather_rows(_rows(neg_elbos))]
            if iw_samples > 0:
                nll_iws = [all_gather_rows(_rows(nll_iws))]
        num_predictions = num_words + num_sequences
        cpu_generator = None
        if generator is not None:
            # A seed drawn from the stream, not the stream's own seed: the MI estimator's
            # samples must be independent of the ELBO's (a CPU generator seeded like a CPU
            # ``generator`` would replay its first draws). Every rank draws it at the same
            # point of the stream, so they agree.
            seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
            cpu_generator = torch.Generator().manual_seed(seed)
        mi = mutual_information(
            all_means,
            all_logvars,
            estimator=mi_estimator,
            batch_size=mi_batch_size,
            generator=cpu_generator,
        )
        nll_iw = totals["nll_iw"] / num_sequences if iw_samples > 0 else None
        iw_gap = iw_gap_se = None
        if iw_samples > 0:
            gaps = torch.cat(neg_elbos) - torch.cat(nll_iws)
            iw_gap = float(gaps.mean())
            iw_gap_se = float(gaps.std() / math.sqrt(num_sequences)) if num_sequences > 1 else 0.0
        return EvaluationResult(
            neg_elbo=totals["neg_elbo"] / num_sequences,
            kl=totals["kl"] / num_sequences,
            reconstruction=totals["rec"] / num_sequences,
            ppl_elbo=perplexity(totals["neg_elbo"], num_predictions),
            nll_iw=nll_iw,
            ppl_iw=perplexity(totals["nll_iw"], num_predictions) if iw_samples > 0 else None,
            mutual_information=mi,
            mi_estimator=mi_estimator,
            mi_ceiling=mutual_information_ceiling(num_sequences, mi_estimator, mi_batch_size),
            active_units=active_units(all_means),
            num_sequences=num_sequences,
            num_words=num_words,
            num_predictions=num_predictions,
            iw_samples=iw_samples,
            iw_gap=iw_gap,
            iw_gap_se=iw_gap_se,
        )
    finally:
        model.train(was_training)


def _rows(blocks: list[Tensor]) -> Tensor:
    """Concatenated rows; an empty float64 tensor when this rank evaluated nothing."""
    return torch.cat(blocks) if blocks else torch.zeros(0, dtype=torch.float64)


def _skip_noise(
    model: SequenceVAE, batches: list[Batch], iw_samples: int, generator: torch.Generator | None
) -> None:
    """Advance ``generator`` past the draws :func:`evaluate` makes for ``batches``.

    The shapes, dtypes and order mirror the loop above and
    :func:`advmask.seqvae.metrics.importance_weighted_log_likelihood` (one (S, B, D) draw).
    """
    if not batches:
        return
    first = batches[0]
    mean, _ = model.posterior(first.tokens[:1], first.lengths[:1])
    options = {"generator": generator, "device": mean.device, "dtype": mean.dtype}
    for batch in batches:
        rows = batch.tokens.shape[0]
        torch.randn((rows, mean.shape[1]), **options)
        if iw_samples > 0:
            torch.randn((iw_samples, rows, mean.shape[1]), **options)
