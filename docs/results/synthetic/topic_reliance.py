"""Does a demo run's decoder carry the topic forward, and does its adversary hide the topic?

For runs of the synthetic demo (``python recipes/seqvae_awd.py --dropout none uniform
adversarial`` for all three variants, as on the results page), the decoder inputs are split
into three classes: a sentence's *first* topic word (the one that reveals its topic to the
decoder), its *later* topic words, and every *other* word (function, style words,
punctuation). For each class it prints, averaged over the inputs of ``--sentences`` test
sentences:

* ``next``: the next-word PMI, what hiding the input costs the prediction of the next token
  (:func:`advmask.seqvae.analysis.next_word_pmi`);
* ``sentence``: the sentence PMI, what it costs every later token
  (:func:`advmask.seqvae.analysis.sentence_pmi`); ``sentence - next`` is what the decoder
  carries from the input to the words after the next, e.g. the topic;
* ``P(drop)``: the adversary's drop probability (Monte Carlo over 200 score draws), for
  adversarial runs; uniform dropout drops every word with about the rate.

``z`` is the posterior mean. Usage::

    python docs/results/synthetic/topic_reliance.py runs/synthetic/*-seed*/ --json out.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from advmask.seqvae.analysis import next_word_pmi, sentence_pmi, token_saliency
from advmask.seqvae.data import Vocabulary, make_batches
from advmask.seqvae.data.synthetic import TOPIC_WORDS
from advmask.seqvae.factory import load_sequence_vae
from advmask.training.checkpoint import read_json

CLASSES = ("first topic word", "later topic words", "other words")


def word_classes(words: list[str]) -> list[str]:
    """The class of each word of a sentence."""
    topic_words = frozenset().union(*TOPIC_WORDS.values())
    classes, seen_topic = [], False
    for word in words:
        if word in topic_words:
            classes.append(CLASSES[1] if seen_topic else CLASSES[0])
            seen_topic = True
        else:
            classes.append(CLASSES[2])
    return classes


@torch.no_grad()
def reliance(run: Path, num_sentences: int, seed: int) -> dict[str, dict[str, float]]:
    model, spec = load_sequence_vae(run / "best.pt", map_location="cpu")
    model.eval()
    vocab = Vocabulary.load(run / "vocab.json")
    data_dir = read_json(run / "config.json").get("data_dir") or run.parent / "corpus"
    lines = (Path(data_dir) / "test.txt").read_text(encoding="utf-8").splitlines()
    sentences = [line.split() for line in lines[:num_sentences]]
    totals = {name: {"next": 0.0, "sentence": 0.0, "P(drop)": 0.0, "inputs": 0} for name in CLASSES}
    generator = torch.Generator().manual_seed(seed)
    batches = make_batches([vocab.encode(s) for s in sentences], batch_size=64, shuffle=False)
    for batch in batches:
        next_word = next_word_pmi(model, batch.tokens, batch.lengths)
        whole = sentence_pmi(model, batch.tokens, batch.lengths)
        drop = None
        if spec.dropout == "adversarial":
            drop = token_saliency(
                model, batch.tokens, batch.lengths, num_samples=200, generator=generator
            ).probability
        for row, index in enumerate(batch.indices.tolist()):
            for position, name in enumerate(word_classes(sentences[index]), start=1):
                entry = totals[name]
                entry["next"] += float(next_word[row, position])
                entry["sentence"] += float(whole[row, position])
                entry["P(drop)"] += float(drop[row, position]) if drop is not None else 0.0
                entry["inputs"] += 1
    result = {}
    for name, entry in totals.items():
        count = max(entry["inputs"], 1)
        result[name] = {
            "next": entry["next"] / count,
            "sentence": entry["sentence"] / count,
            "P(drop)": entry["P(drop)"] / count if spec.dropout == "adversarial" else None,
            "inputs": entry["inputs"],
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--sentences", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    for run in args.runs:
        results[run.name] = reliance(run, args.sentences, args.seed)
        cells = "; ".join(
            f"{name}: next {v['next']:.2f}, sentence {v['sentence']:.2f}"
            + (f", P(drop) {v['P(drop)']:.2f}" if v["P(drop)"] is not None else "")
            for name, v in results[run.name].items()
        )
        print(f"{run.name}: {cells}", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
