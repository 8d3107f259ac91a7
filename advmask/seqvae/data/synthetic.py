"""A synthetic corpus whose sentences depend on known latent factors.

Each sentence draws two independent, uniform factors:

* ``topic`` (4 values: sports, cooking, science, travel) chooses the content words. Every noun
  or verb slot takes a topic word with probability ``topic_word_prob`` and a word shared by all
  topics otherwise, and a few nouns belong to two topics, so the topic is spread over the
  whole sentence and a prefix rarely gives it away (the first word never does).
* ``style`` (3 values: formal, casual, terse) chooses function words, adjectives, adverbs,
  openers, connectives, closers and the length: terse sentences are one short clause (5-12
  words), casual ones one or two clauses with fillers (about 14 words), formal ones two
  clauses (about 17 words, at most 24).

A sentence is therefore predicted much better by a model that knows both factors for the whole
sentence, which is what a sequence VAE's latent can carry, and a linear probe on posterior means
can measure whether it does (``advmask.seqvae.probe``). Generation is a small stochastic grammar
driven by ``random.Random(seed)``: the same arguments always give the same corpus.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from advmask.checks import check_int
from advmask.training.checkpoint import atomic_write

TOPICS: tuple[str, ...] = ("sports", "cooking", "science", "travel")
STYLES: tuple[str, ...] = ("formal", "casual", "terse")
SPLITS: tuple[str, ...] = ("train", "valid", "test")


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_TOPIC_NOUNS: dict[str, tuple[str, ...]] = {
    "sports": _words(
        "team coach match goal ball player stadium season league referee score race medal "
        "tournament fans striker court course field trophy"
    ),
    "cooking": _words(
        "recipe oven soup bread sauce kitchen chef garlic pan dough salad butter flavor dinner "
        "onion spices dessert course sample plate"
    ),
    "science": _words(
        "experiment lab theory data molecule telescope hypothesis cell paper particle "
        "researcher equation microscope sample field team model signal plate map"
    ),
    "travel": _words(
        "flight hotel passport beach museum train island luggage ticket tour guide airport "
        "village journey coast map border harbor cathedral hostel"
    ),
}
_TOPIC_VERBS: dict[str, tuple[str, ...]] = {
    "sports": _words("scored won trained defended tackled raced kicked coached"),
    "cooking": _words("baked stirred roasted seasoned chopped tasted boiled fried"),
    "science": _words("measured observed tested analyzed published modeled replicated calibrated"),
    "travel": _words("visited booked explored packed toured crossed hiked flew"),
}
_TOPIC_ADJECTIVES: dict[str, tuple[str, ...]] = {
    "sports": _words("athletic competitive defensive"),
    "cooking": _words("spicy crispy savory"),
    "science": _words("empirical statistical quantum"),
    "travel": _words("scenic remote coastal"),
}
_SHARED_NOUNS = _words(
    "people time day thing group friend idea week place result part way year problem story "
    "morning plan moment"
)
_SHARED_VERBS = _words(
    "saw made found got liked wanted needed started tried described remembered changed"
)
_PREPOSITIONS = ("with", "for", "after", "near", "before", "about", "during")
_PRONOUNS = ("we", "they", "she", "he", "someone")

_DETERMINERS: dict[str, tuple[str, ...]] = {
    "formal": ("the", "this", "each", "every", "a", "that"),
    "casual": ("the", "my", "some", "this", "a", "our"),
    "terse": ("the", "a"),
}
_ADJECTIVES: dict[str, tuple[str, ...]] = {
    "formal": ("considerable", "remarkable", "substantial", "notable", "significant", "superb"),
    "casual": ("cool", "awesome", "nice", "weird", "crazy", "fun"),
    "terse": ("big", "new", "old", "good"),
}
_ADVERBS: dict[str, tuple[str, ...]] = {
    "formal": ("indeed", "notably", "subsequently", "carefully", "thoroughly"),
    "casual": ("really", "totally", "pretty", "kinda", "honestly", "literally"),
    "terse": (),
}
_OPENERS: dict[str, tuple[tuple[str, ...], ...]] = {
    "formal": (("in", "fact", ","), ("furthermore", ","), ("as", "noted", ","), ("overall", ",")),
    "casual": (("so",), ("well",), ("yeah",), ("ok", "so"), ("like",), ("honestly", ",")),
    "terse": ((),),
}
_CONNECTIVES: dict[str, tuple[tuple[str, ...], ...]] = {
    "formal": (("and", "moreover"), ("whereas",), ("and", "therefore"), ("although",)),
    "casual": (("and",), ("but",), ("so",), ("and", "then")),
    "terse": ((";",),),
}
_CLOSERS: dict[str, tuple[tuple[str, ...], ...]] = {
    "formal": (("as", "expected"), ("in", "general"), ("in", "principle")),
    "casual": (("lol",), ("you", "know"), ("i", "guess"), ("haha",)),
    "terse": ((),),
}
_ENDINGS: dict[str, tuple[str, ...]] = {
    "formal": (".",),
    "casual": ("!", "...", "."),
    "terse": (".",),
}
# (clauses range, P(opener), P(closer), P(adjective), P(adverb), P(prepositional phrase))
_SHAPE: dict[str, tuple[tuple[int, int], float, float, float, float, float]] = {
    "formal": ((2, 2), 0.6, 0.4, 0.4, 0.3, 0.3),
    "casual": ((1, 2), 0.7, 0.6, 0.5, 0.6, 0.3),
    "terse": ((1, 1), 0.0, 0.0, 0.15, 0.0, 0.3),
}
_MAX_WORDS = 24
#: Topic -> the words that name it (its nouns, verbs and adjectives; a few nouns belong to two
#: topics). Every other word of the corpus is shared by all topics.
TOPIC_WORDS: dict[str, frozenset[str]] = {
    topic: frozenset(_TOPIC_NOUNS[topic] + _TOPIC_VERBS[topic] + _TOPIC_ADJECTIVES[topic])
    for topic in TOPICS
}


@dataclass(frozen=True)
class SyntheticCorpus:
    """Generated sentences and the factors that generated them.

    Attributes:
        splits: ``"train"``, ``"valid"``, ``"test"`` → list of sentences (lists of words).
        factors: split → factor name (``"topic"``, ``"style"``) → (N,) int64 labels aligned
            with the split's sentences; label ``i`` names ``factor_values[name][i]``.
        factor_values: factor name → names of its values.
    """

    splits: dict[str, list[list[str]]]
    factors: dict[str, dict[str, Tensor]]
    factor_values: dict[str, tuple[str, ...]]

    def write(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``train.txt``, ``valid.txt``, ``test.txt`` (one sentence a line) atomically.

        Args:
            directory: destination folder, created if needed.

        Returns:
            The folder, ready for :func:`advmask.seqvae.data.load_corpus`.
        """
        directory = Path(directory)
        for split, sentences in self.splits.items():
            text = "".join(" ".join(words) + "\n" for words in sentences).encode("utf-8")
            atomic_write(directory / f"{split}.txt", lambda file, data=text: file.write(data))
        return directory


def _pick(rng: random.Random, options: tuple) -> object:
    return options[rng.randrange(len(options))]


def _content(
    rng: random.Random, topic_words: tuple[str, ...], shared: tuple[str, ...], p: float
) -> str:
    return str(_pick(rng, topic_words if rng.random() < p else shared))


def _noun_phrase(
    rng: random.Random, topic: str, style: str, p: float, p_adjective: float
) -> list[str]:
    words = [str(_pick(rng, _DETERMINERS[style]))]
    if rng.random() < p_adjective:
        # Mostly style adjectives; topic adjectives add a little more topic evidence.
        pool = _TOPIC_ADJECTIVES[topic] if rng.random() < 0.3 * p else _ADJECTIVES[style]
        words.append(str(_pick(rng, pool)))
    words.append(_content(rng, _TOPIC_NOUNS[topic], _SHARED_NOUNS, p))
    return words


def _clause(rng: random.Random, topic: str, style: str, p: float) -> list[str]:
    _, _, _, p_adjective, p_adverb, p_prep = _SHAPE[style]
    if rng.random() < 0.5:
        words = [str(_pick(rng, _PRONOUNS))]
    else:
        words = _noun_phrase(rng, topic, style, p, p_adjective)
    if rng.random() < p_adverb:
        words.append(str(_pick(rng, _ADVERBS[style])))
    words.append(_content(rng, _TOPIC_VERBS[topic], _SHARED_VERBS, p))
    words += _noun_phrase(rng, topic, style, p, p_adjective)
    if rng.random() < p_prep:
        words.append(str(_pick(rng, _PREPOSITIONS)))
        words += _noun_phrase(rng, topic, style, p, p_adjective)
    return words


def _sentence(rng: random.Random, topic: str, style: str, p: float) -> list[str]:
    (low, high), p_opener, p_closer, *_ = _SHAPE[style]
    while True:
        words: list[str] = []
        if rng.random() < p_opener:
            words += _pick(rng, _OPENERS[style])  # type: ignore[arg-type]
        words += _clause(rng, topic, style, p)
        for _ in range(rng.randint(low, high) - 1):
            words += _pick(rng, _CONNECTIVES[style])  # type: ignore[arg-type]
            words += _clause(rng, topic, style, p)
        if rng.random() < p_closer:
            words += _pick(rng, _CLOSERS[style])  # type: ignore[arg-type]
        words.append(str(_pick(rng, _ENDINGS[style])))
        # Every sentence carries some evidence of its topic, so the factor is defined by the
        # words and not only by the generator's hidden state; the length cap keeps the corpus
        # cheap to train on.
        if len(words) <= _MAX_WORDS and TOPIC_WORDS[topic].intersection(words):
            return words


def make_synthetic_corpus(
    seed: int = 0,
    num_train: int = 4000,
    num_valid: int = 500,
    num_test: int = 500,
    topic_word_prob: float = 0.5,
) -> SyntheticCorpus:
    """Generate the synthetic corpus (deterministic given the arguments).

    Args:
        seed: seed of the ``random.Random`` that draws factors and words.
        num_train: sentences in the training split (>= 1).
        num_valid: sentences in the validation split (>= 1).
        num_test: sentences in the test split (>= 1).
        topic_word_prob: probability that a noun or verb slot takes a topic word rather than a
            shared one, in (0, 1]; lower values hide the topic more.

    Returns:
        A :class:`SyntheticCorpus`; the vocabulary has about 230 words.

    Example:
        >>> corpus = make_synthetic_corpus(seed=0, num_train=8, num_valid=2, num_test=2)
        >>> len(corpus.splits["train"]), corpus.factors["train"]["topic"].shape
        (8, torch.Size([8]))
        >>> corpus.factor_values["style"]
        ('formal', 'casual', 'terse')
    """
    sizes = {"train": num_train, "valid": num_valid, "test": num_test}
    sizes = {split: check_int(size, f"num_{split}") for split, size in sizes.items()}
    if isinstance(topic_word_prob, bool) or not isinstance(topic_word_prob, (int, float)):
        raise TypeError(f"topic_word_prob must be a float in (0, 1], got {topic_word_prob!r}")
    if not 0.0 < topic_word_prob <= 1.0:
        raise ValueError(f"topic_word_prob must be in (0, 1], got {topic_word_prob}")
    rng = random.Random(seed)
    splits: dict[str, list[list[str]]] = {}
    factors: dict[str, dict[str, Tensor]] = {}
    for split, size in sizes.items():
        topics = [rng.randrange(len(TOPICS)) for _ in range(size)]
        styles = [rng.randrange(len(STYLES)) for _ in range(size)]
        splits[split] = [
            _sentence(rng, TOPICS[t], STYLES[s], float(topic_word_prob))
            for t, s in zip(topics, styles, strict=True)
        ]
        factors[split] = {
            "topic": torch.tensor(topics, dtype=torch.int64),
            "style": torch.tensor(styles, dtype=torch.int64),
        }
    return SyntheticCorpus(
        splits=splits, factors=factors, factor_values={"topic": TOPICS, "style": STYLES}
    )
