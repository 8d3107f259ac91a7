"""Forward+backward cost of each top-K relaxation and of the masker, measured side by side.

Prints, for B = 32 and T in {20, 100, 400}:

* each relaxation through ``advmask.bottom_k`` (hard forward + relaxed backward), vectorised;
* the same relaxation run row by row in a Python loop (the naive baseline);
* for ``"euclidean"``, the authors' 3 x 100-point grid search for the threshold;
* the whole :class:`advmask.AdversarialMasker` as a ratio to its score network alone.

Times are medians of ``torch.utils.benchmark`` blocked auto-ranges (noisy machines: read the
ratios). Usage::

    python benchmarks/bench_topk.py                 # all relaxations, T = 20, 100, 400
    python benchmarks/bench_topk.py --lengths 100 --relaxations euclidean sst
"""

from __future__ import annotations

import argparse

import torch
from rich.console import Console
from rich.table import Table
from torch.utils.benchmark import Timer

from advmask import AdversarialMasker, bottom_k, num_to_drop
from advmask.relaxations import RELAXATIONS
from advmask.report import print_table

# Hyper-parameters for the benchmark; perturbed uses fewer samples than its default of 500,
# stated in the table.
OPTIONS: dict[str, dict] = {"perturbed": {"num_samples": 100}}


def median_seconds(fn, min_run_time: float) -> float:
    return (
        Timer(stmt="fn()", globals={"fn": fn}).blocked_autorange(min_run_time=min_run_time).median
    )


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
    min_run_time: float,
    generator: torch.Generator,
) -> tuple[float, float]:
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

    return (
        median_seconds(score_network_only, min_run_time),
        median_seconds(full_masker, min_run_time),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lengths", type=int, nargs="+", default=[20, 100, 400])
    parser.add_argument("--rate", type=float, default=0.3)
    parser.add_argument("--relaxations", nargs="+", default=sorted(RELAXATIONS))
    parser.add_argument("--min-run-time", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console()
    generator = torch.Generator().manual_seed(0)

    table = Table(
        title=f"top-K forward+backward, B={args.batch}, rate={args.rate}, "
        f"{torch.get_num_threads()} threads (median ms)"
    )
    for column in (
        "relaxation",
        "T",
        "vectorised",
        "row loop",
        "loop / vectorised",
        "grid search (authors)",
        "grid / vectorised",
    ):
        table.add_column(column, justify="right")
    for length in args.lengths:
        scores, k, eligible, _ = problem(args.batch, length, args.rate, generator)
        for name in args.relaxations:
            fast = median_seconds(
                vectorised(name, scores, k, eligible, generator), args.min_run_time
            )
            slow = median_seconds(row_loop(name, scores, k, eligible, generator), args.min_run_time)
            grid = ["", ""]
            if name == "euclidean":
                reference = median_seconds(grid_reference(scores, k, eligible), args.min_run_time)
                grid = [f"{reference * 1e3:.2f}", f"{reference / fast:.1f}x"]
            label = name + (f" (M={OPTIONS[name]['num_samples']})" if name in OPTIONS else "")
            table.add_row(
                label,
                str(length),
                f"{fast * 1e3:.2f}",
                f"{slow * 1e3:.2f}",
                f"{slow / fast:.1f}x",
                *grid,
            )
    print_table(console, table)

    masker_table = Table(
        title="AdversarialMasker (LSTM score network, embedding 128, hidden "
        "256, V=10k) vs its score network alone, forward+backward (median ms)"
    )
    for column in ("relaxation", "T", "score network", "masker", "masker / score network"):
        masker_table.add_column(column, justify="right")
    for length in args.lengths:
        for name in args.relaxations:
            net, full = masker_vs_score_network(
                length, args.batch, 10_000, args.rate, name, args.min_run_time, generator
            )
            masker_table.add_row(
                name, str(length), f"{net * 1e3:.2f}", f"{full * 1e3:.2f}", f"{full / net:.2f}x"
            )
    print_table(console, masker_table)


if __name__ == "__main__":
    main()
