"""The cost of one training step under each baseline, relative to ``annealing``.

Each baseline's step is taken as the recipe takes it, through
:class:`advmask.seqvae.trainer.BaselineTrainer` (the EMA update included), on one fixed batch
of the reduced PTB model's sizes. ``lagging`` is timed in its aggressive phase, whose cost
depends on how many encoder-only updates its stopping rule takes: the table gives the ms per
step and the updates per step of the timed calls. ``fbp`` is timed after its reset (a step
like ``free-bits``). Every repeat runs every baseline once in shuffled order; ratios are paired
per repeat and reported as median [min-max] (see ``benchmarks/_timing.py``).

Usage::

    python benchmarks/bench_baselines.py --threads 1
    python benchmarks/bench_baselines.py --svi-steps 5 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved, paired_ratios, summary
from bench_train import make_batch

from advmask import set_value_checks
from advmask.seqvae.baselines import BASELINES, BaselineSettings, make_baseline
from advmask.seqvae.data import Batch
from advmask.seqvae.factory import ModelSpec, build_sequence_vae
from advmask.seqvae.step import Optimizers, StepSettings
from advmask.seqvae.trainer import BaselineTrainer

# One setting per baseline, as in the results page's table.
SETTINGS = {
    "annealing": BaselineSettings(),
    "beta-vae": BaselineSettings(beta=0.5),
    "cyclical": BaselineSettings(),
    "free-bits": BaselineSettings(free_bits=0.1),
    "lagging": BaselineSettings(),
    "fbp": BaselineSettings(free_bits=0.1),
    "sa-vae": BaselineSettings(),
}


def baseline_step(name: str, settings: BaselineSettings, spec: ModelSpec, batches: list[Batch]):
    """A function taking one step of ``name``, and the trainer's statistics it returned last."""
    torch.manual_seed(0)
    model = build_sequence_vae(spec).train()
    optimizer = torch.optim.SGD(model.vae_parameters(), lr=1e-3)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.998))
    baseline = make_baseline(name, settings, total_steps=10_000, steps_per_epoch=1)
    trainer = BaselineTrainer(
        baseline, model, Optimizers(optimizer), StepSettings(5.0), steps_per_epoch=10_000,
        averaged=ema, batches=lambda split: batches,
    )  # fmt: skip
    number = baseline.pretrain_steps + 2  # fbp: past its reset
    last: dict = {}

    def step() -> None:
        stats, _ = trainer.step(batches[0], number)
        last["encoder_updates"] = float(stats.get("encoder_updates", torch.zeros(2))[0])

    return step, last


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=25, help="longest sentence, words")
    parser.add_argument("--vocab", type=int, default=10_000)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--embedding", type=int, default=256)
    parser.add_argument("--svi-steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    set_value_checks(False)  # as the recipe trains
    generator = torch.Generator().manual_seed(0)
    device = torch.device("cpu")
    batches = [
        Batch(*make_batch(args.batch, args.length, args.vocab, device, generator)) for _ in range(4)
    ]
    spec = ModelSpec(
        vocab_size=args.vocab, embedding_dim=args.embedding, hidden_size=args.hidden,
        latent_dim=32, dropout="none", encoder_init="pytorch",
    )  # fmt: skip
    steps, last = {}, {}
    for name in BASELINES:
        settings = SETTINGS[name]
        if name == "sa-vae":
            settings = BaselineSettings(svi_steps=args.svi_steps)
        steps[name], last[name] = baseline_step(name, settings, spec, batches)
    times = interleaved(steps, args.repeats, warmup=1)
    table = Table(
        title=f"one training step per baseline, B={args.batch}, T<={args.length + 1}, "
        f"V={args.vocab}, E={args.embedding}, H={args.hidden}, z 32, no dropout, "
        f"sa-vae {args.svi_steps} SVI steps, CPU ({torch.get_num_threads()} threads), "
        f"{args.repeats} interleaved repeats: median \\[min-max]"
    )
    for column in ("baseline", "ms/step", "/ annealing", "encoder updates/step"):
        table.add_column(column, justify="left" if column == "baseline" else "right")
    for name, seconds in times.items():
        updates = last[name]["encoder_updates"]
        table.add_row(
            name,
            f"{statistics.median(seconds) * 1e3:.0f}",
            summary(paired_ratios(seconds, times["annealing"])),
            f"{updates:.0f}" if name == "lagging" else "",
        )
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
