"""Turn several finished run directories into one table: mean (std) over seeds.

Runs are averaged only when every setting but the seed agrees (their ``config.json``); the
settings that differ between rows get a column. Folders that are not runs (the generated
``corpus/``, the ``sentencepiece/`` cache, ``analysis/``) are passed over.

Usage:
    python recipes/compare.py runs/ptb/*/
    python recipes/compare.py runs/ptb/*/ --split valid
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from advmask.cli import Parser, exit_with_error
from advmask.report import is_run_directory, load_runs, print_table, results_table


def main(argv: list[str] | None = None) -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", help="run directories holding metrics.json")
    parser.add_argument("--split", default="test", choices=("test", "valid"))
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
    table = results_table(runs, title=f"{args.split} results", split=args.split)
    print_table(console, table)


if __name__ == "__main__":
    main()
