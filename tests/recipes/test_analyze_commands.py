"""The commands of recipes/analyze.py on tiny trained runs: the files they write, their
one-line errors, and a resumed run's score log.

The analyses they call are in tests/recipes/test_analysis.py.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import re
import shutil

import pytest
import torch

from advmask.seqvae.analysis import (
    sentence_pmi,
)
from advmask.seqvae.analysis.trained_run import TrainedRun
from advmask.seqvae.data import make_batches
from advmask.seqvae.factory import (
    build_sequence_vae,
    load_sequence_vae,
    save_sequence_vae,
)
from tests.recipes._analysis_helpers import SCORE_FLAGS, assert_png, assert_svg
from tests.recipes.test_recipe import TINY, load_recipe, sigint_after_step

torch.set_num_threads(1)


# --------------------------------------------------------------------------------------------
# The commands
# --------------------------------------------------------------------------------------------
def test_saliency_command_writes_html_and_probabilities(runs, analyze, tmp_path) -> None:
    run_dir = runs / "adversarial-seed0"
    result = analyze.main(
        [
            str(run_dir),
            "saliency",
            "--num-sentences",
            "3",
            "--num-samples",
            "200",
            "--out",
            str(tmp_path),
        ]
    )
    assert len(result["sentences"]) == 3
    for sentence in result["sentences"]:
        assert len(sentence["probability"]) == len(sentence["words"])
        assert all(0 <= p <= 1 for p in sentence["probability"])
        assert sum(sentence["probability"]) == pytest.approx(sentence["k"], abs=1e-3)  # rounding
        assert sum(sentence["sampled"]) == sentence["k"]
    assert (tmp_path / "saliency.html").read_text().startswith("<!DOCTYPE html>")
    one = analyze.main(
        [str(run_dir), "saliency", "--sentence", "a b zebra", "--out", str(tmp_path)]
    )
    assert one["sentences"][0]["words"][2] == "<unk>"


def test_dropped_command_writes_the_figure(runs, analyze) -> None:
    run_dir = runs / "adversarial-seed0"
    result = analyze.main(["dropped", str(run_dir), "--num-sentences", "40", "--num-samples", "50"])
    by_position = result["position in sentence"]
    assert sum(row["count"] for row in by_position) == sum(
        row["count"] for row in result["word frequency rank"]
    )
    assert all(0 <= row["probability"] <= 1 for row in by_position)
    assert_png(run_dir / "analysis" / "dropped.png")
    assert_svg(run_dir / "analysis" / "dropped.svg")


def test_latent_commands(runs, analyze, tmp_path) -> None:
    run_dir = str(runs / "adversarial-seed0")
    walk = analyze.main([run_dir, "interpolate", "--steps", "3", "--out", str(tmp_path)])
    assert [row["t"] for row in walk["steps"]] == [0.0, 0.5, 1.0]
    around = analyze.main([run_dir, "homotopy", "--num-samples", "3", "--out", str(tmp_path)])
    assert len(around["samples"]) == 3
    samples = analyze.main([run_dir, "sample", "--num-samples", "4", "--out", str(tmp_path)])
    assert len(samples["samples"]) == 4
    for name in ("interpolate", "homotopy", "samples"):
        assert (tmp_path / f"{name}.json").is_file()


PMI_KEYS = {
    "spearman",
    "spearman_ci",
    "mean_pmi_dropped",
    "mean_pmi_kept",
    "mean_pmi_uniform",
    "num_positions",
    "num_sequences",
    "z",
    "sentence",
}
SENTENCE_PMI_KEYS = {
    "spearman",
    "spearman_ci",
    "mean_pmi_dropped",
    "mean_pmi_kept",
    "mean_pmi_uniform",
}


def test_pmi_command_writes_pmi_json_in_the_run_folder(runs, analyze) -> None:
    run_dir = runs / "adversarial-seed0"
    flags = [
        "--num-sentences",
        "30",
        "--num-samples",
        "50",
        "--num-resamples",
        "100",
        "--threads",
        "1",
    ]
    result = analyze.main([str(run_dir), "pmi", *flags])
    saved = json.loads((run_dir / "pmi.json").read_text())
    assert saved == json.loads((run_dir / "analysis" / "pmi.json").read_text())
    assert set(saved) >= PMI_KEYS and saved["z"] == "posterior mean"
    assert saved == json.loads(json.dumps(result))  # what is returned is what is written
    assert isinstance(saved["spearman"], float) and -1 <= saved["spearman"] <= 1
    low, high = saved["spearman_ci"]
    assert -1 <= low <= saved["spearman"] <= high <= 1
    for key in ("mean_pmi_dropped", "mean_pmi_kept", "mean_pmi_uniform"):
        assert isinstance(saved[key], float) and math.isfinite(saved[key]), key
    # One position per word of the 30 sentences drawn (BOS, EOS and padding are not inputs).
    sentences = TrainedRun(run_dir).sentences("test", 30, 0, None)
    assert saved["num_sequences"] == 30
    assert saved["num_positions"] == sum(map(len, sentences))
    assert sum(b["count"] for b in saved["by_drop_probability"]) == saved["num_positions"]
    # The rest-of-sentence PMI pools what sentence_pmi computes on the same sentences.
    whole = saved["sentence"]
    assert set(whole) == {"pmi", *SENTENCE_PMI_KEYS}
    low, high = whole["spearman_ci"]
    assert -1 <= low <= whole["spearman"] <= high <= 1
    run = TrainedRun(run_dir)
    values = [
        sentence_pmi(run.model, batch.tokens, batch.lengths)
        for batch in make_batches(sentences, batch_size=64, shuffle=False)
    ]
    pooled = torch.cat([v[~v.isnan()] for v in values])
    assert pooled.numel() == saved["num_positions"]
    assert whole["mean_pmi_uniform"] == pytest.approx(float(pooled.double().mean()), rel=1e-6)
    assert_png(run_dir / "analysis" / "pmi.png")
    assert_svg(run_dir / "analysis" / "pmi.svg")
    # The same sentences and seed: the same numbers.
    assert analyze.main([str(run_dir), "pmi", *flags]) == result


def test_pmi_command_on_uniform_dropout_has_no_correlation(runs, analyze, tmp_path) -> None:
    run_dir = runs / "uniform-seed0"
    result = analyze.main(
        ["pmi", str(run_dir), "--num-sentences", "20", "--z", "sample", "--out", str(tmp_path)]
    )
    assert result["spearman"] is None and result["spearman_ci"] is None
    assert result["z"] == "posterior sample" and "uniform" in result["note"]
    assert isinstance(result["mean_pmi_dropped"], float)
    # --out elsewhere writes there only (issue 36): RUN/pmi.json is the default's.
    assert (tmp_path / "pmi.json").is_file() and not (run_dir / "pmi.json").is_file()


def test_lambda_study_command_plots_several_runs(runs, analyze, tmp_path) -> None:
    other = tmp_path / "adversarial-lambda2"
    shutil.copytree(runs / "adversarial-seed0", other, ignore=shutil.ignore_patterns("*.pt"))
    config = json.loads((other / "config.json").read_text())
    config["model"]["kl_weight"] = 2.0
    (other / "config.json").write_text(json.dumps(config))
    logs = analyze.main(
        ["lambda-study", str(runs / "adversarial-seed0"), str(other), "--out", str(tmp_path)]
    )
    assert list(logs) == ["lambda = 1 (adversarial-seed0)", "lambda = 2 (adversarial-lambda2)"]
    assert_png(tmp_path / "lambda_study.png")
    with (other / "scores.csv").open() as handle:
        assert {"step", "score_l1", "score_std", "adversary_grad_norm"} <= set(
            next(csv.reader(handle))
        )


def _one_line_error(capsys, pattern: str, call) -> None:
    """``call()`` exits with status 2 after one stderr line ``error: ...`` matching ``pattern``."""
    with pytest.raises(SystemExit) as info:
        call()
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert re.search(pattern, err), err


def test_commands_name_what_is_wrong(runs, analyze, tmp_path, capsys) -> None:
    _one_line_error(
        capsys,
        r"run directory '.*nowhere' does not exist",
        lambda: analyze.main([str(tmp_path / "nowhere"), "saliency"]),
    )
    _one_line_error(
        capsys,
        r"analysis must be one of .* got 'salience'",
        lambda: analyze.main([str(runs / "adversarial-seed0"), "salience"]),
    )
    _one_line_error(
        capsys,
        r"scores\.csv does not exist",
        lambda: analyze.main(["lambda-study", str(runs / "uniform-seed0"), "--out", str(tmp_path)]),
    )
    # A run trained without word dropout has no masker: saliency says so.
    none_run = tmp_path / "none-seed0"
    shutil.copytree(runs / "uniform-seed0", none_run, ignore=shutil.ignore_patterns("*.pt"))
    spec = load_sequence_vae(runs / "uniform-seed0" / "best.pt")[1]

    spec = dataclasses.replace(spec, dropout="none", rate=0.0)
    save_sequence_vae(build_sequence_vae(spec), spec, none_run / "best.pt")
    _one_line_error(capsys, "dropout 'none'", lambda: analyze.main([str(none_run), "saliency"]))
    # A damaged config.json is one line naming the file, not a JSON traceback.
    (none_run / "config.json").write_text('{"model": ')
    _one_line_error(
        capsys, r"config\.json:1: not valid JSON", lambda: analyze.main([str(none_run), "sample"])
    )


def test_the_old_order_run_then_analysis_gives_the_same_result(runs, analyze, tmp_path) -> None:
    run_dir = str(runs / "adversarial-seed0")
    flags = ["--num-samples", "3", "--seed", "4"]
    new = analyze.main(["sample", run_dir, *flags, "--out", str(tmp_path / "new")])
    old = analyze.main([run_dir, "sample", *flags, "--out", str(tmp_path / "old")])
    assert new == old and len(new["samples"]) == 3
    assert (tmp_path / "new" / "samples.json").read_text() == (
        tmp_path / "old" / "samples.json"
    ).read_text()


def test_resumed_run_reproduces_the_score_log(tmp_path, monkeypatch) -> None:
    """The score log is part of the checkpointed state: an interrupted and resumed run writes
    the same scores.csv as an uninterrupted one."""
    recipe = load_recipe("seqvae_awd")
    flags = [*TINY, "--dropout", "adversarial", *SCORE_FLAGS]
    recipe.main([*flags, "--out", str(tmp_path / "straight")])
    # Mid-way through epoch 2 (6 steps per epoch).
    with sigint_after_step(recipe, monkeypatch, 9), pytest.raises(SystemExit):
        recipe.main([*flags, "--out", str(tmp_path / "resumed")])
    recipe.main([*flags, "--out", str(tmp_path / "resumed"), "--resume"])
    run = "synthetic/adversarial-seed0/scores.csv"
    straight = (tmp_path / "straight" / run).read_text()
    assert straight == (tmp_path / "resumed" / run).read_text()
    assert len(straight.splitlines()) == 1 + 6
