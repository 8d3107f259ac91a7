"""Training-step cost of none / uniform / adversarial word dropout, and the Double-LSTM fast path.

Everything is measured side by side in one run and reported as medians and ratios:

* one full training step (forward, backward, both optimisers) of the sequence VAE with each
  dropout variant, at paper shapes scaled for a CPU (``--hidden``, ``--vocab``, ``--length``);
* the Double-LSTM decoder's fast path (input projections for all steps in one matmul) against a
  Python loop over ``nn.LSTMCell`` calls, forward+backward.

Usage::

    python benchmarks/bench_train.py                       # CPU-scaled defaults
    python benchmarks/bench_train.py --hidden 2048 --vocab 20000 --length 80 --device cuda
"""

from __future__ import annotations

import argparse

import torch
from rich.console import Console
from rich.table import Table
from torch.utils.benchmark import Timer

from advmask.factory import ModelSpec, build_sequence_vae
from advmask.models import double_lstm_reference
from advmask.report import print_table


def median_seconds(fn, min_run_time: float, device: torch.device) -> float:
    def synchronised():
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return (
        Timer(stmt="fn()", globals={"fn": synchronised})
        .blocked_autorange(min_run_time=min_run_time)
        .median
    )


def make_batch(
    batch: int, length: int, vocab: int, device: torch.device, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    words = torch.randint(length // 2, length + 1, (batch,), generator=generator)
    words[0] = length
    tokens = torch.randint(4, vocab, (batch, length + 2), generator=generator)
    positions = torch.arange(length + 2)
    tokens[:, 0] = 1
    tokens = torch.where(positions == (words + 1)[:, None], 2, tokens)
    tokens = torch.where(positions > (words + 1)[:, None], 0, tokens)
    return tokens.to(device), (words + 2).to(device)


def training_step(spec: ModelSpec, tokens, lengths, device):
    torch.manual_seed(0)
    model = build_sequence_vae(spec).to(device).train()
    vae_optimizer = torch.optim.SGD(model.vae_parameters(), lr=1e-3)
    adversary_optimizer = (
        torch.optim.Adam(model.masker.parameters(), lr=1e-4)
        if spec.dropout == "adversarial"
        else None
    )

    def step():
        out = model(tokens, lengths, kl_weight=1.0)
        vae_optimizer.zero_grad(set_to_none=True)
        if adversary_optimizer is not None:
            adversary_optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.vae_parameters(), 5.0)
        vae_optimizer.step()
        if adversary_optimizer is not None:
            torch.nn.utils.clip_grad_norm_(model.masker.parameters(), 5.0)
            adversary_optimizer.step()

    return step


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=40, help="words per sequence (max)")
    parser.add_argument("--vocab", type=int, default=10_000)
    parser.add_argument("--embedding", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--adversary-hidden", type=int, default=None)
    parser.add_argument("--rate", type=float, default=0.3)
    parser.add_argument("--relaxation", default="euclidean")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--min-run-time", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    console = Console()
    generator = torch.Generator().manual_seed(0)
    tokens, lengths = make_batch(args.batch, args.length, args.vocab, device, generator)

    base = ModelSpec(
        vocab_size=args.vocab,
        embedding_dim=args.embedding,
        hidden_size=args.hidden,
        latent_dim=32,
        decoder="double-lstm",
        rate=args.rate,
        relaxation=args.relaxation,
        adversary_embedding_dim=args.embedding,
        adversary_hidden_size=args.adversary_hidden or args.hidden,
    )
    times = {}
    for dropout in ("none", "uniform", "adversarial"):
        spec = ModelSpec(**{**base.__dict__, "dropout": dropout})
        times[dropout] = median_seconds(
            training_step(spec, tokens, lengths, device), args.min_run_time, device
        )
    tokens_per_step = int((lengths - 1).sum())
    table = Table(
        title=f"training step, B={args.batch}, T<={args.length + 1}, V={args.vocab}, "
        f"E={args.embedding}, H={args.hidden}, {args.relaxation}, {device} "
        f"({torch.get_num_threads()} threads)"
    )
    for column in ("dropout", "median ms/step", "tokens/s", "ratio to none", "ratio to uniform"):
        table.add_column(column, justify="right")
    for dropout, seconds in times.items():
        table.add_row(
            dropout,
            f"{seconds * 1e3:.1f}",
            f"{tokens_per_step / seconds:,.0f}",
            f"{seconds / times['none']:.3f}",
            f"{seconds / times['uniform']:.3f}",
        )
    print_table(console, table)

    torch.manual_seed(0)
    model = build_sequence_vae(ModelSpec(**{**base.__dict__, "dropout": "none"})).to(device)
    decoder = model.decoder.eval()
    embedded = decoder.embedding(tokens[:, :-1]).detach().requires_grad_()
    z = torch.randn(args.batch, 32, device=device, requires_grad=True)

    def fast():
        decoder(embedded, z).sum().backward()

    def reference():
        double_lstm_reference(decoder, embedded, z).sum().backward()

    fast_s = median_seconds(fast, args.min_run_time, device)
    reference_s = median_seconds(reference, args.min_run_time, device)
    paths = Table(title="Double-LSTM decoder, forward+backward")
    for column in ("implementation", "median ms", "speed-up"):
        paths.add_column(column, justify="right")
    paths.add_row("Python LSTMCell loop", f"{reference_s * 1e3:.1f}", "1.00x")
    paths.add_row("fast path", f"{fast_s * 1e3:.1f}", f"{reference_s / fast_s:.2f}x")
    print_table(console, paths)


if __name__ == "__main__":
    main()
