"""What ``recipes/analyze.py pmi`` computes and shows: PMI pooled over sentences, its tables.

:func:`pool_pmi` runs :func:`~advmask.seqvae.analysis.pmi.next_word_pmi`,
:func:`~advmask.seqvae.analysis.pmi.sentence_pmi` and the drop probabilities
(:func:`~advmask.seqvae.analysis.saliency.token_saliency`) over batches of sentences and keeps
the droppable inputs; :func:`correlation_fields` and :func:`pmi_tables` turn the summaries
(:func:`~advmask.seqvae.analysis.pmi.summarize_pmi`) into what ``pmi.json`` records and what
the command prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from rich.table import Table
from torch import Tensor

from advmask.seqvae.analysis.pmi import PMISummary, next_word_pmi, sentence_pmi, summarize_pmi
from advmask.seqvae.analysis.render import text_table
from advmask.seqvae.analysis.saliency import token_saliency
from advmask.seqvae.data import make_batches
from advmask.seqvae.vae import SequenceVAE

__all__ = [
    "PMI_DEFINITION",
    "PMI_NOTES",
    "SENTENCE_PMI_DEFINITION",
    "PooledPMI",
    "correlation_fields",
    "drop_probability_source",
    "pmi_tables",
    "pool_pmi",
]

PMI_DEFINITION = (
    "PMI_i = log p(x_{i+1} | x_<=i, z) - log p(x_{i+1} | x_<=i with x_i dropped as in "
    "training, z), nats, model in eval mode; the next word only (dropping x_i also changes "
    "the later predictions, which are not counted)"
)
"""The next-word PMI, as ``pmi.json`` states it."""

SENTENCE_PMI_DEFINITION = (
    "PMI>_i = log p(x_{>i} | x, z) - log p(x_{>i} | x with x_i dropped as in training, z), "
    "nats, model in eval mode: every later word and EOS, which the adversary's loss counts; "
    "its excess over PMI_i is what the decoder carries from x_i beyond the next word"
)
"""The sentence PMI, as ``pmi.json`` states it."""

PMI_NOTES: dict[str, str] = {
    "uniform": "uniform dropout drops K / n of each sentence whatever its words: the "
    "correlation is undefined (None)",
    "none": "no word dropout: no drop probability, so no correlation and no dropped/kept "
    "means (None)",
}
"""Dropout kind -> why ``pmi.json`` has no correlation (its ``note``)."""


def drop_probability_source(dropout: str, num_samples: int) -> str:
    """Where the drop probabilities of a run with ``dropout`` come from, in words."""
    return {
        "adversarial": f"the adversary's, Monte Carlo over {num_samples} score samples",
        "uniform": "uniform dropout: exactly K / n in each sentence (no sampling)",
        "none": "none: the run was trained without word dropout",
    }[dropout]


@dataclass(frozen=True)
class PooledPMI:
    """The droppable inputs of a set of sentences, pooled (``N`` inputs in all).

    Attributes:
        next_word: (N,) float next-word PMI of each input (nats).
        sentence: (N,) float sentence PMI of the same inputs.
        drop_probability: (N,) float ``P(dropped)`` of the same inputs, or None (a model
            without word dropout).
        groups: (N,) int64 sentence of each input (its index in the sentences given).
    """

    next_word: Tensor
    sentence: Tensor
    drop_probability: Tensor | None
    groups: Tensor

    def summarize(
        self, *, correlate: bool, num_resamples: int, seed: int
    ) -> tuple[PMISummary, PMISummary]:
        """:func:`~advmask.seqvae.analysis.pmi.summarize_pmi` of the next-word and of the
        sentence PMI, each bootstrap drawn from a CPU generator seeded with ``seed``."""
        return tuple(  # type: ignore[return-value]
            summarize_pmi(
                values,
                self.drop_probability,
                self.groups,
                correlate=correlate,
                num_resamples=num_resamples,
                generator=torch.Generator().manual_seed(seed),
            )
            for values in (self.next_word, self.sentence)
        )


@torch.no_grad()
def pool_pmi(
    model: SequenceVAE,
    sequences: Sequence[Sequence[int]],
    *,
    sample_z: bool,
    num_samples: int,
    generator: torch.Generator | None,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
) -> PooledPMI:
    """PMI and drop probability of every droppable input of ``sequences``, on CPU.

    Args:
        model: the sequence VAE.
        sequences: word ids of each sentence (no BOS or EOS).
        sample_z: decode with one draw of ``q(z|x)`` instead of its mean.
        num_samples: Monte-Carlo draws of the adversary's scores per drop probability.
        generator: random generator on ``device`` for the draws of ``z`` and the scores.
        device: where the model is.
        batch_size: sentences decoded together.

    Returns:
        A :class:`PooledPMI`; drop probabilities unless the model has no masker.
    """
    pmi, whole, probability, sentence = [], [], [], []
    for batch in make_batches(sequences, batch_size=batch_size, shuffle=False):
        tokens, lengths = batch.tokens.to(device), batch.lengths.to(device)
        z, logvar = model.posterior(tokens, lengths)
        if sample_z:
            noise = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
            z = z + torch.exp(0.5 * logvar) * noise
        values = next_word_pmi(model, tokens, lengths, z)
        droppable = ~values.isnan()
        pmi.append(values[droppable].cpu())
        whole.append(sentence_pmi(model, tokens, lengths, z)[droppable].cpu())
        # Sentence ids for the bootstrap, which resamples whole sentences.
        sentence.append(batch.indices.unsqueeze(1).expand(values.shape)[droppable.cpu()])
        if model.masker is not None:
            saliency = token_saliency(
                model, tokens, lengths, num_samples=num_samples, generator=generator
            )
            probability.append(saliency.probability[droppable].cpu())
    return PooledPMI(
        next_word=torch.cat(pmi),
        sentence=torch.cat(whole),
        drop_probability=torch.cat(probability) if probability else None,
        groups=torch.cat(sentence).cpu(),
    )


def correlation_fields(summary: PMISummary) -> dict[str, Any]:
    """What ``pmi.json`` says of one kind of PMI: its correlation with P(dropped) and means."""
    return {
        "spearman": summary.spearman,
        "spearman_ci": list(summary.spearman_ci) if summary.spearman_ci else None,
        "mean_pmi_dropped": summary.mean_pmi_dropped,
        "mean_pmi_kept": summary.mean_pmi_kept,
        "mean_pmi_uniform": summary.mean_pmi_uniform,
    }


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _interval(ci: tuple[float, float] | None) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "-"


def pmi_tables(next_word: PMISummary, sentence: PMISummary, split: str) -> list[Table]:
    """The summary of both kinds of PMI side by side, and the mean PMI by drop probability.

    Args:
        next_word: summary of the next-word PMI.
        sentence: summary of the sentence PMI of the same inputs.
        split: the split the sentences come from (named in the sentence count's row).

    Returns:
        One table, or two when ``next_word`` has drop-probability bins.
    """
    described = (
        ("spearman", _number, "rank correlation with P(dropped)"),
        ("spearman_ci", _interval, "bootstrap 95%, sentences"),
        ("mean_pmi_dropped", _number, "E[PMI | dropped] (nats)"),
        ("mean_pmi_kept", _number, "E[PMI | kept] (nats)"),
        ("mean_pmi_uniform", _number, "plain mean: uniform dropout"),
    )
    rows: list[Sequence[Any]] = [
        (key, show(getattr(next_word, key)), show(getattr(sentence, key)), what)
        for key, show, what in described
    ]
    rows += [
        ("num_positions", next_word.num_positions, "", "droppable inputs pooled"),
        ("num_sequences", next_word.num_sequences, "", f"{split} sentences"),
    ]
    columns = ("key", "next word", 'rest of sentence ("sentence")', "")
    tables = [text_table("PMI of the decoder inputs", columns, rows)]
    if next_word.bins:
        tables.append(
            text_table(
                "mean PMI by P(dropped)",
                ("P(dropped)", "mean PMI", "s.e.", "inputs"),
                [
                    (
                        f"[{b.low:.1f}, {b.high:.1f})",
                        _number(b.mean_pmi),
                        _number(b.standard_error),
                        b.count,
                    )
                    for b in next_word.bins
                ],
            )
        )
    return tables
