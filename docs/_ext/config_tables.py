"""Tables of a recipe's flags and presets, generated from its ``Config`` dataclass at build time.

The recipe declares every setting once, as a field of a frozen dataclass made with
:func:`advmask.training.cli.flag` (``metadata={"help": ..., "choices": ..., "minimum": ...}``),
and derives its command-line flags from it (:mod:`advmask.training.cli`). These directives read
the same dataclass, so the documented flags can never drift from the real ones::

    .. config-flags:: recipes/seqvae_awd.py
       :class: Config

    .. config-presets:: recipes/seqvae_awd.py
       :presets: PRESETS

Paths are relative to the repository root. The recipe file is imported (not executed as a
script), and registered as a dependency, so editing it rebuilds the page.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]


def load_recipe(relative_path: str) -> types.ModuleType:
    """Import a recipe file by path (once per build) without running its ``main``."""
    path = (ROOT / relative_path).resolve()
    name = f"_advmask_docs_recipe_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot import recipe {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve annotations through sys.modules
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def type_name(annotation: Any) -> str:
    """``int | None`` -> "int or unset"; ``tuple[str, ...]`` -> "one or more str"."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        inner = " | ".join(type_name(a) for a in args)
        return inner if len(args) == len(typing.get_args(annotation)) else f"{inner} (optional)"
    if origin is tuple:
        return f"one or more {type_name(typing.get_args(annotation)[0])}"
    return getattr(annotation, "__name__", str(annotation))


def show_value(value: Any) -> str:
    """A literal for a table cell; machine-specific absolute paths become relative to the repo."""
    if value is None:
        return "unset"
    if isinstance(value, tuple):
        return " ".join(show_value(v) for v in value)
    if isinstance(value, bool):
        return "on" if value else "off"
    text = str(value)
    if isinstance(value, str) and text.startswith(str(ROOT.parent)):
        text = "../" + str(Path(text).relative_to(ROOT.parent))
    return text


def literal(text: str) -> str:
    return "``" + text.replace("`", "'") + "``" if text else ""


FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def plain_text(text: str) -> str:
    """reST that shows ``text`` as written: every mark reST reads is escaped.

    Without this, ``--max-length`` turns into an en dash (smart quotes) and ``file:line`` into a
    link (a URI scheme). Quotes stay unescaped, so that apostrophes are typeset.
    """
    return re.sub(r"""([^\w\s'"])""", r"\\\1", text)


def help_text(text: str) -> str:
    """A field's help as reST: the flags it names as literals, everything else as written."""
    pieces = []
    start = 0
    for match in FLAG.finditer(text):
        pieces += [plain_text(text[start : match.start()]), literal(match.group())]
        start = match.end()
    pieces.append(plain_text(text[start:]))
    # A literal must not touch a word character, or reST reads it as plain text.
    return "\\ ".join(piece for piece in pieces if piece)


def list_table(header: list[str], rows: list[list[str]], widths: list[int]) -> list[str]:
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        f"   :widths: {' '.join(map(str, widths))}",
        "",
    ]
    for row in [header, *rows]:
        lines.append(f"   * - {row[0]}")
        lines.extend(f"     - {cell}" for cell in row[1:])
    return lines


class _RecipeDirective(SphinxDirective):
    required_arguments = 1
    has_content = False

    def recipe(self) -> types.ModuleType | None:
        """The imported recipe, or None after a build warning (the table is then left out)."""
        path = self.arguments[0]
        self.env.note_dependency(str(ROOT / path))
        try:
            return load_recipe(path)
        except Exception as error:  # any import error becomes a build warning
            logger.warning(
                "cannot import %s for %s: %r", path, self.name, error, location=self.get_location()
            )
            return None

    def render(self, lines: list[str]) -> list[nodes.Node]:
        container = nodes.container(classes=["config-table"])
        self.state.nested_parse(StringList(lines, source=self.arguments[0]), 0, container)
        return [container]


class ConfigFlags(_RecipeDirective):
    """One row per field of the config dataclass: flag, type, default, choices, meaning."""

    option_spec: ClassVar[dict[str, Any]] = {"class": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        from advmask.training.cli import RANGE_KEYS

        recipe = self.recipe()
        if recipe is None:
            return []
        config = getattr(recipe, self.options.get("class", "Config"))
        hints = typing.get_type_hints(config)
        rows = []
        for field in dataclasses.fields(config):
            name = field.name.replace("_", "-")
            flag = literal(f"--{name}")
            annotation = hints[field.name]
            if annotation is bool:  # two literals: a narrow column breaks the pair at the slash
                flag += " / " + literal(f"--no-{name}")
            if field.default is not dataclasses.MISSING:
                default = field.default
            else:
                default = field.default_factory()  # type: ignore[misc]
            choices = field.metadata.get("choices")
            kind = type_name(annotation)
            if choices:
                kind += ": " + ", ".join(literal(c) for c in choices)
            limits = [
                f"{symbol} {field.metadata[key]}"
                for key, symbol in RANGE_KEYS
                if key in field.metadata
            ]
            if limits:
                kind += ", " + " and ".join(limits)
            rows.append(
                [
                    flag,
                    kind,
                    literal(show_value(default)),
                    help_text(field.metadata.get("help", "")),
                ]
            )
        return self.render(
            list_table(["Flag", "Type", "Default", "Meaning"], rows, [24, 22, 14, 40])
        )


class ConfigPresets(_RecipeDirective):
    """One row per preset: the fields it sets (everything else keeps the Config default)."""

    option_spec: ClassVar[dict[str, Any]] = {"presets": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        recipe = self.recipe()
        if recipe is None:
            return []
        presets = getattr(recipe, self.options.get("presets", "PRESETS"))
        rows = []
        for name, overrides in presets.items():
            settings = ", ".join(
                literal(f"{key}={show_value(value)}") for key, value in overrides.items()
            )
            rows.append([literal(name), settings or "(the Config defaults)"])
        return self.render(list_table(["Preset", "Settings it changes"], rows, [15, 85]))


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("config-flags", ConfigFlags)
    app.add_directive("config-presets", ConfigPresets)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
