"""Graph breaks of ``torch.compile`` for each score network and for the masker around it.

Runs ``torch._dynamo.explain`` (no timing) on CPU for a batch of 4 rows of 12 tokens and
prints, per module, the number of graphs, of graph breaks and their reasons. The table on the
Hugging Face page (docs/huggingface.rst) comes from this script::

    python benchmarks/bench_compile_explain.py
"""

from __future__ import annotations

import warnings

import torch

from advmask import AdversarialMasker, LSTMScoreNetwork, set_value_checks
from advmask.scores import GRUScoreNetwork, TransformerScoreNetwork

VOCAB, EMBEDDING, HIDDEN = 100, 16, 32


def explain(module: torch.nn.Module, *args: torch.Tensor) -> str:
    torch._dynamo.reset()
    result = torch._dynamo.explain(module)(*args)
    reasons = sorted({str(reason.reason).splitlines()[0][:80] for reason in result.break_reasons})
    return f"graphs={result.graph_count} breaks={result.graph_break_count} reasons={reasons}"


def main() -> None:
    warnings.simplefilter("ignore")  # Dynamo's notes on each break
    print(f"torch {torch.__version__}")
    tokens = torch.randint(1, VOCAB, (4, 12), generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([12, 9, 5, 3])
    networks = {
        "transformer": lambda: TransformerScoreNetwork(VOCAB, EMBEDDING, HIDDEN, num_heads=2),
        "lstm": lambda: LSTMScoreNetwork(VOCAB, EMBEDDING, HIDDEN),
        "gru": lambda: GRUScoreNetwork(VOCAB, EMBEDDING, HIDDEN),
        "lstm-bidirectional": lambda: LSTMScoreNetwork(
            VOCAB, EMBEDDING, HIDDEN, bidirectional=True
        ),
    }
    for name, make in networks.items():
        network = make()
        for training in (True, False):
            mode = "train" if training else "eval"
            print(f"{name:20s} {mode:5s} {explain(network.train(training), tokens, lengths)}")
    for name, make in networks.items():
        torch.manual_seed(0)
        masker = AdversarialMasker(VOCAB, 0.3, score_network=make())
        for checks in (True, False):
            set_value_checks(checks)
            try:
                print(f"masker({name}) value checks {checks}: {explain(masker, tokens, lengths)}")
            finally:
                set_value_checks(True)


if __name__ == "__main__":
    main()
