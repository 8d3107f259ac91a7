"""Pieces shared by the encoder and the decoders: initialisation and input checks."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from advmask.checks import FLOAT_DTYPES, check_rate, check_tensor

PAD_ID = 0
"""Id of the padding token; its embedding row is kept at zero."""

WEIGHT_INIT = 0.01
"""Half-width of the uniform initialisation of every weight and bias."""

EMBEDDING_INIT = 0.1
"""Half-width of the uniform initialisation of the word embeddings."""


def check_size(value: object, name: str) -> int:
    """Check a positive integer size (``bool`` is rejected)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return value


def check_dropout(value: object, name: str) -> float:
    """Check a dropout probability in [0, 1)."""
    rate = check_rate(value, name)
    if rate == 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return rate


@torch.no_grad()
def init_uniform(module: nn.Module, embedding: nn.Embedding | None) -> None:
    """The authors' initialisation: U(-0.01, 0.01) weights, U(-0.1, 0.1) embedding.

    The padding row of ``embedding`` is zeroed again afterwards, so that ``padding_idx`` keeps
    meaning "the zero vector" as it does after PyTorch's own initialisation.
    """
    for parameter in module.parameters():
        if embedding is None or parameter is not embedding.weight:
            parameter.uniform_(-WEIGHT_INIT, WEIGHT_INIT)
    if embedding is not None:
        embedding.weight.uniform_(-EMBEDDING_INIT, EMBEDDING_INIT)
        if embedding.padding_idx is not None:
            embedding.weight[embedding.padding_idx].zero_()


def check_decoder_inputs(
    embedded: object, z: object, embedding_dim: int, latent_dim: int
) -> tuple[Tensor, Tensor]:
    """Check ``embedded`` (B, T, E) and ``z`` (B, D) against each other and the decoder's sizes.

    Shape-only checks: nothing here reads tensor values, so nothing synchronises with a GPU.
    """
    embedded = check_tensor("embedded", embedded, ndim=3, dtypes=FLOAT_DTYPES)
    z = check_tensor("z", z, ndim=2, dtypes=FLOAT_DTYPES)
    if embedded.shape[2] != embedding_dim:
        raise ValueError(
            f"embedded must have last dimension embedding_dim={embedding_dim}, got shape "
            f"{tuple(embedded.shape)}"
        )
    if z.shape[1] != latent_dim:
        raise ValueError(
            f"z must have last dimension latent_dim={latent_dim}, got shape {tuple(z.shape)}"
        )
    if z.shape[0] != embedded.shape[0]:
        raise ValueError(
            f"embedded and z must have the same batch size: embedded has shape "
            f"{tuple(embedded.shape)}, z has shape {tuple(z.shape)}"
        )
    if z.device != embedded.device:
        raise ValueError(f"z is on {z.device} but embedded is on {embedded.device}")
    return embedded, z
