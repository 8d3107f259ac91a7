"""What does an adversarial masker learn to drop? A toy task you can read in a minute.

Usage::

    python recipes/toy_masker.py                              # euclidean and sst, ~15 s on CPU
    python recipes/toy_masker.py --relaxations softmax lml --kl-weight 1.0
    python recipes/toy_masker.py --help                       # every flag (derived from Config)

The method, top to bottom:

1. **Task.** A vocabulary of 20 tokens, each with a fixed *cost*. A batch of random token
   sequences is masked, and the "decoder loss" is the total cost of the dropped tokens,
   ``mean_b sum_t mask[b, t] * cost[token[b, t]]``. The decoder side would minimise it.
2. **Adversary.** :class:`advmask.AdversarialMasker`: an LSTM score network gives each position
   a Gaussian score; the ``K = round(rate * n)`` smallest sampled scores are dropped. The mask
   is hard in the forward pass and differentiable through a top-K relaxation backward, behind a
   gradient reversal: minimising ``loss + regularizer`` makes the adversary *maximise* the
   loss, kept near N(0, 1) scores by the KL regulariser (weight ``kl_weight``).
3. **Training.** Adam on the adversary only, fresh random sequences each step.
4. **What it learned.** In eval mode the masker drops the bottom-K of its mean scores; the
   table shows, per token, its cost and how often it is dropped when it appears. A good
   adversary drops the costliest tokens; uniform word dropout drops every token at ``rate``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch
from rich.console import Console
from rich.table import Table

from advmask.maskers import AdversarialMasker, UniformMasker
from advmask.training.cli import parse_config


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    """Every setting of the toy run; flags are generated from the fields."""

    relaxations: tuple[str, ...] = field(
        default=("euclidean", "sst"), metadata={"help": "top-K relaxations to compare"}
    )
    vocab_size: int = field(default=20, metadata={"help": "number of tokens"})
    length: int = field(default=12, metadata={"help": "padded sequence length T"})
    min_length: int = field(default=6, metadata={"help": "shortest sequence"})
    rate: float = field(default=0.3, metadata={"help": "fraction of tokens dropped per row"})
    kl_weight: float = field(default=0.01, metadata={"help": "lambda of the KL regulariser"})
    steps: int = field(default=300, metadata={"help": "training steps per relaxation"})
    batch_size: int = field(default=32, metadata={"help": "sequences per step"})
    lr: float = field(default=1e-2, metadata={"help": "Adam learning rate of the adversary"})
    embedding_dim: int = field(default=16, metadata={"help": "score network embedding size"})
    hidden_size: int = field(default=32, metadata={"help": "score network LSTM size"})
    eval_rows: int = field(default=4096, metadata={"help": "sequences used for the table"})
    seed: int = field(default=0, metadata={"help": "random seed"})


def sample_batch(
    config: Config, rows: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random tokens (B, T) and lengths (B,) in [min_length, T]."""
    tokens = torch.randint(0, config.vocab_size, (rows, config.length), generator=generator)
    lengths = torch.randint(config.min_length, config.length + 1, (rows,), generator=generator)
    return tokens, lengths


def drop_frequency(
    masker: torch.nn.Module, config: Config, cost: torch.Tensor, *, sampled: bool
) -> tuple[torch.Tensor, float]:
    """Per token: how often it is dropped when it is eligible; and overall precision.

    Precision: the fraction of dropped positions that are among their row's K costliest.
    ``sampled``: masks as in training (noise drawn); else the mean scores' bottom-K.
    """
    tokens, lengths = sample_batch(config, config.eval_rows, torch.Generator().manual_seed(99))
    with torch.no_grad():
        if sampled:
            out = masker(tokens, lengths, generator=torch.Generator().manual_seed(100))
        else:
            out = masker.mean_mask(tokens, lengths)
    dropped = out.mask.bool()
    seen = torch.bincount(tokens[out.eligible], minlength=config.vocab_size)
    hits = torch.bincount(tokens[dropped], minlength=config.vocab_size)
    row_cost = torch.where(out.eligible, cost[tokens], -1.0)
    kth = row_cost.sort(1, descending=True).values.gather(1, (out.k - 1).clamp_min(0)[:, None])
    costly = (row_cost >= kth) & out.eligible
    precision = float((dropped & costly).sum() / dropped.sum())
    return hits / seen.clamp_min(1), precision


def main(argv: list[str] | None = None) -> None:
    config = parse_config(Config, argv, description=__doc__.splitlines()[0])
    console = Console(soft_wrap=True)
    console.print(asdict(config))
    torch.manual_seed(config.seed)

    # ----------------------------------------------------------------------------------------
    # 1. Task: a fixed cost per token
    # ----------------------------------------------------------------------------------------
    cost = torch.randperm(config.vocab_size).float() / (config.vocab_size - 1)

    results: dict[str, tuple[torch.Tensor, float]] = {}
    for relaxation in config.relaxations:
        # ------------------------------------------------------------------------------------
        # 2. Adversary
        # ------------------------------------------------------------------------------------
        torch.manual_seed(config.seed)
        masker = AdversarialMasker(
            vocab_size=config.vocab_size,
            rate=config.rate,
            kl_weight=config.kl_weight,
            relaxation=relaxation,
            embedding_dim=config.embedding_dim,
            hidden_size=config.hidden_size,
            padding_idx=None,  # every id is a real token here
        )
        optimiser = torch.optim.Adam(masker.parameters(), lr=config.lr)

        # ------------------------------------------------------------------------------------
        # 3. Training: one loss; the reversal makes the adversary maximise the toy cost
        # ------------------------------------------------------------------------------------
        generator = torch.Generator().manual_seed(config.seed + 1)
        start = time.perf_counter()
        for _ in range(config.steps):
            tokens, lengths = sample_batch(config, config.batch_size, generator)
            out = masker(tokens, lengths, generator=generator)
            decoder_loss = (out.mask * cost[tokens]).sum(1).mean()
            loss = decoder_loss + out.regularizer
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        seconds = time.perf_counter() - start

        # ------------------------------------------------------------------------------------
        # 4. What it learned: the bottom-K of the mean scores, no noise
        # ------------------------------------------------------------------------------------
        results[relaxation] = drop_frequency(masker, config, cost, sampled=False)
        console.print(
            f"[bold]{relaxation}[/]: {config.steps} steps in {seconds:.1f} s, "
            f"precision {results[relaxation][1]:.3f} (1.0 = always the K costliest)"
        )

    results["uniform"] = drop_frequency(UniformMasker(config.rate), config, cost, sampled=True)

    table = Table(title=f"How often each token is dropped (rate {config.rate})")
    table.add_column("token", justify="right")
    table.add_column("cost", justify="right")
    for name in results:
        table.add_column(name, justify="right")
    for token in cost.argsort(descending=True).tolist():
        frequencies = [f"{float(freq[token]):.2f}" for freq, _ in results.values()]
        table.add_row(str(token), f"{float(cost[token]):.2f}", *frequencies)
    table.add_section()
    table.add_row("precision", "", *[f"{precision:.3f}" for _, precision in results.values()])
    console.print(table)


if __name__ == "__main__":
    main()
