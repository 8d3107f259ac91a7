"""Sequence VAEs trained with no, uniform or adversarial word dropout.

Reproduces the experiments of Miladinović et al., "Learning to Drop Out: An Adversarial Approach
to Training Sequence VAEs" (NeurIPS 2022), assembled from the ``advmask`` library.

Usage::

    python recipes/seqvae_awd.py                        # synthetic demo, all three variants
    python recipes/seqvae_awd.py --preset ptb --dropout adversarial --seed 0 1 2
    python recipes/seqvae_awd.py --preset ptb --resume  # continue interrupted runs
    python recipes/seqvae_awd.py --help                 # every flag (derived from Config)

The method, top to bottom:

1. **Configuration.** One dataclass; presets hold the paper's settings, flags override them.
2. **Data.** A corpus folder (``train.txt``, ``valid.txt``, ``test.txt``), a vocabulary from
   the training split, length-bucketed batches ``[BOS, words, EOS, PAD..]``.
3. **Model.** LSTM encoder ``q(z|x)``, Double-LSTM decoder ``p(x|z)``, and a masker that drops
   decoder inputs: none, uniform (exactly ``round(rate * L)`` words) or adversarial (a score
   network chooses them, trained through a gradient reversal to *maximise* the VAE's loss).
4. **Optimisation.** SGD (lr 1.0, decay 0.96 per epoch) for the VAE, Adam for the adversary,
   gradient clipping 5, linear KL annealing from 0.1, Polyak averaging 0.9995.
5. **Loop.** Validation of the averaged weights after every epoch, early stopping on the
   validation ``-ELBO``, atomic checkpoints; Ctrl-C or SIGTERM saves and exits, ``--resume``
   continues to the same result.
6. **Test.** Once, at the end, with the best averaged weights: PPL, -ELBO, KL, MI, AU (and, on
   the synthetic corpus, how well the true latent factors can be read from ``z``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from lightning_utilities.core.rank_zero import rank_zero_only, rank_zero_warn
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from advmask import RELAXATIONS, set_value_checks, value_checks_enabled
from advmask.training.checkpoint import (
    CheckpointError,
    RunLock,
    RunLockedError,
    atomic_write,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
    save_json,
)
from advmask.training.cli import Parser, UserError, exit_with_error, parse_config
from advmask.seqvae.data import (
    Batch,
    Vocabulary,
    fingerprint,
    load_corpus,
    make_batches,
    make_synthetic_corpus,
)
from advmask.training.distributed import (
    BatchShard,
    DistributedContext,
    any_rank,
    barrier,
    close_distributed,
    init_distributed,
    rank_zero_first,
    reduce_ratios,
    shard_batch,
)
from advmask.seqvae.evaluation import EvaluationResult, evaluate
from advmask.seqvae.factory import ModelSpec, build_sequence_vae, load_sequence_vae, save_sequence_vae
from advmask.training.optim import adam
from advmask.seqvae.probe import linear_probe_accuracy
from advmask.seqvae.report import (
    comparison_line,
    paired_differences,
    print_table,
    read_json,
    results_legend,
    results_table,
)
from advmask.seqvae.schedules import CyclicalKLAnnealing, LinearKLAnnealing
from advmask.seqvae.vae import SequenceVAE

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


# --------------------------------------------------------------------------------------------
# 1. Configuration
# --------------------------------------------------------------------------------------------
def _flag(
    default: Any, help: str, choices: tuple[str, ...] | None = None, **limits: float
) -> Any:
    """A field with its help, allowed values and range (``minimum=``, ``exclusive_minimum=``,
    ``maximum=``, ``exclusive_maximum=``), all checked when the flags are parsed."""
    metadata = {"help": help, **({"choices": choices} if choices else {}), **limits}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: default, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Config:
    """Every setting of a run; flags are generated from the fields."""

    preset: str = _flag(
        "synthetic", "settings to start from", ("synthetic", "ptb", "yahoo", "yelp", "snli")
    )
    data_dir: str | None = _flag(None, "corpus folder with train/valid/test.txt")
    out: str = _flag("runs", "where run directories are created")
    dropout: tuple[str, ...] = _flag(
        ("none", "uniform", "adversarial"), "variants to train", ("none", "uniform", "adversarial")
    )
    seed: tuple[int, ...] = _flag((0,), "one run per seed; tables report mean (std)", minimum=0)
    rate: float | None = _flag(
        None,
        "word-dropout rate for every variant (overrides the next two)",
        minimum=0.0,
        maximum=1.0,
    )
    uniform_rate: float = _flag(0.4, "rate of uniform word dropout", minimum=0.0, maximum=1.0)
    adversarial_rate: float = _flag(
        0.3, "rate of adversarial word dropout", minimum=0.0, maximum=1.0
    )
    kl_weight: float = _flag(1.0, "lambda: weight of the adversary's KL regulariser", minimum=0.0)
    tokenizer: str = _flag(
        "words",
        "the corpus's own tokens, or sentencepiece pieces trained on the training split (raw text)",
        ("words", "sentencepiece"),
    )
    sentencepiece_vocab_size: int = _flag(8000, "pieces requested from sentencepiece", minimum=2)
    max_length: int = _flag(
        200,
        "longest line in words (whitespace tokens); a longer line in any split is an error "
        "naming file:line, unless --truncate-long",
        minimum=1,
    )
    truncate_long: bool = _flag(False, "cut lines longer than --max-length instead of refusing")
    relaxation: str = _flag(
        "euclidean", "top-K relaxation of the adversary", tuple(sorted(RELAXATIONS))
    )
    std: str = _flag(
        "fixed", "adversary's score std: fixed to 1 (authors) or learned", ("fixed", "softplus")
    )
    fill: str = _flag("zero", "what a dropped input becomes", ("zero", "unk", "learned"))
    decoder: str = _flag(
        "double-lstm", "decoder architecture", ("double-lstm", "lstm", "transformer")
    )
    transformer_layers: int = _flag(2, "blocks of the Transformer decoder", minimum=1)
    transformer_heads: int = _flag(4, "attention heads of the Transformer decoder", minimum=1)
    embedding_dim: int = _flag(512, "word embedding size", minimum=1)
    hidden_size: int = _flag(
        1024, "LSTM hidden size of encoder and decoder (Transformer decoder: its width)", minimum=1
    )
    latent_dim: int = _flag(32, "size of z", minimum=1)
    adversary_embedding_dim: int = _flag(512, "embedding size of the adversary", minimum=1)
    adversary_hidden_size: int | None = _flag(
        None, "hidden size of the adversary; None: hidden_size, as the authors", minimum=1
    )
    encoder_init: str = _flag(
        "authors",
        "U(-0.01, 0.01) as the paper's code, or PyTorch's defaults (small models)",
        ("authors", "pytorch"),
    )
    dropout_in: float = _flag(
        0.5, "embedding dropout of the decoder", minimum=0.0, exclusive_maximum=1.0
    )
    dropout_out: float = _flag(
        0.5, "output dropout of the decoder", minimum=0.0, exclusive_maximum=1.0
    )
    vocab_max_size: int | None = _flag(None, "keep only the most frequent words", minimum=0)
    vocab_min_count: int = _flag(1, "drop words rarer than this from the vocabulary", minimum=1)
    batch_size: int = _flag(32, "sequences per batch", minimum=1)
    epochs: int = _flag(100, "maximum number of epochs", minimum=1)
    max_steps: int | None = _flag(
        None, "stop training after this many steps (then validate and test)", minimum=1
    )
    patience: int = _flag(
        5, "epochs without validation improvement before stopping", minimum=1
    )
    lr: float = _flag(1.0, "SGD learning rate of the VAE", exclusive_minimum=0.0)
    lr_decay: float = _flag(
        0.96, "learning-rate decay per epoch", exclusive_minimum=0.0, maximum=1.0
    )
    adversary_lr: float = _flag(1e-3, "Adam learning rate of the adversary", exclusive_minimum=0.0)
    grad_clip: float = _flag(
        5.0, "gradient-norm clipping (VAE and adversary separately)", exclusive_minimum=0.0
    )
    ema_decay: float = _flag(
        0.9995, "Polyak averaging decay per step", minimum=0.0, exclusive_maximum=1.0
    )
    kl_schedule: str = _flag("linear", "KL annealing schedule", ("linear", "cyclical"))
    kl_start: float = _flag(
        0.1, "KL weight at step 0 of the linear schedule", minimum=0.0, maximum=1.0
    )
    kl_warmup_steps: int = _flag(30000, "steps until the KL weight reaches 1", minimum=1)
    free_bits: float = _flag(0.0, "free bits per latent dimension (0 = off)", minimum=0.0)
    valid_iw_samples: int = _flag(
        0, "importance samples for validation IW-NLL (0 = skip)", minimum=0
    )
    test_iw_samples: int = _flag(
        500, "importance samples for the test IW-NLL (0 = skip)", minimum=0
    )
    mi_estimator: str = _flag("full", "mutual-information estimator", ("full", "batch"))
    max_train_sequences: int | None = _flag(
        None, "use only the first N training sequences", minimum=1
    )
    device: str = _flag("auto", "cpu, cuda, cuda:1, ... or auto")
    precision: str = _flag("fp32", "bf16 autocast on CUDA", ("fp32", "bf16"))
    compile: bool = _flag(False, "torch.compile the model's training step")
    log_every: int = _flag(
        50, "steps between log rows (means since the previous row) and, redirected, log lines",
        minimum=1,
    )
    score_log_every: int = _flag(
        100,
        "steps between rows of the adversary's score statistics in scores.csv (0 = off)",
        minimum=0,
    )
    checkpoint_every: int = _flag(
        500, "steps between mid-epoch checkpoints (0 = epoch ends only)", minimum=0
    )
    resume: bool = _flag(
        False, "continue the runs found in --out (with the same settings) instead of refusing"
    )
    threads: int | None = _flag(None, "torch CPU threads; None: torch's choice", minimum=1)


PRESETS: dict[str, dict[str, Any]] = {
    # A few minutes on 2 CPU cores for all three variants (see advmask.seqvae.data.synthetic).
    "synthetic": dict(
        # The demo: every variant at one rate, over three seeds, so that the comparison is
        # paired and has a standard error.
        rate=0.4,
        seed=(0, 1, 2),
        embedding_dim=64,
        hidden_size=128,
        latent_dim=16,
        adversary_embedding_dim=32,
        adversary_hidden_size=64,
        epochs=8,
        patience=100,
        kl_warmup_steps=600,
        # ~1500 steps in all: 0.9995 would still weigh the initial weights by ~0.5 at the end,
        # and the authors' init leaves a 128-unit encoder blind to x (AU 0) in that budget.
        ema_decay=0.99,
        encoder_init="pytorch",
        adversary_lr=3e-3,
        test_iw_samples=50,
        checkpoint_every=0,
        log_every=20,
        max_length=50,
    ),
    # The paper's settings (its appendix): z = 32, batch 32, uniform 0.4, adversarial 0.2 on PTB.
    "ptb": dict(
        data_dir=str(SHARED_DATA / "ptb"),
        embedding_dim=512,
        hidden_size=1024,
        max_length=100,  # the longest PTB sentence has 82 words
        adversarial_rate=0.2,
        kl_weight=1.0,
        adversary_lr=1e-3,
    ),
    "yahoo": dict(
        data_dir=str(SHARED_DATA / "yahoo"),
        embedding_dim=512,
        hidden_size=2048,
        adversarial_rate=0.3,
        kl_weight=2.0,
        adversary_lr=1e-3,
    ),
    "yelp": dict(
        data_dir=str(SHARED_DATA / "yelp"),
        embedding_dim=512,
        hidden_size=2048,
        adversarial_rate=0.3,
        kl_weight=2.0,
        adversary_lr=1e-3,
    ),
    "snli": dict(
        data_dir=str(SHARED_DATA / "snli"),
        max_length=100,
        embedding_dim=512,
        hidden_size=1024,
        adversarial_rate=0.3,
        kl_weight=0.1,
        adversary_lr=1e-2,
    ),
}


def parse_args(argv: list[str] | None = None) -> Config:
    """Preset first, then the flags the user gave; ``--help`` shows the preset's defaults."""
    preset_parser = Parser(add_help=False)
    preset_parser.add_argument("--preset", default="synthetic", choices=sorted(PRESETS))
    preset = preset_parser.parse_known_args(argv)[0].preset
    config = parse_config(
        Config,
        argv,
        defaults={"preset": preset, **PRESETS[preset]},
        description=__doc__.splitlines()[0],
    )
    problem = config_problem(config)
    if problem is not None:
        exit_with_error(problem)
    return config


def config_problem(config: Config) -> str | None:
    """What is wrong with a combination of settings (each flag's own range is checked when
    parsed), or None."""
    if config.decoder == "transformer":
        if config.hidden_size % config.transformer_heads:
            return (
                f"argument --transformer-heads: must divide --hidden-size "
                f"{config.hidden_size}, got {config.transformer_heads}"
            )
        # The decoder reads BOS and the words: max_length + 1 positions.
        positions = ModelSpec(vocab_size=4).transformer_max_length
        if config.max_length + 1 > positions:
            return (
                f"argument --max-length: the Transformer decoder covers {positions} positions, "
                f"so at most {positions - 1} words, got {config.max_length}"
            )
    return None


# --------------------------------------------------------------------------------------------
# 2. Data
# --------------------------------------------------------------------------------------------
@dataclass
class Data:
    """Encoded splits, the vocabulary and (synthetic corpus only) the true latent factors.

    ``word_counts`` are the whitespace words of each split's text (with sentencepiece, fewer
    than its pieces: the denominator of a per-word perplexity); ``fingerprint`` identifies the
    encoded splits (:func:`advmask.seqvae.data.fingerprint`), so a resumed run can tell that its data
    changed.
    """

    vocab: Vocabulary
    splits: dict[str, list[list[int]]]
    factors: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    word_counts: dict[str, int] = field(default_factory=dict)
    fingerprint: str = ""


# Evaluation needs two sequences: the active units are a variance over the posterior means.
MIN_SEQUENCES = {"train": 1, "valid": 2, "test": 2}


def load_data(config: Config, world_size: int = 1) -> Data:
    """The synthetic corpus is generated (deterministically) and written under ``--out``.

    Raises:
        UserError: naming the folder, ``file:line`` or split that cannot be used.
    """
    factors: dict[str, dict[str, torch.Tensor]] = {}
    directory = config.data_dir
    if config.preset == "synthetic" and directory is None:
        synthetic = make_synthetic_corpus(seed=1234)
        directory = str(Path(config.out) / "synthetic" / "corpus")
        rank_zero_only(synthetic.write)(directory)  # under rank_zero_first: rank 0 writes
        factors = synthetic.factors
    if directory is None:
        raise UserError(f"--data-dir is required for preset {config.preset!r}")
    try:
        corpus = load_corpus(
            directory,
            max_size=config.vocab_max_size,
            min_count=config.vocab_min_count,
            tokenizer=config.tokenizer,
            sentencepiece_vocab_size=config.sentencepiece_vocab_size,
            cache_dir=Path(config.out) / config.preset / "sentencepiece",
            max_length=config.max_length,
            truncate_long=config.truncate_long,
        )
    except OSError as error:
        raise UserError(
            f"{error} (--preset {config.preset}; --data-dir names another folder)"
        ) from error
    except ValueError as error:
        raise UserError(str(error)) from error
    for split, count in corpus.truncated.items():
        if count:
            rank_zero_warn(
                f"{corpus.directory / f'{split}.txt'}: {count} lines cut to "
                f"--max-length {config.max_length} words"
            )
    splits = dict(corpus.splits)
    if config.max_train_sequences is not None:
        splits["train"] = splits["train"][: config.max_train_sequences]
        factors = {split: dict(f) for split, f in factors.items()}
        if "train" in factors:
            factors["train"] = {
                k: v[: config.max_train_sequences] for k, v in factors["train"].items()
            }
    for split, minimum in MIN_SEQUENCES.items():
        needed = max(minimum, world_size) if split == "train" else minimum
        if len(splits[split]) < needed:
            after = " (after --max-train-sequences)" if split == "train" else ""
            raise UserError(
                f"{corpus.directory / f'{split}.txt'}: the {split} split has "
                f"{len(splits[split])} sequences{after}, at least {needed} are needed"
            )
    if config.decoder == "transformer":
        positions = ModelSpec(vocab_size=4).transformer_max_length
        for split, sequences in splits.items():
            longest = max(range(len(sequences)), key=lambda i: len(sequences[i]))
            if len(sequences[longest]) + 1 > positions:
                raise UserError(
                    f"{corpus.directory / f'{split}.txt'}:{longest + 1}: "
                    f"{len(sequences[longest])} {config.tokenizer} tokens, more than the "
                    f"{positions - 1} the Transformer decoder covers"
                )
    return Data(
        vocab=corpus.vocab,
        splits=splits,
        factors=factors,
        word_counts=dict(corpus.word_counts),
        fingerprint=fingerprint(splits),
    )


def epoch_batches(
    data: Data, config: Config, seed: int, epoch: int, device: torch.device, world_size: int = 1
) -> list[Batch]:
    """The *global* batches of an epoch, ``batch_size`` sequences per rank each.

    Every rank builds the same list and trains on its shard of each batch
    (:func:`advmask.training.distributed.shard_batch`), so ``W`` ranks with ``--batch-size B`` see the
    batches of one process with ``--batch-size W*B``. A last batch with fewer sequences than
    ranks is left out (at most ``W - 1`` sequences per epoch), since a rank cannot train on none.
    """
    # The order of epoch e depends only on (seed, e), so a resumed run sees the same batches.
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return [
        b.to(device)
        for b in make_batches(
            data.splits["train"], config.batch_size * world_size, shuffle=True, generator=generator
        )
        if b.num_sequences >= world_size
    ]


def eval_batches(
    sequences: list[list[int]], config: Config, device: torch.device, world_size: int = 1
) -> list[Batch]:
    """Evaluation batches; every rank builds all of them and evaluates its block."""
    return [
        b.to(device) for b in make_batches(sequences, config.batch_size * world_size, shuffle=False)
    ]


# --------------------------------------------------------------------------------------------
# 3. Model
# --------------------------------------------------------------------------------------------
def model_spec(config: Config, dropout: str, vocab_size: int) -> ModelSpec:
    rate = {"none": 0.0, "uniform": config.uniform_rate, "adversarial": config.adversarial_rate}[
        dropout
    ]
    if config.rate is not None and dropout != "none":
        rate = config.rate
    return ModelSpec(
        vocab_size=vocab_size,
        embedding_dim=config.embedding_dim,
        hidden_size=config.hidden_size,
        latent_dim=config.latent_dim,
        decoder=config.decoder,
        dropout_in=config.dropout_in,
        dropout_out=config.dropout_out,
        fill=config.fill,
        dropout=dropout,
        rate=rate,
        kl_weight=config.kl_weight,
        relaxation=config.relaxation,
        std=config.std,
        adversary_embedding_dim=config.adversary_embedding_dim,
        adversary_hidden_size=config.adversary_hidden_size or config.hidden_size,
        encoder_init=config.encoder_init,
        transformer_layers=config.transformer_layers,
        transformer_heads=config.transformer_heads,
    )


def model_label(config: Config, spec: ModelSpec) -> str:
    if spec.dropout == "none":
        return f"{config.preset} none"
    return f"{config.preset} {spec.dropout} [{spec.rate:g}]"


# --------------------------------------------------------------------------------------------
# 4-5. Optimisation and the training loop
# --------------------------------------------------------------------------------------------
@dataclass
class Progression:
    """Where a run stands; saved in every checkpoint."""

    epoch: int = 0
    step: int = 0
    step_in_epoch: int = 0
    best_valid: float = math.inf
    epochs_without_improvement: int = 0
    finished_training: bool = False
    # True between the end of an epoch's training and its validation: a run stopped (or
    # failed) while validating resumes with the validation, not with another epoch.
    awaiting_validation: bool = False
    # Validation metrics of the epoch whose weights are in best.pt (reported, not re-run).
    best_valid_result: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    score_history: list[dict[str, Any]] = field(default_factory=list)


class StopRequest:
    """Turns the first SIGINT/SIGTERM into a request honoured at the next step boundary."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = True


class InterruptedRunError(Exception):
    """Raised after a requested stop has been checkpointed."""


class DivergedError(Exception):
    """The loss (or the validation -ELBO) is not finite; nothing after it was saved."""


@contextmanager
def evaluation_progress(
    model: SequenceVAE,
    batches: list[Batch],
    description: str,
    progress: Progress,
    stop: StopRequest,
    where: str,
) -> Iterator[None]:
    """Advance a progress bar per evaluated batch, and honour a stop request between batches.

    :func:`advmask.seqvae.evaluation.evaluate` encodes every batch once, so a hook on the encoder
    marks each batch; a requested stop raises :class:`InterruptedRunError` (mentioning
    ``where``) from it, between two batches.
    """
    task = progress.add_task(description, total=len(batches), stats="")
    if not progress.console.is_terminal:
        progress.console.print(f"{description}: {len(batches)} batches")

    def after_batch(module: torch.nn.Module, args: Any, output: Any) -> None:
        if stop.requested:
            raise InterruptedRunError(f"stopped during {where}")
        progress.advance(task)

    handle = model.encoder.register_forward_hook(after_batch)
    try:
        yield
    finally:
        handle.remove()
        progress.remove_task(task)


def kl_schedule(config: Config, steps_per_epoch: int) -> Any:
    if config.kl_schedule == "cyclical":
        return CyclicalKLAnnealing(total_steps=max(1, config.epochs * steps_per_epoch))
    return LinearKLAnnealing(start=config.kl_start, warmup_steps=config.kl_warmup_steps)


def _ratio(total: torch.Tensor, count: torch.Tensor | float) -> torch.Tensor:
    """(2,) ``[sum, count]``, summed over ranks by :func:`advmask.training.distributed.reduce_ratios`."""
    total = total.detach().float()
    return torch.stack([total, torch.as_tensor(count, dtype=total.dtype, device=total.device)])


def train_step(
    model: SequenceVAE,
    forward: Any,
    shard: BatchShard,
    beta: float,
    config: Config,
    vae_optimizer: torch.optim.Optimizer,
    adversary_optimizer: torch.optim.Optimizer | None,
) -> dict[str, torch.Tensor]:
    """One update of the VAE and (through the gradient reversal) of the adversary.

    The adversary's parameters receive the *reversed* gradient of the VAE's loss from the same
    backward pass, plus the plain gradient of its KL regulariser; each player has its own
    optimiser. Under DDP (``forward`` wraps ``model``) the loss is scaled to this rank's share
    of the global batch mean, the random draws are the global batch's rows, and both players'
    gradients are averaged over the ranks before clipping, so every rank takes the step one
    process takes on the whole batch. Returns ``[sum, count]`` tensors (no host sync); the
    caller reduces them over the ranks at log intervals.
    """
    batch = shard.batch
    autocast = torch.autocast(
        batch.tokens.device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16"
    )
    with autocast, shard.randomness():
        out = forward(batch.tokens, batch.lengths, kl_weight=beta, free_bits=config.free_bits)
    vae_optimizer.zero_grad(set_to_none=True)
    if adversary_optimizer is not None:
        adversary_optimizer.zero_grad(set_to_none=True)
    (out.loss * shard.loss_scale).backward()  # scale 1.0 in one process
    torch.nn.utils.clip_grad_norm_(model.vae_parameters(), config.grad_clip)
    vae_optimizer.step()
    rows = float(shard.num_sequences)
    stats = {
        "loss": _ratio(out.loss * rows, rows),
        "reconstruction": _ratio(out.reconstruction.sum(), rows),
        "kl": _ratio(out.kl.sum(), rows),
    }
    if out.masker is not None:
        stats["drop_fraction"] = _ratio(out.masker.k.sum(), out.masker.eligible.sum())
    if adversary_optimizer is not None:
        masker = out.masker
        # The same on every rank (the gradients are already averaged): its mean is itself.
        stats["adversary_grad_norm"] = _ratio(
            torch.nn.utils.clip_grad_norm_(model.masker.parameters(), config.grad_clip), 1.0
        )
        eligible = masker.eligible
        num_eligible = eligible.sum()
        absolute_means = torch.where(eligible, masker.mean.detach().abs(), 0.0)
        # The l1 norm of each sentence's score-mean vector, averaged over the batch (Figure 3).
        stats["score_l1"] = _ratio(absolute_means.sum(), rows)
        stats["score_mean_abs"] = _ratio(absolute_means.sum(), num_eligible)
        stats["score_std"] = _ratio(
            torch.where(eligible, masker.std.detach(), 0.0).sum(), num_eligible
        )
        stats["regularizer"] = _ratio(masker.regularizer * rows, rows)
        adversary_optimizer.step()
    return stats


def write_history(run_dir: Path, history: list[dict[str, Any]], name: str = "log.csv") -> None:
    """The training curves as CSV (rewritten atomically from the checkpointed history)."""
    columns: list[str] = []
    for row in history:
        columns += [c for c in row if c not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    atomic_write(run_dir / name, lambda f: f.write(buffer.getvalue().encode()))


def run_record(
    config: Config, dropout: str, seed: int, spec: ModelSpec, data: Data
) -> dict[str, Any]:
    """The content of a run's ``config.json``: settings, model, and what identifies the data."""
    record = {
        **asdict(config),
        "run": {"dropout": dropout, "seed": seed},
        "model": asdict(spec),
        "data": {
            "fingerprint": data.fingerprint,
            "sequences": {split: len(sequences) for split, sequences in data.splits.items()},
        },
    }
    return json.loads(json.dumps(record))  # tuples as lists, as read back from the file


def write_run_files(
    run_dir: Path, config: Config, dropout: str, seed: int, spec: ModelSpec, data: Data
) -> None:
    """The run's settings and vocabulary, written once when it starts."""
    run_dir.mkdir(parents=True, exist_ok=True)
    save_json(run_record(config, dropout, seed, spec, data), run_dir / "config.json")
    data.vocab.save(run_dir / "vocab.json")


# Settings that may change when a run is continued: where and how it runs, not what it computes.
RESUMABLE_CHANGES = frozenset(
    {"resume", "out", "device", "threads", "log_every", "checkpoint_every", "dropout", "seed"}
)


def resume_differences(
    run_dir: Path, config: Config, dropout: str, seed: int, spec: ModelSpec, data: Data
) -> list[str]:
    """What differs between the run in ``run_dir`` and the one these settings would train.

    Compares the resolved configuration (but :data:`RESUMABLE_CHANGES`; ``data_dir`` only
    through the data), the model specification, the data fingerprint and the vocabulary with
    the run's ``config.json`` and ``vocab.json``.
    """
    try:
        saved = read_json(run_dir / "config.json")
        saved_vocab = Vocabulary.load(run_dir / "vocab.json")
    except (OSError, ValueError) as error:
        raise UserError(f"cannot resume {run_dir}: {error}") from error
    now = run_record(config, dropout, seed, spec, data)
    differences = []
    for name, value in now.items():
        if name in RESUMABLE_CHANGES or name in ("data_dir", "run", "model", "data"):
            continue
        if name not in saved:  # a setting added since the run started: not recorded
            continue
        if saved.get(name) != value:
            flag = "--" + name.replace("_", "-")
            differences.append(f"{flag} {saved.get(name)!r} (now {value!r})")
    for name, value in now["model"].items():
        if (saved.get("model") or {}).get(name) != value:
            differences.append(
                f"model {name} {(saved.get('model') or {}).get(name)!r} (now {value!r})"
            )
    saved_data = saved.get("data") or {}
    if "fingerprint" in saved_data and saved_data["fingerprint"] != data.fingerprint:
        differences.append(
            f"the data (sequences {saved_data.get('sequences')}, now "
            f"{now['data']['sequences']}; fingerprint {saved_data['fingerprint'][:12]}, now "
            f"{data.fingerprint[:12]})"
        )
    if saved_vocab.to_dict() != data.vocab.to_dict():
        differences.append(
            f"the vocabulary ({len(saved_vocab)} tokens in vocab.json, now {len(data.vocab)})"
        )
    return differences


def check_finite(first_bad_step: torch.Tensor, progression: Progression) -> None:
    """Raise :class:`DivergedError` if a step since the last check had a non-finite loss.

    One host sync; called at log rows, before every checkpoint and at epoch ends, on every
    rank (the decision is shared, so all ranks stop together).
    """
    step = int(first_bad_step)
    if any_rank(step >= 0):
        where = f"step {step}" if step >= 0 else f"a step before {progression.step}"
        raise DivergedError(f"loss is not finite at {where} (epoch {progression.epoch + 1})")


def safe_exp(value: float) -> float:
    """``exp(value)``, or inf where it overflows (a diverged model's perplexity)."""
    return math.exp(value) if value < 709.0 else math.inf


def per_word(metrics: dict[str, Any], num_words: int) -> dict[str, Any]:
    """Metrics of a sentencepiece run with perplexities per word of the raw text.

    The total NLL is the same whatever the units; a per-word perplexity divides it by the
    whitespace words plus one EOS per sequence, as for a word-level model. The per-piece
    values are kept as ``piece_ppl_*``, with ``num_pieces`` and ``pieces_per_word``.
    """
    sequences, pieces = metrics["num_sequences"], metrics["num_words"]
    predictions = num_words + sequences
    result = {
        **metrics,
        "piece_ppl_elbo": metrics["ppl_elbo"],
        "piece_ppl_iw": metrics["ppl_iw"],
        "num_pieces": pieces,
        "pieces_per_word": pieces / num_words if num_words else None,
        "num_words": num_words,
        "num_predictions": predictions,
        "ppl_elbo": safe_exp(metrics["neg_elbo"] * sequences / predictions),
        "ppl_denominator": "words of the raw text + EOS per sequence (BOS not predicted)",
    }
    if metrics.get("nll_iw") is not None:
        result["ppl_iw"] = safe_exp(metrics["nll_iw"] * sequences / predictions)
    return result


def train_run(
    config: Config,
    dropout: str,
    seed: int,
    data: Data,
    console: Console,
    context: DistributedContext | None = None,
) -> dict:
    """Train one variant with one seed, then test it; returns the run's metrics.

    The run folder is locked while this runs (:class:`advmask.training.checkpoint.RunLock`), so a
    second process cannot write into it. Under ``torchrun`` (``context`` with several ranks)
    every rank runs this function: each trains on its shard of every global batch through DDP
    and keeps an identical copy of the model and its averaged weights; rank 0 alone locks and
    writes files, and every rank resumes from them.

    Raises:
        UserError: the folder holds a run with other settings, is locked, or a file in it is
            unreadable.
        DivergedError: the loss became NaN or infinite; the last good checkpoint is kept.
        InterruptedRunError: after a SIGINT/SIGTERM was honoured and checkpointed.
    """
    context = context or DistributedContext(device=resolve_device(config.device))
    run_dir = Path(config.out) / config.preset / f"{dropout}-seed{seed}"
    lock = RunLock(run_dir) if context.is_rank_zero else nullcontext()
    try:
        with lock:
            return _train_run(config, dropout, seed, data, console, context, run_dir)
    except RunLockedError as error:
        raise UserError(str(error)) from None
    except DivergedError as error:
        last = run_dir / "last.pt"
        kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint kept"
        raise DivergedError(f"{error} in {run_dir}; {kept}, no metrics.json") from None
    except CheckpointError as error:
        raise UserError(f"{error}; delete it to start the run again") from None


def _train_run(
    config: Config,
    dropout: str,
    seed: int,
    data: Data,
    console: Console,
    context: DistributedContext,
    run_dir: Path,
) -> dict:
    world_size = context.world_size
    metrics_path, last_path, best_path = (
        run_dir / "metrics.json",
        run_dir / "last.pt",
        run_dir / "best.pt",
    )
    spec = model_spec(config, dropout, len(data.vocab))
    started = any(p.exists() for p in (metrics_path, last_path, run_dir / "config.json"))
    if started and not config.resume:
        raise UserError(
            f"{run_dir} already holds a run: pass --resume to continue or reuse "
            "it, or choose another --out"
        )
    if (run_dir / "config.json").exists():
        differences = resume_differences(run_dir, config, dropout, seed, spec, data)
        if differences:
            raise UserError(
                f"{run_dir} holds a run with other settings: {'; '.join(differences)}; "
                "resume it with its own settings, or choose another --out"
            )
    elif metrics_path.exists() or last_path.exists():
        rank_zero_warn(f"{run_dir} has no config.json: its settings cannot be checked")
    if metrics_path.exists():
        console.print(f"[dim]{run_dir}: finished earlier with these settings, reusing it[/dim]")
        try:
            return read_json(metrics_path)
        except ValueError as error:
            raise UserError(str(error)) from error
    if context.is_rank_zero:
        for stale in remove_stale_temporaries(run_dir):
            console.print(f"[dim]removed {stale}, left by a save that was killed[/dim]")
    barrier()  # every rank has looked at run_dir before rank 0 writes into it

    device = context.device
    # The same seed on every rank: ShardedRandomness keeps their random streams identical.
    torch.manual_seed(seed)
    model = build_sequence_vae(spec).to(device)
    vae_optimizer = torch.optim.SGD(model.vae_parameters(), lr=config.lr)
    lr_decay = torch.optim.lr_scheduler.ExponentialLR(vae_optimizer, gamma=config.lr_decay)
    adversary_optimizer = (
        adam(model.masker.parameters(), lr=config.adversary_lr)  # fused where available
        if dropout == "adversarial"
        else None
    )
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay))
    progression = Progression()
    # [sum, count] of each training statistic since the last log row: rows are means.
    log_window: dict[str, torch.Tensor] = {}

    if last_path.exists():
        state = load_checkpoint(last_path, map_location=device)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        vae_optimizer.load_state_dict(state["vae_optimizer"])
        lr_decay.load_state_dict(state["lr_decay"])
        if adversary_optimizer is not None:
            adversary_optimizer.load_state_dict(state["adversary_optimizer"])
        progression = Progression(**state["progression"])
        log_window = dict(state.get("log_window") or {})
        torch.set_rng_state(state["rng"])
        console.print(
            f"[bold]{run_dir}[/bold]: resuming at epoch {progression.epoch}, "
            f"step {progression.step}"
        )
    else:
        rank_zero_only(write_run_files)(run_dir, config, dropout, seed, spec, data)

    @rank_zero_only
    def checkpoint() -> None:
        save_checkpoint(
            {
                "model": model.state_dict(),
                "ema": ema.state_dict(),
                "vae_optimizer": vae_optimizer.state_dict(),
                "lr_decay": lr_decay.state_dict(),
                "adversary_optimizer": (
                    adversary_optimizer.state_dict() if adversary_optimizer is not None else None
                ),
                "progression": asdict(progression),
                "log_window": log_window,
                "rng": torch.get_rng_state(),
            },
            last_path,
        )
        write_history(run_dir, progression.history)
        if progression.score_history:
            write_history(run_dir, progression.score_history, name="scores.csv")

    wrapped: torch.nn.Module = model
    if context.is_distributed:
        if config.free_bits > 0:
            rank_zero_warn(
                "--free-bits with several processes thresholds each rank's shard, not the "
                "global batch: the loss differs from one process's"
            )
        wrapped = DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            # A learned fill vector without a masker takes no part in the loss.
            find_unused_parameters=model.masker is None and model.drop_vector is not None,
        )
    forward = torch.compile(wrapped) if config.compile else wrapped
    valid_batches = eval_batches(data.splits["valid"], config, device, world_size)

    def evaluate_split(
        model: SequenceVAE, batches: list[Batch], iw_samples: int
    ) -> EvaluationResult:
        """The evaluator with this run's conventions; each split's noise seeded by the run."""
        return evaluate(
            model,
            batches,
            iw_samples=iw_samples,
            mi_estimator=config.mi_estimator,
            generator=torch.Generator(device).manual_seed(seed),
            distributed=context.is_distributed,
        )

    steps_per_epoch = len(epoch_batches(data, config, seed, 0, device, world_size))
    beta_at = kl_schedule(config, steps_per_epoch)
    label = model_label(config, spec)
    # Redirected (CI, nohup): no live bar, a plain line per log row and per evaluation.
    interactive = console.is_terminal
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[stats]}"),
        console=console,
        disable=not interactive,
    )
    # The first step whose loss was not finite (-1: none); kept on the device, read at checks.
    first_bad_step = torch.full((), -1, dtype=torch.int64, device=device)
    with StopRequest() as stop, progress:
        task = progress.add_task(label, total=None, stats="")
        while not progression.finished_training:
            if not progression.awaiting_validation:
                batches = epoch_batches(data, config, seed, progression.epoch, device, world_size)
                progress.reset(
                    task,
                    total=len(batches),
                    completed=progression.step_in_epoch,
                    description=f"{label} | epoch {progression.epoch + 1}",
                )
                model.train()
                for batch in batches[progression.step_in_epoch :]:
                    beta = beta_at(progression.step + 1)
                    shard = shard_batch(batch, context.rank, world_size)
                    stats = train_step(
                        model, forward, shard, beta, config, vae_optimizer, adversary_optimizer
                    )
                    ema.update_parameters(model)
                    progression.step += 1
                    progression.step_in_epoch += 1
                    first_bad_step = torch.where(
                        (first_bad_step < 0) & ~torch.isfinite(stats["loss"][0]),
                        progression.step,
                        first_bad_step,
                    )
                    for name, pair in stats.items():
                        log_window[name] = log_window[name] + pair if name in log_window else pair
                    progress.advance(task)
                    score_row = (
                        adversary_optimizer is not None
                        and config.score_log_every
                        and progression.step % config.score_log_every == 0
                    )
                    if progression.step % config.log_every == 0:
                        check_finite(first_bad_step, progression)
                        # every rank reaches this at the same steps
                        row = {
                            "step": progression.step,
                            "epoch": progression.epoch,
                            "split": "train",
                            "kl_weight": beta,
                            "lr": vae_optimizer.param_groups[0]["lr"],
                            **reduce_ratios(log_window),
                        }
                        log_window = {}
                        progression.history.append(row)
                        summary = " ".join(
                            f"{k}={row[k]:.3g}" for k in ("loss", "kl", "drop_fraction") if k in row
                        )
                        progress.update(task, stats=summary)
                        if not interactive:
                            console.print(progress_line(progress, task, summary), highlight=False)
                    if score_row:
                        # The lambda study (paper Figure 3); the gradient norm is before
                        # clipping; this step's values, not means.
                        values = reduce_ratios(stats)
                        progression.score_history.append(
                            {
                                "step": progression.step,
                                "epoch": progression.epoch,
                                "kl_weight": beta,
                                **{
                                    k: values[k]
                                    for k in (
                                        "score_l1",
                                        "score_mean_abs",
                                        "score_std",
                                        "adversary_grad_norm",
                                        "regularizer",
                                    )
                                },
                            }
                        )
                    capped = config.max_steps is not None and progression.step >= config.max_steps
                    if config.checkpoint_every and progression.step % config.checkpoint_every == 0:
                        check_finite(first_bad_step, progression)
                        checkpoint()
                    if capped:
                        break
                    if any_rank(stop.requested):  # all ranks stop at the same step
                        check_finite(first_bad_step, progression)
                        checkpoint()
                        barrier()  # torchrun ends the others when one exits: let rank 0 finish
                        raise InterruptedRunError(
                            f"stopped at step {progression.step}; checkpoint in "
                            f"{last_path}; continue with --resume"
                        )
                check_finite(first_bad_step, progression)
                lr_decay.step()
                progression.epoch += 1
                progression.step_in_epoch = 0
                progression.awaiting_validation = True
            try:
                with evaluation_progress(
                    ema.module,
                    valid_batches,
                    f"{label} | validating epoch {progression.epoch}",
                    progress,
                    stop,
                    f"the validation of epoch {progression.epoch}",
                ):
                    valid = evaluate_split(ema.module, valid_batches, config.valid_iw_samples)
            except BaseException as error:
                # The epoch's training is kept: --resume validates it again.
                checkpoint()
                if isinstance(error, InterruptedRunError):
                    raise InterruptedRunError(
                        f"{error}; checkpoint in {last_path}; continue with --resume"
                    ) from None
                raise
            if not math.isfinite(valid.neg_elbo):
                raise DivergedError(
                    f"validation -ELBO is {valid.neg_elbo} after epoch {progression.epoch}"
                )
            progression.awaiting_validation = False
            progression.history.append(
                {
                    "step": progression.step,
                    "epoch": progression.epoch,
                    "split": "valid",
                    **valid.as_dict(),
                }
            )
            if valid.neg_elbo < progression.best_valid:
                progression.best_valid = valid.neg_elbo
                progression.best_valid_result = valid.as_dict()
                progression.epochs_without_improvement = 0
                rank_zero_only(save_sequence_vae)(
                    ema.module, spec, best_path, vocab=data.vocab.to_dict()
                )
            else:
                progression.epochs_without_improvement += 1
            console.print(
                f"{label} epoch {progression.epoch}: valid -ELBO {valid.neg_elbo:.2f} "
                f"KL {valid.kl:.2f} MI {valid.mutual_information:.2f} AU {valid.active_units}",
                highlight=False,
            )
            progression.finished_training = (
                progression.epoch >= config.epochs
                or progression.epochs_without_improvement >= config.patience
                or (config.max_steps is not None and progression.step >= config.max_steps)
            )
            checkpoint()

        # 6. Test, once, with the best averaged weights (selected on validation only).
        barrier()  # rank 0 has written best.pt
        best, _ = load_sequence_vae(best_path, map_location=device)
        test_batches = eval_batches(data.splits["test"], config, device, world_size)
        valid_result = progression.best_valid_result
        if valid_result is None:  # a checkpoint from before best_valid_result was kept
            valid_result = evaluate_split(best, valid_batches, config.valid_iw_samples).as_dict()
        try:
            with evaluation_progress(
                best, test_batches, f"{label} | test", progress, stop, "the test"
            ):
                test_result = evaluate_split(best, test_batches, config.test_iw_samples).as_dict()
        except InterruptedRunError as error:
            raise InterruptedRunError(
                f"{error}; training is finished (checkpoint in {last_path}); "
                "run again with --resume to test"
            ) from None
    if config.tokenizer == "sentencepiece":
        valid_result = per_word(valid_result, data.word_counts["valid"])
        test_result = per_word(test_result, data.word_counts["test"])
    results = {
        "model": label,
        "preset": config.preset,
        "dropout": dropout,
        "seed": seed,
        "rate": spec.rate,
        "best_epoch_valid_neg_elbo": progression.best_valid,
        "epochs": progression.epoch,
        "steps": progression.step,
        "valid": valid_result,
        "test": test_result,
    }
    if data.factors:
        results["probe"] = probe_factors(best, data, config, device)
    rank_zero_only(save_json)(results, metrics_path)
    return results


def progress_line(progress: Progress, task: TaskID, summary: str) -> str:
    """A plain progress line (for a log file): where the bar is, its ETA and the stats."""
    state = progress.tasks[task]
    eta = state.time_remaining
    when = f"ETA {timedelta(seconds=round(eta))}" if eta is not None else "ETA -"
    return (
        f"{state.description} step {int(state.completed)}/{int(state.total or 0)} "
        f"({state.percentage:.0f}%) {summary} | {when}"
    )


def probe_factors(
    model: SequenceVAE, data: Data, config: Config, device: torch.device
) -> dict[str, float]:
    """Test accuracy of a linear probe from posterior means to each true factor."""
    means = {}
    with torch.no_grad():
        for split in ("train", "test"):
            batches = eval_batches(data.splits[split], config, device)
            # Batches are length-bucketed; put the means back in file order, the labels' order.
            order = torch.cat([b.indices for b in batches])
            batch_means = torch.cat(
                [model.posterior(b.tokens, b.lengths)[0].cpu() for b in batches]
            )
            means[split] = torch.empty_like(batch_means).index_copy_(0, order, batch_means)
    return {
        name: linear_probe_accuracy(
            means["train"], data.factors["train"][name], means["test"], data.factors["test"][name]
        )
        for name in data.factors["train"]
    }


def print_comparisons(
    results: list[dict], data: Data, config: Config, table: Any, console: Console
) -> None:
    """Under the table: what its columns mean, each paired comparison, where the runs are."""
    chance = {
        name: float(torch.bincount(labels).max()) / len(labels)
        for name, labels in sorted((data.factors or {}).get("test", {}).items())
    }
    titles = [str(column.header) for column in table.columns]
    console.print(results_legend(titles, chance), highlight=False)
    by_dropout: dict[str, list[dict]] = {}
    for run in results:
        by_dropout.setdefault(run["dropout"], []).append(run)
    for a, b in (("adversarial", "uniform"), ("adversarial", "none"), ("uniform", "none")):
        if a in by_dropout and b in by_dropout:
            rate_a, rate_b = by_dropout[a][0]["rate"], by_dropout[b][0]["rate"]
            name_a = f"{a} [{rate_a}]" if a != "none" else a
            name_b = f"{b} [{rate_b}]" if b != "none" else b
            differences = paired_differences(
                by_dropout[a], by_dropout[b], ("mutual_information", "kl", "nll_iw")
            )
            console.print(comparison_line(name_a, name_b, differences), highlight=False)
    console.print(
        f"runs in {Path(config.out) / config.preset}/ (one folder per variant and seed); "
        f"tabulate them again with: python recipes/compare.py "
        f"{Path(config.out) / config.preset}/*/",
        highlight=False,
    )


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# --------------------------------------------------------------------------------------------
# Main: every variant and seed, then the table.
# --------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> list[dict]:
    """Train and test every variant and seed, print the table; returns the runs' metrics.

    A user error (a flag, a missing corpus, a bad line, a run folder with other settings) is one
    line ``error: ...`` and exit status 2; a diverged run exits with 1, an interrupted one with
    130, each after one line saying what was kept.
    """
    config = parse_args(argv)
    if config.threads:
        torch.set_num_threads(config.threads)
    # Under torchrun: join the process group; otherwise a one-process context, nothing changes.
    context = init_distributed(config.device)
    console = Console(quiet=not context.is_rank_zero)  # one rank prints
    try:
        return run_all(config, context, console)
    except UserError as error:
        exit_with_error(error)
    except DivergedError as error:
        exit_with_error(error, status=1)
    except InterruptedRunError as stop:
        console.print(f"[yellow]{stop}[/yellow]", highlight=False)
        raise SystemExit(130) from None
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once, nothing more saved
        console.print("[yellow]interrupted[/yellow]")
        raise SystemExit(130) from None
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
    console.print(
        f"vocabulary {len(data.vocab)}; "
        + ", ".join(f"{k} {len(v)} sequences" for k, v in data.splits.items())
    )
    # Every sequence passed its checks when it was loaded (ids from the vocabulary, lengths
    # within --max-length): train without the per-call value checks, which stall a GPU.
    checks_were_on = value_checks_enabled()
    set_value_checks(False)
    try:
        results = []
        for dropout in config.dropout:
            for seed in config.seed:
                results.append(train_run(config, dropout, seed, data, console, context))
    finally:
        set_value_checks(checks_were_on)
    table = results_table(results, title=f"{config.preset}: test results")
    print_table(console, table)
    print_comparisons(results, data, config, table, console)
    console.print(f"total time {time.perf_counter() - started:.0f} s")
    return results


if __name__ == "__main__":
    main()
