"""The causal Transformer decoder: causality, the two z paths, padding, factory and recipe."""

import importlib.util
import math
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from advmask.seqvae.factory import (
    ModelSpec,
    build_sequence_vae,
    load_sequence_vae,
    save_sequence_vae,
)
from advmask.seqvae.models import DECODERS, TransformerDecoder
from advmask.training.checkpoint import load_checkpoint, save_checkpoint

F64 = torch.float64
VOCAB, EMB, HID, LAT = 23, 6, 8, 3
ROOT = Path(__file__).resolve().parents[2]


def make_decoder(seed=0, **options):
    """A float64 decoder in eval mode (no dropout) with O(1) weights.

    N(0, 0.02) weights keep attention nearly uniform and the blocks nearly linear, which would
    hide wiring bugs; std 0.4 exercises the softmax and the nonlinearities.
    """
    torch.manual_seed(seed)
    options = {"num_heads": 2, "dropout_in": 0.0, "dropout_out": 0.0, **options}
    decoder = TransformerDecoder(VOCAB, EMB, HID, LAT, **options)
    with torch.no_grad():
        for name, parameter in decoder.named_parameters():
            if "norm" not in name:
                parameter.normal_(0.0, 0.4)
    return decoder.to(F64).eval()


def make_inputs(batch, steps, seed=1, grad=False):
    generator = torch.Generator().manual_seed(seed)
    embedded = torch.randn(batch, steps, EMB, dtype=F64, generator=generator)
    z = torch.randn(batch, LAT, dtype=F64, generator=generator)
    return embedded.requires_grad_(grad), z.requires_grad_(grad)


def test_registered_and_shapes() -> None:
    assert DECODERS["transformer"] is TransformerDecoder
    decoder = make_decoder()
    assert isinstance(decoder.embedding, nn.Embedding) and decoder.embedding.padding_idx == 0
    for batch, steps in [(1, 1), (3, 6), (2, 0)]:
        embedded, z = make_inputs(batch, steps)
        logits = decoder(embedded, z)
        assert logits.shape == (batch, steps, VOCAB) and logits.dtype == F64


@given(
    batch=st.integers(1, 3),
    steps=st.integers(1, 9),
    data=st.data(),
)
def test_output_at_t_does_not_depend_on_inputs_after_t(batch, steps, data) -> None:
    decoder = make_decoder()
    cut = data.draw(st.integers(0, steps - 1), label="cut")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    embedded, z = make_inputs(batch, steps, seed=seed)
    changed = embedded.clone()
    changed[:, cut + 1 :] = 100 * torch.randn_like(changed[:, cut + 1 :])
    before, after = decoder(embedded, z), decoder(changed, z)
    # Masked attention weights are exactly 0, so the past is untouched up to rounding only.
    torch.testing.assert_close(after[:, : cut + 1], before[:, : cut + 1], rtol=0, atol=1e-12)
    if cut + 1 < steps:  # ... and the future does change (the test can see a dependence)
        assert (after[:, cut + 1 :] - before[:, cut + 1 :]).abs().amax() > 1e-6


def test_causality_exact_zero_gradient_from_future_inputs() -> None:
    decoder = make_decoder()
    embedded, z = make_inputs(2, 6, grad=True)
    logits = decoder(embedded, z)
    for step in range(6):
        (grad,) = torch.autograd.grad(logits[:, step].sum(), embedded, retain_graph=True)
        per_step = grad.abs().sum(dim=(0, 2))
        assert torch.all(per_step[step + 1 :] == 0), (step, per_step)
        assert torch.all(per_step[: step + 1] > 0), (step, per_step)


def test_valid_logits_do_not_depend_on_padded_steps() -> None:
    decoder = make_decoder()
    embedded, z = make_inputs(3, 7)
    logits = decoder(embedded, z)
    for row, length in enumerate([7, 2, 4]):
        alone = decoder(embedded[row : row + 1, :length], z[row : row + 1])
        torch.testing.assert_close(logits[row, :length], alone[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("path", ["both", "prefix only", "added only"])
def test_z_changes_every_step_through_each_injection_path(path) -> None:
    decoder = make_decoder()
    with torch.no_grad():  # cut the other path: each one alone must carry z
        if path == "prefix only":
            decoder.latent_to_input.weight.zero_()
        elif path == "added only":
            decoder.latent_to_prefix.weight.zero_()
    embedded = torch.zeros(2, 5, EMB, dtype=F64)  # every input dropped: z is all there is
    _, z = make_inputs(2, 5, seed=3)
    logits = decoder(embedded, z)
    other = decoder(embedded, z + 0.5)
    assert (other - logits).abs().amin(dim=-1).gt(0).all()  # every step, every row


def test_prefix_token_is_attended_to() -> None:
    # With z added to no input, z can only reach step t through attention to the prefix: a
    # decoder that dropped the prefix (or masked it out) would not depend on z at all.
    decoder = make_decoder()
    with torch.no_grad():
        decoder.latent_to_input.weight.zero_()
    embedded, z = make_inputs(2, 4, grad=True)
    logits = decoder(embedded, z)
    for step in range(4):
        (grad,) = torch.autograd.grad(logits[:, step].sum(), z, retain_graph=True)
        assert grad.abs().sum() > 0, step


def test_learns_a_tiny_batch() -> None:
    torch.manual_seed(0)
    decoder = TransformerDecoder(VOCAB, 16, 32, LAT, num_heads=4, dropout_in=0.0, dropout_out=0.0)
    tokens = torch.randint(3, VOCAB, (4, 8))
    z = torch.randn(4, LAT)
    optimiser = torch.optim.Adam(decoder.parameters(), lr=3e-3)

    def loss() -> torch.Tensor:
        logits = decoder(decoder.embedding(tokens[:, :-1]), z)
        return nn.functional.cross_entropy(logits.transpose(1, 2), tokens[:, 1:])

    first = float(loss().detach())
    assert first == pytest.approx(math.log(VOCAB), abs=0.1)  # GPT-2 init: near uniform
    for _ in range(60):
        optimiser.zero_grad()
        loss().backward()
        optimiser.step()
    assert float(loss().detach()) < 0.5 * first


def test_initialisation() -> None:
    torch.manual_seed(0)
    decoder = TransformerDecoder(VOCAB, EMB, HID, LAT, num_heads=2, num_layers=4).requires_grad_(
        False
    )
    assert torch.equal(decoder.embedding.weight[0], torch.zeros(EMB))
    assert 0.01 < float(decoder.output.weight.std()) < 0.03
    residual = decoder.blocks.layers[0].linear2.weight
    assert float(residual.std()) < 0.02 / math.sqrt(8) * 1.5  # scaled by 1 / sqrt(2 L)
    assert torch.equal(decoder.blocks.layers[0].norm1.weight, torch.ones(HID))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_heads": 3}, ValueError, "num_heads must divide hidden_size=8, got num_heads=3"),
        ({"num_layers": 0}, ValueError, "num_layers must be >= 1, got 0"),
        ({"max_length": 2.0}, TypeError, "max_length must be an int >= 1, got 2.0"),
        ({"dropout": 1.0}, ValueError, r"dropout must be in \[0, 1\), got 1.0"),
    ],
)
def test_constructor_rejects_bad_options(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        TransformerDecoder(VOCAB, EMB, HID, LAT, **{"num_heads": 2, **kwargs})


def test_rejects_sequences_longer_than_its_positions() -> None:
    decoder = make_decoder(max_length=5)
    decoder(*make_inputs(1, 5))
    with pytest.raises(ValueError, match="6 steps, more than max_length=5"):
        decoder(*make_inputs(1, 6))
    with pytest.raises(ValueError, match="embedding_dim=6"):
        decoder(torch.zeros(1, 2, EMB + 1, dtype=F64), torch.zeros(1, LAT, dtype=F64))


# ---------------------------------------------------------------------------------------------
# Factory and recipe

SPEC = ModelSpec(
    vocab_size=VOCAB,
    embedding_dim=EMB,
    hidden_size=HID,
    latent_dim=LAT,
    decoder="transformer",
    dropout="adversarial",
    rate=0.3,
    adversary_embedding_dim=4,
    adversary_hidden_size=4,
    transformer_layers=3,
    transformer_heads=2,
    transformer_max_length=20,
    transformer_dropout=0.0,
)


def batch():
    tokens = torch.tensor([[1, 5, 6, 7, 8, 2], [1, 9, 10, 2, 0, 0]])
    return tokens, torch.tensor([6, 4])


def test_factory_builds_the_spec_and_trains_both_players() -> None:
    torch.manual_seed(0)
    model = build_sequence_vae(SPEC).train()
    decoder = model.decoder
    assert isinstance(decoder, TransformerDecoder)
    assert (decoder.num_layers, decoder.num_heads, decoder.max_length) == (3, 2, 20)
    assert len(decoder.blocks.layers) == 3 and decoder.position.num_embeddings == 21
    out = model(*batch())
    assert int(out.masker.mask.sum()) == 2  # round(0.3 * 4) + round(0.3 * 2)
    out.loss.backward()
    assert all(p.grad is not None for p in model.masker.parameters())
    assert decoder.input_projection.weight.grad.abs().sum() > 0


def test_transformer_vae_saves_and_loads(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_sequence_vae(SPEC)
    save_sequence_vae(model, SPEC, tmp_path / "model.pt")
    loaded, spec = load_sequence_vae(tmp_path / "model.pt")
    assert spec == SPEC and not loaded.training
    loaded_state = loaded.state_dict()
    for name, value in model.state_dict().items():
        if isinstance(value, torch.Tensor):  # (the reversal's step is an extra-state dict)
            assert torch.equal(loaded_state[name], value), name
    model.eval()
    tokens, lengths = batch()
    z = torch.randn(2, LAT)
    assert torch.equal(
        loaded.reconstruction_nll(tokens, lengths, z), model.reconstruction_nll(tokens, lengths, z)
    )


def test_checkpoints_written_before_the_transformer_fields_still_load(tmp_path) -> None:
    spec = ModelSpec(vocab_size=VOCAB, embedding_dim=EMB, hidden_size=HID, latent_dim=LAT)
    model = build_sequence_vae(spec)
    old = {k: v for k, v in asdict(spec).items() if not k.startswith("transformer_")}
    save_checkpoint({"spec": old, "state_dict": model.state_dict()}, tmp_path / "old.pt")
    assert load_sequence_vae(tmp_path / "old.pt")[1] == spec
    assert "transformer_layers" not in load_checkpoint(tmp_path / "old.pt")["spec"]


def test_recipe_trains_a_transformer_decoder(tmp_path) -> None:
    module_spec = importlib.util.spec_from_file_location(
        "seqvae_awd_transformer", ROOT / "recipes" / "seqvae_awd.py"
    )
    recipe = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = recipe
    module_spec.loader.exec_module(recipe)
    argv = [
        *("--decoder", "transformer", "--transformer-layers", "1", "--transformer-heads", "2"),
        *("--dropout", "adversarial", "--max-train-sequences", "48", "--batch-size", "16"),
        *("--epochs", "1", "--embedding-dim", "8", "--hidden-size", "8", "--latent-dim", "2"),
        *("--adversary-embedding-dim", "4", "--adversary-hidden-size", "4"),
        *("--test-iw-samples", "2", "--checkpoint-every", "0", "--device", "cpu", "--seed", "0"),
        *("--out", str(tmp_path)),
    ]
    (result,) = recipe.main(argv)
    assert math.isfinite(result["test"]["neg_elbo"])
    model, spec = load_sequence_vae(tmp_path / "synthetic" / "adversarial-seed0" / "best.pt")
    assert spec.decoder == "transformer" and spec.transformer_layers == 1
    assert isinstance(model.decoder, TransformerDecoder)
