"""Subword segmentation with a sentencepiece model trained on the training split, cached.

The model is trained once per (training text, options) and stored under a name that contains a
hash of both, so a later run with the same data and options reuses it and a changed corpus or
option trains a new one. The cache lives in a folder the caller owns (a run folder), never in
the read-only data folder.

The corpora's own unknown tokens (``<unk>``, ``_UNK``) are declared as user-defined symbols, so
sentencepiece keeps each as one piece instead of spelling it out as ``<``, ``unk``, ``>``; the
:class:`~advmask.seqvae.data.vocab.Vocabulary` then maps them, and sentencepiece's own unknown
piece, to ``UNK_ID``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sentencepiece as spm

from advmask.seqvae.data.vocab import UNK, UNKNOWN_ALIASES
from advmask.training.checkpoint import atomic_write

MODEL_TYPES: tuple[str, ...] = ("unigram", "bpe")
# sentencepiece's unknown piece must differ from the user-defined "<unk>"; it is renamed back
# to "<unk>" in :func:`encode_pieces`.
_SPM_UNKNOWN = "<spm-unk>"


def _options(vocab_size: int, model_type: str) -> dict[str, Any]:
    return {
        "vocab_size": vocab_size,
        "model_type": model_type,
        # The caller adds BOS/EOS itself; the model only needs an unknown piece.
        "bos_id": -1,
        "eos_id": -1,
        "pad_id": -1,
        "unk_id": 0,
        "unk_piece": _SPM_UNKNOWN,
        "user_defined_symbols": list(UNKNOWN_ALIASES),
        # The text is already normalised (lower-cased, tokenised); keep it as it is.
        "normalization_rule_name": "identity",
        # Small corpora cannot always fill the requested size; take what they support.
        "hard_vocab_limit": False,
        # One thread: the trained model (and so the cache) does not depend on the machine.
        "num_threads": 1,
        "minloglevel": 2,
    }


def train_sentencepiece(
    lines: Sequence[str],
    cache_dir: str | os.PathLike[str],
    *,
    vocab_size: int = 8000,
    model_type: str = "unigram",
) -> tuple[Any, Path]:
    """Train (or reuse from ``cache_dir``) a sentencepiece model of ``lines``.

    Args:
        lines: training sentences, words separated by single spaces.
        cache_dir: folder for the cached ``.model`` file, created if needed.
        vocab_size: requested number of pieces (>= 2); a tiny corpus may give fewer.
        model_type: ``"unigram"`` or ``"bpe"``.

    Returns:
        ``(processor, path)``: a loaded ``sentencepiece.SentencePieceProcessor`` and the model
        file it came from.
    """
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 2:
        raise ValueError(f"sentencepiece_vocab_size must be an int >= 2, got {vocab_size!r}")
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type must be one of {list(MODEL_TYPES)}, got {model_type!r}")
    options = _options(vocab_size, model_type)
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
    for line in lines:
        digest.update(line.encode("utf-8"))
        digest.update(b"\n")
    path = Path(cache_dir) / f"spm-{model_type}-{vocab_size}-{digest.hexdigest()[:16]}.model"
    if not path.is_file():
        buffer = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=buffer, **options
        )
        atomic_write(path, lambda file: file.write(buffer.getvalue()))
    processor = spm.SentencePieceProcessor(model_file=str(path))
    return processor, path


def encode_pieces(processor: Any, lines: Sequence[str]) -> list[list[str]]:
    """Pieces of each line; sentencepiece's unknown piece is returned as ``"<unk>"``."""
    pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
    pieces[processor.unk_id()] = UNK
    return [[pieces[i] for i in ids] for ids in processor.encode(list(lines))]
