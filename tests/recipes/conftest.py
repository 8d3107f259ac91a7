"""Fixtures of the recipe tests: the training recipe and a tiny corpus, tiny trained runs."""

from __future__ import annotations

import pytest

from advmask.seqvae.factory import load_sequence_vae
from tests.recipes import _trust_helpers
from tests.recipes._analysis_helpers import SCORE_FLAGS
from tests.recipes.test_recipe import TINY, load_recipe

# The trust tests' fixtures, for every module here (tests/seqvae imports them from the helpers).
recipe = _trust_helpers.recipe
corpus = _trust_helpers.corpus


# Package scope: trained once for tests/recipes/test_analysis.py and
# tests/recipes/test_analyze_commands.py (one module before the split).
@pytest.fixture(scope="package")
def runs(tmp_path_factory):
    """One tiny adversarial and one uniform run (a few seconds), scores logged every 2 steps."""
    out = tmp_path_factory.mktemp("runs")
    recipe = load_recipe("seqvae_awd")
    variants = ["--dropout", "adversarial", "uniform", "--rate", "0.3"]
    recipe.main([*TINY, "--out", str(out), *variants, *SCORE_FLAGS])
    return out / "synthetic"


@pytest.fixture(scope="module")
def analyze():
    return load_recipe("analyze")


@pytest.fixture(scope="module")
def adversarial(runs):
    return load_sequence_vae(runs / "adversarial-seed0" / "best.pt")[0]
