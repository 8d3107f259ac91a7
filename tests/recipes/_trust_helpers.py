"""Runs of the recipes' command lines on a tiny corpus, shared by the trust tests and others."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

import advmask.seqvae.trainer as trainer_module
from tests.recipes.test_recipe import TINY_MODEL, load_recipe

WORDS = ["the", "a", "cat", "dog", "sat", "ran", "on", "under", "mat", "rug", "and", "big"]
WORDS += ["small", "red", "blue"]


def write_corpus(folder: Path, seed: int = 0, sizes: dict[str, int] | None = None) -> Path:
    """A corpus folder of short random sentences over :data:`WORDS` (the same vocabulary for
    every seed: each word appears in the first line)."""
    generator = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (sizes or {"train": 48, "valid": 8, "test": 8}).items():
        lines = [" ".join(WORDS)] if split == "train" else []
        while len(lines) < count:
            length = int(torch.randint(2, 9, (1,), generator=generator))
            ids = torch.randint(0, len(WORDS), (length,), generator=generator).tolist()
            lines.append(" ".join(WORDS[i] for i in ids))
        (folder / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return folder


# Two epochs of 6 steps on the corpus above.
SMALL = [*TINY_MODEL, "--batch-size", "8", "--test-iw-samples", "4", "--log-every", "2"]


@pytest.fixture(scope="module")
def recipe():
    return load_recipe("seqvae_awd")


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus")


def run(recipe, argv: list[str], capsys) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``recipe.main(argv)``."""
    try:
        recipe.main(argv)
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_interrupted_at_the_first_step(recipe, argv, monkeypatch, capsys) -> int:
    """Run ``argv`` with a SIGINT during its first step (so ``last.pt`` exists); exit status."""
    real_step = trainer_module.train_step

    def interrupted_step(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "train_step", interrupted_step)
    code, _, _ = run(recipe, argv, capsys)
    monkeypatch.setattr(trainer_module, "train_step", real_step)
    return code


def assert_one_line_error(code: int, err: str, *fragments: str, status: int = 2) -> None:
    assert code == status, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def run_dir(out: Path, dropout: str = "none") -> Path:
    return out / "synthetic" / f"{dropout}-seed0"
