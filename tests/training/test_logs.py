"""Training logs: exact running means, atomic CSV files, progress bars and batch counting."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import IO

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console
from rich.progress import Progress
from torch import nn

from advmask.training import logs
from advmask.training.checkpoint import atomic_write
from advmask.training.logs import (
    MeanWindow,
    count_batches,
    progress_bar,
    progress_line,
    ratio,
    write_csv,
)
from advmask.training.signals import InterruptedRunError, StopRequest


def quiet_console() -> Console:
    return Console(file=io.StringIO(), width=200)


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as file:
        reader = csv.DictReader(file)
        return list(reader.fieldnames or []), list(reader)


# ------------------------------------------------------------------------------------------
# ratio and MeanWindow
# ------------------------------------------------------------------------------------------
def test_ratio_is_a_detached_float_sum_count_pair() -> None:
    """Not detached, a window would keep every step's graph alive until the next log row."""
    total = (torch.arange(3.0, requires_grad=True) * 2).sum()
    pair = ratio(total, 3)
    assert torch.equal(pair, torch.tensor([6.0, 3.0]))
    assert not pair.requires_grad
    # bf16 sums summed over a window would round away small steps: float32 pairs
    assert ratio(torch.tensor(1.5, dtype=torch.bfloat16), 2).dtype == torch.float32
    assert ratio(torch.tensor(5, dtype=torch.int64), torch.tensor(2)).dtype == torch.float32


def test_mean_window_means_are_over_counts_not_over_steps() -> None:
    """(6 + 1) / (3 + 1) = 1.75; the mean of the step means would be (2 + 1) / 2 = 1.5."""
    window = MeanWindow()
    window.add({"loss": ratio(torch.tensor(6.0), 3), "kl": ratio(torch.tensor(1.0), 1)})
    window.add({"loss": ratio(torch.tensor(1.0), 1)})
    assert window.means() == {"loss": 1.75, "kl": 1.0}
    assert window.means() == {}  # emptied: the next row is a mean since this one


@given(
    st.lists(
        st.tuples(st.integers(-1000, 1000), st.integers(1, 64)),  # (sum, count) of one step
        min_size=1,
        max_size=20,
    )
)
def test_mean_window_mean_is_total_over_count_for_uneven_counts(
    steps: list[tuple[int, int]],
) -> None:
    # Integer sums and counts are exact in float32 up to 2**24 (here at most 20 * 1000):
    # the window's mean is then the exact ratio, rounded once.
    window = MeanWindow()
    for total, count in steps:
        window.add({"loss": ratio(torch.tensor(float(total)), count)})
    expected = sum(t for t, _ in steps) / sum(c for _, c in steps)
    assert window.means()["loss"] == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_mean_window_state_dict_round_trip_continues_the_same_window() -> None:
    window = MeanWindow()
    window.add({"loss": ratio(torch.tensor(6.0), 3)})
    state = window.state_dict()
    resumed = MeanWindow(state)
    for each in (window, resumed):
        each.add({"loss": ratio(torch.tensor(2.0), 1)})
    assert resumed.means() == window.means() == {"loss": 2.0}


def test_mean_window_state_dict_is_a_snapshot_and_the_state_stays_untouched() -> None:
    """A checkpoint's window must not change when the live window goes on (an aliased dict
    would), nor must a window built from a state write into it."""
    window = MeanWindow()
    window.add({"loss": ratio(torch.tensor(6.0), 3)})
    state = window.state_dict()
    window.add({"loss": ratio(torch.tensor(100.0), 1)})
    window.means()
    assert torch.equal(state["loss"], torch.tensor([6.0, 3.0]))
    resumed = MeanWindow(state)
    resumed.add({"kl": ratio(torch.tensor(1.0), 1)})
    assert set(state) == {"loss"}


# ------------------------------------------------------------------------------------------
# write_csv
# ------------------------------------------------------------------------------------------
def test_write_csv_columns_are_the_union_in_first_seen_order(tmp_path: Path) -> None:
    """Train rows and validation rows have other columns: a header from the first row alone
    would raise on the second, a sorted one would move ``step`` away from the front."""
    rows = [
        {"step": 1, "split": "train", "loss": 0.5},
        {"step": 1, "split": "valid", "neg_elbo": 9.0, "kl": 2.0},
        {"step": 2, "split": "train", "loss": 0.25, "lr": 0.1},
    ]
    write_csv(tmp_path / "log.csv", rows)
    columns, saved = read_rows(tmp_path / "log.csv")
    assert columns == ["step", "split", "loss", "neg_elbo", "kl", "lr"]
    assert saved[1] == {
        "step": "1",
        "split": "valid",
        "loss": "",
        "neg_elbo": "9.0",
        "kl": "2.0",
        "lr": "",
    }
    assert float(saved[2]["lr"]) == 0.1


def test_write_csv_of_no_rows_is_an_empty_file(tmp_path: Path) -> None:
    write_csv(tmp_path / "log.csv", [])
    assert (tmp_path / "log.csv").read_text().strip() == ""


class WriterFailedError(RuntimeError):
    pass


def test_write_csv_leaves_the_previous_file_when_the_write_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed mid-write (here: the write raises after half the bytes), the log keeps its
    previous content and no temporary is left; an ``open(path, "w")`` would leave half."""
    path = tmp_path / "log.csv"
    write_csv(path, [{"step": 1, "loss": 0.5}])
    before = path.read_bytes()

    def failing_atomic_write(target, write):
        def half_then_raise(file: IO[bytes]) -> None:
            buffer = io.BytesIO()
            write(buffer)
            file.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            file.flush()
            raise WriterFailedError("disk full")

        return atomic_write(target, half_then_raise)

    monkeypatch.setattr(logs, "atomic_write", failing_atomic_write)
    with pytest.raises(WriterFailedError):
        write_csv(path, [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.25}])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv"]


def test_write_csv_writes_nothing_when_formatting_a_row_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows are formatted before the file is opened: a row that fails half-way (here the
    writer raises after the header) leaves no file, not a header without rows."""
    path = tmp_path / "log.csv"

    def failing_writerows(self, rows) -> None:
        raise WriterFailedError("bad row")

    monkeypatch.setattr(csv.DictWriter, "writerows", failing_writerows)
    with pytest.raises(WriterFailedError):
        write_csv(path, [{"step": 1}])
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------
# Progress bars and count_batches
# ------------------------------------------------------------------------------------------
def test_progress_bar_is_disabled_off_a_terminal_and_live_on_one() -> None:
    assert progress_bar(quiet_console()).disable
    terminal = Console(file=io.StringIO(), force_terminal=True)
    assert not progress_bar(terminal).disable


def test_progress_line_says_where_the_bar_is() -> None:
    with progress_bar(quiet_console()) as progress:
        task = progress.add_task("toy | epoch 2", total=8, stats="")
        progress.advance(task, 2)
        line = progress_line(progress, task, "loss=0.5")
    assert line.startswith("toy | epoch 2 step 2/8 (25%) loss=0.5 | ETA")


def find_task(progress: Progress, description: str):
    return next(task for task in progress.tasks if task.description == description)


def test_count_batches_advances_per_forward_of_the_hooked_module_only() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    console = quiet_console()
    with progress_bar(console) as progress:
        with count_batches(model[0], 3, "valid", progress, StopRequest(), "the validation"):
            task = find_task(progress, "valid")
            assert task.total == 3
            for _ in range(3):
                model(torch.zeros(1, 2))  # the hooked module runs once per batch
            assert task.completed == 3
            model[1](torch.zeros(1, 2))  # another module: no batch
            assert task.completed == 3
        assert all(t.description != "valid" for t in progress.tasks)  # the task is removed
    assert "valid: 3 batches" in console.file.getvalue()


def test_count_batches_raises_stopped_during_where_once_a_stop_is_requested() -> None:
    model = nn.Linear(2, 1)
    with StopRequest() as stop, progress_bar(quiet_console()) as progress:
        with count_batches(model, 4, "valid", progress, stop, "the validation of epoch 3"):
            model(torch.zeros(1, 2))  # no stop yet: the batch counts
            assert find_task(progress, "valid").completed == 1
            stop.requested = True
            with pytest.raises(InterruptedRunError, match=r"^stopped during the validation of"):
                model(torch.zeros(1, 2))
        # The hook is gone afterwards: a later forward with the stop still requested runs.
        model(torch.zeros(1, 2))


def test_count_batches_removes_its_hook_when_the_evaluation_raises() -> None:
    model = nn.Linear(2, 1)
    stop = StopRequest()
    with progress_bar(quiet_console()) as progress:
        with (
            pytest.raises(ZeroDivisionError),
            count_batches(model, 2, "valid", progress, stop, "the validation"),
        ):
            _ = 1 / 0
        stop.requested = True
        model(torch.zeros(1, 2))  # would raise InterruptedRunError if the hook had stayed
        assert progress.tasks == []


def test_a_window_saved_by_other_ranks_counts_every_step_once() -> None:
    from advmask.training.logs import MeanWindow

    states = [{"loss": torch.tensor([6.0, 2.0])}, {"loss": torch.tensor([3.0, 1.0])}]
    # The same number of processes: each rank its own window.
    assert torch.equal(MeanWindow.restored(states, 1, 2).sums["loss"], torch.tensor([3.0, 1.0]))
    # Another number: rank 0 gets the sums, the others zeros (the names every rank reduces).
    assert MeanWindow.restored(states, 0, 1).means() == {"loss": 3.0}
    others = MeanWindow.restored(states, 2, 3).sums
    assert torch.equal(others["loss"], torch.zeros(2))
    assert MeanWindow().rank_states() == [{}]
    window = MeanWindow({"loss": torch.tensor([6.0, 2.0])})
    assert [torch.equal(v, torch.tensor([6.0, 2.0])) for v in window.rank_states()[0].values()] == [
        True
    ]
