"""``--precision bf16``: what runs in bfloat16, what stays float32, and how close the results are.

Tolerances come from bfloat16's 8 significant bits (unit roundoff ``u = 2**-8``): a product of
width ``n`` accumulated in float32 and rounded once is off by about ``u`` relative to its
magnitude; a loss summed over ``L`` tokens, each off by rounding errors of either sign, is off
by about ``u * |logit| * sqrt(L)``.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from advmask import set_value_checks
from advmask.precision import full_precision
from advmask.seqvae.data import Batch
from advmask.seqvae.evaluation import evaluate
from advmask.seqvae.factory import ModelSpec, build_sequence_vae
from advmask.seqvae.models import DoubleLSTMDecoder
from advmask.seqvae.step import Optimizers, StepSettings, train_step
from advmask.training.optim import adam

UNIT_ROUNDOFF = 2.0**-8


def bf16_autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def make_batch(batch: int = 6, length: int = 9, vocab: int = 40, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    words = torch.randint(1, length + 1, (batch,), generator=generator)
    positions = torch.arange(length + 2)
    tokens = torch.randint(4, vocab, (batch, length + 2), generator=generator)
    tokens[:, 0] = 1
    tokens = torch.where(positions == (words + 1)[:, None], 2, tokens)
    tokens = torch.where(positions > (words + 1)[:, None], 0, tokens)
    return tokens, words + 2


def model_spec(dropout: str = "adversarial", vocab: int = 40) -> ModelSpec:
    return ModelSpec(
        vocab_size=vocab, embedding_dim=16, hidden_size=24, latent_dim=4, dropout=dropout,
        rate=0.4, adversary_embedding_dim=8, adversary_hidden_size=12, dropout_out=0.0,
    )  # fmt: skip


def test_full_precision_without_autocast_is_the_layer_bit_for_bit() -> None:
    layer = torch.nn.Linear(5, 3)
    inputs = torch.randn(4, 5)
    assert torch.equal(full_precision(layer, inputs), layer(inputs))
    with bf16_autocast():
        assert layer(inputs).dtype == torch.bfloat16
        out = full_precision(layer, inputs.bfloat16())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, layer(inputs.bfloat16().float()))


def test_posterior_scores_and_selection_stay_float32_under_autocast() -> None:
    torch.manual_seed(0)
    model = build_sequence_vae(model_spec()).train()
    tokens, lengths = make_batch()
    with bf16_autocast():
        mean, logvar = model.posterior(tokens, lengths)
        out = model(tokens, lengths)
    assert mean.dtype == logvar.dtype == torch.float32
    masker = out.masker
    assert masker.mean.dtype == masker.std.dtype == masker.mask.dtype == torch.float32
    # Exactly K per row, as in float32.
    assert torch.equal(masker.mask.sum(1).long(), masker.k)
    assert out.reconstruction.dtype == out.kl.dtype == out.loss.dtype == torch.float32


def test_bf16_step_keeps_float32_weights_gradients_and_optimiser_states() -> None:
    set_value_checks(False)
    try:
        results = {}
        for bf16 in (False, True):
            torch.manual_seed(0)
            model = build_sequence_vae(model_spec()).train()
            vae_optimizer = adam(model.vae_parameters(), 1e-3)
            adversary_optimizer = adam(model.masker.parameters(), 1e-3)
            tokens, lengths = make_batch()
            optimizers = Optimizers(vae_optimizer, adversary_optimizer)
            batch = Batch(tokens=tokens, lengths=lengths)
            stats = train_step(model, batch, 1.0, optimizers, StepSettings(5.0, bf16=bf16))
            results[bf16] = stats
            for parameter in model.parameters():
                assert parameter.dtype == torch.float32
                assert parameter.grad is None or parameter.grad.dtype == torch.float32
            for optimizer in (vae_optimizer, adversary_optimizer):
                for state in optimizer.state.values():
                    for value in state.values():
                        if torch.is_tensor(value) and value.is_floating_point():
                            assert value.dtype == torch.float32
    finally:
        set_value_checks(True)
    # The same draws (the masker's noise is float32 in both): the same K words dropped, and a
    # loss of ~L * log V nats that differs by rounding only.
    fp32, bf16 = results[False], results[True]
    assert torch.equal(fp32["drop_fraction"], bf16["drop_fraction"])
    torch.testing.assert_close(bf16["loss"], fp32["loss"], rtol=4 * UNIT_ROUNDOFF, atol=0.0)


@pytest.mark.parametrize("steps", [10, 80])
def test_bf16_recurrence_error_stays_at_rounding_level_over_time(steps) -> None:
    # The bf16 cell state: c_t = f * c_{t-1} + i * g with |f| < 1 damps rounding errors
    # instead of summing them, so the error of h_t stays a few units of roundoff at any t.
    torch.manual_seed(0)
    decoder = DoubleLSTMDecoder(40, 16, 32, 4, init="pytorch").eval()
    embedded = torch.randn(5, steps, 16)
    z = torch.randn(5, 4)
    reference = decoder.recurrent_states(decoder.project_inputs(embedded), z)
    with bf16_autocast():
        hiddens = decoder.recurrent_states(decoder.project_inputs(embedded), z)
    assert hiddens.dtype == torch.bfloat16
    error = (hiddens.float() - reference).abs()
    # |h| < 1; 16 roundoffs allows for the rounding of gates, cell and products per step.
    assert error.max() < 16 * UNIT_ROUNDOFF
    assert error[:, -5:].mean() < 4 * error[:, :5].mean() + UNIT_ROUNDOFF


def test_bf16_evaluation_is_close_to_float32() -> None:
    torch.manual_seed(0)
    spec = replace(model_spec("none", vocab=300), encoder_init="pytorch", decoder_init="pytorch")
    model = build_sequence_vae(spec).eval()
    with torch.no_grad():  # logits of a trained model's size (|logit| ~ 10), not ~0
        model.decoder.output.weight.normal_(0.0, 3.0)
    tokens, lengths = make_batch(batch=8, length=12, vocab=300)
    batches = [Batch(tokens=tokens, lengths=lengths, indices=torch.arange(8))]
    results = {
        bf16: evaluate(
            model, batches, iw_samples=20, generator=torch.Generator().manual_seed(0), bf16=bf16
        )
        for bf16 in (False, True)
    }
    fp32, bf16 = results[False], results[True]
    assert bf16.nll_iw != fp32.nll_iw  # the decoder did run in bf16
    # The posterior runs its product in bf16 too, but its output layer and everything
    # after the decoder's logits in float32: KL and MI agree to a few roundoffs.
    assert bf16.kl == pytest.approx(fp32.kl, rel=8 * UNIT_ROUNDOFF, abs=1e-3)
    assert bf16.mutual_information == pytest.approx(fp32.mutual_information, abs=1e-2)
    # ~13 tokens of ~log(300) = 5.7 nats: a per-sequence NLL of ~75 nats, per-token rounding of
    # the logits of either sign; 0.05 nats per sentence is the acceptance bound.
    assert abs(bf16.nll_iw - fp32.nll_iw) < 0.05
    assert abs(bf16.neg_elbo - fp32.neg_elbo) < 0.05
