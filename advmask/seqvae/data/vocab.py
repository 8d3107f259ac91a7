"""Token ids: four fixed special tokens, then the training split's words by frequency.

Ids ``0..3`` are reserved for the specials and are the same in every vocabulary, so models and
maskers can refer to them as constants:

===========  ====  ========================================================================
token        id    role
===========  ====  ========================================================================
``<pad>``    0     padding after EOS (never predicted, never an input)
``<bos>``    1     decoder input at step 0 (never predicted)
``<eos>``    2     last prediction target of every sequence
``<unk>``    3     any word outside the vocabulary; also what word dropout substitutes
===========  ====  ========================================================================

Corpora mark rare words with their own unknown token (``<unk>`` in PTB and SNLI, ``_UNK`` in
Yahoo); both are read as :data:`UNK_ID`, so a corpus's unknown token and a word missing from
the vocabulary are the same event for the model.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from advmask.training.checkpoint import save_json

PAD_ID = 0
"""Id of ``<pad>``: fills positions after a sequence's EOS."""
BOS_ID = 1
"""Id of ``<bos>``: the decoder's input at step 0."""
EOS_ID = 2
"""Id of ``<eos>``: the last prediction target of every sequence."""
UNK_ID = 3
"""Id of ``<unk>``: unknown words, and the ``"unk"`` fill of word dropout."""

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS: tuple[str, ...] = (PAD, BOS, EOS, UNK)
"""The special tokens, in id order (``SPECIALS[PAD_ID] == "<pad>"``)."""

UNKNOWN_ALIASES: tuple[str, ...] = ("<unk>", "_UNK")
"""Words that corpora use for "unknown"; all of them are encoded as :data:`UNK_ID`."""

_FORMAT = "advmask.vocabulary"
_VERSION = 1
# Marks the reserved markers in the lookup table, so ``encode`` can reject them after one
# C-level pass instead of testing every word against a set.
_RESERVED = -1


class Vocabulary:
    """Bidirectional map between tokens and integer ids.

    Args:
        tokens: every token in id order; the first four must be :data:`SPECIALS`, the rest
            distinct words (the unknown aliases such as ``_UNK`` are not separate entries).

    Example:
        >>> vocab = Vocabulary.build([["a", "b", "a"], ["c", "<unk>"]])
        >>> len(vocab), vocab.encode(["a", "c", "zebra", "_UNK"])
        (7, [4, 6, 3, 3])
        >>> vocab.decode([1, 4, 5, 2])
        ['<bos>', 'a', 'b', '<eos>']
    """

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = tuple(tokens)
        if tokens[: len(SPECIALS)] != SPECIALS:
            raise ValueError(
                f"tokens must start with the special tokens {list(SPECIALS)}, "
                f"got {list(tokens[: len(SPECIALS)])}"
            )
        index: dict[str, int] = {}
        for position, token in enumerate(tokens):
            if not isinstance(token, str) or not token:
                raise TypeError(f"tokens[{position}] must be a non-empty str, got {token!r}")
            if token in index:
                raise ValueError(
                    f"token {token!r} appears twice in tokens (ids {index[token]} and {position})"
                )
            if position >= len(SPECIALS) and token in UNKNOWN_ALIASES:
                raise ValueError(
                    f"token {token!r} at id {position} is an alias of {UNK!r} (id {UNK_ID}) "
                    "and cannot have its own id"
                )
            index[token] = position
        self._tokens = tokens
        # Lookup used by ``encode``: words and unknown aliases to ids; the other specials are
        # markers the batching code adds, never words, so meeting one in text is an error.
        self._index = dict(index)
        for alias in UNKNOWN_ALIASES:
            self._index[alias] = UNK_ID
        for marker in (PAD, BOS, EOS):
            self._index[marker] = _RESERVED

    @classmethod
    def build(
        cls,
        sequences: Iterable[Iterable[str]],
        max_size: int | None = None,
        min_count: int = 1,
    ) -> Vocabulary:
        """Vocabulary of the words in ``sequences`` (normally the training split).

        Words are ordered by count (descending), ties by the word itself, so the same data
        always gives the same ids.

        Args:
            sequences: tokenised sequences (lists of words).
            max_size: keep at most this many words (specials not counted, so
                ``len(vocab) <= max_size + 4``); ``None`` keeps all.
            min_count: drop words seen fewer than this many times.

        Returns:
            The vocabulary; ids ``0..3`` are the specials, ``4..`` the kept words.

        Raises:
            ValueError: if a sequence contains ``<pad>``, ``<bos>`` or ``<eos>``, or an
                argument is out of range.
        """
        if max_size is not None and (
            isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 0
        ):
            raise ValueError(f"max_size must be None or an int >= 0, got {max_size!r}")
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"min_count must be an int >= 1, got {min_count!r}")
        counts: Counter[str] = Counter()
        for sequence in sequences:
            if isinstance(sequence, str):
                raise TypeError(
                    f"sequences must hold lists of words, got the str {sequence[:50]!r}"
                )
            counts.update(sequence)
        for marker in (PAD, BOS, EOS):
            if marker in counts:
                raise ValueError(
                    f"the word {marker!r} is reserved for a special token and must not occur "
                    f"in the data (found {counts[marker]} times)"
                )
        for alias in UNKNOWN_ALIASES:
            counts.pop(alias, None)
        words = sorted(
            (word for word, count in counts.items() if count >= min_count),
            key=lambda word: (-counts[word], word),
        )
        if max_size is not None:
            words = words[:max_size]
        return cls((*SPECIALS, *words))

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._index and self._index[token] != _RESERVED  # type: ignore[index]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        return self._tokens == other._tokens

    def __hash__(self) -> int:
        return hash(self._tokens)

    def __repr__(self) -> str:
        return f"Vocabulary(size={len(self)})"

    @property
    def tokens(self) -> tuple[str, ...]:
        """Every token in id order, specials first."""
        return self._tokens

    def token_to_id(self, token: str) -> int:
        """Id of one word (:data:`UNK_ID` when unknown); see :meth:`encode`."""
        return self.encode([token])[0]

    def encode(self, words: Iterable[str]) -> list[int]:
        """Ids of ``words``; words outside the vocabulary and unknown aliases give UNK_ID.

        Args:
            words: the words of one sequence, without BOS/EOS.

        Returns:
            One id per word.

        Raises:
            TypeError: if ``words`` is a str (a sentence must be split into words first).
            ValueError: if a word is ``<pad>``, ``<bos>`` or ``<eos>``, which are markers the
                batching code adds and never words.
        """
        if isinstance(words, str):
            raise TypeError(f"words must be a list of words, got the str {words[:50]!r}")
        words = words if isinstance(words, list) else list(words)
        lookup = self._index.get
        ids = [lookup(word, UNK_ID) for word in words]
        if _RESERVED in ids:
            position = ids.index(_RESERVED)
            raise ValueError(
                f"the word {words[position]!r} at position {position} is reserved for a special "
                "token; sequences hold words only (batching adds BOS/EOS/PAD)"
            )
        return ids

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens of ``ids`` (specials included as their token strings).

        Raises:
            ValueError: naming the first id outside ``[0, len(self))``.
        """
        tokens = self._tokens
        out = []
        for position, token_id in enumerate(ids):
            token_id = int(token_id)
            if not 0 <= token_id < len(tokens):
                raise ValueError(
                    f"id {token_id} at position {position} is outside the vocabulary "
                    f"[0, {len(tokens)})"
                )
            out.append(tokens[token_id])
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description; :meth:`from_dict` inverts it."""
        return {"format": _FORMAT, "version": _VERSION, "tokens": list(self._tokens)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Vocabulary:
        """Rebuild a vocabulary from :meth:`to_dict`'s output.

        Raises:
            ValueError: if ``data`` is not a vocabulary description of a known version.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"data must be a mapping from to_dict(), got {type(data).__name__}")
        if data.get("format") != _FORMAT:
            raise ValueError(f"data is not a vocabulary: format is {data.get('format')!r}")
        if data.get("version") != _VERSION:
            raise ValueError(
                f"unsupported vocabulary version {data.get('version')!r} (expected {_VERSION})"
            )
        tokens = data.get("tokens")
        if not isinstance(tokens, list):
            raise ValueError(f"data['tokens'] must be a list, got {type(tokens).__name__}")
        return cls(tokens)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the vocabulary as JSON, atomically (a crash never leaves half a file)."""
        return save_json(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Vocabulary:
        """Read a vocabulary written by :meth:`save`.

        Raises:
            FileNotFoundError: naming ``path`` when it does not exist.
            ValueError: naming ``path`` when it is not a vocabulary file.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no vocabulary file at {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls.from_dict(data)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{path} is not a vocabulary file: {error}") from error
