"""Trustworthy runs (issue 13): every user error is one clear line.

Comparison tables, flag ranges, corpus and config errors, --help, the byte-order mark and
the optimizer flags. One section per item of the issue, each through the recipes' command
lines on a tiny corpus. The library modules are imported as modules, so that a missing
name fails its test alone. Runs that go wrong are in tests/recipes/test_trust_runs.py.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

import advmask.seqvae.trainer as trainer_module
from advmask.seqvae import data as datasets
from tests.recipes._trust_helpers import (
    SMALL,
    assert_one_line_error,
    run,
    run_dir,
    write_corpus,
)
from tests.recipes.test_recipe import load_recipe


# --------------------------------------------------------------------------------------------
# 3. Tables
# --------------------------------------------------------------------------------------------
def _fake_run(folder: Path, seed: int, lr: float, neg_elbo: float) -> Path:
    folder.mkdir(parents=True)
    section = {"neg_elbo": neg_elbo, "kl": 1.0, "ppl_elbo": neg_elbo, "num_sequences": 2}
    metrics = {"model": "ptb none", "dropout": "none", "seed": seed, "test": section}
    config = {"preset": "ptb", "lr": lr, "seed": [seed], "dropout": ["none"], "out": "runs"}
    config["model"] = {"dropout": "none", "rate": 0.0, "decoder": "lstm"}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_compare_averages_only_runs_that_differ_by_the_seed(tmp_path, capsys) -> None:
    compare = load_recipe("compare")
    root = tmp_path / "runs" / "ptb"
    _fake_run(root / "a-seed0", 0, lr=1.0, neg_elbo=9999.0)
    _fake_run(root / "a-seed1", 1, lr=1.0, neg_elbo=9997.0)
    _fake_run(root / "b-seed0", 0, lr=0.5, neg_elbo=1999.0)
    for other in ("corpus", "sentencepiece", "analysis"):  # beside the runs, not runs
        (root / other).mkdir()
        (root / other / "train.txt").write_text("x\n")
    compare.main(sorted(map(str, root.glob("*/"))))
    printed = capsys.readouterr().out
    assert "9998.00 (1.41)" in printed and "1999.00" in printed
    assert "5999" not in printed
    header = next(line for line in printed.splitlines() if "model" in line)
    assert "lr" in header.split() and "rows differ in lr" in " ".join(printed.split())


def test_compare_names_a_damaged_metrics_file(tmp_path, capsys) -> None:
    compare = load_recipe("compare")
    folder = _fake_run(tmp_path / "none-seed0", 0, lr=1.0, neg_elbo=1.0)
    (folder / "metrics.json").write_text('{"model": "ptb none", ')
    with pytest.raises(SystemExit) as info:
        compare.main([str(folder)])
    assert_one_line_error(info.value.code, capsys.readouterr().err, "metrics.json:1")


def test_sentencepiece_perplexity_is_per_word_of_the_raw_text(recipe, corpus, tmp_path):
    out = tmp_path / "runs"
    argv = [*SMALL, "--data-dir", str(corpus), "--out", str(out), "--dropout", "none"]
    argv += ["--epochs", "1", "--tokenizer", "sentencepiece", "--sentencepiece-vocab-size", "24"]
    (result,) = recipe.main(argv)
    lines = (corpus / "test.txt").read_text().splitlines()
    words = sum(len(line.split()) for line in lines)
    test = result["test"]
    assert test["num_words"] == words and test["num_predictions"] == words + len(lines)
    assert test["num_pieces"] > words
    assert test["pieces_per_word"] == pytest.approx(test["num_pieces"] / words)
    total = test["neg_elbo"] * len(lines)
    assert test["ppl_elbo"] == pytest.approx(math.exp(total / (words + len(lines))))
    assert test["piece_ppl_elbo"] == pytest.approx(
        math.exp(total / (test["num_pieces"] + len(lines)))
    )


# --------------------------------------------------------------------------------------------
# 4. Ranges
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--grad-clip", "-1"),
        ("--lr-decay", "-1"),
        ("--epochs", "0"),
        ("--log-every", "0"),
        ("--max-train-sequences", "0"),
        ("--test-iw-samples", "-1"),
        ("--rate", "1.5"),
        ("--batch-size", "0"),
        ("--ema-decay", "1"),
        ("--patience", "0"),
        ("--dropout-in", "1"),
        ("--lr", "0"),
    ],
)
def test_out_of_range_flags_are_one_line_naming_flag_and_value(recipe, flag, value, capsys):
    code, _, err = run(recipe, [flag, value], capsys)
    assert_one_line_error(code, err, f"argument {flag}:", value)


def test_too_small_valid_split_is_refused_before_training(
    recipe, tmp_path, monkeypatch, capsys
) -> None:
    corpus = write_corpus(tmp_path / "corpus", sizes={"train": 40, "valid": 1, "test": 8})

    def never(*args, **kwargs):
        raise AssertionError("trained although the data cannot be evaluated")

    monkeypatch.setattr(trainer_module, "train_step", never)
    argv = [*SMALL, "--data-dir", str(corpus), "--out", str(tmp_path / "runs")]
    code, _, err = run(recipe, argv, capsys)
    assert_one_line_error(code, err, "valid.txt", "1 sequences")


# --------------------------------------------------------------------------------------------
# 7. User errors are one line
# --------------------------------------------------------------------------------------------
def test_missing_corpus_folder_is_one_line(recipe, tmp_path, capsys) -> None:
    code, _, err = run(recipe, ["--preset", "yelp", "--out", str(tmp_path)], capsys)
    assert_one_line_error(code, err, "yelp")


def test_bad_corpus_line_is_one_line_naming_file_and_line(recipe, corpus, tmp_path, capsys):
    lines = (corpus / "valid.txt").read_text().splitlines()
    lines[3] = "   "
    (corpus / "valid.txt").write_text("\n".join(lines) + "\n")
    argv = [*SMALL, "--data-dir", str(corpus), "--out", str(tmp_path / "runs")]
    code, _, err = run(recipe, argv, capsys)
    assert_one_line_error(code, err, f"{corpus / 'valid.txt'}:4: blank line")


def test_bad_flag_value_is_one_line(recipe, capsys) -> None:
    code, _, err = run(recipe, ["--epochs", "many"], capsys)
    assert_one_line_error(code, err, "--epochs", "many")
    assert "usage:" not in err


def test_damaged_config_json_on_resume_is_one_line(recipe, corpus, tmp_path, capsys) -> None:
    out = tmp_path / "runs"
    argv = [*SMALL, "--data-dir", str(corpus), "--out", str(out), "--dropout", "none"]
    recipe.main([*argv, "--epochs", "1"])
    capsys.readouterr()
    (run_dir(out) / "config.json").write_text("{not json")
    code, _, err = run(recipe, [*argv, "--epochs", "1", "--resume"], capsys)
    assert_one_line_error(code, err, "config.json:1: not valid JSON")


# --------------------------------------------------------------------------------------------
# 9. --help
# --------------------------------------------------------------------------------------------
def _help(recipe, argv: list[str], capsys) -> dict[str, str]:
    """{flag: its help text} of ``--help``."""
    code, out, _ = run(recipe, [*argv, "--help"], capsys)
    assert code == 0
    entries: dict[str, str] = {}
    flag = None
    for line in out.split("options:", 1)[1].splitlines():
        match = re.match(r"^  (--[a-z-]+)", line)
        if match:
            flag = match.group(1)
            entries[flag] = line[len(match.group(0)) :]
        elif flag:
            entries[flag] += " " + line.strip()
    return {name: " ".join(text.split()) for name, text in entries.items()}


def test_help_shows_the_presets_defaults(recipe, capsys) -> None:
    synthetic = _help(recipe, [], capsys)
    assert "default: 8)" in synthetic["--epochs"]
    assert "default: 128)" in synthetic["--hidden-size"]
    ptb = _help(recipe, ["--preset", "ptb"], capsys)
    assert "default: 100)" in ptb["--epochs"] and "default: 1024)" in ptb["--hidden-size"]
    assert all(text.count("default:") == 1 for text in ptb.values() if "default" in text)
    import advmask

    assert all(name in ptb["--relaxation"] for name in advmask.RELAXATIONS)


# --------------------------------------------------------------------------------------------
# 10. A byte-order mark is not part of the first word
# --------------------------------------------------------------------------------------------
def test_byte_order_mark_is_not_part_of_the_first_word(tmp_path) -> None:
    folder = write_corpus(tmp_path / "corpus")
    for split in ("train", "valid", "test"):
        path = folder / f"{split}.txt"
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    corpus = datasets.load_corpus(folder)
    assert "\ufeffthe" not in corpus.vocab.to_dict()["tokens"]
    assert corpus.vocab.decode(corpus.splits["train"][0][:1]) == ["the"]


def test_optimizer_flag_trains_the_vae_with_adam_at_its_own_default_rate(
    recipe, corpus, tmp_path, monkeypatch
):
    built = []

    def spy_adam(parameters, lr):
        parameters = list(parameters)
        built.append((len(parameters), lr))
        return real_adam(parameters, lr)

    real_adam = recipe.adam
    monkeypatch.setattr(recipe, "adam", spy_adam)
    argv = [*SMALL, "--data-dir", str(corpus), "--dropout", "adversarial", "--max-steps", "2"]
    argv += ["--adversary-lr", "0.01"]
    recipe.main([*argv, "--out", str(tmp_path / "adam"), "--optimizer", "adam"])
    folder = tmp_path / "adam" / "synthetic" / "adversarial-seed0"
    saved = json.loads((folder / "config.json").read_text())
    assert (saved["optimizer"], saved["lr"]) == ("adam", 1e-3)  # the value used, not None
    assert saved["model"]["decoder_init"] == "authors"
    # Two Adams: the VAE's (--lr's Adam default; most tensors) and the adversary's.
    vae, adversary = sorted(built, reverse=True)
    assert (vae[1], adversary[1]) == (1e-3, 0.01)
    built.clear()
    recipe.main([*argv, "--out", str(tmp_path / "sgd"), "--decoder-init", "pytorch"])
    folder = tmp_path / "sgd" / "synthetic" / "adversarial-seed0"
    saved = json.loads((folder / "config.json").read_text())
    assert (saved["optimizer"], saved["lr"]) == ("sgd", 1.0)  # the paper's optimiser
    assert saved["model"]["decoder_init"] == "pytorch"
    assert [lr for _, lr in built] == [0.01]  # the adversary's alone


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--optimizer", "rmsprop"], "argument --optimizer: invalid choice: 'rmsprop'"),
        (["--decoder-init", "x"], "argument --decoder-init: invalid choice: 'x'"),
        (["--decoder", "transformer", "--decoder-init", "pytorch"], "argument --decoder-init"),
    ],
)
def test_bad_optimizer_or_init_is_one_line(recipe, flags, message, capsys) -> None:
    code, _, err = run(recipe, flags, capsys)
    assert_one_line_error(code, err, message)
