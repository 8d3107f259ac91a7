"""The documentation builds without a single warning, and every example on its pages runs.

``sphinx-build -W`` turns each warning (an unresolved cross-reference, a docstring that does
not parse, a stale name) into a failure; the ``doctest`` builder executes the ``testcode`` and
``doctest`` blocks of the guide pages. Docstring examples are run by ``--doctest-modules``.
The test extra installs Sphinx (``pip install -e ".[test]"`` includes ``[docs]``); an
environment without it skips these tests and says why.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

for _module in ("sphinx", "furo", "myst_parser"):
    pytest.importorskip(
        _module,
        reason=f"{_module} is not installed: the documentation build needs the docs extra, "
        'which pip install -e ".[test]" includes',
    )

DOCS = Path(__file__).resolve().parents[1] / "docs"

# Both builds import torch and every advmask module: about 20 s together on 2 cores, under the
# 30 s above which a test is marked slow.


def sphinx_build(builder: str, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-E",
            "-q",
            "-b",
            builder,
            str(DOCS),
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def test_html_builds_without_warnings(tmp_path: Path) -> None:
    result = sphinx_build("html", tmp_path / "html")
    assert result.returncode == 0, result.stderr[-6000:]
    for page in (
        "index",
        "getting_started",
        "huggingface",
        "method",
        "relaxations",
        "evaluation",
        "recipes",
        "results",
        "changelog",
        "api/index",
        "api/maskers",
    ):
        assert (tmp_path / "html" / f"{page}.html").is_file(), page


def test_every_example_on_the_pages_runs(tmp_path: Path) -> None:
    result = sphinx_build("doctest", tmp_path / "doctest")
    output = (tmp_path / "doctest" / "output.txt").read_text() if result.returncode else ""
    assert result.returncode == 0, (result.stderr + output)[-6000:]
