"""Turn several finished run directories into one table: mean (std) over seeds.

Usage:
    python recipes/compare.py runs/ptb/*/
    python recipes/compare.py runs/ptb/*/ --split valid
"""

from __future__ import annotations

import argparse

from rich.console import Console

from advmask.report import load_runs, print_table, results_table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", help="run directories holding metrics.json")
    parser.add_argument("--split", default="test", choices=("test", "valid"))
    args = parser.parse_args(argv)
    runs = load_runs(args.run_dirs)
    table = results_table(runs, title=f"{args.split} results", split=args.split)
    print_table(Console(), table)


if __name__ == "__main__":
    main()
