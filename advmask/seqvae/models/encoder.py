"""The inference network ``q(z|x)``: a one-layer LSTM over the sentence."""

from __future__ import annotations

import torch
from einops import repeat
from torch import Tensor, nn

from advmask.checks import check_tokens_lengths
from advmask.precision import full_precision
from advmask.seqvae.models._common import SequenceModule


class LSTMEncoder(SequenceModule):
    """Gaussian posterior ``q(z|x) = N(mean, diag(exp(logvar)))`` from the last LSTM state.

    The sentence is embedded, read by a one-layer LSTM, and the hidden state at each row's
    last valid token (``t = lengths - 1``; the LSTM is causal, so padding never reaches it) is
    mapped to ``[mean; logvar]`` by a linear layer without bias (the authors' wiring).

    Args:
        vocab_size: number of token ids, specials included.
        embedding_dim: size of the word embeddings (its own; not shared with the decoder).
        hidden_size: LSTM hidden size ``H``.
        latent_dim: size ``D`` of ``z``.
        init: ``"authors"`` (U(-0.01, 0.01) weights, U(-0.1, 0.1) embedding, as the paper's
            code) or ``"pytorch"`` (the layers' own defaults; see
            ``advmask.seqvae.models.INITS``). With small hidden sizes the
            authors' range leaves the encoder's output nearly independent of ``x`` (posterior
            means varying by ~1e-4 after a few epochs on the synthetic corpus, AU 0), so short
            runs collapse for a reason that has nothing to do with the decoder.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        hidden_size: int,
        latent_dim: int,
        init: str = "authors",
    ) -> None:
        super().__init__(vocab_size, embedding_dim, hidden_size, latent_dim, init)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, batch_first=True)
        self.to_posterior = nn.Linear(hidden_size, 2 * latent_dim, bias=False)
        self.reset_parameters()

    def forward(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior parameters of each sequence.

        Args:
            tokens: (B, T) integer ids ``[BOS, w_1..w_L, EOS, PAD..]``.
            lengths: (B,) integer number of non-padding tokens of each row (``L_b + 2``),
                each in ``[1, T]``. Only ``tokens[b, :lengths[b]]`` is read.

        Returns:
            ``(mean, logvar)``, each (B, D) in the embedding's dtype (float32 under bf16
            autocast, see :func:`advmask.precision.full_precision`).
        """
        tokens, lengths = check_tokens_lengths(
            tokens, lengths, vocab_size=self.vocab_size, min_length=1
        )
        return self._encode(tokens, lengths)

    def _encode(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`forward` of input already checked (by :class:`~advmask.seqvae.vae.SequenceVAE`,
        at its entry): no value check here."""
        if tokens.shape[0] == 0:
            raise ValueError(f"tokens must have at least one row, got shape {tuple(tokens.shape)}")
        # The LSTM is causal, so its state at t = lengths - 1 has read tokens[:lengths] only:
        # running it over the padded batch and gathering that state gives the packed result
        # without packing, which would run the unfused per-step kernel and copy the lengths
        # to the host.
        states, _ = self.lstm(self.embedding(tokens.long()))  # (B, T, H)
        last = lengths.to(torch.int64) - 1
        last_hidden = states.gather(1, repeat(last, "b -> b 1 h", h=states.shape[2])).squeeze(1)
        # In float32 under bf16 autocast: z and the KL are computed from these.
        mean, logvar = full_precision(self.to_posterior, last_hidden).chunk(2, dim=-1)
        return mean, logvar
