"""The package's layers import each other as docs/api/index.rst says.

The core (``advmask`` outside ``seqvae`` and ``training``) imports nothing from the other two
layers; ``advmask.training`` takes only ``advmask.checks`` from the core. Read from the source
(every ``import`` statement, also those inside functions), not from ``sys.modules``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "advmask"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """The advmask modules that one source file imports (relative imports resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                found.add(node.module)
    return {module for module in found if module.split(".")[0] == "advmask"}


def layer(module: str) -> str:
    for sub in ("seqvae", "training"):
        if module == f"advmask.{sub}" or module.startswith(f"advmask.{sub}."):
            return sub
    return "core"


def cross_layer_imports() -> set[tuple[str, str]]:
    """Every (importer, imported) pair of advmask modules in different layers."""
    return {
        (module_name(path), target)
        for path in PACKAGE.rglob("*.py")
        for target in imported_modules(path)
        if layer(module_name(path)) != layer(target)
    }


def test_the_core_imports_neither_seqvae_nor_training() -> None:
    assert {pair for pair in cross_layer_imports() if layer(pair[0]) == "core"} == set()


def test_training_takes_only_the_checks_from_the_core() -> None:
    taken = {
        target
        for source, target in cross_layer_imports()
        if layer(source) == "training" and layer(target) == "core"
    }
    assert taken == {"advmask.checks"}


def test_the_import_reader_finds_the_known_imports() -> None:
    # The two tests above would pass vacuously if the reader found no import at all.
    assert "advmask.checks" in imported_modules(PACKAGE / "training" / "distributed.py")
    assert ("advmask.seqvae.vae", "advmask.checks") in cross_layer_imports()


def core_modules() -> list[Path]:
    """The core's source files: ``advmask`` outside ``seqvae`` and ``training``."""
    return [path for path in PACKAGE.rglob("*.py") if layer(module_name(path)) == "core"]


def test_the_core_api_has_at_most_20_names() -> None:
    import advmask

    assert len(advmask.__all__) <= 20, sorted(advmask.__all__)
    assert all(hasattr(advmask, name) for name in advmask.__all__)


def test_no_core_module_is_over_500_lines() -> None:
    lengths = {module_name(path): len(path.read_text().splitlines()) for path in core_modules()}
    assert "advmask.embedding" in lengths and "advmask.relaxations.registry" in lengths
    assert {name: n for name, n in lengths.items() if n > 500} == {}


def test_names_moved_out_of_the_core_api_warn_and_name_their_module() -> None:
    import advmask
    from advmask.budget import num_to_drop

    with pytest.warns(DeprecationWarning, match="from advmask.budget import num_to_drop"):
        assert advmask.num_to_drop is num_to_drop
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        _ = advmask.no_such_name
