"""A run folder of ``recipes/seqvae_awd.py`` loaded for analysis: model, vocabulary, corpus.

The folder holds ``best.pt`` (read once: a run still training may replace it), ``vocab.json``
and ``config.json``; the corpus is the run's ``data_dir`` or, for the synthetic corpus, the
``corpus/`` folder beside the run folders. A missing or damaged file is a
:class:`~advmask.training.cli.UserError` naming the folder.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from advmask.seqvae.data import Vocabulary
from advmask.seqvae.data.corpus import read_lines
from advmask.seqvae.factory import sequence_vae_from_state
from advmask.training.checkpoint import load_checkpoint, read_json
from advmask.training.cli import UserError

__all__ = ["TrainedRun"]


class TrainedRun:
    """A finished (or at least validated once) run directory, loaded for analysis.

    Attributes:
        directory: the run folder.
        device: where the model is.
        model: the :class:`~advmask.seqvae.vae.SequenceVAE` of ``best.pt``.
        spec: its :class:`~advmask.seqvae.factory.ModelSpec`.
        weights: ``{"epoch": ..., "step": ...}`` of ``best.pt`` (None for a checkpoint of a
            version that did not record them).
        finished: whether the run has finished (its ``metrics.json`` exists).
        vocab: the run's :class:`~advmask.seqvae.data.Vocabulary`.
        config: the run's ``config.json``.

    Raises:
        advmask.training.cli.UserError: naming the folder when it, ``best.pt``, ``vocab.json``
            or ``config.json`` is missing or cannot be read.
    """

    def __init__(self, directory: str | os.PathLike[str], device: str = "cpu") -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise UserError(f"run directory {str(directory)!r} does not exist")
        best = self.directory / "best.pt"
        if not best.is_file():
            raise UserError(
                f"run directory {str(directory)!r} has no best.pt: has it finished an epoch?"
            )
        self.device = torch.device(device)
        try:
            # One read: a run still training may replace best.pt between two.
            state = load_checkpoint(best, map_location=self.device)
            self.model, self.spec = sequence_vae_from_state(state)
            # Which weights these are (None: a checkpoint of a version that did not say).
            self.weights = {"epoch": state.get("epoch"), "step": state.get("step")}
            self.finished = (self.directory / "metrics.json").is_file()
            self.vocab = Vocabulary.load(self.directory / "vocab.json")
            self.config: dict[str, Any] = read_json(self.directory / "config.json")
        except (OSError, ValueError) as error:
            raise UserError(f"cannot read the run in {str(directory)!r}: {error}") from error

    def unfinished_note(self) -> str | None:
        """A line saying which weights these are while the run still trains; None once done."""
        if self.finished:
            return None
        return (
            f"note: the run has not finished: these are its best weights so far "
            f"(epoch {self.weights['epoch']}, step {self.weights['step']})"
        )

    def corpus_file(self, split: str) -> Path:
        """The corpus file of ``split`` (``train``, ``valid`` or ``test``)."""
        data_dir = self.config.get("data_dir")
        if data_dir is None:  # the synthetic corpus is written next to the run directories
            data_dir = self.directory.parent / "corpus"
        return Path(data_dir) / f"{split}.txt"

    def encode(self, sentence: str) -> list[int]:
        """Word ids of a whitespace-separated ``sentence``; unknown words become ``<unk>``."""
        if self.config.get("tokenizer", "words") != "words":
            raise UserError(
                f"tokenizer {self.config['tokenizer']!r}: only runs on the corpus's own words "
                "can be analysed on text for now"
            )
        words = sentence.split()
        if not words:
            raise UserError(f"sentence {sentence!r} has no words")
        return self.vocab.encode(words)

    def sentences(
        self, split: str, count: int, seed: int, max_words: int | None
    ) -> list[list[int]]:
        """``count`` sentences of at most ``max_words`` words (None: any) from a split, seeded."""
        lines = [
            line
            for line in read_lines(self.corpus_file(split))
            if max_words is None or len(line.split()) <= max_words
        ]
        if not lines:
            raise UserError(f"no sentence of at most {max_words} words in {split}")
        chosen = random.Random(seed).sample(lines, min(count, len(lines)))
        return [self.encode(line) for line in chosen]

    def generator(self, seed: int) -> torch.Generator:
        """A random generator on the model's device, seeded with ``seed``."""
        return torch.Generator(self.device).manual_seed(seed)

    def text(self, ids: Sequence[int]) -> str:
        """Word ids as one space-separated string."""
        return " ".join(self.vocab.decode(ids))
