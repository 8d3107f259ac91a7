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


def _config_fields(config_type: type) -> list[dataclasses.Field]:
    if not (isinstance(config_type, type) and dataclasses.is_dataclass(config_type)):
        raise TypeError(f"config_type must be a dataclass type, got {config_type!r}")
    # Fields with init=False cannot be passed to the constructor, so they get no flag.
    return [field for field in dataclasses.fields(config_type) if field.init]


def _field_default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def _tuple_arity(name: str, annotation: Any) -> tuple[Any, int | str]:
    """Item type and argparse ``nargs`` of ``tuple[T, ...]`` or ``tuple[T, T, ...T]``."""
    args = typing.get_args(annotation)
    if len(args) == 2 and args[1] is Ellipsis:
        return args[0], "+"
    if args and all(arg == args[0] for arg in args):
        return args[0], len(args)
    raise TypeError(
        f"field {name!r}: only tuple[T, ...] and tuple[T, ..., T] of one type T are supported, "
        f"got {annotation!r}"
    )


def add_config_arguments(parser: argparse.ArgumentParser, config_type: type) -> None:
    """Add one ``--flag`` per field of the dataclass ``config_type``.

    Supported field types: ``bool`` (``--flag``/``--no-flag``), ``int``, ``float``, ``str`` (or
    any class whose constructor takes a string, e.g. ``pathlib.Path``), ``tuple[T, ...]`` (one
    or more values), ``tuple[T, T]`` (exactly that many values) and ``Optional`` of these.
    ``metadata={"help": ..., "choices": (...)}`` of a field sets its help text and allowed
    values (per item for tuples). Every flag defaults to ``None`` so that :func:`parse_config`
    can tell what the user set.

    Raises:
        TypeError: if ``config_type`` is not a dataclass or a field type is unsupported.
    """
    fields = _config_fields(config_type)
    hints = typing.get_type_hints(config_type)
    for field in fields:
        annotation, _ = _unwrap_optional(hints[field.name])
        flag = "--" + field.name.replace("_", "-")
        help_text = field.metadata.get("help", "")
        choices = field.metadata.get("choices")
        default = _field_default(field)
        help_text = f"{help_text} (default: {default})" if help_text else f"default: {default}"
        # argparse %-formats help strings: a literal "%" (e.g. "50% of the data") would crash
        # --help.
        help_text = help_text.replace("%", "%%")
        if annotation is bool:
            parser.add_argument(
                flag,
                dest=field.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        elif typing.get_origin(annotation) is tuple:
            item_type, nargs = _tuple_arity(field.name, annotation)
            parser.add_argument(
                flag,
                dest=field.name,
                nargs=nargs,
                type=item_type,
                default=None,
                choices=choices,
                help=help_text,
            )
        elif typing.get_origin(annotation) is None and callable(annotation):
            parser.add_argument(
                flag,
                dest=field.name,
                type=annotation,
                default=None,
                choices=choices,
                help=help_text,
            )
        else:
            raise TypeError(f"field {field.name!r}: unsupported type {hints[field.name]!r}")


def _check_choices(config_type: type, values: dict[str, Any]) -> None:
    for field in _config_fields(config_type):
        choices = field.metadata.get("choices")
        if choices is None or values.get(field.name) is None:
            continue
        value = values[field.name]
        items = value if isinstance(value, (tuple, list)) else (value,)
        bad = [item for item in items if item not in choices]
        if bad:
            raise ValueError(f"{field.name} must be one of {tuple(choices)}, got {value!r}")


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

    Args:
        config_type: a dataclass type (see :func:`add_config_arguments` for the field types).
        argv: the flags; ``None`` reads ``sys.argv[1:]``.
        defaults: field name -> value overriding the dataclass defaults (lists are accepted for
            tuple fields); names and choices are checked.
        description: the parser's description (shown by ``--help``).

    Raises:
        ValueError: for a name in ``defaults`` that is not a field, or a value outside a
            field's choices.
        SystemExit: from argparse, for a bad flag or value (the message is printed).

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
    names = {field.name for field in _config_fields(config_type)}
    unknown = sorted(set(defaults or {}) - names)
    if unknown:
        raise ValueError(
            f"defaults has names that are not fields of {config_type.__name__}: {unknown}"
        )
    _check_choices(config_type, defaults or {})
    given = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    values = {**(defaults or {}), **given}
    hints = typing.get_type_hints(config_type)
    for name, value in values.items():
        # argparse returns lists; a None from ``defaults`` stays None for Optional tuples.
        if value is not None and typing.get_origin(_unwrap_optional(hints[name])[0]) is tuple:
            values[name] = tuple(value)
    return config_type(**values)
