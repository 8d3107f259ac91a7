"""Build a :class:`~advmask.seqvae.vae.SequenceVAE` from a plain specification; load a saved one.

The specification is stored next to the weights, so a checkpoint written by the recipe loads
with :func:`load_sequence_vae` alone, without the recipe's code.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from advmask.maskers import AdversarialMasker, UniformMasker
from advmask.seqvae.data.vocab import PAD_ID, UNK_ID
from advmask.seqvae.models import DECODERS, LSTMEncoder
from advmask.seqvae.vae import SequenceVAE
from advmask.training.checkpoint import load_checkpoint, save_checkpoint

DROPOUT_KINDS = ("none", "uniform", "adversarial")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a sequence VAE (sizes, decoder kind, masker).

    Attributes:
        vocab_size: number of token ids, specials included.
        embedding_dim: word embedding size (encoder and decoder).
        hidden_size: LSTM hidden size (encoder and decoder); the Transformer decoder's width.
        latent_dim: size of ``z``.
        decoder: a key of :data:`advmask.seqvae.models.DECODERS` (``"lstm"``, ``"double-lstm"`` or
            ``"transformer"``).
        dropout_in: embedding dropout of the decoder.
        dropout_out: output dropout of the decoder.
        fill: what a dropped input becomes (``"zero"``, ``"unk"`` or ``"learned"``).
        dropout: ``"none"``, ``"uniform"`` (exactly-K uniform word dropout) or ``"adversarial"``.
        rate: word-dropout rate.
        kl_weight: ``lambda``, weight of the adversary's KL regulariser.
        relaxation: top-K relaxation of the adversary (see :mod:`advmask.relaxations`).
        relaxation_options: its keyword settings (e.g. ``{"temperature": 0.5}``).
        std: ``"softplus"`` (learned, the default, as in :class:`advmask.AdversarialMasker`)
            or ``"fixed"`` (unit variance, the authors' code and the recipe's default).
        adversary_embedding_dim: embedding size of the score network.
        adversary_hidden_size: hidden size of the score network.
        encoder_init: ``"authors"`` or ``"pytorch"`` (see
            :class:`advmask.seqvae.models.LSTMEncoder`).
        decoder_init: the same choice for the LSTM decoders (``"authors"``, the paper's code,
            or ``"pytorch"``); the Transformer decoder has GPT-2's initialisation and takes
            ``"authors"`` only.
        transformer_layers: blocks of the Transformer decoder (ignored by the LSTMs).
        transformer_heads: attention heads per block; must divide ``hidden_size``.
        transformer_max_length: longest decoder input the Transformer's learned positions
            cover.
        transformer_dropout: dropout inside the Transformer blocks.
        unk_id: the unknown-token id of the vocabulary, whose embedding ``fill="unk"`` uses
            (:data:`advmask.seqvae.data.vocab.UNK_ID`, the id every
            :mod:`advmask.seqvae.data` vocabulary gives ``<unk>``; checkpoints saved without
            this field get it too).
    """

    vocab_size: int
    embedding_dim: int = 512
    hidden_size: int = 1024
    latent_dim: int = 32
    decoder: str = "double-lstm"
    dropout_in: float = 0.5
    dropout_out: float = 0.5
    fill: str = "zero"
    dropout: str = "none"
    rate: float = 0.0
    kl_weight: float = 1.0
    relaxation: str = "euclidean"
    std: str = "softplus"
    adversary_embedding_dim: int = 512
    adversary_hidden_size: int = 1024
    encoder_init: str = "authors"
    decoder_init: str = "authors"
    transformer_layers: int = 2
    transformer_heads: int = 4
    transformer_max_length: int = 512
    transformer_dropout: float = 0.1
    unk_id: int = UNK_ID
    relaxation_options: dict[str, Any] = field(default_factory=dict)


def _transformer_options(spec: ModelSpec) -> dict[str, Any]:
    return {
        "num_layers": spec.transformer_layers,
        "num_heads": spec.transformer_heads,
        "max_length": spec.transformer_max_length,
        "dropout": spec.transformer_dropout,
    }


def _no_options(spec: ModelSpec) -> dict[str, Any]:
    return {}


def _lstm_options(spec: ModelSpec) -> dict[str, Any]:
    return {"init": spec.decoder_init}


DECODER_OPTIONS: dict[str, Callable[[ModelSpec], dict[str, Any]]] = {
    "lstm": _lstm_options,
    "double-lstm": _lstm_options,
    "transformer": _transformer_options,
}
"""Keyword options of a decoder beyond the common ones, read from the spec, by decoder name."""


def build_sequence_vae(spec: ModelSpec) -> SequenceVAE:
    """A freshly initialised model for ``spec``."""
    if spec.dropout not in DROPOUT_KINDS:
        raise ValueError(f"dropout must be one of {DROPOUT_KINDS}, got {spec.dropout!r}")
    if spec.decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {sorted(DECODERS)}, got {spec.decoder!r}")
    if spec.decoder == "transformer" and spec.decoder_init != "authors":
        raise ValueError(
            "decoder_init applies to the LSTM decoders; the Transformer decoder keeps GPT-2's "
            f"initialisation, got decoder_init={spec.decoder_init!r}"
        )
    encoder = LSTMEncoder(
        spec.vocab_size, spec.embedding_dim, spec.hidden_size, spec.latent_dim, spec.encoder_init
    )
    decoder = DECODERS[spec.decoder](
        spec.vocab_size,
        spec.embedding_dim,
        spec.hidden_size,
        spec.latent_dim,
        dropout_in=spec.dropout_in,
        dropout_out=spec.dropout_out,
        **DECODER_OPTIONS.get(spec.decoder, _no_options)(spec),
    )
    masker: torch.nn.Module | None = None
    if spec.dropout == "uniform":
        masker = UniformMasker(rate=spec.rate)
    elif spec.dropout == "adversarial":
        masker = AdversarialMasker(
            vocab_size=spec.vocab_size,
            rate=spec.rate,
            kl_weight=spec.kl_weight,
            relaxation=spec.relaxation,
            relaxation_options=spec.relaxation_options,
            std=spec.std,
            embedding_dim=spec.adversary_embedding_dim,
            hidden_size=spec.adversary_hidden_size,
            padding_idx=PAD_ID,  # the core has no padding id by default
        )
    return SequenceVAE(encoder, decoder, masker, fill=spec.fill, unk_id=spec.unk_id)


def save_sequence_vae(
    model: SequenceVAE, spec: ModelSpec, path: str | os.PathLike[str], **extra: Any
) -> None:
    """Write ``spec`` and the weights atomically; ``extra`` entries are stored alongside."""
    save_checkpoint({"spec": asdict(spec), "state_dict": model.state_dict(), **extra}, path)


def load_sequence_vae(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> tuple[SequenceVAE, ModelSpec]:
    """Rebuild the model saved at ``path`` by :func:`save_sequence_vae`, in eval mode.

    Checkpoints of earlier versions load too: a spec without the fields added since gets
    their defaults, and the state-dict keys of the layout before the masking moved into the
    decoder's :class:`~advmask.MaskedEmbedding` are renamed by
    :meth:`SequenceVAE.load_state_dict <torch.nn.Module.load_state_dict>`.
    """
    return sequence_vae_from_state(load_checkpoint(path, map_location=map_location))


def sequence_vae_from_state(state: dict[str, Any]) -> tuple[SequenceVAE, ModelSpec]:
    """The model of a checkpoint already loaded (:func:`load_sequence_vae` without the file),
    so that its other entries (``epoch``, ``step``) are read from the same file as the
    weights."""
    # "fixed" was ModelSpec's default before 0.1: a spec saved without it meant that.
    spec = ModelSpec(**{"std": "fixed", **state["spec"]})
    model = build_sequence_vae(spec)
    model.load_state_dict(state["state_dict"])
    return model.eval(), spec
