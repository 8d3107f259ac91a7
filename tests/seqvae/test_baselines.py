"""The KL baselines (issue 16): each one's defining property, its registry and its flags."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from advmask.seqvae import baselines
from advmask.seqvae.baselines import BaselineSettingError, BaselineSettings, make_baseline
from advmask.seqvae.gaussian import gaussian_kl_per_dimension
from advmask.seqvae.grid import Variant
from advmask.seqvae.schedules import LinearKLAnnealing, free_bits_kl

from ..recipes._trust_helpers import assert_one_line_error, recipe, run  # noqa: F401
from ..recipes.test_recipe import TINY
from .test_vae import batch, model


def loss_terms(vae, tokens, lengths, baseline, step):
    """(loss, mean reconstruction, per-dimension KL) of one forward with the baseline's
    settings, the noise of z pinned."""
    torch.manual_seed(3)
    out = vae(tokens, lengths, beta=baseline.beta(step), free_bits=baseline.free_bits)
    return (
        out.loss,
        out.reconstruction.mean(),
        gaussian_kl_per_dimension(*vae.posterior(tokens, lengths)),
    )


def test_annealing_is_linear_kl_annealing() -> None:
    settings = BaselineSettings(kl_start=0.2, kl_warmup_steps=7)
    baseline = make_baseline("annealing", settings, total_steps=50)
    reference = LinearKLAnnealing(start=0.2, warmup_steps=7)
    assert [baseline.beta(t) for t in range(1, 12)] == [reference(t) for t in range(1, 12)]
    assert baseline.free_bits == 0.0 and baseline.tag == "annealing"


@pytest.mark.parametrize("beta", [0.0, 0.5, 3.0])
def test_beta_scales_the_kl_term_exactly(beta: float) -> None:
    vae = model().eval()
    tokens, lengths = batch([4, 6, 2])
    baseline = make_baseline("beta-vae", BaselineSettings(beta=beta), total_steps=10)
    for step in (1, 5, 1000):  # fixed: no schedule hides in it
        loss, reconstruction, kl_per_dim = loss_terms(vae, tokens, lengths, baseline, step)
        expected = reconstruction + beta * kl_per_dim.sum(-1).mean()
        torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)


def test_cyclical_shape() -> None:
    settings = BaselineSettings(kl_cycles=3, kl_cycle_ratio=0.25)
    baseline = make_baseline("cyclical", settings, total_steps=24)  # period 8, rise over 2
    weights = [baseline.beta(t) for t in range(1, 25)]
    one_cycle = [0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert weights == one_cycle * 3
    assert sum(w == 0.0 for w in weights) == 3  # three restarts, the number of cycles
    assert baseline.beta(25) == 1.0 and baseline.beta(10_000) == 1.0  # then holds 1


def test_free_bits_clamp_per_dimension_and_pass_gradients_only_above_the_floor() -> None:
    vae = model().eval()
    tokens, lengths = batch([4, 6, 2])
    _, _, kl_per_dim = loss_terms(
        vae, tokens, lengths, make_baseline("annealing", BaselineSettings(), 1), 1
    )
    mean_kl = kl_per_dim.mean(0).detach()
    # A floor between the dimensions' KLs: some below it, some above.
    floor = float(mean_kl.sort().values[1:3].mean())
    below = mean_kl < floor
    assert below.any() and (~below).any()
    settings = BaselineSettings(kl_start=1.0, kl_warmup_steps=1, free_bits=floor)
    baseline = make_baseline("free-bits", settings, total_steps=10)
    assert baseline.beta(1) == 1.0 and baseline.free_bits == floor
    loss, reconstruction, kl_per_dim = loss_terms(vae, tokens, lengths, baseline, 1)
    # Per dimension, not the total: sum_d max(floor, mean_b KL_bd).
    expected = reconstruction + torch.clamp_min(kl_per_dim.mean(0), floor).sum()
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    # d loss / d KL_bd: 1/B above the floor, exactly 0 below it.
    torch.manual_seed(3)
    mean, logvar = vae.posterior(tokens, lengths)
    kl = gaussian_kl_per_dimension(mean, logvar).detach().requires_grad_()
    (grad,) = torch.autograd.grad(free_bits_kl(kl, baseline.free_bits), kl)
    assert torch.equal(grad[:, below], torch.zeros_like(grad[:, below]))
    torch.testing.assert_close(grad[:, ~below], torch.full_like(grad[:, ~below], 1 / 3))


def test_unknown_baseline_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="'lagged'"):
        make_baseline("lagged", BaselineSettings(), total_steps=10)


@pytest.mark.parametrize(
    ("name", "settings", "setting"),
    [
        ("annealing", BaselineSettings(free_bits=1.0), "free_bits"),
        ("cyclical", BaselineSettings(free_bits=0.5), "free_bits"),
        ("annealing", BaselineSettings(beta=0.5), "beta"),
        ("beta-vae", BaselineSettings(kl_cycles=2), "kl_cycles"),
        ("free-bits", BaselineSettings(), "free_bits"),  # free bits of 0 are plain annealing
    ],
)
def test_settings_of_another_baseline_are_refused(name, settings, setting) -> None:
    with pytest.raises(BaselineSettingError, match=setting) as error:
        make_baseline(name, settings, total_steps=10)
    assert error.value.setting == setting


def test_every_registered_baseline_builds_with_its_defaults() -> None:
    for name in baselines.BASELINES:
        needs_floor = name in ("free-bits", "fbp")
        settings = BaselineSettings(free_bits=0.5) if needs_floor else BaselineSettings()
        baseline = make_baseline(name, settings, total_steps=100, steps_per_epoch=10)
        assert baseline.name == name and 0 <= baseline.beta(1) <= 1


def test_annealing_keeps_the_labels_and_folders_others_are_named() -> None:
    variant = Variant("adversarial", 0.4, 1.0, 0)
    assert variant.label("ptb", (1.0,), "annealing") == variant.label("ptb", (1.0,))
    assert variant.folder((0.4,), (1.0,), "annealing") == "adversarial-seed0"
    assert variant.label("ptb", (1.0,), "cyclical") == "ptb adversarial [0.4] (cyclical)"
    none = Variant("none", 0.0, 1.0, 0)
    tag = baselines.baseline_tag("beta-vae", BaselineSettings(beta=0.5))
    assert none.label("ptb", (1.0,), tag) == "ptb none (beta-vae 0.5)"
    assert none.folder((0.4,), (1.0,), tag) == "none-beta-vae0.5-seed0"


# The recipe ---------------------------------------------------------------------------------
def test_recipe_trains_beta_vae_and_records_the_baseline(recipe, tmp_path) -> None:  # noqa: F811
    flags = [*TINY, "--epochs", "1", "--dropout", "none", "--out", str(tmp_path)]
    (result,) = recipe.main([*flags, "--baseline", "beta-vae", "--beta", "0.5"])
    assert result["model"] == "synthetic none (beta-vae 0.5)"
    folder = tmp_path / "synthetic" / "none-beta-vae0.5-seed0"
    config = json.loads((folder / "config.json").read_text())
    assert config["baseline"] == "beta-vae" and config["beta"] == 0.5
    log = (folder / "log.csv").read_text().splitlines()
    column = log[0].split(",").index("kl_weight")
    weights = {row.split(",")[column] for row in log[1:]} - {""}  # "": validation rows
    assert weights == {"0.5"}


def test_recipe_refuses_free_bits_without_the_free_bits_baseline(recipe, capsys) -> None:  # noqa: F811
    code, _, err = run(recipe, ["--free-bits", "1", "--baseline", "annealing"], capsys)
    assert_one_line_error(code, err, "argument --free-bits:", "'free-bits'", "'annealing'")


def test_recipe_refuses_an_unknown_baseline(recipe, capsys) -> None:  # noqa: F811
    code, _, err = run(recipe, ["--baseline", "lagged"], capsys)
    assert_one_line_error(code, err, "--baseline", "lagged")


def test_settings_read_from_a_config() -> None:
    settings = replace(BaselineSettings(), beta=0.25)
    assert BaselineSettings.of(settings) == settings
