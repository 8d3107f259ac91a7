"""Look at trained sequence VAEs: the paper's analyses as commands over run directories.

Usage::

    python recipes/analyze.py saliency RUN                 # which words the adversary drops
    python recipes/analyze.py saliency RUN --sentence "the cat sat on the mat"
    python recipes/analyze.py dropped RUN                  # drop probability by frequency/position
    python recipes/analyze.py interpolate RUN              # decode between two sentences
    python recipes/analyze.py homotopy RUN                 # decode around one sentence
    python recipes/analyze.py sample RUN                   # unconditional samples from the prior
    python recipes/analyze.py pmi RUN                      # next-word PMI vs drop probability
    python recipes/analyze.py lambda-study RUN [RUN ...]   # score statistics during training
    python recipes/analyze.py rate-ablation RUN [RUN ...]  # -ELBO, KL, MI against the rate

``RUN`` is a run directory of ``recipes/seqvae_awd.py`` (``runs/<preset>/<dropout>-seed<s>``);
the older order ``analyze.py RUN ANALYSIS`` is accepted too. ``analyze.py ANALYSIS --help``
lists an analysis's options. Results are printed and written under ``RUN/analysis/`` (the
runs' common parent ``analysis/`` for the multi-run studies), or ``--out``; ``pmi`` without
``--out`` also writes ``RUN/pmi.json``, which records the epoch and step of the weights it read.
Figures need matplotlib (``pip install -e ".[plot]"``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape

from advmask.seqvae import analysis
from advmask.seqvae.analysis import pmi_report
from advmask.seqvae.analysis.render import text_table
from advmask.seqvae.analysis.studies import ablation_table, read_score_logs, score_log_table
from advmask.seqvae.analysis.trained_run import TrainedRun
from advmask.seqvae.data import collate, make_batches
from advmask.seqvae.data.corpus import read_lines
from advmask.seqvae.report import load_runs
from advmask.training.checkpoint import atomic_write, save_json
from advmask.training.cli import (
    Parser,
    UserError,
    bounded,
    default_folder,
    device_argument,
    exit_with_error,
    writable_folder,
)

SPLITS = ("train", "valid", "test")


def _refuse_no_dropout(run: TrainedRun, command: str) -> None:
    if run.spec.dropout == "none":
        raise UserError(
            f"{command}: run {str(run.directory)!r} was trained with dropout 'none'; "
            "it has no masker and drops nothing"
        )


# --------------------------------------------------------------------------------------------
# Analyses of one run
# --------------------------------------------------------------------------------------------
def run_saliency(run: TrainedRun, args: argparse.Namespace, out: Path, console: Console) -> dict:
    """Per-word drop probabilities of a few sentences (paper Table 2)."""
    _refuse_no_dropout(run, "saliency")
    sequences = (
        [run.encode(s) for s in args.sentence]
        if args.sentence
        else run.sentences(args.split, args.num_sentences, args.seed, args.max_words)
    )
    batch = collate(sequences).to(run.device)
    generator = run.generator(args.seed)
    saliency = analysis.token_saliency(
        run.model, batch.tokens, batch.lengths, num_samples=args.num_samples, generator=generator
    )
    console.rule(escape(f"{run.directory}: P(dropped), [boxed] = one sampled draw"))
    for row in range(len(sequences)):
        console.print(analysis.saliency_text(saliency, run.vocab, row))
    result = {"num_samples": saliency.num_samples, "sentences": saliency.records(run.vocab)}
    save_json(result, out / "saliency.json")
    html = analysis.saliency_html(saliency, run.vocab, f"Adversary saliency: {run.directory.name}")
    page = atomic_write(out / "saliency.html", lambda file: file.write(html.encode("utf-8")))
    console.print(f"written {page} and {out / 'saliency.json'}")
    return result


def run_dropped(run: TrainedRun, args: argparse.Namespace, out: Path, console: Console) -> dict:
    """Drop probability by frequency rank and by position (paper Figure 4a)."""
    _refuse_no_dropout(run, "dropped")
    lines = read_lines(run.corpus_file(args.split))[: args.num_sentences]
    batches = make_batches([run.encode(line) for line in lines], batch_size=64, shuffle=False)
    generator = run.generator(args.seed)
    saliencies = [
        analysis.token_saliency(
            run.model, b.tokens, b.lengths, num_samples=args.num_samples, generator=generator
        )
        for b in (batch.to(run.device) for batch in batches)
    ]
    profiles = [
        analysis.drop_by_frequency(saliencies),
        analysis.drop_by_position(saliencies, args.max_position),
    ]
    result: dict[str, Any] = {"num_sentences": len(lines), "split": args.split}
    for profile in profiles:
        records = result[profile.title] = profile.records()
        console.print(
            text_table(
                f"mean P(dropped) by {profile.title} ({len(lines)} {args.split} sentences)",
                (profile.title, "adversarial", "uniform, same tokens", "tokens"),
                [
                    (r["group"], f"{r['probability']:.3f}", f"{r['uniform']:.3f}", r["count"])
                    for r in records
                ],
            )
        )
    save_json(result, out / "dropped.json")
    from advmask.seqvae.analysis.plots import plot_drop_profiles

    paths = plot_drop_profiles(
        profiles, out / "dropped", title=f"What the adversary drops: {run.directory.name}"
    )
    console.print("written " + ", ".join(str(p) for p in [*paths, out / "dropped.json"]))
    return result


def _decoded_rows(greedy: list[str], sampled: list[str], weights: Any = None) -> list[dict]:
    """One row per code: its greedy and its sampled text, after its ``t`` on a line."""
    rows = [{"greedy": g, "sampled": s} for g, s in zip(greedy, sampled, strict=True)]
    if weights is None:
        return rows
    return [{"t": round(float(t), 4), **row} for t, row in zip(weights, rows, strict=True)]


def run_interpolate(run: TrainedRun, args: argparse.Namespace, out: Path, console: Console) -> dict:
    """Decode along the line between two posterior means (paper Table 3)."""
    if args.source and args.target:
        source, target = run.encode(args.source), run.encode(args.target)
    else:
        source, target = run.sentences(args.split, 2, args.seed, args.max_words)
    walk = partial(
        analysis.interpolate, run.model, source, target, args.steps, max_length=args.max_length
    )
    greedy, sampled = walk(), walk(sample=True, generator=run.generator(args.seed))
    texts = (greedy.decoded.texts(run.vocab), sampled.decoded.texts(run.vocab))
    rows = _decoded_rows(*texts, greedy.weights)
    console.print(
        f"[bold]source[/bold] {escape(run.text(source))}\n"
        f"[bold]target[/bold] {escape(run.text(target))}"
    )
    console.print(
        text_table("interpolation", ("t", "greedy", "sampled"), [r.values() for r in rows])
    )
    result = {"source": run.text(source), "target": run.text(target), "steps": rows}
    save_json(result, out / "interpolate.json")
    console.print(f"written {out / 'interpolate.json'}")
    return result


def run_homotopy(run: TrainedRun, args: argparse.Namespace, out: Path, console: Console) -> dict:
    """Decode codes drawn from one sentence's posterior (paper Table 8)."""
    sentence = (
        run.encode(args.sentence)
        if args.sentence
        else run.sentences(args.split, 1, args.seed, args.max_words)[0]
    )
    generator = run.generator(args.seed)
    walk = analysis.neighbourhood(
        run.model,
        sentence,
        args.num_samples,
        scale=args.scale,
        max_length=args.max_length,
        generator=generator,
    )
    # The same codes decoded by sampling, so each row is one z read two ways.
    sampled_text = analysis.decode(
        run.model, walk.z, max_length=args.max_length, sample=True, generator=generator
    ).texts(run.vocab)
    rows = _decoded_rows(walk.decoded.texts(run.vocab), sampled_text)
    mean = analysis.posterior_means(run.model, [sentence])
    mean_text = analysis.decode(run.model, mean, max_length=args.max_length).texts(run.vocab)[0]
    console.print(f"[bold]sentence[/bold] {escape(run.text(sentence))}")
    console.print(f"[bold]posterior mean[/bold] {escape(mean_text)}")
    console.print(
        text_table(
            f"z ~ mean + {args.scale:g} * std * eps",
            ("greedy", "sampled"),
            [r.values() for r in rows],
        )
    )
    result = {
        "sentence": run.text(sentence),
        "posterior_mean": mean_text,
        "scale": args.scale,
        "samples": rows,
    }
    save_json(result, out / "homotopy.json")
    console.print(f"written {out / 'homotopy.json'}")
    return result


def run_sample(run: TrainedRun, args: argparse.Namespace, out: Path, console: Console) -> dict:
    """Unconditional samples: z ~ N(0, I), decoded greedily and by sampling (paper Table 7)."""
    generator = run.generator(args.seed)
    walk = analysis.prior_samples(
        run.model, args.num_samples, max_length=args.max_length, sample=False, generator=generator
    )
    sampled = analysis.decode(
        run.model, walk.z, max_length=args.max_length, sample=True, generator=generator
    )
    rows = _decoded_rows(walk.decoded.texts(run.vocab), sampled.texts(run.vocab))
    console.print(text_table("z ~ N(0, I)", ("greedy", "sampled"), [r.values() for r in rows]))
    result = {"samples": rows}
    save_json(result, out / "samples.json")
    console.print(f"written {out / 'samples.json'}")
    return result


def run_pmi(run: TrainedRun, args: argparse.Namespace, out: Path, console: Console) -> dict:
    """Next-word and sentence PMI of the decoder inputs against P(dropped) (paper Eq. 5)."""
    dropout = run.spec.dropout
    sequences = run.sentences(args.split, args.num_sentences, args.seed, max_words=None)
    pooled = pmi_report.pool_pmi(
        run.model,
        sequences,
        sample_z=args.z == "sample",
        num_samples=args.num_samples,
        generator=run.generator(args.seed),
        device=run.device,
    )
    summary, whole = pooled.summarize(
        correlate=dropout == "adversarial", num_resamples=args.num_resamples, seed=args.seed
    )
    source = pmi_report.drop_probability_source(dropout, args.num_samples)
    result = {
        "run": str(run.directory),
        "weights": {**run.weights, "run_finished": run.finished},  # best.pt when analysed
        "split": args.split,
        "dropout": dropout,
        "rate": run.spec.rate,
        "fill": run.spec.fill,
        "z": "posterior mean" if args.z == "mean" else "posterior sample",
        "pmi": pmi_report.PMI_DEFINITION,
        "drop_probability": source,
        "num_samples": args.num_samples if dropout == "adversarial" else 0,
        **pmi_report.correlation_fields(summary),
        "ci_level": 0.95,
        "num_resamples": args.num_resamples,
        "seed": args.seed,
        "num_positions": summary.num_positions,
        "num_sequences": summary.num_sequences,
        "by_drop_probability": [dataclasses.asdict(b) for b in summary.bins],
        "sentence": {
            "pmi": pmi_report.SENTENCE_PMI_DEFINITION,
            **pmi_report.correlation_fields(whole),
        },
        **({"note": pmi_report.PMI_NOTES[dropout]} if dropout in pmi_report.PMI_NOTES else {}),
    }
    console.rule(escape(f"{run.directory}: PMI of the decoder inputs, z = {result['z']}"))
    if not run.finished:
        console.print(escape(run.unfinished_note()))
    console.print(escape(f"P(dropped): {source}"))
    for table in pmi_report.pmi_tables(summary, whole, args.split):
        console.print(table)
    if "note" in result:
        console.print(escape(f"note: {result['note']}"))
    paths = [save_json(result, out / "pmi.json")]
    if args.out is None:  # and beside the run's other results, where compare-style tools look
        paths.append(save_json(result, run.directory / "pmi.json"))
    from advmask.seqvae.analysis.plots import plot_pmi

    try:
        paths += plot_pmi(
            pooled.next_word,
            pooled.drop_probability,
            summary,
            out / "pmi",
            quantity="next-word PMI",
            title=f"Next-word PMI vs P(dropped): {run.directory.name}",
        )
    except ImportError as error:
        console.print(f"[yellow]no figure[/yellow]: {escape(str(error))}")
    console.print("written " + ", ".join(map(str, paths)))
    return result


# --------------------------------------------------------------------------------------------
# Studies over several runs
# --------------------------------------------------------------------------------------------
def lambda_study(args: argparse.Namespace, out: Path, console: Console) -> dict:
    """The adversary's score statistics during training, one line per run (paper Figure 3)."""
    try:
        logs = read_score_logs(args.run_dirs)
    except (OSError, ValueError) as error:
        raise UserError(str(error)) from None
    console.print(score_log_table(logs))
    from advmask.seqvae.analysis.plots import plot_lambda_study

    paths = plot_lambda_study(logs, out / "lambda_study")
    console.print("written " + ", ".join(map(str, paths)))
    return logs


def rate_ablation_study(args: argparse.Namespace, out: Path, console: Console) -> list:
    """-ELBO, KL and MI against the rate, uniform vs adversarial (paper Figure 2)."""
    try:
        points = analysis.rate_ablation(load_runs(args.run_dirs), split=args.split)
    except (OSError, ValueError) as error:
        raise UserError(f"rate-ablation: {error}") from None
    console.print(ablation_table(points, args.split))
    save_json([p.record() for p in points], out / "rate_ablation.json")
    from advmask.seqvae.analysis.plots import plot_rate_ablation

    paths = plot_rate_ablation(points, out / "rate_ablation")
    console.print("written " + ", ".join(map(str, [*paths, out / "rate_ablation.json"])))
    return points


# --------------------------------------------------------------------------------------------
# Command line: one subcommand per analysis, each with its own flags
# --------------------------------------------------------------------------------------------
POSITIVE = bounded(int, minimum=1)
SCORE_SAMPLES = "Monte-Carlo draws of the adversary's scores per sentence"
FLAGS: dict[str, dict[str, Any]] = {
    "--split": {"default": "test", "choices": SPLITS, "help": "split to draw sentences from"},
    "--num-sentences": {"type": POSITIVE, "help": "sentences to analyse"},
    "--max-words": {"type": POSITIVE, "default": 25, "help": "longest sentence drawn"},
    "--num-samples": {"type": POSITIVE},
    "--max-length": {"type": POSITIVE, "default": 40, "help": "most words per decoding"},
    "--sentence": {"help": "the sentence (default: one drawn from the split)"},
    "--source": {"help": "first sentence (default: drawn from the split)"},
    "--target": {"help": "second sentence (default: drawn from the split)"},
}
"""What a flag is wherever it appears; :data:`COMMANDS` adds each command's defaults."""

COMMANDS: dict[str, tuple[Callable[..., dict], dict[str, dict[str, Any]]]] = {
    "saliency": (
        run_saliency,
        {
            "--split": {},
            "--num-sentences": {"default": 5},
            "--max-words": {},
            "--num-samples": {"default": 1000, "help": SCORE_SAMPLES},
            "--sentence": {"action": "append", "help": "a sentence to analyse (repeatable)"},
        },
    ),
    "dropped": (
        run_dropped,
        {
            "--split": {},
            "--num-sentences": {"default": 2000, "help": "first sentences of the split"},
            "--num-samples": {"default": 1000, "help": SCORE_SAMPLES},
            "--max-position": {"type": POSITIVE, "default": 20, "help": "last position shown"},
        },
    ),
    "interpolate": (
        run_interpolate,
        {
            **{flag: {} for flag in ("--split", "--max-words", "--source", "--target")},
            "--steps": {"type": bounded(int, minimum=2), "default": 5, "help": "points"},
            "--max-length": {},
        },
    ),
    "homotopy": (
        run_homotopy,
        {
            **{flag: {} for flag in ("--split", "--max-words", "--sentence")},
            "--num-samples": {"default": 8, "help": "codes drawn"},
            "--scale": {
                "type": bounded(float, exclusive_minimum=0.0),
                "default": 1.0,
                "help": "z = mean + scale * std * eps",
            },
            "--max-length": {},
        },
    ),
    "sample": (
        run_sample,
        {"--num-samples": {"default": 8, "help": "codes drawn"}, "--max-length": {}},
    ),
    "pmi": (
        run_pmi,
        {
            "--split": {},
            "--num-sentences": {"default": 500},
            "--num-samples": {"default": 1000, "help": SCORE_SAMPLES},
            "--z": {
                "choices": ("mean", "sample"),
                "default": "mean",
                "help": "decode with the posterior mean or one posterior sample",
            },
            "--num-resamples": {"type": POSITIVE, "default": 1000, "help": "bootstrap resamples"},
        },
    ),
}
"""Each analysis of one run: its function (whose docstring is its help) and its flags."""

STUDIES: dict[str, Callable[..., Any]] = {
    "lambda-study": lambda_study,
    "rate-ablation": rate_ablation_study,
}
"""Each study over several runs and its function (whose docstring is its help)."""

RENAMED = {  # old flag -> (its name now, the commands where it meant that)
    "--samples": ("--num-samples", ("saliency", "dropped", "pmi")),
    "--max-sequences": ("--num-sentences", ("saliency", "dropped", "pmi")),
    "--resamples": ("--num-resamples", ("pmi",)),
}
"""Flags of earlier versions -> their names now (refused with a line naming the new one)."""


def build_parser() -> argparse.ArgumentParser:
    """``analyze.py ANALYSIS RUN [...]``: one subparser per analysis and study."""
    epilog = "analyze.py ANALYSIS --help lists its flags; RUN ANALYSIS (the old order) works too"
    parser = Parser(prog="analyze.py", description=__doc__.splitlines()[0], epilog=epilog)
    commands = parser.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)
    for name, (function, flags) in COMMANDS.items():
        sub = _subcommand(commands, name, function, default_out="RUN/analysis")
        sub.add_argument("run_dir", metavar="RUN", help="run directory of recipes/seqvae_awd.py")
        for flag, options in flags.items():
            sub.add_argument(flag, **{**FLAGS.get(flag, {}), **options})
        sub.add_argument(
            "--seed", type=bounded(int, minimum=0), default=0, help="of every random draw"
        )
        sub.add_argument(
            "--device", type=device_argument, default="cpu", help="cpu, cuda[:N], mps, auto"
        )
    for name, study in STUDIES.items():
        sub = _subcommand(commands, name, study, default_out="the runs' common parent/analysis")
        sub.add_argument("run_dirs", metavar="RUN", nargs="+", type=Path, help="run directories")
        if name == "rate-ablation":
            sub.add_argument("--split", default="test", choices=("test", "valid"))
    return parser


def _subcommand(commands: Any, name: str, function: Callable, default_out: str) -> Parser:
    """The subparser of one analysis or study, with the flags every one has."""
    about = function.__doc__.splitlines()[0]
    sub = commands.add_parser(name, help=about, description=about)
    sub.add_argument("--out", type=writable_folder, help=f"output folder (default: {default_out})")
    sub.add_argument("--threads", type=POSITIVE, default=None, help="torch CPU threads")
    return sub


def main(argv: list[str] | None = None, console: Console | None = None) -> Any:
    """Run one analysis or study; a user error is one line ``error: ...`` and exit status 2."""
    try:
        return _main(argv, console)
    except UserError as error:
        exit_with_error(error)
    except OSError as error:  # writing the results: a full disk, a folder that went away
        exit_with_error(f"{error.filename}: {error.strerror}" if error.filename else error)


def _in_order(words: list[str]) -> list[str]:
    """``ANALYSIS RUN ...``, also from ``RUN ANALYSIS ...`` (the order of earlier versions);
    a renamed flag of the analysis is refused naming its new name."""
    if words and words[0] not in (*COMMANDS, *STUDIES) and not words[0].startswith("-"):
        if len(words) > 1 and words[1] in COMMANDS:
            words = [words[1], words[0], *words[2:]]
        elif Path(words[0]).is_dir():
            raise UserError(
                f"analysis must be one of {', '.join(COMMANDS)} (analyze.py ANALYSIS RUN) or "
                f"{', '.join(STUDIES)} (analyze.py STUDY RUN [RUN ...]), got "
                f"{words[1] if len(words) > 1 else 'none'!r}"
            )
    for word in words:
        new, commands = RENAMED.get(word.split("=")[0], (None, ()))
        if words[0] in commands:
            raise UserError(
                f"argument {word.split('=')[0]}: renamed {new} (see analyze.py {words[0]} --help)"
            )
    return words


def _main(argv: list[str] | None, console: Console | None) -> Any:
    args = build_parser().parse_args(_in_order(list(sys.argv[1:] if argv is None else argv)))
    console = console or Console(soft_wrap=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.analysis in STUDIES:
        parents = [str(p.resolve().parent) for p in args.run_dirs]
        out = args.out or default_folder(Path(os.path.commonpath(parents)) / "analysis")
        return STUDIES[args.analysis](args, out, console)
    run = TrainedRun(args.run_dir, device=args.device)
    out = args.out or default_folder(run.directory / "analysis")
    return COMMANDS[args.analysis][0](run, args, out, console)


if __name__ == "__main__":
    main()
