"""A Gaussian sequence VAE whose decoder inputs can be masked.

Layout: ``tokens`` (B, T) are ``[BOS, w_1..w_L, EOS, PAD..]`` and ``lengths`` (B,)
count the non-padding tokens, ``L_b + 2``. The decoder reads ``tokens[:, :-1]`` and predicts
``tokens[:, 1:]``: ``L_b + 1`` predictions per sequence (the words and EOS; BOS is not
predicted). Masking drops decoder *inputs* ``w_1..w_L``; BOS is never dropped, and the encoder
always sees the unmasked sentence.

The masking itself is :class:`advmask.MaskedEmbedding`'s, the wrapper that
:func:`advmask.mask_input_embeddings` puts into any decoder: the model installs it as the
decoder's ``embedding``, and the fill (zero, ``<unk>`` or a learned vector) and the masker live
there. Checkpoints of the two earlier layouts (the masker and the drop vector on the model;
the embedding's weight under ``decoder.embedding.embedding.weight``) load through key remaps.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from advmask.adapters import mask_input_embeddings
from advmask.checks import check_tokens_lengths
from advmask.embedding import MaskedEmbedding, rename_state_dict_keys
from advmask.outputs import MaskerOutput
from advmask.row_draws import RowDraws
from advmask.seqvae.decoder_inputs import decoder_inputs
from advmask.seqvae.gaussian import gaussian_kl_per_dimension
from advmask.seqvae.low_precision_loss import low_precision_cross_entropy
from advmask.seqvae.schedules import free_bits_kl

DEFAULT_UNK_ID = 3
"""The ``<unk>`` id of :mod:`advmask.seqvae.data` vocabularies (``PAD, BOS, EOS, UNK`` first),
the default of ``fill="unk"``; a test keeps it equal to
:data:`advmask.seqvae.data.vocab.UNK_ID`.
Written out rather than imported so that the model does not depend on the data package."""

DEFAULT_MEMORY_BUDGET = 256 * 2**20
"""Bytes for one chunk in :meth:`SequenceVAE.log_likelihood` (the peak stays below twice)."""


def _current_key(name: str) -> str | None:
    """Where a state-dict key of the earlier layout is now, or None if it is not one.

    The masker and the learned drop vector were the model's own (``masker.*``,
    ``drop_vector``); they now belong to the decoder's :class:`~advmask.MaskedEmbedding`.
    (``decoder.embedding.embedding.weight``, the layout in between, is renamed by the wrapper
    itself.)
    """
    if name == "drop_vector" or name.startswith("masker."):
        return f"decoder.embedding.{name}"
    return None


def _is_id(value: object, vocab_size: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < vocab_size


def _renamed_keywords(keywords: dict[str, object]) -> str:
    name, value = next(iter(keywords.items()))
    if name == "kl_weight":  # beta's old name; kl_weight now means the adversary's lambda only
        return f"SequenceVAE.forward: kl_weight is now called beta, got kl_weight={value!r}"
    return f"SequenceVAE.forward got an unexpected keyword argument {name!r}"


PosteriorRefinement = Callable[..., tuple[Tensor, Tensor]]
"""``refine(tokens, lengths, embedded, mean, logvar) -> (mean, logvar)``, with the keyword
``row_draws=`` when :meth:`SequenceVAE.forward` is given one: see there."""


@dataclass(frozen=True)
class VAEOutput:
    """One training or validation step of :class:`SequenceVAE`.

    Attributes:
        loss: scalar to minimise: ``mean_b(rec_b + beta * kl_term_b) + regularizer``.
        reconstruction: (B,) negative log-likelihood of each sequence, summed over its
            ``L_b + 1`` predictions (nats), with one ``z ~ q(z|x)``.
        kl: (B,) ``KL(q(z|x_b) || N(0, I))`` (nats), never thresholded.
        masker: what the masker returned (``mask`` (B, T - 1) float, 1.0 = dropped input), or
            None when nothing was masked.
    """

    loss: Tensor
    reconstruction: Tensor
    kl: Tensor
    masker: MaskerOutput | None


class SequenceVAE(nn.Module):
    """Encoder ``q(z|x)``, autoregressive decoder ``p(x|z)`` and an optional input masker.

    The decoder's ``embedding`` is replaced by a :class:`~advmask.MaskedEmbedding` (with
    :func:`~advmask.mask_input_embeddings`) that shares its weight and holds ``masker`` and
    the fill; :attr:`masker`, :attr:`fill`, :attr:`drop_vector` and :meth:`fill_vector` read
    them from there. State-dict keys are those of that layout (``decoder.embedding.weight``,
    as for the plain decoder, ``decoder.embedding.masker.*``, ``decoder.embedding.drop_vector``);
    a state dict with the earlier keys (``masker.*`` and ``drop_vector`` on the model, or
    ``decoder.embedding.embedding.weight``) loads too.

    Args:
        encoder: module mapping ``(tokens, lengths)`` to posterior ``(mean, logvar)``, each
            (B, D) (for example :class:`advmask.seqvae.models.LSTMEncoder`).
        decoder: module with an ``embedding`` (:class:`torch.nn.Embedding`, not yet masked)
            and ``forward(embedded (B, T, E), z (B, D)) -> logits (B, T, V)`` (for example
            :class:`advmask.seqvae.models.DoubleLSTMDecoder`).
        masker: :class:`advmask.AdversarialMasker`, :class:`advmask.UniformMasker` or None;
            applied in training mode only.
        fill: what a dropped input becomes: ``"zero"`` (the zero vector, the AWD authors'
            choice), ``"unk"`` (the embedding of the unknown token, Bowman et al.) or
            ``"learned"`` (a trainable vector, initialised at zero).
        unk_id: the unknown-token id of the decoder's vocabulary, used by ``fill="unk"``
            (default :data:`DEFAULT_UNK_ID`;
            :func:`~advmask.seqvae.factory.build_sequence_vae` passes ``ModelSpec.unk_id``).

    Raises:
        ValueError: if ``fill`` is not a fill mode, ``unk_id`` is not an id of the decoder's
            vocabulary when ``fill="unk"``, or the decoder's embedding is already masked.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        masker: nn.Module | None = None,
        fill: str = "zero",
        unk_id: int = DEFAULT_UNK_ID,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        # The one masking path: the wrapper the README promotes for any decoder. It becomes
        # decoder.embedding, so the masker and the drop vector are submodules of the decoder.
        vocab_size = getattr(getattr(decoder, "embedding", None), "num_embeddings", None)
        if fill == "unk" and vocab_size is not None and not _is_id(unk_id, vocab_size):
            raise ValueError(
                f'unk_id must be an id in [0, {vocab_size}) when fill="unk", got {unk_id!r}'
            )
        # "unk" is this model's name for the token fill with its vocabulary's <unk> id.
        mask_input_embeddings(
            decoder,
            masker,
            fill="token" if fill == "unk" else fill,
            fill_id=unk_id,
            attribute="embedding",
        )

    @property
    def input_embedding(self) -> MaskedEmbedding:
        """The decoder's masked input embedding (``decoder.embedding``)."""
        return self.decoder.embedding

    @property
    def masker(self) -> nn.Module | None:
        """The masker of the decoder's inputs, or None (no word dropout)."""
        return self.input_embedding.masker

    @property
    def fill(self) -> str:
        """The fill mode, ``"zero"``, ``"unk"`` or ``"learned"`` (what a dropped input becomes)."""
        fill = self.input_embedding.fill
        return "unk" if fill == "token" else fill

    @property
    def drop_vector(self) -> nn.Parameter | None:
        """(E,) the learned fill (``fill="learned"``), else None."""
        return self.input_embedding.drop_vector

    def vae_parameters(self) -> list[nn.Parameter]:
        """Parameters of the encoder, the decoder and the fill vector (not the adversary's).

        In the order of the earlier layout, the drop vector last: optimiser states saved then
        index parameters by position, and gradient clipping sums their norms in this order.
        """
        masker_ids = {id(p) for p in self.masker.parameters()} if self.masker else set()
        drop_vector = self.drop_vector
        parameters = [
            p for p in self.parameters() if id(p) not in masker_ids and p is not drop_vector
        ]
        return parameters if drop_vector is None else [*parameters, drop_vector]

    def posterior(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``q(z|x)`` as (mean, logvar), each (B, D)."""
        return self.encoder(tokens, lengths)

    def _posterior_of_checked(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`posterior` of input :meth:`forward` has checked: the encoder's unchecked path
        where it has one (:class:`~advmask.seqvae.models.LSTMEncoder`), else its call."""
        encode = getattr(self.encoder, "_encode", self.encoder)
        return encode(tokens, lengths)

    def fill_vector(self) -> Tensor | None:
        """(E,) vector a dropped input is replaced by; None means the zero vector."""
        return self.input_embedding.fill_vector()

    def reconstruction_nll(
        self, tokens: Tensor, lengths: Tensor, z: Tensor, drop_mask: Tensor | None = None
    ) -> Tensor:
        """Negative log-likelihood ``-log p(x|z)`` per sequence.

        Args:
            tokens: (B, T) int64 ``[BOS, words, EOS, PAD..]``.
            lengths: (B,) int64 non-padding tokens per row (``L_b + 2``).
            z: (B, D) latent codes.
            drop_mask: optional (B, T - 1) float mask over decoder inputs, 1.0 = drop; None:
                nothing is dropped, in training mode too (the masker is not called).

        Returns:
            (B,) nats, summed over the ``L_b + 1`` predictions of each row.
        """
        input_embedding = self.input_embedding
        embedded = input_embedding.embed(tokens[:, :-1])  # the unmasked lookup
        if drop_mask is not None:
            embedded = input_embedding.drop(embedded, drop_mask)
        return sequence_nll(self.decoder(embedded, z), tokens[:, 1:], lengths)

    def log_likelihood(
        self,
        tokens: Tensor,
        lengths: Tensor,
        z: Tensor,
        *,
        max_rows: int | None = None,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
    ) -> Tensor:
        """``log p(x_n | z_{s,n})`` for several latent samples per sequence, unmasked.

        The work that does not depend on ``z`` (the input embeddings and, for a decoder with
        ``project_inputs``, the input projections) is done once for the ``N`` sequences, not
        once per sample. The ``S * N`` (sample, sequence) pairs are decoded in chunks of rows
        sized so that one chunk's logits and its copy of those features take at most
        ``memory_budget`` bytes; the float32 loss needs one more buffer of the logits' size
        (their log-softmax), so the peak stays below twice the budget. Under bf16 autocast the
        logits take 2 bytes each and the loss only a small float32 working buffer
        (:mod:`advmask.seqvae.low_precision_loss`).

        Args:
            tokens: (N, T) int64 sequences.
            lengths: (N,) int64.
            z: (S, N, D) latent samples.
            max_rows: largest number of (sample, sequence) pairs decoded at once; None
                derives it from ``memory_budget``.
            memory_budget: bytes for one chunk's logits and features (default 256 MiB).

        Returns:
            (S, N) log-likelihoods in nats.
        """
        num_samples, num_sequences = z.shape[0], tokens.shape[0]
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        decoder = self.decoder
        embedded = self.input_embedding.embed(inputs)  # unmasked, in training mode too
        # z-independent features, once per sequence: (T, N, 4H) projections or (N, T, E).
        projected = decoder.project_inputs(embedded) if hasattr(decoder, "project_inputs") else None
        if max_rows is None:
            # One row's logits (float32; 2-byte under autocast) plus its copy of the features.
            features = projected[:, 0] if projected is not None else embedded[0]
            logit_bytes = 2 if torch.is_autocast_enabled(tokens.device.type) else 4
            bytes_per_row = logit_bytes * (inputs.shape[1] * decoder.embedding.num_embeddings)
            bytes_per_row += features.numel() * features.element_size()
            max_rows = max(1, memory_budget // bytes_per_row)
        flat_z = rearrange(z, "s n d -> (s n) d")
        num_rows = num_samples * num_sequences
        nll = []
        for start in range(0, num_rows, max_rows):
            stop = min(start + max_rows, num_rows)
            # Row r is (sample r // N, sequence r % N).
            sequence = torch.arange(start, stop, device=tokens.device) % num_sequences
            if projected is not None:
                logits = decoder.decode_projected(projected, flat_z[start:stop], rows=sequence)
            else:
                logits = decoder(embedded[sequence], flat_z[start:stop])
            nll.append(sequence_nll(logits, targets[sequence], lengths[sequence]))
        return -rearrange(torch.cat(nll), "(s n) -> s n", s=num_samples)

    def forward(
        self,
        tokens: Tensor,
        lengths: Tensor,
        beta: float = 1.0,
        free_bits: float = 0.0,
        refine: PosteriorRefinement | None = None,
        *,
        row_draws: RowDraws | None = None,
        **renamed: object,
    ) -> VAEOutput:
        """Negative ELBO of a batch, with decoder inputs masked in training mode.

        Args:
            tokens: (B, T) int64 ``[BOS, words, EOS, PAD..]``.
            lengths: (B,) int64 non-padding tokens per row (``L_b + 2``, at least 2).
            beta: the weight of the KL term (annealed during training). Not to be confused
                with the adversary's ``kl_weight`` (lambda, :class:`advmask.AdversarialMasker`).
            free_bits: if > 0, Kingma et al.'s free bits per latent dimension (nats) in the
                loss; the reported ``kl`` stays unthresholded.
            refine: optional ``refine(tokens, lengths, embedded, mean, logvar) -> (mean,
                logvar)``, applied to the encoder's posterior before ``z`` is drawn, with the
                decoder's (masked) inputs ``embedded`` (B, T - 1, E): semi-amortised inference
                (:func:`advmask.seqvae.semi_amortized.refine_posterior`). ``kl`` is then that of
                the refined posterior.
            row_draws: which rows of a global batch ``tokens`` is
                (:class:`advmask.row_draws.RowDraws`, ``torchrun``): every per-row draw of the
                pass (the noise of ``z``, the masker's, the decoder's dropout masks; ``refine``
                and the decoder are then called with ``row_draws=``) is those rows of one
                process's draw for the global batch. None: ``tokens`` is the whole batch (the
                plain draws). Its row count must be ``B``.

        Returns:
            A :class:`VAEOutput`.

        Raises:
            TypeError: ``kl_weight=`` (renamed ``beta``) or another unknown keyword.
        """
        if renamed:
            raise TypeError(_renamed_keywords(renamed))
        # Value checks of the inputs once, here; the encoder and the embedding trust what
        # passed. The masker checks its own scores (a diverged adversary), once per call.
        input_embedding = self.input_embedding
        tokens, lengths = check_tokens_lengths(
            tokens, lengths, vocab_size=input_embedding.num_embeddings, min_length=2
        )
        mean, logvar = self._posterior_of_checked(tokens, lengths)
        # Passed on only when given: a decoder or refinement of one process need not take it.
        draws = {} if row_draws is None else {"row_draws": row_draws}
        noise_like = torch.randn_like if row_draws is None else row_draws.randn_like
        # z is drawn before the masker's noise and the decoder's dropout: the order of the
        # random draws fixes the results of a seed. A refined posterior needs the inputs first.
        if refine is None:
            z = mean + torch.exp(0.5 * logvar) * noise_like(mean)
        inputs = decoder_inputs(tokens, lengths)
        # Training mode: the masker drops some of the words; eval mode: the plain embedding.
        embedded = input_embedding._embed_and_mask(
            inputs.ids, inputs.lengths, inputs.protected, row_draws
        )
        masker_output = input_embedding.last_output
        if refine is not None:
            mean, logvar = refine(tokens, lengths, embedded, mean, logvar, **draws)
            z = mean + torch.exp(0.5 * logvar) * noise_like(mean)
        logits = self.decoder(embedded, z, **draws)
        reconstruction = sequence_nll(logits, tokens[:, 1:], lengths)
        kl_per_dim = gaussian_kl_per_dimension(mean, logvar)
        kl = kl_per_dim.sum(-1)
        kl_term = free_bits_kl(kl_per_dim, free_bits) if free_bits > 0 else kl.mean()
        loss = reconstruction.mean() + beta * kl_term
        if masker_output is not None:
            loss = loss + masker_output.regularizer
        return VAEOutput(loss=loss, reconstruction=reconstruction, kl=kl, masker=masker_output)

    @torch.no_grad()
    def reset_decoder(self) -> None:
        """Initialise the decoder again (its weights and input embedding), from the global
        random stream; the encoder, the masker and the learned fill are kept.

        The reset of FBP (Li et al. 2019): the encoder of a pretrained autoencoder is kept, the
        decoder that learned to read it starts afresh.
        """
        masker, drop_vector = self.masker, self.drop_vector
        masker_state = None if masker is None else copy.deepcopy(masker.state_dict())
        fill = None if drop_vector is None else drop_vector.detach().clone()
        self.decoder.reset_parameters()  # walks the masker's layers too: restored below
        if masker is not None:
            masker.load_state_dict(masker_state)
        if drop_vector is not None:
            drop_vector.copy_(fill)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # Rename the keys of the earlier layout (see _current_key) here, so that every loader
        # (load_sequence_vae, a resumed run, an AveragedModel's "module." prefix) gets the remap.
        rename_state_dict_keys(state_dict, prefix, _current_key)
        super()._load_from_state_dict(state_dict, prefix, *args)


def sequence_nll(
    logits: Tensor, targets: Tensor, lengths: Tensor, *, twice_differentiable: bool = False
) -> Tensor:
    """(B,) summed NLL of ``targets`` (B, T) under ``logits`` (B, T, V) over ``lengths - 1``.

    ``twice_differentiable``: use :func:`torch.nn.functional.cross_entropy`, which autograd can
    differentiate twice (semi-amortised inference differentiates through gradient steps),
    instead of the fused :func:`token_cross_entropy`, whose backward is differentiable once.

    bfloat16/float16 logits (``--precision bf16``) go to
    :func:`~advmask.seqvae.low_precision_loss.low_precision_cross_entropy`, which accumulates
    in float32 without a float32 copy of the logits; the result is float32 either way.
    """
    batch = targets.shape[0]
    flat_logits = rearrange(logits, "b t v -> (b t) v")
    flat_targets = rearrange(targets, "b t -> (b t)")
    if logits.dtype in (torch.float32, torch.float64):
        token_loss = partial(F.cross_entropy, reduction="none") if twice_differentiable else None
        token_nll = (token_loss or token_cross_entropy)(flat_logits, flat_targets)
    elif twice_differentiable:
        token_nll = F.cross_entropy(flat_logits.float(), flat_targets, reduction="none")
    else:
        token_nll = low_precision_cross_entropy(flat_logits, flat_targets)
    token_nll = rearrange(token_nll, "(b t) -> b t", b=batch)
    steps = torch.arange(targets.shape[1], device=targets.device)
    valid = steps.unsqueeze(0) < (lengths - 1).unsqueeze(1)
    return token_nll.masked_fill(~valid, 0.0).sum(1)


def token_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """``-log softmax(logits)[target]`` per row: ``F.cross_entropy(..., reduction="none")``.

    The same forward (one log-softmax kernel along the contiguous vocabulary dimension: on the
    (B, V, T) view that ``cross_entropy`` wants for sequences it reduces along a strided
    dimension after a transposed copy, about twice as slow), with a fused backward
    ``softmax * g - onehot * g`` instead of PyTorch's two passes (a zero-filled (N, V) buffer
    for the NLL's gradient, then the log-softmax's). In a training step at V = 10,000 on one CPU
    thread this saved 5-8% of the step (``benchmarks/bench_train.py``).

    Args:
        logits: (N, V) float32/float64 unnormalised log-probabilities.
        targets: (N,) int64 class ids in ``[0, V)``.

    Returns:
        (N,) nats in the dtype of ``logits``; differentiable once in ``logits``.
    """
    if not (torch.is_grad_enabled() and logits.requires_grad):
        return F.cross_entropy(logits, targets, reduction="none")
    return _TokenCrossEntropy.apply(logits, targets)[0]


class _TokenCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        log_probs = F.log_softmax(logits, dim=1)
        return -log_probs.gather(1, targets.unsqueeze(1)).squeeze(1), log_probs

    @staticmethod
    def setup_context(
        ctx: Any, inputs: tuple[Tensor, Tensor], output: tuple[Tensor, Tensor]
    ) -> None:
        _, targets = inputs
        _, log_probs = output
        ctx.mark_non_differentiable(log_probs)
        # No (N, V) zero gradient for the log-probabilities, which the loss does not use.
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(log_probs, targets)

    @staticmethod
    @once_differentiable
    def backward(
        ctx: Any, grad: Tensor | None, _grad_log_probs: Tensor | None
    ) -> tuple[Tensor | None, None]:
        if grad is None:  # grads are not materialised: nothing flowed into the loss
            return None, None
        log_probs, targets = ctx.saved_tensors
        # d(-log p_y)/d logits = softmax - onehot(y), scaled by the incoming gradient per row.
        grad_logits = log_probs.exp().mul_(grad.unsqueeze(1))
        grad_logits.scatter_add_(1, targets.unsqueeze(1), -grad.unsqueeze(1))
        return grad_logits, None
