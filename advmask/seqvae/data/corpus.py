"""Reading a corpus folder (``train.txt``, ``valid.txt``, ``test.txt``) into id sequences.

File format (the benchmark corpora in ``../shared/data``): UTF-8 text, one pre-tokenised
sequence per line, tokens separated by whitespace (``str.split()``, as He et al. read them).
Rules, chosen so that the perplexity denominators are exactly those of the files:

* every line must hold at least one token; a blank line is an error naming ``file:line``
  rather than being skipped, because dropping it silently would change the number of
  sequences and so the EOS count in the denominator;
* a final newline is optional and does not start an extra line; ``\\r\\n`` endings are fine;
* a byte sequence that is not UTF-8 is an error naming ``file:line``;
* a UTF-8 byte-order mark at the start of a file is not part of the first word;
* an empty file is an error naming the file;
* with ``max_length``, a line of more words is an error naming ``file:line`` (or, with
  ``truncate_long``, is cut to its first ``max_length`` words, counted in
  :attr:`Corpus.truncated`): one very long line would otherwise make a training step run for
  many minutes, or overflow a decoder's positions.
"""

from __future__ import annotations

import hashlib
import os
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

from torch import Tensor

from advmask.seqvae.data.sentencepiece import encode_pieces, train_sentencepiece
from advmask.seqvae.data.vocab import BOS, EOS, PAD, Vocabulary

SPLITS: tuple[str, ...] = ("train", "valid", "test")
TOKENIZERS: tuple[str, ...] = ("words", "sentencepiece")
RESERVED_WORDS = frozenset((PAD, BOS, EOS))


@dataclass(frozen=True)
class Corpus:
    """An encoded corpus.

    Attributes:
        vocab: vocabulary built from the training split (words or sentencepiece pieces).
        splits: ``"train"``, ``"valid"``, ``"test"`` → one list of token ids per line, the
            words (or pieces) only: no BOS/EOS, which batching adds.
        directory: the folder the files were read from.
        word_counts: split → number of whitespace-separated words (EOS excluded). With
            ``tokenizer="words"`` this equals the number of ids; with sentencepiece it is the
            word count needed to report a word-level perplexity.
        tokenizer: ``"words"`` or ``"sentencepiece"``.
        sentencepiece_model: the cached model file when ``tokenizer="sentencepiece"``.
        truncated: split -> number of lines cut to ``max_length`` words (``truncate_long``).
        factors: split -> factor name -> (N,) int64 label of each line, for corpora whose
            latent factors are known (the synthetic one); empty otherwise.
    """

    vocab: Vocabulary
    splits: dict[str, list[list[int]]]
    directory: Path
    word_counts: dict[str, int]
    tokenizer: str = "words"
    sentencepiece_model: Path | None = None
    truncated: dict[str, int] = field(default_factory=dict)
    factors: dict[str, dict[str, Tensor]] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """:func:`fingerprint` of the splits: identifies the encoded data of a run."""
        return fingerprint(self.splits)

    def ppl_denominator(self, split: str) -> int:
        """Words plus one EOS per line of ``split``: the word-level perplexity denominator.

        For PTB's test split this is 78,669 + 3,761 = 82,430.
        """
        if split not in self.splits:
            raise ValueError(f"split must be one of {sorted(self.splits)}, got {split!r}")
        return self.word_counts[split] + len(self.splits[split])


def read_lines(path: str | os.PathLike[str]) -> list[str]:
    """Lines of a corpus file, validated as the module docstring says.

    Args:
        path: a ``.txt`` file of the corpus.

    Returns:
        One string per line, without the line ending.

    Raises:
        FileNotFoundError: naming ``path`` when it is missing.
        ValueError: naming ``path`` (and the line number) for an empty file, a line that is
            not UTF-8, or a blank line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"corpus file {path} does not exist")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ValueError(
            f"{path}:{line}: not valid UTF-8 (byte {data[error.start]:#04x}: {error.reason})"
        ) from error
    # A byte-order mark (Windows editors write one) is an encoding marker, not text.
    text = text.removeprefix("\ufeff")
    if not text:
        raise ValueError(f"{path} is empty: every split needs at least one sequence")
    # Split on "\n" only: str.splitlines() would also break at form feeds, U+2028 and other
    # separators that may sit inside a token, changing the line count.
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise ValueError(
                f"{path}:{number}: blank line; every line must hold a sequence of at least "
                "one token (blank lines are not skipped because that would change the "
                "perplexity denominator)"
            )
    return lines


def load_corpus(
    directory: str | os.PathLike[str],
    *,
    max_size: int | None = None,
    min_count: int = 1,
    tokenizer: str = "words",
    sentencepiece_vocab_size: int = 8000,
    sentencepiece_model_type: str = "unigram",
    cache_dir: str | os.PathLike[str] | None = None,
    max_length: int | None = None,
    truncate_long: bool = False,
    max_train_sequences: int | None = None,
    min_sequences: Mapping[str, int] | None = None,
    max_tokens: int | None = None,
) -> Corpus:
    """Read ``train.txt``, ``valid.txt`` and ``test.txt`` from ``directory`` and encode them.

    Args:
        directory: the corpus folder (read only; nothing is written there).
        max_size: keep at most this many words/pieces in the vocabulary (specials not
            counted); ``None`` keeps all.
        min_count: drop words/pieces seen fewer times than this in the training split.
        tokenizer: ``"words"`` (the files' own tokens) or ``"sentencepiece"`` (subword pieces
            of a model trained on the training split).
        sentencepiece_vocab_size: pieces requested from sentencepiece.
        sentencepiece_model_type: ``"unigram"`` or ``"bpe"``.
        cache_dir: where the sentencepiece model is cached (for example the run folder);
            required with ``tokenizer="sentencepiece"``.
        max_length: most words (whitespace tokens) per line; ``None`` allows any length.
        truncate_long: cut longer lines to ``max_length`` words instead of refusing them.
        max_train_sequences: keep only the first N training lines (the vocabulary is still
            built from all of them, so that runs on subsets share ids); None keeps all.
        min_sequences: split -> fewest lines it must have (after ``max_train_sequences``).
        max_tokens: most tokens (words or pieces) a line may have after encoding, e.g. the
            positions of a Transformer decoder; None allows any.

    Returns:
        The :class:`Corpus`.

    Raises:
        FileNotFoundError: naming the missing folder or file.
        ValueError: naming ``file:line`` for malformed content or a line longer than
            ``max_length`` words, or a bad argument.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> for split in ("train", "valid", "test"):
        ...     _ = (folder / f"{split}.txt").write_text("a b a\\nc <unk>\\n")
        >>> corpus = load_corpus(folder)
        >>> corpus.splits["test"], corpus.ppl_denominator("test")
        ([[4, 5, 4], [6, 3]], 7)
    """
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"tokenizer must be one of {list(TOKENIZERS)}, got {tokenizer!r}")
    if tokenizer == "sentencepiece" and cache_dir is None:
        raise ValueError(
            "cache_dir is required with tokenizer='sentencepiece' (the model is cached there, "
            "never in the data folder), got None"
        )
    if max_length is not None and (
        isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
    ):
        raise ValueError(f"max_length must be None or an int >= 1, got {max_length!r}")
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"corpus folder {directory} does not exist or is not a folder")
    paths = {split: directory / f"{split}.txt" for split in SPLITS}
    lines = {split: read_lines(path) for split, path in paths.items()}
    words = {split: [line.split() for line in split_lines] for split, split_lines in lines.items()}
    truncated: dict[str, int] = {}
    if max_length is not None:
        for split in SPLITS:
            long_lines = [n for n, seq in enumerate(words[split], 1) if len(seq) > max_length]
            if long_lines and not truncate_long:
                first = long_lines[0]
                raise ValueError(
                    f"{paths[split]}:{first}: {len(words[split][first - 1])} words, more than "
                    f"max_length={max_length} ({len(long_lines)} such lines in this file; "
                    "raise the limit or truncate them)"
                )
            for number in long_lines:
                words[split][number - 1] = words[split][number - 1][:max_length]
            truncated[split] = len(long_lines)
    word_counts = {split: sum(map(len, sequences)) for split, sequences in words.items()}

    model_path = None
    if tokenizer == "sentencepiece":
        joined = {split: [" ".join(w) for w in sequences] for split, sequences in words.items()}
        assert cache_dir is not None  # checked above; narrows the type
        processor, model_path = train_sentencepiece(
            joined["train"],
            cache_dir,
            vocab_size=sentencepiece_vocab_size,
            model_type=sentencepiece_model_type,
        )
        tokens = {split: encode_pieces(processor, joined[split]) for split in SPLITS}
    else:
        tokens = words

    try:
        vocab = Vocabulary.build(tokens["train"], max_size=max_size, min_count=min_count)
    except ValueError as error:
        # A reserved marker (``<eos>``...) in the text: point at its first line.
        number = next(
            (n for n, seq in enumerate(tokens["train"], 1) if RESERVED_WORDS.intersection(seq)),
            None,
        )
        if number is None:
            raise
        raise ValueError(f"{paths['train']}:{number}: {error}") from error
    splits: dict[str, list[list[int]]] = {}
    for split in SPLITS:
        encoded = []
        for number, sequence in enumerate(tokens[split], start=1):
            try:
                encoded.append(vocab.encode(sequence))
            except ValueError as error:
                raise ValueError(f"{paths[split]}:{number}: {error}") from error
        splits[split] = encoded
    if max_train_sequences is not None:
        splits["train"] = splits["train"][:max_train_sequences]
    for split, needed in (min_sequences or {}).items():
        if len(splits[split]) < needed:
            after = " (after max_train_sequences)" if max_train_sequences is not None else ""
            raise ValueError(
                f"{paths[split]}: the {split} split has {len(splits[split])} sequences"
                f"{after}, at least {needed} are needed"
            )
    for split in SPLITS if max_tokens is not None else ():
        longest = max(range(len(splits[split])), key=lambda i: len(splits[split][i]))
        if len(splits[split][longest]) > max_tokens:
            raise ValueError(
                f"{paths[split]}:{longest + 1}: {len(splits[split][longest])} {tokenizer} "
                f"tokens, more than max_tokens={max_tokens}"
            )
    return Corpus(
        vocab=vocab,
        splits=splits,
        directory=directory,
        word_counts=word_counts,
        tokenizer=tokenizer,
        sentencepiece_model=model_path,
        truncated=truncated,
    )


def fingerprint(splits: Mapping[str, Sequence[Sequence[int]]]) -> str:
    """SHA-256 of encoded splits: names, sequence boundaries and every id, in order.

    Two runs whose fingerprints (and vocabularies) agree trained and were evaluated on the same
    id sequences, whatever folder the text was read from.

    Example:
        >>> fingerprint({"train": [[4, 5], [6]]}) == fingerprint({"train": [[4, 5], [6]]})
        True
        >>> fingerprint({"train": [[4, 5], [6]]}) == fingerprint({"train": [[4], [5, 6]]})
        False
    """
    digest = hashlib.sha256()
    for name in sorted(splits):
        sequences = splits[name]
        digest.update(f"{name}:{len(sequences)}\n".encode())
        digest.update(array("q", map(len, sequences)).tobytes())
        digest.update(array("q", chain.from_iterable(sequences)).tobytes())
    return digest.hexdigest()
