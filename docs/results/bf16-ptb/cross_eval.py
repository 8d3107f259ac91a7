"""Evaluate each fp32- and bf16-trained PTB model (best EMA weights) on the test split in both
precisions, so that training's and evaluation's shares of a difference can be told apart.

Usage, from the repository root, after the six runs of ``README.txt``::

    python docs/results/bf16-ptb/cross_eval.py RUNS    # writes RUNS/cross_eval.json
"""

import importlib.util
import json
import sys
import time
from pathlib import Path
from types import ModuleType

import torch

from advmask.seqvae.evaluation import evaluate
from advmask.seqvae.factory import load_sequence_vae

ROOT = Path(__file__).resolve().parents[3]
METRICS = ("neg_elbo", "kl", "mutual_information", "reconstruction")


def load_recipe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("recipe", ROOT / "recipes" / "seqvae_awd.py")
    recipe = importlib.util.module_from_spec(spec)
    sys.modules["recipe"] = recipe  # dataclasses look their module up
    spec.loader.exec_module(recipe)
    return recipe


def main(runs: Path) -> None:
    torch.set_num_threads(1)
    recipe = load_recipe()
    common = (ROOT / "docs" / "results" / "ptb-adam" / "COMMON.txt").read_text().split()
    flags = ["--decoder", "lstm", "--dropout", "uniform", "--max-train-sequences", "10000"]
    config = recipe.parse_args([*common, *flags, "--out", str(runs / "cross-eval-corpus")])
    data = recipe.load_data(config)
    cpu = torch.device("cpu")
    test = recipe.eval_batches(data.splits["test"], config, cpu)
    results: dict[str, object] = {}
    for trained in ("fp32", "bf16"):
        for seed in range(3):
            model, _ = load_sequence_vae(runs / trained / "ptb" / f"uniform-seed{seed}" / "best.pt")
            for evaluated in ("fp32", "bf16"):
                start = time.time()
                generator = torch.Generator().manual_seed(seed)  # as the recipe seeds its test
                metrics = evaluate(model, test, generator=generator, bf16=evaluated == "bf16")
                row = {k: metrics.as_dict()[k] for k in METRICS}
                results[f"{trained}-trained seed{seed} {evaluated}-evaluated"] = row
                print(trained, seed, evaluated, row, f"{time.time() - start:.0f} s", flush=True)
    # The IW NLL (S=50) of one model in both precisions, on the first 1,000 test sentences.
    model, _ = load_sequence_vae(runs / "fp32" / "ptb" / "uniform-seed0" / "best.pt")
    head = recipe.eval_batches(data.splits["test"][:1000], config, cpu)
    for evaluated in ("fp32", "bf16"):
        generator = torch.Generator().manual_seed(0)
        metrics = evaluate(model, head, iw_samples=50, generator=generator,
                           bf16=evaluated == "bf16")  # fmt: skip
        results[f"iw50 fp32-trained seed0 first1000 {evaluated}"] = metrics.as_dict()["nll_iw"]
        print("IW NLL", evaluated, metrics.as_dict()["nll_iw"], flush=True)
    (runs / "cross_eval.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
