"""The results page's figures are drawn from the committed run files by one script.

``docs/results/make_figures.py`` reads ``log.csv``, ``pmi.json``, ``dropped.json`` and
``metrics.json`` under ``docs/results/`` and writes the PNGs the page shows. Drawing all seven
takes about 5 s on 2 idle cores and 12 s while two training runs share them, under the 30 s
above which a test is marked slow.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("matplotlib", reason="the figures need the plot extra (matplotlib)")

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "results" / "make_figures.py"


@pytest.fixture(autouse=True)
def _script_folder_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # As when the script runs: its folder (which holds comparisons.py) is on sys.path.
    monkeypatch.syspath_prepend(str(SCRIPT.parent))


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_figures", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the script is executed.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_committed_figure_is_drawn_from_the_committed_runs(tmp_path: Path) -> None:
    script = load_script()
    paths = script.draw_all(tmp_path)
    # The script draws exactly the figures the page shows, each a real image under 200 KB.
    assert sorted(p.name for p in paths) == sorted(p.name for p in script.FIGURES.glob("*.png"))
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
        assert 10_000 < path.stat().st_size < 200_000, (path, path.stat().st_size)


def test_paired_differences_are_paired_by_seed() -> None:
    script = load_script()
    comparison = script.COMPARISONS[0]
    shifted = dataclasses.replace(comparison, b=comparison.b[1:] + comparison.b[:1])
    with pytest.raises(ValueError, match="not the same seed"):
        script.paired(shifted, "neg_elbo")
    difference = script.paired(comparison, "neg_elbo")
    assert difference.low < difference.mean < difference.high
