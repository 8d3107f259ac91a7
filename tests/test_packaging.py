"""What ``pip install`` gives a fresh machine: the dependencies and extras in pyproject.toml and
the CI entry point that runs the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
README_TEST_COMMAND = 'pip install -e ".[test]" && python -m pytest'


def _names(requirements: list[str]) -> set[str]:
    """Lower-case distribution names of PEP 508 requirements, ``_`` read as ``-``."""
    return {
        re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements
    }


def _extra(name: str) -> set[str]:
    """Names an extra installs, following ``advmask[...]`` references to other extras."""
    names = set()
    for requirement in PROJECT["optional-dependencies"][name]:
        own = re.fullmatch(r"advmask\[([\w,\s-]+)\]", requirement)
        if own:
            for other in own.group(1).split(","):
                names |= _extra(other.strip())
        else:
            names |= _names([requirement])
    return names


def test_numpy_is_a_dependency() -> None:
    # torch declares no NumPy requirement, yet `import torch` warns "Failed to initialize
    # NumPy" without it (seen after `pip install -e .` in a fresh virtual environment).
    dependencies = _names(PROJECT["dependencies"])
    assert "numpy" in dependencies
    assert "torch>=2.4" in PROJECT["dependencies"]


def test_the_test_extra_installs_what_the_docs_tests_need() -> None:
    # tests/test_docs.py skips without Sphinx; the README's test command must not skip it.
    assert {"sphinx", "furo", "myst-parser"} <= _extra("test")
    assert {"pytest", "hypothesis"} <= _extra("dev")


def test_ci_runs_the_readme_test_command_after_installing_everything() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert README_TEST_COMMAND in (ROOT / "README.md").read_text()
    # A fresh virtual environment first: the newest releases pyproject.toml allows are tested,
    # not the older ones the machine's Python may hold (pytest 9.0.3 hid a pytest 9.2 error).
    assert lines[2] == "python3 -m venv --clear .venv-ci", lines[:3]
    assert lines[3] == "source .venv-ci/bin/activate", lines[3]
    commands = [line for line in lines if line.startswith(("pip ", "python "))]
    assert commands[0] == (
        'python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"'
    )
    assert README_TEST_COMMAND in commands
    # nothing the tests need is installed after they ran (the docs extra used to be)
    after = commands[commands.index(README_TEST_COMMAND) + 1 :]
    assert not any("pip install" in line for line in after), after
