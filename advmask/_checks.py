"""Argument validation shared by the public entry points.

Public functions validate at the boundary and raise errors that repeat the offending argument
back; private helpers trust their input.
"""

from __future__ import annotations

import math

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


def checking_values() -> bool:
    """Whether checks that read tensor *values* run (False while ``torch.compile`` traces).

    A value check (``lengths`` in range, finite scores) copies a result to the host: a device
    synchronisation in eager mode and a graph break under :func:`torch.compile`. Such checks
    run eagerly, where their error can name the bad value, and are skipped inside a compiled
    graph, so that the hot path traces whole. Shape, dtype and device checks always run.
    """
    return not torch.compiler.is_compiling()


FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def check_rate(rate: object, name: str = "rate") -> float:
    """Check a probability-like float in [0, 1]."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        raise TypeError(f"{name} must be a float in [0, 1], got {rate!r}")
    if not (0.0 <= float(rate) <= 1.0) or math.isnan(float(rate)):
        raise ValueError(f"{name} must be in [0, 1], got {rate}")
    return float(rate)


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


def check_tokens_lengths(tokens: object, lengths: object) -> tuple[Tensor, Tensor]:
    """Check ``tokens`` (B, T) integer ids and ``lengths`` (B,) integers in [0, T]."""
    tokens = check_tensor("tokens", tokens, ndim=2, dtypes=INT_DTYPES)
    lengths = check_tensor("lengths", lengths, ndim=1, dtypes=INT_DTYPES)
    if lengths.shape[0] != tokens.shape[0]:
        raise ValueError(
            f"lengths must have one entry per row of tokens: tokens has shape "
            f"{tuple(tokens.shape)}, lengths has shape {tuple(lengths.shape)}"
        )
    if lengths.device != tokens.device:
        raise ValueError(f"lengths is on {lengths.device} but tokens is on {tokens.device}")
    if lengths.numel() > 0 and checking_values():
        low, high = int(lengths.min()), int(lengths.max())
        if low < 0 or high > tokens.shape[1]:
            bad = low if low < 0 else high
            raise ValueError(
                f"lengths must be in [0, T={tokens.shape[1]}] (T = tokens.shape[1]), got {bad}"
            )
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
