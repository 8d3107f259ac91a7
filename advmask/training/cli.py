"""Command-line flags generated from a configuration dataclass.

A recipe declares its configuration once, as a dataclass with defaults and per-field help in
``metadata={"help": ...}``; the flags (``--field-name``) are derived from it, so they are never
written twice. The same metadata holds each field's allowed values (``choices``) and range
(``minimum``, ``maximum``, ``exclusive_minimum``, ``exclusive_maximum``), checked when the flags
are parsed; float fields must be finite.

A user error (a bad flag, a missing file) is one line on stderr, ``error: ...``, and exit
status 2, without a traceback: :class:`Parser` does that for flags, :func:`exit_with_error`
for what a recipe finds later (recipes raise :class:`UserError` and turn it into that line).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import signal
import sys
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import torch
import torch.distributed as dist
from rich.console import Console

from advmask.training.distributed import check_device
from advmask.training.divergence import DivergedError
from advmask.training.signals import InterruptedRunError

ConfigT = TypeVar("ConfigT")


RANGE_KEYS: tuple[tuple[str, str], ...] = (
    ("minimum", ">="),
    ("exclusive_minimum", ">"),
    ("maximum", "<="),
    ("exclusive_maximum", "<"),
)
"""Metadata keys of a field's range and the comparison each one requires."""


class UserError(Exception):
    """A mistake the user can fix (a flag, a file, a folder); printed as one line by a CLI."""


def folder_problem(folder: Path) -> str | None:
    """Why files cannot be written under ``folder`` (created if missing), or None.

    Checks the nearest part of the path that exists: a file where a folder must be, or a
    folder this process may not write in.
    """
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{str(existing)!r} is a file, not a folder"
    if hasattr(os, "statvfs") and os.statvfs(existing).f_flag & os.ST_RDONLY:
        return f"{str(existing)!r} is on a read-only file system"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot write in {str(existing)!r} (permission denied)"
    return None


def exit_with_error(message: object, status: int = 2) -> NoReturn:
    """Print ``error: message`` as one line on stderr and exit with ``status`` (2: as argparse,
    a usage error)."""
    text = " ".join(str(message).splitlines())
    sys.stderr.write(f"error: {text}\n")
    sys.stderr.flush()
    raise SystemExit(status)


@contextmanager
def flag_errors(name: str) -> Iterator[None]:
    """A ``ValueError`` of the block becomes ``error: argument --name: message``, status 2.

    An error with a ``setting`` attribute (a library's error that knows which of the settings
    it refuses) names that setting's flag instead.

    Example:
        >>> with flag_errors("lr"):
        ...     float("0.1")
        0.1
    """
    try:
        yield
    except ValueError as error:
        exit_with_error(f"argument {_flag_name(getattr(error, 'setting', name))}: {error}")


class Parser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose errors are one line: ``error: ...``, exit 2.

    argparse prints the whole usage before the error; with dozens of flags that buries the one
    line that matters. ``--help`` still prints everything.
    """

    def error(self, message: str) -> NoReturn:
        exit_with_error(f"{message} (see {self.prog} --help)")


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


def _flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _range_text(field: dataclasses.Field) -> str:
    return " and ".join(
        f"{symbol} {field.metadata[key]}" for key, symbol in RANGE_KEYS if key in field.metadata
    )


def check_value(field: dataclasses.Field, value: Any) -> str | None:
    """Why ``value`` is not allowed for ``field`` (range, finiteness, choices), or None if it is.

    ``None`` is always allowed here (the type decides whether it may be None); for tuples each
    item is checked.
    """
    if value is None:
        return None
    items = value if isinstance(value, (tuple, list)) else (value,)
    choices = field.metadata.get("choices")
    for item in items:
        if choices is not None and item not in choices:
            return f"must be one of {', '.join(map(str, choices))}, got {item!r}"
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            continue
        if isinstance(item, float) and not math.isfinite(item):
            return f"must be a finite number, got {item}"
        bounds = {
            "minimum": item >= field.metadata.get("minimum", -math.inf),
            "exclusive_minimum": item > field.metadata.get("exclusive_minimum", -math.inf),
            "maximum": item <= field.metadata.get("maximum", math.inf),
            "exclusive_maximum": item < field.metadata.get("exclusive_maximum", math.inf),
        }
        if not all(bounds.values()):
            return f"must be {_range_text(field)}, got {item}"
    return None


def add_config_arguments(
    parser: argparse.ArgumentParser,
    config_type: type,
    defaults: Mapping[str, Any] | None = None,
) -> None:
    """Add one ``--flag`` per field of the dataclass ``config_type``.

    Supported field types: ``bool`` (``--flag``/``--no-flag``), ``int``, ``float``, ``str`` (or
    any class whose constructor takes a string, e.g. ``pathlib.Path``), ``tuple[T, ...]`` (one
    or more values), ``tuple[T, T]`` (exactly that many values) and ``Optional`` of these.
    ``metadata={"help": ..., "choices": (...)}`` of a field sets its help text and allowed
    values (per item for tuples). Every flag defaults to ``None`` so that :func:`parse_config`
    can tell what the user set. The help shows the default from ``defaults`` (for example a
    preset's) or else the field's, and the field's range.

    Raises:
        TypeError: if ``config_type`` is not a dataclass or a field type is unsupported.
    """
    fields = _config_fields(config_type)
    hints = typing.get_type_hints(config_type)
    for field in fields:
        annotation, _ = _unwrap_optional(hints[field.name])
        flag = _flag_name(field.name)
        help_text = field.metadata.get("help", "")
        choices = field.metadata.get("choices")
        default = (defaults or {}).get(field.name, _field_default(field))
        if isinstance(default, list):
            default = tuple(default)
        notes = [f"range {_range_text(field)}"] if _range_text(field) else []
        if "default:" not in help_text:  # a help that explains its default keeps its own
            notes.append(f"default: {default}")
        if notes:
            help_text = f"{help_text} ({'; '.join(notes)})" if help_text else "; ".join(notes)
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


def _check_defaults(config_type: type, values: Mapping[str, Any]) -> None:
    for field in _config_fields(config_type):
        choices = field.metadata.get("choices")
        value = values.get(field.name)
        if value is None:
            continue
        items = value if isinstance(value, (tuple, list)) else (value,)
        if choices is not None and any(item not in choices for item in items):
            raise ValueError(f"{field.name} must be one of {tuple(choices)}, got {value!r}")
        problem = check_value(field, value)
        if problem is not None:
            raise ValueError(f"default of {field.name} {problem}")


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
            field's choices or range.
        SystemExit: status 2 for a bad flag or value, after printing one line naming the flag
            and the value (``error: argument --lr: must be > 0, got -1.0 (see ... --help)``).

    Example:
        >>> @dataclasses.dataclass
        ... class Config:
        ...     rate: float = 0.3
        ...     seeds: tuple[int, ...] = (0,)
        ...     compile: bool = False
        >>> parse_config(Config, ["--seeds", "1", "2", "--compile"])
        Config(rate=0.3, seeds=(1, 2), compile=True)
    """
    parser = Parser(description=description)
    add_config_arguments(parser, config_type, defaults)
    fields = {field.name: field for field in _config_fields(config_type)}
    unknown = sorted(set(defaults or {}) - set(fields))
    if unknown:
        raise ValueError(
            f"defaults has names that are not fields of {config_type.__name__}: {unknown}"
        )
    _check_defaults(config_type, defaults or {})
    given = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    for name, value in given.items():
        problem = check_value(fields[name], value)
        if problem is not None:
            parser.error(f"argument {_flag_name(name)}: {problem}")
    values = {**(defaults or {}), **given}
    hints = typing.get_type_hints(config_type)
    for name, value in values.items():
        # argparse returns lists; a None from ``defaults`` stays None for Optional tuples.
        if value is not None and typing.get_origin(_unwrap_optional(hints[name])[0]) is tuple:
            values[name] = tuple(value)
    return config_type(**values)


def flag(default: Any, help: str, choices: Sequence[Any] | None = None, **limits: float) -> Any:
    """A dataclass field with its help, allowed values and range, checked when parsed.

    Args:
        default: the default (a list or dict is copied per instance).
        help: the flag's help text.
        choices: allowed values (per item for tuples), or None.
        **limits: ``minimum=``, ``exclusive_minimum=``, ``maximum=``, ``exclusive_maximum=``.

    Raises:
        TypeError: for a limit other than these four (a misspelt one would check nothing).

    Example:
        >>> @dataclasses.dataclass
        ... class Config:
        ...     lr: float = flag(1.0, "learning rate", exclusive_minimum=0.0)
        >>> parse_config(Config, ["--lr", "0.5"])
        Config(lr=0.5)
    """
    unknown = sorted(set(limits) - {key for key, _ in RANGE_KEYS})
    if unknown:
        raise TypeError(
            f"flag() got unknown limits {unknown}; expected {[key for key, _ in RANGE_KEYS]}"
        )
    metadata = {"help": help, **({"choices": tuple(choices)} if choices else {}), **limits}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def bounded(kind: type, **limits: float) -> Callable[[str], Any]:
    """An argparse ``type=`` for an ``int`` or ``float`` flag with a range, checked when parsed.

    Args:
        kind: ``int`` or ``float`` (floats must be finite).
        **limits: ``minimum=``, ``exclusive_minimum=``, ``maximum=``, ``exclusive_maximum=``.

    Example:
        >>> parser = Parser(prog="analyze.py")
        >>> _ = parser.add_argument("--samples", type=bounded(int, minimum=1), default=10)
        >>> parser.parse_args(["--samples", "3"]).samples
        3
    """
    field = flag(None, "", **limits)

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
        if (problem := check_value(field, value)) is not None:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def writable_folder(text: str) -> Path:
    """An argparse ``type=`` for an output folder (created when needed), refused when the flags
    are parsed, before any work, if files cannot be written there (:func:`folder_problem`).

    Example:
        >>> parser = Parser(prog="analyze.py")
        >>> _ = parser.add_argument("--out", type=writable_folder)
        >>> parser.parse_args(["--out", "results"]).out.name
        'results'
    """
    if problem := folder_problem(Path(text)):
        raise argparse.ArgumentTypeError(problem)
    return Path(text)


def default_folder(folder: Path, flag: str = "--out") -> Path:
    """``folder``, the default of an output flag that was not given, if files can be written
    there.

    Raises:
        UserError: naming ``folder``, why (:func:`folder_problem`) and the flag to pass.
    """
    if problem := folder_problem(folder):
        raise UserError(f"cannot write the results in {str(folder)!r}: {problem}; pass {flag}")
    return folder


def device_argument(text: str) -> str:
    """An argparse ``type=`` for ``--device``: a device this machine has
    (:func:`~advmask.training.distributed.check_device`); ``auto`` becomes ``cuda`` where
    there is one, else ``cpu``."""
    try:
        check_device(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return text


def parse_with_presets(
    config_type: type[ConfigT],
    presets: Mapping[str, Mapping[str, Any]],
    argv: Sequence[str] | None = None,
    *,
    description: str | None = None,
) -> ConfigT:
    """:func:`parse_config` with ``--preset NAME`` choosing the defaults first.

    ``config_type`` must have a ``preset`` field; ``--help`` then shows the chosen preset's
    defaults. The first key of ``presets`` is the default preset.
    """
    preset_parser = Parser(add_help=False)
    preset_parser.add_argument("--preset", default=next(iter(presets)), choices=sorted(presets))
    preset = preset_parser.parse_known_args(argv)[0].preset
    return parse_config(
        config_type, argv, defaults={"preset": preset, **presets[preset]}, description=description
    )


@contextmanager
def exit_codes(console: Console) -> Iterator[None]:
    """Turn a recipe's failures into one line and an exit status, never a traceback.

    :class:`UserError` -> ``error: ...``, status 2; a diverged run
    (:class:`~advmask.training.divergence.DivergedError`) -> ``error: ...``, status 1; a stop
    that was honoured (:class:`~advmask.training.signals.InterruptedRunError`) -> its message,
    status 130; a second Ctrl-C (:class:`KeyboardInterrupt`) -> ``interrupted``, status 130.
    """
    try:
        yield
    except UserError as error:
        exit_with_error(error)
    except DivergedError as error:
        exit_with_error(error, status=1)
    except InterruptedRunError as stop:
        if dist.is_available() and dist.is_initialized():
            # Ending as asked: torchrun, seeing one rank end, sends the others a SIGTERM,
            # which must not turn their exit into a kill.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        # One line even when it is longer than the terminal: it names a path to copy.
        console.print(f"[yellow]{stop}[/yellow]", highlight=False, soft_wrap=True)
        raise SystemExit(130) from None
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once, nothing more saved
        console.print("[yellow]interrupted[/yellow]")
        raise SystemExit(130) from None
