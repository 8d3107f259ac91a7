"""Sphinx configuration of the advmask documentation.

Build (from the repository root)::

    pip install -e ".[docs]"
    sphinx-build -W --keep-going -b html docs docs/_build/html       # the pages
    sphinx-build -W --keep-going -b doctest docs docs/_build/doctest # runs every example

The build needs no network: references to PyTorch and Python objects are resolved to their
online documentation by ``docs/_ext/external_refs.py`` (a small offline stand-in for
intersphinx), and MathJax 3 is copied into the pages from the ``django-static-mathjax`` package of
the docs extra by ``docs/_ext/offline_mathjax.py``, so that the built pages show their math
offline too (without that package they load MathJax 3 from its CDN).
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(ROOT))

import advmask  # noqa: E402

# -- Project -----------------------------------------------------------------------------------
project = "advmask"
author = "advmask developers"
copyright = "advmask developers"
release = advmask.__version__
version = ".".join(release.split(".")[:2])

# -- Extensions ----------------------------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "offline_mathjax",  # docs/_ext: sphinx.ext.mathjax with MathJax 3 inside the pages
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
    "myst_parser",
    "external_refs",  # docs/_ext: torch/Python cross-references without a network
    "config_tables",  # docs/_ext: flag and preset tables generated from the recipe's Config
    "exports",  # docs/_ext: the table of advmask.__all__
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []

# Every reference must resolve; the few targets that cannot be linked are listed below.
nitpicky = True
nitpick_ignore_regex = [
    # Type variables and private protocols that have no page of their own.
    ("py:class", r"advmask\..*\._[A-Za-z].*"),
    # The type variable of advmask.training.cli.parse_config (the dataclass type passed in).
    ("py:class", "advmask.training.cli.ConfigT"),
    # The type variable of advmask.training.distributed.shard_batch and BatchShard: any batch
    # dataclass with ``num_sequences`` (its bound, the protocol ``Rows``, is not exported).
    ("py:(class|obj)", "advmask.training.distributed.RowsT"),
]

# -- autodoc + napoleon --------------------------------------------------------------------------
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_typehints_format = "short"
autodoc_member_order = "bysource"
autodoc_class_signature = "mixed"
autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
    "exclude-members": "__init__, __new__, extra_repr",
}
autodoc_preserve_defaults = True
# A method without a docstring of its own (``forward``, ``set_extra_state``) would otherwise show
# torch.nn.Module's text, which describes PyTorch, not advmask.
autodoc_inherit_docstrings = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = False
napoleon_attr_annotations = True

# -- doctest -------------------------------------------------------------------------------------
# Pages use ``.. testcode::`` / ``.. doctest::``; docstring examples (``>>>`` blocks shown by
# autodoc) are run by ``pytest --doctest-modules`` in their own modules' namespaces instead.
doctest_test_doctest_blocks = ""
doctest_global_setup = """
import torch
from torch import nn
torch.manual_seed(0)
"""

# -- Cross-references ----------------------------------------------------------------------------
# References to torch.* and Python objects (``:class:`torch.nn.Embedding```, and every type in a
# signature) are linked to their online documentation by docs/_ext/external_refs.py, offline.

# -- Math ----------------------------------------------------------------------------------------
# MathJax 3 (docs/_ext/offline_mathjax.py picks the copy). textmacros reads ``\_`` inside
# ``\text{...}`` as an underscore, as LaTeX does, instead of showing the backslash.
mathjax3_config = {
    "loader": {"load": ["[tex]/textmacros"]},
    "tex": {
        "packages": {"[+]": ["textmacros"]},
        "macros": {
            "E": r"\mathbb{E}",
            "KL": r"\operatorname{KL}",
            "ELBO": r"\operatorname{ELBO}",
            "R": r"\mathbb{R}",
        },
    },
}

# -- HTML ----------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"advmask {release}"
html_static_path = ["_static"]
html_css_files = ["advmask.css"]  # code that wraps, math that scrolls (see the file)
pygments_style = "friendly"
pygments_dark_style = "monokai"

# -- MyST (CHANGELOG.md) -------------------------------------------------------------------------
myst_heading_anchors = 3
