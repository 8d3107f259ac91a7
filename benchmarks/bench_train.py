"""Training-step and evaluation cost of the sequence VAE, measured side by side.

Sections (``--sections``, all by default):

* ``step``: one training step (forward, backward, gradient clipping, both optimisers) of the
  sequence VAE with no, uniform and adversarial word dropout, as the recipe takes it:
  :func:`advmask.seqvae.step.train_step` with the recipe's optimisers and value checks off.
  Also the adversary's share of the step's FLOPs, against which the AWD / uniform time ratio
  is read.
* ``iw``: the cost of an importance-weighted evaluation with ``S`` samples divided by ``S``
  one-sample forward passes (posterior and reconstruction of the same batch).
* ``recurrence``: the Double-LSTM recurrence alone (no output layer), fast path against a
  Python loop of ``nn.LSTMCell`` calls, forward+backward.
* ``memory``: peak memory of an IW evaluation at the ``ptb`` preset's sizes (run in a fresh
  process each, so the high-water mark belongs to it alone).
* ``floor`` (with ``--precision ... bf16``): the bf16 step beside its floor, the step's matmul
  FLOPs at the bf16 matmul rate measured here plus its passes over the (N, V) logits that no
  matmul makes (the loss reads them forward and backward and writes their gradient) at the
  memory bandwidth measured here; what the step takes beyond that is overhead to hunt.

``--precision fp32 bf16`` times ``step`` and ``iw`` in each precision in the same repeats and
adds the paired bf16 / fp32 ratio (bf16 pays on AMX CPUs and Ampere+ GPUs: give ``lscpu``). Every
repeat runs every method once in shuffled order; ratios are paired per repeat and
reported as median [min-max] (see ``benchmarks/_timing.py``). ``--json FILE`` writes the raw
timings, which ``benchmarks/compare_commits.py`` pairs across two checkouts.

Usage: ``python benchmarks/bench_train.py --threads 1`` (all sections), ``--sections step
--json step.json``, ``--hidden 2048 --vocab 20000 --length 80 --device cuda``, ``--threads 1
--precision fp32 bf16 --sections step iw floor``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from torch.nn.utils.rnn import PackedSequence
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved, paired_ratios, summary

from advmask import set_value_checks
from advmask.seqvae.data import Batch
from advmask.seqvae.factory import ModelSpec, build_sequence_vae
from advmask.seqvae.metrics import importance_weighted_log_likelihood
from advmask.seqvae.step import Optimizers, StepSettings, train_step
from advmask.training.console import print_table
from advmask.training.optim import adam

DROPOUTS = ("none", "uniform", "adversarial")
PRECISIONS = ("fp32", "bf16")


def make_batch(
    batch: int, length: int, vocab: int, device: torch.device, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, length + 2) ``[BOS, words, EOS, PAD..]`` with length // 2 to length words."""
    words = torch.randint(length // 2, length + 1, (batch,), generator=generator)
    words[0] = length
    tokens = torch.randint(4, vocab, (batch, length + 2), generator=generator)
    positions = torch.arange(length + 2)
    tokens[:, 0] = 1
    tokens = torch.where(positions == (words + 1)[:, None], 2, tokens)
    tokens = torch.where(positions > (words + 1)[:, None], 0, tokens)
    return tokens.to(device), (words + 2).to(device)


def training_step(
    spec: ModelSpec, tokens: torch.Tensor, lengths: torch.Tensor, device, bf16: bool = False
):
    torch.manual_seed(0)
    model = build_sequence_vae(spec).to(device).train()
    vae_optimizer = torch.optim.SGD(model.vae_parameters(), lr=1e-3)
    adversary = adam(model.masker.parameters(), 1e-4) if spec.dropout == "adversarial" else None
    batch, optimizers = Batch(tokens=tokens, lengths=lengths), Optimizers(vae_optimizer, adversary)

    def step() -> None:
        train_step(model, batch, 1.0, optimizers, StepSettings(5.0, bf16=bf16))

    return model, step


def method_name(dropout: str, precision: str, precisions: list[str]) -> str:
    """``"uniform"`` with one precision, ``"uniform bf16"`` with several."""
    return dropout if len(precisions) == 1 else f"{dropout} {precision}"


def step_flops(model: torch.nn.Module, tokens: torch.Tensor, lengths: torch.Tensor) -> float:
    """Matmul FLOPs of one forward+backward, with ``nn.LSTM``/``nn.GRU`` layers counted by hand.

    :class:`torch.utils.flop_counter.FlopCounterMode` does not see the fused RNN kernels, so
    each recurrent layer adds ``3 x 2 B T G H (E + H)`` (forward and twice that backward;
    ``G`` gates per direction; ``B T`` the positions computed, the valid ones of a packed
    input), elementwise work aside.
    """
    recurrent = 0.0

    def count(module: torch.nn.RNNBase, inputs: tuple, _output: Any) -> None:
        nonlocal recurrent
        sequence = inputs[0]
        if isinstance(sequence, PackedSequence):  # only the packed (valid) steps are computed
            positions = sequence.data.shape[0]
        else:
            positions = sequence.shape[0] * sequence.shape[1]
        gates = 4 if isinstance(module, torch.nn.LSTM) else 3
        directions = 2 if module.bidirectional else 1
        width = module.input_size + module.hidden_size
        recurrent += 3 * 2 * positions * gates * module.hidden_size * width * directions

    hooks = [
        m.register_forward_hook(count) for m in model.modules() if isinstance(m, torch.nn.RNNBase)
    ]
    try:
        with FlopCounterMode(display=False) as counter:
            model(tokens, lengths, beta=1.0).loss.backward()
    finally:
        for hook in hooks:
            hook.remove()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() + recurrent


def section_step(args, base: ModelSpec, tokens, lengths, device, console, results) -> None:
    set_value_checks(False)  # the recipe validates its data once, then trains so
    precisions = args.precision
    models, steps = {}, {}
    for dropout in DROPOUTS:
        for precision in precisions:
            name = method_name(dropout, precision, precisions)
            models[name], steps[name] = training_step(
                ModelSpec(**{**base.__dict__, "dropout": dropout}),
                tokens,
                lengths,
                device,
                bf16=precision == "bf16",
            )
    times = interleaved(steps, args.repeats, device=device)
    results["step"] = times
    set_value_checks(True)
    flops = {
        d: step_flops(models[method_name(d, precisions[0], precisions)], tokens, lengths)
        for d in ("uniform", "adversarial")
    }
    results["flops"] = flops
    table = Table(
        title=f"training step, B={args.batch}, T<={args.length + 1}, V={args.vocab}, "
        f"E={args.embedding}, H={args.hidden}, adversary H={base.adversary_hidden_size}, "
        f"{args.relaxation}, {device} ({torch.get_num_threads()} threads), "
        f"{args.repeats} interleaved repeats: median \\[min-max]"
    )
    columns = ["dropout", "precision", "ms/step", "tokens/s", "/ none", "/ uniform"]
    if "bf16" in precisions and "fp32" in precisions:
        columns.append("bf16 / fp32")
    for column in columns:
        table.add_column(column, justify="right")
    tokens_per_step = int((lengths - 1).sum())
    for dropout in DROPOUTS:
        for precision in precisions:
            name = method_name(dropout, precision, precisions)
            none, uniform = (method_name(d, precision, precisions) for d in ("none", "uniform"))
            row = [
                dropout,
                precision,
                summary(times[name], 1e3, 1),
                f"{tokens_per_step / statistics.median(times[name]):,.0f}",
                summary(paired_ratios(times[name], times[none]), digits=3),
                summary(paired_ratios(times[name], times[uniform]), digits=3),
            ]
            if len(columns) > 6:
                fp32 = method_name(dropout, "fp32", precisions)
                row.append(summary(paired_ratios(times[name], times[fp32]), digits=3))
            table.add_row(*row)
    print_table(console, table)
    share = flops["adversarial"] / flops["uniform"] - 1
    uniform = method_name("uniform", precisions[0], precisions)
    adversarial = method_name("adversarial", precisions[0], precisions)
    console.print(
        f"FLOPs per step (matmuls, fwd+bwd): uniform {flops['uniform'] / 1e9:.2f} G, "
        f"adversarial {flops['adversarial'] / 1e9:.2f} G: 1 + adversary's share = "
        f"{1 + share:.3f}; measured AWD / uniform time ({precisions[0]}) "
        f"{summary(paired_ratios(times[adversarial], times[uniform]), digits=3)}"
    )


def section_iw(args, base: ModelSpec, tokens, lengths, device, console, results) -> None:
    torch.manual_seed(0)
    model = build_sequence_vae(ModelSpec(**{**base.__dict__, "dropout": "none"})).to(device)
    model.eval()
    samples = args.iw_samples
    precisions = args.precision

    def autocast(precision: str):
        # As advmask.seqvae.evaluation.evaluate(bf16=...): the networks under autocast, the
        # log-weights and their log-sum-exp outside it.
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def one_sample(precision: str) -> None:
        with torch.no_grad(), autocast(precision):
            mean, logvar = model.posterior(tokens, lengths)
            z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
            model.reconstruction_nll(tokens, lengths, z)

    def importance_weighted(precision: str) -> None:
        # As advmask.seqvae.evaluation.evaluate calls it (chunk_size = its iw_chunk default).
        with torch.no_grad():
            with autocast(precision):
                mean, logvar = model.posterior(tokens, lengths)

            def log_likelihood(zs: torch.Tensor) -> torch.Tensor:
                with autocast(precision):
                    return model.log_likelihood(tokens, lengths, zs)

            importance_weighted_log_likelihood(
                log_likelihood, mean, logvar, num_samples=samples, chunk_size=100
            )

    iw_name, one_name = f"IW, S={samples}", "one-sample forward"
    methods = {}
    for precision in precisions:
        methods[method_name(one_name, precision, precisions)] = partial(one_sample, precision)
        methods[method_name(iw_name, precision, precisions)] = partial(
            importance_weighted, precision
        )
    times = interleaved(methods, args.repeats, device=device)
    results["iw"] = {"samples": samples, **times}
    table = Table(
        title=f"IW evaluation, B={args.batch}, T<={args.length + 1}, V={args.vocab}, "
        f"H={args.hidden}, {device} ({torch.get_num_threads()} threads): median \\[min-max] "
        f"of {args.repeats} interleaved repeats"
    )
    for column in ("method", "ms"):
        table.add_column(column, justify="right")
    for name, values in times.items():
        table.add_row(name, summary(values, 1e3, 1))
    for precision in precisions:
        iw_times = times[method_name(iw_name, precision, precisions)]
        single_times = times[method_name(one_name, precision, precisions)]
        ratio = [iw / (samples * single) for iw, single in zip(iw_times, single_times, strict=True)]
        table.add_row(
            method_name(f"IW / ({samples} x one-sample)", precision, precisions),
            summary(ratio, digits=3),
        )
    if "bf16" in precisions and "fp32" in precisions:
        for name in (iw_name, one_name):
            table.add_row(
                f"{name}: bf16 / fp32",
                summary(
                    paired_ratios(
                        times[method_name(name, "bf16", precisions)],
                        times[method_name(name, "fp32", precisions)],
                    ),
                    digits=3,
                ),
            )
    print_table(console, table)


def matmul_rate(rows: int, inner: int, columns: int, dtype, device, repeats: int) -> float:
    """FLOP/s of a (rows, inner) x (inner, columns) product: median of ``repeats`` timings."""
    generator = torch.Generator().manual_seed(0)
    left = torch.randn(rows, inner, generator=generator).to(device, dtype)
    right = torch.randn(inner, columns, generator=generator).to(device, dtype)
    times = interleaved({"mm": lambda: left @ right}, repeats, device=device)["mm"]
    return 2 * rows * inner * columns / statistics.median(times)


def memory_bandwidth(num_bytes: int, device, repeats: int) -> float:
    """Bytes/s of a copy of ``num_bytes`` bytes (read + write): median of ``repeats``."""
    source = torch.ones(num_bytes // 2, dtype=torch.bfloat16, device=device)
    target = torch.empty_like(source)
    times = interleaved({"copy": lambda: target.copy_(source)}, repeats, device=device)["copy"]
    return 2 * num_bytes / statistics.median(times)


def section_floor(args, base: ModelSpec, tokens, lengths, device, console, results) -> None:
    set_value_checks(False)
    steps, flops = {}, {}
    for dropout in ("uniform", "adversarial"):
        model, steps[dropout] = training_step(
            ModelSpec(**{**base.__dict__, "dropout": dropout}), tokens, lengths, device, bf16=True
        )
        flops[dropout] = step_flops(model, tokens, lengths)
    times = interleaved(steps, args.repeats, device=device)
    set_value_checks(True)
    positions = tokens.shape[0] * (tokens.shape[1] - 1)
    # Rate at the output projection's shape, the step's largest product.
    rates = {
        name: matmul_rate(positions, args.hidden, args.vocab, dtype, device, args.repeats)
        for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32))
    }
    logits_bytes = positions * args.vocab * 2
    bandwidth = memory_bandwidth(logits_bytes, device, args.repeats)
    # The passes over the logits that no matmul makes: the loss reads them forward and
    # backward and writes their gradient (the products' own reads and writes are in the rate).
    logit_passes = 3
    results["floor"] = {
        "step": times,
        "flops": flops,
        "matmul_flops_per_s": rates,
        "bandwidth_bytes_per_s": bandwidth,
        "logits_bytes": logits_bytes,
        "logit_passes": logit_passes,
    }
    console.print(
        f"measured: matmul ({positions} x {args.hidden}) x ({args.hidden} x {args.vocab}) "
        f"bf16 {rates['bf16'] / 1e9:.0f} GFLOP/s, fp32 {rates['fp32'] / 1e9:.0f} GFLOP/s "
        f"(bf16 / fp32 rate {rates['bf16'] / rates['fp32']:.1f}x); copy bandwidth "
        f"{bandwidth / 1e9:.1f} GB/s"
    )
    table = Table(
        title=f"bf16 step beside its floor ({device}, {torch.get_num_threads()} threads, "
        f"{args.repeats} interleaved repeats): floor = FLOPs / bf16 rate + {logit_passes} passes "
        f"over the {logits_bytes / 2**20:.0f} MiB bf16 logits / bandwidth"
    )
    for column in (
        "dropout", "GFLOP", "matmuls ms", "logit passes ms", "floor ms", "measured ms",
        "beyond floor ms", "floor / measured",
    ):  # fmt: skip
        table.add_column(column, justify="right")
    for dropout, step_times in times.items():
        matmuls = flops[dropout] / rates["bf16"]
        passes = logit_passes * logits_bytes / bandwidth
        floor = matmuls + passes
        measured = statistics.median(step_times)
        table.add_row(
            dropout,
            f"{flops[dropout] / 1e9:.2f}",
            f"{matmuls * 1e3:.1f}",
            f"{passes * 1e3:.1f}",
            f"{floor * 1e3:.1f}",
            summary(step_times, 1e3, 1),
            f"{(measured - floor) * 1e3:.1f}",
            f"{floor / measured:.2f}",
        )
    print_table(console, table)


def section_recurrence(args, base: ModelSpec, tokens, device, console, results) -> None:
    torch.manual_seed(0)
    model = build_sequence_vae(ModelSpec(**{**base.__dict__, "dropout": "none"})).to(device)
    decoder = model.decoder.eval()
    embedded = decoder.embedding(tokens[:, :-1]).detach().requires_grad_()
    z = torch.randn(args.batch, base.latent_dim, device=device, requires_grad=True)

    def fast() -> None:
        decoder.recurrent_states(decoder.project_inputs(embedded), z).sum().backward()

    def reference() -> None:
        # What double_lstm_reference does, without its output layer.
        hidden = decoder.latent_to_hidden(z)
        cell = torch.zeros_like(hidden)
        states = []
        for step in range(embedded.shape[1]):
            hidden, cell = decoder.prior_cell(z, (hidden, cell))
            word_input = torch.cat([embedded[:, step], z], dim=-1)
            hidden, cell = decoder.word_cell(word_input, (hidden, cell))
            states.append(hidden)
        torch.stack(states, dim=1).sum().backward()

    methods = {"LSTMCell loop": reference, "fast path": fast}
    times = interleaved(methods, args.repeats, device=device)
    results["recurrence"] = times
    table = Table(title="Double-LSTM recurrence alone (no output layer), forward+backward")
    for column in ("implementation", "ms", "loop / fast"):
        table.add_column(column, justify="right")
    table.add_row("Python LSTMCell loop", summary(times["LSTMCell loop"], 1e3, 1), "1.00")
    table.add_row(
        "fast path",
        summary(times["fast path"], 1e3, 1),
        summary(paired_ratios(times["LSTMCell loop"], times["fast path"])),
    )
    print_table(console, table)


def peak_memory_child(samples: int, length: int, vocab: int) -> None:
    """In a fresh process: peak RSS above the model's of one IW evaluation (ptb sizes)."""
    from advmask.seqvae.data import Batch
    from advmask.seqvae.evaluation import evaluate

    torch.set_num_threads(1)
    torch.manual_seed(0)
    spec = ModelSpec(
        vocab_size=vocab, embedding_dim=512, hidden_size=1024, latent_dim=32, dropout="none"
    )
    model = build_sequence_vae(spec).eval()
    tokens, lengths = make_batch(32, length, vocab, torch.device("cpu"), torch.Generator())
    lengths = torch.full_like(lengths, length + 2)  # every row as long as the longest line
    tokens = torch.where(torch.arange(length + 2) == length + 1, 2, tokens.clamp_min(4))
    tokens[:, 0] = 1
    batch = Batch(tokens=tokens, lengths=lengths, indices=torch.arange(32))
    evaluate(model, [batch], iw_samples=1)  # warm up: allocator pools, lazy inits
    before = _current_rss()
    evaluate(model, [batch], iw_samples=samples)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    logits_per_row = (length + 1) * vocab * 4
    print(json.dumps({"peak_above_model": peak - before, "logits_per_row": logits_per_row}))


def _current_rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def section_memory(args, console, results) -> None:
    length = args.memory_length
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(args.memory_samples), str(length)],
        capture_output=True,
        text=True,
        check=True,
    )
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    results["memory"] = measured
    console.print(
        f"IW evaluation at ptb sizes (E=512, H=1024, V=10,000), 32 rows of {length} words, "
        f"S={args.memory_samples}: peak {measured['peak_above_model'] / 2**30:.2f} GiB above the "
        f"model's; one row's logits {measured['logits_per_row'] / 2**20:.1f} MiB"
    )


def main(argv: list[str] | None = None) -> None:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--memory-child":
        peak_memory_child(int(sys.argv[2]), int(sys.argv[3]), 10_000)
        return
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
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--iw-samples", type=int, default=50)
    parser.add_argument("--memory-samples", type=int, default=20)
    parser.add_argument("--memory-length", type=int, default=77, help="PTB test's longest line")
    parser.add_argument(
        "--sections",
        nargs="+",
        default=["step", "iw", "recurrence", "memory"],
        choices=["step", "iw", "recurrence", "memory", "floor"],
    )
    parser.add_argument(
        "--precision",
        nargs="+",
        default=["fp32"],
        choices=PRECISIONS,
        help="precisions of the step and iw sections, timed in the same interleaved repeats",
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None, help="write the raw timings here")
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
        std="fixed",  # the recipe's default
        adversary_embedding_dim=args.embedding,
        adversary_hidden_size=args.adversary_hidden or args.hidden,
    )
    results: dict[str, Any] = {"threads": torch.get_num_threads(), "args": vars(args)}
    if "step" in args.sections:
        section_step(args, base, tokens, lengths, device, console, results)
    if "iw" in args.sections:
        section_iw(args, base, tokens, lengths, device, console, results)
    if "recurrence" in args.sections:
        section_recurrence(args, base, tokens, device, console, results)
    if "memory" in args.sections:
        section_memory(args, console, results)
    if "floor" in args.sections:
        section_floor(args, base, tokens, lengths, device, console, results)
    if args.json:
        Path(args.json).write_text(json.dumps(results))


if __name__ == "__main__":
    main()
