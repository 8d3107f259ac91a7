"""Training-step speed of this checkout against an older commit, the same script on both.

Runs ``benchmarks/bench_train.py --sections step`` *from this checkout* against the library of
each tree (``PYTHONPATH``), alternating processes: each pair runs one process per tree, in a
random order, and the speed-up of the pair is ``old median / new median`` per dropout
variant. Reported as median [min-max] over the pairs. The older tree is a ``git worktree`` of
the commit, created if missing.

Usage::

    python benchmarks/compare_commits.py 238370d --pairs 6 --repeats 8
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import summary

HERE = Path(__file__).resolve().parents[1]


def worktree(revision: str) -> Path:
    commit = subprocess.run(
        ["git", "-C", str(HERE), "rev-parse", "--short", revision],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    path = Path(tempfile.gettempdir()) / f"advmask-{commit}"
    if not path.exists():
        subprocess.run(
            ["git", "-C", str(HERE), "worktree", "add", "--detach", str(path), commit],
            check=True,
            capture_output=True,
        )
    return path


def run_once(tree: Path, repeats: int, extra: list[str]) -> dict[str, float]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [
                sys.executable,
                str(HERE / "benchmarks" / "bench_train.py"),
                "--sections",
                "step",
                "--threads",
                "1",
                "--repeats",
                str(repeats),
                "--json",
                out.name,
                *extra,
            ],
            env={**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"},
            cwd=tree,
            check=True,
            capture_output=True,
        )
        step = json.loads(Path(out.name).read_text())["step"]
    return {name: statistics.median(times) for name, times in step.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revision", help="the older commit, e.g. 238370d")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=8, help="interleaved repeats per process")
    parser.add_argument("bench_args", nargs="*", help="passed to bench_train.py (after --)")
    args = parser.parse_args()
    trees = {"old": worktree(args.revision), "new": HERE}
    order = random.Random(0)
    medians: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    for pair in range(args.pairs):
        sides = ["old", "new"]
        order.shuffle(sides)
        for side in sides:
            medians[side].append(run_once(trees[side], args.repeats, args.bench_args))
        print(
            f"pair {pair + 1}/{args.pairs}: "
            + ", ".join(
                f"{name} {medians['old'][-1][name] / medians['new'][-1][name]:.3f}x"
                for name in medians["new"][-1]
            ),
            flush=True,
        )
    print(
        f"\nspeed-up of this checkout over {args.revision} (old ms / new ms per pair of "
        f"processes), {args.pairs} pairs x {args.repeats} interleaved repeats, 1 thread"
    )
    for name in medians["new"][0]:
        old = [m[name] for m in medians["old"]]
        new = [m[name] for m in medians["new"]]
        ratios = [a / b for a, b in zip(old, new, strict=True)]
        print(
            f"  {name:12s} old {summary(old, 1e3, 1)} ms  new {summary(new, 1e3, 1)} ms  "
            f"speed-up {summary(ratios, digits=3)}"
        )


if __name__ == "__main__":
    main()
