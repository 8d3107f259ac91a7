"""What gets dropped, aggregated over a corpus: drop probability by word frequency and position.

Paper Figure 4a. Frequency needs no extra data: vocabulary ids after the specials are ordered
by training-set count (:class:`~advmask.seqvae.data.Vocabulary`), so ``id - 4`` is a word's
frequency rank. Each group also reports the probability uniform word dropout would give the
same tokens (the mean of ``K_b / n_b``), because sentence length alone moves the drop
probability: a group of tokens from short sentences has a different baseline than one from long
sentences.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import torch
from torch import Tensor

from advmask.seqvae.analysis.saliency import Saliency
from advmask.seqvae.data.vocab import SPECIALS, UNK_ID

FREQUENCY_EDGES: tuple[int, ...] = (10, 100, 1000, 10000)
"""Default upper rank bounds of the frequency groups (top 10 words, 11-100, 101-1000, ...)."""


@dataclass(frozen=True)
class DropProfile:
    """Mean drop probability of the tokens in each group (only non-empty groups are kept).

    Attributes:
        title: what the groups are (``"word frequency rank"``, ``"position in sentence"``).
        labels: one label per group.
        probability: (G,) float64 mean ``P(dropped)`` of the group's tokens.
        uniform: (G,) float64 mean ``K_b / n_b`` of the same tokens (uniform dropout).
        count: (G,) int64 tokens per group.
    """

    title: str
    labels: tuple[str, ...]
    probability: Tensor
    uniform: Tensor
    count: Tensor

    def records(self) -> list[dict[str, Any]]:
        """Each group as ``dropped.json`` holds it: ``group`` (its label), ``probability``,
        ``uniform`` and ``count``."""
        columns = (self.probability.tolist(), self.uniform.tolist(), self.count.tolist())
        return [
            {"group": label, "probability": p, "uniform": u, "count": n}
            for label, p, u, n in zip(self.labels, *columns, strict=True)
        ]


def _records(saliencies: Sequence[Saliency]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Flat (N,) probability, uniform baseline, token id and 1-based position of every word."""
    if not saliencies:
        raise ValueError("saliencies must hold at least one Saliency, got an empty sequence")
    parts: list[tuple[Tensor, ...]] = []
    for saliency in saliencies:
        eligible = saliency.eligible
        positions = torch.arange(eligible.shape[1], device=eligible.device).expand_as(eligible)
        parts.append(
            (
                saliency.probability[eligible].double().cpu(),
                saliency.uniform[eligible].double().cpu(),
                saliency.tokens[eligible].cpu(),
                positions[eligible].cpu(),  # BOS is position 0, so w_1 is 1
            )
        )
    return tuple(torch.cat(column) for column in zip(*parts, strict=True))  # type: ignore[return-value]


def _profile(
    title: str, labels: Sequence[str], group: Tensor, probability: Tensor, uniform: Tensor
) -> DropProfile:
    num_groups = len(labels)
    count = torch.bincount(group, minlength=num_groups)
    denominator = count.clamp_min(1).double()
    mean = torch.bincount(group, weights=probability, minlength=num_groups) / denominator
    baseline = torch.bincount(group, weights=uniform, minlength=num_groups) / denominator
    keep = count > 0
    return DropProfile(
        title=title,
        labels=tuple(label for label, k in zip(labels, keep.tolist(), strict=True) if k),
        probability=mean[keep],
        uniform=baseline[keep],
        count=count[keep],
    )


def drop_by_frequency(
    saliencies: Sequence[Saliency], edges: Sequence[int] = FREQUENCY_EDGES
) -> DropProfile:
    """Mean ``P(dropped)`` by frequency-rank group of the word, ``<unk>`` on its own.

    Args:
        saliencies: results of :func:`~advmask.seqvae.analysis.token_saliency` (any batch sizes).
        edges: increasing upper bounds of the rank groups: ranks ``1..edges[0]``,
            ``edges[0]+1..edges[1]``, ..., and one last group above ``edges[-1]``.

    Returns:
        A :class:`DropProfile`; groups with no token are left out.

    Example:
        >>> from advmask.seqvae.analysis.saliency import Saliency
        >>> tokens = torch.tensor([[1, 4, 20, 3, 2]])
        >>> eligible = torch.tensor([[False, True, True, True, False]])
        >>> s = Saliency(tokens, torch.tensor([5]), torch.tensor([[0, 0.25, 0.5, 0.75, 0]]),
        ...              eligible, torch.tensor([1]), eligible, 0)
        >>> profile = drop_by_frequency([s])
        >>> profile.labels, profile.probability.tolist()
        (('1-10', '11-100', '<unk>'), [0.25, 0.5, 0.75])
    """
    edges = [int(edge) for edge in edges]
    if not edges or any(b <= a for a, b in pairwise(edges)) or edges[0] < 1:
        raise ValueError(f"edges must be increasing positive ints, got {edges!r}")
    probability, uniform, token, _ = _records(saliencies)
    rank = token - len(SPECIALS)  # 0-based frequency rank of the word
    labels = [f"{lo + 1}-{hi}" for lo, hi in zip([0, *edges], edges, strict=False)]
    labels += [f">{edges[-1]}", SPECIALS[UNK_ID]]
    group = torch.bucketize(rank, torch.tensor(edges), right=True)
    group = torch.where(token == UNK_ID, len(labels) - 1, group)
    return _profile("word frequency rank", labels, group, probability, uniform)


def drop_by_position(saliencies: Sequence[Saliency], max_position: int = 20) -> DropProfile:
    """Mean ``P(dropped)`` by the word's 1-based position in its sentence.

    Args:
        saliencies: results of :func:`~advmask.seqvae.analysis.token_saliency`.
        max_position: positions from this one on share the last group (``"20+"``).

    Returns:
        A :class:`DropProfile`; groups with no token are left out.
    """
    if isinstance(max_position, bool) or not isinstance(max_position, int) or max_position < 1:
        raise ValueError(f"max_position must be an int >= 1, got {max_position!r}")
    probability, uniform, _, position = _records(saliencies)
    labels = [str(p) for p in range(1, max_position)] + [f"{max_position}+"]
    group = position.clamp(max=max_position) - 1
    return _profile("position in sentence", labels, group, probability, uniform)
