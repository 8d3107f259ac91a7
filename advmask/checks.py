"""Argument validation shared by the public entry points, and the value-check switch.

Public functions validate at the boundary and raise errors that repeat the offending argument
back; private helpers trust their input.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Collection

import torch
from torch import Tensor


def check_tensor(name: str, value: object, *, ndim: int, dtypes: tuple[torch.dtype, ...]) -> Tensor:
    """Check that ``value`` is a tensor of rank ``ndim`` with one of ``dtypes``."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(value.shape)}")
    if value.dtype not in dtypes:
        names = ", ".join(str(d) for d in dtypes)
        raise TypeError(f"{name} must have dtype in ({names}), got {value.dtype}")
    return value


_value_checks_enabled = True  # the default switch; process-wide, like torch.distributions'


def set_value_checks(enabled: bool) -> None:
    """Switch the default of the checks that read tensor *values* on or off (on by default).

    A value check (``lengths`` within ``[0, T]``, token ids within the vocabulary, finite
    scores, ``k`` within ``[0, n]``) copies a result to the host: a device synchronisation that
    stalls a GPU's training step, and a graph break under :func:`torch.compile`. Each object
    that checks values (:class:`~advmask.maskers.AdversarialMasker`,
    :class:`~advmask.embedding.MaskedEmbedding`, a score network, ...) takes a
    ``validate_args`` argument: True or False decides for that object, None (the default)
    follows this switch, read at each call. An entry point checks its inputs once, then calls
    the unchecked private helpers of its parts (a masker's call checks its inputs; the score
    network it built and its bottom-K selection trust them). Shape, dtype and device checks,
    which read no values, always run; no value check runs while :func:`torch.compile` traces.
    The pattern of :meth:`torch.distributions.Distribution.set_default_validate_args`:
    validate your data once when you load it, then train with value checks off.

    Args:
        enabled: True to run value checks (the default), False to skip them.

    Raises:
        TypeError: if ``enabled`` is not a bool.

    Example:
        >>> import advmask
        >>> advmask.set_value_checks(False)
        >>> advmask.value_checks_enabled()
        False
        >>> advmask.set_value_checks(True)
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, got {enabled!r}")
    global _value_checks_enabled
    _value_checks_enabled = enabled


def value_checks_enabled() -> bool:
    """The default set by :func:`set_value_checks` (True unless switched off)."""
    return _value_checks_enabled


def check_validate_args(validate_args: object) -> bool | None:
    """Check an object's ``validate_args``: True, False or None (follow the default)."""
    if validate_args is not None and not isinstance(validate_args, bool):
        raise TypeError(f"validate_args must be a bool or None, got {validate_args!r}")
    return validate_args


def checks_values(validate_args: bool | None = None) -> bool:
    """Whether a value check runs now, for an object whose ``validate_args`` is given.

    ``validate_args`` True or False decides; None follows :func:`set_value_checks`. False
    always while :func:`torch.compile` traces (a value check would break the graph).
    """
    enabled = _value_checks_enabled if validate_args is None else validate_args
    return enabled and not torch.compiler.is_compiling()


FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def check_int(value: object, name: str, minimum: int = 1) -> int:
    """Check an integer >= ``minimum``: anything :func:`operator.index` accepts, except a bool
    (``True`` is not a count, although Python treats it as 1)."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r}") from None
    if number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {number}")
    return number


def check_bool(value: object, name: str) -> bool:
    """Check a bool."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def check_choice(value: object, name: str, choices: Collection[str]) -> str:
    """Check that ``value`` is one of the strings ``choices``."""
    if not isinstance(value, str) or value not in choices:
        known = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {known}, got {value!r}")
    return value


def check_rate(rate: object, name: str = "rate") -> float:
    """Check a probability-like float in [0, 1]."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        raise TypeError(f"{name} must be a float in [0, 1], got {rate!r}")
    if not (0.0 <= float(rate) <= 1.0) or math.isnan(float(rate)):
        raise ValueError(f"{name} must be in [0, 1], got {rate}")
    return float(rate)


def check_dropout(value: object, name: str) -> float:
    """Check a dropout probability in [0, 1)."""
    rate = check_rate(value, name)
    if rate == 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return rate


def check_non_negative(value: object, name: str) -> float:
    """Check a finite float >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a non-negative float, got {value!r}")
    if not math.isfinite(float(value)) or float(value) < 0:
        raise ValueError(f"{name} must be a finite float >= 0, got {value}")
    return float(value)


def check_positive(value: object, name: str) -> float:
    """Check a finite float > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a positive float, got {value!r}")
    if not math.isfinite(float(value)) or float(value) <= 0:
        raise ValueError(f"{name} must be a finite float > 0, got {value}")
    return float(value)


def check_tokens_lengths(
    tokens: object,
    lengths: object,
    *,
    vocab_size: int | None = None,
    min_length: int = 0,
    validate_args: bool | None = None,
) -> tuple[Tensor, Tensor]:
    """Check ``tokens`` (B, T) integer ids and ``lengths`` (B,) integers in ``[min_length, T]``.

    The value checks (lengths in range and, with ``vocab_size``, ids in ``[0, vocab_size)``)
    read four numbers in one host transfer, and only when :func:`checks_values` of the
    caller's ``validate_args`` is True.
    """
    tokens = check_tensor("tokens", tokens, ndim=2, dtypes=INT_DTYPES)
    lengths = check_tensor("lengths", lengths, ndim=1, dtypes=INT_DTYPES)
    if lengths.shape[0] != tokens.shape[0]:
        raise ValueError(
            f"lengths must have one entry per row of tokens: tokens has shape "
            f"{tuple(tokens.shape)}, lengths has shape {tuple(lengths.shape)}"
        )
    if lengths.device != tokens.device:
        raise ValueError(f"lengths is on {lengths.device} but tokens is on {tokens.device}")
    if lengths.numel() == 0 or not checks_values(validate_args):
        return tokens, lengths
    ends = [lengths.min(), lengths.max()]
    if vocab_size is not None and tokens.numel() > 0:
        ends += [tokens.min(), tokens.max()]
    values = torch.stack([end.to(torch.int64) for end in ends]).tolist()
    low, high = values[0], values[1]
    if low < min_length or high > tokens.shape[1]:
        bad = low if low < min_length else high
        raise ValueError(
            f"lengths must be in [{min_length}, T={tokens.shape[1]}] (T = tokens.shape[1]), "
            f"got {bad}"
        )
    if len(values) == 4 and (values[2] < 0 or values[3] >= vocab_size):
        bad = values[2] if values[2] < 0 else values[3]
        raise ValueError(f"tokens must be ids in [0, vocab_size={vocab_size}), got {bad}")
    return tokens, lengths


def check_mask_like(name: str, mask: object, reference: Tensor) -> Tensor:
    """Check a bool tensor with the same (B, T) shape and device as ``reference``."""
    mask = check_tensor(name, mask, ndim=2, dtypes=(torch.bool,))
    if mask.shape != reference.shape[:2]:
        raise ValueError(
            f"{name} must have shape {tuple(reference.shape[:2])}, got {tuple(mask.shape)}"
        )
    if mask.device != reference.device:
        raise ValueError(f"{name} is on {mask.device} but expected {reference.device}")
    return mask


def check_decoder_inputs(
    embedded: object, z: object, embedding_dim: int, latent_dim: int
) -> tuple[Tensor, Tensor]:
    """Check a decoder's ``embedded`` (B, T, E) and ``z`` (B, D) against its sizes.

    Shape-only checks: nothing here reads tensor values, so nothing synchronises with a GPU.
    """
    embedded = check_tensor("embedded", embedded, ndim=3, dtypes=FLOAT_DTYPES)
    z = check_tensor("z", z, ndim=2, dtypes=FLOAT_DTYPES)
    if embedded.shape[2] != embedding_dim:
        raise ValueError(
            f"embedded must have last dimension embedding_dim={embedding_dim}, got shape "
            f"{tuple(embedded.shape)}"
        )
    if z.shape[1] != latent_dim:
        raise ValueError(
            f"z must have last dimension latent_dim={latent_dim}, got shape {tuple(z.shape)}"
        )
    if z.shape[0] != embedded.shape[0]:
        raise ValueError(
            f"embedded and z must have the same batch size: embedded has shape "
            f"{tuple(embedded.shape)}, z has shape {tuple(z.shape)}"
        )
    if z.device != embedded.device:
        raise ValueError(f"z is on {z.device} but embedded is on {embedded.device}")
    return embedded, z


def check_ids(tokens: Tensor, vocab_size: int) -> None:
    """Raise a one-line ValueError for the first id of ``tokens`` (B, T) outside
    ``[0, vocab_size)`` (a value check: one host read)."""
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


_REMOVED = {
    "trusted": "give the object validate_args=False, or call set_value_checks(False)",
    "checking_values": "use checks_values(validate_args)",
}


def __getattr__(name: str) -> object:
    # ImportError, not AttributeError: `from advmask.checks import trusted` would replace an
    # AttributeError's message by "cannot import name", losing the way to the new one.
    if name in _REMOVED:
        raise ImportError(f"advmask.checks.{name} was removed: {_REMOVED[name]}")
    raise AttributeError(f"module 'advmask.checks' has no attribute {name!r}")
