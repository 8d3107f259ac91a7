"""Padded batches ``[BOS, w_1..w_L, EOS, PAD..]``, bucketed by length and sharded across ranks.

A sequence of ``L`` words becomes the row ``[BOS, w_1..w_L, EOS, PAD..]`` with length
``L + 2``. The decoder reads ``tokens[:, :-1]`` and predicts ``tokens[:, 1:]``, i.e. ``L + 1``
predictions per sequence (the words and EOS): the perplexity denominator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import chain

import torch
from torch import Tensor

from advmask.checks import check_int
from advmask.seqvae.data.vocab import BOS_ID, EOS_ID, PAD_ID
from advmask.training.distributed import block_range

# Word ids below this are the markers PAD/BOS/EOS; a "word" with such an id almost always means
# sequences that already carry BOS/EOS were passed in, which would double them.
_FIRST_WORD_ID = max(PAD_ID, BOS_ID, EOS_ID) + 1


@dataclass(frozen=True)
class Batch:
    """A padded batch of sequences.

    Attributes:
        tokens: (B, T) int64 ``[BOS, w_1..w_L, EOS, PAD..]`` per row, with
            ``T = max_b L_b + 2``.
        lengths: (B,) int64 non-padding tokens per row, ``L_b + 2`` (so at least 2).
        indices: (B,) int64 position of each row's sequence in the list given to
            :func:`make_batches` / :func:`collate`, so per-sequence results of bucketed or
            shuffled batches can be put back in corpus order; ``None`` if unknown.
    """

    tokens: Tensor
    lengths: Tensor
    indices: Tensor | None = None

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """The same batch with ``tokens`` and ``lengths`` on ``device`` (indices stay put)."""
        return replace(
            self,
            tokens=self.tokens.to(device, non_blocking=non_blocking),
            lengths=self.lengths.to(device, non_blocking=non_blocking),
        )

    @property
    def num_sequences(self) -> int:
        """B, the number of rows."""
        return self.tokens.shape[0]

    @property
    def num_words(self) -> int:
        """Σ_b L_b, the words without BOS and EOS (synchronises with the device)."""
        return int((self.lengths - 2).sum())

    @property
    def num_predictions(self) -> int:
        """Words plus one EOS per sequence, ``Σ_b (L_b + 1)``; the perplexity denominator."""
        return self.num_words + self.num_sequences


def _flatten(sequences: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor, Tensor]:
    """Validate ``sequences`` and pack them as (flat ids, offsets (N,), lengths (N,))."""
    if isinstance(sequences, (str, bytes, Tensor)) or not isinstance(sequences, Sequence):
        raise TypeError(
            f"sequences must be a list of lists of int ids, got {type(sequences).__name__}"
        )
    for position, sequence in enumerate(sequences):
        if isinstance(sequence, (str, bytes)) or not isinstance(sequence, Sequence):
            raise TypeError(
                f"sequences[{position}] must be a list of int ids, got {type(sequence).__name__}"
            )
    lengths = torch.tensor([len(sequence) for sequence in sequences], dtype=torch.int64)
    flat_list = list(chain.from_iterable(sequences))
    if flat_list:
        # One C-level conversion instead of a Python check per id; a float or a bool among the
        # ids changes the inferred dtype, which is caught below.
        try:
            flat = torch.tensor(flat_list)
        except (TypeError, ValueError, RuntimeError) as error:
            raise TypeError(f"sequences must hold int ids only: {error}") from error
        if flat.dtype != torch.int64:
            bad = next(x for x in flat_list if isinstance(x, bool) or not isinstance(x, int))
            raise TypeError(f"sequences must hold int ids only, got {bad!r}")
    else:
        flat = torch.zeros(0, dtype=torch.int64)
    offsets = torch.cumsum(lengths, 0) - lengths
    if flat.numel() and int(flat.min()) < _FIRST_WORD_ID:
        where = int(torch.nonzero(flat < _FIRST_WORD_ID)[0, 0])
        # The last row starting at or before ``where``; it cannot be empty, since an empty row
        # shares its offset with the row after it.
        row = int(torch.searchsorted(offsets, torch.tensor(where), right=True)) - 1
        raise ValueError(
            f"sequences[{row}][{where - int(offsets[row])}] is {int(flat[where])}: word ids "
            f"must be >= {_FIRST_WORD_ID} (ids {PAD_ID}, {BOS_ID}, {EOS_ID} are PAD, BOS, EOS, "
            "which batching adds itself)"
        )
    return flat, offsets, lengths


def _gather(flat: Tensor, offsets: Tensor, lengths: Tensor, rows: Tensor) -> Batch:
    """Batch of the sequences ``rows`` (indices into the packed corpus), without loops."""
    word_lengths = lengths[rows]
    max_words = int(word_lengths.max())
    steps = torch.arange(max_words, dtype=torch.int64)
    is_word = steps[None, :] < word_lengths[:, None]  # (B, max_words)
    # Clamp keeps out-of-row reads inside ``flat``; those positions are replaced by PAD below.
    source = (offsets[rows][:, None] + steps[None, :]).clamp(max=max(flat.numel() - 1, 0))
    words = flat[source] if flat.numel() else torch.zeros_like(source)
    tokens = torch.full((rows.numel(), max_words + 2), PAD_ID, dtype=torch.int64)
    tokens[:, 0] = BOS_ID
    tokens[:, 1 : max_words + 1] = torch.where(is_word, words, PAD_ID)
    tokens[torch.arange(rows.numel()), word_lengths + 1] = EOS_ID
    return Batch(tokens=tokens, lengths=word_lengths + 2, indices=rows.clone())


def collate(sequences: Sequence[Sequence[int]]) -> Batch:
    """Pad word-id sequences into one :class:`Batch`, in the given order.

    Args:
        sequences: B >= 1 lists of word ids (no BOS/EOS; each id >= 3); empty lists allowed.

    Returns:
        The batch; ``indices`` is ``0..B-1``.

    Example:
        >>> batch = collate([[5, 6, 7], [8]])
        >>> batch.tokens.tolist(), batch.lengths.tolist()
        ([[1, 5, 6, 7, 2], [1, 8, 2, 0, 0]], [5, 3])
        >>> batch.num_words, batch.num_predictions
        (4, 6)
    """
    flat, offsets, lengths = _flatten(sequences)
    if lengths.numel() == 0:
        raise ValueError("sequences is empty: a batch needs at least one sequence")
    return _gather(flat, offsets, lengths, torch.arange(lengths.numel()))


def make_batches(
    sequences: Sequence[Sequence[int]],
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    bucket: bool = True,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = False,
) -> list[Batch]:
    """Split a corpus into padded batches for one rank.

    Order. The sequences are first put in an order: with ``shuffle`` a random permutation
    (from ``generator``), otherwise the given order; with ``bucket`` that order is then stably
    sorted by length, so each batch holds sequences of nearly equal length (little padding) and
    shuffling only decides ties. The ordered list is cut into *steps* of
    ``world_size * batch_size`` consecutive sequences and each step into ``world_size``
    consecutive batches; rank ``r`` takes the ``r``-th batch of every step. With ``shuffle``
    the order of the steps is permuted too (the same permutation on every rank).

    Sharding rule. The ranks' batches are disjoint. With ``drop_last=False`` every sequence is
    in exactly one rank's batches: the last, incomplete step is split as evenly as possible
    (sizes differ by at most one), so every rank gets the same number of batches unless that
    step has fewer sequences than ranks, when ranks ``>=`` its size get one batch fewer. With
    ``drop_last=True`` the incomplete step is dropped, so all batches have exactly
    ``batch_size`` rows and every rank the same number of batches. For DDP, pass each rank a
    generator with the same seed.

    Args:
        sequences: N lists of word ids (no BOS/EOS; each id >= 3); empty lists allowed.
        batch_size: rows per batch (>= 1); the batches of an incomplete last step are smaller.
        shuffle: randomise the order of the batches and the tie order within length buckets.
        generator: source of the permutations; ``None`` uses torch's global generator.
        bucket: sort by length before cutting into batches.
        rank: this process's rank in ``[0, world_size)``.
        world_size: number of processes sharing the corpus (>= 1).
        drop_last: drop the incomplete last step instead of splitting it.

    Returns:
        This rank's batches on the CPU (``[]`` when there is nothing for it); each
        :class:`Batch` records the source positions in ``indices``.

    Example:
        >>> batches = make_batches([[4], [4, 5, 6], [], [4, 5]], batch_size=2)
        >>> [b.lengths.tolist() for b in batches], [b.indices.tolist() for b in batches]
        ([[2, 3], [4, 5]], [[2, 0], [3, 1]])
    """
    batch_size = check_int(batch_size, "batch_size", 1)
    world_size = check_int(world_size, "world_size", 1)
    rank = check_int(rank, "rank", 0)
    if rank >= world_size:
        raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {generator!r}")
    flat, offsets, lengths = _flatten(sequences)
    count = lengths.numel()
    order = torch.randperm(count, generator=generator) if shuffle else torch.arange(count)
    if bucket:
        # Stable, so that without shuffling equal lengths keep corpus order (reproducible).
        order = order[torch.sort(lengths[order], stable=True).indices]

    step_size = batch_size * world_size
    steps = list(range(0, count, step_size))  # the first position of each step
    if drop_last and count % step_size:
        steps.pop()
    if shuffle and steps:
        steps = [steps[i] for i in torch.randperm(len(steps), generator=generator).tolist()]
    batches = []
    for first in steps:
        start, stop = block_range(min(step_size, count - first), rank, world_size)
        if stop > start:
            batches.append(_gather(flat, offsets, lengths, order[first + start : first + stop]))
    return batches


def epoch_batches(
    sequences: Sequence[Sequence[int]], batch_size: int, seed: int, epoch: int, min_rows: int = 1
) -> list[Batch]:
    """The shuffled, length-bucketed training batches of one epoch, the same on every call.

    The order of epoch ``e`` depends only on ``(seed, e)``, so a resumed run sees the batches
    it would have seen, and every rank of a distributed run the same global batches (each
    trains on its shard of every batch, see :func:`advmask.training.distributed.shard_batch`).

    Args:
        sequences: N lists of word ids, as for :func:`make_batches`.
        batch_size: rows per (global) batch.
        seed: the run's seed.
        epoch: the epoch, from 0.
        min_rows: a last batch with fewer rows is left out (the number of ranks: a rank cannot
            train on none); at most ``min_rows - 1`` sequences per epoch.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    batches = make_batches(sequences, batch_size, shuffle=True, generator=generator)
    return [batch for batch in batches if batch.num_sequences >= min_rows]
