"""recipes/compare.py end to end on fake run folders: the fair protocol.

Configurations are chosen on validation (``--select-on-validation``), the chosen ones are
tabulated on test, and ``--paired A B`` prints the differences A - B paired by seed.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from tests.seqvae.test_report import _load_compare, table_cells


def fake_run(
    root: Path,
    dropout: str,
    rate: float,
    seed: int,
    valid_neg_elbo: float,
    kl_weight: float = 1.0,
    **test: Any,
) -> Path:
    """A finished run as recipes/seqvae_awd.py writes it: one ``--out`` folder per setting."""
    label = "ptb none" if dropout == "none" else f"ptb {dropout} [{rate:g}]"
    out = f"runs-{dropout}-{rate}-{kl_weight}"
    folder = root / out / "ptb" / f"{dropout}-seed{seed}"
    folder.mkdir(parents=True)
    test_section = {"neg_elbo": 100.0, "kl": 1.0, "mutual_information": 1.0, "nll_iw": 99.0}
    test_section.update(test)
    metrics = {
        "model": label, "preset": "ptb", "dropout": dropout, "seed": seed, "rate": rate,
        "valid": {"neg_elbo": valid_neg_elbo, "kl": 1.0, "nll_iw": None},
        "test": test_section,
    }  # fmt: skip
    config = {
        "preset": "ptb", "lr": 1.0, "epochs": 10, "seed": [seed], "dropout": [dropout],
        "out": out, "run": {"dropout": dropout, "seed": seed},
        "model": {"dropout": dropout, "rate": rate, "kl_weight": kl_weight, "decoder": "lstm"},
    }  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "config.json").write_text(json.dumps(config))
    return folder


# Per seed, (adversarial, uniform) test MI of the configurations that validation chooses. The
# differences 0.5, 1.5, 4.0 have mean 2, sample std sqrt(((-1.5)^2 + 0.5^2 + 2^2) / 2) = 1.8028
# (population std: 1.4720) and se 1.8028 / sqrt(3) = 1.0408. Paired by position in the sorted
# folder list instead (adversarial seeds 0..3 against uniform 0..2 and 4) they would differ.
CHOSEN_MI = {0: (2.0, 1.5), 1: (3.0, 1.5), 2: (6.0, 2.0)}


def grid(root: Path) -> list[Path]:
    """none; uniform at 0.2 and 0.4; adversarial at 0.2 and at 0.3 with lambda 1 and 10.

    Validation chooses uniform 0.4 and adversarial 0.3 with lambda 10 (the table's
    "ptb adversarial [0.3] #2"); on test, uniform 0.2 and adversarial 0.2 would win.
    """
    folders = []
    for seed in range(3):
        mi_adversarial, mi_uniform = CHOSEN_MI[seed]
        folders += [
            fake_run(root, "none", 0.0, seed, 110.0, mutual_information=0.1),
            fake_run(root, "uniform", 0.2, seed, 108.0 + seed, neg_elbo=90.0),
            fake_run(root, "uniform", 0.4, seed, 105.0 + seed, mutual_information=mi_uniform),
            fake_run(root, "adversarial", 0.2, seed, 107.0, neg_elbo=80.0),
            fake_run(root, "adversarial", 0.3, seed, 106.0 - seed),
            fake_run(
                root, "adversarial", 0.3, seed, 104.0, kl_weight=10.0,
                mutual_information=mi_adversarial, kl=2.0 + seed,
            ),
        ]  # fmt: skip
    # One more seed of the chosen adversarial configuration and one of the chosen uniform one
    # that the other lacks: neither is paired.
    folders.append(fake_run(root, "adversarial", 0.3, 3, 104.0, kl_weight=10.0))
    folders.append(fake_run(root, "uniform", 0.4, 4, 105.0, mutual_information=50.0))
    random.Random(0).shuffle(folders)  # the order runs are given in must not matter
    return folders


def paired_rows(out: str) -> dict[str, list[str]]:
    """{metric: [mean difference, std, se, pairs]} from the printed paired table."""
    start = out.index("paired by seed")
    rows = {}
    for line in out[start:].splitlines():
        cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
        if len(cells) == 5 and cells[0] and cells[0] != "metric":
            rows[cells[0]] = cells[1:]
    return rows


def test_select_on_validation_then_paired_differences(tmp_path: Path, capsys) -> None:
    compare = _load_compare()
    folders = grid(tmp_path)
    compare.main(
        [*map(str, folders), "--select-on-validation", "--paired", "adversarial", "uniform"]
    )
    out = capsys.readouterr().out
    # Which configuration each dropout kind keeps, chosen on validation, not on test.
    assert (
        "adversarial: chose ptb adversarial [0.3] #2 (kl_weight 10.0) on validation -ELBO "
        "(best of 3, compared "
        "on seeds 0 1 2, the ones all 3 have)"
    ) in out
    assert (
        "uniform: chose ptb uniform [0.4] on validation -ELBO (best of 2, compared on seeds "
        "0 1 2, the ones all 2 have)"
    ) in out
    assert "none: chose ptb none on validation -ELBO (best of 1)" in out
    # The test table holds the chosen configurations only, under the labels just printed.
    cells = table_cells(out[: out.index("paired by seed")])
    assert set(cells) == {"ptb none", "ptb uniform [0.4]", "ptb adversarial [0.3] #2"}
    assert cells["ptb adversarial [0.3] #2"]["seeds"] == "4"
    # Only one chosen row has a lambda: the line above names it, no column repeats it.
    assert "kl_weight" not in cells["ptb adversarial [0.3] #2"]
    # The legend under it: every metric column, with the direction that is better.
    assert "-ELBO: negative evidence lower bound per sentence, nats (lower is better)" in out
    assert "MI: mutual information I(x; z)" in out
    rows = paired_rows(out)
    assert rows["mutual_information"] == ["+2.000", "1.803", "1.041", "3"]
    assert rows["kl"] == ["+2.000", "1.000", "0.577", "3"]  # 2, 3, 4 minus 1
    assert rows["neg_elbo"] == ["+0.000", "0.000", "0.000", "3"]
    assert "nll_iw" in rows and "ppl_iw" not in rows  # no run has a perplexity
    assert "not paired: seeds [3] of ptb adversarial [0.3] #2" in out
    assert "not paired: seeds [4] of ptb uniform [0.4]" in out
    assert "seeds 0 1 2; std with n - 1, se = std / sqrt(n)" in out
    assert (
        "ptb adversarial [0.3] #2 vs ptb uniform [0.4]: MI +2.00 (se 1.04), KL +2.00 (se 0.58), "
        "NLL_IW +0.00 (se 0.00) nats over 3 seeds"
    ) in out


def test_selection_never_reads_the_test_split(tmp_path: Path, capsys) -> None:
    # The test values alone would choose uniform 0.2 (test -ELBO 90 against 100).
    compare = _load_compare()
    compare.main([*map(str, grid(tmp_path)), "--select-on-validation", "--split", "valid"])
    out = capsys.readouterr().out
    assert "uniform: chose ptb uniform [0.4]" in out and "valid results" in out
    assert "ptb uniform [0.2]" not in out.split("valid results")[1]


def test_paired_by_row_label_and_a_metric_missing_in_one_run(tmp_path: Path, capsys) -> None:
    compare = _load_compare()
    folders = [
        fake_run(tmp_path, "adversarial", 0.2, 1, 100.0, kl=3.0, nll_iw=None),
        fake_run(tmp_path, "adversarial", 0.2, 0, 100.0, kl=2.0),
        fake_run(tmp_path, "adversarial", 0.4, 0, 100.0),
        fake_run(tmp_path, "uniform", 0.4, 0, 100.0, kl=1.5),
        fake_run(tmp_path, "uniform", 0.4, 1, 100.0, kl=1.5),
    ]
    compare.main([*map(str, folders), "--paired", "ptb adversarial [0.2]", "uniform"])
    rows = paired_rows(capsys.readouterr().out)
    assert rows["kl"] == ["+1.000", "0.707", "0.500", "2"]  # 0.5 and 1.5: std 1/sqrt(2)
    assert "nll_iw" not in rows  # None for seed 1: left out, not NaN
    assert not any(math.isnan(float(cells[0])) for cells in rows.values())


def test_one_seed_has_no_spread(tmp_path: Path, capsys) -> None:
    compare = _load_compare()
    folders = [
        fake_run(tmp_path, "adversarial", 0.4, 0, 100.0, kl=2.0),
        fake_run(tmp_path, "uniform", 0.4, 0, 100.0, kl=1.5),
    ]
    compare.main([*map(str, folders), "--paired", "adversarial", "uniform"])
    assert paired_rows(capsys.readouterr().out)["kl"] == ["+0.500", "-", "-", "1"]


@pytest.mark.parametrize(
    ("paired", "select", "message"),
    [
        (
            ["adversarial", "uniform"],
            False,
            "--paired: 3 rows are 'adversarial' ('ptb adversarial [0.2]', "
            "'ptb adversarial [0.3]', 'ptb adversarial [0.3] #2'): name one of them, "
            "or pass --select-on-validation",
        ),
        (["adversarial", "dropconnect"], True, "--paired: no row is 'dropconnect'"),
        (["uniform", "ptb uniform [0.4]"], True, "are one row"),
    ],
)
def test_paired_user_errors_are_one_line(tmp_path, capsys, paired, select, message) -> None:
    compare = _load_compare()
    argv = [*map(str, grid(tmp_path)), "--paired", *paired]
    with pytest.raises(SystemExit) as info:
        compare.main([*argv, "--select-on-validation"] if select else argv)
    captured = capsys.readouterr()
    err = captured.err
    assert info.value.code == 2 and err.count("\n") == 1 and err.startswith("error: ")
    assert message in err
    assert "test results" not in captured.out  # the mistake is named before any table


def test_paired_without_a_common_seed_names_the_seeds(tmp_path: Path, capsys) -> None:
    compare = _load_compare()
    folders = [
        fake_run(tmp_path, "adversarial", 0.4, 0, 100.0),
        fake_run(tmp_path, "uniform", 0.4, 1, 100.0),
        fake_run(tmp_path, "uniform", 0.4, 2, 100.0),
    ]
    with pytest.raises(SystemExit):
        compare.main([*map(str, folders), "--paired", "adversarial", "uniform"])
    err = capsys.readouterr().err
    assert "no seed is in both variants: runs_a has seeds [0], runs_b [1, 2]" in err
