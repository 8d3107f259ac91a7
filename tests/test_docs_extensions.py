"""The documentation's own Sphinx extensions (docs/_ext), without a whole build.

The flag table's help text must render as written (no en dash for ``--``, no link for
``file:line``), and the MathJax the pages ship must be where the build copies it from.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx", reason="the docs extensions need Sphinx (the docs extra)")
from docutils import nodes
from docutils.core import publish_doctree

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs" / "_ext"))
import config_tables
import offline_mathjax

HELPS = [
    "cut lines longer than --max-length instead of refusing",
    "longest line in words; longer: error naming file:line",
    "cycles of --baseline cyclical over --epochs",
    "torch CPU threads (per process); None: torch's, 1 with --jobs",
    "pages 1--2, a -- dash, an ellipsis ... and 'quotes'",
    "a *star*, a `tick`, a |bar|, a trailing_ underscore, [1]_, \\back\\slash, http://x.org",
]


@pytest.mark.parametrize("text", HELPS)
def test_help_text_renders_as_written(text: str) -> None:
    doctree = publish_doctree(
        config_tables.help_text(text),
        settings_overrides={"smart_quotes": True, "report_level": 5},
    )
    assert not list(doctree.findall(nodes.reference))
    assert not list(doctree.findall(nodes.system_message))
    # Quotes and apostrophes are typeset (curly), nothing else changes.
    shown = doctree.astext().translate(str.maketrans("\u2018\u2019\u201c\u201d", "''\"\""))
    assert shown == text


def test_help_text_shows_flags_as_literals() -> None:
    doctree = publish_doctree(
        config_tables.help_text("cycles of --baseline cyclical over --epochs")
    )
    assert [node.astext() for node in doctree.findall(nodes.literal)] == ["--baseline", "--epochs"]


def test_the_packaged_mathjax_has_every_file_the_pages_load() -> None:
    es5 = offline_mathjax.packaged_mathjax()
    if es5 is None:
        pytest.skip("django-static-mathjax is not installed (the docs extra installs it)")
    for name in offline_mathjax.FILES:
        assert (es5 / name).is_file(), name
    assert list((es5 / offline_mathjax.FONTS).glob("MathJax_Main-Regular.woff"))
