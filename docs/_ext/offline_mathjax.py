"""MathJax 3 shipped inside the built pages, so that their math renders offline.

Sphinx loads MathJax from a CDN by default, which leaves raw TeX on a page read without a
network. The docs extra installs ``django-static-mathjax`` (MathJax 3.2 as a Python package,
no Django needed to use its files); after an HTML build this extension copies the few files the
pages load (the ``tex-mml-chtml`` component, the ``textmacros`` extension and the CHTML fonts,
about 1.6 MB) into ``_static/mathjax/`` and points the pages at them. Without that package the
pages load the same MathJax 3 from the CDN, and the build says so.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

CDN_MATHJAX = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"
LOCAL_MATHJAX = "mathjax/tex-mml-chtml.js"  # relative to _static
# What the pages load, relative to MathJax's es5/ folder: the component, the extension that
# reads \_ and friends inside \text{...}, and the fonts of the CHTML output.
FILES = ("tex-mml-chtml.js", "input/tex/extensions/textmacros.js")
FONTS = "output/chtml/fonts/woff-v2"


def packaged_mathjax() -> Path | None:
    """MathJax's ``es5/`` folder from ``django-static-mathjax``, or None if not installed."""
    spec = importlib.util.find_spec("mathjax")
    if spec is None or not spec.submodule_search_locations:
        return None
    es5 = Path(next(iter(spec.submodule_search_locations))) / "static" / "mathjax" / "es5"
    return es5 if (es5 / FILES[0]).is_file() else None


def choose_mathjax(app: Sphinx) -> None:
    """Point the pages at the local copy when there is one, else at MathJax 3 on the CDN."""
    if app.builder.format != "html":
        return
    if packaged_mathjax() is None:
        logger.info(
            "offline_mathjax: django-static-mathjax is not installed; the pages load MathJax "
            'from %s (pip install -e ".[docs]" ships it with the pages)',
            CDN_MATHJAX,
        )
        app.config.mathjax_path = CDN_MATHJAX
    else:
        app.config.mathjax_path = LOCAL_MATHJAX


def copy_mathjax(app: Sphinx, exception: Exception | None) -> None:
    """Copy the files the pages load into ``_static/mathjax/`` after a successful build."""
    es5 = packaged_mathjax()
    if exception is not None or app.builder.format != "html" or es5 is None:
        return
    target = Path(app.outdir) / "_static" / "mathjax"
    for name in FILES:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(es5 / name, target / name)
    shutil.copytree(es5 / FONTS, target / FONTS, dirs_exist_ok=True)


def setup(app: Sphinx) -> dict[str, Any]:
    app.setup_extension("sphinx.ext.mathjax")
    app.connect("builder-inited", choose_mathjax)
    app.connect("build-finished", copy_mathjax)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
