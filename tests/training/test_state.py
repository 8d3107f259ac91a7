"""A run folder's decisions before training (new, continue, reuse, refuse) and its lock."""

from __future__ import annotations

import io
import math
import os
import socket
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from advmask.training.checkpoint import read_json, save_json
from advmask.training.cli import UserError
from advmask.training.divergence import DivergedError
from advmask.training.state import Progression, RunFolder, record_differences

RECORD = {
    "lr": 1.0,
    "batch_size": 16,
    "device": "cpu",
    "widths": (4, 8),  # a tuple: saved as a JSON list, must still compare equal
    "model": {"rate": 0.4, "hidden": 32},
    "data": {"fingerprint": "0123456789abcdef0123", "sequences": 100},
}
VOCAB = {"vocab.json": {"tokens": ["<pad>", "a", "b"]}}


def folder_at(path: Path) -> tuple[RunFolder, io.StringIO]:
    output = io.StringIO()
    return RunFolder(path, Console(file=output, width=300)), output


def with_changes(**changes: Any) -> dict[str, Any]:
    return {**RECORD, **changes}


@pytest.fixture
def started(tmp_path: Path) -> RunFolder:
    """A run that was created and checkpointed (not finished)."""
    folder, _ = folder_at(tmp_path / "run")
    assert folder.start(RECORD, resume=False, files=VOCAB) is None
    folder.create(RECORD, VOCAB)
    folder.save({"progression": {"step": 3}})
    return folder


# ------------------------------------------------------------------------------------------
# RunFolder.start / create
# ------------------------------------------------------------------------------------------
def test_a_new_folder_starts_with_nothing_written_until_create(tmp_path: Path) -> None:
    folder, _ = folder_at(tmp_path / "run")
    assert folder.start(RECORD, resume=False, files=VOCAB) is None
    assert not folder.path.exists()  # start only looks: under torchrun rank 0 writes later
    folder.create(RECORD, VOCAB)
    saved = read_json(folder.record_path)
    assert saved["widths"] == [4, 8]
    assert saved["model"] == RECORD["model"]
    assert read_json(folder.path / "vocab.json") == VOCAB["vocab.json"]


@pytest.mark.parametrize("resume", [False, True])
def test_a_new_folder_is_new_with_or_without_resume(tmp_path: Path, resume: bool) -> None:
    folder, _ = folder_at(tmp_path / "run")
    assert folder.start(RECORD, resume=resume) is None


def test_an_existing_run_without_resume_is_refused_naming_resume(started: RunFolder) -> None:
    with pytest.raises(UserError, match="already holds a run: pass --resume"):
        started.start(RECORD, resume=False, files=VOCAB)


@pytest.mark.parametrize("present", ["config.json", "last.pt", "metrics.json"])
def test_any_file_of_a_run_counts_as_a_run(tmp_path: Path, present: str) -> None:
    """A crash before the first checkpoint leaves only config.json; a copied run may lack it."""
    folder, _ = folder_at(tmp_path / "run")
    save_json({}, folder.path / present)
    with pytest.raises(UserError, match="--resume"):
        folder.start(RECORD, resume=False)


def test_the_same_settings_resume(started: RunFolder) -> None:
    assert started.start(RECORD, resume=True, files=VOCAB) is None


def test_a_changed_setting_is_named_as_its_flag_with_old_and_new_values(
    started: RunFolder,
) -> None:
    with pytest.raises(UserError) as caught:
        started.start(with_changes(batch_size=32, lr=2.0), resume=True, files=VOCAB)
    message = str(caught.value)
    assert "holds a run with other settings" in message
    assert "--batch-size 16 (now 32)" in message
    assert "--lr 1.0 (now 2.0)" in message
    assert "\n" not in message


def test_a_changed_model_setting_is_named_key_by_key(started: RunFolder) -> None:
    with pytest.raises(UserError, match=r"model rate 0\.4 \(now 0\.3\)") as caught:
        started.start(with_changes(model={"rate": 0.3, "hidden": 32}), resume=True, files=VOCAB)
    assert "hidden" not in str(caught.value)


def test_settings_in_may_change_may_change(started: RunFolder) -> None:
    assert (
        started.start(with_changes(device="cuda"), resume=True, may_change={"device"}, files=VOCAB)
        is None
    )
    with pytest.raises(UserError, match="--device 'cpu' \\(now 'cuda'\\)"):
        started.start(with_changes(device="cuda"), resume=True, files=VOCAB)


def test_a_changed_data_fingerprint_names_the_data(started: RunFolder) -> None:
    data = {"fingerprint": "fedcba9876543210fedc", "sequences": 120}
    with pytest.raises(UserError) as caught:
        started.start(with_changes(data=data), resume=True, files=VOCAB)
    message = str(caught.value)
    assert "the data (sequences 100, now 120; fingerprint 0123456789ab, now fedcba987654)" in (
        message
    )
    # compared as a whole, once: not also key by key as a nested setting
    assert message.count("fingerprint") == 1 and "sequences 100 (now 120)" not in message


def test_a_changed_side_file_is_named(started: RunFolder) -> None:
    other = {"vocab.json": {"tokens": ["<pad>", "a", "c"]}}
    with pytest.raises(UserError, match=r"vocab\.json \(it differs"):
        started.start(RECORD, resume=True, files=other)


def test_a_finished_run_is_returned_as_is(started: RunFolder) -> None:
    metrics = {"test": {"neg_elbo": 91.5}, "epochs": 3, "note": None}
    save_json(metrics, started.metrics)
    assert started.start(RECORD, resume=True, files=VOCAB) == metrics


def test_a_finished_run_with_other_settings_is_still_refused(started: RunFolder) -> None:
    """Reusing its metrics would report numbers these settings did not produce."""
    save_json({"epochs": 3}, started.metrics)
    with pytest.raises(UserError, match="--lr"):
        started.start(with_changes(lr=5.0), resume=True, files=VOCAB)


@pytest.mark.parametrize("name", ["config.json", "metrics.json"])
def test_an_unreadable_json_file_is_a_one_line_user_error(started: RunFolder, name: str) -> None:
    save_json({"epochs": 3}, started.metrics)
    (started.path / name).write_text('{"lr": 1.0,\n  oops\n')
    with pytest.raises(UserError) as caught:
        started.start(RECORD, resume=True, files=VOCAB)
    message = str(caught.value)
    assert "\n" not in message
    assert name in message and "not valid JSON" in message


def test_start_removes_temporaries_left_by_a_killed_save(started: RunFolder) -> None:
    stale = started.path / ".last.pt.0123456789ab.tmp"
    stale.write_bytes(b"half a checkpoint")
    folder, output = folder_at(started.path)
    assert folder.start(RECORD, resume=True, files=VOCAB) is None
    assert not stale.exists()
    assert "left by a save that was killed" in output.getvalue()


def test_create_leaves_a_continued_run_alone(started: RunFolder) -> None:
    before = started.record_path.read_text()
    started.create(with_changes(lr=9.0), VOCAB)
    assert started.record_path.read_text() == before


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    folder, _ = folder_at(tmp_path / "run")
    assert folder.load() is None
    folder.save({"weight": torch.arange(3.0), "progression": {"step": 2}})
    state = folder.load()
    assert state is not None
    assert torch.equal(state["weight"], torch.arange(3.0))
    assert state["progression"] == {"step": 2}


# ------------------------------------------------------------------------------------------
# RunFolder.locked
# ------------------------------------------------------------------------------------------
def test_locked_turns_a_lock_held_by_a_live_process_into_a_user_error(tmp_path: Path) -> None:
    folder, _ = folder_at(tmp_path / "run")
    folder.path.mkdir()
    # the parent process (pytest's launcher) is alive and is not us
    (folder.path / ".lock").write_text(f"{socket.gethostname()} {os.getppid()}\n")
    with pytest.raises(UserError, match=f"in use by process {os.getppid()}"), folder.locked():
        raise AssertionError("entered a locked folder")


def test_locked_holds_the_lock_on_rank_zero_only(tmp_path: Path) -> None:
    folder, _ = folder_at(tmp_path / "run")
    with folder.locked():
        assert (folder.path / ".lock").is_file()
    assert not (folder.path / ".lock").exists()
    with folder.locked(rank_zero=False):
        assert not (folder.path / ".lock").exists()


def test_locked_turns_an_untrustworthy_checkpoint_into_a_user_error(started: RunFolder) -> None:
    started.last.write_bytes(b"not a checkpoint at all")
    with (
        pytest.raises(UserError, match=r"last\.pt.*; delete it to start the run again"),
        started.locked(),
    ):
        started.load()
    assert not (started.path / ".lock").exists()


def test_locked_names_the_last_good_checkpoint_of_a_diverged_run(started: RunFolder) -> None:
    with pytest.raises(DivergedError) as caught, started.locked():
        raise DivergedError("loss is not finite at step 7 (epoch 2)")
    assert str(caught.value) == (
        f"loss is not finite at step 7 (epoch 2) in {started.path}; the last good checkpoint "
        f"is {started.last}, no metrics.json"
    )


def test_locked_says_when_a_diverged_run_kept_no_checkpoint(tmp_path: Path) -> None:
    folder, _ = folder_at(tmp_path / "run")
    with (
        pytest.raises(DivergedError, match=r"no checkpoint kept, no metrics\.json$"),
        folder.locked(),
    ):
        raise DivergedError("loss is not finite at step 1 (epoch 1)")


def test_locked_lets_other_errors_through(tmp_path: Path) -> None:
    folder, _ = folder_at(tmp_path / "run")
    with pytest.raises(UserError, match=r"^its own message$"), folder.locked():
        raise UserError("its own message")
    with pytest.raises(KeyError), folder.locked():
        raise KeyError("bug")


# ------------------------------------------------------------------------------------------
# record_differences
# ------------------------------------------------------------------------------------------
def test_record_differences_compares_nested_mappings_key_by_key() -> None:
    saved = {"model": {"rate": 0.4, "hidden": 32, "fill": "zero"}}
    now = {"model": {"rate": 0.3, "hidden": 32, "fill": "learned"}}
    assert record_differences(saved, now) == [
        "model rate 0.4 (now 0.3)",
        "model fill 'zero' (now 'learned')",
    ]


def test_record_differences_skips_settings_the_saved_record_lacks() -> None:
    """A setting added since the run was written was not recorded: no difference (a
    ``saved[name]`` lookup would raise KeyError, a ``saved.get`` would report ``None``)."""
    assert record_differences({"lr": 1.0}, {"lr": 1.0, "new_flag": 3}) == []


def test_record_differences_ignores_the_ignore_list() -> None:
    saved = {"lr": 1.0, "out": "a", "model": {"rate": 0.4}}
    now = {"lr": 2.0, "out": "b", "model": {"rate": 0.3}}
    assert record_differences(saved, now, ignore={"out", "model"}) == ["--lr 1.0 (now 2.0)"]


def test_record_differences_names_flags_with_dashes_and_reprs() -> None:
    assert record_differences({"baseline": "annealing"}, {"baseline": "cyclical"}) == [
        "--baseline 'annealing' (now 'cyclical')"
    ]


settings_values = st.one_of(
    st.integers(), st.floats(allow_nan=False), st.text(max_size=5), st.booleans()
)
records = st.dictionaries(
    st.from_regex(r"[a-z]{1,3}(_[a-z]{1,3})?", fullmatch=True),
    st.one_of(settings_values, st.dictionaries(st.text(max_size=3), settings_values, max_size=3)),
    max_size=6,
)


@given(records)
def test_a_record_does_not_differ_from_itself(record: dict[str, Any]) -> None:
    assert record_differences(record, record) == []


@given(records, st.data())
def test_each_changed_top_level_setting_is_named_once(record: dict[str, Any], data) -> None:
    scalars = [name for name, value in record.items() if not isinstance(value, dict)]
    if not scalars:
        return
    name = data.draw(st.sampled_from(scalars))
    changed = {**record, name: ["a value no strategy draws"]}
    differences = record_differences(record, changed)
    assert differences == [f"--{name.replace('_', '-')} {record[name]!r} (now {changed[name]!r})"]


# ------------------------------------------------------------------------------------------
# Progression
# ------------------------------------------------------------------------------------------
def test_progression_tracks_the_best_validation_and_epochs_without_improvement() -> None:
    """Strictly better only: a tie counts as no improvement (``<=`` would reset patience)."""
    progression = Progression()
    assert progression.best_valid == math.inf
    seen = []
    for epoch, loss in enumerate([3.0, 2.0, 2.5, 2.0, 1.0], start=1):
        progression.epoch, progression.step = epoch, 10 * epoch
        progression.awaiting_validation = True
        best = progression.validated(loss, {"neg_elbo": loss, "epoch_seen": epoch}, patience=2)
        seen.append((best, progression.epochs_without_improvement, progression.best_valid))
        assert not progression.awaiting_validation
    assert seen == [
        (True, 0, 3.0),
        (True, 0, 2.0),
        (False, 1, 2.0),
        (False, 2, 2.0),
        (True, 0, 1.0),
    ]
    assert progression.best_valid_result == {"neg_elbo": 1.0, "epoch_seen": 5}
    assert progression.history[2] == {
        "step": 30,
        "epoch": 3,
        "split": "valid",
        "neg_elbo": 2.5,
        "epoch_seen": 3,
    }
    assert not progression.finished_training  # the caller decides


def test_progressions_do_not_share_their_histories() -> None:
    first, second = Progression(), Progression()
    first.validated(1.0, {}, patience=1)
    assert second.history == []
