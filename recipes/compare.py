"""Turn several finished run directories into one table: mean (std) over seeds.

Runs are averaged only when every setting but the seed agrees (their ``config.json``); the
settings that differ between rows get a column. Folders that are not runs (the generated
``corpus/``, the ``sentencepiece/`` cache, ``analysis/``) are passed over.

The fair protocol: every configuration trained with the same budget over the same seeds;
``--select-on-validation`` keeps, for each dropout kind, the configuration with the best mean
*validation* -ELBO (the test split chooses nothing); ``--paired A B`` then prints the
differences A - B paired by seed, with their standard error over seeds.

Usage:
    python recipes/compare.py runs/ptb/*/
    python recipes/compare.py runs/ptb/*/ --split valid
    python recipes/compare.py runs/ptb/*/ --select-on-validation --paired adversarial uniform
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from advmask.cli import Parser, exit_with_error
from advmask.report import (
    group_runs,
    is_run_directory,
    load_runs,
    paired_differences,
    print_table,
    results_legend,
    results_table,
    select_on_validation,
)

PAIRED_METRICS = ("neg_elbo", "nll_iw", "ppl_iw", "kl", "mutual_information", "active_units")


def main(argv: list[str] | None = None) -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", help="run directories holding metrics.json")
    parser.add_argument("--split", default="test", choices=("test", "valid"))
    parser.add_argument(
        "--select-on-validation",
        action="store_true",
        help="per dropout kind, keep the configuration with the best mean validation -ELBO",
    )
    parser.add_argument(
        "--paired",
        nargs=2,
        metavar=("A", "B"),
        help="print A - B paired by seed; A and B are dropout kinds or row labels",
    )
    args = parser.parse_args(argv)
    console = Console()
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
        by_kind: dict[str, dict] = {}
        for label, group in groups.items():
            by_kind.setdefault(str(group[0].get("dropout")), {})[label] = group
        try:
            chosen = {kind: select_on_validation(rows) for kind, rows in by_kind.items()}
        except ValueError as error:
            exit_with_error(error)
        for kind, label in chosen.items():
            console.print(f"{kind}: chose {label} on validation -ELBO", highlight=False)
        groups = {label: groups[label] for label in chosen.values()}
        runs = [run for group in groups.values() for run in group]
    table = results_table(runs, title=f"{args.split} results", split=args.split)
    print_table(console, table)
    console.print(results_legend([str(c.header) for c in table.columns]), highlight=False)
    if args.paired:
        sides = [_pick(groups, name) for name in args.paired]
        try:
            differences = paired_differences(*sides, PAIRED_METRICS, split=args.split)
        except ValueError as error:
            exit_with_error(error)
        paired = Table(title=f"{args.paired[0]} - {args.paired[1]}, paired by seed ({args.split})")
        for column in ("metric", "mean difference", "std", "se", "pairs"):
            paired.add_column(column, justify="right")
        for metric, difference in differences.items():
            paired.add_row(
                metric,
                f"{difference.mean:+.3f}",
                "" if difference.std is None else f"{difference.std:.3f}",
                "" if difference.se is None else f"{difference.se:.3f}",
                str(difference.num_pairs),
            )
        print_table(console, paired)


def _pick(groups: dict[str, list], name: str) -> list:
    """The runs of the row labelled ``name``, or of the one row of dropout kind ``name``."""
    if name in groups:
        return groups[name]
    matches = [label for label, group in groups.items() if group[0].get("dropout") == name]
    if len(matches) == 1:
        return groups[matches[0]]
    if not matches:
        exit_with_error(f"--paired: no row is {name!r}; rows: {', '.join(groups)}")
    exit_with_error(
        f"--paired: {len(matches)} rows are {name!r} ({', '.join(matches)}); name one row, or "
        "pass --select-on-validation"
    )


if __name__ == "__main__":
    main()
