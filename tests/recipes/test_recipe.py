"""End-to-end runs of recipes/seqvae_awd.py on a tiny synthetic corpus (seconds)."""

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import advmask.seqvae.trainer as trainer_module

ROOT = Path(__file__).resolve().parents[2]


def this_checkout() -> dict[str, str]:
    """The environment in which a recipe started as a process imports this checkout's advmask
    (not an installed one)."""
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def load_recipe(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@contextmanager
def sigint_after_step(recipe, monkeypatch, step: int) -> Iterator[None]:
    """Inside the block, the recipe's ``train_step`` (its trainer's) raises SIGINT right after
    its ``step``-th call (1-based), as a user's Ctrl-C between two steps would."""
    real_step = trainer_module.train_step
    calls = {"n": 0}

    def interrupted_step(*args, **kwargs):
        stats = real_step(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == step:
            signal.raise_signal(signal.SIGINT)
        return stats

    monkeypatch.setattr(trainer_module, "train_step", interrupted_step)
    try:
        yield
    finally:
        monkeypatch.setattr(trainer_module, "train_step", real_step)


# A model small enough to train in seconds on the synthetic corpus (shared with the DDP test).
TINY_MODEL = [
    "--seed",  # one seed (the demo's preset has three)
    "0",
    "--epochs",
    "2",
    "--embedding-dim",
    "16",
    "--hidden-size",
    "24",
    "--latent-dim",
    "4",
    "--adversary-embedding-dim",
    "8",
    "--adversary-hidden-size",
    "8",
    "--kl-warmup-steps",
    "10",
    "--checkpoint-every",
    "0",
    "--device",
    "cpu",
    "--jobs",  # in this process: a test's module is not importable by a process of its own
    "1",
]
ALL_DROPOUTS = ("none", "uniform", "adversarial")  # the demo's preset trains the last two
TINY = [
    "--max-train-sequences",
    "96",
    "--batch-size",
    "16",
    "--test-iw-samples",
    "8",
    "--log-every",
    "2",
    *TINY_MODEL,
]


@pytest.fixture(scope="module")
def recipe():
    return load_recipe("seqvae_awd")


@pytest.fixture(scope="module")
def tiny_runs(recipe, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return out, recipe.main([*TINY, "--out", str(out), "--dropout", *ALL_DROPOUTS])


def test_every_variant_trains_and_reports_finite_metrics(tiny_runs) -> None:
    out, results = tiny_runs
    assert [r["dropout"] for r in results] == ["none", "uniform", "adversarial"]
    for result in results:
        for split in ("valid", "test"):
            metrics = result[split]
            for key in ("neg_elbo", "kl", "reconstruction", "ppl_elbo", "mutual_information"):
                assert math.isfinite(metrics[key]), (result["model"], split, key)
            assert metrics["num_predictions"] == metrics["num_words"] + metrics["num_sequences"]
        # log p_IW >= ELBO holds in expectation; both are Monte-Carlo estimates, so the per-
        # sequence gap -ELBO - NLL_IW may be negative by noise, never by more than ~4 standard
        # errors (a sign or normalisation bug in either estimate moves it by whole nats).
        test = result["test"]
        assert test["iw_gap"] == pytest.approx(
            test["neg_elbo"] - test["nll_iw"], abs=1e-4
        )  # float32 sums
        assert test["iw_gap"] >= -4 * test["iw_gap_se"], (test["iw_gap"], test["iw_gap_se"])
        assert set(result["probe"]) == {"topic", "style"}
        assert all(0.0 <= accuracy <= 1.0 for accuracy in result["probe"].values())
        run_dir = out / "synthetic" / f"{result['dropout']}-seed0"
        for name in ("config.json", "metrics.json", "vocab.json", "log.csv", "best.pt", "last.pt"):
            assert (run_dir / name).is_file(), name


def test_best_checkpoint_loads_without_the_recipe(tiny_runs) -> None:
    from advmask.seqvae.factory import load_sequence_vae

    out, _ = tiny_runs
    model, spec = load_sequence_vae(out / "synthetic" / "adversarial-seed0" / "best.pt")
    assert spec.dropout == "adversarial"
    assert not model.training


def test_compare_reads_the_run_directories(tiny_runs, capsys) -> None:
    out, _ = tiny_runs
    compare = load_recipe("compare")
    compare.main([str(p) for p in sorted((out / "synthetic").glob("*-seed0"))])
    printed = capsys.readouterr().out
    assert "synthetic adversarial" in printed and "-ELBO" in printed


def test_jobs_train_the_runs_side_by_side_with_the_same_results(tmp_path) -> None:
    # As a user runs it (a test's module is not importable by a process of its own).
    def run(*flags: str) -> str:
        command = [sys.executable, str(ROOT / "recipes" / "seqvae_awd.py"), *TINY]
        command += ["--dropout", *ALL_DROPOUTS, *flags]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=300, check=False, env=this_checkout()
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    alone = run("--jobs", "1", "--threads", "1", "--out", str(tmp_path / "alone"))
    side_by_side = run("--jobs", "2", "--out", str(tmp_path / "jobs"))
    assert "3 runs" not in alone and "epoch 2: valid" in alone
    assert "3 runs, 2 at a time: a line as each ends" in side_by_side
    # Each process prints nothing; this one prints a line per run as it ends, then the table.
    assert "epoch 2: valid" not in side_by_side
    for dropout in ("none", "uniform", "adversarial"):
        line = f"synthetic {dropout}{' [0.4]' if dropout != 'none' else ''} seed 0: test -ELBO "
        assert side_by_side.count(line) == 1, (line, side_by_side)
        # One thread per process either way: the same computation, the same numbers.
        metrics = [
            json.loads(
                (tmp_path / name / "synthetic" / f"{dropout}-seed0" / "metrics.json").read_text()
            )
            for name in ("alone", "jobs")
        ]
        assert (
            metrics[0]["test"] == metrics[1]["test"] and metrics[0]["probe"] == metrics[1]["probe"]
        )


def test_ctrl_c_with_jobs_stops_every_run_and_keeps_its_checkpoint(tmp_path) -> None:
    out = tmp_path / "runs"
    flags = [*TINY, "--jobs", "2", "--dropout", "none", "uniform", "--epochs", "500"]
    command = [sys.executable, str(ROOT / "recipes" / "seqvae_awd.py"), *flags, "--out", str(out)]
    # A session of its own: the signal reaches the recipe and its processes, as Ctrl-C does.
    recipe = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, env=this_checkout(),
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while len(list(out.glob("synthetic/*-seed0/log.csv"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(recipe.pid, signal.SIGINT)
    printed, _ = recipe.communicate(timeout=120)
    assert recipe.returncode == 130, printed[-2000:]
    assert "checkpoint in" in printed and "continue with --resume" in printed
    for dropout in ("none", "uniform"):
        run = out / "synthetic" / f"{dropout}-seed0"
        assert (run / "last.pt").is_file() and not (run / "metrics.json").exists(), dropout


def test_refuses_to_overwrite_an_existing_run(recipe, tiny_runs, capsys) -> None:
    out, _ = tiny_runs
    with pytest.raises(SystemExit) as info:
        recipe.main([*TINY, "--out", str(out), "--dropout", "none"])
    assert info.value.code == 2
    assert "already holds a run: pass --resume" in capsys.readouterr().err


def test_finished_run_is_reused_with_the_same_settings(recipe, tiny_runs) -> None:
    out, results = tiny_runs
    (reused,) = recipe.main([*TINY, "--out", str(out), "--dropout", "none", "--resume"])
    assert reused == results[0]


def test_resume_after_interruption_reproduces_the_run_exactly(recipe, tmp_path, monkeypatch):
    flags = [*TINY, "--dropout", "adversarial"]
    straight = recipe.main([*flags, "--out", str(tmp_path / "straight")])[0]

    # Mid-way through epoch 2 (6 steps per epoch).
    with sigint_after_step(recipe, monkeypatch, 9), pytest.raises(SystemExit) as stopped:
        recipe.main([*flags, "--out", str(tmp_path / "resumed")])
    assert stopped.value.code == 130
    resumed = recipe.main([*flags, "--out", str(tmp_path / "resumed"), "--resume"])[0]
    assert resumed["valid"] == straight["valid"]
    assert resumed["test"] == straight["test"]
    assert resumed["probe"] == straight["probe"]
    saved = json.loads(
        (tmp_path / "resumed" / "synthetic" / "adversarial-seed0" / "metrics.json").read_text()
    )
    assert saved["test"] == straight["test"]


def test_probe_pairs_each_posterior_mean_with_its_own_label() -> None:
    """Evaluation batches are length-bucketed; the probe must undo that order.

    A stand-in model whose posterior mean is a one-hot code of the sentence's label is perfectly
    probed only if means and labels are paired by sentence; paired in bucket order instead,
    the labels (independent of length) would be matched to the wrong sentences (~chance).
    """
    import torch

    from advmask.seqvae.data import make_batches
    from advmask.seqvae.probe import probe_factors

    generator = torch.Generator().manual_seed(0)
    splits, factors = {}, {}
    for split, size in (("train", 120), ("test", 60)):
        lengths = torch.randint(1, 12, (size,), generator=generator)
        labels = torch.randint(0, 3, (size,), generator=generator)
        # The label is written into the first word, so the stand-in encoder can read it.
        splits[split] = [
            [4 + int(label)] + [7] * (int(length) - 1)
            for length, label in zip(lengths, labels, strict=True)
        ]
        factors[split] = {"label": labels}

    class LabelEncoder:
        def posterior(self, tokens, lengths):
            mean = torch.nn.functional.one_hot(tokens[:, 1] - 4, 3).float()
            return mean, torch.zeros_like(mean)

    train, test = (make_batches(splits[s], 16, shuffle=False) for s in ("train", "test"))
    accuracy = probe_factors(LabelEncoder(), train, test, factors["train"], factors["test"])
    assert accuracy == {"label": 1.0}
