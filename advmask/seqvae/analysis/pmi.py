r"""What a dropped word takes from the decoder: next-word PMI against the drop probability.

The paper's Eq. 5 idea: dropping a decoder input ``x_i`` removes the pointwise mutual
information it carries about the next word beyond the rest of the prefix and ``z``,

.. math::

    \mathrm{PMI}_i = \log p(x_{i+1} \mid x_{\le i}, z)
                   - \log p(x_{i+1} \mid x_{<i}, \tilde x_i, z),

where :math:`\tilde x_i` is ``x_i`` dropped exactly as in training (its embedding replaced by
the model's fill vector, :func:`advmask.embedding.mask_embeddings`). An adversary that learns to
drop high-PMI inputs leaves the decoder short of exactly the information ``z`` can supply, so
the theory predicts a positive rank correlation between ``PMI_i`` and the adversary's drop
probability of ``x_i``.

Only the next-word term is counted in ``PMI_i``: dropping ``x_i`` also changes
``p(x_{j+1} | ...)`` for every later ``j > i`` (through the recurrent state or attention).
The adversary's loss counts those terms too, and so does the *sentence PMI*

.. math::

    \mathrm{PMI}^{>}_i = \log p(x_{>i} \mid x, z) - \log p(x_{>i} \mid x_{<i}, \tilde x_i,
    x_{>i}, z),

whose excess over ``PMI_i`` is what the decoder carries from ``x_i`` to the words after the
next (a topic named once, a subject): the long-range information that ``z`` can take over when
``x_i`` is hidden. A decoder that has not learned such a dependency shows
``PMI^>_i ≈ PMI_i``. The model runs in eval mode (no decoder dropout) with a given ``z``; the
analysis command uses the posterior mean.

* :func:`next_word_pmi`: ``PMI_i`` of every droppable input of a batch (the words, see
  :func:`advmask.seqvae.decoder_inputs.droppable_inputs`), vectorised over the ``B * T``
  one-input-dropped variants (in memory-bounded chunks); :func:`sentence_pmi`: ``PMI^>_i`` the
  same way.
* :func:`summarize_pmi`: the pooled numbers that ``recipes/analyze.py pmi RUN`` reports, with
  the rank correlation of :mod:`advmask.seqvae.analysis.rank_correlation`; the figure is
  :func:`advmask.seqvae.analysis.plots.plot_pmi`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from advmask.checks import FLOAT_DTYPES, INT_DTYPES, check_tensor, check_tokens_lengths
from advmask.embedding import mask_embeddings
from advmask.seqvae.analysis.rank_correlation import bootstrap_ci, spearman
from advmask.seqvae.decoder_inputs import droppable_inputs
from advmask.seqvae.low_precision_loss import LOW_PRECISION_DTYPES, low_precision_cross_entropy
from advmask.seqvae.vae import DEFAULT_MEMORY_BUDGET, SequenceVAE

__all__ = ["PMIBin", "PMISummary", "next_word_pmi", "sentence_pmi", "summarize_pmi"]


# --------------------------------------------------------------------------------------------
# PMI of each decoder input with the next word
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def next_word_pmi(
    model: SequenceVAE,
    tokens: Tensor,
    lengths: Tensor,
    z: Tensor | None = None,
    *,
    max_rows: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> Tensor:
    """``PMI_i = log p(x_{i+1} | x_{<=i}, z) - log p(x_{i+1} | x_{<=i}, x_i dropped, z)``.

    For every droppable input ``x_i = tokens[b, i]`` (a word; not BOS, EOS or padding) the
    decoder is run once more on the inputs with ``x_i`` dropped as in training (the model's
    fill: zero vector, ``<unk>`` embedding or learned vector), and the two log-probabilities of
    the *next* token ``tokens[b, i + 1]`` (a word, or EOS after the last word) are compared.
    Dropping ``x_i`` also changes the later predictions; they are not part of ``PMI_i``.

    The ``N = sum_b L_b`` variants are decoded in chunks of at most ``max_rows`` rows, ordered
    by the dropped position and cut after it: the decoder is causal (step ``t`` reads inputs
    ``0..t`` only, the decoder contract of :class:`~advmask.seqvae.vae.SequenceVAE`), so the steps
    after the dropped one are not needed. The model runs in eval mode (no decoder dropout) and
    is put back in its previous mode afterwards.

    Args:
        model: the sequence VAE; its ``decoder`` and
            :meth:`~advmask.seqvae.vae.SequenceVAE.fill_vector` are used (and its encoder when
            ``z`` is None).
        tokens: (B, T) int64 ``[BOS, w_1..w_L, EOS, PAD..]``.
        lengths: (B,) int64 non-padding tokens per row (``L_b + 2``, at least 2).
        z: optional (B, D) float latent codes; None uses the posterior means ``E_q[z | x]``.
        max_rows: most one-input-dropped variants decoded at once; None derives it from
            ``memory_budget``.
        memory_budget: bytes for one chunk's float32 logits and its copy of the embeddings
            (default 256 MiB).

    Returns:
        (B, T) float PMI in nats, aligned with ``tokens`` (entry ``[b, i]`` is about the input
        ``tokens[b, i]``); NaN where the input is not droppable (see :func:`.droppable_inputs`).
        float64 for a float64 model, float32 otherwise.

    Raises:
        ValueError: on malformed ``tokens``/``lengths``, a ``z`` of the wrong shape, or a
            non-positive ``max_rows``.

    Example:
        >>> from advmask.seqvae.factory import ModelSpec, build_sequence_vae
        >>> model = build_sequence_vae(ModelSpec(vocab_size=9, embedding_dim=4, hidden_size=4,
        ...                                      latent_dim=2))
        >>> pmi = next_word_pmi(model, torch.tensor([[1, 5, 6, 2]]), torch.tensor([4]))
        >>> pmi.shape, pmi.isnan().tolist()
        (torch.Size([1, 4]), [[True, False, False, True]])
    """
    return _checked_drop_effect(
        model, tokens, lengths, z, max_rows, memory_budget, whole_sentence=False
    )


@torch.no_grad()
def sentence_pmi(
    model: SequenceVAE,
    tokens: Tensor,
    lengths: Tensor,
    z: Tensor | None = None,
    *,
    max_rows: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> Tensor:
    """``log p(x_{>i} | x, z) - log p(x_{>i} | x with x_i dropped, z)``: the whole suffix.

    :func:`next_word_pmi` counts what dropping ``x_i`` costs the prediction of the next token;
    this counts what it costs every later one, ``x_{i+1}`` up to EOS, which is what the
    adversary's loss sees. The difference between the two is what the decoder carries from
    ``x_i`` beyond the next word (a topic, a subject named once), the information ``z`` could
    take over when ``x_i`` is hidden. Each of the ``N = sum_b L_b`` one-input-dropped variants
    is decoded over the whole row (:func:`next_word_pmi` stops each chunk at its last dropped
    position). Same conventions otherwise: eval mode, ``x_i`` dropped as in
    training (the model's fill), ``z`` given or the posterior means.

    Args:
        model: the sequence VAE.
        tokens: (B, T) int64 ``[BOS, w_1..w_L, EOS, PAD..]``.
        lengths: (B,) int64 non-padding tokens per row (``L_b + 2``, at least 2).
        z: optional (B, D) float latent codes; None uses the posterior means.
        max_rows: most one-input-dropped variants decoded at once; None derives it from
            ``memory_budget``.
        memory_budget: bytes for one chunk's float32 logits and its copy of the embeddings.

    Returns:
        (B, T) float, nats, aligned with ``tokens`` (entry ``[b, i]`` is about the input
        ``tokens[b, i]``); NaN where the input is not droppable. At the last word it equals
        :func:`next_word_pmi` (only EOS follows).

    Raises:
        ValueError: as :func:`next_word_pmi`.

    Example:
        >>> from advmask.seqvae.factory import ModelSpec, build_sequence_vae
        >>> model = build_sequence_vae(ModelSpec(vocab_size=9, embedding_dim=4, hidden_size=4,
        ...                                      latent_dim=2))
        >>> tokens, lengths = torch.tensor([[1, 5, 6, 2]]), torch.tensor([4])
        >>> whole = sentence_pmi(model, tokens, lengths)
        >>> next_word = next_word_pmi(model, tokens, lengths)
        >>> bool(torch.allclose(whole[0, 2], next_word[0, 2]))  # the last word: EOS follows
        True
    """
    return _checked_drop_effect(
        model, tokens, lengths, z, max_rows, memory_budget, whole_sentence=True
    )


def _checked_drop_effect(
    model: SequenceVAE,
    tokens: Tensor,
    lengths: Tensor,
    z: Tensor | None,
    max_rows: int | None,
    memory_budget: int,
    *,
    whole_sentence: bool,
) -> Tensor:
    decoder = model.decoder
    tokens, lengths = check_tokens_lengths(
        tokens, lengths, vocab_size=decoder.embedding.num_embeddings, min_length=2
    )
    if z is not None:
        z = check_tensor("z", z, ndim=2, dtypes=FLOAT_DTYPES)
        if z.shape[0] != tokens.shape[0]:
            raise ValueError(
                f"z must have one row per sequence, shape ({tokens.shape[0]}, D), got "
                f"{tuple(z.shape)}"
            )
    if max_rows is not None and (
        isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1
    ):
        raise ValueError(f"max_rows must be an int >= 1 or None, got {max_rows!r}")
    was_training = model.training
    model.eval()
    try:
        if z is None:
            z, _ = model.posterior(tokens, lengths)
        return _drop_effect(model, tokens, lengths, z, max_rows, memory_budget, whole_sentence)
    finally:
        model.train(was_training)


def _drop_effect(
    model: SequenceVAE,
    tokens: Tensor,
    lengths: Tensor,
    z: Tensor,
    max_rows: int | None,
    memory_budget: int,
    whole_sentence: bool,
) -> Tensor:
    """PMI of each droppable input with the next token, or with all later tokens."""
    decoder = model.decoder
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    embedded = decoder.embedding(inputs)  # (B, S, E), S = T - 1 inputs
    intact = _target_log_probs(decoder(embedded, z), targets)  # (B, S)
    steps_total = inputs.shape[1]
    step_index = torch.arange(steps_total, device=tokens.device)
    valid_target = step_index < (lengths - 1).unsqueeze(1)  # (B, S): a word or EOS
    if whole_sentence:
        intact = _suffix_sums(intact, valid_target)  # [b, i]: log p(x_{i+1}, ..., EOS | x, z)
    droppable = droppable_inputs(tokens, lengths)[:, :-1]
    row, step = droppable.nonzero(as_tuple=True)  # variant v drops input step[v] of row[v]
    # By dropped position: a chunk's variants then share a short prefix to decode.
    order = torch.argsort(step, stable=True)
    row, step = row[order], step[order]
    if max_rows is None:
        bytes_per_row = inputs.shape[1] * (
            4 * decoder.embedding.num_embeddings + embedded.shape[2] * embedded.element_size()
        )
        max_rows = max(1, memory_budget // bytes_per_row)
    fill = model.fill_vector()
    dropped = intact.new_empty(row.shape[0])
    for start in range(0, row.shape[0], max_rows):
        rows, steps = row[start : start + max_rows], step[start : start + max_rows]
        # The decoder is causal: the next token needs the prefix up to the dropped position
        # only (the largest of the chunk, as it is sorted); later tokens need every step.
        width = steps_total if whole_sentence else int(steps[-1]) + 1
        drop_mask = F.one_hot(steps, width).to(embedded.dtype)  # (n, width), 1.0 = drop
        variants = mask_embeddings(embedded[rows, :width], drop_mask, fill)
        logits = decoder(variants, z[rows])  # (n, width, V)
        if whole_sentence:
            suffix = _suffix_sums(_target_log_probs(logits, targets[rows]), valid_target[rows])
            dropped[start : start + max_rows] = suffix.gather(1, steps.unsqueeze(1)).squeeze(1)
        else:
            at_drop = logits[torch.arange(rows.shape[0], device=logits.device), steps]
            dropped[start : start + max_rows] = _target_log_probs(
                at_drop.unsqueeze(1), targets[rows, steps].unsqueeze(1)
            ).squeeze(1)
    pmi = torch.full(tokens.shape, math.nan, dtype=intact.dtype, device=tokens.device)
    pmi[row, step] = intact[row, step] - dropped
    return pmi


def _suffix_sums(log_probs: Tensor, valid: Tensor) -> Tensor:
    """(n, S) ``sum_{t >= i} log_probs[:, t]`` over the valid targets (words and EOS) of each row,
    the same for the intact and the one-input-dropped decodes."""
    return (log_probs * valid).flip(1).cumsum(1).flip(1)


def _target_log_probs(logits: Tensor, targets: Tensor) -> Tensor:
    """(B, S) ``log softmax(logits)[target]`` of (B, S, V) logits, float32 or float64.

    bfloat16/float16 logits (under autocast): float32 results, accumulated in float32 without
    a float32 copy of the logits (:func:`low_precision_cross_entropy`).
    """
    if logits.dtype in LOW_PRECISION_DTYPES:
        nll = low_precision_cross_entropy(
            rearrange(logits, "b s v -> (b s) v"), rearrange(targets, "b s -> (b s)")
        )
        return -rearrange(nll, "(b s) -> b s", b=logits.shape[0])
    return torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


# --------------------------------------------------------------------------------------------
# The pooled summary
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PMIBin:
    """Inputs whose drop probability falls in ``[low, high)`` (the last bin includes 1).

    Attributes:
        low: lower edge of the drop probability.
        high: upper edge.
        mean_pmi: mean PMI of the inputs in the bin (nats).
        standard_error: standard error of that mean; None for a single input.
        count: number of inputs.
    """

    low: float
    high: float
    mean_pmi: float
    standard_error: float | None
    count: int


@dataclass(frozen=True)
class PMISummary:
    """PMI (next-word or sentence) pooled over the droppable inputs of a set of sentences.

    Attributes:
        spearman: rank correlation of PMI and drop probability; None when the drop
            probability does not depend on the input (uniform or no dropout) or is constant.
        spearman_ci: percentile bootstrap interval of ``spearman`` (sentences resampled), or
            None.
        mean_pmi_dropped: ``sum p_i PMI_i / sum p_i``, the expected PMI of a dropped input;
            None without drop probabilities.
        mean_pmi_kept: ``sum (1 - p_i) PMI_i / sum (1 - p_i)``, that of a kept input; None
            without drop probabilities.
        mean_pmi_uniform: the plain mean, what uniform dropout removes per dropped input.
        num_positions: droppable inputs pooled.
        num_sequences: sentences they come from.
        bins: mean PMI by drop-probability bin (empty without drop probabilities).
    """

    spearman: float | None
    spearman_ci: tuple[float, float] | None
    mean_pmi_dropped: float | None
    mean_pmi_kept: float | None
    mean_pmi_uniform: float
    num_positions: int
    num_sequences: int
    bins: tuple[PMIBin, ...]


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def summarize_pmi(
    pmi: Tensor,
    drop_probability: Tensor | None,
    groups: Tensor,
    *,
    correlate: bool = True,
    num_resamples: int = 1000,
    level: float = 0.95,
    num_bins: int = 10,
    generator: torch.Generator | None = None,
) -> PMISummary:
    """The numbers of ``analyze.py pmi RUN`` from pooled per-input values.

    Args:
        pmi: (N,) float finite PMI of each droppable input (the non-NaN entries of
            :func:`next_word_pmi`).
        drop_probability: (N,) float ``P(dropped)`` of the same inputs in [0, 1], or None (a
            model without word dropout).
        groups: (N,) int64 sentence of each input, ids in ``[0, G)``.
        correlate: False when the drop probability does not depend on the word (uniform
            dropout: ``K / n`` per sentence): ``spearman`` and its interval are then None.
        num_resamples: bootstrap resamples of the interval.
        level: coverage of the interval.
        num_bins: equal-width bins of the drop probability over [0, 1].
        generator: random generator of the bootstrap.

    Returns:
        A :class:`PMISummary`.

    Example:
        >>> summary = summarize_pmi(torch.tensor([0.5, 2.0, 0.1]), torch.tensor([0.2, 0.8, 0.0]),
        ...                         torch.tensor([0, 0, 1]), num_resamples=10)
        >>> round(summary.mean_pmi_dropped, 3), summary.num_positions, summary.num_sequences
        (1.7, 3, 2)
    """
    pmi = check_tensor("pmi", pmi, ndim=1, dtypes=FLOAT_DTYPES).double()
    groups = check_tensor("groups", groups, ndim=1, dtypes=INT_DTYPES)
    if groups.shape != pmi.shape:
        raise ValueError(f"groups must have shape ({pmi.shape[0]},), got {tuple(groups.shape)}")
    if pmi.numel() == 0:
        raise ValueError("pmi is empty: no droppable input to summarise")
    if not bool(torch.isfinite(pmi).all()):
        raise ValueError("pmi must be finite (keep the droppable inputs only)")
    num_sequences = int(torch.unique(groups).numel())
    uniform = float(pmi.mean())
    if drop_probability is None:
        return PMISummary(None, None, None, None, uniform, pmi.numel(), num_sequences, ())
    p = check_tensor("drop_probability", drop_probability, ndim=1, dtypes=FLOAT_DTYPES).double()
    if p.shape != pmi.shape:
        raise ValueError(f"drop_probability must have shape ({pmi.shape[0]},), got {p.shape}")
    if not bool(((p >= 0) & (p <= 1)).all()):
        raise ValueError("drop_probability must be in [0, 1]")
    dropped = float((p * pmi).sum() / p.sum()) if bool(p.sum() > 0) else math.nan
    kept = float(((1 - p) * pmi).sum() / (1 - p).sum()) if bool((1 - p).sum() > 0) else math.nan
    rho, interval = None, None
    if correlate and pmi.numel() >= 2:
        rho = _finite_or_none(float(spearman(pmi, p)))
        if rho is not None:
            low, high = bootstrap_ci(
                pmi, p, groups, num_resamples=num_resamples, level=level, generator=generator
            )
            interval = (low, high) if math.isfinite(low) else None
    return PMISummary(
        spearman=rho,
        spearman_ci=interval,
        mean_pmi_dropped=_finite_or_none(dropped),
        mean_pmi_kept=_finite_or_none(kept),
        mean_pmi_uniform=uniform,
        num_positions=pmi.numel(),
        num_sequences=num_sequences,
        bins=_bins(p, pmi, num_bins),
    )


def _bins(p: Tensor, pmi: Tensor, num_bins: int) -> tuple[PMIBin, ...]:
    index = (p * num_bins).floor().clamp(max=num_bins - 1).long()  # p = 1 in the last bin
    bins = []
    for b in index.unique().tolist():
        values = pmi[index == b]
        spread = float(values.std() / math.sqrt(values.numel())) if values.numel() > 1 else None
        bins.append(
            PMIBin(b / num_bins, (b + 1) / num_bins, float(values.mean()), spread, values.numel())
        )
    return tuple(bins)
