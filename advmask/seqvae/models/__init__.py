"""Encoder and decoders of the sequence VAE.

* :class:`LSTMEncoder` — ``q(z|x)`` from a one-layer LSTM over the sentence.
* :class:`LSTMDecoder` — the standard text-VAE decoder (``z`` concatenated to every input).
* :class:`DoubleLSTMDecoder` — the AWD authors' decoder (two cells per step), with
  :func:`double_lstm_reference`, its slow oracle.
* :class:`TransformerDecoder` — a GPT-style causal Transformer (``z`` as a prefix token and
  added to every input).

``INITS`` names the two initialisations of the encoder and the LSTM decoders.
:data:`DECODERS` maps the names used in configurations to the decoder classes; every decoder
takes ``(vocab_size, embedding_dim, hidden_size, latent_dim, *, dropout_in, dropout_out)``
(the Transformer also keyword options of its own), has
an ``embedding`` attribute and maps ``(embedded (B, T, E), z (B, D))`` to logits (B, T, V).
"""

from __future__ import annotations

from torch import nn

from advmask.seqvae.models._common import INITS
from advmask.seqvae.models.double_lstm import DoubleLSTMDecoder, double_lstm_reference
from advmask.seqvae.models.encoder import LSTMEncoder
from advmask.seqvae.models.lstm_decoder import LSTMDecoder
from advmask.seqvae.models.transformer_decoder import TransformerDecoder

DECODERS: dict[str, type[nn.Module]] = {
    "lstm": LSTMDecoder,
    "double-lstm": DoubleLSTMDecoder,
    "transformer": TransformerDecoder,
}
"""Decoder classes by configuration name."""

__all__ = [
    "DECODERS",
    "INITS",
    "DoubleLSTMDecoder",
    "LSTMDecoder",
    "LSTMEncoder",
    "TransformerDecoder",
    "double_lstm_reference",
]
