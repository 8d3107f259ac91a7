"""``benchmarks/device_check.py`` at its CPU smoke size: the GPU-day script must not rot."""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_device_check():
    spec = importlib.util.spec_from_file_location(
        "device_check", ROOT / "benchmarks" / "device_check.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["device_check"] = module
    spec.loader.exec_module(module)
    return module


def tiny_corpus(folder: Path) -> Path:
    rng = random.Random(0)
    words = [f"w{i}" for i in range(30)]
    for split, lines in (("train", 40), ("valid", 6), ("test", 6)):
        text = "\n".join(
            " ".join(rng.choice(words) for _ in range(rng.randint(2, 8))) for _ in range(lines)
        )
        (folder / f"{split}.txt").write_text(text + "\n")
    return folder


def check_timings(section: dict, pairs: tuple[str, ...]) -> None:
    assert "error" not in section, section.get("error")
    for result in section.values():
        for ratio in pairs:
            assert result["paired_ratio"][ratio] > 0


def test_smoke_step_iw_and_compile(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    device_check = load_device_check()
    device_check.main(["--smoke", "--out", str(out), "--parts", "step", "iw", "compile"])
    report = json.loads(out.read_text())
    assert report["smoke"] and report["environment"]["device"] == "cpu"
    check_timings(
        report["step"], ("uniform bf16 / uniform fp32", "adversarial bf16 / adversarial fp32")
    )
    check_timings(report["iw"], ("bf16 / fp32",))
    nll = report["iw"]["smoke"]["nll_iw"]
    assert abs(nll["bf16"] - nll["fp32"]) < 0.05
    compiled = report["compile"]
    first, *rest = compiled.values()
    assert first["paired_ratio"]["compiled / eager"] > 0, first
    assert all("skipped" in result for result in rest)
    assert set(report["part_seconds"]) == {"step", "iw", "compile"}


@pytest.mark.slow
def test_smoke_ptb_runs_in_parallel_processes(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    data = tiny_corpus(tmp_path)
    device_check = load_device_check()
    device_check.main(
        ["--smoke", "--out", str(out), "--parts", "ptb", "--data-dir", str(data),
         "--work-dir", str(tmp_path / "work")]
    )  # fmt: skip
    ptb = json.loads(out.read_text())["ptb"]
    assert ptb["returncode"] == 0, ptb["output_tail"]
    assert set(ptb["test"]) == {"none-seed0", "uniform-seed0", "adversarial-seed0"}
    assert all(result["nll_iw"] > 0 for result in ptb["test"].values())
