"""The registry of top-K relaxations: name -> function.

Kept apart from the relaxations themselves so that each of them can register itself by
importing only this module, and the package ``__init__`` can import all of them at its top:
no module of the package imports a half-initialised one.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor

from advmask.row_draws import RowDraws


class Relaxation(Protocol):
    """Signature every registered relaxation follows (see :mod:`advmask.relaxations`)."""

    def __call__(
        self,
        scores: Tensor,
        k: Tensor,
        eligible: Tensor,
        *,
        generator: torch.Generator | None = None,
        row_draws: RowDraws | None = None,
        **options: object,
    ) -> Tensor: ...


RELAXATIONS: dict[str, Relaxation] = {}

# What the callers pass; everything else a relaxation takes is an option.
_ARGUMENTS = ("scores", "k", "eligible", "generator", "row_draws")


def register_relaxation(
    name: str, *, overwrite: bool = False
) -> Callable[[Relaxation], Relaxation]:
    """Decorator that registers a relaxation under ``name``.

    Args:
        name: the name users pass as ``relaxation=``.
        overwrite: replace an existing entry instead of raising.

    Example:
        >>> @register_relaxation("hard-sigmoid-example")
        ... def hard_sigmoid(scores, k, eligible, *, generator=None, row_draws=None,
        ...                  temperature=1.0):
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


def get_relaxation(relaxation: str | Relaxation) -> Relaxation:
    """The relaxation registered under a name, or a relaxation function itself.

    Args:
        relaxation: a key of :data:`RELAXATIONS`, or a function with the signature of
            :class:`Relaxation` (returned as it is).

    Raises:
        ValueError: for an unknown name, listing the known ones.
        TypeError: for anything else than a str or a callable.
    """
    if callable(relaxation):
        return relaxation
    if not isinstance(relaxation, str):
        raise TypeError(
            f"relaxation must be a registered name or a function, got {type(relaxation).__name__}"
        )
    try:
        return RELAXATIONS[relaxation]
    except KeyError:
        known = ", ".join(repr(n) for n in sorted(RELAXATIONS))
        raise ValueError(f"unknown relaxation {relaxation!r}; known: {known}") from None


def parse_relaxation_options(name: str, items: Sequence[str]) -> dict[str, Any]:
    """Options of relaxation ``name`` from ``name=value`` strings (values as Python literals).

    Args:
        name: a registered relaxation.
        items: e.g. ``["temperature=0.5"]``.

    Returns:
        ``{"temperature": 0.5}``.

    The options are tried once on a tiny problem, so that a value out of its range
    (``temperature=-1``) fails here, where the options are given, not when a model is built.

    Raises:
        ValueError: naming the item that is not ``name=literal``, the options the relaxation
            does not take (and those it does), or a value it refuses (its own message).

    Example:
        >>> parse_relaxation_options("euclidean", ["temperature=0.5"])
        {'temperature': 0.5}
    """
    relax = get_relaxation(name)
    options = {}
    for item in items:
        key, separator, value = item.partition("=")
        try:
            if not separator or not key.isidentifier():
                raise ValueError(item)
            options[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise ValueError(
                f"each option must be name=value with a literal value, got {item!r}"
            ) from None
    parameters = inspect.signature(relax).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        accepted = [p for p in parameters if p not in _ARGUMENTS]
        if unknown := sorted(set(options) - set(accepted)):
            raise ValueError(f"relaxation {name!r} takes {accepted}, got {unknown}")
    try:
        relax(
            torch.tensor([[0.0, 1.0]], dtype=torch.float64),
            torch.tensor([1]),
            torch.ones(1, 2, dtype=torch.bool),
            generator=torch.Generator(),  # private: the global random stream is not advanced
            **options,
        )
    except TypeError as error:  # a value of the wrong type
        raise ValueError(str(error)) from None
    return options
