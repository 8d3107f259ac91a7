"""Turn several finished run directories into one table: mean (std) over seeds.

Runs are averaged only when every setting but the seed agrees (their ``config.json``); the
settings that differ between rows get a column. Folders that are not runs (the generated
``corpus/``, the ``sentencepiece/`` cache, ``analysis/``) are passed over. A legend under the
table says what each column means and which direction is better.

The fair protocol: every configuration trained with the same budget over the same seeds;
``--select-on-validation`` keeps, for each dropout kind, the configuration with the best mean
*validation* -ELBO (the test split chooses nothing); ``--paired A B`` then prints the
differences A - B paired by seed, with their standard error over seeds. A and B are dropout
kinds (``none``, ``uniform``, ``adversarial``) or row labels of the table.

Usage:
    python recipes/compare.py runs/ptb/*/
    python recipes/compare.py runs/ptb/*/ --split valid
    python recipes/compare.py runs-*/ptb/*/ --select-on-validation --paired adversarial uniform
    python recipes/compare.py runs/ptb/*/ --paired "ptb adversarial [0.2]" "ptb uniform [0.4]"
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from advmask.seqvae.identity import run_settings
from advmask.seqvae.report import (
    PairedDifference,
    by_dropout_kind,
    comparison_line,
    differing_settings,
    dropout_kind,
    format_setting,
    group_runs,
    is_run_directory,
    load_runs,
    paired_differences,
    paired_table,
    resolve_variant,
    results_legend,
    results_table,
    run_seed,
    select_per_dropout,
    selection_seeds,
)
from advmask.training.cli import Parser, exit_with_error
from advmask.training.console import print_table

PAIRED_METRICS = ("neg_elbo", "nll_iw", "ppl_iw", "kl", "mutual_information", "active_units")


def main(argv: list[str] | None = None) -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", help="run directories holding metrics.json")
    parser.add_argument("--split", default="test", choices=("test", "valid"))
    parser.add_argument(
        "--select-on-validation",
        action="store_true",
        help="per dropout kind, keep only the configuration with the best mean validation -ELBO",
    )
    parser.add_argument(
        "--paired",
        nargs=2,
        metavar=("A", "B"),
        help="print A - B paired by seed; A and B are dropout kinds or row labels",
    )
    args = parser.parse_args(argv)
    console = Console(soft_wrap=True)  # a line per message, never broken inside a path
    run_dirs = []
    for run_dir in map(Path, args.run_dirs):
        if not run_dir.is_dir():
            exit_with_error(f"run directory {str(run_dir)!r} does not exist")
        if is_run_directory(run_dir):
            run_dirs.append(run_dir)
        else:
            console.print(f"[dim]{run_dir}: not a run directory, skipped[/dim]", highlight=False)
    if not run_dirs:
        exit_with_error(f"no run directory among {' '.join(args.run_dirs)}")
    try:
        runs = load_runs(run_dirs)
    except (OSError, ValueError) as error:
        exit_with_error(error)

    groups = group_runs(runs)
    if args.select_on_validation:
        try:
            chosen = select_per_dropout(groups)
        except ValueError as error:
            exit_with_error(f"--select-on-validation: {error}")
        kinds = by_dropout_kind(groups)
        for kind, label in chosen.items():
            rivals = kinds[kind]
            # Which lambda (or other setting) it is, where the label alone does not say.
            chosen_settings = run_settings(rivals[label][0])
            setting_note = ", ".join(
                f"{name} {format_setting(chosen_settings.get(name))}"
                for name in differing_settings(rivals)
            )
            console.print(
                f"{kind}: chose {label}{f' ({setting_note})' if setting_note else ''} "
                f"on validation -ELBO (best of {len(rivals)}"
                f"{_seeds_note(rivals)})",
                highlight=False,
            )
        groups = {label: groups[label] for label in chosen.values()}
    # A wrong --paired name is an error before any table is printed.
    paired = _paired(args.paired, groups, args.split) if args.paired else None
    table = results_table(runs, title=f"{args.split} results", split=args.split, groups=groups)
    print_table(console, table)
    legend = results_legend([str(column.header) for column in table.columns])
    console.print(legend, highlight=False)
    if paired is None:
        return
    label_a, label_b, differences = paired
    print_table(console, paired_table(differences, label_a, label_b, args.split))
    line = comparison_line(label_a, label_b, differences)
    console.print(line, highlight=False, markup=False)
    seeds = {label: {run_seed(run) for run in groups[label]} for label in (label_a, label_b)}
    for label in seeds:
        alone = sorted(seeds[label] - (seeds[label_a] & seeds[label_b]))
        if alone:
            console.print(f"not paired: seeds {alone} of {label}", highlight=False, markup=False)


def _seeds_note(rivals: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """Where the rivals were run on different seeds, the seeds they were compared on."""
    seeds = selection_seeds(rivals)
    if not seeds or all({run_seed(run) for run in runs} == set(seeds) for runs in rivals.values()):
        return ""
    return f", compared on seeds {' '.join(map(str, seeds))}, the ones all {len(rivals)} have"


def _paired(
    names: list[str], groups: dict[str, list], split: str
) -> tuple[str, str, dict[str, PairedDifference]]:
    """The rows that ``--paired A B`` names and their differences; a user error exits."""
    try:
        label_a, label_b = (resolve_variant(groups, name) for name in names)
    except ValueError as error:
        kinds = [dropout_kind(group[0]) for group in groups.values()]
        several = any(kinds.count(name) > 1 for name in names)
        exit_with_error(f"--paired: {error}{', or pass --select-on-validation' if several else ''}")
    if label_a == label_b:
        exit_with_error(f"--paired: {names[0]!r} and {names[1]!r} are one row")
    try:
        differences = paired_differences(groups[label_a], groups[label_b], PAIRED_METRICS, split)
    except ValueError as error:
        exit_with_error(f"--paired: {error}")
    if not differences:
        exit_with_error(f"--paired: no metric of {', '.join(PAIRED_METRICS)} is in every run")
    return label_a, label_b, differences


if __name__ == "__main__":
    main()
