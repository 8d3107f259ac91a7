"""Data package: vocabulary, corpus files, batching, sentencepiece and the synthetic corpus."""

import json
import math
import re
from collections import Counter
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from advmask.seqvae.data import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    Batch,
    Corpus,
    SyntheticCorpus,
    Vocabulary,
    collate,
    load_corpus,
    make_batches,
    make_synthetic_corpus,
)
from advmask.seqvae.data import sentencepiece as spm_module
from advmask.seqvae.data.synthetic import STYLES, TOPICS
from advmask.seqvae.data.vocab import SPECIALS

PTB = Path(__file__).resolve().parents[3] / "shared" / "data" / "ptb"


def write_corpus(folder: Path, train: str, valid: str = "a b\n", test: str = "b c\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, text in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"{split}.txt").write_text(text, encoding="utf-8")
    return folder


# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------
def test_specials_have_fixed_ids() -> None:
    assert (PAD_ID, BOS_ID, EOS_ID, UNK_ID) == (0, 1, 2, 3)
    assert SPECIALS == ("<pad>", "<bos>", "<eos>", "<unk>")
    vocab = Vocabulary.build([["x"]])
    assert vocab.decode([PAD_ID, BOS_ID, EOS_ID, UNK_ID]) == list(SPECIALS)


def test_build_orders_by_count_then_token() -> None:
    vocab = Vocabulary.build([["b", "a", "c", "b"], ["c", "d", "b"], ["a", "c"]])
    # counts: b 3, c 3, a 2, d 1 -> ties broken alphabetically.
    assert vocab.tokens[4:] == ("b", "c", "a", "d")
    assert len(vocab) == 8


def test_unknown_aliases_and_missing_words_map_to_unk() -> None:
    vocab = Vocabulary.build([["a", "<unk>", "_UNK", "<unk>", "b"]])
    # The corpus's unknown tokens are UNK, not words of their own.
    assert len(vocab) == 6
    assert "<unk>" not in vocab.tokens[4:] and "_UNK" not in vocab.tokens
    assert vocab.encode(["a", "<unk>", "_UNK", "zebra", "b"]) == [4, UNK_ID, UNK_ID, UNK_ID, 5]


def test_encode_decode_round_trip() -> None:
    sentences = [["the", "cat", "sat"], ["the", "dog", "ran", "fast"]]
    vocab = Vocabulary.build(sentences)
    for words in sentences:
        ids = vocab.encode(words)
        assert all(i >= 4 for i in ids)
        assert vocab.decode(ids) == words
    assert vocab.token_to_id("dog") == vocab.encode(["dog"])[0]
    assert "cat" in vocab and "zebra" not in vocab and "<eos>" not in vocab


def test_max_size_and_min_count() -> None:
    sentences = [["a"] * 5 + ["b"] * 4 + ["c"] * 2 + ["d"]]
    assert Vocabulary.build(sentences, max_size=2).tokens[4:] == ("a", "b")
    assert Vocabulary.build(sentences, max_size=0).tokens == SPECIALS
    assert Vocabulary.build(sentences, min_count=2).tokens[4:] == ("a", "b", "c")
    assert Vocabulary.build(sentences, max_size=1, min_count=5).tokens[4:] == ("a",)
    vocab = Vocabulary.build(sentences, max_size=2)
    assert vocab.encode(["c", "d"]) == [UNK_ID, UNK_ID]


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"max_size": -1}, ValueError, ["max_size", "-1"]),
        ({"min_count": 0}, ValueError, ["min_count", "0"]),
        ({"min_count": 1.5}, ValueError, ["min_count", "1.5"]),
    ],
)
def test_build_rejects_bad_arguments(kwargs, error, words) -> None:
    with pytest.raises(error) as info:
        Vocabulary.build([["a"]], **kwargs)
    assert all(word in str(info.value) for word in words)


def test_reserved_markers_are_not_words() -> None:
    with pytest.raises(ValueError, match="'<eos>'"):
        Vocabulary.build([["a", "<eos>"]])
    vocab = Vocabulary.build([["a"]])
    with pytest.raises(ValueError, match=r"'<bos>' at position 1"):
        vocab.encode(["a", "<bos>"])
    with pytest.raises(TypeError, match="str"):
        vocab.encode("a b")


def test_constructor_validates_tokens() -> None:
    with pytest.raises(ValueError, match="special tokens"):
        Vocabulary(["a", "<pad>", "<bos>", "<eos>", "<unk>"])
    with pytest.raises(ValueError, match=r"'a' appears twice"):
        Vocabulary([*SPECIALS, "a", "a"])
    with pytest.raises(ValueError, match="'_UNK'"):
        Vocabulary([*SPECIALS, "_UNK"])


def test_decode_names_an_out_of_range_id() -> None:
    vocab = Vocabulary.build([["a"]])
    with pytest.raises(ValueError, match=r"id 5 at position 1"):
        vocab.decode([4, 5])


def test_dict_and_file_round_trip(tmp_path) -> None:
    vocab = Vocabulary.build([["x", "y", "x", "<unk>"], ["z"]])
    assert Vocabulary.from_dict(json.loads(json.dumps(vocab.to_dict()))) == vocab
    path = vocab.save(tmp_path / "run" / "vocab.json")
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["vocab.json"]  # no temporary left over
    loaded = Vocabulary.load(path)
    assert loaded == vocab and loaded.tokens == vocab.tokens
    assert loaded.encode(["z", "_UNK"]) == vocab.encode(["z", "_UNK"])


def test_load_errors_name_the_path(tmp_path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        Vocabulary.load(missing)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "other", "tokens": []}))
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        Vocabulary.load(bad)
    with pytest.raises(ValueError, match="version"):
        Vocabulary.from_dict({"format": "advmask.vocabulary", "version": 99, "tokens": []})


# --------------------------------------------------------------------------------------------
# Corpus files
# --------------------------------------------------------------------------------------------
def test_load_corpus_encodes_words_with_the_training_vocabulary(tmp_path) -> None:
    folder = write_corpus(
        tmp_path / "data", "a b a\nc <unk> a\n", valid="a zebra\n", test="_UNK b\nc\n"
    )
    before = sorted(p.name for p in folder.iterdir())
    corpus = load_corpus(folder)
    assert isinstance(corpus, Corpus) and corpus.directory == folder
    assert corpus.vocab.tokens[4:] == ("a", "b", "c")  # from train only; "zebra" unknown
    assert corpus.splits == {
        "train": [[4, 5, 4], [6, UNK_ID, 4]],
        "valid": [[4, UNK_ID]],
        "test": [[UNK_ID, 5], [6]],
    }
    assert corpus.word_counts == {"train": 6, "valid": 2, "test": 3}
    assert corpus.ppl_denominator("test") == 3 + 2
    assert corpus.tokenizer == "words" and corpus.sentencepiece_model is None
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written there


def test_byte_order_mark_is_dropped(tmp_path) -> None:
    folder = write_corpus(tmp_path / "data", "\ufeffa b\nb a\n", valid="\ufeffb\n", test="a\n")
    corpus = load_corpus(folder)
    assert corpus.vocab.tokens[4:] == ("a", "b")
    assert corpus.splits["valid"] == [[5]] and corpus.word_counts["train"] == 4


def test_max_length_refuses_or_truncates_long_lines(tmp_path) -> None:
    folder = write_corpus(tmp_path / "data", "a b\na b c d e\n", valid="a\n", test="a b c\n")
    with pytest.raises(ValueError, match=r"train\.txt:2: 5 words, more than max_length=3"):
        load_corpus(folder, max_length=3)
    corpus = load_corpus(folder, max_length=3, truncate_long=True)
    assert corpus.splits["train"][1] == [4, 5, 6] and corpus.truncated["train"] == 1
    assert corpus.word_counts["train"] == 2 + 3  # the words that remain
    assert load_corpus(folder, max_length=5).truncated == {"train": 0, "valid": 0, "test": 0}
    with pytest.raises(ValueError, match="max_length must be None or an int >= 1, got 0"):
        load_corpus(folder, max_length=0)


def test_fingerprint_identifies_the_encoded_splits() -> None:
    from advmask.seqvae.data import fingerprint

    splits = {"train": [[4, 5], [6]], "valid": [[4]]}
    assert fingerprint(splits) == fingerprint({"valid": [[4]], "train": [[4, 5], [6]]})
    assert fingerprint(splits) != fingerprint({"train": [[4, 5, 6]], "valid": [[4]]})
    assert fingerprint(splits) != fingerprint({"train": [[4, 5], [6]], "test": [[4]]})
    assert fingerprint(splits) != fingerprint({"train": [[4, 5], [7]], "valid": [[4]]})


def test_load_corpus_line_endings_and_options(tmp_path) -> None:
    # CRLF endings, no final newline, extra spaces (PTB lines start and end with a space).
    folder = write_corpus(tmp_path / "d", " a b \r\na c\r\na", valid="a", test="b  c \n")
    corpus = load_corpus(folder, max_size=1)
    assert corpus.splits["train"] == [[4, UNK_ID], [4, UNK_ID], [4]]
    assert corpus.splits["test"] == [[UNK_ID, UNK_ID]]
    assert load_corpus(folder, min_count=2).vocab.tokens[4:] == ("a",)


def test_missing_folder_and_file_are_named(tmp_path) -> None:
    missing = tmp_path / "absent"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        load_corpus(missing)
    folder = write_corpus(tmp_path / "d", "a\n")
    (folder / "valid.txt").unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(folder / "valid.txt"))):
        load_corpus(folder)


def test_empty_split_is_named(tmp_path) -> None:
    folder = write_corpus(tmp_path / "d", "a\n", test="")
    with pytest.raises(ValueError, match=re.escape(f"{folder / 'test.txt'} is empty")):
        load_corpus(folder)


def test_bad_utf8_names_file_and_line(tmp_path) -> None:
    folder = write_corpus(tmp_path / "d", "a\n")
    (folder / "valid.txt").write_bytes(b"a b\nc d\ne \xff f\ng\n")
    with pytest.raises(ValueError, match=re.escape(f"{folder / 'valid.txt'}:3:")) as info:
        load_corpus(folder)
    assert "UTF-8" in str(info.value)


@pytest.mark.parametrize("blank", ["", "   ", "\t"])
def test_blank_line_names_file_and_line(tmp_path, blank) -> None:
    folder = write_corpus(tmp_path / "d", f"a b\nc\n{blank}\nd\n")
    with pytest.raises(ValueError, match=re.escape(f"{folder / 'train.txt'}:3: blank line")):
        load_corpus(folder)


def test_reserved_marker_in_text_names_file_and_line(tmp_path) -> None:
    folder = write_corpus(tmp_path / "d", "a b\nc <eos>\n")
    with pytest.raises(ValueError, match=re.escape(f"{folder / 'train.txt'}:2:")):
        load_corpus(folder)
    folder = write_corpus(tmp_path / "e", "a b\n", test="a\na\nb <pad>\n")
    with pytest.raises(ValueError, match=re.escape(f"{folder / 'test.txt'}:3:")):
        load_corpus(folder)


def test_load_corpus_rejects_bad_arguments(tmp_path) -> None:
    folder = write_corpus(tmp_path / "d", "a\n")
    with pytest.raises(ValueError, match="'chars'"):
        load_corpus(folder, tokenizer="chars")
    with pytest.raises(ValueError, match="cache_dir"):
        load_corpus(folder, tokenizer="sentencepiece")


@pytest.mark.skipif(not PTB.is_dir(), reason="PTB not available in ../shared/data/ptb")
def test_ptb_counts_match_the_published_files() -> None:
    corpus = load_corpus(PTB)
    assert {split: len(s) for split, s in corpus.splits.items()} == {
        "train": 42068,
        "valid": 3370,
        "test": 3761,
    }
    assert corpus.word_counts["test"] == 78669
    assert sum(map(len, corpus.splits["test"])) == 78669
    assert corpus.ppl_denominator("test") == 82430
    # 9,999 word types (including <unk>) + EOS = the 10k PTB vocabulary, plus PAD and BOS.
    assert len(corpus.vocab) == 10002
    batches = make_batches(corpus.splits["test"], 32)
    assert sum(batch.num_predictions for batch in batches) == 82430


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


# --------------------------------------------------------------------------------------------
# Sentencepiece
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_text_corpus(tmp_path_factory) -> Path:
    synthetic = make_synthetic_corpus(seed=5, num_train=300, num_valid=20, num_test=20)
    folder = synthetic.write(tmp_path_factory.mktemp("spm") / "data")
    with (folder / "test.txt").open("a", encoding="utf-8") as file:
        file.write("the <unk> zzqx _UNK\n")
    return folder


def test_sentencepiece_is_trained_cached_and_reused(small_text_corpus, tmp_path, monkeypatch):
    folder = small_text_corpus
    before = sorted(p.name for p in folder.iterdir())
    options = {"tokenizer": "sentencepiece", "sentencepiece_vocab_size": 50}
    corpus = load_corpus(folder, cache_dir=tmp_path / "cache", **options)
    assert sorted(p.name for p in folder.iterdir()) == before  # data folder untouched
    assert corpus.tokenizer == "sentencepiece"
    assert corpus.sentencepiece_model.parent == tmp_path / "cache"
    assert corpus.sentencepiece_model.is_file()
    assert len(corpus.vocab) <= 50 + 4
    # Pieces spell the original words back (no unknown characters in the synthetic lines).
    words = (folder / "valid.txt").read_text().splitlines()[0].split()
    pieces = corpus.vocab.decode(corpus.splits["valid"][0])
    assert "".join(pieces).replace("▁", " ").split() == words
    # The corpus's own unknown tokens (and unseen characters) become UNK.
    assert UNK_ID in corpus.splits["test"][-1]
    assert corpus.word_counts["test"] == sum(
        len(line.split()) for line in (folder / "test.txt").read_text().splitlines()
    )

    def refuse(*args, **kwargs):
        raise AssertionError("the cached model should have been reused")

    monkeypatch.setattr(spm_module.spm.SentencePieceTrainer, "train", refuse)
    again = load_corpus(folder, cache_dir=tmp_path / "cache", **options)
    assert again.splits == corpus.splits and again.vocab == corpus.vocab
    assert again.sentencepiece_model == corpus.sentencepiece_model
    with pytest.raises(AssertionError, match="reused"):  # other options: a new model
        load_corpus(folder, cache_dir=tmp_path / "cache", **options, sentencepiece_model_type="bpe")


def test_sentencepiece_bpe_and_argument_checks(small_text_corpus, tmp_path) -> None:
    corpus = load_corpus(
        small_text_corpus,
        tokenizer="sentencepiece",
        sentencepiece_vocab_size=60,
        sentencepiece_model_type="bpe",
        cache_dir=tmp_path,
    )
    assert "bpe" in corpus.sentencepiece_model.name
    assert len(corpus.splits["train"]) == 300
    with pytest.raises(ValueError, match="'wordpiece'"):
        load_corpus(
            small_text_corpus,
            tokenizer="sentencepiece",
            sentencepiece_model_type="wordpiece",
            cache_dir=tmp_path,
        )
    with pytest.raises(ValueError, match="sentencepiece_vocab_size"):
        load_corpus(
            small_text_corpus,
            tokenizer="sentencepiece",
            sentencepiece_vocab_size=1,
            cache_dir=tmp_path,
        )


# --------------------------------------------------------------------------------------------
# Synthetic corpus
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synthetic() -> SyntheticCorpus:
    return make_synthetic_corpus(seed=11, num_train=2000, num_valid=100, num_test=500)


def test_synthetic_is_deterministic_and_aligned(synthetic) -> None:
    again = make_synthetic_corpus(seed=11, num_train=2000, num_valid=100, num_test=500)
    assert again.splits == synthetic.splits
    other = make_synthetic_corpus(seed=12, num_train=2000, num_valid=100, num_test=500)
    assert other.splits["train"] != synthetic.splits["train"]
    sizes = {"train": 2000, "valid": 100, "test": 500}
    for split, size in sizes.items():
        assert len(synthetic.splits[split]) == size
        factors = synthetic.factors[split]
        assert set(factors) == {"topic", "style"}
        for name, values in factors.items():
            assert values.shape == (size,) and values.dtype == torch.int64
            assert torch.equal(values, again.factors[split][name])
            assert int(values.min()) >= 0
            assert int(values.max()) < len(synthetic.factor_values[name])
    assert synthetic.factor_values == {"topic": TOPICS, "style": STYLES}


def test_synthetic_shape(synthetic) -> None:
    words = Counter(w for sentence in synthetic.splits["train"] for w in sentence)
    assert 150 <= len(words) <= 300
    lengths = torch.tensor([len(s) for s in synthetic.splits["train"]])
    assert int(lengths.min()) >= 5
    assert int(lengths.max()) <= 24
    assert len(set(lengths.tolist())) >= 12  # varied lengths
    # Style shapes the length: terse < casual < formal on average.
    style = synthetic.factors["train"]["style"]
    means = [lengths[style == s].double().mean() for s in range(len(STYLES))]
    assert means[STYLES.index("terse")] < means[STYLES.index("casual")]
    assert means[STYLES.index("casual")] < means[STYLES.index("formal")]


def naive_bayes_accuracy(corpus: SyntheticCorpus, name: str, prefix: int | None = None) -> float:
    """Test accuracy of a multinomial naive Bayes on (the first ``prefix``) words."""
    classes = len(corpus.factor_values[name])
    counts = [Counter() for _ in range(classes)]
    for sentence, label in zip(
        corpus.splits["train"], corpus.factors["train"][name].tolist(), strict=True
    ):
        counts[label].update(sentence[:prefix])
    vocabulary = set().union(*counts)
    totals = [sum(c.values()) for c in counts]
    correct = 0
    for sentence, label in zip(
        corpus.splits["test"], corpus.factors["test"][name].tolist(), strict=True
    ):
        denominators = [totals[k] + len(vocabulary) for k in range(classes)]
        scores = [
            sum(math.log((counts[k][w] + 1) / denominators[k]) for w in sentence[:prefix])
            for k in range(classes)
        ]
        correct += max(range(classes), key=scores.__getitem__) == label
    return correct / len(corpus.splits["test"])


def test_factors_are_readable_from_the_whole_sentence_only(synthetic) -> None:
    # 500 test sentences: the standard error of an accuracy is <= sqrt(0.25 / 500) = 0.022, so
    # each threshold below is at least 5 standard errors from what the generator gives
    # (~0.98 topic, ~1.0 style with all words; ~0.25 = chance for the topic from word 1).
    assert naive_bayes_accuracy(synthetic, "topic") > 0.85  # chance 0.25
    assert naive_bayes_accuracy(synthetic, "style") > 0.85  # chance 0.33
    assert naive_bayes_accuracy(synthetic, "topic", prefix=1) < 0.37
    # The first word is never a topic word.
    from advmask.seqvae.data.synthetic import TOPIC_WORDS

    topic_words = set().union(*TOPIC_WORDS.values())
    assert not any(s[0] in topic_words for s in synthetic.splits["train"])


def test_synthetic_write_is_readable_by_load_corpus(tmp_path) -> None:
    synthetic = make_synthetic_corpus(seed=3, num_train=50, num_valid=10, num_test=10)
    folder = synthetic.write(tmp_path / "new" / "corpus")
    corpus = load_corpus(folder)
    for split, sentences in synthetic.splits.items():
        assert len(corpus.splits[split]) == len(sentences)
        assert corpus.word_counts[split] == sum(map(len, sentences))
    decoded = [corpus.vocab.decode(ids) for ids in corpus.splits["train"]]
    assert decoded == synthetic.splits["train"]
    assert sorted(p.name for p in folder.iterdir()) == ["test.txt", "train.txt", "valid.txt"]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"num_train": 0}, ["num_train", "0"]),
        ({"num_test": -2}, ["num_test", "-2"]),
        ({"topic_word_prob": 0.0}, ["topic_word_prob", "0.0"]),
        ({"topic_word_prob": 1.5}, ["topic_word_prob", "1.5"]),
    ],
)
def test_synthetic_rejects_bad_arguments(kwargs, words) -> None:
    with pytest.raises(ValueError) as info:
        make_synthetic_corpus(**kwargs)
    assert all(word in str(info.value) for word in words)
