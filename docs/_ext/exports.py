"""``.. advmask-exports::``: the table of names importable from the top-level package.

Generated from ``advmask.__all__`` at build time, each name linked to the page of the module
that defines it, with the first line of its docstring; adding an export updates the table.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

_ROLE = re.compile(r":(?:py:)?[a-z]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`")


def summary(obj: Any) -> str:
    """First paragraph of the docstring; roles become literals (they are relative to the
    defining module, which is not the context of this table)."""
    doc = inspect.getdoc(obj) or ""
    if isinstance(obj, (dict, list, tuple)) or not doc:
        return ""
    first = doc.split("\n\n")[0].replace("\n", " ")
    return _ROLE.sub(lambda match: f"``{match.group(1)}``", first)


class AdvmaskExports(SphinxDirective):
    has_content = False

    def run(self) -> list[nodes.Node]:
        import advmask

        lines = [
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 30 70",
            "",
            "   * - Name",
            "     - What it is",
        ]
        for name in sorted(advmask.__all__, key=str.lower):
            obj = getattr(advmask, name)
            module = getattr(obj, "__module__", None)
            if inspect.isclass(obj):
                role = "class"
            elif callable(obj):
                role = "func"
            else:
                role, module = "data", _defining_module(advmask, name)
            first = summary(obj) if role != "data" else _describe_data(obj)
            lines.append(f"   * - :py:{role}:`{name} <{module}.{name}>`")
            lines.append(f"     - {first}")
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source="advmask.__all__"), 0, container)
        return container.children


def _describe_data(obj: Any) -> str:
    if isinstance(obj, dict):
        keys = ", ".join(f"``{key!r}``" for key in obj)
        return f"a ``dict`` with the keys {keys}" if obj else "an empty ``dict``"
    return f"a ``{type(obj).__name__}``"


def _defining_module(package: Any, name: str) -> str:
    """Module whose namespace holds the same object (for data such as dicts)."""
    import sys

    obj = getattr(package, name)
    for module_name, module in sorted(sys.modules.items()):
        if (
            module_name.startswith("advmask.")
            and "._" not in module_name
            and getattr(module, name, None) is obj
        ):
            return module_name
    return package.__name__


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("advmask-exports", AdvmaskExports)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
