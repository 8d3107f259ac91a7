"""Wall time of a grid of the recipe with ``--jobs`` against one process.

Runs ``recipes/seqvae_awd.py`` (the demo's preset, a smaller grid and budget by default) as a
user would, in a fresh folder each time, three ways: one process with torch's threads
(``--jobs 1``), one process with one thread (``--jobs 1 --threads 1``) and ``--jobs N``
processes of one thread each. Every repeat runs each way once in shuffled order; speed-ups are
paired per repeat and reported as median [min-max] (see ``benchmarks/_timing.py``). The whole
machine is what is measured: run it with nothing else busy.

Usage::

    python benchmarks/bench_jobs.py                       # 4 runs of 2 epochs, 3 repeats
    python benchmarks/bench_jobs.py --epochs 8 --seeds 0 1 2 --repeats 2
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved, paired_ratios, summary

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "seqvae_awd.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="processes of the --jobs way")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of each run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds of the grid")
    parser.add_argument("--dropouts", nargs="+", default=["none", "adversarial"])
    parser.add_argument("--repeats", type=int, default=3, help="each way once per repeat")
    args = parser.parse_args()
    grid = [
        "--dropout", *args.dropouts, "--seed", *map(str, args.seeds),
        "--epochs", str(args.epochs), "--checkpoint-every", "0",
    ]  # fmt: skip
    ways = {
        "one process, torch's threads": ["--jobs", "1"],
        "one process, 1 thread": ["--jobs", "1", "--threads", "1"],
        f"{args.jobs} processes, 1 thread each": ["--jobs", str(args.jobs)],
    }

    def run(flags: list[str]) -> None:
        with tempfile.TemporaryDirectory() as out:
            command = [sys.executable, str(RECIPE), *grid, *flags, "--out", out]
            subprocess.run(command, check=True, capture_output=True)

    methods = {name: (lambda flags=flags: run(flags)) for name, flags in ways.items()}
    times = interleaved(methods, args.repeats, warmup=0)
    runs = len(args.seeds) * len(args.dropouts)
    print(f"{runs} runs of {args.epochs} epochs (demo preset), {args.repeats} repeats")
    baseline = "one process, torch's threads"
    for name, seconds in times.items():
        speedup = summary(paired_ratios(times[baseline], seconds))
        print(f"{name:32s} {summary(seconds, digits=1)} s   speed-up {speedup}")


if __name__ == "__main__":
    main()
