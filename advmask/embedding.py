"""Applying a drop mask to decoder input embeddings (Miladinović et al., 2022).

A dropped input is replaced in embedding space, ``e~ = m * fill + (1 - m) * e``, not by
replacing its token id: the id replacement has no gradient with respect to ``m``, so the
adversary would learn nothing. The two-product form is exact for ``m`` in {0, 1} (``1 * a +
0 * b = a``), so the forward pass equals the id replacement bitwise; the shorter
``e + m * (fill - e)`` is not exact and is never used.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from advmask.checks import FLOAT_DTYPES, INT_DTYPES, check_tensor, checking_values
from advmask.outputs import MaskerOutput

FILL_MODES = ("zero", "unk", "learned")


def mask_embeddings(embedded: Tensor, drop_mask: Tensor, fill: Tensor | None = None) -> Tensor:
    """Replace dropped positions by ``fill``: ``m * fill + (1 - m) * e``.

    Gradients, with ``g = dL/de~``: ``dL/dm_t = <g_t, fill - e_t>``,
    ``dL/de_t = (1 - m_t) g_t`` and ``dL/dfill = sum_t m_t g_t``.

    Args:
        embedded: (B, T, E) float input embeddings ``e``.
        drop_mask: (B, T) float mask ``m``, 1.0 = drop (cast to the dtype of ``embedded``).
        fill: (E,) vector a dropped input becomes, or None for the zero vector (then the
            result is ``(1 - m) * e``, the AWD authors' choice).

    Returns:
        (B, T, E) masked embeddings; bitwise ``e`` where ``m = 0`` and ``fill`` where ``m = 1``.

    Example:
        >>> e = torch.ones(1, 3, 2)
        >>> mask_embeddings(e, torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([5.0, 6.0]))
        tensor([[[1., 1.],
                 [5., 6.],
                 [1., 1.]]])
    """
    embedded = check_tensor("embedded", embedded, ndim=3, dtypes=FLOAT_DTYPES)
    drop_mask = check_tensor("drop_mask", drop_mask, ndim=2, dtypes=FLOAT_DTYPES)
    if drop_mask.shape != embedded.shape[:2]:
        raise ValueError(
            f"drop_mask must have shape {tuple(embedded.shape[:2])} (the first two dimensions "
            f"of embedded), got {tuple(drop_mask.shape)}"
        )
    mask = drop_mask.to(embedded.dtype).unsqueeze(-1)
    if fill is None:
        return (1 - mask) * embedded
    fill = check_tensor("fill", fill, ndim=1, dtypes=FLOAT_DTYPES)
    if fill.shape[0] != embedded.shape[2]:
        raise ValueError(f"fill must have shape ({embedded.shape[2]},), got {tuple(fill.shape)}")
    return mask * fill.to(embedded.dtype) + (1 - mask) * embedded


class MaskedEmbedding(nn.Module):
    """Drop-in wrapper of a decoder's ``nn.Embedding`` that masks its output in training mode.

    Training mode: the masker chooses positions to drop and the wrapper returns
    :func:`mask_embeddings` of the embedding; the masker's output is kept in
    :attr:`last_output` and its regulariser in :attr:`regularizer`, to be added to the loss.
    Eval mode: the embedding's output, untouched (bitwise), and the masker is not called.

    Which positions may be dropped, in order of precedence: the ``lengths`` and ``protected``
    of the call; else those set by :meth:`valid_inputs` around a model call that invokes the
    wrapper with token ids alone (a Hugging Face model); else every position except those
    holding ``pad_id``. :func:`advmask.mask_input_embeddings` installs the wrapper in a model.

    The masker is a submodule, so its parameters appear in ``parameters()``; with an
    :class:`advmask.AdversarialMasker` one optimiser and one backward pass train both players
    (the gradient reversal is inside the masker).

    Args:
        embedding: the decoder's input embedding; its parameters are not copied.
        masker: an :class:`advmask.AdversarialMasker`, :class:`advmask.UniformMasker` or None
            (no masking).
        fill: what a dropped input becomes: ``"zero"`` (the zero vector), ``"unk"`` (the row
            ``unk_id`` of the embedding, learned with it; forward equals replacing the id by
            ``unk_id``) or ``"learned"`` (a dedicated trainable vector, initialised at zero).
        unk_id: the unknown-token id, required for ``fill="unk"``.
        pad_id: the token id treated as padding when neither the call nor
            :meth:`valid_inputs` gives lengths; defaults to the embedding's ``padding_idx``
            (None: no padding id, every position is valid).

    Attributes:
        last_output (MaskerOutput | None): the masker's output of the last training-mode call
            (``mask`` (B, T) float, 1.0 = dropped); None before the first one or without a
            masker.

    Example:
        >>> from advmask.maskers import UniformMasker
        >>> masked = MaskedEmbedding(nn.Embedding(10, 3), UniformMasker(rate=0.5))
        >>> out = masked(torch.tensor([[4, 5, 6, 7]]), torch.tensor([4]))
        >>> int((out == 0).all(-1).sum()), masked.last_output.k
        (2, tensor([2]))
    """

    def __init__(
        self,
        embedding: nn.Embedding,
        masker: nn.Module | None,
        fill: str = "zero",
        unk_id: int | None = None,
        pad_id: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(embedding, nn.Embedding):
            raise TypeError(f"embedding must be an nn.Embedding, got {type(embedding).__name__}")
        if masker is not None and not isinstance(masker, nn.Module):
            raise TypeError(f"masker must be an nn.Module or None, got {type(masker).__name__}")
        if fill not in FILL_MODES:
            raise ValueError(f"fill must be one of {FILL_MODES}, got {fill!r}")
        if fill == "unk" and not (
            isinstance(unk_id, int)
            and not isinstance(unk_id, bool)
            and 0 <= unk_id < embedding.num_embeddings
        ):
            raise ValueError(
                f'unk_id must be an id in [0, {embedding.num_embeddings}) when fill="unk", '
                f"got {unk_id!r}"
            )
        if pad_id is None:
            pad_id = embedding.padding_idx
        elif isinstance(pad_id, bool) or not isinstance(pad_id, int):
            raise TypeError(f"pad_id must be an int or None, got {pad_id!r}")
        self.embedding = embedding
        self.masker = masker
        self.pad_id = pad_id
        self.fill = fill
        self.unk_id = unk_id
        self.drop_vector = (
            nn.Parameter(torch.zeros_like(embedding.weight[0].detach()))
            if fill == "learned"
            else None
        )
        self.last_output: MaskerOutput | None = None
        self._valid_inputs: _ValidInputs | None = None
        # Where the missing pad id was looked for (set by mask_input_embeddings), for the
        # warning; the warning is given once per wrapper.
        self._pad_id_source = "the embedding has no padding_idx and no pad_id was given"
        self._warned_unprotected = False

    @property
    def weight(self) -> Tensor:
        """The wrapped embedding's weight (V, E) (shared, for weight tying)."""
        return self.embedding.weight

    @property
    def num_embeddings(self) -> int:
        """The wrapped embedding's vocabulary size."""
        return self.embedding.num_embeddings

    @property
    def embedding_dim(self) -> int:
        """The wrapped embedding's size ``E``."""
        return self.embedding.embedding_dim

    @property
    def padding_idx(self) -> int | None:
        """The wrapped embedding's padding id."""
        return self.embedding.padding_idx

    def reset_parameters(self) -> None:
        """Re-initialise the wrapped embedding by its own ``reset_parameters``; the masker and
        the fill vector keep theirs."""
        self.embedding.reset_parameters()

    @property
    def regularizer(self) -> Tensor:
        """The masker's regulariser of the last training call; a zero scalar otherwise."""
        if self.training and self.last_output is not None:
            return self.last_output.regularizer
        return self.embedding.weight.new_zeros(())

    @contextmanager
    def valid_inputs(
        self,
        lengths: Tensor | None = None,
        *,
        protected: Tensor | None = None,
        attention_mask: Tensor | None = None,
    ) -> Iterator[MaskedEmbedding]:
        """Tell the wrapper which positions may be dropped while a model calls it.

        A model that owns the wrapper (for example a Hugging Face model after
        ``set_input_embeddings``) calls it with token ids alone; inside this block such calls
        use the positions given here instead of guessing them from ``pad_id``. Calls that pass
        ``lengths`` or ``protected`` themselves are unaffected.

        Args:
            lengths: optional (B,) integer number of valid positions per row; positions
                ``t >= lengths[b]`` are never dropped. None: all ``T`` positions.
            protected: optional (T,) or (B, T) bool, True where a position must never be
                dropped (for example BOS).
            attention_mask: optional (B, T) Hugging Face attention mask, 1 = a real token,
                0 = padding; its 0 positions are never dropped (left or right padding alike).

        Yields:
            The wrapper itself.

        Example:
            >>> from advmask.maskers import UniformMasker
            >>> masked = MaskedEmbedding(nn.Embedding(10, 3), UniformMasker(rate=1.0))
            >>> attention_mask = torch.tensor([[0, 1, 1, 1]])     # one left-padded row
            >>> with masked.valid_inputs(attention_mask=attention_mask):
            ...     out = masked(torch.tensor([[0, 5, 6, 7]]))     # as a model calls it
            >>> masked.last_output.mask
            tensor([[0., 1., 1., 1.]])
        """
        if lengths is not None:
            lengths = check_tensor("lengths", lengths, ndim=1, dtypes=INT_DTYPES)
        if protected is not None and not (
            isinstance(protected, Tensor) and protected.dtype == torch.bool
        ):
            got = protected.dtype if isinstance(protected, Tensor) else type(protected).__name__
            raise TypeError(f"protected must be a bool tensor, got {got}")
        if attention_mask is not None:
            attention_mask = check_tensor(
                "attention_mask", attention_mask, ndim=2, dtypes=(torch.bool, *INT_DTYPES)
            )
        previous = self._valid_inputs
        self._valid_inputs = _ValidInputs(lengths, protected, attention_mask)
        try:
            yield self
        finally:
            self._valid_inputs = previous

    def fill_vector(self) -> Tensor | None:
        """(E,) vector a dropped input becomes; None is the zero vector."""
        if self.fill == "unk":
            return self.embedding.weight[self.unk_id]
        return self.drop_vector

    def drop(self, embedded: Tensor, drop_mask: Tensor) -> Tensor:
        """Replace the dropped positions of ``embedded`` by this wrapper's fill.

        What a training-mode call does with the masker's mask, here with a mask the caller
        chose (in either mode, without calling the masker): for example a drop mask fixed in a
        test, or one input dropped at a time in an analysis.

        Args:
            embedded: (B, T, E) float embeddings, typically ``wrapper.embedding(tokens)``.
            drop_mask: (B, T) float mask, 1.0 = drop.

        Returns:
            (B, T, E) :func:`mask_embeddings` of ``embedded`` with :meth:`fill_vector`.
        """
        return mask_embeddings(embedded, drop_mask, self.fill_vector())

    def forward(
        self,
        tokens: Tensor,
        lengths: Tensor | None = None,
        *,
        protected: Tensor | None = None,
        ids_checked: bool = False,
    ) -> Tensor:
        """Embed ``tokens``, dropping inputs in training mode.

        Args:
            tokens: (B, T) integer ids.
            lengths: (B,) valid positions per row; positions ``t >= lengths[b]`` are never
                dropped. None (with ``protected`` None): the positions set by
                :meth:`valid_inputs` if inside such a block, else every position except
                those holding ``pad_id`` (lengths then stop before the trailing padding);
                without a ``pad_id`` that is every position, padding included, and the
                first such call warns.
            protected: optional (T,) or (B, T) bool, True where a position must never be
                dropped (for example BOS).
            ids_checked: True when the caller has already checked that ``tokens`` are in
                ``[0, num_embeddings)`` (:class:`~advmask.seqvae.vae.SequenceVAE` does, in the
                host read that checks its lengths): skips this call's own id check. The
                masker still checks what it checks.

        Returns:
            (B, T, E) embeddings in the embedding's dtype.

        Raises:
            ValueError: if an id is outside ``[0, num_embeddings)``, naming the first such id
                and its position. A value check (one host sync): skipped under
                ``torch.compile``, when value checks are switched off and with
                ``ids_checked``.
        """
        if not ids_checked and isinstance(tokens, Tensor) and checking_values():
            _check_ids(tokens, self.embedding.num_embeddings)
        embedded = self.embedding(tokens)
        if not self.training or self.masker is None:
            self.last_output = None
            return embedded
        if lengths is None and protected is None and self._valid_inputs is not None:
            lengths, protected = self._valid_inputs.resolve(tokens)
        if lengths is None:
            if protected is None and self.pad_id is None and not self._warned_unprotected:
                self._warned_unprotected = True
                warnings.warn(
                    f"MaskedEmbedding was called with token ids alone and no pad id is known "
                    f"({self._pad_id_source}): every position may be dropped, padding "
                    f"included. Call the model inside `with wrapper.valid_inputs("
                    f"attention_mask=...)` (an empty valid_inputs() says there is no "
                    f"padding), pass lengths, or give pad_id to mask_input_embeddings",
                    UserWarning,
                    # stacklevel 1: the caller is torch's Module.__call__, and a warning
                    # attributed to torch is hidden by the usual "ignore torch" filters
                    stacklevel=1,
                )
            lengths, protected = _lengths_from_padding(tokens, self.pad_id, protected)
        output = self.masker(tokens, lengths, protected=protected)
        self.last_output = output
        return self.drop(embedded, output.mask)

    def extra_repr(self) -> str:
        return f"fill={self.fill!r}" + (f", unk_id={self.unk_id}" if self.fill == "unk" else "")

    def __getstate__(self) -> dict[str, Any]:
        # The last call's output is not part of the module: it holds tensors of that call's
        # autograd graph, which copy.deepcopy refuses (a model copied after a training step,
        # as an AveragedModel does) and pickling would drag along.
        state = self.__dict__.copy()
        state["last_output"] = None
        return state

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # A state dict saved before the embedding was wrapped has ``<prefix>weight`` where the
        # wrapper keeps ``<prefix>embedding.weight``: rename it, so that such a checkpoint
        # (a decoder's, a Hugging Face model's) loads into the masked model.
        names = set(self.embedding.state_dict(keep_vars=True))
        rename_state_dict_keys(
            state_dict, prefix, lambda name: f"embedding.{name}" if name in names else None
        )
        super()._load_from_state_dict(state_dict, prefix, *args)


def rename_state_dict_keys(
    state_dict: dict[str, Any], prefix: str, current_key: Callable[[str], str | None]
) -> None:
    """Move each entry ``prefix + name`` of ``state_dict`` to ``prefix + current_key(name)``.

    For a module's ``_load_from_state_dict``, which torch runs before loading the module's
    children, on the copy of the dict that ``load_state_dict`` made: a state dict of an earlier
    layout then loads into the current one. Names for which ``current_key`` returns None stay,
    and so does a name whose new key is already in the dict.
    """
    for key in [key for key in state_dict if key.startswith(prefix)]:
        current = current_key(key[len(prefix) :])
        if current is not None and prefix + current not in state_dict:
            state_dict[prefix + current] = state_dict.pop(key)


def _check_ids(tokens: Tensor, vocab_size: int) -> None:
    """Raise a one-line ValueError for the first id outside ``[0, vocab_size)``."""
    if tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
        return  # the embedding's own dtype error is clear
    out_of_range = (tokens < 0) | (tokens >= vocab_size)
    if bool(out_of_range.any()):  # one host sync; the details below only on the error path
        position = tuple(int(i) for i in out_of_range.nonzero()[0])
        raise ValueError(
            f"tokens must be ids in [0, {vocab_size}) (the embedding's vocabulary size), got "
            f"{int(tokens[position])} at position {position} "
            f"({int(out_of_range.sum())} of {tokens.numel()} ids out of range)"
        )


@dataclass(frozen=True)
class _ValidInputs:
    """The positions set by :meth:`MaskedEmbedding.valid_inputs`."""

    lengths: Tensor | None
    protected: Tensor | None
    attention_mask: Tensor | None

    def resolve(self, tokens: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(lengths (B,), protected (T,) | (B, T) bool | None)`` for a call on ``tokens``."""
        batch, length = tokens.shape
        lengths, protected = self.lengths, self.protected
        if lengths is None:
            lengths = torch.full((batch,), length, dtype=torch.int64, device=tokens.device)
        if self.attention_mask is not None:
            if tuple(self.attention_mask.shape) != (batch, length):
                raise ValueError(
                    f"attention_mask must have the shape of the token ids {(batch, length)}, "
                    f"got {tuple(self.attention_mask.shape)}"
                )
            padding = (self.attention_mask == 0).to(tokens.device)
            protected = padding if protected is None else protected.to(tokens.device) | padding
        return lengths, protected


def _lengths_from_padding(
    tokens: Tensor, padding_idx: int | None, protected: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    """Lengths that exclude trailing padding; padding ids elsewhere become protected."""
    batch, length = tokens.shape
    if padding_idx is None:
        return torch.full((batch,), length, dtype=torch.int64, device=tokens.device), protected
    is_padding = tokens == padding_idx
    # The run of padding at the end of each row: a cumulative product from the right.
    trailing = is_padding.flip(1).to(torch.int64).cumprod(1).sum(1)
    if protected is not None and protected.dtype == torch.bool:
        protected = protected | is_padding
    elif protected is None:
        protected = is_padding
    # (a non-bool ``protected`` is passed on unchanged for the masker to reject)
    return length - trailing, protected
