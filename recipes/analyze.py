"""Look at trained sequence VAEs: the paper's analyses as commands over run directories.

Usage::

    python recipes/analyze.py RUN saliency                 # which words the adversary drops
    python recipes/analyze.py RUN saliency --sentence "the cat sat on the mat"
    python recipes/analyze.py RUN dropped                  # drop probability by frequency/position
    python recipes/analyze.py RUN interpolate              # decode between two sentences
    python recipes/analyze.py RUN homotopy                 # decode around one sentence
    python recipes/analyze.py RUN sample                   # unconditional samples from the prior
    python recipes/analyze.py RUN pmi                      # next-word PMI vs drop probability
    python recipes/analyze.py lambda-study RUN [RUN ...]   # score statistics during training
    python recipes/analyze.py rate-ablation RUN [RUN ...]  # -ELBO, KL, MI against the rate

``RUN`` is a run directory of ``recipes/seqvae_awd.py`` (``runs/<preset>/<dropout>-seed<s>``).
Results are printed and written under ``RUN/analysis/`` (the runs' common parent
``analysis/`` for the multi-run studies), or ``--out``; ``pmi`` without ``--out`` also writes
``RUN/pmi.json``, which records the epoch and step of the weights it read.
Figures need matplotlib (``pip install -e ".[plot]"``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from advmask.seqvae.analysis import (
    PMISummary,
    decode,
    drop_by_frequency,
    drop_by_position,
    interpolate,
    neighbourhood,
    next_word_pmi,
    posterior_means,
    prior_samples,
    rate_ablation,
    read_score_log,
    saliency_html,
    saliency_text,
    sentence_pmi,
    summarize_pmi,
    token_saliency,
)
from advmask.seqvae.data import Vocabulary, collate, make_batches
from advmask.seqvae.data.corpus import read_lines
from advmask.seqvae.factory import sequence_vae_from_state
from advmask.seqvae.report import load_runs
from advmask.training.checkpoint import atomic_write, load_checkpoint, read_json, save_json
from advmask.training.cli import Parser, UserError, bounded, exit_with_error
from advmask.training.distributed import check_device

SPLITS = ("train", "valid", "test")
RUN_ANALYSES = ("saliency", "dropped", "interpolate", "homotopy", "sample", "pmi")
STUDIES = ("lambda-study", "rate-ablation")


# --------------------------------------------------------------------------------------------
# A run: model, vocabulary and its corpus
# --------------------------------------------------------------------------------------------
class Run:
    """A finished (or at least validated once) run directory, loaded for analysis."""

    def __init__(self, directory: str | os.PathLike[str], device: str = "cpu") -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise UserError(f"run directory {str(directory)!r} does not exist")
        best = self.directory / "best.pt"
        if not best.is_file():
            raise UserError(
                f"run directory {str(directory)!r} has no best.pt: has it finished an epoch?"
            )
        self.device = torch.device(device)
        try:
            # One read: a run still training may replace best.pt between two.
            state = load_checkpoint(best, map_location=self.device)
            self.model, self.spec = sequence_vae_from_state(state)
            # Which weights these are (None: a checkpoint of a version that did not say).
            self.weights = {"epoch": state.get("epoch"), "step": state.get("step")}
            self.finished = (self.directory / "metrics.json").is_file()
            self.vocab = Vocabulary.load(self.directory / "vocab.json")
            self.config: dict[str, Any] = read_json(self.directory / "config.json")
        except (OSError, ValueError) as error:
            raise UserError(f"cannot read the run in {str(directory)!r}: {error}") from error

    def corpus_file(self, split: str) -> Path:
        data_dir = self.config.get("data_dir")
        if data_dir is None:  # the synthetic corpus is written next to the run directories
            data_dir = self.directory.parent / "corpus"
        return Path(data_dir) / f"{split}.txt"

    def encode(self, sentence: str) -> list[int]:
        if self.config.get("tokenizer", "words") != "words":
            raise UserError(
                f"tokenizer {self.config['tokenizer']!r}: only runs on the corpus's own words "
                "can be analysed on text for now"
            )
        words = sentence.split()
        if not words:
            raise UserError(f"sentence {sentence!r} has no words")
        return self.vocab.encode(words)

    def sentences(
        self, split: str, count: int, seed: int, max_words: int | None
    ) -> list[list[int]]:
        """``count`` sentences of at most ``max_words`` words (None: any) from a split, seeded."""
        lines = [
            line
            for line in read_lines(self.corpus_file(split))
            if max_words is None or len(line.split()) <= max_words
        ]
        if not lines:
            raise UserError(f"no sentence of at most {max_words} words in {split}")
        chosen = random.Random(seed).sample(lines, min(count, len(lines)))
        return [self.encode(line) for line in chosen]

    def generator(self, seed: int) -> torch.Generator:
        return torch.Generator(self.device).manual_seed(seed)

    def text(self, ids: Sequence[int]) -> str:
        return " ".join(self.vocab.decode(ids))


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    table = Table(title=title, show_lines=True)
    for column in columns:
        table.add_column(column)
    for row in rows:
        # Text, not markup: corpus text may hold brackets that rich would read as styles.
        table.add_row(*(Text(str(c)) if str(c) else Text("(empty)", style="dim") for c in row))
    return table


def _write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
    return path


# --------------------------------------------------------------------------------------------
# Analyses of one run
# --------------------------------------------------------------------------------------------
def run_saliency(run: Run, args: argparse.Namespace, out: Path, console: Console) -> dict:
    """Per-word drop probabilities of a few sentences (paper Table 2)."""
    if run.spec.dropout == "none":
        raise UserError(
            f"saliency: run {str(run.directory)!r} was trained with dropout 'none'; "
            "it has no masker and drops nothing"
        )
    sequences = (
        [run.encode(s) for s in args.sentence]
        if args.sentence
        else run.sentences(args.split, args.num_sentences, args.seed, args.max_words)
    )
    batch = collate(sequences).to(run.device)
    generator = run.generator(args.seed)
    saliency = token_saliency(
        run.model, batch.tokens, batch.lengths, num_samples=args.samples, generator=generator
    )
    console.rule(escape(f"{run.directory}: P(dropped), [boxed] = one sampled draw"))
    for row in range(len(sequences)):
        console.print(saliency_text(saliency, run.vocab, row))
    rows = []
    for row, sequence in enumerate(sequences):
        probability = saliency.probability[row, 1 : len(sequence) + 1]
        rows.append(
            {
                "words": run.vocab.decode(sequence),
                "probability": [round(float(p), 4) for p in probability],
                "sampled": saliency.sampled[row, 1 : len(sequence) + 1].tolist(),
                "k": int(saliency.k[row]),
            }
        )
    result = {"num_samples": saliency.num_samples, "sentences": rows}
    save_json(result, out / "saliency.json")
    title = f"Adversary saliency: {run.directory.name}"
    page = _write_text(out / "saliency.html", saliency_html(saliency, run.vocab, title=title))
    console.print(f"written {page} and {out / 'saliency.json'}")
    return result


def run_dropped(run: Run, args: argparse.Namespace, out: Path, console: Console) -> dict:
    """Drop probability by frequency rank and by position (paper Figure 4a)."""
    if run.spec.dropout == "none":
        raise UserError(
            f"dropped: run {str(run.directory)!r} was trained with dropout 'none'; it drops nothing"
        )
    lines = read_lines(run.corpus_file(args.split))[: args.num_sentences]
    batches = make_batches([run.encode(line) for line in lines], batch_size=64, shuffle=False)
    generator = run.generator(args.seed)
    saliencies = [
        token_saliency(
            run.model, b.tokens, b.lengths, num_samples=args.samples, generator=generator
        )
        for b in (batch.to(run.device) for batch in batches)
    ]
    profiles = [drop_by_frequency(saliencies), drop_by_position(saliencies, args.max_position)]
    result: dict[str, Any] = {"num_sentences": len(lines), "split": args.split}
    for profile in profiles:
        rows = list(
            zip(
                profile.labels,
                profile.probability.tolist(),
                profile.uniform.tolist(),
                profile.count.tolist(),
                strict=True,
            )
        )
        console.print(
            _table(
                f"mean P(dropped) by {profile.title} ({len(lines)} {args.split} sentences)",
                (profile.title, "adversarial", "uniform, same tokens", "tokens"),
                [(label, f"{p:.3f}", f"{u:.3f}", n) for label, p, u, n in rows],
            )
        )
        result[profile.title] = [
            {"group": label, "probability": p, "uniform": u, "count": n} for label, p, u, n in rows
        ]
    save_json(result, out / "dropped.json")
    from advmask.seqvae.analysis.plots import plot_drop_profiles

    paths = plot_drop_profiles(
        profiles, out / "dropped", title=f"What the adversary drops: {run.directory.name}"
    )
    console.print("written " + ", ".join(str(p) for p in [*paths, out / "dropped.json"]))
    return result


def _decoded_rows(run: Run, walk: Any, sampled: Any) -> list[dict[str, Any]]:
    greedy_texts, sampled_texts = walk.decoded.texts(run.vocab), sampled.decoded.texts(run.vocab)
    rows = []
    for index, (greedy, sample) in enumerate(zip(greedy_texts, sampled_texts, strict=True)):
        row = {"greedy": greedy, "sampled": sample}
        if walk.weights is not None:
            row = {"t": round(float(walk.weights[index]), 4), **row}
        rows.append(row)
    return rows


def run_interpolate(run: Run, args: argparse.Namespace, out: Path, console: Console) -> dict:
    """Decode along the line between two posterior means (paper Table 3)."""
    if args.source and args.target:
        source, target = run.encode(args.source), run.encode(args.target)
    else:
        source, target = run.sentences(args.split, 2, args.seed, args.max_words)
    options = dict(max_length=args.max_length)
    greedy = interpolate(run.model, source, target, args.steps, **options)
    sampled = interpolate(
        run.model,
        source,
        target,
        args.steps,
        sample=True,
        generator=run.generator(args.seed),
        **options,
    )
    rows = _decoded_rows(run, greedy, sampled)
    console.print(
        f"[bold]source[/bold] {escape(run.text(source))}\n"
        f"[bold]target[/bold] {escape(run.text(target))}"
    )
    console.print(_table("interpolation", ("t", "greedy", "sampled"), [r.values() for r in rows]))
    result = {"source": run.text(source), "target": run.text(target), "steps": rows}
    save_json(result, out / "interpolate.json")
    console.print(f"written {out / 'interpolate.json'}")
    return result


def run_homotopy(run: Run, args: argparse.Namespace, out: Path, console: Console) -> dict:
    """Decode codes drawn from one sentence's posterior (paper Table 8)."""
    sentence = (
        run.encode(args.sentence[0])
        if args.sentence
        else run.sentences(args.split, 1, args.seed, args.max_words)[0]
    )
    generator = run.generator(args.seed)
    walk = neighbourhood(
        run.model,
        sentence,
        args.num_samples,
        scale=args.scale,
        max_length=args.max_length,
        generator=generator,
    )
    # The same codes decoded by sampling, so each row is one z read two ways.
    sampled_text = decode(
        run.model, walk.z, max_length=args.max_length, sample=True, generator=generator
    ).texts(run.vocab)
    rows = [
        {"greedy": g, "sampled": s}
        for g, s in zip(walk.decoded.texts(run.vocab), sampled_text, strict=True)
    ]
    mean_text = decode(
        run.model, posterior_means(run.model, [sentence]), max_length=args.max_length
    )
    console.print(f"[bold]sentence[/bold] {escape(run.text(sentence))}")
    console.print(f"[bold]posterior mean[/bold] {escape(mean_text.texts(run.vocab)[0])}")
    console.print(
        _table(
            f"z ~ mean + {args.scale:g} * std * eps",
            ("greedy", "sampled"),
            [r.values() for r in rows],
        )
    )
    result = {
        "sentence": run.text(sentence),
        "posterior_mean": mean_text.texts(run.vocab)[0],
        "scale": args.scale,
        "samples": rows,
    }
    save_json(result, out / "homotopy.json")
    console.print(f"written {out / 'homotopy.json'}")
    return result


def run_sample(run: Run, args: argparse.Namespace, out: Path, console: Console) -> dict:
    """Unconditional samples: z ~ N(0, I), decoded greedily and by sampling (paper Table 7)."""
    generator = run.generator(args.seed)
    walk = prior_samples(
        run.model, args.num_samples, max_length=args.max_length, sample=False, generator=generator
    )
    sampled = decode(
        run.model, walk.z, max_length=args.max_length, sample=True, generator=generator
    )
    rows = [
        {"greedy": g, "sampled": s}
        for g, s in zip(walk.decoded.texts(run.vocab), sampled.texts(run.vocab), strict=True)
    ]
    console.print(_table("z ~ N(0, I)", ("greedy", "sampled"), [r.values() for r in rows]))
    result = {"samples": rows}
    save_json(result, out / "samples.json")
    console.print(f"written {out / 'samples.json'}")
    return result


PMI_DEFINITION = (
    "PMI_i = log p(x_{i+1} | x_<=i, z) - log p(x_{i+1} | x_<=i with x_i dropped as in "
    "training, z), nats, model in eval mode; the next word only (dropping x_i also changes "
    "the later predictions, which are not counted)"
)
SENTENCE_PMI_DEFINITION = (
    "PMI>_i = log p(x_{>i} | x, z) - log p(x_{>i} | x with x_i dropped as in training, z), "
    "nats, model in eval mode: every later word and EOS, which the adversary's loss counts; "
    "its excess over PMI_i is what the decoder carries from x_i beyond the next word"
)


def run_pmi(run: Run, args: argparse.Namespace, out: Path, console: Console) -> dict:
    """Next-word PMI of each decoder input against its drop probability (paper Eq. 5)."""
    dropout = run.spec.dropout
    sequences = run.sentences(args.split, args.num_sentences, args.seed, max_words=None)
    generator = run.generator(args.seed)
    pmi, whole, probability, sentence = [], [], [], []
    for batch in make_batches(sequences, batch_size=64, shuffle=False):
        tokens, lengths = batch.tokens.to(run.device), batch.lengths.to(run.device)
        with torch.no_grad():
            z, logvar = run.model.posterior(tokens, lengths)
            if args.z == "sample":
                noise = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
                z = z + torch.exp(0.5 * logvar) * noise
        values = next_word_pmi(run.model, tokens, lengths, z)
        droppable = ~values.isnan()
        pmi.append(values[droppable].cpu())
        whole.append(sentence_pmi(run.model, tokens, lengths, z)[droppable].cpu())
        # Sentence ids for the bootstrap, which resamples whole sentences.
        sentence.append(batch.indices.unsqueeze(1).expand(values.shape)[droppable.cpu()])
        if dropout != "none":
            saliency = token_saliency(
                run.model, tokens, lengths, num_samples=args.samples, generator=generator
            )
            probability.append(saliency.probability[droppable].cpu())
    pooled_pmi = torch.cat(pmi)
    pooled_probability = torch.cat(probability) if probability else None
    summarize = partial(
        summarize_pmi,
        drop_probability=pooled_probability,
        groups=torch.cat(sentence).cpu(),
        correlate=dropout == "adversarial",
        num_resamples=args.resamples,
    )
    summary = summarize(pooled_pmi, generator=torch.Generator().manual_seed(args.seed))
    whole_summary = summarize(torch.cat(whole), generator=torch.Generator().manual_seed(args.seed))
    source = {
        "adversarial": f"the adversary's, Monte Carlo over {args.samples} score samples",
        "uniform": "uniform dropout: exactly K / n in each sentence (no sampling)",
        "none": "none: the run was trained without word dropout",
    }[dropout]
    result = {
        "run": str(run.directory),
        "weights": {**run.weights, "run_finished": run.finished},  # best.pt when analysed
        "split": args.split,
        "dropout": dropout,
        "rate": run.spec.rate,
        "fill": run.spec.fill,
        "z": "posterior mean" if args.z == "mean" else "posterior sample",
        "pmi": PMI_DEFINITION,
        "drop_probability": source,
        "num_samples": args.samples if dropout == "adversarial" else 0,
        **_correlation_fields(summary),
        "ci_level": 0.95,
        "num_resamples": args.resamples,
        "seed": args.seed,
        "num_positions": summary.num_positions,
        "num_sequences": summary.num_sequences,
        "by_drop_probability": [dataclasses.asdict(b) for b in summary.bins],
        "sentence": {"pmi": SENTENCE_PMI_DEFINITION, **_correlation_fields(whole_summary)},
    }
    if dropout == "uniform":
        result["note"] = (
            "uniform dropout drops K / n of each sentence whatever its words: the correlation "
            "is undefined (None)"
        )
    elif dropout == "none":
        result["note"] = (
            "no word dropout: no drop probability, so no correlation and no dropped/kept "
            "means (None)"
        )
    _print_pmi(run, result, summary, whole_summary, console)
    paths = [save_json(result, out / "pmi.json")]
    if args.out is None:  # and beside the run's other results, where compare-style tools look
        paths.append(save_json(result, run.directory / "pmi.json"))
    from advmask.seqvae.analysis.plots import plot_pmi

    try:
        paths += plot_pmi(
            pooled_pmi,
            pooled_probability,
            summary,
            out / "pmi",
            title=f"Next-word PMI vs P(dropped): {run.directory.name}",
        )
    except ImportError as error:
        console.print(f"[yellow]no figure[/yellow]: {escape(str(error))}")
    console.print("written " + ", ".join(map(str, paths)))
    return result


def _correlation_fields(summary: PMISummary) -> dict[str, Any]:
    """What pmi.json says of one kind of PMI: its correlation with P(dropped) and its means."""
    return {
        "spearman": summary.spearman,
        "spearman_ci": list(summary.spearman_ci) if summary.spearman_ci else None,
        "mean_pmi_dropped": summary.mean_pmi_dropped,
        "mean_pmi_kept": summary.mean_pmi_kept,
        "mean_pmi_uniform": summary.mean_pmi_uniform,
    }


def _print_pmi(
    run: Run, result: dict, summary: PMISummary, whole: PMISummary, console: Console
) -> None:
    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.4g}"

    def interval(ci: tuple[float, float] | None) -> str:
        return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "-"

    described = (
        ("spearman", number, "rank correlation with P(dropped)"),
        ("spearman_ci", interval, "bootstrap 95%, sentences"),
        ("mean_pmi_dropped", number, "E[PMI | dropped] (nats)"),
        ("mean_pmi_kept", number, "E[PMI | kept] (nats)"),
        ("mean_pmi_uniform", number, "plain mean: uniform dropout"),
    )
    rows = [
        (key, show(getattr(summary, key)), show(getattr(whole, key)), what)
        for key, show, what in described
    ]
    rows += [
        ("num_positions", summary.num_positions, "", "droppable inputs pooled"),
        ("num_sequences", summary.num_sequences, "", f"{result['split']} sentences"),
    ]
    console.rule(escape(f"{run.directory}: PMI of the decoder inputs, z = {result['z']}"))
    if not run.finished:
        weights = result["weights"]
        console.print(
            escape(
                f"note: the run has not finished: these are its best weights so far "
                f"(epoch {weights['epoch']}, step {weights['step']})"
            )
        )
    console.print(escape(f"P(dropped): {result['drop_probability']}"))
    columns = ("key", "next word", 'rest of sentence ("sentence")', "")
    console.print(_table("PMI of the decoder inputs", columns, rows))
    if summary.bins:
        console.print(
            _table(
                "mean PMI by P(dropped)",
                ("P(dropped)", "mean PMI", "s.e.", "inputs"),
                [
                    (
                        f"[{b.low:.1f}, {b.high:.1f})",
                        number(b.mean_pmi),
                        number(b.standard_error),
                        b.count,
                    )
                    for b in summary.bins
                ],
            )
        )
    if "note" in result:
        console.print(escape(f"note: {result['note']}"))


ANALYSES = {
    "saliency": run_saliency,
    "dropped": run_dropped,
    "interpolate": run_interpolate,
    "homotopy": run_homotopy,
    "sample": run_sample,
    "pmi": run_pmi,
}


# --------------------------------------------------------------------------------------------
# Studies over several runs
# --------------------------------------------------------------------------------------------
def lambda_study(run_dirs: list[Path], out: Path, console: Console) -> dict:
    """The adversary's score statistics during training, one line per run (paper Figure 3)."""
    logs = {}
    for run_dir in run_dirs:
        if not run_dir.is_dir():
            raise UserError(f"run directory {str(run_dir)!r} does not exist")
        try:
            config = read_json(run_dir / "config.json")
            label = f"lambda = {config['model']['kl_weight']:g} ({run_dir.name})"
            logs[label] = read_score_log(run_dir)
        except (OSError, ValueError, KeyError) as error:
            raise UserError(str(error)) from None
    rows = [
        (
            label,
            len(columns["step"]),
            f"{columns['score_l1'][-1]:.3g}",
            f"{columns['score_std'][-1]:.3g}",
            f"{columns['adversary_grad_norm'][-1]:.3g}",
        )
        for label, columns in logs.items()
        if columns["step"]
    ]
    console.print(
        _table(
            "score statistics (last logged row)", ("run", "rows", "l1", "std", "grad norm"), rows
        )
    )
    from advmask.seqvae.analysis.plots import plot_lambda_study

    paths = plot_lambda_study(logs, out / "lambda_study")
    console.print("written " + ", ".join(map(str, paths)))
    return logs


def rate_ablation_study(run_dirs: list[Path], out: Path, console: Console, split: str) -> list:
    """-ELBO, KL and MI against the rate, uniform vs adversarial (paper Figure 2)."""
    try:
        runs = load_runs(run_dirs)
        points = rate_ablation(runs, split=split)
    except (OSError, ValueError) as error:
        raise UserError(f"rate-ablation: {error}") from None
    console.print(
        _table(
            f"rate ablation ({split}; mean (std) over seeds)",
            ("dropout", "rate", "seeds", "-ELBO", "KL", "MI"),
            [
                (
                    p.dropout,
                    f"{p.rate:g}",
                    len(p.seeds),
                    *(str(p.metrics.get(k, "-")) for k in ("neg_elbo", "kl", "mutual_information")),
                )
                for p in points
            ],
        )
    )
    save_json(
        [
            {
                "dropout": p.dropout,
                "rate": p.rate,
                "seeds": list(p.seeds),
                **{k: {"mean": s.mean, "std": s.std} for k, s in p.metrics.items()},
            }
            for p in points
        ],
        out / "rate_ablation.json",
    )
    from advmask.seqvae.analysis.plots import plot_rate_ablation

    paths = plot_rate_ablation(points, out / "rate_ablation")
    console.print("written " + ", ".join(map(str, [*paths, out / "rate_ablation.json"])))
    return points


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def run_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="analyze.py",
        description=__doc__.splitlines()[0],
        usage=(
            "%(prog)s RUN ANALYSIS [...]\n"
            f"       %(prog)s {{{','.join(STUDIES)}}} RUN [RUN ...] [--out OUT]"
        ),
        epilog=(
            "studies over several runs (name them first): "
            "lambda-study RUN [RUN ...] (the adversary's score statistics during training, "
            "paper Figure 3); rate-ablation RUN [RUN ...] (-ELBO, KL and MI against the rate, "
            "paper Figure 2); see analyze.py STUDY --help"
        ),
    )
    parser.add_argument("run_dir", help="run directory of recipes/seqvae_awd.py")
    parser.add_argument("analysis", help=f"one of {', '.join(RUN_ANALYSES)}")
    parser.add_argument("--out", help="output folder (default: RUN/analysis)")
    parser.add_argument("--sentence", action="append", help="a sentence to analyse (repeatable)")
    parser.add_argument("--source", help="interpolate: first sentence")
    parser.add_argument("--target", help="interpolate: second sentence")
    parser.add_argument("--split", default="test", choices=SPLITS, help="split to draw from")
    parser.add_argument(
        "--num-sentences",
        "--max-sequences",
        type=bounded(int, minimum=1),
        default=None,
        help="sentences to analyse (default 5; dropped 2000; pmi 500)",
    )
    positive = bounded(int, minimum=1)
    parser.add_argument("--max-words", type=positive, default=25, help="longest sentence to draw")
    parser.add_argument(
        "--samples", type=positive, default=1000, help="Monte-Carlo score samples (saliency, pmi)"
    )
    parser.add_argument("--max-position", type=positive, default=20, help="dropped: last position")
    parser.add_argument(
        "--steps", type=bounded(int, minimum=2), default=5, help="interpolate: points on the line"
    )
    parser.add_argument("--num-samples", type=positive, default=8, help="homotopy/sample: codes")
    parser.add_argument(
        "--scale", type=bounded(float, exclusive_minimum=0.0), default=1.0,
        help="homotopy: noise scale",
    )  # fmt: skip
    parser.add_argument("--max-length", type=positive, default=40, help="most words per decoding")
    parser.add_argument(
        "--z",
        choices=("mean", "sample"),
        default="mean",
        help="pmi: decode with the posterior mean (default) or one posterior sample",
    )
    parser.add_argument("--resamples", type=positive, default=1000, help="pmi: bootstrap resamples")
    parser.add_argument("--seed", type=bounded(int, minimum=0), default=0)
    parser.add_argument(
        "--device", type=_device, default="cpu", help="cpu, cuda, cuda:N, mps or auto"
    )
    parser.add_argument("--threads", type=positive, default=None, help="torch CPU threads")
    return parser


def _device(text: str) -> str:
    try:
        check_device(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return text


def study_parser(name: str) -> argparse.ArgumentParser:
    parser = Parser(prog=f"analyze.py {name}", description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="run directories")
    parser.add_argument("--out", help="output folder (default: the runs' common parent/analysis)")
    parser.add_argument("--split", default="test", choices=("test", "valid"))
    parser.add_argument(
        "--threads", type=bounded(int, minimum=1), default=None, help="torch CPU threads"
    )
    return parser


def main(argv: list[str] | None = None, console: Console | None = None) -> Any:
    """Run one analysis or study; a user error is one line ``error: ...`` and exit status 2."""
    try:
        return _main(argv, console)
    except UserError as error:
        exit_with_error(error)


def _main(argv: list[str] | None, console: Console | None) -> Any:
    words = list(argv) if argv is not None else sys.argv[1:]
    console = console or Console(soft_wrap=True)
    if words and words[0] in STUDIES:
        args = study_parser(words[0]).parse_args(words[1:])
        if args.threads:
            torch.set_num_threads(args.threads)
        parents = [str(p.resolve().parent) for p in args.run_dirs]
        out = Path(args.out) if args.out else Path(os.path.commonpath(parents)) / "analysis"
        if words[0] == "lambda-study":
            return lambda_study(args.run_dirs, out, console)
        return rate_ablation_study(args.run_dirs, out, console, args.split)
    args = run_parser().parse_args(words)
    if args.analysis not in ANALYSES:
        raise UserError(
            f"analysis must be one of {', '.join(RUN_ANALYSES)} (or, before the run "
            f"directories, {', '.join(STUDIES)}), got {args.analysis!r}"
        )
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.num_sentences is None:
        args.num_sentences = {"dropped": 2000, "pmi": 500}.get(args.analysis, 5)
    run = Run(args.run_dir, device=args.device)
    out = Path(args.out) if args.out else run.directory / "analysis"
    return ANALYSES[args.analysis](run, args, out, console)


if __name__ == "__main__":
    main()
