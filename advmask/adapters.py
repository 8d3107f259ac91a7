"""Put a masker into any decoder by wrapping its input embedding (one mechanism for all).

Every autoregressive decoder reads its inputs through an ``nn.Embedding``. Masking needs
nothing else: :func:`mask_input_embeddings` finds that embedding, replaces it in the model by a
:class:`~advmask.embedding.MaskedEmbedding` (itself an ``nn.Embedding``, holding the same
weight ``Parameter``), and returns the wrapper, whose
:attr:`~advmask.embedding.MaskedEmbedding.regularizer` the caller adds to the loss. The model's
state-dict keys stay as they were (the masker's are added under ``<embedding>.masker.*``), so
a checkpoint of the masked model loads into the plain one and the reverse. The same call serves

* Hugging Face ``transformers`` models (found through ``get_input_embeddings()`` and replaced
  through ``set_input_embeddings()``; weight tying with the output layer survives, because the
  weight is the same ``Parameter``). In an encoder-decoder model (``config.is_encoder_decoder``,
  a T5) the *decoder's* inputs are masked, even when the encoder shares the embedding: the
  wrapper is installed through ``model.get_decoder().set_input_embeddings()``. Pass
  ``attribute="shared"`` (T5) to mask both sides, or ``attribute="encoder.embed_tokens"``
  for the encoder's alone. An encoder-only masked LM (a BERT) is wrapped like a decoder; give
  ``fill="token", fill_id=tokenizer.mask_token_id`` to drop inputs to ``[MASK]``;
* the decoders of :mod:`advmask.seqvae.models` (their ``embedding`` attribute);
* any other ``torch.nn`` model (``attribute="dotted.path"`` to the embedding).

How the wrapper learns which positions may be dropped (padding must never be): a caller that
embeds the inputs itself passes them, ``wrapper(tokens, lengths, protected=is_bos)``; a model
that calls the wrapper with token ids alone (Hugging Face) is called inside
``with wrapper.valid_inputs(attention_mask=..., protected=...):``, and without either the
wrapper treats the ``pad_id`` token as padding (see :class:`~advmask.embedding.MaskedEmbedding`).
A model with no pad id at all (a stock GPT-2 config) gets a warning on the first call that
gives no positions, since every position, padding included, may then be dropped.

Example:
    >>> from advmask import UniformMasker
    >>> model = nn.Sequential(nn.Embedding(10, 4, padding_idx=0), nn.Linear(4, 10))
    >>> masked = mask_input_embeddings(model, UniformMasker(rate=1.0), attribute="0")
    >>> model[0] is masked
    True
    >>> logits = model(torch.tensor([[3, 4, 5, 6, 0, 0]]))   # padding never dropped
    >>> masked.last_output.mask
    tensor([[1., 1., 1., 1., 0., 0.]])
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from advmask.embedding import MaskedEmbedding

DEFAULT_ATTRIBUTE = "embedding"
"""Where :mod:`advmask.seqvae.models` decoders keep their input embedding."""

_Installer = Callable[[nn.Module], object]
"""Puts a module where the input embedding was found."""


def mask_input_embeddings(
    model: nn.Module,
    masker: nn.Module | None,
    fill: str = "zero",
    fill_id: int | None = None,
    *,
    attribute: str | None = None,
    pad_id: int | None = None,
    unk_id: int | None = None,
) -> MaskedEmbedding:
    """Replace ``model``'s input embedding by a :class:`~advmask.embedding.MaskedEmbedding`.

    The embedding is found, in order: at ``attribute`` if given; in an encoder-decoder
    Hugging Face model, through its decoder's ``get_input_embeddings()`` /
    ``set_input_embeddings()``; through the model's own if it has them; at the attribute
    ``embedding`` (:mod:`advmask.seqvae.models`). The wrapper becomes a submodule of ``model``,
    so ``model.train()`` / ``model.eval()`` switch it and ``model.parameters()`` include the
    masker's: with an :class:`advmask.AdversarialMasker` one optimiser and one backward pass
    train both players. The embedding's state-dict keys are unchanged (``wte.weight``); the
    masker's are added (``wte.masker.*``, and ``wte.drop_vector`` for ``fill="learned"``),
    which a plain model ignores when it loads the checkpoint. A forward hook on ``model``
    ends each forward pass, so that :attr:`~advmask.embedding.MaskedEmbedding.regularizer`
    sums the calls of one pass (an encoder and a decoder sharing the wrapper). Where the
    model's own ``set_input_embeddings`` would put the plain embedding in the wrapper's place
    (``resize_token_embeddings`` of a T5 whose decoder is masked), a forward pre-hook puts the
    wrapper back, on the resized vocabulary, when the next forward pass starts.

    Args:
        model: the decoder (any ``nn.Module``).
        masker: an :class:`advmask.AdversarialMasker`, :class:`advmask.UniformMasker` or None.
        fill: what a dropped input becomes: ``"zero"``, ``"token"`` or ``"learned"`` (see
            :class:`~advmask.embedding.MaskedEmbedding`).
        fill_id: the id a dropped input becomes, required for ``fill="token"`` (an ``<unk>``
            id, or the ``[MASK]`` id of a masked LM).
        attribute: dotted path of the embedding inside ``model`` (``"embedding"``,
            ``"transformer.wte"``, ``"0"`` for the first layer of an ``nn.Sequential``,
            ``"shared"`` for both sides of a T5).
        pad_id: the padding token id used when the wrapper is called without lengths and
            outside :meth:`~advmask.embedding.MaskedEmbedding.valid_inputs`. Default: the
            embedding's ``padding_idx``, else ``model.config.pad_token_id`` (Hugging Face),
            else none: then such a call may drop padding, and the first one warns (a stock
            GPT-2 config has no pad token; use ``valid_inputs(attention_mask=...)``).
        unk_id: deprecated name of ``fill_id``.

    Returns:
        The installed wrapper (also reachable in ``model``).

    Raises:
        TypeError: if ``model`` is not an ``nn.Module`` or the module found is not an
            ``nn.Embedding``.
        ValueError: if ``model`` has no input embedding where looked for, or it is already
            masked.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    embedding, install = _locate(model, attribute)
    if pad_id is None and embedding.padding_idx is None:
        pad_id = _config_pad_id(model)
    wrapper = MaskedEmbedding(
        embedding, masker, fill=fill, fill_id=fill_id, pad_id=pad_id, unk_id=unk_id
    )
    if wrapper.pad_id is None:
        # named in the warning of the first call that gives no positions (a stock GPT-2)
        wrapper._pad_id_source = (
            f"{type(model).__name__}'s input embedding has no padding_idx"
            + (", its config no pad_token_id" if hasattr(model, "config") else "")
            + " and no pad_id was given"
        )
    install(wrapper)
    # always_call: a forward that raised still ends its pass
    wrapper._pass_hook = model.register_forward_hook(wrapper._end_pass, always_call=True)
    home = _beyond_model_setter(model, wrapper)
    if home is not None:
        wrapper._home_hook = model.register_forward_pre_hook(partial(_return_home, wrapper, home))
    return wrapper


def unmask_input_embeddings(model: nn.Module, *, attribute: str | None = None) -> nn.Embedding:
    """Undo :func:`mask_input_embeddings`: put the wrapped ``nn.Embedding`` back.

    Args:
        model: a model whose input embedding is a :class:`~advmask.embedding.MaskedEmbedding`.
        attribute: where it is, as for :func:`mask_input_embeddings`.

    Returns:
        The original embedding, now in ``model`` again, holding the wrapper's weight
        ``Parameter`` (the trained one) and vocabulary size.

    Raises:
        ValueError: if the input embedding of ``model`` is not masked.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    found, install, where = _find(model, attribute)
    if not isinstance(found, MaskedEmbedding):
        raise ValueError(
            f"the input embedding of {type(model).__name__} ({where}) is not masked: it is a "
            f"{type(found).__name__}"
        )
    for hook in ("_pass_hook", "_home_hook"):
        if getattr(found, hook) is not None:
            getattr(found, hook).remove()
            setattr(found, hook, None)
    original = found.unwrapped()
    install(original)
    return original


def _locate(model: nn.Module, attribute: str | None) -> tuple[nn.Embedding, _Installer]:
    """The model's unmasked input embedding and a function that replaces it."""
    found, install, where = _find(model, attribute)
    if isinstance(found, MaskedEmbedding):
        raise ValueError(
            f"the input embedding of {type(model).__name__} ({where}) is already masked; "
            "call unmask_input_embeddings first to change its masker"
        )
    if not isinstance(found, nn.Embedding):
        raise TypeError(
            f"the input embedding of {type(model).__name__} ({where}) must be an nn.Embedding, "
            f"got {type(found).__name__}"
        )
    return found, install


def _find(model: nn.Module, attribute: str | None) -> tuple[object, _Installer, str]:
    """``(module found, installer, description of where)`` without type checks."""
    if attribute is not None:
        return _at_attribute(model, attribute)
    if getattr(getattr(model, "config", None), "is_encoder_decoder", False) is True:
        # The decoder's inputs are the ones a decoder learns to predict from: mask those,
        # not the encoder's, even where both read one shared embedding (T5).
        get_decoder = getattr(model, "get_decoder", None)
        decoder = get_decoder() if callable(get_decoder) else None
        if decoder is not None and callable(getattr(decoder, "set_input_embeddings", None)):
            return (
                decoder.get_input_embeddings(),
                decoder.set_input_embeddings,
                "get_decoder().get_input_embeddings()",
            )
    getter = getattr(model, "get_input_embeddings", None)
    setter = getattr(model, "set_input_embeddings", None)
    if callable(getter) and callable(setter):
        try:
            found = getter()
        except NotImplementedError:  # transformers' base class without an embedding
            found = None
        if found is not None:
            return found, setter, "get_input_embeddings()"
    if isinstance(getattr(model, DEFAULT_ATTRIBUTE, None), nn.Module):
        return _at_attribute(model, DEFAULT_ATTRIBUTE)
    raise ValueError(
        f"model ({type(model).__name__}) has no input embedding that advmask can find: no "
        f"get_input_embeddings()/set_input_embeddings() returning one and no "
        f"{DEFAULT_ATTRIBUTE!r} submodule; pass attribute='path.to.embedding'"
    )


def _at_attribute(model: nn.Module, attribute: object) -> tuple[object, _Installer, str]:
    if not isinstance(attribute, str):
        raise TypeError(f"attribute must be a str or None, got {attribute!r}")
    if not attribute or any(not part for part in attribute.split(".")):
        raise ValueError(
            f"attribute must be a dotted path such as 'transformer.wte', got {attribute!r}"
        )
    parent_path, _, name = attribute.rpartition(".")
    try:
        parent = model.get_submodule(parent_path)
        found = getattr(parent, name)
    except AttributeError:
        raise ValueError(
            f"attribute={attribute!r} does not name a submodule of {type(model).__name__}"
        ) from None

    def install(module: nn.Module) -> None:
        setattr(parent, name, module)

    return found, install, f"attribute={attribute!r}"


def _beyond_model_setter(model: nn.Module, wrapper: MaskedEmbedding) -> str | None:
    """Where the wrapper is in ``model``, if the model's own ``get_input_embeddings()`` does
    not return it (the decoder's side of a T5, whose ``shared`` embedding the encoder keeps);
    None otherwise. There, ``resize_token_embeddings`` resizes the model's embedding and hands
    it to ``set_input_embeddings``, which puts it in the wrapper's place."""
    getter = getattr(model, "get_input_embeddings", None)
    if not callable(getter):
        return None
    try:
        if getter() is wrapper:
            return None
    except NotImplementedError:  # transformers' base class without an embedding
        return None
    return next(name for name, module in model.named_modules() if module is wrapper)


def _return_home(wrapper: MaskedEmbedding, home: str, model: nn.Module, _args: object) -> None:
    """Put ``wrapper`` back at ``home`` in ``model`` if a resize replaced it there.

    A forward pre-hook of the model (``partial(_return_home, wrapper, home)``: picklable),
    where the wrapper sits beyond the model's own ``set_input_embeddings`` (the decoder of a
    T5): ``resize_token_embeddings`` resizes the plain embedding in place and hands it to
    ``set_input_embeddings``, which puts it in the wrapper's place, and masking would stop
    silently. That embedding holds the wrapper's weight ``Parameter``, resized: the wrapper
    takes its vocabulary (the masker follows) and goes back.
    """
    parent_path, _, name = home.rpartition(".")
    parent = model.get_submodule(parent_path)
    found = getattr(parent, name)
    if found is not wrapper and isinstance(found, nn.Embedding) and found.weight is wrapper.weight:
        wrapper.padding_idx = found.padding_idx
        wrapper.num_embeddings = found.num_embeddings
        setattr(parent, name, wrapper)


def _config_pad_id(model: nn.Module) -> int | None:
    """``model.config.pad_token_id`` of a Hugging Face model, if it is an int."""
    pad_id = getattr(getattr(model, "config", None), "pad_token_id", None)
    return pad_id if isinstance(pad_id, int) and not isinstance(pad_id, bool) else None
