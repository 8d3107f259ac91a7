"""Several processes train exactly as one: sharding, loss scale, random draws, reductions.

The end-to-end test runs ``recipes/seqvae_awd.py`` under ``torchrun`` with 2 CPU processes
(gloo) and batch B, and in this process with batch 2B, and compares every logged training
value, the final parameters and the validation/test metrics (about 15 s on 2 cores). The
per-row random draws themselves are tested in ``tests/test_row_draws.py`` and
``tests/seqvae/test_sharded_draws.py``.
"""

from __future__ import annotations

import csv
import importlib.util
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from hypothesis import given
from hypothesis import strategies as st

from advmask.seqvae.data import collate, make_batches
from advmask.training.distributed import (
    DistributedContext,
    all_gather_rows,
    any_rank,
    block_range,
    init_distributed,
    rank_and_world_size,
    reduce_ratios,
    shard_batch,
    sum_across_ranks,
)
from tests.recipes.test_recipe import TINY_MODEL

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------------------------
# Sharding and the loss scale
# --------------------------------------------------------------------------------------------
@given(st.integers(0, 60), st.integers(1, 7))
def test_blocks_tile_the_range_in_rank_order(count, world_size) -> None:
    blocks = [block_range(count, rank, world_size) for rank in range(world_size)]
    assert blocks[0][0] == 0 and blocks[-1][1] == count
    assert all(a[1] == b[0] for a, b in itertools.pairwise(blocks))
    sizes = [stop - start for start, stop in blocks]
    assert max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)  # the larger blocks first


@given(st.integers(1, 40), st.integers(1, 6), st.integers(1, 3), st.integers(0, 10))
def test_shards_of_global_batches_are_make_batches_rank_batches(count, batch_size, world, seed):
    """The recipe's shards hold exactly the rows make_batches gives each rank."""
    sequences = [[4] * (1 + (7 * i) % 5) for i in range(count)]
    global_batches = make_batches(sequences, batch_size * world)
    for rank in range(world):
        expected = make_batches(sequences, batch_size, rank=rank, world_size=world)
        shards = [
            shard_batch(b, rank, world).batch for b in global_batches if b.num_sequences >= world
        ]
        # make_batches keeps a last step smaller than world_size; the recipe leaves it out.
        assert [s.indices.tolist() for s in shards] == [
            e.indices.tolist() for e in expected[: len(shards)]
        ]


def test_shards_keep_the_global_padding_and_scale_to_the_global_mean() -> None:
    batch = collate([[5], [6, 7, 8, 9], [10, 11], [12], [13, 14, 15]])
    shards = [shard_batch(batch, rank, 2) for rank in range(2)]
    assert [s.num_sequences for s in shards] == [3, 2]
    assert all(s.batch.tokens.shape[1] == batch.tokens.shape[1] for s in shards)
    assert torch.equal(torch.cat([s.batch.tokens for s in shards]), batch.tokens)
    # DDP averages the ranks' gradients: mean_r(scale_r * mean over shard r) = global mean.
    values = torch.tensor([1.0, 5.0, 2.0, 7.0, 3.0], dtype=torch.float64)
    averaged = sum(s.loss_scale * values[s.start : s.stop].mean() for s in shards) / len(shards)
    assert float(averaged) == pytest.approx(float(values.mean()), rel=1e-15)
    assert shard_batch(batch, 0, 1).loss_scale == 1.0


def test_a_rank_without_rows_is_refused() -> None:
    with pytest.raises(ValueError, match="world_size=3"):
        shard_batch(collate([[5], [6]]), 2, 3)
    with pytest.raises(ValueError, match="rank"):
        block_range(4, 2, 2)


# --------------------------------------------------------------------------------------------
# One process: nothing to do
# --------------------------------------------------------------------------------------------
def test_single_process_is_the_identity(monkeypatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    context = init_distributed("cpu")
    assert context == DistributedContext() and not context.is_distributed
    assert not dist.is_initialized()
    assert rank_and_world_size() == (0, 1)
    assert reduce_ratios({"a": torch.tensor([3.0, 4.0])}) == {"a": 0.75}
    assert reduce_ratios({"empty": torch.tensor([0.0, 0.0])}) == {"empty": 0.0}
    assert sum_across_ranks({"a": 2}) == {"a": 2.0}
    assert any_rank(True) and not any_rank(False)
    rows = torch.arange(6.0).reshape(3, 2)
    assert all_gather_rows(rows) is rows


# --------------------------------------------------------------------------------------------
# torchrun: 2 ranks x batch B == 1 rank x batch 2B
# --------------------------------------------------------------------------------------------
# 45 sequences: global batches of 16, 16 and 13, so the last one is split 7 / 6 and a wrong
# loss scale (a per-rank mean) would show.
FLAGS = [
    *TINY_MODEL,
    "--max-train-sequences",
    "45",
    "--test-iw-samples",
    "4",
    "--log-every",
    "1",
    "--score-log-every",
    "1",
    "--threads",
    "1",
    "--dropout",
    "none",
    "uniform",
    "adversarial",
]
VARIANTS = ("none", "uniform", "adversarial")


def _load_recipe():
    spec = importlib.util.spec_from_file_location(
        "seqvae_awd_ddp", ROOT / "recipes" / "seqvae_awd.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _tensors(state, prefix=""):
    """Flatten a (nested) state dict to name -> tensor."""
    flat = {}
    for key, value in state.items():
        if isinstance(value, dict):
            flat.update(_tensors(value, f"{prefix}{key}."))
        elif isinstance(value, torch.Tensor):
            flat[prefix + key] = value
    return flat


@pytest.fixture(scope="module")
def single_and_two_ranks(tmp_path_factory):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    out = tmp_path_factory.mktemp("ddp")
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    # PYTHONPATH: the ranks import this checkout's advmask, as this process does (not an
    # installed one).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    # --standalone: a rendezvous on a free local port, so parallel test runs do not collide.
    result = subprocess.run(
        [
            *torchrun,
            "--standalone",
            "--nproc-per-node",
            "2",
            str(ROOT / "recipes" / "seqvae_awd.py"),
            *FLAGS,
            "--batch-size",
            "8",
            "--out",
            str(out / "two"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-6000:])
    _load_recipe().main([*FLAGS, "--batch-size", "16", "--out", str(out / "one")])
    yield out / "one" / "synthetic", out / "two" / "synthetic", result.stdout
    shutil.rmtree(out, ignore_errors=True)


def _rows(path: Path) -> list[dict[str, float]]:
    rows = []
    for row in csv.DictReader(path.read_text().splitlines()):
        values = {}
        for key, value in row.items():
            try:
                values[key] = float(value)
            except ValueError:
                continue
        rows.append(values)
    return rows


@pytest.mark.parametrize("dropout", VARIANTS)
def test_two_ranks_log_the_same_training_steps_as_one(single_and_two_ranks, dropout) -> None:
    one, two, _ = single_and_two_ranks
    for name in ("log.csv", "scores.csv") if dropout == "adversarial" else ("log.csv",):
        expected = _rows(one / f"{dropout}-seed0" / name)
        got = _rows(two / f"{dropout}-seed0" / name)
        assert len(got) == len(expected)
        assert [set(r) for r in got] == [set(r) for r in expected]
        for row_got, row_expected in zip(got, expected, strict=True):
            for key, value in row_expected.items():
                # float32 sums in another order (per-rank, then the all-reduce): ~1e-7.
                assert row_got[key] == pytest.approx(value, rel=1e-5, abs=1e-6), (name, key)
    steps = [r["step"] for r in _rows(two / f"{dropout}-seed0" / "log.csv") if "loss" in r]
    assert len(steps) == 6  # 3 global batches per epoch, 2 epochs


# Differences of large numbers, compared absolutely: the IW gap (two ~75-nat numbers) and the
# MI (log q(z|x) minus log q(z), ~10 nats each; near 0 without dropout, where a relative
# tolerance would ask for digits float32 sums over other shards do not keep).
ABSOLUTE = {"iw_gap": 1e-4, "iw_gap_se": 1e-4, "mutual_information": 1e-6}


@pytest.mark.parametrize("dropout", VARIANTS)
def test_two_ranks_end_with_the_same_weights_and_metrics(single_and_two_ranks, dropout) -> None:
    one, two, _ = single_and_two_ranks
    expected = torch.load(one / f"{dropout}-seed0" / "last.pt", weights_only=False)
    got = torch.load(two / f"{dropout}-seed0" / "last.pt", weights_only=False)
    for part in ("model", "ema"):
        weights, reference = _tensors(got[part]), _tensors(expected[part])
        assert weights.keys() == reference.keys()
        for name, value in reference.items():
            torch.testing.assert_close(weights[name], value, rtol=1e-5, atol=1e-6, msg=name)
    metrics_one = json.loads((one / f"{dropout}-seed0" / "metrics.json").read_text())
    metrics_two = json.loads((two / f"{dropout}-seed0" / "metrics.json").read_text())
    for split in ("valid", "test"):
        for key, value in metrics_one[split].items():
            if isinstance(value, float) and key not in ABSOLUTE:
                assert metrics_two[split][key] == pytest.approx(value, rel=1e-5), (split, key)
            elif key in ABSOLUTE:
                tolerance = ABSOLUTE[key]
                assert metrics_two[split][key] == pytest.approx(value, abs=tolerance), (split, key)
            else:
                assert metrics_two[split][key] == value, (split, key)
    assert metrics_two["probe"] == pytest.approx(metrics_one["probe"])


def test_only_rank_zero_prints(single_and_two_ranks) -> None:
    _, _, stdout = single_and_two_ranks
    assert stdout.count("2 processes, 8 sequences each per step (16 in all)") == 1
    assert stdout.count("test results") == 1


# --------------------------------------------------------------------------------------------
# torchrun: one Ctrl-C checkpoints on every rank, and the resumed run logs as the uninterrupted
# --------------------------------------------------------------------------------------------
# Each rank gets a SIGINT and then a SIGTERM a moment later at its 4th step (a Ctrl-C as
# torchrun passes it on); log rows every 3 steps, so the stop falls inside a log window.
INTERRUPTING = """
import os, runpy, signal, sys
import advmask.seqvae.trainer as trainer
real_step, steps = trainer.train_step, []
def step(*args, **kwargs):
    steps.append(1)
    if len(steps) == 4:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
    return real_step(*args, **kwargs)
trainer.train_step = step
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
RESUMED_FLAGS = [*TINY_MODEL, "--max-train-sequences", "45", "--test-iw-samples", "4",
                 "--log-every", "3", "--threads", "1", "--dropout", "uniform", "--batch-size",
                 "8", "--epochs", "3"]  # fmt: skip


def _torchrun(script: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
               "2", str(script), *args]  # fmt: skip
    # A long timeout: under `nice` on a busy machine the two ranks get little CPU.
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900,
                          check=False)  # fmt: skip


def test_one_ctrl_c_under_torchrun_checkpoints_and_the_resume_logs_as_if_uninterrupted(
    tmp_path: Path,
) -> None:
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    recipe = ROOT / "recipes" / "seqvae_awd.py"
    whole = _torchrun(recipe, *RESUMED_FLAGS, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-3000:]
    interrupting = tmp_path / "interrupting.py"
    interrupting.write_text(INTERRUPTING)
    out = ["--out", str(tmp_path / "stopped")]
    stopped = _torchrun(interrupting, str(recipe), *RESUMED_FLAGS, *out)
    # Every rank stopped as asked (130), none as on a second signal (KeyboardInterrupt).
    assert stopped.stderr.count("exitcode  : 130") == 2, stopped.stderr[-3000:]
    assert "KeyboardInterrupt" not in stopped.stderr
    assert "stopped at step 4; checkpoint in" in stopped.stdout
    folder = tmp_path / "stopped" / "synthetic" / "uniform-seed0"
    saved = torch.load(folder / "last.pt", weights_only=False)
    assert saved["progression"]["step"] == 4 and len(saved["log_windows"]) == 2
    resumed = _torchrun(recipe, *RESUMED_FLAGS, *out, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    reference = tmp_path / "whole" / "synthetic" / "uniform-seed0"
    # Every row, the one spanning the resume included, bit for bit.
    assert (folder / "log.csv").read_text() == (reference / "log.csv").read_text()
    metrics = json.loads((folder / "metrics.json").read_text())
    expected = json.loads((reference / "metrics.json").read_text())
    assert metrics["test"] == expected["test"] and metrics["valid"] == expected["valid"]
