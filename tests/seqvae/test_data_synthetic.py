"""Data package: the synthetic corpus (deterministic, aligned factors, readable by load_corpus)."""

import math
from collections import Counter

import pytest
import torch

from advmask.seqvae.data import (
    SyntheticCorpus,
    load_corpus,
    make_synthetic_corpus,
)
from advmask.seqvae.data.synthetic import STYLES, TOPICS


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
