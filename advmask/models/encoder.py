"""The inference network ``q(z|x)``: a one-layer LSTM over the sentence (SPEC §15.4)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from advmask._checks import INT_DTYPES, check_tensor
from advmask.models._common import PAD_ID, check_size, init_uniform

ENCODER_INITS = ("authors", "pytorch")


class LSTMEncoder(nn.Module):
    """Gaussian posterior ``q(z|x) = N(mean, diag(exp(logvar)))`` from the last LSTM state.

    The sentence is embedded, read by a one-layer LSTM over its valid tokens only (the
    sequence is packed, so padding never enters the recurrence), and the last hidden state of
    each row is mapped to ``[mean; logvar]`` by a linear layer without bias (the authors'
    wiring).

    Args:
        vocab_size: number of token ids, specials included.
        embedding_dim: size of the word embeddings (its own; not shared with the decoder).
        hidden_size: LSTM hidden size ``H``.
        latent_dim: size ``D`` of ``z``.
        init: ``"authors"`` (U(-0.01, 0.01) weights, U(-0.1, 0.1) embedding, as the paper's
            code) or ``"pytorch"`` (the layers' own defaults). With small hidden sizes the
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
        super().__init__()
        self.vocab_size = check_size(vocab_size, "vocab_size")
        self.embedding_dim = check_size(embedding_dim, "embedding_dim")
        self.hidden_size = check_size(hidden_size, "hidden_size")
        self.latent_dim = check_size(latent_dim, "latent_dim")
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD_ID)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, batch_first=True)
        self.to_posterior = nn.Linear(hidden_size, 2 * latent_dim, bias=False)
        if init not in ENCODER_INITS:
            raise ValueError(f"init must be one of {ENCODER_INITS}, got {init!r}")
        self.init = init
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise: the authors' uniform ranges, or the layers' own defaults."""
        if self.init == "authors":
            init_uniform(self, self.embedding)
            return
        for layer in (self.embedding, self.lstm, self.to_posterior):
            layer.reset_parameters()

    def forward(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior parameters of each sequence.

        Args:
            tokens: (B, T) integer ids ``[BOS, w_1..w_L, EOS, PAD..]``.
            lengths: (B,) integer number of non-padding tokens of each row (``L_b + 2``),
                each in ``[1, T]``. Only ``tokens[b, :lengths[b]]`` is read.

        Returns:
            ``(mean, logvar)``, each (B, D) in the embedding's dtype.
        """
        tokens = check_tensor("tokens", tokens, ndim=2, dtypes=INT_DTYPES)
        lengths = check_tensor("lengths", lengths, ndim=1, dtypes=INT_DTYPES)
        if lengths.shape[0] != tokens.shape[0]:
            raise ValueError(
                f"lengths must have one entry per row of tokens: tokens has shape "
                f"{tuple(tokens.shape)}, lengths has shape {tuple(lengths.shape)}"
            )
        if tokens.shape[0] == 0:
            raise ValueError(f"tokens must have at least one row, got shape {tuple(tokens.shape)}")
        # Packing needs the lengths on the host anyway; check them there, in one transfer.
        host_lengths = lengths.detach().to("cpu", dtype=torch.int64)
        low, high = int(host_lengths.min()), int(host_lengths.max())
        if low < 1 or high > tokens.shape[1]:
            bad = low if low < 1 else high
            raise ValueError(
                f"lengths must be in [1, T={tokens.shape[1]}] (T = tokens.shape[1]), got {bad}"
            )
        embedded = self.embedding(tokens.long())
        packed = pack_padded_sequence(
            embedded, host_lengths, batch_first=True, enforce_sorted=False
        )
        # With enforce_sorted=False, h_n comes back in the caller's row order.
        _, (last_hidden, _) = self.lstm(packed)
        mean, logvar = self.to_posterior(last_hidden[-1]).chunk(2, dim=-1)
        return mean, logvar
