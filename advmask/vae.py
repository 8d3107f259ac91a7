"""A Gaussian sequence VAE whose decoder inputs can be masked.

Layout (SPEC §0.2): ``tokens`` (B, T) are ``[BOS, w_1..w_L, EOS, PAD..]`` and ``lengths`` (B,)
count the non-padding tokens, ``L_b + 2``. The decoder reads ``tokens[:, :-1]`` and predicts
``tokens[:, 1:]``: ``L_b + 1`` predictions per sequence (the words and EOS; BOS is not
predicted). Masking drops decoder *inputs* ``w_1..w_L``; BOS is never dropped, and the encoder
always sees the unmasked sentence.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn

from advmask.data.vocab import UNK_ID
from advmask.embedding import mask_embeddings
from advmask.metrics import gaussian_kl_per_dimension
from advmask.outputs import MaskerOutput
from advmask.schedules import free_bits_kl

FILL_MODES = ("zero", "unk", "learned")


@dataclass(frozen=True)
class VAEOutput:
    """One training or validation step of :class:`SequenceVAE`.

    Attributes:
        loss: scalar to minimise: ``mean_b(rec_b + kl_weight * kl_term_b) + regularizer``.
        reconstruction: (B,) negative log-likelihood of each sequence, summed over its
            ``L_b + 1`` predictions (nats), with one ``z ~ q(z|x)``.
        kl: (B,) ``KL(q(z|x_b) || N(0, I))`` (nats), never thresholded.
        masker: what the masker returned, or None when nothing was masked.
    """

    loss: Tensor
    reconstruction: Tensor
    kl: Tensor
    masker: MaskerOutput | None


class SequenceVAE(nn.Module):
    """Encoder ``q(z|x)``, autoregressive decoder ``p(x|z)`` and an optional input masker.

    Args:
        encoder: module mapping ``(tokens, lengths)`` to posterior ``(mean, logvar)``, each
            (B, D) (for example :class:`advmask.models.LSTMEncoder`).
        decoder: module with an ``embedding`` (:class:`torch.nn.Embedding`) and
            ``forward(embedded (B, T, E), z (B, D)) -> logits (B, T, V)`` (for example
            :class:`advmask.models.DoubleLSTMDecoder`).
        masker: :class:`advmask.AdversarialMasker`, :class:`advmask.UniformMasker` or None;
            applied in training mode only.
        fill: what a dropped input becomes: ``"zero"`` (the zero vector, the AWD authors'
            choice), ``"unk"`` (the embedding of the unknown token, Bowman et al.) or
            ``"learned"`` (a trainable vector).
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        masker: nn.Module | None = None,
        fill: str = "zero",
    ) -> None:
        super().__init__()
        if fill not in FILL_MODES:
            raise ValueError(f"fill must be one of {FILL_MODES}, got {fill!r}")
        self.encoder = encoder
        self.decoder = decoder
        self.masker = masker
        self.fill = fill
        embedding_dim = decoder.embedding.embedding_dim
        self.drop_vector = nn.Parameter(torch.zeros(embedding_dim)) if fill == "learned" else None

    def vae_parameters(self) -> list[nn.Parameter]:
        """Parameters of the encoder, the decoder and the fill vector (not the adversary's)."""
        masker_ids = {id(p) for p in self.masker.parameters()} if self.masker else set()
        return [p for p in self.parameters() if id(p) not in masker_ids]

    def posterior(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``q(z|x)`` as (mean, logvar), each (B, D)."""
        return self.encoder(tokens, lengths)

    def fill_vector(self) -> Tensor | None:
        """(E,) vector a dropped input is replaced by; None means the zero vector."""
        if self.fill == "unk":
            return self.decoder.embedding.weight[UNK_ID]
        return self.drop_vector

    def reconstruction_nll(
        self, tokens: Tensor, lengths: Tensor, z: Tensor, drop_mask: Tensor | None = None
    ) -> Tensor:
        """Negative log-likelihood ``-log p(x|z)`` per sequence.

        Args:
            tokens: (B, T) int64 ``[BOS, words, EOS, PAD..]``.
            lengths: (B,) int64 non-padding tokens per row (``L_b + 2``).
            z: (B, D) latent codes.
            drop_mask: optional (B, T - 1) float mask over decoder inputs, 1.0 = drop.

        Returns:
            (B,) nats, summed over the ``L_b + 1`` predictions of each row.
        """
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        embedded = self.decoder.embedding(inputs)
        if drop_mask is not None:
            embedded = mask_embeddings(embedded, drop_mask, self.fill_vector())
        logits = self.decoder(embedded, z)
        if logits.dtype not in (torch.float32, torch.float64):
            logits = logits.float()  # bf16 autocast: the loss is computed in float32
        token_nll = F.cross_entropy(rearrange(logits, "b t v -> b v t"), targets, reduction="none")
        steps = torch.arange(targets.shape[1], device=tokens.device)
        valid = steps.unsqueeze(0) < (lengths - 1).unsqueeze(1)
        return torch.where(valid, token_nll, torch.zeros_like(token_nll)).sum(1)

    def log_likelihood(
        self, tokens: Tensor, lengths: Tensor, z: Tensor, max_rows: int = 4096
    ) -> Tensor:
        """``log p(x_n | z_{s,n})`` for several latent samples per sequence, unmasked.

        Args:
            tokens: (N, T) int64 sequences.
            lengths: (N,) int64.
            z: (S, N, D) latent samples.
            max_rows: largest number of (sample, sequence) pairs decoded at once.

        Returns:
            (S, N) log-likelihoods in nats.
        """
        num_samples = z.shape[0]
        flat_tokens = repeat(tokens, "n t -> (s n) t", s=num_samples)
        flat_lengths = repeat(lengths, "n -> (s n)", s=num_samples)
        flat_z = rearrange(z, "s n d -> (s n) d")
        nll = torch.cat(
            [
                self.reconstruction_nll(t, ln, zz)
                for t, ln, zz in zip(
                    flat_tokens.split(max_rows),
                    flat_lengths.split(max_rows),
                    flat_z.split(max_rows),
                    strict=True,
                )
            ]
        )
        return -rearrange(nll, "(s n) -> s n", s=num_samples)

    def forward(
        self, tokens: Tensor, lengths: Tensor, kl_weight: float = 1.0, free_bits: float = 0.0
    ) -> VAEOutput:
        """Negative ELBO of a batch, with decoder inputs masked in training mode.

        Args:
            tokens: (B, T) int64 ``[BOS, words, EOS, PAD..]``.
            lengths: (B,) int64 non-padding tokens per row (``L_b + 2``, at least 2).
            kl_weight: ``beta``, the weight of the KL term (annealed during training).
            free_bits: if > 0, Kingma et al.'s free bits per latent dimension (nats) in the
                loss; the reported ``kl`` stays unthresholded.

        Returns:
            A :class:`VAEOutput`.
        """
        mean, logvar = self.posterior(tokens, lengths)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        masker_output = None
        drop_mask = None
        if self.training and self.masker is not None:
            inputs = tokens[:, :-1]
            is_bos = torch.arange(inputs.shape[1], device=tokens.device) == 0
            masker_output = self.masker(inputs, lengths - 1, protected=is_bos)
            drop_mask = masker_output.mask
        reconstruction = self.reconstruction_nll(tokens, lengths, z, drop_mask)
        kl_per_dim = gaussian_kl_per_dimension(mean, logvar)
        kl = kl_per_dim.sum(-1)
        kl_term = free_bits_kl(kl_per_dim, free_bits) if free_bits > 0 else kl.mean()
        loss = reconstruction.mean() + kl_weight * kl_term
        if masker_output is not None:
            loss = loss + masker_output.regularizer
        return VAEOutput(loss=loss, reconstruction=reconstruction, kl=kl, masker=masker_output)
