"""A GPT-style causal Transformer decoder for the sequence VAE, built from ``torch.nn``."""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from advmask.checks import check_decoder_inputs, check_dropout, check_int
from advmask.row_draws import RowDraws
from advmask.seqvae.data.vocab import PAD_ID
from advmask.seqvae.models._common import SequenceDecoder, row_dropout

INIT_STD = 0.02
"""Standard deviation of the normal initialisation of weights and embeddings (GPT-2)."""


class TransformerDecoder(SequenceDecoder):
    """``p(x|z)``: pre-norm causal self-attention over ``[z-token, e_0, ..., e_{T-1}]``.

    ``z`` reaches the decoder twice: as a *prefix* token that every step can attend to (a
    one-slot memory) and *added to every input*, so that no step depends on attention alone to
    see it. Equations, with ``e~_t = dropout_in(e_t)`` (``e_t`` possibly masked by the caller)
    and learned positions ``p_0..p_T``::

        u_prefix = W_prefix z + p_0
        u_t      = W_in e~_t + W_add z + p_{t+1}                  (t = 0..T-1)
        h        = LayerNorm(Blocks([u_prefix, u_0, ..., u_{T-1}]))   (causal attention)
        logits_t = W_out dropout_out(h_{t+1})                      (no bias)

    ``Blocks`` is ``num_layers`` pre-norm :class:`torch.nn.TransformerEncoderLayer` (GELU,
    feed-forward ``4 H``) under a causal mask (``is_causal=True``): position ``t + 1`` attends
    to the prefix and inputs ``0..t`` only, so padded steps after a row's end do not change
    its valid logits, as in the LSTM decoders. Word embedding, positions and weights start
    from N(0, 0.02) (GPT-2); the embedding's padding row starts at zero.

    Args:
        vocab_size: number of token ids ``V``, specials included.
        embedding_dim: word embedding size ``E``.
        hidden_size: model width ``H`` (attention and residual stream).
        latent_dim: size ``D`` of ``z``.
        dropout_in: dropout probability on the input embeddings, in [0, 1).
        dropout_out: dropout probability on the final states before the output layer.
        num_layers: number of Transformer blocks.
        num_heads: attention heads per block; must divide ``hidden_size``.
        max_length: longest input sequence ``T`` (the learned positions).
        dropout: dropout inside the blocks (attention weights and residual branches).

    Example:
        >>> decoder = TransformerDecoder(50, 8, 16, 4, num_heads=2)
        >>> decoder(torch.randn(3, 7, 8), torch.randn(3, 4)).shape
        torch.Size([3, 7, 50])
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
        num_layers: int = 2,
        num_heads: int = 4,
        max_length: int = 512,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(
            vocab_size, embedding_dim, hidden_size, latent_dim, dropout_in, dropout_out
        )
        self.num_layers = check_int(num_layers, "num_layers")
        self.num_heads = check_int(num_heads, "num_heads")
        self.max_length = check_int(max_length, "max_length")
        if hidden_size % num_heads:
            raise ValueError(
                f"num_heads must divide hidden_size={hidden_size}, got num_heads={num_heads}"
            )
        self.input_projection = nn.Linear(embedding_dim, hidden_size)
        self.latent_to_input = nn.Linear(latent_dim, hidden_size, bias=False)
        self.latent_to_prefix = nn.Linear(latent_dim, hidden_size)
        # Position 0 is the prefix; input t sits at position t + 1.
        self.position = nn.Embedding(max_length + 1, hidden_size)
        layer = nn.TransformerEncoderLayer(
            hidden_size,
            num_heads,
            4 * hidden_size,
            dropout=check_dropout(dropout, "dropout"),
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        # No nested tensors: they need a padding mask and bypass the causal mask's fast path.
        self.blocks = nn.TransformerEncoder(
            layer, num_layers, norm=nn.LayerNorm(hidden_size), enable_nested_tensor=False
        )
        self.output = nn.Linear(hidden_size, vocab_size, bias=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """N(0, 0.02) weights and embeddings, zero biases, unit LayerNorms (GPT-2).

        The output projection of each residual branch is scaled by ``1 / sqrt(2 L)``, so that
        the residual stream's variance does not grow with depth; the padding row is zero.
        """
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=INIT_STD)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for layer in self.blocks.layers:
            nn.init.normal_(layer.self_attn.in_proj_weight, std=INIT_STD)
            nn.init.zeros_(layer.self_attn.in_proj_bias)
            residual_std = INIT_STD / math.sqrt(2 * self.num_layers)
            nn.init.normal_(layer.self_attn.out_proj.weight, std=residual_std)
            nn.init.normal_(layer.linear2.weight, std=residual_std)
        self.embedding.weight[PAD_ID].zero_()

    def forward(self, embedded: Tensor, z: Tensor, *, row_draws: RowDraws | None = None) -> Tensor:
        """Next-token logits for every step.

        Args:
            embedded: (B, T, E) float decoder-input embeddings (step ``t`` predicts token
                ``t + 1``), already masked by the caller; ``T <= max_length``.
            z: (B, D) float latent codes.
            row_draws: the rows of a global batch these ``B`` rows are (torchrun): the masks
                of ``dropout_in`` and ``dropout_out`` are then those rows of the global
                batch's. The blocks' own dropout (``dropout``, inside PyTorch's layers and its
                fused attention) is not told: under torchrun with ``dropout > 0`` each rank
                draws it for its own rows, valid dropout but not one process's draws.

        Returns:
            (B, T, V) logits; step ``t`` depends on ``embedded[:, :t + 1]`` and ``z`` only.
        """
        embedded, z = check_decoder_inputs(embedded, z, self.embedding_dim, self.latent_dim)
        steps = embedded.shape[1]
        if steps > self.max_length:
            raise ValueError(
                f"embedded has {steps} steps, more than max_length={self.max_length}; build "
                "the decoder with a larger max_length"
            )
        inputs = self.input_projection(row_dropout(self.dropout_in, embedded, row_draws))
        inputs = inputs + rearrange(self.latent_to_input(z), "b h -> b 1 h")
        prefix = rearrange(self.latent_to_prefix(z), "b h -> b 1 h")
        sequence = torch.cat([prefix, inputs], dim=1)
        sequence = sequence + self.position.weight[: steps + 1]
        causal = nn.Transformer.generate_square_subsequent_mask(
            steps + 1, device=sequence.device, dtype=sequence.dtype
        )
        hidden = self.blocks(sequence, mask=causal, is_causal=True)
        return self.output(row_dropout(self.dropout_out, hidden[:, 1:], row_draws))
