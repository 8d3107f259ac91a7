"""The standard LSTM decoder of text VAEs (He et al. 2019, ``dec_lstm.py`` conventions)."""

from __future__ import annotations

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from advmask.checks import check_decoder_inputs
from advmask.row_draws import RowDraws
from advmask.seqvae.models._common import SequenceDecoder, row_dropout


class LSTMDecoder(SequenceDecoder):
    """``p(x|z)``: one LSTM whose every input is ``[e_t; z]``, started from ``z``.

    Equations, with ``e~_t = dropout_in(e_t)`` (``e_t`` possibly masked by the caller)::

        c_{-1} = W_init z (no bias),  h_{-1} = tanh(c_{-1})
        (h_t, c_t) = LSTM([e~_t; z], (h_{t-1}, c_{t-1}))
        logits_t = W_out dropout_out(h_t)   (no bias)

    The whole sequence runs through one :class:`torch.nn.LSTM` call (the fused cuDNN / oneDNN
    path). Step ``t`` reads inputs ``0..t`` only, so padded steps after a row's end do not
    change its valid logits.

    Args:
        vocab_size: number of token ids ``V``, specials included.
        embedding_dim: word embedding size ``E``.
        hidden_size: LSTM hidden size ``H``.
        latent_dim: size ``D`` of ``z``.
        dropout_in: dropout probability on the input embeddings, in [0, 1).
        dropout_out: dropout probability on the hidden states before the output layer.
        init: ``"authors"`` (U(-0.01, 0.01) weights and biases, U(-0.1, 0.1) embedding; the
            default) or ``"pytorch"`` (the layers' own defaults), as in
            ``advmask.seqvae.models.INITS``. Under Adam the authors' range keeps
            the decoder collapsed (docs: results); under SGD both behave alike.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        hidden_size: int,
        latent_dim: int,
        *,
        dropout_in: float = 0.5,
        dropout_out: float = 0.5,
        init: str = "authors",
    ) -> None:
        super().__init__(
            vocab_size, embedding_dim, hidden_size, latent_dim, dropout_in, dropout_out, init
        )
        self.latent_to_cell = nn.Linear(latent_dim, hidden_size, bias=False)
        self.lstm = nn.LSTM(embedding_dim + latent_dim, hidden_size, batch_first=True)
        self.output = nn.Linear(hidden_size, vocab_size, bias=False)
        self.reset_parameters()

    def forward(self, embedded: Tensor, z: Tensor, *, row_draws: RowDraws | None = None) -> Tensor:
        """Next-token logits for every step.

        Args:
            embedded: (B, T, E) float decoder-input embeddings (step ``t`` predicts token
                ``t + 1``), already masked by the caller.
            z: (B, D) float latent codes.
            row_draws: the rows of a global batch these ``B`` rows are (torchrun): the dropout
                masks are then those rows of the global batch's. None: this batch's own.

        Returns:
            (B, T, V) logits; step ``t`` depends on ``embedded[:, :t + 1]`` and ``z`` only.
        """
        embedded, z = check_decoder_inputs(embedded, z, self.embedding_dim, self.latent_dim)
        steps = embedded.shape[1]
        if steps == 0:  # nn.LSTM rejects empty sequences; there is nothing to predict
            return embedded.new_zeros(embedded.shape[0], 0, self.vocab_size)
        embedded = row_dropout(self.dropout_in, embedded, row_draws)
        inputs = torch.cat([embedded, repeat(z, "b d -> b t d", t=steps)], dim=-1)
        cell = self.latent_to_cell(z)
        state = (rearrange(torch.tanh(cell), "b h -> 1 b h"), rearrange(cell, "b h -> 1 b h"))
        hidden, _ = self.lstm(inputs, state)
        return self.output(row_dropout(self.dropout_out, hidden, row_draws))
