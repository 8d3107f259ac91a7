"""Relaxations of "the K smallest scores", selected by name.

A relaxation is a function

.. code-block:: python

    relax(scores, k, eligible, *, generator=None, **options) -> soft

with ``scores`` (B, T) float32/float64, ``k`` (B,) int64 and ``eligible`` (B, T) bool. It
returns a (B, T) soft mask in the dtype of ``scores`` that is differentiable in ``scores``,
exactly 0 off ``eligible``, and approximates the hard mask of the ``k[b]`` smallest eligible
scores (1 = drop). Callers (:func:`advmask.bottom_k`) guarantee a well-posed problem: every row
has ``n_b >= 2`` eligible positions, ``1 <= k[b] <= n_b - 1`` and finite scores everywhere.
``k = 0``, ``k = n`` and padding are handled once, outside the relaxations.

Register your own with :func:`register_relaxation`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor


class Relaxation(Protocol):
    """Signature every registered relaxation follows (see the module docstring)."""

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


__all__ = ["RELAXATIONS", "Relaxation", "get_relaxation", "register_relaxation"]

# The built-in relaxations register themselves on import; after the definitions above, which
# they use.
from advmask.relaxations import euclidean, lml, perturbed, sinkhorn, softmax, sst  # noqa: E402, F401
