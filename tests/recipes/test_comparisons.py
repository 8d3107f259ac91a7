"""Paired comparisons over seeds: pairing, standard errors, the printed line and legend."""

from __future__ import annotations

import math
import statistics

import pytest

from advmask.seqvae.report import comparison_line, paired_differences, results_legend


def run(seed, **test):
    return {"seed": seed, "test": test, "valid": {"neg_elbo": -float(seed)}}


def test_pairs_by_seed_not_by_position() -> None:
    a = [run(2, kl=5.0), run(0, kl=1.0), run(1, kl=3.0)]
    b = [run(0, kl=0.5), run(1, kl=1.0), run(2, kl=4.0), run(7, kl=100.0)]  # seed 7 unpaired
    diff = paired_differences(a, b, ["kl"])["kl"]
    assert diff.seeds == (0, 1, 2)
    differences = [0.5, 2.0, 1.0]
    assert diff.mean == pytest.approx(statistics.fmean(differences))
    # Sample standard deviation (ddof = 1), and se = std / sqrt(n).
    std = math.sqrt(sum((d - 7 / 6) ** 2 for d in differences) / 2)
    assert diff.std == pytest.approx(std)
    assert diff.se == pytest.approx(std / math.sqrt(3))
    assert diff.num_pairs == 3


def test_metric_missing_in_one_run_is_left_out_and_one_pair_has_no_se() -> None:
    a = [run(0, kl=1.0, nll_iw=None)]
    b = [run(0, kl=0.25, nll_iw=3.0)]
    diffs = paired_differences(a, b, ["kl", "nll_iw", "mutual_information"])
    assert set(diffs) == {"kl"}
    assert diffs["kl"].mean == 0.75 and diffs["kl"].se is None and diffs["kl"].std is None


def test_valid_split_is_read_when_asked() -> None:
    diffs = paired_differences([run(3)], [run(3)], ["neg_elbo"], split="valid")
    assert diffs["neg_elbo"].mean == 0.0


def test_no_common_seed_and_duplicate_seeds_are_errors() -> None:
    with pytest.raises(ValueError, match=r"no seed is in both variants: runs_a has seeds \[0\]"):
        paired_differences([run(0, kl=1.0)], [run(1, kl=1.0)], ["kl"])
    with pytest.raises(ValueError, match="runs_a has two runs with seed 0"):
        paired_differences([run(0, kl=1.0), run(0, kl=2.0)], [run(0, kl=1.0)], ["kl"])


def test_comparison_line_reads_as_a_sentence() -> None:
    a = [run(s, mutual_information=1.0 + s, kl=2.0) for s in range(3)]
    b = [run(s, mutual_information=0.5 + s + 0.1 * s, kl=2.5) for s in range(3)]
    line = comparison_line(
        "adversarial [0.4]",
        "uniform [0.4]",
        paired_differences(a, b, ["mutual_information", "kl", "nll_iw"]),
    )
    assert line == (
        "adversarial [0.4] vs uniform [0.4]: MI +0.40 (se 0.06), KL -0.50 (se 0.00) nats "
        "over 3 seeds"
    )
    one_pair = paired_differences([run(0, kl=1.0)], [run(0, kl=0.0)], ["kl"])
    single = comparison_line("a", "b", one_pair)
    assert single == "a vs b: KL +1.00 nats (1 seed, no se)"


def test_legend_explains_known_columns_and_probe_chance() -> None:
    legend = results_legend(["model", "MI", "KL", "seeds"], {"topic": 0.25})
    lines = legend.splitlines()
    assert lines[0].startswith("MI: mutual information")
    assert lines[1].startswith("KL: ")
    assert lines[2].endswith("chance 0.25)")
    assert len(lines) == 3


def test_select_on_validation_reads_the_validation_split_only() -> None:
    from advmask.seqvae.report import select_on_validation

    groups = {
        "good on test": [{"seed": 0, "valid": {"neg_elbo": 40.0}, "test": {"neg_elbo": 1.0}}],
        "good on valid": [{"seed": 0, "valid": {"neg_elbo": 30.0}, "test": {"neg_elbo": 99.0}}],
    }
    assert select_on_validation(groups) == "good on valid"
    tie = {"b": groups["good on valid"], "a": groups["good on valid"]}
    assert select_on_validation(tie) == "a"
    with pytest.raises(ValueError, match="no group has the validation metric 'kl'"):
        select_on_validation(groups, metric="kl")


def test_compare_selects_on_validation_and_prints_paired_differences(tmp_path, capsys) -> None:
    from tests.seqvae.test_report import _load_compare, run_metrics, split_metrics, write_runs

    runs = []
    for seed in range(3):
        # Two adversarial configurations: "-b" is better on test but worse on validation.
        for model, valid, test_mi in (
            ("ptb/adversarial-a", 90.0, 4.0),
            ("ptb/adversarial-b", 95.0, 9.0),
        ):
            runs.append(
                run_metrics(
                    model,
                    seed,
                    split_metrics(
                        mutual_information=test_mi + seed, neg_elbo=valid - 10 * (valid - 90)
                    ),
                    valid=split_metrics(neg_elbo=valid + seed),
                )
            )
        runs.append(
            run_metrics("ptb/uniform-0.4", seed, split_metrics(mutual_information=3.0 + 2 * seed))
        )
    folders = []
    for i, run in enumerate(runs):
        folders += write_runs(tmp_path / str(i), [run])
    compare = _load_compare()
    compare.main(
        [*map(str, folders), "--select-on-validation", "--paired", "adversarial", "uniform"]
    )
    out = capsys.readouterr().out
    assert "adversarial: chose ptb/adversarial-a" in out
    # MI differences per seed: 4 - 3, 5 - 5, 6 - 7 = 1, 0, -1: mean 0, std 1, se 1/sqrt(3).
    row = next(line for line in out.splitlines() if "mutual_information" in line)
    assert "+0.000" in row and "1.000" in row and "0.577" in row
