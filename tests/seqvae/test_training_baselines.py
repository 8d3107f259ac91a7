"""The baselines that change how a step trains (issue 16): ``lagging``, ``fbp``, ``sa-vae``.

Each test checks the baseline's defining property against the plausible bug: the inner loop's
stopping rule and the MI switch of ``lagging``, the decoder reset of ``fbp`` (and only the
decoder), and for ``sa-vae`` that refinement raises the ELBO, that the encoder's gradient is
the derivative through the refinement, and that the decoder's is the partial one at
``lambda_K`` (Kim et al.'s Algorithm 1).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from functools import partial
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from advmask import AdversarialMasker, UniformMasker
from advmask.seqvae import baselines
from advmask.seqvae.baselines import BaselineSettingError, BaselineSettings, make_baseline
from advmask.seqvae.data import Batch
from advmask.seqvae.lagging import AggressivePhase, encoder_updates
from advmask.seqvae.models import LSTMDecoder
from advmask.seqvae.semi_amortized import refine_posterior, sequence_neg_elbo
from advmask.seqvae.step import Optimizers, StepSettings
from advmask.seqvae.trainer import BaselineTrainer
from advmask.training.distributed import shard_batch

from ..recipes._trust_helpers import assert_one_line_error, recipe, run  # noqa: F401
from ..recipes.test_recipe import TINY
from .test_vae import batch, model


def parameters(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def same(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(first[name], second[name]) for name in first)


# lagging: the inner loop ------------------------------------------------------------------
class ScriptedLoss(nn.Module):
    """A stand-in VAE whose per-token loss follows a script, one value per call."""

    def __init__(self, losses: list[float]) -> None:
        super().__init__()
        self.encoder = nn.Linear(1, 1)
        self.decoder = nn.Linear(1, 1)
        self.losses, self.calls = losses, 0

    def forward(self, tokens, lengths, beta=1.0, free_bits=0.0):
        value = self.losses[self.calls]
        self.calls += 1
        tokens_per_row = (lengths - 1).double()
        reconstruction = value * tokens_per_row + 0 * sum(
            p.sum() for p in self.encoder.parameters()
        )
        return SimpleNamespace(
            loss=reconstruction.mean() + 0 * self.decoder.weight.sum(),
            reconstruction=reconstruction,
            kl=torch.zeros_like(reconstruction),
        )


def inner_updates(losses: list[float], **options) -> int:
    vae = ScriptedLoss(losses).double()
    optimizer = torch.optim.SGD(vae.parameters(), lr=0.1)
    batch_ = Batch(*batch([3, 5]))
    return encoder_updates(vae, lambda: batch_, optimizer, 1.0, 5.0, **options)


def test_inner_loop_stops_after_the_first_window_that_is_higher() -> None:
    # Windows of 15 updates: 5, 4, 3 (falling), then 3.5 (higher): stop after the 4th window.
    losses = [5.0] * 15 + [4.0] * 15 + [3.0] * 15 + [3.5] * 15 + [1.0] * 40
    assert inner_updates(losses) == 60
    # An equal window does not stop it (the paper's code: strictly higher).
    assert inner_updates([2.0] * 30 + [3.0] * 15 + [0.0] * 60) == 45


def test_inner_loop_takes_two_windows_at_least_and_max_steps_at_most() -> None:
    assert inner_updates([1.0] * 15 + [9.0] * 100) == 30  # the first window always goes on
    falling = [100.0 - step for step in range(100)]
    assert inner_updates(falling) == 99
    assert inner_updates(falling, max_steps=20, check_every=4) == 20


def test_inner_updates_move_the_encoder_only() -> None:
    vae = model().train()
    encoder, decoder = parameters(vae.encoder), parameters(vae.decoder)
    optimizer = torch.optim.SGD(vae.vae_parameters(), lr=0.5)
    batches = [Batch(*batch([4, 6, 2], seed=s)) for s in range(3)]
    draws = iter(batches * 40)
    taken = encoder_updates(vae, lambda: next(draws), optimizer, 1.0, 5.0)
    assert taken >= 30
    assert same(decoder, parameters(vae.decoder))
    assert not same(encoder, parameters(vae.encoder))
    assert all(p.grad is None for p in vae.parameters())


def test_aggressive_phase_ends_at_the_first_fall_for_good() -> None:
    phase = AggressivePhase()
    assert [phase.observe(mi) for mi in (0.1, 0.2, 0.2, 0.15, 0.9)] == [
        True, True, True, False, False,
    ]  # fmt: skip
    restored = AggressivePhase()
    restored.load_state_dict(phase.state_dict())
    assert restored == phase


# lagging: the trainer -------------------------------------------------------------------------
def lagging_trainer(vae, steps_per_epoch: int) -> BaselineTrainer:
    baseline = make_baseline("lagging", BaselineSettings(), total_steps=100)
    optimizer = torch.optim.SGD(vae.vae_parameters(), lr=0.5)
    batches = [Batch(*batch([4, 6, 2], seed=s)) for s in range(3)]
    return BaselineTrainer(
        baseline, vae, Optimizers(optimizer), StepSettings(5.0), steps_per_epoch=steps_per_epoch,
        batches=lambda split: batches,
    )  # fmt: skip


def test_lagging_takes_encoder_steps_while_mi_improves_and_stops_when_it_does_not(
    monkeypatch,
) -> None:
    held_out_mi = iter([0.5, 0.7, 0.6, 0.9])  # measured at the start of epochs 2, 3, 4, 5
    monkeypatch.setattr(
        "advmask.seqvae.trainer.held_out_mutual_information", lambda *args: next(held_out_mi)
    )
    vae = model().train()
    trainer = lagging_trainer(vae, steps_per_epoch=2)
    step_batch = shard_batch(Batch(*batch([5, 3, 4], seed=9)), 0, 1)
    updates, aggressive = [], []
    for number in range(1, 11):  # five epochs of two steps
        stats, columns = trainer.step(step_batch, number)
        updates.append(int(stats["encoder_updates"][0]))
        aggressive.append(columns["aggressive"])
    # Epochs 1-3 aggressive (MI 0.5 -> 0.7 rose), from epoch 4 on (0.6 < 0.7) never again.
    assert aggressive == [1] * 6 + [0] * 4
    assert all(u >= 30 for u in updates[:6]) and updates[6:] == [0] * 4
    assert trainer.state_dict()["phase"] == {"active": False, "previous_mi": 0.6}


def test_lagging_decoder_updates_leave_the_encoder(monkeypatch) -> None:
    monkeypatch.setattr("advmask.seqvae.trainer.encoder_updates", lambda *args, **kw: 0)
    vae = model().train()
    trainer = lagging_trainer(vae, steps_per_epoch=10)
    encoder, decoder = parameters(vae.encoder), parameters(vae.decoder)
    trainer.step(shard_batch(Batch(*batch([5, 3, 4])), 0, 1), 1)
    assert same(encoder, parameters(vae.encoder))  # the outer step: decoder only
    assert not same(decoder, parameters(vae.decoder))


def test_lagging_needs_batches() -> None:
    baseline = make_baseline("lagging", BaselineSettings(), total_steps=10)
    vae = model()
    optimizer = torch.optim.SGD(vae.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="batches"):
        BaselineTrainer(baseline, vae, Optimizers(optimizer), StepSettings(5.0), steps_per_epoch=2)


# fbp --------------------------------------------------------------------------------------------
def test_fbp_schedule_pretrains_without_kl_then_restarts_the_annealing() -> None:
    settings = BaselineSettings(kl_start=0.2, kl_warmup_steps=4, free_bits=0.5, pretrain_epochs=2)
    baseline = make_baseline("fbp", settings, total_steps=20, steps_per_epoch=3)
    assert baseline.pretrain_steps == 6 and baseline.free_bits == 0.5
    assert [baseline.beta(t) for t in range(1, 7)] == [0.0] * 6
    annealing = make_baseline("free-bits", replace(settings, pretrain_epochs=1), total_steps=20)
    assert [baseline.beta(t) for t in range(7, 13)] == [annealing.beta(t) for t in range(1, 7)]


def test_fbp_refuses_pretraining_that_leaves_no_vae_epoch() -> None:
    settings = BaselineSettings(free_bits=0.5, pretrain_epochs=4)
    with pytest.raises(BaselineSettingError, match=r"below the run's epochs \(4\), got 4"):
        make_baseline("fbp", settings, total_steps=40, steps_per_epoch=10)
    with pytest.raises(BaselineSettingError, match="free_bits"):
        make_baseline("fbp", BaselineSettings(), total_steps=40, steps_per_epoch=10)


def test_fbp_resets_the_decoder_and_keeps_the_encoder_fill_and_restarts_the_average() -> None:
    vae = model(masker=UniformMasker(0.4), fill="learned").train()
    settings = BaselineSettings(free_bits=0.1, pretrain_epochs=1)
    baseline = make_baseline("fbp", settings, total_steps=6, steps_per_epoch=2)
    optimizer = torch.optim.SGD(vae.vae_parameters(), lr=0.5)
    ema = torch.optim.swa_utils.AveragedModel(
        vae, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.9)
    )
    trainer = BaselineTrainer(
        baseline, vae, Optimizers(optimizer), StepSettings(5.0), steps_per_epoch=2, averaged=ema
    )
    step_batch = shard_batch(Batch(*batch([5, 3, 4])), 0, 1)
    for number in (1, 2):  # the autoencoder
        trainer.step(step_batch, number)
    pretrained, state = copy.deepcopy(vae), torch.get_rng_state()
    for group in optimizer.param_groups:
        group["lr"] = 0.0  # step 3 does not move the weights: they are the reset's
    trainer.step(step_batch, 3)
    torch.set_rng_state(state)
    expected = copy.deepcopy(pretrained)
    expected.reset_decoder()
    after, before = parameters(vae.decoder), parameters(pretrained.decoder)
    assert same(parameters(expected.decoder), after)
    weights = [name for name in after if name != "embedding.drop_vector"]
    assert all(not torch.equal(after[name], before[name]) for name in weights)
    assert torch.equal(after["embedding.drop_vector"], before["embedding.drop_vector"])
    assert same(parameters(pretrained.encoder), parameters(vae.encoder))
    # The average's decoder restarted at the reset weights (then averaged with them, lr 0);
    # without the restart it would still hold the pretrained decoder.
    averaged = parameters(ema.module.decoder)
    assert all(torch.allclose(averaged[name], after[name]) for name in weights)


def test_reset_decoder_draws_new_weights_and_spares_the_masker() -> None:
    vae = model(masker=AdversarialMasker(vocab_size=30, rate=0.4, embedding_dim=4, hidden_size=4))
    masker, decoder = parameters(vae.masker), parameters(vae.decoder)
    encoder = parameters(vae.encoder)
    vae.reset_decoder()
    assert same(masker, parameters(vae.masker)) and same(encoder, parameters(vae.encoder))
    reset = parameters(vae.decoder)
    moved = [name for name in decoder if not name.startswith("embedding.masker")]
    assert moved and all(not torch.equal(decoder[name], reset[name]) for name in moved)


# sa-vae -----------------------------------------------------------------------------------------
def fixed_noise(function, seed: int = 11):
    """``function`` evaluated with the global random state pinned."""

    def pinned(*args, **kwargs):
        torch.manual_seed(seed)
        return function(*args, **kwargs)

    return pinned


@pytest.mark.parametrize("decoder", [LSTMDecoder, None])
def test_refinement_raises_the_elbo_of_a_fixed_model(decoder) -> None:
    vae = (model() if decoder is None else model(decoder=decoder)).eval()
    with torch.no_grad():  # a decoder that reads z (at its initialisation it hardly does)
        for weight in vae.decoder.parameters():
            weight.mul_(30.0)
    tokens, lengths = batch([6, 4, 7, 5], seed=2)
    embedded = vae.input_embedding.embed(tokens[:, :-1])
    mean, logvar = vae.posterior(tokens, lengths)
    mean = mean + torch.linspace(-1.0, 1.0, mean.shape[1], dtype=mean.dtype)  # off the optimum

    def neg_elbo(mean, logvar, draws=400):
        torch.manual_seed(0)
        return torch.stack(
            [sequence_neg_elbo(vae.decoder, tokens, lengths, embedded, mean, logvar)
             for _ in range(draws)]
        ).detach()  # fmt: skip

    refined = refine_posterior(
        vae, tokens, lengths, embedded, mean, logvar, steps=20, lr=0.2, create_graph=False
    )
    before, after = neg_elbo(mean, logvar), neg_elbo(*refined)
    gain = before.mean(0) - after.mean(0)
    # Common noise: the paired difference's standard error over the draws.
    se = (before - after).std(0) / before.shape[0] ** 0.5
    assert (gain > 5 * se).all() and (gain > 0.05).all(), (gain, se)
    # steps=0 is the identity.
    same_mean, same_logvar = refine_posterior(
        vae, tokens, lengths, embedded, mean, logvar, steps=0, lr=0.2
    )
    assert same_mean is mean and same_logvar is logvar


def test_no_refinement_is_the_amortised_step() -> None:
    vae = model().eval()
    tokens, lengths = batch([6, 4, 7], seed=1)
    refine = partial(refine_posterior, vae, steps=0, lr=1.0)
    plain = fixed_noise(vae)(tokens, lengths)
    semi = fixed_noise(vae)(tokens, lengths, refine=refine)
    torch.testing.assert_close(plain.loss, semi.loss, rtol=0, atol=0)


def test_encoder_gradient_is_the_derivative_through_the_refinement() -> None:
    vae = model().eval()  # float64, no dropout: the loss is a smooth function of the weights
    tokens, lengths = batch([5, 3, 6], seed=4)
    refine = partial(refine_posterior, vae, steps=3, lr=0.3)
    loss = fixed_noise(lambda: vae(tokens, lengths, refine=refine).loss)
    weight = vae.encoder.lstm.weight_ih_l0
    (gradient,) = torch.autograd.grad(loss(), weight)
    direction = torch.randn(weight.shape, generator=torch.Generator().manual_seed(1))
    direction = direction.to(weight.dtype)
    step = 1e-5
    with torch.no_grad():
        weight.add_(step * direction)
        up = loss()
        weight.sub_(2 * step * direction)
        down = loss()
        weight.add_(step * direction)
    numerical = (up - down) / (2 * step)
    torch.testing.assert_close((gradient * direction).sum(), numerical, rtol=1e-5, atol=1e-8)
    # Without the refinement's graph no gradient reaches the encoder at all.
    detached = partial(refine_posterior, vae, steps=3, lr=0.3, create_graph=False)
    (cut_off,) = torch.autograd.grad(
        fixed_noise(lambda: vae(tokens, lengths, refine=detached).loss)(), weight,
        allow_unused=True,
    )  # fmt: skip
    assert cut_off is None


def test_decoder_gradient_is_the_partial_one_at_the_refined_posterior() -> None:
    vae = model().eval()
    tokens, lengths = batch([5, 3, 6], seed=4)
    refine = partial(refine_posterior, vae, steps=3, lr=0.3)
    decoder_weights = [p for p in vae.decoder.parameters() if p.requires_grad]
    loss = fixed_noise(lambda: vae(tokens, lengths, refine=refine).loss)()
    through = torch.autograd.grad(loss, decoder_weights, allow_unused=True)

    def refine_then_detach(*args):
        mean, logvar = refine(*args)
        return mean.detach(), logvar.detach()

    loss = fixed_noise(lambda: vae(tokens, lengths, refine=refine_then_detach).loss)()
    partial_only = torch.autograd.grad(loss, decoder_weights, allow_unused=True)
    for got, expected in zip(through, partial_only, strict=True):
        if expected is None:
            assert got is None
        else:
            torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_sa_vae_and_lagging_refuse_torch_distributed(monkeypatch) -> None:
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    vae = model()
    optimizer = torch.optim.SGD(vae.parameters(), lr=0.1)
    for name in ("sa-vae", "lagging"):
        baseline = make_baseline(name, BaselineSettings(), total_steps=10)
        with pytest.raises(ValueError, match=f"'{name}' runs in one process"):
            BaselineTrainer(baseline, vae, Optimizers(optimizer), StepSettings(5.0),
                            steps_per_epoch=2, batches=lambda split: [])  # fmt: skip


def test_new_settings_belong_to_their_baselines() -> None:
    for setting, value in (("pretrain_epochs", 2), ("svi_steps", 3), ("svi_lr", 0.5)):
        settings = BaselineSettings(**{setting: value})
        with pytest.raises(BaselineSettingError, match=setting):
            make_baseline("annealing", settings, total_steps=10)
    assert make_baseline("sa-vae", BaselineSettings(svi_steps=3), 10).tag == "sa-vae 3"
    assert make_baseline("fbp", BaselineSettings(free_bits=0.25), 10, 2).tag == "fbp 0.25"
    assert make_baseline("lagging", BaselineSettings(), 10).tag == "lagging"
    assert set(baselines.BASELINES) >= {"lagging", "fbp", "sa-vae"}


# The recipe -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flags", "tag"),
    [
        (["--baseline", "fbp", "--free-bits", "0.1", "--pretrain-epochs", "1"], "fbp0.1"),
        (["--baseline", "sa-vae", "--svi-steps", "2"], "sa-vae2"),
    ],
)
def test_recipe_trains_fbp_and_sa_vae(recipe, tmp_path, flags, tag) -> None:  # noqa: F811
    common = [*TINY, "--epochs", "2", "--dropout", "none", "--out", str(tmp_path)]
    (result,) = recipe.main([*common, *flags])
    assert result["train_seconds"] > 0 and result["epochs"] == 2
    log = (tmp_path / "synthetic" / f"none-{tag}-seed0" / "log.csv").read_text().splitlines()
    column = log[0].split(",").index("kl_weight")
    weights = [float(r.split(",")[column]) for r in log[1:] if r.split(",")[column]]
    if tag.startswith("fbp"):
        assert weights[0] == 0.0 and weights[-1] > 0.0  # pretraining, then the VAE


def test_recipe_refuses_pretraining_as_long_as_the_run(recipe, capsys) -> None:  # noqa: F811
    flags = ["--baseline", "fbp", "--free-bits", "0.1", "--pretrain-epochs", "3", "--epochs", "3"]
    code, _, err = run(recipe, flags, capsys)
    assert_one_line_error(code, err, "argument --pretrain-epochs:", "(3), got 3")


def test_recipe_refuses_svi_settings_without_sa_vae(recipe, capsys) -> None:  # noqa: F811
    code, _, err = run(recipe, ["--svi-steps", "3"], capsys)
    assert_one_line_error(code, err, "argument --svi-steps:", "'sa-vae'", "'annealing'")
