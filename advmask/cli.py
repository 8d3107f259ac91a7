"""Command-line flags generated from a configuration dataclass.

A recipe declares its configuration once, as a dataclass with defaults and per-field help in
``metadata={"help": ...}``; the flags (``--field-name``) are derived from it, so they are never
written twice.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Sequence
from typing import Any, TypeVar

ConfigT = TypeVar("ConfigT")


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def add_config_arguments(parser: argparse.ArgumentParser, config_type: type) -> None:
    """Add one ``--flag`` per field of the dataclass ``config_type``.

    Supported field types: ``bool`` (``--flag``/``--no-flag``), ``int``, ``float``, ``str``,
    ``tuple[T, ...]`` (one or more values) and ``Optional`` of these. Every flag defaults to
    ``None`` so that :func:`parse_config` can tell what the user set.
    """
    hints = typing.get_type_hints(config_type)
    for field in dataclasses.fields(config_type):
        annotation, _ = _unwrap_optional(hints[field.name])
        flag = "--" + field.name.replace("_", "-")
        help_text = field.metadata.get("help", "")
        choices = field.metadata.get("choices")
        default = field.default if field.default is not dataclasses.MISSING else None
        help_text = f"{help_text} (default: {default})" if help_text else f"default: {default}"
        if annotation is bool:
            parser.add_argument(
                flag, dest=field.name, action=argparse.BooleanOptionalAction, default=None,
                help=help_text,
            )
        elif typing.get_origin(annotation) is tuple:
            (item_type, _ellipsis) = typing.get_args(annotation)
            parser.add_argument(
                flag, dest=field.name, nargs="+", type=item_type, default=None,
                choices=choices, help=help_text,
            )
        else:
            parser.add_argument(
                flag, dest=field.name, type=annotation, default=None, choices=choices,
                help=help_text,
            )


def parse_config(
    config_type: type[ConfigT],
    argv: Sequence[str] | None = None,
    *,
    defaults: dict[str, Any] | None = None,
    description: str | None = None,
) -> ConfigT:
    """Build ``config_type`` from command-line flags.

    Precedence: flags given on the command line, then ``defaults`` (for example a preset), then
    the dataclass defaults.

    Example:
        >>> @dataclasses.dataclass
        ... class Config:
        ...     rate: float = 0.3
        ...     seeds: tuple[int, ...] = (0,)
        ...     compile: bool = False
        >>> parse_config(Config, ["--seeds", "1", "2", "--compile"])
        Config(rate=0.3, seeds=(1, 2), compile=True)
    """
    parser = argparse.ArgumentParser(description=description)
    add_config_arguments(parser, config_type)
    given = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    values = {**(defaults or {}), **given}
    hints = typing.get_type_hints(config_type)
    for name, value in values.items():
        if typing.get_origin(_unwrap_optional(hints[name])[0]) is tuple:
            values[name] = tuple(value)
    return config_type(**values)
