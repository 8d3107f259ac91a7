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

import signal
import sys


def _interrupted_while_starting(signum: int, frame: object) -> None:
    print("interrupted")
    sys.exit(130)


if __name__ == "__main__":
    # A Ctrl-C while torch and the library are imported (seconds): one line and status 130, as
    # at any later moment, not a traceback; main() hands Ctrl-C back to Python.
    signal.signal(signal.SIGINT, _interrupted_while_starting)

import time
from dataclasses import asdict, dataclass, fields, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from lightning_utilities.core.rank_zero import rank_zero_only, rank_zero_warn
from rich.console import Console
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from advmask import RELAXATIONS, set_value_checks, value_checks_enabled
from advmask.relaxations import parse_relaxation_options
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
from advmask.seqvae.identity import NOT_RESULT_SETTINGS, same_run
from advmask.seqvae.probe import probe_factors
from advmask.seqvae.report import per_word_metrics, results_report, run_line, validation_line
from advmask.seqvae.step import SCORE_STATISTICS
from advmask.seqvae.trainer import BaselineTrainer
from advmask.training.checkpoint import CheckpointError, read_json, save_json
from advmask.training.cli import (
    UserError,
    exit_codes,
    exit_with_error,
    flag,
    folder_problem,
    parse_with_presets,
)
from advmask.training.console import print_report
from advmask.training.distributed import (
    DistributedContext,
    barrier,
    check_device,
    close_distributed,
    data_parallel,
    init_distributed,
    rank_zero_first,
    shard_batch,
)
from advmask.training.logs import progress_bar
from advmask.training.loop import Budget, Watch, fit, watch_test
from advmask.training.optim import adam
from advmask.training.processes import map_in_processes
from advmask.training.signals import InterruptedRunError, StopRequest
from advmask.training.state import RunFolder

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DROPOUTS = ("none", "uniform", "adversarial")
GRID = (0.2, 0.3, 0.4, 0.5)  # the paper's rates


# 1. Configuration ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    """Every setting of a run; one flag per field (``--help`` lists them with their ranges)."""

    # fmt: off
    preset: str = flag("synthetic", "settings to start from", ("synthetic", "ptb", "yahoo", "yelp", "snli"))  # noqa: E501
    data_dir: str | None = flag(None, "corpus folder with train/valid/test.txt")
    out: str = flag("runs", "where run directories are created")
    dropout: tuple[str, ...] = flag(DROPOUTS, "variants to train", DROPOUTS)
    seed: tuple[int, ...] = flag((0,), "one run per seed; tables report mean (std)", minimum=0)
    # The grid: one run per rate (uniform and adversarial) and per lambda (adversarial).
    rate: tuple[float, ...] = flag((0.4,), "word-dropout rate(s)", minimum=0.0, maximum=1.0)
    kl_weight: tuple[float, ...] = flag((1.0,), "lambda(s): weight of the adversary's KL", minimum=0.0)  # noqa: E501
    tokenizer: str = flag("words", "corpus tokens, or sentencepiece trained on train", ("words", "sentencepiece"))  # noqa: E501
    sentencepiece_vocab_size: int = flag(8000, "pieces requested from sentencepiece", minimum=2)
    max_length: int = flag(200, "longest line in words; longer: error naming file:line", minimum=1)
    truncate_long: bool = flag(False, "cut lines longer than --max-length instead of refusing")
    relaxation: str = flag("euclidean", "top-K relaxation of the adversary", tuple(sorted(RELAXATIONS)))  # noqa: E501
    relaxation_options: tuple[str, ...] = flag((), "its settings as name=value, e.g. temperature=0.5")  # noqa: E501
    std: str = flag("fixed", "adversary's score std: fixed to 1 (authors) or learned", ("fixed", "softplus"))  # noqa: E501
    fill: str = flag("zero", "what a dropped input becomes", ("zero", "unk", "learned"))
    decoder: str = flag("double-lstm", "decoder", ("double-lstm", "lstm", "transformer"))
    transformer_layers: int = flag(2, "blocks of the Transformer decoder", minimum=1)
    transformer_heads: int = flag(4, "attention heads of the Transformer decoder", minimum=1)
    embedding_dim: int = flag(512, "word embedding size", minimum=1)
    hidden_size: int = flag(1024, "LSTM size of encoder and decoder (Transformer: width)", minimum=1)  # noqa: E501
    latent_dim: int = flag(32, "size of z", minimum=1)
    adversary_embedding_dim: int = flag(512, "embedding size of the adversary", minimum=1)
    adversary_hidden_size: int | None = flag(None, "its hidden size; None: hidden_size", minimum=1)
    encoder_init: str = flag("authors", "U(-0.01, 0.01) as the paper's code, or PyTorch's", ("authors", "pytorch"))  # noqa: E501
    decoder_init: str = flag("authors", "the same for the LSTM decoders (docs: when to use which)", ("authors", "pytorch"))  # noqa: E501
    dropout_in: float = flag(0.5, "nn.Dropout of the decoder's inputs", minimum=0.0, exclusive_maximum=1.0)  # noqa: E501
    dropout_out: float = flag(0.5, "nn.Dropout of its outputs", minimum=0.0, exclusive_maximum=1.0)
    vocab_max_size: int | None = flag(None, "keep only the most frequent words", minimum=0)
    vocab_min_count: int = flag(1, "drop words rarer than this", minimum=1)
    batch_size: int = flag(32, "sequences per batch", minimum=1)
    epochs: int = flag(100, "maximum number of epochs", minimum=1)
    max_steps: int | None = flag(None, "stop training after this many steps", minimum=1)
    patience: int = flag(5, "epochs without validation improvement before stopping", minimum=1)
    optimizer: str = flag("sgd", "the VAE's optimiser (the adversary's is Adam)", ("sgd", "adam"))
    lr: float | None = flag(None, "learning rate of the VAE; None: 1.0 for SGD, 1e-3 for Adam", exclusive_minimum=0.0)  # noqa: E501
    lr_decay: float = flag(0.96, "its decay per epoch", exclusive_minimum=0.0, maximum=1.0)
    adversary_lr: float = flag(1e-3, "Adam learning rate of the adversary", exclusive_minimum=0.0)
    grad_clip: float = flag(5.0, "gradient-norm clipping of each player", exclusive_minimum=0.0)
    ema_decay: float = flag(0.9995, "Polyak averaging per step", minimum=0.0, exclusive_maximum=1.0)
    baseline: str = flag("annealing", "how the KL term is weighted (docs: Baselines)", tuple(baselines.BASELINES))  # noqa: E501
    kl_start: float = flag(0.1, "KL weight at step 0 (every baseline that anneals)", minimum=0.0, maximum=1.0)  # noqa: E501
    kl_warmup_steps: int = flag(30000, "steps until the KL weight reaches 1 (the same)", minimum=1)
    beta: float = flag(1.0, "the fixed KL weight of --baseline beta-vae", minimum=0.0)
    kl_cycles: int = flag(4, "cycles of --baseline cyclical over --epochs", minimum=1)
    kl_cycle_ratio: float = flag(0.5, "fraction of a cycle rising (cyclical)", exclusive_minimum=0.0, maximum=1.0)  # noqa: E501
    free_bits: float = flag(0.0, "KL floor per latent dimension (free-bits, fbp)", minimum=0.0)
    pretrain_epochs: int = flag(1, "autoencoder epochs before the decoder reset (fbp)", minimum=1)
    svi_steps: int = flag(10, "SVI steps refining each posterior (sa-vae)", minimum=1)
    svi_lr: float = flag(1.0, "their step size (sa-vae)", exclusive_minimum=0.0)
    valid_iw_samples: int = flag(0, "importance samples of validation (0 = skip)", minimum=0)
    test_iw_samples: int = flag(500, "importance samples of the test (0 = skip)", minimum=0)
    mi_estimator: str = flag("full", "mutual-information estimator", ("full", "batch"))
    max_train_sequences: int | None = flag(None, "use only the first N training sequences", minimum=1)  # noqa: E501
    device: str = flag("auto", "cpu, cuda, cuda:1, ... or auto")
    precision: str = flag(
        "fp32",
        "bf16: matrix products, recurrences and logits in bfloat16 (bf16 autocast, CPU or "
        "CUDA); weights, optimiser states, posterior, scores, selection, losses, IW weights "
        "and MI stay float32. Pays on CPUs with AMX (Sapphire Rapids+) and Ampere+ GPUs; "
        "elsewhere it can be slower",
        ("fp32", "bf16"),
    )
    compile: bool = flag(False, "torch.compile the training step")
    log_every: int = flag(50, "steps between log rows (means since the last one)", minimum=1)
    score_log_every: int = flag(100, "steps between rows of scores.csv (0 = off)", minimum=0)
    checkpoint_every: int = flag(500, "steps between mid-epoch checkpoints (0 = off)", minimum=0)
    resume: bool = flag(False, "continue the runs in --out (same settings) instead of refusing")
    threads: int | None = flag(None, "torch CPU threads (per process); None: torch's, 1 with --jobs", minimum=1)  # noqa: E501
    jobs: int = flag(1, "runs trained at once, each in its own process (not under torchrun)", minimum=1)  # noqa: E501
    # fmt: on


# The paper's settings (its appendix): z = 32, batch 32, its rate grid, lambda per corpus.
# fmt: off
PRESETS: dict[str, dict[str, Any]] = {
    # The demo (advmask.seqvae.data.synthetic), minutes on 2 CPU cores: 3 seeds, so that each
    # comparison is paired. ~1,000 steps: EMA 0.9995 would still weigh the initial weights by
    # ~0.5, and the authors' init leaves a 128-unit encoder blind to x (AU 0) in that budget.
    # No embedding dropout (the AWD authors' decoder): with it, word dropout cost likelihood.
    # Uniform and adversarial dropout only, so that six runs fill two processes three times
    # over (under 5 minutes on a slow 2-core VM); ``--dropout none uniform adversarial`` adds
    # the no-dropout baseline (half as much time again).
    "synthetic": dict(
        dropout=("uniform", "adversarial"), rate=(0.4,), seed=(0, 1, 2), embedding_dim=64,
        hidden_size=128, latent_dim=16, adversary_embedding_dim=32, adversary_hidden_size=64,
        epochs=8, dropout_in=0.0, patience=100, kl_warmup_steps=600, ema_decay=0.99,
        encoder_init="pytorch", adversary_lr=3e-3, test_iw_samples=50, checkpoint_every=0,
        log_every=20, max_length=50, jobs=2,
    ),
    "ptb": dict(data_dir=str(SHARED_DATA / "ptb"), embedding_dim=512, hidden_size=1024,
                max_length=100, rate=GRID, kl_weight=(1.0,)),  # PTB's longest line: 82 words
    "yahoo": dict(data_dir=str(SHARED_DATA / "yahoo"), hidden_size=2048, rate=GRID, kl_weight=(2.0,)),  # noqa: E501
    "yelp": dict(data_dir=str(SHARED_DATA / "yelp"), hidden_size=2048, rate=GRID, kl_weight=(2.0,)),
    "snli": dict(data_dir=str(SHARED_DATA / "snli"), max_length=100, rate=GRID, kl_weight=(0.1,),
                 adversary_lr=1e-2),
}
# fmt: on


DEFAULT_LR = {"sgd": 1.0, "adam": 1e-3}  # the paper's SGD; Adam's usual rate


def parse_args(argv: list[str] | None = None) -> Config:
    """Preset first, then the flags the user gave; ``--help`` shows the preset's defaults."""
    config = parse_with_presets(Config, PRESETS, argv, description=__doc__.splitlines()[0])
    if config.lr is None:  # recorded in config.json as the value used
        config = replace(config, lr=DEFAULT_LR[config.optimizer])
    if config.decoder == "transformer" and config.decoder_init != "authors":
        exit_with_error(
            "argument --decoder-init: applies to the LSTM decoders (the Transformer keeps "
            f"GPT-2's initialisation), got {config.decoder_init!r}"
        )
    if config.decoder == "transformer" and config.hidden_size % config.transformer_heads:
        exit_with_error(
            f"argument --transformer-heads: must divide --hidden-size {config.hidden_size}, "
            f"got {config.transformer_heads}"
        )
    for name in ("dropout", "seed", "rate", "kl_weight"):  # a run twice would count twice
        values = getattr(config, name)
        if repeated := sorted({v for v in values if values.count(v) > 1}):
            exit_with_error(f"argument {_flag(name)}: {repeated[0]} is given twice")
    try:
        check_device(config.device)
    except ValueError as error:
        exit_with_error(f"argument --device: {error}")
    try:
        parse_relaxation_options(config.relaxation, config.relaxation_options)
    except ValueError as error:
        exit_with_error(f"argument --relaxation-options: {error}")
    try:  # its span in steps is checked once the data is read (check_schedule)
        baselines.check_baseline(config.baseline, config)
    except baselines.BaselineSettingError as error:
        exit_with_error(f"argument {_flag(error.setting)}: {error}")
    if problem := folder_problem(Path(config.out)):
        exit_with_error(f"argument --out: {problem}")
    if config.data_dir is not None:  # a run analysed from another folder reads its own corpus
        config = replace(config, data_dir=str(Path(config.data_dir).resolve()))
    return config


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_schedule(config: Config, data: Corpus, world_size: int) -> None:
    """Refuse a baseline whose schedule does not fit the run's steps, before any run starts.

    Raises:
        UserError: naming the flag (``--kl-cycles`` for more cycles than steps).
    """
    global_size = config.batch_size * world_size
    for seed in config.seed:
        steps_per_epoch = len(epoch_batches(data.splits["train"], global_size, seed, 0, world_size))
        total_steps = config.epochs * steps_per_epoch
        try:
            baselines.make_baseline(config.baseline, config, total_steps, steps_per_epoch)
        except baselines.BaselineSettingError as error:
            raise UserError(f"argument {_flag(error.setting)}: {error}") from None
        except ValueError as error:
            steps = f"--epochs {config.epochs} x {steps_per_epoch} steps per epoch"
            if config.baseline == "cyclical":
                raise UserError(
                    f"argument --kl-cycles: each cycle needs a step at least, and the run has "
                    f"{total_steps} ({steps}), got {config.kl_cycles}"
                ) from None
            raise UserError(f"argument --baseline {config.baseline}: {error} ({steps})") from None


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
    limit = config.max_train_sequences
    positions = ModelSpec(vocab_size=4).transformer_max_length  # BOS + tokens must fit
    try:
        corpus = load_corpus(
            directory, max_size=config.vocab_max_size, min_count=config.vocab_min_count,
            tokenizer=config.tokenizer, sentencepiece_vocab_size=config.sentencepiece_vocab_size,
            cache_dir=Path(config.out) / config.preset / "sentencepiece",
            max_length=config.max_length, truncate_long=config.truncate_long,
            max_train_sequences=limit,
            # Evaluation needs two sequences (AU is a variance); training one per rank.
            min_sequences={"train": world_size, "valid": 2, "test": 2},
            max_tokens=positions - 1 if config.decoder == "transformer" else None,
        )  # fmt: skip
    except OSError as error:  # a missing folder or file
        raise UserError(f"{error} (--preset {config.preset}; --data-dir names another)") from None
    except ValueError as error:  # a bad line, named file:line
        raise UserError(str(error)) from None
    for split, count in corpus.truncated.items():
        if count:
            where = corpus.directory / f"{split}.txt"
            rank_zero_warn(f"{where}: {count} lines cut to --max-length {config.max_length} words")
    if limit is not None and factors:
        factors["train"] = {name: labels[:limit] for name, labels in factors["train"].items()}
    return replace(corpus, factors=factors)


def eval_batches(
    sequences: list[list[int]], config: Config, device: torch.device, world_size: int = 1
) -> list[Batch]:
    """Evaluation batches (global ones under torchrun: every rank builds all of them)."""
    return [batch.to(device) for batch in make_batches(sequences, config.batch_size * world_size)]


# 3. Model: one run per grid point (dropout, rate, lambda) and seed -----------------------------
def model_spec(config: Config, variant: Variant, vocab_size: int) -> ModelSpec:
    """The model's settings: the flags named as ModelSpec's fields, then the variant's."""
    shared = {f.name for f in fields(ModelSpec)} & {f.name for f in fields(Config)}
    settings = {name: getattr(config, name) for name in shared}
    settings |= {"dropout": variant.dropout, "rate": variant.rate, "kl_weight": variant.kl_weight}
    settings["adversary_hidden_size"] = config.adversary_hidden_size or config.hidden_size
    settings["relaxation_options"] = parse_relaxation_options(
        config.relaxation, config.relaxation_options
    )
    return ModelSpec(vocab_size=vocab_size, **settings)


def run_record(config: Config, variant: Variant, spec: ModelSpec, data: Corpus) -> dict[str, Any]:
    """A run's ``config.json``: its settings (its own grid point), model and data identity."""
    sequences = {split: len(lines) for split, lines in data.splits.items()}
    data_identity = {"fingerprint": data.fingerprint, "sequences": sequences}
    return {**asdict(config), **asdict(variant), "model": asdict(spec), "data": data_identity}


# 4-5. Optimisation and the training loop -------------------------------------------------------
def train_run(config: Config, variant: Variant, data: Corpus, console: Console | None = None,
              context: DistributedContext | None = None) -> dict:  # fmt: skip
    """Train one grid point with one seed, then test it; returns the run's metrics.

    Under ``torchrun`` every rank runs this: each trains on its shard of every global batch
    through DDP; rank 0 alone locks the run folder and writes files. No console: it prints nothing.

    Raises:
        UserError: the folder holds a run with other settings, is locked, or unreadable.
        DivergedError: the loss became NaN or infinite; the last good checkpoint is kept.
        InterruptedRunError: after a SIGINT/SIGTERM was honoured and checkpointed.
    """
    console, context = console or Console(quiet=True), context or init_distributed(config.device)
    spec = model_spec(config, variant, len(data.vocab))
    record = run_record(config, variant, spec, data)
    tag = baselines.baseline_tag(config.baseline, config)  # annealing: not named
    # A grid of more or fewer rates or lambdas named the run otherwise: find it there.
    path = run_folder(
        Path(config.out) / config.preset, variant, config.rate, config.kl_weight, tag,
        holds_this_run=lambda folder: _holds_run(folder, record),
    )  # fmt: skip
    folder = RunFolder(path, console)
    with folder.locked(context.is_rank_zero):
        return _train_run(config, variant, data, console, context, folder, spec, record)


def _holds_run(folder: Path, record: dict[str, Any]) -> bool:
    try:
        return same_run(read_json(folder / "config.json"), record)
    except (OSError, ValueError):
        return False


def _train_run(
    config: Config, variant: Variant, data: Corpus, console: Console, context: DistributedContext,
    folder: RunFolder, spec: ModelSpec, record: dict[str, Any],
) -> dict:  # fmt: skip
    vocab = {"vocab.json": data.vocab.to_dict()}
    finished = folder.start(record, config.resume, NOT_RESULT_SETTINGS, vocab, context.is_rank_zero)
    if finished is not None:
        return finished
    barrier()  # every rank has looked at the folder before rank 0 writes into it
    if context.is_rank_zero:
        folder.create(record, vocab)

    device, world_size, seed = context.device, context.world_size, variant.seed
    torch.manual_seed(seed)  # the same on every rank: ShardedRandomness keeps the streams equal
    model = build_sequence_vae(spec).to(device)
    if config.optimizer == "adam":
        vae_optimizer = adam(model.vae_parameters(), config.lr)
    else:
        vae_optimizer = torch.optim.SGD(model.vae_parameters(), lr=config.lr)
    adversary_optimizer = None
    if spec.dropout == "adversarial":
        adversary_optimizer = adam(model.masker.parameters(), config.adversary_lr)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay))
    lr_decay = torch.optim.lr_scheduler.ExponentialLR(vae_optimizer, config.lr_decay)
    # A learned fill vector without a masker takes no part in the loss.
    forward = data_parallel(model, context, model.masker is None and spec.fill == "learned")
    forward = torch.compile(forward) if config.compile else forward
    # Each rank trains on its shard of every global batch of batch_size rows per rank.
    global_size = config.batch_size * world_size
    steps_per_epoch = len(epoch_batches(data.splits["train"], global_size, seed, 0, world_size))
    total_steps = config.epochs * steps_per_epoch
    baseline = baselines.make_baseline(config.baseline, config, total_steps, steps_per_epoch)
    if context.is_distributed and baseline.runs_in_one_process:
        raise UserError(f"--baseline {config.baseline} runs in one process, not under torchrun")
    if context.is_distributed and baseline.free_bits > 0:
        rank_zero_warn("--free-bits under torchrun thresholds each rank's shard, not the batch")
    trainer = BaselineTrainer(
        baseline, model, forward, vae_optimizer, adversary_optimizer, config.grad_clip,
        steps_per_epoch=steps_per_epoch, bf16=config.precision == "bf16", averaged=ema, seed=seed,
        batches=lambda split: eval_batches(data.splits[split], config, device),
    )  # fmt: skip
    players = {
        "model": model, "ema": ema, "vae_optimizer": vae_optimizer, "lr_decay": lr_decay,
        "adversary_optimizer": adversary_optimizer,
        "baseline": trainer if baseline.aggressive else None,  # lagging's phase
    }  # fmt: skip

    def epoch(number: int) -> list[Batch]:
        model.train()
        batches = epoch_batches(data.splits["train"], global_size, seed, number, world_size)
        return [b.to(device) for b in batches]

    def step(batch: Batch, number: int) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        return trainer.step(shard_batch(batch, context.rank, world_size), number)  # and the EMA

    def evaluate_split(model: SequenceVAE, split: str, iw_samples: int, watch: Watch) -> dict:
        """The evaluator with this run's conventions; each split's noise seeded by the run."""
        batches = eval_batches(data.splits[split], config, device, world_size)
        generator = torch.Generator(device).manual_seed(seed)
        with watch(model.encoder, len(batches)):
            return evaluate(
                model, batches, iw_samples=iw_samples, mi_estimator=config.mi_estimator,
                generator=generator, distributed=context.is_distributed,
                bf16=config.precision == "bf16",
            ).as_dict()  # fmt: skip

    label = variant.label(config.preset, config.kl_weight, baseline.tag)
    scores = SCORE_STATISTICS if adversary_optimizer else ()
    budget = Budget(
        config.epochs, config.patience, config.max_steps, config.log_every,
        config.checkpoint_every, config.score_log_every, scores,
    )  # fmt: skip
    save_best = rank_zero_only(save_sequence_vae)
    with StopRequest() as stop, progress_bar(console) as progress:
        progression = fit(
            folder, players, epoch, step,
            validate=partial(evaluate_split, ema.module, "valid", config.valid_iw_samples),
            on_best=lambda progression: save_best(
                ema.module, spec, folder.best, vocab=data.vocab.to_dict(),
                epoch=progression.epoch, step=progression.step,  # which weights, for analyses
            ),
            budget=budget, console=console, progress=progress, stop=stop, label=label,
            device=device, describe=validation_line,
            log_columns=lambda: {"lr": vae_optimizer.param_groups[0]["lr"]},
        )  # fmt: skip
        # 6. Test, once, with the best averaged weights (selected on validation only).
        try:
            best, _ = load_sequence_vae(folder.best, map_location=device)
        except (CheckpointError, FileNotFoundError) as error:  # deleted, or damaged on disk
            raise UserError(
                f"{error}: the run's best weights are lost; delete {folder.path} to train it again"
            ) from None
        try:
            test = evaluate_split(
                best, "test", config.test_iw_samples, watch_test(progress, stop, label)
            )
        except InterruptedRunError as error:
            raise InterruptedRunError(
                f"{error}; training is finished (checkpoint in {folder.last}); "
                "run again with --resume to test"
            ) from None
    valid = progression.best_valid_result
    if config.tokenizer == "sentencepiece":
        valid = per_word_metrics(valid, data.word_counts["valid"])
        test = per_word_metrics(test, data.word_counts["test"])
    results = {
        "model": label, "preset": config.preset, "dropout": variant.dropout, "seed": seed,
        "rate": variant.rate, "best_epoch_valid_neg_elbo": progression.best_valid,
        "epochs": progression.epoch, "steps": progression.step,
        "train_seconds": progression.train_seconds, "valid": valid, "test": test,
    }  # fmt: skip
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
    check_schedule(config, data, context.world_size)
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
                partial(train_run, config, data=data), variants, config.jobs,
                threads=config.threads or 1, on_result=lambda _, run: console.print(run_line(run)),
            )  # fmt: skip
    finally:
        set_value_checks(checks_were_on)
    title, runs_dir = f"{config.preset}: test results", Path(config.out) / config.preset
    print_report(console, results_report(results, title, data.factors.get("test"), runs_dir))
    console.print(f"total time {time.perf_counter() - started:.0f} s")
    return results


if __name__ == "__main__":
    main()
