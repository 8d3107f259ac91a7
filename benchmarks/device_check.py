"""One call for the day a GPU is lent: fp32 / bf16 / torch.compile at the paper's sizes.

Everything in one process, one JSON, inside a time budget (default 450 s; on a CUDA device the
whole script must finish within 8 minutes), cheapest and most needed first:

1. ``step``: the training step (:func:`advmask.seqvae.step.train_step`, recipe optimisers,
   value checks off) with uniform and adversarial dropout, fp32 and bf16, at the paper's sizes
   (H = 1024, V = 10k: PTB; H = 2048, V = 20k: Yahoo/Yelp), interleaved repeats, paired
   bf16 / fp32 ratios.
2. ``iw``: importance-weighted evaluation (:func:`advmask.seqvae.evaluation.evaluate`, S = 50)
   of one batch in fp32 and bf16.
3. ``compile``: the step again with ``torch.compile`` of the model's forward (as the recipe's
   ``--compile``), eager and compiled in the same repeats; compile time recorded. Stops
   starting new compilations when the budget left is the PTB reserve.
4. ``ptb``: a short PTB run of each dropout (none, uniform, adversarial) in parallel processes
   (the recipe's ``--jobs 3``) in bf16, reading ``--data-dir``; the runs' ``metrics.json``.

A part that fails (an exception, a compile error, a run that times out) is recorded with its
error and the script goes on; the JSON is rewritten after each part, so an interrupted check
leaves what it measured.

Usage::

    python benchmarks/device_check.py --out device_check.json        # CUDA, < 8 minutes
    python benchmarks/device_check.py --smoke --out smoke.json       # CPU, tiny: the tests
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

# This checkout's advmask, also where another one is installed (a bare device machine has none).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved, paired_ratios

from advmask import set_value_checks
from advmask.seqvae.data import Batch
from advmask.seqvae.evaluation import evaluate
from advmask.seqvae.factory import ModelSpec, build_sequence_vae
from advmask.seqvae.step import Optimizers, StepSettings, train_step
from advmask.training.optim import adam

ROOT = Path(__file__).resolve().parents[1]
PRECISIONS = ("fp32", "bf16")
DROPOUTS = ("uniform", "adversarial")
PARTS = ("step", "iw", "compile", "ptb")


@dataclass(frozen=True)
class Size:
    """One model and batch size of the check."""

    name: str
    vocab: int
    hidden: int
    embedding: int = 512
    batch: int = 32
    length: int = 40

    def spec(self, dropout: str) -> ModelSpec:
        return ModelSpec(
            vocab_size=self.vocab, embedding_dim=self.embedding, hidden_size=self.hidden,
            latent_dim=32, dropout=dropout, rate=0.4, std="fixed",
            adversary_embedding_dim=self.embedding, adversary_hidden_size=self.hidden,
        )  # fmt: skip


PAPER_SIZES = (
    Size("ptb H=1024 V=10k", vocab=10_000, hidden=1024),
    Size("yahoo H=2048 V=20k", vocab=20_000, hidden=2048),
)
SMOKE_SIZES = (Size("smoke", vocab=60, hidden=16, embedding=8, batch=4, length=6),)


class Budget:
    """Seconds left of the check's wall-clock budget."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


def make_batch(size: Size, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, length + 2) ``[BOS, words, EOS, PAD..]`` with length // 2 to length words."""
    generator = torch.Generator().manual_seed(0)
    words = torch.randint(size.length // 2, size.length + 1, (size.batch,), generator=generator)
    words[0] = size.length
    tokens = torch.randint(4, size.vocab, (size.batch, size.length + 2), generator=generator)
    positions = torch.arange(size.length + 2)
    tokens[:, 0] = 1
    tokens = torch.where(positions == (words + 1)[:, None], 2, tokens)
    tokens = torch.where(positions > (words + 1)[:, None], 0, tokens)
    return tokens.to(device), (words + 2).to(device)


def step_function(
    size: Size, dropout: str, precision: str, device: torch.device, backend: str | None = None
) -> Callable[[], None]:
    """One training step of a fresh model, as the recipe takes it; ``backend``: the step's
    forward through ``torch.compile(backend=backend)``, None: eager."""
    torch.manual_seed(0)
    model = build_sequence_vae(size.spec(dropout)).to(device).train()
    vae_optimizer = torch.optim.SGD(model.vae_parameters(), lr=1e-3)
    adversary = adam(model.masker.parameters(), 1e-4) if dropout == "adversarial" else None
    batch, optimizers = Batch(*make_batch(size, device)), Optimizers(vae_optimizer, adversary)
    forward = model if backend is None else torch.compile(model, backend=backend)
    settings = StepSettings(5.0, bf16=precision == "bf16")

    def step() -> None:
        train_step(model, batch, 1.0, optimizers, settings, forward=forward)

    return step


def synchronised(function: Callable[[], Any], device: torch.device) -> float:
    """Seconds of one call, the device synchronised before the clock is read."""
    start = time.perf_counter()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def timing_rows(times: dict[str, list[float]], pairs: dict[str, str]) -> dict[str, Any]:
    """Median seconds per method and the median paired ratio of each ``name -> baseline``."""
    return {
        "median_s": {name: statistics.median(values) for name, values in times.items()},
        "all_s": times,
        "paired_ratio": {
            f"{name} / {base}": statistics.median(paired_ratios(times[name], times[base]))
            for name, base in pairs.items()
        },
    }


def part_step(sizes, device, repeats: int) -> dict[str, Any]:
    set_value_checks(False)
    try:
        out = {}
        for size in sizes:
            steps, pairs = {}, {}
            for dropout in DROPOUTS:
                for precision in PRECISIONS:
                    steps[f"{dropout} {precision}"] = step_function(
                        size, dropout, precision, device
                    )
                pairs[f"{dropout} bf16"] = f"{dropout} fp32"
            out[size.name] = timing_rows(interleaved(steps, repeats, device=device), pairs)
        return out
    finally:
        set_value_checks(True)


def part_iw(sizes, device, repeats: int, samples: int) -> dict[str, Any]:
    out = {}
    for size in sizes:
        torch.manual_seed(0)
        model = build_sequence_vae(size.spec("none")).to(device).eval()
        tokens, lengths = make_batch(size, device)
        batches = [Batch(tokens, lengths, torch.arange(size.batch, device=device))]
        methods = {
            precision: partial(
                evaluate, model, batches, iw_samples=samples, bf16=precision == "bf16"
            )
            for precision in PRECISIONS
        }
        times = interleaved(methods, repeats, warmup=1, device=device)
        result = timing_rows(times, {"bf16": "fp32"})
        # The same model and noise in both precisions: how far apart the estimates are.
        nll = {
            precision: evaluate(
                model,
                batches,
                iw_samples=samples,
                generator=torch.Generator(device).manual_seed(0),
                bf16=precision == "bf16",
            ).nll_iw
            for precision in PRECISIONS
        }
        out[size.name] = {**result, "samples": samples, "nll_iw": nll}
    return out


def part_compile(
    sizes, device, repeats: int, budget: Budget, reserve: float, backend: str, only_first: bool
) -> dict[str, Any]:
    set_value_checks(False)
    out: dict[str, Any] = {}
    try:
        for size in sizes:
            for precision in PRECISIONS:
                for dropout in DROPOUTS:
                    key = f"{size.name} {dropout} {precision}"
                    if only_first and out:
                        out[key] = {"skipped": "smoke size: one compilation shows the path"}
                        continue
                    if budget.left() < reserve:
                        out[key] = {"skipped": f"{budget.left():.0f} s left, PTB reserve {reserve}"}
                        continue
                    try:
                        eager = step_function(size, dropout, precision, device)
                        compiled = step_function(size, dropout, precision, device, backend)
                        compile_s = synchronised(compiled, device)  # the first call compiles
                        times = interleaved(
                            {"eager": eager, "compiled": compiled}, repeats, device=device
                        )
                        out[key] = {
                            "first_call_s": compile_s,
                            **timing_rows(times, {"compiled": "eager"}),
                        }
                    except Exception as error:  # a failing compile is a finding, not a crash
                        out[key] = {"error": f"{type(error).__name__}: {error}"[:2000]}
    finally:
        set_value_checks(True)
    return out


def part_ptb(args, device: torch.device, budget: Budget) -> dict[str, Any]:
    """The recipe on PTB, one process per dropout, bf16; the runs' test metrics."""
    data_dir = Path(args.data_dir)
    if not (data_dir / "train.txt").is_file():
        return {"skipped": f"no train.txt in --data-dir {data_dir}"}
    out_dir = Path(args.work_dir) / "ptb-runs"
    command = [
        sys.executable, str(ROOT / "recipes" / "seqvae_awd.py"), "--preset", "ptb",
        "--data-dir", str(data_dir), "--out", str(out_dir), "--dropout", "none", "uniform",
        "adversarial", "--jobs", "3", "--seed", "0", "--rate", "0.4", "--epochs", "1",
        "--max-steps", str(args.ptb_steps), "--valid-iw-samples", "0", "--test-iw-samples",
        str(args.ptb_iw_samples), "--device", device.type, "--precision", "bf16",
        "--log-every", str(max(1, args.ptb_steps // 4)), "--checkpoint-every", "0",
        *args.ptb_flags,
    ]  # fmt: skip
    timeout = max(args.ptb_min_seconds, budget.left() - 5.0)
    # This checkout's advmask in the recipe's processes too.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    start = time.perf_counter()
    try:
        finished = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env,
            check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as expired:
        return {"error": f"timed out after {timeout:.0f} s", "command": command,
                "output_tail": str(expired.stdout)[-3000:]}  # fmt: skip
    metrics = {
        path.parent.name: json.loads(path.read_text())
        for path in sorted(out_dir.glob("*/*/metrics.json"))
    }
    return {
        "returncode": finished.returncode,
        "seconds": time.perf_counter() - start,
        "command": command,
        "test": {name: run.get("test") for name, run in metrics.items()},
        "train_seconds": {name: run.get("train_seconds") for name, run in metrics.items()},
        "output_tail": (finished.stdout + finished.stderr)[-3000:],
    }


def environment(device: torch.device) -> dict[str, Any]:
    info = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
    }
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info.update(
            gpu=properties.name,
            gpu_memory_gib=properties.total_memory / 2**30,
            bf16_supported=torch.cuda.is_bf16_supported(),
            cuda=torch.version.cuda,
        )
    return info


def run_check(args) -> dict[str, Any]:
    budget = Budget(args.budget)
    device = torch.device(args.device)
    sizes = SMOKE_SIZES if args.smoke else PAPER_SIZES
    report: dict[str, Any] = {
        "smoke": args.smoke,
        "environment": environment(device),
        "sizes": [asdict(size) for size in sizes],
        "budget_s": args.budget,
    }
    out = Path(args.out)

    def run_part(name: str, part: Callable[[], dict[str, Any]]) -> None:
        start = time.perf_counter()
        try:
            report[name] = part()
        except Exception:  # record and go on: the other parts still tell something
            report[name] = {"error": traceback.format_exc()[-3000:]}
        report.setdefault("part_seconds", {})[name] = time.perf_counter() - start
        out.write_text(json.dumps(report, indent=1))

    parts = {
        "step": lambda: part_step(sizes, device, args.repeats),
        "iw": lambda: part_iw(sizes, device, args.repeats, args.iw_samples),
        "compile": lambda: part_compile(
            sizes, device, args.repeats, budget, args.ptb_reserve, args.compile_backend, args.smoke
        ),
        "ptb": lambda: part_ptb(args, device, budget),
    }
    for name in args.parts:
        run_part(name, parts[name])
    report["total_s"] = args.budget - budget.left()
    out.write_text(json.dumps(report, indent=1))
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="device_check.json", help="the JSON written")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny sizes: seconds")
    parser.add_argument("--device", default=None, help="default: cuda, or cpu with --smoke")
    parser.add_argument("--budget", type=float, default=450.0, help="seconds for everything")
    parser.add_argument(
        "--parts", nargs="+", default=list(PARTS), choices=PARTS, help="what to run, in order"
    )
    parser.add_argument("--repeats", type=int, default=None, help="default 5 (smoke 1)")
    parser.add_argument("--iw-samples", type=int, default=None, help="default 50 (smoke 2)")
    parser.add_argument(
        "--data-dir",
        default=str(ROOT.parent / "shared" / "data" / "ptb"),
        help="PTB train/valid/test.txt (default: ../shared/data/ptb beside the checkout)",
    )
    parser.add_argument("--work-dir", default=None, help="where the PTB runs go (default: tmp)")
    parser.add_argument("--ptb-steps", type=int, default=None, help="default 300 (smoke 2)")
    parser.add_argument("--ptb-iw-samples", type=int, default=None, help="default 10 (smoke 2)")
    parser.add_argument("--ptb-reserve", type=float, default=None, help="default 150 (smoke 0)")
    parser.add_argument(
        "--compile-backend", default=None, help="torch.compile backend: inductor (smoke: eager)"
    )
    args = parser.parse_args(argv)
    smoke = args.smoke
    args.device = args.device or ("cpu" if smoke else "cuda")
    args.repeats = args.repeats or (1 if smoke else 5)
    args.iw_samples = args.iw_samples or (2 if smoke else 50)
    args.ptb_steps = args.ptb_steps or (2 if smoke else 300)
    args.ptb_iw_samples = args.ptb_iw_samples or (2 if smoke else 10)
    args.ptb_reserve = (0.0 if smoke else 150.0) if args.ptb_reserve is None else args.ptb_reserve
    # The smoke size checks that the step goes through dynamo, not inductor's codegen (minutes
    # of CPU compilation).
    args.compile_backend = args.compile_backend or ("eager" if smoke else "inductor")
    # Starting three recipe processes takes seconds even when the budget is spent.
    args.ptb_min_seconds = 120.0 if smoke else 30.0
    small = ["--embedding-dim", "8", "--hidden-size", "16", "--latent-dim", "4",
             "--adversary-embedding-dim", "8", "--adversary-hidden-size", "8",
             "--max-train-sequences", "32", "--threads", "1"]  # fmt: skip
    args.ptb_flags = small if smoke else []
    args.work_dir = args.work_dir or tempfile.mkdtemp(prefix="device-check-")
    if not smoke and not args.device.startswith("cuda"):
        print(f"note: --device {args.device} at the paper's sizes is slow", file=sys.stderr)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available (use --smoke on CPU)")
    report = run_check(args)
    print(json.dumps({k: report[k] for k in ("environment", "part_seconds", "total_s")}))
    return report


if __name__ == "__main__":
    main()
