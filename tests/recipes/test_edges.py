"""Nothing silent at the edges (issue 36): one run identity, one-line errors outside the flag
parser, stops that keep work.

One section per item of the issue's "What to build", each through the recipes' command lines on
a tiny corpus where it can be.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from advmask.maskers import drop_probabilities
from advmask.seqvae import identity, report
from advmask.seqvae.analysis import studies
from advmask.training import checkpoint as checkpoints
from tests.recipes._trust_helpers import SMALL, run
from tests.recipes.test_recipe import ROOT, load_recipe, this_checkout


@pytest.fixture(scope="module")
def compare():
    return load_recipe("compare")


def one_line_error(code: int, err: str, *fragments: str) -> str:
    """The error line of a refused command (rc 2, one line, no traceback), checked."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def exit_code(main, argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1
    return 0


# --------------------------------------------------------------------------------------------
# One run identity
# --------------------------------------------------------------------------------------------
def fake_run(folder: Path, seed: int, label: str = "x adversarial [0.4]", **settings: Any) -> Path:
    """A finished adversarial run as the recipe writes it, with ``settings`` in its config."""
    model = {"dropout": "adversarial", "rate": 0.4, "kl_weight": 1.0, "decoder": "lstm"}
    model |= {k: v for k, v in settings.items() if k in model}
    config = {"preset": "x", "lr": 1.0, "seed": seed, "dropout": "adversarial", "rate": 0.4,
              "kl_weight": 1.0, "out": str(folder.parent), "model": model}  # fmt: skip
    config |= settings
    test = {"neg_elbo": 10.0 + seed, "kl": 1.0, "mutual_information": 0.5, "nll_iw": 9.0}
    metrics = {"model": label, "preset": "x", "dropout": "adversarial", "rate": 0.4,
               "seed": seed, "valid": test, "test": test}  # fmt: skip
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_the_settings_that_do_not_define_a_run_are_flags_of_the_recipe(recipe) -> None:
    flags = {field.name for field in dataclasses.fields(recipe.Config)}
    assert flags >= identity.NOT_RESULT_SETTINGS
    # Where it ran and how often it logged; never what it computed.
    assert not identity.NOT_RESULT_SETTINGS & {"seed", "lr", "rate", "epochs", "precision"}


def test_compare_refuses_two_copies_of_one_run_naming_both(compare, tmp_path, capsys) -> None:
    first = [fake_run(tmp_path / "a" / f"adversarial-seed{s}", s) for s in (0, 1)]
    copies = []
    for folder in first:
        copies.append(tmp_path / "b" / folder.name)
        shutil.copytree(folder, copies[-1])
    code = exit_code(compare.main, [*map(str, first), *map(str, copies)])
    one_line_error(code, capsys.readouterr().err, str(first[0]), str(copies[0]), "seed 0")


def test_one_setting_under_two_labels_is_one_row_and_a_changed_one_is_not() -> None:
    # The label names lambda only when a grid had several: the settings decide, not the label.
    runs = [
        {"model": "x adversarial [0.4]", "seed": 0, "config": {"lr": 1.0, "seed": 0}},
        {"model": "x adversarial [0.4, λ=1]", "seed": 1, "config": {"lr": 1.0, "seed": 1}},
        {"model": "x adversarial [0.4]", "seed": 2, "config": {"lr": 0.5, "seed": 2}},
    ]
    groups = report.group_runs(runs)
    assert [len(group) for group in groups.values()] == [2, 1]
    with pytest.raises(identity.DuplicateRunError, match="seed 1"):
        report.group_runs([*runs, {**runs[1], "model": "another label"}])


def test_comparison_lines_pair_only_runs_of_one_setting() -> None:
    def run(dropout: str, seed: int, lr: float, mi: float) -> dict[str, Any]:
        model = {"dropout": dropout, "rate": 0.4}
        config = {"lr": lr, "seed": seed, "model": model}
        test = {"mutual_information": mi, "kl": 1.0, "nll_iw": 1.0}
        return {"model": f"x {dropout} [0.4]", "dropout": dropout, "rate": 0.4, "seed": seed,
                "config": config, "test": test}  # fmt: skip

    runs = [run("adversarial", 0, 1.0, 3.0), run("uniform", 0, 1.0, 1.0)]
    runs.append(run("uniform", 0, 0.5, 100.0))  # another lr: not this adversary's rival
    lines = report.comparison_lines(runs)
    # Two uniform rows: each named by its table label.
    assert lines == ["adversarial [0.4] vs x uniform [0.4]: MI +2.00, KL +0.00, NLL_IW +0.00 "
                     "nats (1 seed, no se)"]  # fmt: skip


def test_rate_ablation_refuses_runs_of_other_settings(analyze, tmp_path, capsys) -> None:
    folders = [
        fake_run(tmp_path / "runs" / "adversarial-lambda0.1-seed0", 0, kl_weight=0.1),
        fake_run(tmp_path / "runs" / "adversarial-lambda10-seed0", 0, kl_weight=10.0),
    ]
    code = exit_code(analyze.main, ["rate-ablation", *map(str, folders)])
    one_line_error(code, capsys.readouterr().err, "kl_weight", "0.1", "10.0")
    assert not (tmp_path / "runs" / "analysis").exists()
    with pytest.raises(ValueError, match="differ in lr"):
        studies.rate_ablation([json.loads(json.dumps(r)) | {"config": {"lr": lr, "seed": 0}}
                               for r, lr in (({"dropout": "uniform", "rate": 0.2, "seed": 0,
                                               "test": {}}, 1.0),
                                             ({"dropout": "uniform", "rate": 0.4, "seed": 0,
                                               "test": {}}, 0.5))])  # fmt: skip


def test_extending_a_grid_with_resume_reuses_its_finished_run(
    recipe, compare, corpus, tmp_path, capsys
) -> None:
    common = [*SMALL, "--data-dir", str(corpus), "--out", str(tmp_path), "--dropout",
              "adversarial"]  # fmt: skip
    assert run(recipe, common, capsys)[0] == 0
    first = tmp_path / "synthetic" / "adversarial-seed0"
    before = (first / "metrics.json").read_text()
    code, out, _ = run(recipe, [*common, "--rate", "0.4", "0.5", "--resume"], capsys)
    assert code == 0 and "finished earlier with these settings, reusing it" in out
    assert sorted(p.name for p in (tmp_path / "synthetic").iterdir() if p.name != "corpus") == [
        "adversarial-rate0.5-seed0", "adversarial-seed0",
    ]  # fmt: skip
    assert (first / "metrics.json").read_text() == before
    # The command the recipe prints counts each run once.
    compare.main([str(p) for p in sorted((tmp_path / "synthetic").glob("adversarial-*"))])
    rows = [line for line in capsys.readouterr().out.splitlines() if "adversarial [" in line]
    assert len(rows) == 2 and all("│     1 │" in row for row in rows), rows


# --------------------------------------------------------------------------------------------
# Every value checked before anything is written; the run folder's OSErrors as one line
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flags", "fragments"),
    [
        (["--device", "foo"], ["argument --device", "'foo'"]),
        (["--device", "cuda:abc"], ["argument --device", "'cuda:abc'"]),
        pytest.param(["--device", "cuda"], ["argument --device", "CUDA is not available"],
                     marks=pytest.mark.skipif(torch.cuda.is_available(), reason="has CUDA")),
        (["--dropout", "adversarial", "--relaxation", "sst", "--relaxation-options",
          "temperature=-1"], ["argument --relaxation-options", "-1"]),
        (["--seed", "0", "0"], ["argument --seed", "0 is given twice"]),
        (["--rate", "0.4", "0.4"], ["argument --rate", "0.4 is given twice"]),
        (["--baseline", "cyclical", "--kl-cycles", "13"], ["argument --kl-cycles", "12", "13"]),
    ],
)  # fmt: skip
def test_bad_values_are_one_line_naming_the_flag_and_nothing_is_written(
    recipe, corpus, tmp_path, capsys, flags, fragments
) -> None:
    out = tmp_path / "out"
    code, _, err = run(recipe, [*SMALL, "--data-dir", str(corpus), "--out", str(out), *flags],
                       capsys)  # fmt: skip
    one_line_error(code, err, *fragments)
    assert not out.exists()


def test_cyclical_with_fewer_epochs_than_cycles_trains_when_there_are_steps_enough(
    recipe, corpus, tmp_path, capsys
) -> None:
    # 2 epochs of 6 steps: 12 steps for 4 cycles (the parse-time check counted 2).
    argv = [*SMALL, "--data-dir", str(corpus), "--out", str(tmp_path), "--dropout", "none",
            "--baseline", "cyclical", "--kl-cycles", "4"]  # fmt: skip
    assert run(recipe, argv, capsys)[0] == 0


def test_out_that_is_a_file_or_not_writable_is_one_line(
    recipe, corpus, tmp_path, monkeypatch, capsys
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for out, fragment in ((a_file, "is a file"), (a_file / "runs", "is a file")):
        code, _, err = run(recipe, [*SMALL, "--data-dir", str(corpus), "--out", str(out)], capsys)
        one_line_error(code, err, "argument --out", str(a_file), fragment)
    # Read-only (faked: the tests may run as root, who may write anywhere).
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    code, _, err = run(recipe, [*SMALL, "--data-dir", str(corpus), "--out", str(tmp_path / "r")],
                       capsys)  # fmt: skip
    one_line_error(code, err, "argument --out", str(tmp_path), "permission denied")


def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(
    recipe, corpus, tmp_path, monkeypatch, capsys
) -> None:
    argv = [*SMALL, "--data-dir", str(corpus), "--out", str(tmp_path), "--dropout", "uniform"]
    real_save, saves = torch.save, []

    def full_after_two(content, file, *args, **kwargs):  # best.pt and last.pt of epoch 1 fit
        saves.append(1)
        if len(saves) > 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(content, file, *args, **kwargs)

    monkeypatch.setattr(checkpoints.torch, "save", full_after_two)
    code, _, err = run(recipe, argv, capsys)
    folder = tmp_path / "synthetic" / "uniform-seed0"
    one_line_error(code, err, "No space left on device", str(folder),
                   f"the last checkpoint {folder / 'last.pt'} is kept")  # fmt: skip
    assert checkpoints.load_checkpoint(folder / "last.pt")["progression"]["epoch"] == 1
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setattr(checkpoints.torch, "save", real_save)  # room again: it continues
    code, out, _ = run(recipe, [*argv, "--resume"], capsys)
    assert code == 0 and "resuming at epoch 1" in out


def test_lost_best_weights_are_one_line_and_the_advice_works(
    recipe, corpus, tmp_path, capsys
) -> None:
    argv = [*SMALL, "--data-dir", str(corpus), "--out", str(tmp_path), "--dropout", "uniform"]
    assert run(recipe, argv, capsys)[0] == 0
    folder = tmp_path / "synthetic" / "uniform-seed0"
    (folder / "metrics.json").unlink()  # stopped before its test
    (folder / "best.pt").write_bytes(b"garbage")
    code, _, err = run(recipe, [*argv, "--resume"], capsys)
    one_line_error(code, err, str(folder / "best.pt"), f"delete {folder} to train it again")
    (folder / "best.pt").unlink()  # what an earlier message advised: still one line
    code, _, err = run(recipe, [*argv, "--resume"], capsys)
    one_line_error(code, err, str(folder / "best.pt"), f"delete {folder} to train it again")
    shutil.rmtree(folder)  # what it advises now
    assert run(recipe, [*argv, "--resume"], capsys)[0] == 0


def test_a_relative_data_dir_is_stored_absolute(
    recipe, corpus, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(corpus.parent)
    argv = [*SMALL, "--data-dir", corpus.name, "--out", "runs", "--dropout", "none"]
    assert run(recipe, argv, capsys)[0] == 0
    config = json.loads((corpus.parent / "runs/synthetic/none-seed0/config.json").read_text())
    assert config["data_dir"] == str(corpus.resolve())


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["dropped", "--num-samples", "0"], ["argument --num-samples", ">= 1", "0"]),
        (["interpolate", "--steps", "1"], ["argument --steps", ">= 2", "1"]),
        (["sample", "--num-samples", "0"], ["argument --num-samples", "0"]),
        (["sample", "--max-length", "0"], ["argument --max-length", "0"]),
        (["homotopy", "--scale", "nan"], ["argument --scale", "nan"]),
        (["pmi", "--num-resamples", "0"], ["argument --num-resamples", "0"]),
        (["dropped", "--num-sentences", "-3"], ["argument --num-sentences", "-3"]),
        (["homotopy", "--split", "foo"], ["argument --split", "'foo'"]),
        (["sample", "--device", "foo"], ["argument --device", "'foo'"]),
        pytest.param(["sample", "--device", "cuda"], ["argument --device", "CUDA"],
                     marks=pytest.mark.skipif(torch.cuda.is_available(), reason="has CUDA")),
    ],
)  # fmt: skip
def test_analyze_numbers_out_of_range_are_one_line_naming_the_flag(
    analyze, tmp_path, capsys, argv, fragments
) -> None:
    run_dir = tmp_path / "run"  # refused before the run is read: nothing is there
    code = exit_code(analyze.main, [str(run_dir), *argv])
    one_line_error(code, capsys.readouterr().err, *fragments)
    assert not run_dir.exists()


@pytest.mark.parametrize("command", ["sample", "rate-ablation"])
def test_analyze_out_that_cannot_be_written_is_one_line_before_any_work(
    analyze, runs, tmp_path, capsys, command
) -> None:
    a_file, run = tmp_path / "a-file", runs / "adversarial-seed0"
    a_file.write_text("x")
    before = sorted(run.rglob("*"))
    for out in (a_file, a_file / "results"):
        code = exit_code(analyze.main, [command, str(run), "--out", str(out)])
        one_line_error(code, capsys.readouterr().err, "argument --out", str(a_file), "is a file")
    assert a_file.read_text() == "x" and sorted(run.rglob("*")) == before


def test_analyze_default_out_that_cannot_be_written_is_one_line(
    analyze, runs, monkeypatch, capsys
) -> None:
    run = runs / "adversarial-seed0"
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # read-only, even for root
    code = exit_code(analyze.main, ["sample", str(run), "--num-samples", "2"])
    one_line_error(code, capsys.readouterr().err, str(run / "analysis"), "permission denied",
                   "pass --out")  # fmt: skip


def test_a_full_disk_under_analyze_is_one_line_naming_the_file(
    analyze, runs, tmp_path, monkeypatch, capsys
) -> None:
    def full(content, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(analyze, "save_json", full)
    out = tmp_path / "out"
    argv = ["sample", str(runs / "adversarial-seed0"), "--num-samples", "2", "--out", str(out)]
    code = exit_code(analyze.main, argv)
    one_line_error(code, capsys.readouterr().err, f"{out / 'samples.json'}: No space left")


# --------------------------------------------------------------------------------------------
# Analyses of a run in training; drop probabilities of impossible inputs
# --------------------------------------------------------------------------------------------
def test_pmi_of_a_run_in_training_records_its_weights_and_writes_only_to_out(
    recipe, analyze, corpus, tmp_path, capsys
) -> None:
    argv = [*SMALL, "--data-dir", str(corpus), "--out", str(tmp_path), "--dropout", "adversarial"]
    assert run(recipe, argv, capsys)[0] == 0
    folder = tmp_path / "synthetic" / "adversarial-seed0"
    (folder / "metrics.json").unlink()  # as while it trains
    elsewhere = tmp_path / "elsewhere"
    analyze.main([str(folder), "pmi", "--out", str(elsewhere), "--num-sentences", "4",
                  "--num-samples", "4", "--num-resamples", "10"])  # fmt: skip
    assert "has not finished" in capsys.readouterr().out
    assert not (folder / "pmi.json").exists()
    weights = json.loads((elsewhere / "pmi.json").read_text())["weights"]
    saved = checkpoints.load_checkpoint(folder / "best.pt")
    assert weights == {"epoch": saved["epoch"], "step": saved["step"], "run_finished": False}
    assert weights["epoch"] in (1, 2) and weights["step"] == 6 * weights["epoch"]  # 6 a epoch


def test_drop_probabilities_refuse_k_above_the_eligible_positions_and_nan_std() -> None:
    eligible = torch.ones(1, 5, dtype=torch.bool)
    with pytest.raises(ValueError, match="row 0 has k 7 and 5 eligible"):
        drop_probabilities(torch.zeros(1, 5), torch.ones(1, 5), torch.tensor([7]), eligible)
    with pytest.raises(ValueError, match="std nan"):
        drop_probabilities(torch.zeros(1, 5), torch.full((1, 5), math.nan), torch.tensor([2]),
                           eligible)  # fmt: skip


# --------------------------------------------------------------------------------------------
# --jobs: a Ctrl-C at any moment is one line and status 130
# --------------------------------------------------------------------------------------------
# Not sooner: before the recipe's first line runs, Python itself is starting up.
@pytest.mark.parametrize("delay", [1.5, 3.0, 6.0])
def test_ctrl_c_at_any_moment_of_a_jobs_run_is_one_line_and_130(corpus, tmp_path, delay) -> None:
    # As a terminal sends it: SIGINT to the whole process group, while the parent imports,
    # while its processes start (torch's import) or while they train.
    command = [sys.executable, str(ROOT / "recipes" / "seqvae_awd.py"), *SMALL, "--jobs", "2",
               "--data-dir", str(corpus), "--out", str(tmp_path), "--epochs", "100",
               "--patience", "100"]  # fmt: skip
    # A narrow terminal: the stop's line names a long path and must stay one line.
    env = {**this_checkout(), "COLUMNS": "60"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, start_new_session=True)  # fmt: skip
    time.sleep(delay)
    os.killpg(process.pid, signal.SIGINT)
    try:
        out, err = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        # Not left running into the next tests (its pipes and processes would fail them).
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"a Ctrl-C {delay} s after the start was not honoured within 120 s")
    if process.returncode == 0:
        pytest.fail(f"not interrupted after {delay} s: the runs ended first")
    assert process.returncode == 130, err
    assert "Traceback" not in err and "Error" not in err, err
    last = out.strip().splitlines()[-1]
    assert last == "interrupted" or last.startswith("stopped at step"), out[-500:]
