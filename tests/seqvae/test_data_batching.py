"""Data package: collating and batching sequences (bucketing, shuffling, sharding)."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from advmask.seqvae.data import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    Batch,
    collate,
    make_batches,
)

# --------------------------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------------------------
SEQUENCES = st.lists(st.lists(st.integers(3, 40), max_size=12), max_size=40)


def check_layout(batch: Batch, sequences: list[list[int]]) -> None:
    """Every row is [BOS, words, EOS, PAD..] of the sequence its index names."""
    rows = [sequences[i] for i in batch.indices.tolist()]
    assert batch.tokens.dtype == torch.int64 and batch.lengths.dtype == torch.int64
    assert batch.tokens.shape == (len(rows), max(map(len, rows)) + 2)
    assert batch.lengths.tolist() == [len(r) + 2 for r in rows]
    for row, words in zip(batch.tokens.tolist(), rows, strict=True):
        expected = [BOS_ID, *words, EOS_ID]
        assert row == expected + [PAD_ID] * (len(row) - len(expected))
    assert batch.num_sequences == len(rows)
    assert batch.num_words == sum(map(len, rows))
    assert batch.num_predictions == sum(len(r) + 1 for r in rows)


def test_collate_layout() -> None:
    batch = collate([[5, 6, 7], [], [8]])
    assert batch.tokens.tolist() == [[1, 5, 6, 7, 2], [1, 2, 0, 0, 0], [1, 8, 2, 0, 0]]
    assert batch.lengths.tolist() == [5, 2, 3]
    assert batch.indices.tolist() == [0, 1, 2]
    assert (batch.num_words, batch.num_predictions, batch.num_sequences) == (4, 7, 3)
    moved = batch.to("cpu")
    assert isinstance(moved, Batch) and torch.equal(moved.tokens, batch.tokens)


@given(
    sequences=SEQUENCES,
    batch_size=st.integers(1, 8),
    shuffle=st.booleans(),
    bucket=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_every_sequence_once_in_the_right_layout(sequences, batch_size, shuffle, bucket, seed):
    generator = torch.Generator().manual_seed(seed)
    batches = make_batches(
        sequences, batch_size, shuffle=shuffle, bucket=bucket, generator=generator
    )
    seen = [i for batch in batches for i in batch.indices.tolist()]
    assert sorted(seen) == list(range(len(sequences)))
    assert len(batches) == math.ceil(len(sequences) / batch_size)
    for batch in batches:
        assert 1 <= batch.num_sequences <= batch_size
        check_layout(batch, sequences)
    lengths = [len(s) for s in sequences]
    if not shuffle:
        if bucket:
            # Sorted buckets: concatenated batches are sorted by length, so no batch could
            # trade a sequence with another to reduce padding.
            ordered = [lengths[i] for i in seen]
            assert ordered == sorted(lengths)
        else:
            assert seen == list(range(len(sequences)))
    elif bucket:
        # Shuffling reorders batches and ties only; the batches are still the length buckets.
        buckets = sorted(tuple(sorted(lengths[i] for i in b.indices.tolist())) for b in batches)
        ranked = sorted(lengths)
        chunks = [tuple(ranked[k : k + batch_size]) for k in range(0, len(ranked), batch_size)]
        assert buckets == sorted(chunks)


@given(
    count=st.integers(0, 60),
    batch_size=st.integers(1, 6),
    world_size=st.integers(1, 4),
    shuffle=st.booleans(),
    drop_last=st.booleans(),
    seed=st.integers(0, 100),
)
def test_sharding_is_disjoint_and_complete(count, batch_size, world_size, shuffle, drop_last, seed):
    sequences = [[3 + i % 7] * (i % 5) for i in range(count)]
    per_rank = [
        make_batches(
            sequences,
            batch_size,
            shuffle=shuffle,
            generator=torch.Generator().manual_seed(seed),
            rank=rank,
            world_size=world_size,
            drop_last=drop_last,
        )
        for rank in range(world_size)
    ]
    indices = [[i for b in batches for i in b.indices.tolist()] for batches in per_rank]
    flat = [i for rank_indices in indices for i in rank_indices]
    assert len(flat) == len(set(flat))  # disjoint
    step = batch_size * world_size
    counts = [len(batches) for batches in per_rank]
    if drop_last:
        assert len(flat) == count // step * step
        assert all(b.num_sequences == batch_size for batches in per_rank for b in batches)
        assert len(set(counts)) == 1
    else:
        assert sorted(flat) == list(range(count))  # complete
        assert max(counts) - min(counts) <= 1
        if count % step == 0 or count % step >= world_size:
            assert len(set(counts)) == 1
    for batches in per_rank:
        for batch in batches:
            check_layout(batch, sequences)


def test_world_size_one_matches_the_unsharded_batches() -> None:
    sequences = [[3 + i] * (i % 6) for i in range(37)]
    plain = make_batches(sequences, 5, shuffle=True, generator=torch.Generator().manual_seed(3))
    sharded = make_batches(
        sequences, 5, shuffle=True, generator=torch.Generator().manual_seed(3), world_size=1
    )
    assert all(torch.equal(a.tokens, b.tokens) for a, b in zip(plain, sharded, strict=True))


def test_shuffle_is_deterministic_given_the_seed_and_varies_with_it() -> None:
    rng = torch.Generator().manual_seed(0)
    sequences = [[4] * int(n) for n in torch.randint(0, 20, (300,), generator=rng)]

    def order(seed: int) -> list[int]:
        batches = make_batches(
            sequences, 8, shuffle=True, generator=torch.Generator().manual_seed(seed)
        )
        return [i for b in batches for i in b.indices.tolist()]

    assert order(1) == order(1)
    assert order(1) != order(2)
    # Batch order changes, not only ties: the first batch's lengths differ across seeds.
    first_batches = [
        make_batches(sequences, 8, shuffle=True, generator=torch.Generator().manual_seed(s))[0]
        for s in range(5)
    ]
    assert len({int(batch.lengths[0]) for batch in first_batches}) > 1


def test_bucketing_reduces_padding() -> None:
    rng = torch.Generator().manual_seed(0)
    sequences = [[4] * int(n) for n in torch.randint(0, 30, (256,), generator=rng)]

    def padding(batches: list[Batch]) -> int:
        return sum(b.tokens.numel() - int(b.lengths.sum()) for b in batches)

    gen = torch.Generator().manual_seed(1)
    bucketed = padding(make_batches(sequences, 16, shuffle=True, generator=gen))
    unsorted = padding(make_batches(sequences, 16, bucket=False))
    assert bucketed < unsorted / 5


def test_empty_input_gives_no_batches() -> None:
    assert make_batches([], 4) == []
    assert make_batches([[4]], 4, rank=1, world_size=2) == []


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda: make_batches([[4]], 0), ValueError, ["batch_size", "0"]),
        (lambda: make_batches([[4]], True), TypeError, ["batch_size", "True"]),
        (lambda: make_batches([[4]], 2, rank=2, world_size=2), ValueError, ["rank", "2"]),
        (lambda: make_batches([[4]], 2, world_size=0), ValueError, ["world_size", "0"]),
        (lambda: make_batches([[4]], 2, generator=3), TypeError, ["generator", "3"]),
        (lambda: make_batches([[4], [5, -1]], 2), ValueError, ["sequences[1][1]", "-1"]),
        (lambda: collate([[], [4, 4, BOS_ID]]), ValueError, ["sequences[1][2]", "1"]),
        (lambda: collate([[4], [4.5]]), TypeError, ["4.5"]),
        (lambda: collate([[4], "ab"]), TypeError, ["sequences[1]", "str"]),
        (lambda: collate(torch.ones(2, 2)), TypeError, ["Tensor"]),
        (lambda: collate([]), ValueError, ["empty"]),
    ],
)
def test_batching_rejects_bad_input(call, error, words) -> None:
    with pytest.raises(error) as info:
        call()
    assert all(word in str(info.value) for word in words), str(info.value)
