"""Nothing silent at the edges (issue 36): one run identity, one-line errors outside the flag
parser, stops that keep work.

One section per item of the issue's "What to build", each through the recipes' command lines on
a tiny corpus where it can be.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from advmask.seqvae import identity, report
from advmask.seqvae.analysis import studies
from tests.recipes.test_recipe import load_recipe
from tests.recipes.test_trust import SMALL, run, write_corpus


@pytest.fixture(scope="module")
def recipe():
    return load_recipe("seqvae_awd")


@pytest.fixture(scope="module")
def compare():
    return load_recipe("compare")


@pytest.fixture(scope="module")
def analyze():
    return load_recipe("analyze")


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus")


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
