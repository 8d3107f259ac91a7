"""Forward+backward cost of each top-K relaxation and of the masker, measured side by side.

Prints, for B = 32 and T in {20, 100, 400}:

* each relaxation through ``advmask.bottom_k`` (hard forward + relaxed backward), vectorised;
* the same relaxation run row by row in a Python loop (the naive baseline);
* for ``"euclidean"``, the authors' 3 x 100-point grid search for the threshold;
* ``torch.topk`` of the same scores (forward+backward of its values), the floor a sort-based
  exact top-K can be held against;
* the whole :class:`advmask.AdversarialMasker` as a ratio to its score network alone.

Every repeat runs every method once in shuffled order and ratios are paired per repeat,
reported as median [min-max] (see ``benchmarks/_timing.py``). Usage::

    python benchmarks/bench_topk.py                 # all relaxations, T = 20, 100, 400
    python benchmarks/bench_topk.py --lengths 100 --relaxations euclidean sst
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved, paired_ratios, summary

from advmask import AdversarialMasker, bottom_k
from advmask.budget import num_to_drop
from advmask.relaxations import RELAXATIONS
from advmask.training.console import print_table

# Hyper-parameters for the benchmark; perturbed uses fewer samples than its default of 500,
# stated in the table.
OPTIONS: dict[str, dict] = {"perturbed": {"num_samples": 100}}


def problem(batch: int, length: int, rate: float, generator: torch.Generator):
    lengths = torch.randint(length // 2, length + 1, (batch,), generator=generator)
    lengths[0] = length
    eligible = torch.arange(length) < lengths[:, None]
    k = num_to_drop(rate, eligible.sum(1))
    scores = torch.randn(batch, length, generator=generator)
    return scores, k, eligible, lengths


def vectorised(name, scores, k, eligible, generator):
    def run():
        leaf = scores.clone().requires_grad_()
        mask = bottom_k(leaf, k, eligible, name, generator=generator, **OPTIONS.get(name, {}))
        mask.backward(torch.ones_like(mask))

    return run


def row_loop(name, scores, k, eligible, generator):
    def run():
        for row in range(scores.shape[0]):
            leaf = scores[row : row + 1].clone().requires_grad_()
            mask = bottom_k(
                leaf,
                k[row : row + 1],
                eligible[row : row + 1],
                name,
                generator=generator,
                **OPTIONS.get(name, {}),
            )
            mask.backward(torch.ones_like(mask))

    return run


def grid_search_projection(
    scores: torch.Tensor,
    k: torch.Tensor,
    eligible: torch.Tensor,
    rounds: int = 3,
    points: int = 100,
) -> torch.Tensor:
    """The authors' threshold search: y = clip(nu - s, 0, 1), nu from 3 x 100-point grids."""
    negated = torch.where(eligible, -scores, torch.full_like(scores, -1e4))
    low = negated.min(1).values.detach() - 1.0
    high = negated.max(1).values.detach() + 1.0
    for _ in range(rounds):
        grid = low[:, None] + (high - low)[:, None] * torch.linspace(0, 1, points)
        filled = (grid[:, :, None] + negated.detach()[:, None, :]).clamp(0, 1)
        total = torch.where(eligible[:, None, :], filled, 0.0).sum(2)
        above = (total >= k[:, None]).float().argmax(1).clamp_min(1)
        low = grid.gather(1, (above - 1)[:, None]).squeeze(1)
        high = grid.gather(1, above[:, None]).squeeze(1)
    nu = (low + high) / 2
    soft = (nu[:, None] + negated).clamp(0, 1)
    return torch.where(eligible, soft, 0.0)


def topk_reference(scores, k):
    largest = int(k.max())

    def run():
        leaf = scores.clone().requires_grad_()
        values = torch.topk(leaf, largest, dim=1, largest=False).values
        values.backward(torch.ones_like(values))

    return run


def grid_reference(scores, k, eligible):
    def run():
        leaf = scores.clone().requires_grad_()
        soft = grid_search_projection(leaf, k, eligible)
        soft.backward(torch.ones_like(soft))

    return run


def masker_vs_score_network(
    length: int,
    batch: int,
    vocab: int,
    rate: float,
    relaxation: str,
    repeats: int,
    generator: torch.Generator,
) -> dict[str, list[float]]:
    torch.manual_seed(0)
    masker = AdversarialMasker(
        vocab_size=vocab,
        rate=rate,
        relaxation=relaxation,
        relaxation_options=OPTIONS.get(relaxation),
    )
    tokens = torch.randint(4, vocab, (batch, length), generator=generator)
    lengths = torch.randint(length // 2, length + 1, (batch,), generator=generator)
    weights = torch.randn(batch, length, generator=generator)

    def score_network_only():
        mean, std = masker.score_network(tokens, lengths)
        (mean * weights + std).sum().backward()

    def full_masker():
        out = masker(tokens, lengths)
        ((out.mask * weights).sum() + out.regularizer).backward()

    return interleaved({"score network": score_network_only, "masker": full_masker}, repeats)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lengths", type=int, nargs="+", default=[20, 100, 400])
    parser.add_argument("--rate", type=float, default=0.3)
    parser.add_argument("--relaxations", nargs="+", default=sorted(RELAXATIONS))
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--calls", type=int, default=10, help="calls averaged per repeat")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--no-row-loop", action="store_true", help="skip the (slow) row-by-row baseline"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console()
    generator = torch.Generator().manual_seed(0)

    table = Table(
        title=f"top-K forward+backward, B={args.batch}, rate={args.rate}, "
        f"{torch.get_num_threads()} threads, {args.repeats} interleaved repeats: ms and "
        "paired ratios, median \\[min-max]"
    )
    for column in (
        "relaxation",
        "T",
        "vectorised ms",
        "/ torch.topk",
        "row loop / vectorised",
        "grid search (authors) / vectorised",
    ):
        table.add_column(column, justify="right")
    for length in args.lengths:
        scores, k, eligible, _ = problem(args.batch, length, args.rate, generator)
        for name in args.relaxations:
            methods = {
                "vectorised": vectorised(name, scores, k, eligible, generator),
                "topk": topk_reference(scores, k),
            }
            if not args.no_row_loop:
                methods["row loop"] = row_loop(name, scores, k, eligible, generator)
            if name == "euclidean":
                methods["grid"] = grid_reference(scores, k, eligible)
            times = interleaved(methods, args.repeats, calls_per_repeat=args.calls)
            fast = times["vectorised"]

            def ratio(other, times=times, fast=fast):
                if other not in times:
                    return ""
                return summary(paired_ratios(times[other], fast), digits=1)

            label = name + (f" (M={OPTIONS[name]['num_samples']})" if name in OPTIONS else "")
            table.add_row(
                label,
                str(length),
                summary(fast, 1e3),
                summary(paired_ratios(fast, times["topk"]), digits=1),
                ratio("row loop"),
                ratio("grid"),
            )
    print_table(console, table)

    masker_table = Table(
        title="AdversarialMasker (LSTM score network, embedding 128, hidden 256, V=10k) vs "
        "its score network alone, forward+backward, paired per repeat: median \\[min-max]"
    )
    for column in ("relaxation", "T", "score network ms", "masker ms", "masker / score network"):
        masker_table.add_column(column, justify="right")
    for length in args.lengths:
        for name in args.relaxations:
            times = masker_vs_score_network(
                length, args.batch, 10_000, args.rate, name, args.repeats, generator
            )
            masker_table.add_row(
                name,
                str(length),
                summary(times["score network"], 1e3),
                summary(times["masker"], 1e3),
                summary(paired_ratios(times["masker"], times["score network"])),
            )
    print_table(console, masker_table)


if __name__ == "__main__":
    main()
