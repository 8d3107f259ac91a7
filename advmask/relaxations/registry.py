"""The registry of top-K relaxations: name -> function.

Kept apart from the relaxations themselves so that each of them can register itself by
importing only this module, and the package ``__init__`` can import all of them at its top:
no module of the package imports a half-initialised one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor


class Relaxation(Protocol):
    """Signature every registered relaxation follows (see :mod:`advmask.relaxations`)."""

    def __call__(
        self,
        scores: Tensor,
        k: Tensor,
        eligible: Tensor,
        *,
        generator: torch.Generator | None = None,
        **options: object,
    ) -> Tensor: ...


RELAXATIONS: dict[str, Relaxation] = {}


def register_relaxation(
    name: str, *, overwrite: bool = False
) -> Callable[[Relaxation], Relaxation]:
    """Decorator that registers a relaxation under ``name``.

    Args:
        name: the name users pass as ``relaxation=``.
        overwrite: replace an existing entry instead of raising.

    Example:
        >>> @register_relaxation("hard-sigmoid-example")
        ... def hard_sigmoid(scores, k, eligible, *, generator=None, temperature=1.0):
        ...     soft = torch.sigmoid(-scores / temperature)
        ...     return torch.where(eligible, soft, torch.zeros_like(soft))
        >>> "hard-sigmoid-example" in RELAXATIONS
        True
        >>> del RELAXATIONS["hard-sigmoid-example"]
    """

    def decorator(fn: Relaxation) -> Relaxation:
        if name in RELAXATIONS and not overwrite:
            raise ValueError(f"a relaxation named {name!r} is already registered")
        RELAXATIONS[name] = fn
        return fn

    return decorator


def get_relaxation(name: str) -> Relaxation:
    """The relaxation registered under ``name``; ValueError listing the known names if none."""
    if not isinstance(name, str):
        raise TypeError(f"relaxation must be a name (str), got {type(name).__name__}")
    try:
        return RELAXATIONS[name]
    except KeyError:
        known = ", ".join(repr(n) for n in sorted(RELAXATIONS))
        raise ValueError(f"unknown relaxation {name!r}; known: {known}") from None
