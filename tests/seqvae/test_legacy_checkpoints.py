"""Checkpoints written before the VAE masked through MaskedEmbedding still load, and compute
what the old code computed.

The fixtures in ``tests/fixtures/legacy/`` were written by advmask at commit 7f8f6e9 with
``tests/fixtures/make_legacy_checkpoint.py`` (see there how to remake them), together with the
outputs that code computed on a fixed batch (``expected.json``). Their state dicts hold the old
keys: ``masker.*`` and ``drop_vector`` on the model, ``decoder.embedding.weight`` for the
decoder's unwrapped embedding. A layout in between (``decoder.embedding.embedding.weight``, the
wrapper holding the embedding as a child) is made from a current model here.

Weights are compared exactly (a key remap moves tensors, it computes nothing). Outputs are
compared at float32 tolerance (``assert_close``'s float32 defaults, rtol 1.3e-6 and atol 1e-5),
not bitwise: they were computed in another process, possibly on another CPU, and the float32
kernels of the LSTMs and matmuls (oneDNN / MKL) may sum in a different order on another
instruction set or thread count. On the machine and thread count that wrote them they agree
bitwise. A wrong remap (a drop vector left at zero, another ``<unk>`` row, a masker with fresh
weights) moves a sequence's NLL by far more than the tolerance. Masks and K are compared
exactly: they are discrete.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.optim.swa_utils import AveragedModel

from advmask.embedding import MaskedEmbedding
from advmask.seqvae.factory import (
    ModelSpec,
    build_sequence_vae,
    load_sequence_vae,
    save_sequence_vae,
)
from advmask.training.checkpoint import load_checkpoint, save_checkpoint

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy"
MANIFEST = json.loads((LEGACY / "expected.json").read_text(encoding="utf-8"))
STEMS = sorted(MANIFEST["fixtures"])


def current_key(old: str) -> str:
    """Where a key of the 7f8f6e9 layout is now (written out here, independently of the
    library's remap). ``decoder.embedding.weight`` is where it was: the wrapper is the
    embedding."""
    if old == "drop_vector" or old.startswith("masker."):
        return f"decoder.embedding.{old}"
    return old


def intermediate_state_dict(model: torch.nn.Module) -> dict[str, object]:
    """A current model's state dict under the keys of the layout in between, whose wrapper
    held the embedding as a child."""
    return {
        ("decoder.embedding.embedding.weight" if key == "decoder.embedding.weight" else key): value
        for key, value in model.state_dict().items()
    }


def legacy_state_dict(model: torch.nn.Module) -> dict[str, object]:
    """A current model's state dict under the 7f8f6e9 keys (the inverse of ``current_key``)."""

    def old_key(key: str) -> str:
        if key.startswith("decoder.embedding.") and key != "decoder.embedding.weight":
            return key[len("decoder.embedding.") :]  # drop_vector, masker.*
        return key

    state = {old_key(key): value for key, value in model.state_dict().items()}
    assert [current_key(key) for key in state] == list(model.state_dict())
    return state


def test_the_fixtures_are_tiny_and_from_the_old_commit() -> None:
    assert MANIFEST["commit"].startswith("7f8f6e9")
    assert {"zero", "unk", "learned"} <= {MANIFEST["fixtures"][s]["spec"]["fill"] for s in STEMS}
    assert {"adversarial", "uniform"} <= {MANIFEST["fixtures"][s]["spec"]["dropout"] for s in STEMS}
    assert sum(path.stat().st_size for path in LEGACY.iterdir()) < 200_000


@pytest.mark.parametrize("stem", STEMS)
def test_every_old_weight_lands_under_its_new_key(stem) -> None:
    path = LEGACY / f"{stem}.pt"
    old = load_checkpoint(path)["state_dict"]
    assert "decoder.embedding.weight" in old  # the fixture really has the old layout
    model, spec = load_sequence_vae(path)
    assert not model.training
    assert spec == ModelSpec(**MANIFEST["fixtures"][stem]["spec"])
    assert spec.unk_id == 3  # not in the old spec: the vocabulary's default
    assert isinstance(model.decoder.embedding, MaskedEmbedding)
    new = model.state_dict()
    assert {current_key(key) for key in old} == set(new)
    for key, value in old.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(new[current_key(key)], value), key
        else:  # the gradient reversal's extra state: a dict then, a tensor now
            assert value == {"step": int(new[current_key(key)])}, key
    if spec.fill == "learned":
        assert torch.equal(model.drop_vector, old["drop_vector"])
        assert model.drop_vector.abs().sum() > 0  # the fixture's vector is not the initial zero


@pytest.mark.parametrize("stem", STEMS)
def test_old_checkpoint_computes_what_the_old_code_computed(stem) -> None:
    expected = MANIFEST["fixtures"][stem]
    model, _ = load_sequence_vae(LEGACY / f"{stem}.pt")
    tokens, lengths = torch.tensor(expected["tokens"]), torch.tensor(expected["lengths"])
    z, z_samples = torch.tensor(expected["z"]), torch.tensor(expected["z_samples"])
    drop_mask = torch.tensor(expected["drop_mask"])

    def close(actual: torch.Tensor, name: str) -> None:
        torch.testing.assert_close(actual, torch.tensor(expected[name]), msg=name)

    fill = model.fill_vector()
    if expected["fill_vector"] is None:
        assert fill is None
    else:
        close(fill.detach(), "fill_vector")
    with torch.no_grad():
        close(model.reconstruction_nll(tokens, lengths, z), "reconstruction_nll")
        close(model.reconstruction_nll(tokens, lengths, z, drop_mask), "reconstruction_nll_dropped")
        close(model.log_likelihood(tokens, lengths, z_samples), "log_likelihood")
        torch.manual_seed(expected["train_seed"])
        close(model(tokens, lengths, beta=expected["kl_weight"]).loss, "eval_loss")
    # Training mode: the same seed gives the same z, masker noise and decoder dropout, so the
    # random draws happen in the old order.
    model.train()
    torch.manual_seed(expected["train_seed"])
    out = model(tokens, lengths, beta=expected["kl_weight"])
    assert out.masker.mask.tolist() == expected["train_mask"]
    assert out.masker.k.tolist() == expected["train_k"]
    close(out.loss.detach(), "train_loss")
    close(out.reconstruction.detach(), "train_reconstruction")
    close(out.kl.detach(), "train_kl")
    close(out.masker.regularizer.detach(), "train_regularizer")


@pytest.mark.parametrize("fill", ["zero", "unk", "learned"])
@pytest.mark.parametrize("dropout", ["none", "uniform", "adversarial"])
def test_new_checkpoints_round_trip_with_the_new_keys(tmp_path, fill, dropout) -> None:
    spec = ModelSpec(
        vocab_size=20, embedding_dim=8, hidden_size=8, latent_dim=4, fill=fill, dropout=dropout,
        rate=0.4, adversary_embedding_dim=4, adversary_hidden_size=4, unk_id=5,
    )  # fmt: skip
    torch.manual_seed(0)
    model = build_sequence_vae(spec)
    state = model.state_dict()
    assert "decoder.embedding.weight" in state
    assert not any(key.startswith("masker.") or key == "drop_vector" for key in state)
    assert all(isinstance(value, torch.Tensor) for value in state.values())  # safetensors
    save_sequence_vae(model, spec, tmp_path / "model.pt")
    loaded, loaded_spec = load_sequence_vae(tmp_path / "model.pt")
    assert loaded_spec == spec and loaded.input_embedding.fill_id == 5
    assert loaded.fill == fill
    loaded_state = loaded.state_dict()
    assert list(loaded_state) == list(state)
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(loaded_state[key], value), key
    # Strict loading of the new keys into a fresh model (no remap involved).
    torch.manual_seed(1)
    build_sequence_vae(spec).load_state_dict(state)


# A learned fill vector and an adversary: every kind of key whose name changed across layouts.
LEARNED_FILL_SPEC = ModelSpec(
    vocab_size=20, embedding_dim=8, hidden_size=8, latent_dim=4, fill="learned",
    dropout="adversarial", rate=0.4, adversary_embedding_dim=4, adversary_hidden_size=4,
)  # fmt: skip


def test_old_keys_load_under_a_prefix_and_into_a_bare_decoder() -> None:
    # An AveragedModel (the recipe's EMA) loads its model's keys under "module.": the remap
    # must respect the prefix. A decoder saved before it was masked loads into the wrapper.
    spec = LEARNED_FILL_SPEC
    torch.manual_seed(0)
    source = build_sequence_vae(spec)
    with torch.no_grad():
        source.drop_vector.normal_()
    old = legacy_state_dict(source)
    assert {"drop_vector", "decoder.embedding.weight"} <= set(old)
    torch.manual_seed(1)
    ema = AveragedModel(build_sequence_vae(spec))
    ema_state = {"n_averaged": torch.tensor(3)}
    ema_state.update({f"module.{key}": value for key, value in old.items()})
    ema.load_state_dict(ema_state)
    for key, value in source.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(ema.module.state_dict()[key], value), key
    torch.manual_seed(2)
    target = build_sequence_vae(spec)
    decoder_state = {
        key[len("decoder.") :]: value for key, value in old.items() if key.startswith("decoder.")
    }
    # The old decoder had no masker: only the embedding's key changed name.
    missing, unexpected = target.decoder.load_state_dict(decoder_state, strict=False)
    assert unexpected == [] and all(key.startswith("embedding.") for key in missing)
    assert torch.equal(target.decoder.embedding.weight, source.decoder.embedding.weight)


def test_state_of_the_layout_in_between_loads_strictly() -> None:
    spec = LEARNED_FILL_SPEC
    torch.manual_seed(0)
    source = build_sequence_vae(spec)
    state = intermediate_state_dict(source)
    assert "decoder.embedding.embedding.weight" in state
    assert "decoder.embedding.weight" not in state
    torch.manual_seed(1)
    target = build_sequence_vae(spec)
    assert not torch.equal(target.decoder.embedding.weight, source.decoder.embedding.weight)
    target.load_state_dict(state)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_resume_state_of_the_old_layout_loads_strictly(tmp_path) -> None:
    # What recipes/seqvae_awd.py's resume does: model.load_state_dict(state["model"]).
    expected = MANIFEST["fixtures"]["double-lstm-learned-adversarial"]
    spec = ModelSpec(**expected["spec"])
    old = load_checkpoint(LEGACY / "double-lstm-learned-adversarial.pt")["state_dict"]
    save_checkpoint({"model": old}, tmp_path / "last.pt")
    torch.manual_seed(0)
    model = build_sequence_vae(spec)
    model.load_state_dict(load_checkpoint(tmp_path / "last.pt")["model"])
    assert torch.equal(model.drop_vector, old["drop_vector"])
    assert torch.equal(
        model.masker.score_network.head.weight, old["masker.score_network.head.weight"]
    )
