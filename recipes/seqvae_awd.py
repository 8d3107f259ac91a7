"""Sequence VAEs trained with no, uniform or adversarial word dropout.

Reproduces the experiments of Miladinović et al., "Learning to Drop Out: An Adversarial Approach
to Training Sequence VAEs" (NeurIPS 2022), assembled from the ``advmask`` library.

Usage::

    python recipes/seqvae_awd.py                        # synthetic demo: uniform vs adversarial
    python recipes/seqvae_awd.py --dropout none uniform adversarial   # ... and no dropout
    python recipes/seqvae_awd.py --preset ptb --dropout adversarial --rate 0.2 --seed 0 1 2
    python recipes/seqvae_awd.py --preset ptb --rate 0.2 0.3 0.4 0.5 --kl-weight 0.1 1 10
    python recipes/seqvae_awd.py --preset ptb --baseline sa-vae --dropout none --resume

The method, top to bottom:

1. **Configuration.** One dataclass; presets hold the paper's settings, flags override them.
2. **Data.** ``train/valid/test.txt``, a vocabulary from the training split, length-bucketed
   batches ``[BOS, words, EOS, PAD..]``.
3. **Model.** LSTM encoder, Double-LSTM decoder, a masker of decoder inputs: none, uniform
   (``round(rate * L)`` words) or adversarial (a score network, trained through a gradient
   reversal to *maximise* the VAE's loss); one run per grid point and seed.
4. **Optimisation.** SGD (lr 1.0, decay 0.96 per epoch; ``--optimizer adam`` for Adam) for the
   VAE, Adam for the adversary, clipping 5, Polyak averaging 0.9995, a baseline
   (``--baseline``: annealing from 0.1, ...).
5. **Loop** (:func:`advmask.training.loop.fit`). Validation of the averaged weights after each
   epoch, early stopping on the validation ``-ELBO``, atomic checkpoints, ``--resume``.
6. **Test.** Once, with the best averaged weights: PPL, -ELBO, KL, MI, AU (and, on the synthetic
   corpus, how well its true latent factors can be read from ``z``).
"""

from __future__ import annotations

import os
import signal


def _interrupted_while_starting(signum: int, frame: object) -> None:
    # Not SystemExit: raised mid-import it was swallowed (the recipe trained on); nothing written.
    print("interrupted", flush=True)
    os._exit(130)


if __name__ == "__main__":
    # Ctrl-C while importing (seconds): one line and status 130; main() hands Ctrl-C back.
    signal.signal(signal.SIGINT, _interrupted_while_starting)

import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from lightning_utilities.core.rank_zero import rank_zero_only, rank_zero_warn
from rich.console import Console
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from advmask import RELAXATIONS, set_value_checks, value_checks_enabled
from advmask.seqvae import ModelSpec, SequenceVAE, baselines, build_sequence_vae, evaluate
from advmask.seqvae.data import (
    Batch,
    Corpus,
    epoch_batches,
    load_corpus,
    make_batches,
    make_synthetic_corpus,
)
from advmask.seqvae.factory import load_sequence_vae, save_sequence_vae
from advmask.seqvae.grid import Variant, grid, run_folder
from advmask.seqvae.identity import NOT_RESULT_SETTINGS, holds_run, run_record
from advmask.seqvae.probe import probe_factors
from advmask.seqvae.report import per_word_metrics, results_report, run_line, validation_line
from advmask.seqvae.settings import check_schedules, check_settings, corpus_options, model_spec
from advmask.seqvae.step import SCORE_STATISTICS, Optimizers, StepSettings
from advmask.seqvae.trainer import BaselineTrainer
from advmask.training.checkpoint import save_json
from advmask.training.cli import UserError, exit_codes, flag, flag_errors, parse_with_presets
from advmask.training.console import print_report
from advmask.training.distributed import (
    BatchShard,
    DistributedContext,
    close_distributed,
    data_parallel,
    init_distributed,
    rank_zero_first,
    shard_batch,
)
from advmask.training.logs import progress_bar
from advmask.training.loop import Budget, Display, Hooks, Watch, evaluate_best, fit
from advmask.training.optim import adam
from advmask.training.processes import map_in_processes
from advmask.training.signals import StopRequest
from advmask.training.state import Progression, RunFolder

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DROPOUTS = ("none", "uniform", "adversarial")
GRID = (0.2, 0.3, 0.4, 0.5)  # the paper's rates
INITS = ("authors", "pytorch")
BASELINES, RELAXATION_NAMES = tuple(baselines.BASELINES), tuple(sorted(RELAXATIONS))


# 1. Configuration ------------------------------------------------------------------------------
# The paper's settings (its appendix): z = 32, batch 32, its rate grid, lambda per corpus.
# fmt: off
PRESETS: dict[str, dict[str, Any]] = {
    # The demo (advmask.seqvae.data.synthetic), minutes on 2 CPU cores: 3 seeds, so that each
    # comparison is paired. ~1,000 steps: EMA 0.9995 would still weigh the initial weights by
    # ~0.5, and the authors' init leaves a 128-unit encoder blind to x (AU 0) in that budget.
    # No embedding dropout (the AWD authors' decoder): with it, word dropout cost likelihood.
    # Uniform and adversarial dropout only: six runs fill two processes three times over
    # (under 5 minutes on a slow 2-core VM); ``--dropout none uniform adversarial`` adds one.
    "synthetic": dict(
        dropout=("uniform", "adversarial"), rate=(0.4,), seed=(0, 1, 2), embedding_dim=64,
        hidden_size=128, latent_dim=16, adversary_embedding_dim=32, adversary_hidden_size=64,
        epochs=8, dropout_in=0.0, patience=100, kl_warmup_steps=600, ema_decay=0.99,
        encoder_init="pytorch", adversary_lr=3e-3, test_iw_samples=50, checkpoint_every=0,
        log_every=20, max_length=50, jobs=2,
    ),
    "ptb": dict(data_dir=str(SHARED_DATA / "ptb"), embedding_dim=512, hidden_size=1024,
                max_length=100, rate=GRID, kl_weight=(1.0,)),  # PTB's longest line: 82 words
    "yahoo": dict(data_dir=str(SHARED_DATA / "yahoo"), hidden_size=2048, rate=GRID,
                  kl_weight=(2.0,)),
    "yelp": dict(data_dir=str(SHARED_DATA / "yelp"), hidden_size=2048, rate=GRID, kl_weight=(2.0,)),
    "snli": dict(data_dir=str(SHARED_DATA / "snli"), max_length=100, rate=GRID, kl_weight=(0.1,),
                 adversary_lr=1e-2),
}
# fmt: on


@dataclass(frozen=True)
class Config:
    """Every setting of a run; one flag per field (``--help`` lists them with their ranges)."""

    # fmt: off
    preset: str = flag("synthetic", "settings to start from", tuple(PRESETS))
    data_dir: str | None = flag(None, "corpus folder with train/valid/test.txt")
    out: str = flag("runs", "where run directories are created")
    dropout: tuple[str, ...] = flag(DROPOUTS, "variants to train", DROPOUTS)
    seed: tuple[int, ...] = flag((0,), "one run per seed; tables report mean (std)", minimum=0)
    # The grid: one run per rate (uniform and adversarial) and per lambda (adversarial).
    rate: tuple[float, ...] = flag((0.4,), "word-dropout rate(s)", minimum=0.0, maximum=1.0)
    kl_weight: tuple[float, ...] = flag((1.0,), "lambda(s): the adversary's KL weight", minimum=0.0)
    tokenizer: str = flag("words", "or sentencepiece, trained on train", ("words", "sentencepiece"))
    sentencepiece_vocab_size: int = flag(8000, "pieces requested from sentencepiece", minimum=2)
    max_length: int = flag(200, "longest line in words; longer: error naming file:line", minimum=1)
    truncate_long: bool = flag(False, "cut lines longer than --max-length instead of refusing")
    relaxation: str = flag("euclidean", "the adversary's top-K relaxation", RELAXATION_NAMES)
    relaxation_options: tuple[str, ...] = flag((), "its settings as name=value: temperature=0.5")
    std: str = flag("fixed", "score std: fixed to 1 (authors) or learned", ("fixed", "softplus"))
    fill: str = flag("zero", "what a dropped input becomes", ("zero", "unk", "learned"))
    decoder: str = flag("double-lstm", "decoder", ("double-lstm", "lstm", "transformer"))
    transformer_layers: int = flag(2, "blocks of the Transformer decoder", minimum=1)
    transformer_heads: int = flag(4, "attention heads of the Transformer decoder", minimum=1)
    embedding_dim: int = flag(512, "word embedding size", minimum=1)
    hidden_size: int = flag(1024, "LSTM size of encoder/decoder (Transformer: width)", minimum=1)
    latent_dim: int = flag(32, "size of z", minimum=1)
    adversary_embedding_dim: int = flag(512, "embedding size of the adversary", minimum=1)
    adversary_hidden_size: int | None = flag(None, "its hidden size; None: hidden_size", minimum=1)
    encoder_init: str = flag("authors", "U(-0.01, 0.01) as the paper, or PyTorch's", INITS)
    decoder_init: str = flag("authors", "the same for the LSTM decoders (docs: which when)", INITS)
    dropout_in: float = flag(0.5, "nn.Dropout of its inputs", minimum=0.0, exclusive_maximum=1.0)
    dropout_out: float = flag(0.5, "nn.Dropout of its outputs", minimum=0.0, exclusive_maximum=1.0)
    vocab_max_size: int | None = flag(None, "keep only the most frequent words", minimum=0)
    vocab_min_count: int = flag(1, "drop words rarer than this", minimum=1)
    batch_size: int = flag(32, "sequences per batch", minimum=1)
    epochs: int = flag(100, "maximum number of epochs", minimum=1)
    max_steps: int | None = flag(None, "stop training after this many steps", minimum=1)
    patience: int = flag(5, "epochs without validation improvement before stopping", minimum=1)
    optimizer: str = flag("sgd", "the VAE's optimiser (the adversary's is Adam)", ("sgd", "adam"))
    lr: float | None = flag(None, "the VAE's; None: 1.0 (SGD), 1e-3 (Adam)", exclusive_minimum=0.0)
    lr_decay: float = flag(0.96, "its decay per epoch", exclusive_minimum=0.0, maximum=1.0)
    adversary_lr: float = flag(1e-3, "Adam learning rate of the adversary", exclusive_minimum=0.0)
    grad_clip: float = flag(5.0, "gradient-norm clipping of each player", exclusive_minimum=0.0)
    ema_decay: float = flag(0.9995, "Polyak averaging per step", minimum=0.0, exclusive_maximum=1.0)
    baseline: str = flag("annealing", "how the KL term is weighted (docs: Baselines)", BASELINES)
    kl_start: float = flag(0.1, "beta at step 0 (baselines that anneal)", minimum=0.0, maximum=1.0)
    kl_warmup_steps: int = flag(30000, "steps until the KL weight reaches 1 (the same)", minimum=1)
    beta: float = flag(1.0, "the fixed KL weight of --baseline beta-vae", minimum=0.0)
    kl_cycles: int = flag(4, "cycles of --baseline cyclical over --epochs", minimum=1)
    kl_cycle_ratio: float = flag(0.5, "rising part of a cycle", exclusive_minimum=0.0, maximum=1.0)
    free_bits: float = flag(0.0, "KL floor per latent dimension (free-bits, fbp)", minimum=0.0)
    pretrain_epochs: int = flag(1, "autoencoder epochs before the decoder reset (fbp)", minimum=1)
    svi_steps: int = flag(10, "SVI steps refining each posterior (sa-vae)", minimum=1)
    svi_lr: float = flag(1.0, "their step size (sa-vae)", exclusive_minimum=0.0)
    valid_iw_samples: int = flag(0, "importance samples of validation (0 = skip)", minimum=0)
    test_iw_samples: int = flag(500, "importance samples of the test (0 = skip)", minimum=0)
    mi_estimator: str = flag("full", "mutual-information estimator", ("full", "batch"))
    max_train_sequences: int | None = flag(None, "only the first N training sequences", minimum=1)
    device: str = flag("auto", "cpu, cuda, cuda:1, ... or auto")
    precision: str = flag("fp32", "bf16: autocast (docs: when it pays)", ("fp32", "bf16"))
    compile: bool = flag(False, "torch.compile the training step")
    log_every: int = flag(50, "steps between log rows (means since the last one)", minimum=1)
    score_log_every: int = flag(100, "steps between rows of scores.csv (0 = off)", minimum=0)
    checkpoint_every: int = flag(500, "steps between mid-epoch checkpoints (0 = off)", minimum=0)
    resume: bool = flag(False, "continue the runs in --out (same settings) instead of refusing")
    threads: int | None = flag(None, "threads per process; None: torch's, 1 with --jobs", minimum=1)
    jobs: int = flag(1, "runs at once, each in its own process (not under torchrun)", minimum=1)
    # fmt: on


DEFAULT_LR = {"sgd": 1.0, "adam": 1e-3}  # the paper's SGD; Adam's usual rate
BUDGET_FLAGS = ("epochs", "patience", "max_steps", "log_every", "checkpoint_every")  # as Budget's


def parse_args(argv: list[str] | None = None) -> Config:
    """Preset first, then the flags the user gave; ``--help`` shows the preset's defaults."""
    config = parse_with_presets(Config, PRESETS, argv, description=__doc__.splitlines()[0])
    if config.lr is None:  # recorded in config.json as the value used
        config = replace(config, lr=DEFAULT_LR[config.optimizer])
    with flag_errors("preset"):  # what spans several flags; an error names the one to change
        check_settings(config)
    if config.data_dir is not None:  # a run analysed from another folder reads its own corpus
        config = replace(config, data_dir=str(Path(config.data_dir).resolve()))
    return config


# 2. Data ---------------------------------------------------------------------------------------
def load_data(config: Config, world_size: int = 1) -> Corpus:
    """The corpus; the synthetic one is generated (deterministically) and written under --out.

    Raises:
        UserError: naming the folder, ``file:line`` or split that cannot be used.
    """
    directory, factors = config.data_dir, {}
    if config.preset == "synthetic" and directory is None:
        synthetic = make_synthetic_corpus(seed=1234)
        directory = str(Path(config.out) / "synthetic" / "corpus")
        rank_zero_only(synthetic.write)(directory)  # under rank_zero_first: rank 0 writes
        factors = synthetic.factors
    if directory is None:
        raise UserError(f"--data-dir is required for preset {config.preset!r}")
    try:
        corpus = load_corpus(directory, **corpus_options(config, world_size))
    except OSError as error:  # a missing folder or file
        raise UserError(f"{error} (--preset {config.preset}; --data-dir names another)") from None
    except ValueError as error:  # a bad line, named file:line
        raise UserError(str(error)) from None
    for split, count in corpus.truncated.items():
        if count:
            where = corpus.directory / f"{split}.txt"
            rank_zero_warn(f"{where}: {count} lines cut to --max-length {config.max_length} words")
    if (limit := config.max_train_sequences) is not None and factors:
        factors["train"] = {name: labels[:limit] for name, labels in factors["train"].items()}
    return replace(corpus, factors=factors)


def eval_batches(
    sequences: list[list[int]], config: Config, device: torch.device, world_size: int = 1
) -> list[Batch]:
    """Evaluation batches (global ones under torchrun: every rank builds all of them)."""
    return [batch.to(device) for batch in make_batches(sequences, config.batch_size * world_size)]


# 4-5. Optimisation and the training loop -------------------------------------------------------
def train_run(
    config: Config,
    variant: Variant,
    data: Corpus,
    console: Console | None = None,
    context: DistributedContext | None = None,
) -> dict:
    """Train one grid point with one seed, then test it; returns the run's metrics.

    Under ``torchrun`` every rank runs this: each trains on its shard of every global batch
    through DDP; rank 0 alone locks the run folder and writes files. No console: it prints nothing.

    Raises:
        UserError: the folder holds a run with other settings, is locked, or unreadable.
        DivergedError: the loss became NaN or infinite; the last good checkpoint is kept.
        InterruptedRunError: after a SIGINT/SIGTERM was honoured and checkpointed.
    """
    console, context = console or Console(quiet=True), context or init_distributed(config.device)
    # 3. Model: one run per grid point (dropout, rate, lambda) and seed; flags named as its fields.
    spec = model_spec(config, variant, len(data.vocab))
    record, parent = run_record(config, variant, spec, data), Path(config.out) / config.preset
    tag = baselines.baseline_tag(config.baseline, config)  # annealing: not named
    # A grid of more or fewer rates or lambdas named the run otherwise: find it there.
    holds_this_run = partial(holds_run, record=record)
    path = run_folder(parent, variant, config.rate, config.kl_weight, tag, holds_this_run)
    folder, rank_zero = RunFolder(path, console), context.is_rank_zero
    vocab = {"vocab.json": data.vocab.to_dict()}
    with folder.locked(rank_zero):
        finished = folder.begin(record, config.resume, NOT_RESULT_SETTINGS, vocab, rank_zero)
        if finished is not None:  # finished earlier with these settings: reused
            return finished
        return _train_run(config, variant, data, console, context, folder, spec)


def _train_run(
    config: Config,
    variant: Variant,
    data: Corpus,
    console: Console,
    context: DistributedContext,
    folder: RunFolder,
    spec: ModelSpec,
) -> dict:
    device, world_size, rank, seed = context.device, context.world_size, context.rank, variant.seed
    bf16 = config.precision == "bf16"
    torch.manual_seed(seed)  # the same on every rank: a shard draws its rows of the global draws
    model = build_sequence_vae(spec).to(device)
    make_optimizer = adam if config.optimizer == "adam" else torch.optim.SGD
    vae_optimizer = make_optimizer(model.vae_parameters(), config.lr)
    adversary_optimizer = None
    if spec.dropout == "adversarial":
        adversary_optimizer = adam(model.masker.parameters(), config.adversary_lr)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay))
    lr_decay = torch.optim.lr_scheduler.ExponentialLR(vae_optimizer, config.lr_decay)
    # A learned fill vector without a masker takes no part in the loss.
    forward = data_parallel(model, context, model.masker is None and spec.fill == "learned")
    forward = torch.compile(forward) if config.compile else forward
    # Every rank builds the global batches (batch_size rows per rank) and trains on its shard.
    train = partial(epoch_batches, data.splits["train"], config.batch_size * world_size, seed)
    steps_per_epoch = len(train(0, world_size))
    total_steps = config.epochs * steps_per_epoch
    baseline = baselines.make_baseline(config.baseline, config, total_steps, steps_per_epoch)
    if context.is_distributed and baseline.runs_in_one_process:
        raise UserError(f"--baseline {config.baseline} runs in one process, not under torchrun")
    if context.is_distributed and baseline.free_bits > 0:
        rank_zero_warn("--free-bits under torchrun thresholds each rank's shard, not the batch")
    trainer = BaselineTrainer(
        baseline,
        model,
        Optimizers(vae_optimizer, adversary_optimizer),
        StepSettings(config.grad_clip, bf16=bf16),
        forward=forward,
        steps_per_epoch=steps_per_epoch,
        batches=lambda split: eval_batches(data.splits[split], config, device),
        averaged=ema,
        seed=seed,
    )
    players = {"model": model, "ema": ema, "vae_optimizer": vae_optimizer, "lr_decay": lr_decay}
    players |= {"adversary_optimizer": adversary_optimizer}
    players["baseline"] = trainer if baseline.aggressive else None  # lagging's phase

    def epoch(number: int) -> list[BatchShard[Batch]]:
        model.train()
        return [shard_batch(b.to(device), rank, world_size) for b in train(number, world_size)]

    options = {"mi_estimator": config.mi_estimator, "distributed": world_size > 1, "bf16": bf16}

    def evaluate_split(split: str, samples: int, model: SequenceVAE, watch: Watch) -> dict:
        """The evaluator with this run's conventions; each split's noise seeded by the run."""
        batches = eval_batches(data.splits[split], config, device, world_size)
        rng = torch.Generator(device).manual_seed(seed)
        with watch(model.encoder, len(batches)):
            return evaluate(model, batches, iw_samples=samples, generator=rng, **options).as_dict()

    def load_best(path: Path) -> SequenceVAE:
        return load_sequence_vae(path, map_location=device)[0]

    def on_best(progression: Progression) -> None:  # which weights are best, for the analyses
        where = {"epoch": progression.epoch, "step": progression.step}
        save_best(ema.module, spec, folder.best, vocab=data.vocab.to_dict(), **where)

    save_best = rank_zero_only(save_sequence_vae)
    label = variant.label(config.preset, config.kl_weight, baseline.tag)
    budget = Budget(
        **{name: getattr(config, name) for name in BUDGET_FLAGS},
        extra_every=config.score_log_every,
        extra_keys=SCORE_STATISTICS if adversary_optimizer else (),
    )
    validate = partial(evaluate_split, "valid", config.valid_iw_samples, ema.module)
    hooks = Hooks(
        epoch, trainer.step, validate, on_best, lambda: {"lr": vae_optimizer.param_groups[0]["lr"]}
    )
    with StopRequest() as stop, progress_bar(console) as progress:
        display = Display(console, progress, label, describe=validation_line)
        progression = fit(folder, players, hooks, budget, display, stop, device)
        # 6. Test, once, with the best averaged weights (selected on validation only).
        test_split = partial(evaluate_split, "test", config.test_iw_samples)
        best, test = evaluate_best(folder, load_best, test_split, display, stop)
    valid = progression.best_valid_result
    if config.tokenizer == "sentencepiece":
        valid = per_word_metrics(valid, data.word_counts["valid"])
        test = per_word_metrics(test, data.word_counts["test"])
    results = {"model": label, "preset": config.preset, "dropout": variant.dropout, "seed": seed}
    results |= {"rate": variant.rate, "best_epoch_valid_neg_elbo": progression.best_valid}
    results |= {"epochs": progression.epoch, "steps": progression.step}
    results |= {"train_seconds": progression.train_seconds, "valid": valid, "test": test}
    if data.factors:
        splits = ("train", "test")
        probe_batches = [eval_batches(data.splits[s], config, device) for s in splits]
        results["probe"] = probe_factors(best, *probe_batches, *(data.factors[s] for s in splits))
    rank_zero_only(save_json)(results, folder.metrics)
    return results


# Main: every variant and seed, then the table. -------------------------------------------------
def main(argv: list[str] | None = None) -> list[dict]:
    """Train and test every variant and seed, print the table; returns the runs' metrics.

    A user error (a flag, a missing corpus, a bad line, a run folder with other settings) is one
    line ``error: ...`` and exit status 2; a diverged run exits with 1, an interrupted one with
    130, each after one line saying what was kept.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with exit_codes(Console(soft_wrap=True)):  # a Ctrl-C before the runs start, too
        config = parse_args(argv)
        torch.set_num_threads(config.threads or torch.get_num_threads())
        context = init_distributed(config.device)  # joins torchrun's process group, if under it
    console = Console(quiet=not context.is_rank_zero, soft_wrap=True)  # one rank prints
    try:
        with exit_codes(console):
            return run_all(config, context, console)
    finally:
        close_distributed()


def run_all(config: Config, context: DistributedContext, console: Console) -> list[dict]:
    console.print(config)
    if context.is_distributed:
        console.print(
            f"{context.world_size} processes, {config.batch_size} sequences each per step "
            f"({config.batch_size * context.world_size} in all), device {context.device}"
        )
    started = time.perf_counter()
    with rank_zero_first():  # rank 0 writes the generated corpus or tokenizer, then the rest
        data = load_data(config, context.world_size)
    with flag_errors("baseline"):  # before any run starts: its schedule fits every seed's steps
        check_schedules(config, data.splits["train"], context.world_size)
    sizes = ", ".join(f"{k} {len(v)} sequences" for k, v in data.splits.items())
    console.print(f"vocabulary {len(data.vocab)}; {sizes}")
    # Every sequence passed its checks when it was loaded (ids from the vocabulary, lengths
    # within --max-length): train without the per-call value checks, which stall a GPU.
    checks_were_on = value_checks_enabled()
    set_value_checks(False)
    variants = grid(config.dropout, config.rate, config.kl_weight, config.seed)
    try:
        if context.is_distributed or min(config.jobs, len(variants)) == 1:  # torchrun: DDP per run
            results = [train_run(config, variant, data, console, context) for variant in variants]
        else:  # --jobs: each process prints nothing (the lines would mix); here, a line per run
            console.print(f"{len(variants)} runs, {config.jobs} at a time: a line as each ends")
            results = map_in_processes(
                partial(train_run, config, data=data),
                variants,
                config.jobs,
                threads=config.threads or 1,
                on_result=lambda _, run: console.print(run_line(run)),
            )
    finally:
        set_value_checks(checks_were_on)
    title, runs_dir = f"{config.preset}: test results", Path(config.out) / config.preset
    print_report(console, results_report(results, title, data.factors.get("test"), runs_dir))
    console.print(f"total time {time.perf_counter() - started:.0f} s")
    return results


if __name__ == "__main__":
    main()
