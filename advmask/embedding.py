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
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from advmask.checks import (
    FLOAT_DTYPES,
    INT_DTYPES,
    check_ids,
    check_tensor,
    check_validate_args,
    checks_values,
)
from advmask.outputs import MaskerOutput
from advmask.positions import ValidInputs, lengths_from_padding
from advmask.row_draws import RowDraws

FILL_MODES = ("zero", "token", "learned")


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


class MaskedEmbedding(nn.Embedding):
    """An ``nn.Embedding`` that masks its output in training mode; a drop-in for a decoder's.

    It *is* an ``nn.Embedding`` (the one it replaces, taken over: the same weight
    ``Parameter``, so weight tying survives), so other libraries treat it as one (Hugging
    Face's ``resize_token_embeddings``) and the state-dict keys stay those of the plain model
    (``weight``); the masker's state is under ``masker.*`` and a learned fill under
    ``drop_vector``, keys a plain model ignores. A state dict of the plain model loads with
    ``strict=False`` (only the masker's keys are missing), and one of the earlier layout
    (``embedding.weight``) loads too.

    Training mode: the masker chooses positions to drop and the wrapper returns
    :func:`mask_embeddings` of the embedding; the masker's output is kept in
    :attr:`last_output` and the regulariser in :attr:`regularizer`, to be added to the loss.
    Eval mode: the embedding's output, untouched (bitwise), and the masker is not called (as
    ``nn.Dropout``). Training mode with gradients off (``model.generate()``, ``torch.no_grad()``)
    is an error: masking there would silently drop the inputs of an inference, a prompt for
    example; call ``model.eval()`` first, or ``torch.enable_grad()`` to mask on purpose.

    Which positions may be dropped, in order of precedence: the ``lengths`` and ``protected``
    of the call; else those set by :meth:`valid_inputs` around a model call that invokes the
    wrapper with token ids alone (a Hugging Face model); else every position except those
    holding ``pad_id``. :func:`advmask.mask_input_embeddings` installs the wrapper in a model.

    The masker is a submodule, so its parameters appear in ``parameters()``; with an
    :class:`advmask.AdversarialMasker` one optimiser and one backward pass train both players
    (the gradient reversal is inside the masker).

    Args:
        embedding: the decoder's input embedding, an ``nn.Embedding`` (or a subclass that keeps
            its ``forward``); its weight is shared, not copied.
        masker: an :class:`advmask.AdversarialMasker`, :class:`advmask.UniformMasker` or None
            (no masking).
        fill: what a dropped input becomes: ``"zero"`` (the zero vector), ``"token"`` (the row
            ``fill_id`` of the embedding, learned with it; forward equals replacing the id by
            ``fill_id``: an ``<unk>`` id, or a masked LM's ``[MASK]`` id) or ``"learned"`` (a
            dedicated trainable vector, initialised at zero). ``"unk"`` is the deprecated name
            of ``"token"``.
        fill_id: the token id a dropped input becomes, required for ``fill="token"``.
        pad_id: the token id treated as padding when neither the call nor
            :meth:`valid_inputs` gives lengths; defaults to the embedding's ``padding_idx``
            (None: no padding id, every position is valid).
        unk_id: deprecated name of ``fill_id``.
        validate_args: whether a call checks that its ids are in the vocabulary (a host
            read); None follows :func:`advmask.set_value_checks`.

    Attributes:
        last_output (MaskerOutput | None): the masker's output of the last training-mode call
            (``mask`` (B, T) float, 1.0 = dropped); None before the first one, after an
            eval-mode call, or without a masker.

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
        fill_id: int | None = None,
        pad_id: int | None = None,
        *,
        unk_id: int | None = None,
        validate_args: bool | None = None,
    ) -> None:
        # nn.Embedding.__init__ would allocate a new weight: this one takes the embedding's.
        nn.Module.__init__(self)
        self.validate_args = check_validate_args(validate_args)
        if isinstance(embedding, MaskedEmbedding):
            raise ValueError("embedding is already a MaskedEmbedding; unwrap it first")
        if not isinstance(embedding, nn.Embedding):
            raise TypeError(f"embedding must be an nn.Embedding, got {type(embedding).__name__}")
        if type(embedding).forward is not nn.Embedding.forward:
            raise TypeError(
                f"embedding must compute what nn.Embedding computes, but "
                f"{type(embedding).__name__} has its own forward (a scaled embedding?), which "
                f"the wrapper would bypass"
            )
        if masker is not None and not isinstance(masker, nn.Module):
            raise TypeError(f"masker must be an nn.Module or None, got {type(masker).__name__}")
        fill, fill_id = _deprecated_fill_names(fill, fill_id, unk_id)
        if fill not in FILL_MODES:
            raise ValueError(f"fill must be one of {FILL_MODES}, got {fill!r}")
        if fill == "token" and not (
            isinstance(fill_id, int)
            and not isinstance(fill_id, bool)
            and 0 <= fill_id < embedding.num_embeddings
        ):
            raise ValueError(
                f'fill_id must be an id in [0, {embedding.num_embeddings}) when fill="token", '
                f"got {fill_id!r}"
            )
        if pad_id is None:
            pad_id = embedding.padding_idx
        elif isinstance(pad_id, bool) or not isinstance(pad_id, int):
            raise TypeError(f"pad_id must be an int or None, got {pad_id!r}")
        for name in nn.Embedding.__constants__:  # num_embeddings, padding_idx, max_norm, ...
            object.__setattr__(self, name, getattr(embedding, name))
        self.weight = embedding.weight
        # Kept out of the module tree (no state-dict keys of its own), to be put back.
        self.__dict__["_original"] = embedding
        self.masker = masker
        self.pad_id = pad_id
        self.fill = fill
        self.fill_id = fill_id
        self.drop_vector = (
            nn.Parameter(torch.zeros_like(embedding.weight[0].detach()))
            if fill == "learned"
            else None
        )
        self.last_output: MaskerOutput | None = None
        # The outputs of the current forward pass of the model that owns the wrapper (a T5
        # calls it twice, encoder and decoder): their regularisers add up. The model's forward
        # hook (installed by mask_input_embeddings) ends a pass; without one, each call does.
        self._pass_outputs: list[MaskerOutput] = []
        self._pass_ended = True
        self._pass_hook: RemovableHandle | None = None
        self._home_hook: RemovableHandle | None = None  # see advmask.adapters._return_home
        self._valid_inputs: ValidInputs | None = None
        # Where the missing pad id was looked for (set by mask_input_embeddings), for the
        # warning; the warning is given once per wrapper.
        self._pad_id_source = "the embedding has no padding_idx and no pad_id was given"
        self._warned_unprotected = False

    @property
    def num_embeddings(self) -> int:
        """Vocabulary size ``V``. Setting it, as ``transformers``' ``resize_token_embeddings``
        does after resizing the weight in place, resizes the masker's vocabulary too (its
        ``resize_vocabulary``), so that the adversary scores the new ids."""
        return self._num_embeddings

    @num_embeddings.setter
    def num_embeddings(self, size: int) -> None:
        previous = self.__dict__.get("_num_embeddings")
        self.__dict__["_num_embeddings"] = size
        resize = getattr(self.__dict__.get("_modules", {}).get("masker"), "resize_vocabulary", None)
        if previous is not None and size != previous and resize is not None:
            resize(size)

    @property
    def unk_id(self) -> int | None:
        """Deprecated name of ``fill_id``."""
        warnings.warn(
            "MaskedEmbedding.unk_id is deprecated; use fill_id", DeprecationWarning, stacklevel=2
        )
        return self.fill_id

    def reset_parameters(self) -> None:
        """Re-initialise the embedding as ``nn.Embedding`` does; the masker and the fill
        vector keep theirs."""
        super().reset_parameters()

    @property
    def regularizer(self) -> Tensor:
        """The masker's regulariser of the current forward pass, to add to the loss.

        The sum over the pass's training-mode calls (one per call of the wrapper; two in an
        encoder-decoder model whose encoder and decoder both read it); a zero scalar in eval
        mode or before a call."""
        if self.training and self._pass_outputs:
            return sum(  # type: ignore[return-value]
                (output.regularizer for output in self._pass_outputs[1:]),
                self._pass_outputs[0].regularizer,
            )
        return self.weight.new_zeros(())

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

        What is given here describes ids of one shape (B, T). A call on ids of another length
        (the other side of an encoder-decoder model whose encoder and decoder share the
        wrapper) cannot use it and finds its padding by ``pad_id`` instead; a call with another
        batch size is an error.

        Args:
            lengths: optional (B,) integer number of valid positions per row; positions
                ``t >= lengths[b]`` are never dropped. None: all ``T`` positions.
            protected: optional (T,) or (B, T) bool, True where a position must never be
                dropped (for example BOS).
            attention_mask: optional (B, T) Hugging Face attention mask, 1 = a real token,
                0 = padding; its 0 positions are never dropped (left or right padding alike).
                For an encoder-decoder model whose decoder is masked, give the decoder's
                (``decoder_attention_mask``).

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
        self._valid_inputs = ValidInputs(lengths, protected, attention_mask)
        try:
            yield self
        finally:
            self._valid_inputs = previous

    def fill_vector(self) -> Tensor | None:
        """(E,) vector a dropped input becomes; None is the zero vector."""
        if self.fill == "token":
            return self.weight[self.fill_id]
        return self.drop_vector

    def embed(self, tokens: Tensor) -> Tensor:
        """(B, T, E) embedding of (B, T) ids, unmasked in either mode (``nn.Embedding``'s)."""
        return super().forward(tokens)

    def drop(self, embedded: Tensor, drop_mask: Tensor) -> Tensor:
        """Replace the dropped positions of ``embedded`` by this wrapper's fill.

        What a training-mode call does with the masker's mask, here with a mask the caller
        chose (in either mode, without calling the masker): for example a drop mask fixed in a
        test, or one input dropped at a time in an analysis.

        Args:
            embedded: (B, T, E) float embeddings, typically ``wrapper.embed(tokens)``.
            drop_mask: (B, T) float mask, 1.0 = drop.

        Returns:
            (B, T, E) :func:`mask_embeddings` of ``embedded`` with :meth:`fill_vector`.
        """
        return mask_embeddings(embedded, drop_mask, self.fill_vector())

    def unwrapped(self) -> nn.Embedding:
        """The ``nn.Embedding`` this wrapper was built from, brought up to date: it holds the
        wrapper's weight ``Parameter`` (the trained one) and vocabulary size, so that it can go
        back into the model (what :func:`advmask.unmask_input_embeddings` does)."""
        original = self._original
        original.weight = self.weight
        original.num_embeddings = self.num_embeddings
        original.padding_idx = self.padding_idx
        return original

    def forward(
        self,
        tokens: Tensor,
        lengths: Tensor | None = None,
        *,
        protected: Tensor | None = None,
        **removed: Any,
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

        Returns:
            (B, T, E) embeddings in the embedding's dtype.

        Raises:
            ValueError: if an id is outside ``[0, num_embeddings)``, naming the first such id
                and its position. A value check (one host sync): skipped under
                ``torch.compile`` and when value checks are off (``validate_args``).
            RuntimeError: in training mode with gradients disabled (see the class docstring).
            TypeError: for ``ids_checked``, removed (give ``validate_args=False`` instead).
        """
        if removed:
            raise TypeError(
                f"MaskedEmbedding.forward takes no {next(iter(removed))!r}; ids_checked was "
                f"removed: build the wrapper with validate_args=False to skip its id check"
            )
        if isinstance(tokens, Tensor) and checks_values(self.validate_args):
            check_ids(tokens, self.num_embeddings)
        return self._embed_and_mask(tokens, lengths, protected)

    def _embed_and_mask(
        self,
        tokens: Tensor,
        lengths: Tensor | None,
        protected: Tensor | None,
        row_draws: RowDraws | None = None,
    ) -> Tensor:
        """:meth:`forward` of ids already checked to be in the vocabulary (by the caller);
        ``row_draws`` is passed to the masker (the rows of a global batch, under torchrun)."""
        embedded = self.embed(tokens)
        if not self.training or self.masker is None:
            self.last_output = None
            self._pass_outputs = []
            return embedded
        if not torch.is_grad_enabled():
            raise RuntimeError(
                "MaskedEmbedding is in training mode but gradients are disabled (as inside "
                "model.generate() or torch.no_grad()): it would drop inputs of an inference, "
                "a prompt for example. Call model.eval() first, or wrap the call in "
                "torch.enable_grad() to mask on purpose"
            )
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
            lengths, protected = lengths_from_padding(tokens, self.pad_id, protected)
        draws = {} if row_draws is None else {"row_draws": row_draws}
        output = self.masker(tokens, lengths, protected=protected, **draws)
        self.last_output = output
        if self._pass_ended or self._pass_hook is None:
            self._pass_outputs = []
        self._pass_outputs.append(output)
        self._pass_ended = False
        return self.drop(embedded, output.mask)

    def _end_pass(self, *_: Any) -> None:
        # A forward hook of the owning model (installed by mask_input_embeddings; ``*_`` are
        # the hook's arguments): the next training-mode call starts a new regularizer sum.
        self._pass_ended = True

    def extra_repr(self) -> str:
        # nn.Embedding's extra_repr formats self.__dict__, where num_embeddings is not
        embedding = f"{self.num_embeddings}, {self.embedding_dim}" + (
            f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        )
        return f"{embedding}, fill={self.fill!r}" + (
            f", fill_id={self.fill_id}" if self.fill == "token" else ""
        )

    def __getstate__(self) -> dict[str, Any]:
        # The last call's output is not part of the module: it holds tensors of that call's
        # autograd graph, which copy.deepcopy refuses (a model copied after a training step,
        # as an AveragedModel does) and pickling would drag along.
        state = self.__dict__.copy()
        state["last_output"] = None
        state["_pass_outputs"] = []
        return state

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # The earlier layout kept the wrapped embedding as a child, ``<prefix>embedding.weight``,
        # where the weight is now ``<prefix>weight``: rename it, so such checkpoints still load.
        rename_state_dict_keys(
            state_dict, prefix, lambda name: "weight" if name == "embedding.weight" else None
        )
        super()._load_from_state_dict(state_dict, prefix, *args)


def _deprecated_fill_names(
    fill: str, fill_id: int | None, unk_id: int | None
) -> tuple[str, int | None]:
    """``(fill, fill_id)`` with the deprecated ``fill="unk"`` and ``unk_id`` translated."""
    if unk_id is not None:
        warnings.warn(
            "unk_id is deprecated; use fill_id (the id a dropped input becomes, an <unk> or "
            "[MASK] id)",
            DeprecationWarning,
            stacklevel=3,
        )
        if fill_id is not None and fill_id != unk_id:
            raise ValueError(f"give fill_id or unk_id, not both: got {fill_id} and {unk_id}")
        fill_id = unk_id
    if fill == "unk":
        warnings.warn(
            'fill="unk" is deprecated; use fill="token" with fill_id',
            DeprecationWarning,
            stacklevel=3,
        )
        fill = "token"
    return fill, fill_id


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
