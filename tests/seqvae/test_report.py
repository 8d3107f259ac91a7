"""Results tables: mean (std) over seeds from runs' metrics.json.

Tests advmask.seqvae.report and recipes/compare.py.
"""

from __future__ import annotations

import importlib.util
import json
import math
import statistics
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from advmask.seqvae.report import (
    COLUMNS,
    PairedDifference,
    Summary,
    comparison_line,
    dropout_kind,
    group_runs,
    load_runs,
    paired_differences,
    resolve_variant,
    results_legend,
    results_table,
    run_seed,
    select_on_validation,
    select_per_dropout,
    shared_seeds,
    summarise,
)

ROOT = Path(__file__).resolve().parents[2]


def _load_compare():
    spec = importlib.util.spec_from_file_location("compare", ROOT / "recipes" / "compare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def split_metrics(**overrides: Any) -> dict[str, Any]:
    """One split section as EvaluationResult.as_dict() writes it."""
    metrics = {
        "neg_elbo": 100.0, "kl": 5.0, "reconstruction": 95.0, "ppl_elbo": 110.0,
        "nll_iw": 98.0, "ppl_iw": 100.0, "mutual_information": 3.0, "mi_estimator": "full",
        "mi_ceiling": 8.0064, "active_units": 10, "num_sequences": 3000, "num_words": 60000,
        "num_predictions": 63000, "iw_samples": 500,
        "ppl_denominator": "words + EOS per sequence (BOS not predicted)",
    }  # fmt: skip
    return {**metrics, **overrides}


def run_metrics(model: str, seed: int, test: dict, valid: dict | None = None, **extra: Any):
    """A metrics.json as recipes/seqvae_awd.py writes it."""
    dropout = model.split("/")[1].split("-")[0]
    return {
        "model": model, "preset": "ptb", "dropout": dropout, "seed": seed, "rate": 0.3,
        "best_epoch_valid_neg_elbo": 101.0, "epochs": 30, "steps": 12000,
        "valid": valid or split_metrics(nll_iw=None, ppl_iw=None, iw_samples=0),
        "test": test, **extra,
    }  # fmt: skip


# ptb/none over three seeds: every metric is an arithmetic progression, so the sample std
# (n - 1 denominator) is the step: 2, 1, 1, ... The population std would be step * 0.816.
NONE_RUNS = [
    run_metrics(
        "ptb/none",
        seed,
        split_metrics(
            ppl_iw=100.0 + 2 * seed,
            ppl_elbo=110.0 + 3 * seed,
            nll_iw=98.0 + seed,
            neg_elbo=101.5 + seed,
            kl=5.0 + seed,
            mutual_information=3.0 + 0.5 * seed,
            active_units=10 + 2 * seed,
        ),
        probe={"topic": 0.9 + 0.02 * seed},
    )
    for seed in range(3)
]
ADVERSARIAL_RUN = run_metrics(
    "ptb/adversarial-0.3",
    0,
    split_metrics(ppl_iw=95.254, ppl_elbo=104.0, nll_iw=96.5, neg_elbo=99.0, kl=7.125,
                  mutual_information=4.5, active_units=13),
    probe={"topic": 0.97},
)  # fmt: skip


def write_runs(root: Path, runs: list[dict]) -> list[Path]:
    folders = []
    for run in runs:
        folder = root / f"{run['dropout']}-seed{run['seed']}"
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps(run, indent=2))
        folders.append(folder)
    return folders


def render(table) -> str:
    console = Console(record=True, width=200)
    console.print(table)
    return console.export_text()


def table_cells(text: str) -> dict[str, dict[str, str]]:
    """{model: {column title: cell}} parsed from the rendered box-drawing table."""
    rows = [
        [cell.strip() for cell in line.strip().strip("│┃").replace("┃", "│").split("│")]
        for line in text.splitlines()
        if line.strip().startswith(("│", "┃"))
    ]
    header, body = rows[0], rows[1:]
    return {row[0]: dict(zip(header, row, strict=True)) for row in body}


# --------------------------------------------------------------------------------------------
# summarise
# --------------------------------------------------------------------------------------------
def test_summarise_mean_and_sample_std() -> None:
    summary = summarise([100.0, 102.0, 104.0])
    assert summary == Summary(mean=102.0, std=2.0, count=3)
    assert str(summary) == "102.00 (2.00)"


def test_summarise_single_seed() -> None:
    summary = summarise([95.254])
    assert summary == Summary(mean=95.254, std=0.0, count=1)
    assert str(summary) == "95.25"  # no "(0.00)" pretending to measure a spread


def test_summarise_skips_missing() -> None:
    assert summarise([]) is None
    assert summarise([None, math.nan]) is None
    assert summarise([1.0, None, 3.0, math.nan]) == Summary(2.0, math.sqrt(2.0), 2)
    assert summarise([4, 6]) == Summary(5.0, math.sqrt(2.0), 2)  # ints (active units)


def test_summarise_infinite_values() -> None:
    # A diverged run can report an infinite perplexity; statistics.stdev would crash on it.
    summary = summarise([100.0, math.inf])
    assert summary is not None and summary.mean == math.inf and math.isnan(summary.std)
    assert str(summary) == "inf (-)"
    both = summarise([math.inf, -math.inf])
    assert both is not None and math.isnan(both.mean)
    assert str(summarise([math.inf])) == "inf"


@given(st.lists(st.floats(-1e6, 1e6) | st.none(), min_size=1, max_size=8))
def test_summarise_matches_formula(values: list[float | None]) -> None:
    present = [v for v in values if v is not None]
    summary = summarise(values)
    if not present:
        assert summary is None
        return
    assert summary is not None and summary.count == len(present)
    mean = math.fsum(present) / len(present)
    assert summary.mean == pytest.approx(mean, rel=1e-12, abs=1e-9)
    if len(present) == 1:
        assert summary.std == 0.0
    else:
        variance = math.fsum((v - mean) ** 2 for v in present) / (len(present) - 1)
        assert summary.std == pytest.approx(math.sqrt(variance), rel=1e-9, abs=1e-6)


# --------------------------------------------------------------------------------------------
# load_runs and group_runs
# --------------------------------------------------------------------------------------------
def test_load_runs_round_trip_and_duplicates(tmp_path: Path) -> None:
    folders = write_runs(tmp_path, [*NONE_RUNS, ADVERSARIAL_RUN])
    assert load_runs(folders) == [*NONE_RUNS, ADVERSARIAL_RUN]
    # The same directory twice (e.g. overlapping globs, a trailing slash) is read once.
    again = [str(folders[0]) + "/", folders[0], tmp_path / "." / folders[0].name]
    assert load_runs([*folders, *again]) == [*NONE_RUNS, ADVERSARIAL_RUN]


def test_load_runs_unfinished_names_path(tmp_path: Path) -> None:
    (tmp_path / "none-seed9").mkdir()
    with pytest.raises(FileNotFoundError, match=r"metrics\.json does not exist") as info:
        load_runs([tmp_path / "none-seed9"])
    assert str(tmp_path / "none-seed9" / "metrics.json") in str(info.value)


def test_group_runs_by_model_in_first_seen_order() -> None:
    runs = [NONE_RUNS[0], ADVERSARIAL_RUN, NONE_RUNS[2], NONE_RUNS[1]]
    groups = group_runs(runs)
    assert list(groups) == ["ptb/none", "ptb/adversarial-0.3"]
    assert [run["seed"] for run in groups["ptb/none"]] == [0, 2, 1]
    assert groups["ptb/adversarial-0.3"] == [ADVERSARIAL_RUN]


def test_a_run_of_an_older_version_groups_with_todays_and_a_changed_setting_does_not() -> None:
    # recipes/seqvae_awd.py before --baseline: --kl-schedule linear, and none of the settings
    # added since. Its runs ran as today's defaults do, so they average with today's runs.
    today = {"rate": 0.4, "baseline": "annealing", "beta": 1.0, "kl_cycles": 4,
             "kl_cycle_ratio": 0.5, "pretrain_epochs": 1, "svi_steps": 10, "svi_lr": 1.0,
             "relaxation_options": [], "model": {"unk_id": 3, "dropout": "uniform"}}  # fmt: skip
    older = {"rate": 0.4, "kl_schedule": "linear", "model": {"dropout": "uniform"}}

    def run(seed: int, config: dict[str, Any]) -> dict[str, Any]:
        return {"model": "snli uniform [0.4]", "seed": seed, "config": config}

    groups = group_runs([run(0, older), run(1, today), run(2, today)])
    assert list(groups) == ["snli uniform [0.4]"] and len(groups["snli uniform [0.4]"]) == 3
    # Another value than the default is another configuration, recorded then or now.
    for changed in ({**today, "beta": 0.5}, {**older, "kl_schedule": "cyclical"}):
        assert list(group_runs([run(0, older), run(1, changed)])) == [
            "snli uniform [0.4]", "snli uniform [0.4] #2",
        ]  # fmt: skip


def test_lambda_separates_adversarial_runs_only_and_reads_dash_elsewhere() -> None:
    # The snli preset's lambda is 0.1; a grid run with --kl-weight 10 gives its none and
    # uniform runs lambda 10 too, which no masker of theirs reads.
    def run(dropout: str, seed: int, kl_weight: float, adversary_lr: float = 1e-3) -> dict:
        model = {
            "dropout": dropout,
            "rate": 0.0 if dropout == "none" else 0.4,
            "kl_weight": kl_weight,
            "std": "fixed",
            "adversary_hidden_size": 64,
        }
        config = {"kl_weight": kl_weight, "adversary_lr": adversary_lr, "model": model}
        return {"model": f"snli {dropout}", "seed": seed, "config": config,
                "test": {"neg_elbo": 30.0 + seed}}  # fmt: skip

    none = [run("none", 0, 0.1), run("none", 1, 10.0, adversary_lr=1e-2)]
    uniform = [run("uniform", 0, 0.1), run("uniform", 1, 10.0)]
    adversarial = [run("adversarial", 0, 0.1), run("adversarial", 0, 10.0)]
    groups = group_runs([*none, *uniform, *adversarial])
    assert {name: len(group) for name, group in groups.items()} == {
        "snli none": 2, "snli uniform": 2, "snli adversarial": 1, "snli adversarial #2": 1,
    }  # fmt: skip
    cells = table_cells(render(results_table([], groups=groups)))
    assert [cells[name]["kl_weight"] for name in groups] == ["-", "-", "0.1", "10.0"]
    # A setting that no adversary varies is no column, though the runs without one lack it.
    assert "adversary_lr" not in cells["snli none"] and "std" not in cells["snli none"]


# --------------------------------------------------------------------------------------------
# results_table
# --------------------------------------------------------------------------------------------
def test_table_mean_std_over_seeds(tmp_path: Path) -> None:
    runs = load_runs(write_runs(tmp_path, [*NONE_RUNS, ADVERSARIAL_RUN]))
    text = render(results_table(runs, title="ptb: test results"))
    assert "ptb: test results" in text
    cells = table_cells(text)
    assert list(cells) == ["ptb/none", "ptb/adversarial-0.3"]
    titles = (title for key, title in COLUMNS if key != "pieces_per_word")  # sentencepiece only
    expected_titles = ["model", "seeds", *titles, "probe topic"]
    assert list(cells["ptb/none"]) == expected_titles
    assert cells["ptb/none"] == {
        "model": "ptb/none", "seeds": "3", "PPL (IW)": "102.00 (2.00)",
        "PPL (ELBO)": "113.00 (3.00)", "NLL (IW)": "99.00 (1.00)", "-ELBO": "102.50 (1.00)",
        "KL": "6.00 (1.00)", "MI": "3.50 (0.50)", "AU": "12.00 (2.00)",
        "probe topic": "0.92 (0.02)",
    }  # fmt: skip
    # One seed: the mean alone.
    assert cells["ptb/adversarial-0.3"] == {
        "model": "ptb/adversarial-0.3", "seeds": "1", "PPL (IW)": "95.25",
        "PPL (ELBO)": "104.00", "NLL (IW)": "96.50", "-ELBO": "99.00", "KL": "7.12",
        "MI": "4.50", "AU": "13.00", "probe topic": "0.97",
    }  # fmt: skip
    caption = " ".join(text.split())
    assert "test: 3000 sequences, 63000 predictions (words + EOS)" in caption
    assert "MI estimator 'full' (ceiling 8.01 nats); IW samples 500" in caption


def test_table_valid_split_drops_columns_not_run() -> None:
    # Validation ran without importance sampling: no IW columns, and no probe columns either.
    runs = [{k: v for k, v in run.items() if k != "probe"} for run in NONE_RUNS]
    text = render(results_table(runs, split="valid"))
    cells = table_cells(text)["ptb/none"]
    assert "PPL (IW)" not in cells and "NLL (IW)" not in cells and "probe topic" not in cells
    assert cells["-ELBO"] == "100.00 (0.00)"  # identical seeds: a real zero spread
    assert "valid: 3000 sequences" in " ".join(text.split())
    assert "IW samples 0" in text


def test_table_partially_missing_metric_says_how_many() -> None:
    runs = [dict(run, test=dict(run["test"])) for run in NONE_RUNS]
    runs[1]["test"]["nll_iw"] = None  # this seed skipped the IW bound
    runs[2]["test"]["mutual_information"] = math.nan
    cells = table_cells(render(results_table(runs)))["ptb/none"]
    assert cells["seeds"] == "3"
    assert cells["NLL (IW)"] == f"99.00 ({math.sqrt(2):.2f}) [n=2]"  # seeds 0 and 2: 98, 100
    assert cells["MI"] == "3.25 (0.35) [n=2]"
    assert cells["KL"] == "6.00 (1.00)"


def test_table_missing_probe_and_infinite_perplexity() -> None:
    diverged = run_metrics("ptb/uniform-0.4", 1, split_metrics(ppl_iw=math.inf))
    healthy = run_metrics("ptb/uniform-0.4", 0, split_metrics(ppl_iw=120.0))
    cells = table_cells(render(results_table([healthy, diverged, ADVERSARIAL_RUN])))
    assert cells["ptb/uniform-0.4"]["PPL (IW)"] == "inf (-)"
    assert cells["ptb/uniform-0.4"]["probe topic"] == "-"
    assert cells["ptb/adversarial-0.3"]["probe topic"] == "0.97"


def test_table_caption_tolerates_missing_fields() -> None:
    run = run_metrics("ptb/none", 0, split_metrics(mi_ceiling=None))
    assert "ceiling None nats" in " ".join(render(results_table([run])).split())


def test_empty_table() -> None:
    text = render(results_table([], title="nothing"))
    assert "nothing" in text and "model" in text


# --------------------------------------------------------------------------------------------
# recipes/compare.py
# --------------------------------------------------------------------------------------------
def test_compare_prints_unwrapped_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    compare = _load_compare()
    folders = write_runs(tmp_path, [*NONE_RUNS, ADVERSARIAL_RUN])
    compare.main([str(f) for f in folders])
    out = capsys.readouterr().out
    # Output to a pipe: every cell on one line, not wrapped at rich's default 80 columns.
    cells = table_cells(out)
    assert cells["ptb/none"]["PPL (IW)"] == "102.00 (2.00)"
    assert cells["ptb/adversarial-0.3"]["AU"] == "13.00"
    assert "test results" in out


def test_compare_valid_split_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    compare = _load_compare()
    folders = write_runs(tmp_path, NONE_RUNS)
    compare.main([*map(str, folders), "--split", "valid"])
    out = capsys.readouterr().out
    assert "valid results" in out and "PPL (IW)" not in out
    with pytest.raises(SystemExit):
        compare.main([str(folders[0]), "--split", "train"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        compare.main([str(tmp_path / "missing")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith("error: ") and "missing" in err
    # An unfinished run (config.json, no metrics.json) is named, not averaged in silently.
    unfinished = tmp_path / "none-seed7"
    unfinished.mkdir()
    (unfinished / "config.json").write_text("{}")
    with pytest.raises(SystemExit):
        compare.main([*map(str, folders), str(unfinished)])
    assert "is the run in" in capsys.readouterr().err


def test_statistics_reference_values() -> None:
    # Guard the hand-computed expectations above against a typo in the fixtures.
    assert statistics.stdev([run["test"]["ppl_elbo"] for run in NONE_RUNS]) == 3.0
    assert statistics.fmean([run["probe"]["topic"] for run in NONE_RUNS]) == pytest.approx(0.92)


# --------------------------------------------------------------------------------------------
# Paired differences, selection on validation, the comparison line and the legend
# --------------------------------------------------------------------------------------------
def seeded(seed: int, dropout: str = "uniform", valid: float | None = 100.0, **test: Any):
    return {"seed": seed, "dropout": dropout, "valid": {"neg_elbo": valid}, "test": test}


def test_paired_differences_pair_by_seed_against_a_hand_computation() -> None:
    # Shuffled, and seed 3 only in a, seed 9 only in b. By position the pairs would be
    # (3, 1), (1, 0), (0, 9), ...: other differences.
    a = [seeded(3, mi=9.0), seeded(1, mi=2.5), seeded(0, mi=1.0), seeded(2, mi=4.0)]
    b = [seeded(0, mi=0.5), seeded(9, mi=0.0), seeded(2, mi=1.0), seeded(1, mi=1.5)]
    difference = paired_differences(a, b, ["mi"])["mi"]
    # d = 0.5, 1.0, 3.0: mean 1.5; sum of squares 1 + 0.25 + 2.25 = 3.5; ddof 1: 3.5 / 2.
    assert difference == PairedDifference(
        mean=1.5, std=math.sqrt(1.75), se=math.sqrt(1.75) / math.sqrt(3), num_pairs=3,
        seeds=(0, 1, 2),
    )  # fmt: skip
    assert math.sqrt(1.75) != pytest.approx(math.sqrt(3.5 / 3))  # ddof 0 would be caught
    assert str(difference) == "+1.50 (se 0.76)"


def test_paired_differences_skip_missing_none_and_nan_but_not_infinite() -> None:
    a = [seeded(0, kl=1.0, mi=math.nan, nll=3.0, ppl=math.inf), seeded(1, kl=2.0, nll=None)]
    b = [seeded(0, kl=0.5, mi=1.0, nll=2.0, ppl=50.0), seeded(1, kl=1.0, mi=1.0, nll=2.0)]
    differences = paired_differences(a, b, ["kl", "mi", "nll", "ppl", "absent"])
    assert list(differences) == ["kl"]  # ppl: None in seed 1 of b (missing), left out too
    b[1]["test"]["ppl"] = 40.0
    a[1]["test"]["ppl"] = 41.0
    diverged = paired_differences(a, b, ["ppl"])["ppl"]  # a diverged seed: no crash
    assert diverged.mean == math.inf and math.isnan(diverged.std) and math.isnan(diverged.se)


def test_paired_differences_seed_from_config_and_errors() -> None:
    from_config = {"config": {"run": {"seed": 4, "dropout": "uniform"}}, "test": {"kl": 2.0}}
    assert run_seed(from_config) == 4 and dropout_kind(from_config) == "uniform"
    assert paired_differences([from_config], [seeded(4, kl=1.0)], ["kl"])["kl"].mean == 1.0
    with pytest.raises(ValueError, match="run 'ptb x' records no seed"):
        paired_differences([{"model": "ptb x", "test": {}}], [seeded(0)], ["kl"])
    with pytest.raises(ValueError, match=r"runs_a has seeds \[0, 1\], runs_b \[2\]"):
        paired_differences([seeded(1), seeded(0)], [seeded(2)], ["kl"])


def test_select_on_validation_reads_validation_and_ranks_nan_and_inf() -> None:
    groups = {
        "best on test": [seeded(0, valid=101.0, neg_elbo=10.0), seeded(1, valid=101.0)],
        "best on validation": [seeded(0, valid=100.0, neg_elbo=99.0), seeded(1, valid=101.0)],
        "diverged": [seeded(0, valid=math.inf), seeded(1, valid=1.0)],
        "broken": [seeded(0, valid=math.nan), seeded(1, valid=1.0)],
        "unfinished": [seeded(0, valid=None), seeded(1, valid=1.0)],
    }
    # A NaN mean compares False with everything, so min() would keep whichever came first.
    for order in (list(groups), list(reversed(groups))):
        assert select_on_validation({k: groups[k] for k in order}) == "best on validation"
    assert select_on_validation({"diverged": groups["diverged"]}) == "diverged"
    # Ties: the label that sorts first, whatever the order.
    tie = {"z": groups["best on test"], "a": groups["best on test"]}
    assert select_on_validation(tie) == "a"
    with pytest.raises(ValueError, match=r"'neg_elbo' in every run \(groups: broken\)"):
        select_on_validation({"broken": groups["broken"]})


def test_select_on_validation_ranks_on_the_seeds_all_candidates_have() -> None:
    # A grid searched on seed 0, its winner then run on seeds 1 and 2 as well: over all its
    # runs "rerun" averages 93.3, below "one seed"'s 99, but on seed 0 it is the worse one.
    rerun = [seeded(0, valid=100.0), seeded(1, valid=90.0), seeded(2, valid=90.0)]
    one_seed = [seeded(0, valid=99.0)]
    groups = {"rerun": rerun, "one seed": one_seed}
    assert shared_seeds(groups) == [0]
    assert select_on_validation(groups) == "one seed"
    # A candidate without the metric does not restrict the seeds of the others.
    assert select_on_validation({**groups, "unfinished": [seeded(5, valid=None)]}) == "one seed"
    # No seed in common: each group's own mean decides.
    apart = {"a": [seeded(0, valid=100.0)], "b": [seeded(1, valid=99.0), seeded(2, valid=98.0)]}
    assert shared_seeds(apart) == []
    assert select_on_validation(apart) == "b"
    assert shared_seeds({"a": [{"model": "x", "valid": {"neg_elbo": 1.0}}]}) is None


def test_select_per_dropout_and_resolve_variant() -> None:
    groups = {
        "uniform 0.2": [seeded(0, valid=99.0)],
        "awd 0.2": [seeded(0, "adversarial", valid=98.0)],
        "uniform 0.4": [seeded(0, valid=97.0)],
        "none": [seeded(0, "none", valid=120.0)],
    }
    chosen = select_per_dropout(groups)
    assert chosen == {"uniform": "uniform 0.4", "adversarial": "awd 0.2", "none": "none"}
    assert list(chosen) == ["uniform", "adversarial", "none"]
    assert resolve_variant(groups, "adversarial") == "awd 0.2"
    assert resolve_variant(groups, "uniform 0.2") == "uniform 0.2"
    with pytest.raises(ValueError, match=r"2 rows are 'uniform' \('uniform 0.2', 'uniform 0.4'\)"):
        resolve_variant(groups, "uniform")
    with pytest.raises(ValueError, match=r"no row is 'awd': pass a dropout kind \(uniform, "):
        resolve_variant(groups, "awd")


def test_comparison_line_wording() -> None:
    d = {
        "kl": PairedDifference(0.264, 0.12, 0.0693, 3, (0, 1, 2)),
        "mutual_information": PairedDifference(0.18, 0.09, 0.052, 3, (0, 1, 2)),
        "nll_iw": PairedDifference(-0.11, 0.07, 0.04, 3, (0, 1, 2)),
    }
    assert comparison_line("adversarial", "uniform at rate 0.4", d) == (
        "adversarial vs uniform at rate 0.4: MI +0.18 (se 0.05), KL +0.26 (se 0.07), "
        "NLL_IW -0.11 (se 0.04) nats over 3 seeds"
    )
    one = {"kl": PairedDifference(-0.5, None, None, 1, (7,))}
    assert (
        comparison_line("a", "b", one, metrics=("kl",)) == "a vs b: KL -0.50 nats (1 seed, no se)"
    )
    with pytest.raises(ValueError, match=r"none of \['mutual_information'\]"):
        comparison_line("a", "b", one, metrics=("mutual_information",))


def test_legend_follows_the_columns_and_names_probe_chance() -> None:
    table = results_table([*NONE_RUNS, ADVERSARIAL_RUN])
    titles = [str(column.header) for column in table.columns]
    lines = results_legend(titles, {"topic": 0.3}).splitlines()
    assert [line.split(":")[0] for line in lines] == [t for t in titles[2:]]  # not model, seeds
    assert "-ELBO: negative evidence lower bound" in lines[3] and "lower is better" in lines[3]
    assert lines[-1].startswith("probe topic: accuracy") and lines[-1].endswith("chance 0.30)")
    assert results_legend(["probe style"]).endswith("(higher is better)")  # chance unknown


def test_table_from_given_groups_keeps_their_labels() -> None:
    groups = {"ptb/adversarial-0.3 #2": [ADVERSARIAL_RUN]}
    cells = table_cells(render(results_table([], groups=groups)))
    assert (
        list(cells) == ["ptb/adversarial-0.3 #2"]
        and cells["ptb/adversarial-0.3 #2"]["MI"] == "4.50"
    )
