"""Validation of relaxation hyper-parameters that :mod:`advmask.checks` does not cover."""

from __future__ import annotations

from collections.abc import Collection


def check_positive_int(value: object, name: str) -> int:
    """Check an int >= 1 (bools are rejected: ``True`` is not a sample count)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value}")
    return value


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
