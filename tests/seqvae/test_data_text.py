"""Data package, from text to ids: vocabulary, corpus files and sentencepiece.

Batching is in tests/seqvae/test_data_batching.py, the synthetic corpus in
tests/seqvae/test_data_synthetic.py.
"""

import json
import re
from pathlib import Path

import pytest

from advmask.seqvae.data import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    Corpus,
    Vocabulary,
    load_corpus,
    make_batches,
    make_synthetic_corpus,
)
from advmask.seqvae.data import sentencepiece as spm_module
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
