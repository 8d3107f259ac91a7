"""The recipe-agnostic epoch loop: budget, log rows, divergence, Ctrl-C and exact resumption.

A toy linear regression (``nn.Linear`` + SGD with momentum + an exponential LR decay) is
trained by :func:`fit` in a ``tmp_path`` run folder. Every step and every validation draws
noise from the global RNG, so a resumed run can only match an uninterrupted one if the
checkpoint restores the RNG state, the optimiser's momentum, the scheduler and the open log
window.
"""

from __future__ import annotations

import csv
import io
import math
import signal
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console
from torch import Tensor, nn

from advmask.training.checkpoint import load_checkpoint
from advmask.training.divergence import DivergedError, FiniteGuard
from advmask.training.logs import progress_bar, ratio
from advmask.training.loop import Budget, Display, Hooks, Watch, fit, watch_test
from advmask.training.signals import InterruptedRunError, StopRequest
from advmask.training.state import Progression, RunFolder

NUM_TRAIN = 10
BATCH_SIZE = 4  # batches of 4, 4 and 2 rows: a mean of step means is not the mean
STEPS_PER_EPOCH = 3
LR = 0.1


class Toy:
    """A linear regression trained by :func:`fit`; records every step it takes.

    Args:
        init_seed: seeds the initial weights (a resumed run starts from other weights, so only
            the checkpoint can make it match).
        interrupt_at: step number at which the step raises SIGINT (inside the step).
        interrupt_validation: validation number (from 1) whose first batch raises SIGINT.
        nan_from: steps from this one on have a NaN loss (and NaN weights after them).
        valid_losses: scripted validation losses instead of the model's.
    """

    def __init__(
        self,
        init_seed: int = 0,
        interrupt_at: int | None = None,
        interrupt_validation: int | None = None,
        nan_from: int | None = None,
        valid_losses: Sequence[float] | None = None,
    ) -> None:
        data = torch.Generator().manual_seed(1234)  # the same data for every Toy
        weight = torch.tensor([1.0, -2.0, 0.5])
        self.x = torch.randn(NUM_TRAIN, 3, generator=data)
        self.y = self.x @ weight + 0.3
        self.valid_x = torch.randn(6, 3, generator=data)
        self.valid_y = self.valid_x @ weight + 0.3
        torch.manual_seed(init_seed)
        self.model = nn.Linear(3, 1)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LR, momentum=0.9)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma=0.5)
        self.interrupt_at = interrupt_at
        self.interrupt_validation = interrupt_validation
        self.nan_from = nan_from
        self.valid_losses = list(valid_losses) if valid_losses is not None else None
        self.steps: list[dict[str, Any]] = []  # number, loss sum, rows, noise of each step
        self.validations = 0
        self.best_calls: list[int] = []  # the validation number of each on_best call

    def players(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "optimizer": self.optimizer,
            "lr_decay": self.scheduler,
            "absent": None,  # e.g. no adversary: checkpointed as None
        }

    def epoch_batches(self, epoch: int) -> list[Tensor]:
        # Seeded by the epoch, not the global RNG: the same batches on every call.
        order = torch.randperm(NUM_TRAIN, generator=torch.Generator().manual_seed(100 + epoch))
        return [order[i : i + BATCH_SIZE] for i in range(0, NUM_TRAIN, BATCH_SIZE)]

    def step(self, rows: Tensor, number: int) -> tuple[dict[str, Tensor], dict[str, Any]]:
        if number == self.interrupt_at:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C in the middle of a step
        noise = 0.1 * torch.randn(len(rows))  # the global RNG
        target = self.y[rows] + noise
        if self.nan_from is not None and number >= self.nan_from:
            target = target * math.nan
        per_row = (self.model(self.x[rows]).squeeze(-1) - target) ** 2
        self.optimizer.zero_grad()
        per_row.mean().backward()
        self.optimizer.step()
        noise_max = noise.abs().max()
        self.steps.append(
            {
                "number": number,
                "sum": per_row.sum().item(),
                "rows": len(rows),
                "noise": noise_max.item(),
            }
        )
        stats = {"loss": ratio(per_row.sum(), len(rows)), "noise": ratio(noise_max, 1)}
        return stats, {"number": number}

    def validate(self, watch: Watch) -> dict[str, Any]:
        self.validations += 1
        if self.valid_losses is not None:
            return {"mse": self.valid_losses[self.validations - 1]}
        losses = []
        with torch.no_grad(), watch(self.model, 2):
            for x, y in zip(self.valid_x.chunk(2), self.valid_y.chunk(2), strict=True):
                if self.validations == self.interrupt_validation:
                    signal.raise_signal(signal.SIGINT)
                # Noise from the global RNG, as a sampled estimator would draw.
                noisy = x + 0.01 * torch.randn_like(x)
                losses.append(((self.model(noisy).squeeze(-1) - y) ** 2).mean())
        return {"mse": float(torch.stack(losses).mean())}

    def on_best(self, progression: Progression) -> None:
        assert progression.best_valid_result is not None  # the validation just recorded
        self.best_calls.append(self.validations)

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]


def run_fit(
    toy: Toy,
    path: Path,
    budget: Budget,
    step: Callable[[Tensor, int], Any] | None = None,
) -> tuple[Progression, str]:
    """``fit`` as a recipe calls it; the progression and what it printed."""
    output = io.StringIO()
    console = Console(file=output, width=200)
    folder = RunFolder(path, console)
    with StopRequest() as stop, progress_bar(console) as progress:
        hooks = Hooks(
            toy.epoch_batches,
            step or toy.step,
            validate=toy.validate,
            on_best=toy.on_best,
            log_columns=lambda: {"lr": toy.lr()},
            loss_key="mse",
        )
        display = Display(console, progress, label="toy")
        progression = fit(
            folder, toy.players(), hooks, budget, display, stop, device=torch.device("cpu")
        )
    return progression, output.getvalue()


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def train_rows(progression: Progression) -> list[dict[str, Any]]:
    return [row for row in progression.history if row["split"] == "train"]


# ------------------------------------------------------------------------------------------
# The budget
# ------------------------------------------------------------------------------------------
def test_fit_takes_one_step_per_batch_in_order_as_a_plain_loop_would(tmp_path: Path) -> None:
    """The oracle: the same steps written as a plain loop give bit-identical weights (catches
    a skipped, repeated or reordered batch, or a scheduler stepped at the wrong time)."""
    budget = Budget(epochs=3, patience=10, log_every=2)
    torch.manual_seed(7)
    trained = Toy()
    progression, output = run_fit(trained, tmp_path / "run", budget)

    torch.manual_seed(7)
    plain = Toy()
    number = 0
    for epoch in range(3):
        for rows in plain.epoch_batches(epoch):
            number += 1
            plain.step(rows, number)
        plain.scheduler.step()
        plain.validate(lambda module, total: nullcontext())

    for name, value in plain.model.state_dict().items():
        assert torch.equal(trained.model.state_dict()[name], value), name
    assert [s["number"] for s in trained.steps] == list(range(1, 3 * STEPS_PER_EPOCH + 1))
    assert (progression.epoch, progression.step, progression.step_in_epoch) == (3, 9, 0)
    assert progression.finished_training and not progression.awaiting_validation
    assert [row["epoch"] for row in progression.history if row["split"] == "valid"] == [1, 2, 3]
    assert "toy epoch 3: valid" in output
    assert (tmp_path / "run" / "last.pt").is_file()
    assert len(read_csv(tmp_path / "run" / "log.csv")) == len(progression.history)


def test_fit_stops_after_patience_epochs_without_improvement(tmp_path: Path) -> None:
    """Best 2.0 at epoch 2; epochs 3 and 4 do not improve: with patience 2 the run stops after
    epoch 4 (a ``>`` for ``>=`` would train epoch 5, no early stop would train all 10)."""
    toy = Toy(valid_losses=[3.0, 2.0, 2.5, 2.6, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    progression, _ = run_fit(toy, tmp_path / "run", Budget(epochs=10, patience=2))
    assert toy.validations == 4
    assert progression.epoch == 4
    assert progression.epochs_without_improvement == 2
    assert progression.best_valid == 2.0
    assert progression.best_valid_result == {"mse": 2.0}
    assert progression.finished_training


def test_max_steps_caps_mid_epoch_then_validates_and_stops(tmp_path: Path) -> None:
    """Step 5 is the second of epoch 2: the cap must stop there, not at the epoch's end."""
    toy = Toy()
    progression, _ = run_fit(toy, tmp_path / "run", Budget(epochs=10, patience=10, max_steps=5))
    assert len(toy.steps) == 5
    assert progression.step == 5
    assert progression.epoch == 2
    assert toy.validations == 2
    assert progression.finished_training


def test_a_finished_run_is_not_trained_again(tmp_path: Path) -> None:
    budget = Budget(epochs=2, patience=10)
    first, _ = run_fit(Toy(), tmp_path / "run", budget)

    def must_not_run(rows: Tensor, number: int) -> Any:
        raise AssertionError(f"step {number} taken again")

    again = Toy(init_seed=1)
    second, _ = run_fit(again, tmp_path / "run", budget, step=must_not_run)
    assert asdict(second) == asdict(first)
    assert again.validations == 0


def test_schedulers_among_the_players_step_once_per_epoch(tmp_path: Path) -> None:
    """gamma 0.5: epoch e trains at LR * 0.5**e (a per-step decay would give 0.5**step)."""
    toy = Toy()
    progression, _ = run_fit(toy, tmp_path / "run", Budget(epochs=3, patience=10, log_every=1))
    rows = train_rows(progression)
    assert [row["lr"] for row in rows] == [LR * 0.5 ** row["epoch"] for row in rows]
    assert toy.lr() == pytest.approx(LR * 0.5**3, rel=1e-12)
    assert toy.scheduler.last_epoch == 3


def test_on_best_is_called_only_on_improvement(tmp_path: Path) -> None:
    """Equal is not better: 1.0 twice calls on_best once."""
    toy = Toy(valid_losses=[3.0, 2.0, 2.5, 1.0, 1.0])
    progression, _ = run_fit(toy, tmp_path / "run", Budget(epochs=5, patience=10))
    assert toy.best_calls == [1, 2, 4]
    assert progression.best_valid == 1.0
    assert progression.epochs_without_improvement == 1


# ------------------------------------------------------------------------------------------
# Log rows
# ------------------------------------------------------------------------------------------
def test_log_rows_are_means_over_the_rows_of_the_steps_since_the_previous_row(
    tmp_path: Path,
) -> None:
    """Row at step s: sum of the losses of steps s-2+1..s over their rows. Steps 3 (2 rows) and
    4 (4 rows) straddle an epoch end: a mean of step means, a cumulative mean or a window
    reset per epoch would all differ."""
    toy = Toy()
    progression, output = run_fit(toy, tmp_path / "run", Budget(epochs=2, patience=10, log_every=2))
    rows = train_rows(progression)
    assert [row["step"] for row in rows] == [2, 4, 6]
    by_number = {s["number"]: s for s in toy.steps}
    for row in rows:
        window = [by_number[n] for n in (row["step"] - 1, row["step"])]
        expected = sum(s["sum"] for s in window) / sum(s["rows"] for s in window)
        assert row["loss"] == pytest.approx(expected, rel=1e-6)
        assert row["noise"] == pytest.approx(sum(s["noise"] for s in window) / 2, rel=1e-6)
        assert row["number"] == row["step"]  # the step's own columns: this step's
        assert row["lr"] == LR * 0.5 ** row["epoch"]  # log_columns(), read at the row
    # The test can tell the two apart: the unweighted mean of steps 3 and 4 is another number.
    step3, step4 = by_number[3], by_number[4]
    unweighted = (step3["sum"] / step3["rows"] + step4["sum"] / step4["rows"]) / 2
    assert rows[1]["loss"] != pytest.approx(unweighted, rel=1e-3)
    # Not on a terminal: one plain line per log row.
    assert output.count("toy | epoch 1 step 2/3") == 1


def test_extra_rows_hold_that_steps_values_in_score_history_and_scores_csv(
    tmp_path: Path,
) -> None:
    toy = Toy()
    budget = Budget(epochs=2, patience=10, log_every=3, extra_every=2, extra_keys=("noise",))
    progression, _ = run_fit(toy, tmp_path / "run", budget)
    by_number = {s["number"]: s for s in toy.steps}
    assert [row["step"] for row in progression.score_history] == [2, 4, 6]
    for row in progression.score_history:
        assert set(row) == {"step", "epoch", "number", "noise"}  # no loss: only extra_keys
        # this step's value, not the mean since the last log row
        assert row["noise"] == pytest.approx(by_number[row["step"]]["noise"], rel=1e-6)
    saved = read_csv(tmp_path / "run" / "scores.csv")
    assert [int(row["step"]) for row in saved] == [2, 4, 6]
    assert [float(row["noise"]) for row in saved] == [
        row["noise"] for row in progression.score_history
    ]


def test_no_extra_rows_without_extra_every(tmp_path: Path) -> None:
    budget = Budget(epochs=1, patience=10, extra_every=0, extra_keys=("noise",))
    progression, _ = run_fit(Toy(), tmp_path / "run", budget)
    assert progression.score_history == []
    assert not (tmp_path / "run" / "scores.csv").exists()


# ------------------------------------------------------------------------------------------
# Divergence
# ------------------------------------------------------------------------------------------
def test_a_non_finite_loss_names_the_first_bad_step_and_keeps_the_last_good_checkpoint(
    tmp_path: Path,
) -> None:
    """NaN from step 5 on; checkpoints every 2 steps. The check before the step-6 checkpoint
    must raise: a checkpoint written before the check would overwrite step 4 with NaN
    weights."""
    toy = Toy(nan_from=5)
    folder = RunFolder(tmp_path / "run", Console(file=io.StringIO()))
    budget = Budget(epochs=5, patience=10, log_every=100, checkpoint_every=2)
    with pytest.raises(DivergedError) as caught, folder.locked():
        run_fit(toy, folder.path, budget)
    message = str(caught.value)
    assert "loss is not finite at step 5 (epoch 2)" in message
    assert f"the last good checkpoint is {folder.last}" in message
    state = load_checkpoint(folder.last)
    assert state["progression"]["step"] == 4
    assert all(torch.isfinite(value).all() for value in state["model"].values())
    assert not folder.metrics.exists()


def test_a_non_finite_validation_loss_raises(tmp_path: Path) -> None:
    toy = Toy(valid_losses=[math.inf])
    with pytest.raises(DivergedError, match="validation mse is inf after epoch 1"):
        run_fit(toy, tmp_path / "run", Budget(epochs=3, patience=10))


def test_finite_guard_keeps_the_first_bad_step_even_if_later_ones_are_bad_too() -> None:
    guard = FiniteGuard(torch.device("cpu"))
    guard.observe(torch.tensor(1.0), step=1)
    guard.observe(torch.tensor(-math.inf), step=3)
    guard.observe(torch.tensor(math.nan), step=5)
    guard.observe(torch.tensor(2.0), step=6)
    with pytest.raises(DivergedError, match=r"^loss is not finite at step 3 \(epoch 2\)$"):
        guard.check(step=6, epoch=1)


def test_finite_guard_check_is_silent_when_every_loss_was_finite() -> None:
    guard = FiniteGuard(torch.device("cpu"))
    for step, loss in enumerate([0.0, 1e30, -5.0], start=1):
        guard.observe(torch.tensor(loss), step)
    guard.check(step=3, epoch=0)
    assert int(guard.first_bad_step) == -1


# ------------------------------------------------------------------------------------------
# Ctrl-C and resumption
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("interrupt", "message"),
    [
        ({"interrupt_at": 5}, "stopped at step 5"),  # mid-epoch, the log window open
        ({"interrupt_at": 6}, "stopped at step 6"),  # an epoch's last step, at a log row
        ({"interrupt_validation": 2}, "stopped during the validation of epoch 2"),
    ],
    ids=["mid-epoch", "end-of-epoch", "validation"],
)
def test_an_interrupted_run_resumes_to_exactly_the_uninterrupted_result(
    tmp_path: Path, interrupt: dict[str, int], message: str
) -> None:
    """The key property: Ctrl-C, then the same call again, ends bit for bit where one
    uninterrupted run ends: weights, momentum, scheduler, history, CSV files and RNG state.
    Leaving any of them out of the checkpoint (or saving the RNG state after a validation
    that was cut short) makes one of the comparisons fail."""
    budget = Budget(epochs=3, patience=10, log_every=2, extra_every=2, extra_keys=("noise",))
    # Whatever the process started with (ignored in a background job, Python's handler else).
    handler_before = signal.getsignal(signal.SIGINT)
    torch.manual_seed(3)
    whole = Toy()
    expected, _ = run_fit(whole, tmp_path / "whole", budget)
    expected_rng = torch.get_rng_state()

    torch.manual_seed(3)
    stopped = Toy(**interrupt)
    with pytest.raises(InterruptedRunError, match=message) as caught:
        run_fit(stopped, tmp_path / "split", budget)
    assert str(tmp_path / "split" / "last.pt") in str(caught.value)
    assert "--resume" in str(caught.value)
    assert signal.getsignal(signal.SIGINT) is handler_before  # restored

    torch.manual_seed(999)  # scrambled: only the checkpoint can bring the RNG state back
    resumed = Toy(init_seed=1)  # other weights, no momentum yet, a fresh scheduler
    progression, output = run_fit(resumed, tmp_path / "split", budget)
    assert "resuming at epoch" in output

    assert stopped.steps + resumed.steps == whole.steps  # every step once, with the same noise
    for name, value in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name
    momentum = [whole.optimizer.state[p]["momentum_buffer"] for p in whole.model.parameters()]
    resumed_momentum = [
        resumed.optimizer.state[p]["momentum_buffer"] for p in resumed.model.parameters()
    ]
    assert all(torch.equal(a, b) for a, b in zip(momentum, resumed_momentum, strict=True))
    assert resumed.scheduler.state_dict() == whole.scheduler.state_dict()
    # Everything but the wall-clock time, which no two runs share.
    assert replace(progression, train_seconds=0) == replace(expected, train_seconds=0)
    assert progression.train_seconds > 0
    assert torch.equal(torch.get_rng_state(), expected_rng)
    for name in ("log.csv", "scores.csv"):
        assert (tmp_path / "split" / name).read_text() == (tmp_path / "whole" / name).read_text()


def test_a_stop_during_the_test_names_the_test() -> None:
    console = Console(file=io.StringIO())
    model = nn.Linear(2, 1)
    stop = StopRequest()
    with progress_bar(console) as progress:
        watch = watch_test(progress, stop, "toy")
        with watch(model, 3):
            model(torch.zeros(1, 2))
            stop.requested = True
            with pytest.raises(InterruptedRunError, match=r"^stopped during the test$"):
                model(torch.zeros(1, 2))
    assert "toy | test: 3 batches" in console.file.getvalue()


def test_stop_request_a_second_signal_stops_at_once_and_handlers_come_back() -> None:
    before, before_int = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with StopRequest() as stop:
        signal.raise_signal(signal.SIGTERM)
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before
    assert signal.getsignal(signal.SIGINT) is before_int


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_run_on_cuda_resumes(tmp_path: Path) -> None:
    """``last.pt`` is loaded onto the run's device: the RNG state must go back to the CPU
    (``torch.set_rng_state`` refuses a CUDA tensor), and the CUDA generator must be restored
    too for a resumed run to draw the same numbers."""
    device = torch.device("cuda")
    budget = Budget(epochs=1, patience=10)

    def run(path: Path, interrupt_at: int | None, seed: int = 0) -> tuple[Tensor, Tensor]:
        torch.manual_seed(seed)  # the CUDA generator too
        model = nn.Linear(3, 1).to(device)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        console = Console(file=io.StringIO())

        def step(batch: int, number: int) -> tuple[dict[str, Tensor], dict[str, Any]]:
            if number == interrupt_at:
                signal.raise_signal(signal.SIGINT)
            loss = model(torch.randn(4, 3, device=device)).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            return {"loss": ratio(loss, 1)}, {}

        with StopRequest() as stop, progress_bar(console) as progress:
            hooks = Hooks(lambda epoch: list(range(4)), step, lambda watch: {"neg_elbo": 0.0},
                          lambda progression: None)  # fmt: skip
            fit(
                RunFolder(path, console), {"model": model, "optimizer": optimizer}, hooks,
                budget, Display(console, progress, "toy"), stop, device,
            )  # fmt: skip
        return model.weight.detach().cpu(), torch.cuda.get_rng_state(device)

    expected = run(tmp_path / "whole", None)
    with pytest.raises(InterruptedRunError):
        run(tmp_path / "split", 2)
    resumed = run(tmp_path / "split", None, seed=123)  # other weights and RNG states
    assert torch.equal(resumed[0], expected[0])
    assert torch.equal(resumed[1], expected[1])


def test_stop_request_a_sigterm_after_a_sigint_is_the_same_stop() -> None:
    # torchrun's workers: the terminal's SIGINT, then the agent's SIGTERM; a Ctrl-C after that
    # is a second request.
    with StopRequest() as stop:
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGTERM)
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
