"""Every ``torch.autograd.Function`` in advmask uses the ``setup_context`` form.

The old form, ``forward(ctx, ...)``, cannot be transformed by ``torch.func`` (vmap, grad): a
Function written that way fails there however simple it is. Checked statically, from the source,
so a new Function in the old form fails this test before anyone tries to vmap it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import advmask

PACKAGE = Path(advmask.__file__).resolve().parent


def autograd_functions(source: str) -> list[ast.ClassDef]:
    """Classes whose bases name ``Function`` (``torch.autograd.Function`` and aliases)."""

    def is_function(base: ast.expr) -> bool:
        return (isinstance(base, ast.Attribute) and base.attr == "Function") or (
            isinstance(base, ast.Name) and base.id == "Function"
        )

    return [
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ClassDef) and any(is_function(b) for b in node.bases)
    ]


def style_problems(cls: ast.ClassDef) -> list[str]:
    methods = {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)}
    problems = []
    if "setup_context" not in methods:
        problems.append("no setup_context")
    forward = methods.get("forward")
    if forward is not None and forward.args.args and forward.args.args[0].arg == "ctx":
        problems.append("forward takes ctx")
    return problems


def test_every_autograd_function_uses_setup_context() -> None:
    found, bad = 0, []
    for path in sorted(PACKAGE.rglob("*.py")):
        for cls in autograd_functions(path.read_text()):
            found += 1
            if problems := style_problems(cls):
                bad.append(f"{path.relative_to(PACKAGE)}:{cls.lineno} {cls.name}: {problems}")
    assert found >= 7, found  # the check must see the Functions it is about
    assert not bad, bad


def test_the_check_catches_the_old_form() -> None:
    old = (
        "class F(torch.autograd.Function):\n"
        "    @staticmethod\n"
        "    def forward(ctx, x):\n"
        "        return x\n"
    )
    (cls,) = autograd_functions(old)
    assert style_problems(cls) == ["no setup_context", "forward takes ctx"]
