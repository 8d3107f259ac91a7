"""The epoch loop every recipe repeats: steps, log rows, checkpoints, validation, early stop.

:func:`fit` owns what is the same for any model: the :class:`~advmask.training.state.Progression`
(so a stopped run continues at the same step with the same batches), means of the step
statistics since the last log row (no host sync per step), the non-finite-loss guard,
checkpoints of every stateful object of the run, Ctrl-C/SIGTERM handling, validation after
every epoch and early stopping. The recipe supplies the batches of an epoch, one training step,
the validation and what to do with a new best model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch
from lightning_utilities.core.rank_zero import rank_zero_only
from rich.console import Console
from rich.progress import Progress
from torch import Tensor, nn

from advmask.training.checkpoint import CheckpointError
from advmask.training.cli import UserError
from advmask.training.distributed import any_rank, barrier, rank_and_world_size, reduce_ratios
from advmask.training.divergence import DivergedError, FiniteGuard
from advmask.training.logs import MeanWindow, count_batches, progress_line, write_csv
from advmask.training.signals import InterruptedRunError, StopRequest
from advmask.training.state import Progression, RunFolder

__all__ = ["Budget", "Display", "Hooks", "Stateful", "Watch", "evaluate_best", "fit", "watch_test"]


class Stateful(Protocol):
    """Anything checkpointed by its state dict (modules, optimisers, schedulers)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


Watch = Callable[[nn.Module, int], AbstractContextManager[None]]
"""``watch(module, num_batches)``: a context in which each forward of ``module`` advances the
validation's progress bar and a stop request interrupts between batches."""


@dataclass(frozen=True, kw_only=True)
class Budget:
    """When a run logs, checkpoints and stops.

    Attributes:
        epochs: most epochs.
        patience: epochs without a better validation loss before stopping early.
        max_steps: most steps (then validate and stop), or None.
        log_every: steps between log rows (means since the previous row).
        checkpoint_every: steps between mid-epoch checkpoints (0 = epoch ends only).
        extra_every: steps between rows of ``extra_keys`` (this step's values) in the
            second log (0 = off).
        extra_keys: statistics of a step written to the second log.
    """

    epochs: int
    patience: int
    max_steps: int | None = None
    log_every: int = 50
    checkpoint_every: int = 0
    extra_every: int = 0
    extra_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Hooks:
    """What a recipe supplies to :func:`fit`: its batches, its step, its validation.

    Attributes:
        epoch_batches: ``epoch_batches(epoch)`` -> that epoch's batches, the same on every call
            for the same epoch (a resumed run skips the steps it took).
        step: ``step(batch, step_number)`` -> (statistics as ``[sum, count]`` pairs on the
            device with at least ``"loss"``, columns of this step's log row such as the KL
            weight); takes one optimisation step.
        validate: ``validate(watch)`` -> validation metrics with ``loss_key``; run its
            evaluation inside ``watch(module, num_batches)``.
        on_best: called (on every rank) after a validation with the best loss so far, with
            the :class:`Progression` (its ``epoch`` and ``step`` say which weights are best).
        log_columns: more columns of a training log row (e.g. the learning rate), read
            when the row is written.
        loss_key: the validation metric to minimise.
    """

    epoch_batches: Callable[[int], Sequence[Any]]
    step: Callable[[Any, int], tuple[Mapping[str, Tensor], dict[str, Any]]]
    validate: Callable[[Watch], dict[str, Any]]
    on_best: Callable[[Progression], None]
    # default_factory: a callable default set as a class attribute would read as a method.
    log_columns: Callable[[], dict[str, Any]] = field(default_factory=lambda: dict)
    loss_key: str = "neg_elbo"


@dataclass(frozen=True)
class Display:
    """Where a run shows how it goes.

    Attributes:
        console: where log lines go (a plain line per log row when not on a terminal).
        progress: the bar (see :func:`~advmask.training.logs.progress_bar`), already started.
        label: the run's name on the bar and in lines.
        describe: the validation metrics as text for the line printed after each epoch.
    """

    console: Console
    progress: Progress
    label: str
    describe: Callable[[dict[str, Any]], str] = field(default_factory=lambda: str)


def fit(
    folder: RunFolder,
    players: Mapping[str, Stateful | None],
    hooks: Hooks,
    budget: Budget,
    display: Display,
    stop: StopRequest,
    device: torch.device,
) -> Progression:
    """Train until the budget is spent or validation stops improving; resume where it stopped.

    Args:
        folder: the run folder (``last.pt`` is read if present and written at checkpoints;
            ``log.csv`` and, with extra rows, ``scores.csv`` beside it).
        players: name -> stateful object (model, averaged model, optimisers, schedulers; None
            for an absent one), checkpointed and restored by name; learning-rate schedulers
            among them step once per epoch.
        hooks: the recipe's batches, step, validation and what to do with a new best.
        budget: epochs, patience and log/checkpoint intervals.
        display: console, progress bar, label and how a validation is described.
        stop: the run's :class:`StopRequest`, entered by the caller (so that its test after
            :func:`fit` honours it too).
        device: where the statistics are.

    Returns:
        The final :class:`Progression` (``best_valid_result``: the best epoch's metrics).

    Raises:
        DivergedError: a step's loss or a validation loss is not finite (the last good
            checkpoint is kept).
        InterruptedRunError: a SIGINT/SIGTERM was honoured and checkpointed.
    """
    console, progress, label = display.console, display.progress, display.label
    progression, window = Progression(), MeanWindow()
    rank, world_size = rank_and_world_size()
    if (state := folder.load(map_location=device)) is not None:
        for name, player in players.items():
            if player is not None:
                player.load_state_dict(state[name])
        progression = Progression(**state["progression"])
        # Every rank's window (checkpoints before them kept rank 0's, read by every rank).
        windows = state.get("log_windows") or [state.get("log_window") or {}] * world_size
        window = MeanWindow.restored(windows, rank, world_size)
        _set_rng_state(state, device)
        console.print(
            f"[bold]{folder.path}[/bold]: resuming at epoch {progression.epoch}, "
            f"step {progression.step}"
        )

    def checkpoint(
        rng: dict[str, Tensor] | None = None, windows: list[dict[str, Tensor]] | None = None
    ) -> None:
        """Every rank calls it at the same step (``windows`` gathered earlier: none then)."""
        save(rng or _rng_state(device), window.rank_states() if windows is None else windows)

    @rank_zero_only
    def save(rng: dict[str, Tensor], windows: list[dict[str, Tensor]]) -> None:
        states = {name: None if p is None else p.state_dict() for name, p in players.items()}
        folder.save(
            {
                **states,
                "progression": asdict(progression),
                "log_window": windows[0],  # what older versions read
                "log_windows": windows,
                **rng,
            }
        )
        write_csv(folder.path / "log.csv", progression.history)
        if progression.score_history:
            write_csv(folder.path / "scores.csv", progression.score_history)

    def capped() -> bool:
        return budget.max_steps is not None and progression.step >= budget.max_steps

    guard = FiniteGuard(device)
    task = progress.add_task(label, total=None, stats="")
    while not progression.finished_training:
        if not progression.awaiting_validation:
            batches = hooks.epoch_batches(progression.epoch)
            progress.reset(
                task,
                total=len(batches),
                completed=progression.step_in_epoch,
                description=f"{label} | epoch {progression.epoch + 1}",
            )
            clock = time.perf_counter()
            for batch in batches[progression.step_in_epoch :]:
                stats, columns = hooks.step(batch, progression.step + 1)
                progression.step += 1
                now = time.perf_counter()
                progression.train_seconds, clock = progression.train_seconds + now - clock, now
                progression.step_in_epoch += 1
                guard.observe(stats["loss"][0], progression.step)
                window.add(stats)
                progress.advance(task)
                where = {"step": progression.step, "epoch": progression.epoch}
                if progression.step % budget.log_every == 0:  # the same steps on all ranks
                    guard.check(progression.step, progression.epoch)
                    row = {
                        **where,
                        "split": "train",
                        **columns,
                        **hooks.log_columns(),
                        **window.means(),
                    }
                    progression.history.append(row)
                    summary = " ".join(
                        f"{k}={row[k]:.3g}" for k in ("loss", "kl", "drop_fraction") if k in row
                    )
                    progress.update(task, stats=summary)
                    if not console.is_terminal:
                        console.print(progress_line(progress, task, summary), highlight=False)
                if (
                    budget.extra_keys
                    and budget.extra_every
                    and progression.step % budget.extra_every == 0
                ):
                    extra = reduce_ratios({k: stats[k] for k in budget.extra_keys})
                    progression.score_history.append({**where, **columns, **extra})
                if budget.checkpoint_every and progression.step % budget.checkpoint_every == 0:
                    guard.check(progression.step, progression.epoch)
                    checkpoint()
                if capped():
                    break
                if any_rank(stop.requested):  # all ranks stop at the same step
                    guard.check(progression.step, progression.epoch)
                    checkpoint()
                    barrier()  # torchrun ends the others when one exits: let rank 0 finish
                    raise InterruptedRunError(
                        f"stopped at step {progression.step}; checkpoint in {folder.last}; "
                        "continue with --resume"
                    )
            guard.check(progression.step, progression.epoch)
            for player in players.values():
                if isinstance(player, torch.optim.lr_scheduler.LRScheduler):
                    player.step()  # schedulers step per epoch
            progression.epoch += 1
            progression.step_in_epoch = 0
            progression.awaiting_validation = True
        epoch = progression.epoch
        # A validation cut short has drawn some random numbers: --resume must start its
        # validation again from the state before it, as an uninterrupted run did.
        rng_before_validation = _rng_state(device)
        # Gathered while every rank is here: a validation that fails on one rank must not
        # wait on the others to checkpoint.
        windows = window.rank_states()
        try:
            description = f"{label} | validating epoch {epoch}"
            valid = hooks.validate(
                _watch(progress, stop, description, f"the validation of epoch {epoch}")
            )
        except BaseException as error:
            # The epoch's training is kept: --resume validates it again.
            checkpoint(rng_before_validation, windows)
            if isinstance(error, InterruptedRunError):
                raise InterruptedRunError(
                    f"{error}; checkpoint in {folder.last}; continue with --resume"
                ) from None
            raise
        loss_key = hooks.loss_key
        loss = valid[loss_key]
        if not math.isfinite(loss):
            raise DivergedError(f"validation {loss_key} is {loss} after epoch {epoch}")
        if progression.validated(loss, valid, budget.patience):
            hooks.on_best(progression)
        console.print(f"{label} epoch {epoch}: valid {display.describe(valid)}", highlight=False)
        progression.finished_training = (
            epoch >= budget.epochs
            or progression.epochs_without_improvement >= budget.patience
            or capped()
        )
        checkpoint(windows=windows)
    barrier()  # rank 0 has written its files
    return progression


def _rng_state(device: torch.device) -> dict[str, Tensor]:
    """The random state a resumed run needs: the CPU generator's and, on CUDA, the device's."""
    state = {"rng": torch.get_rng_state()}
    if device.type == "cuda":
        state["device_rng"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    # The checkpoint was loaded onto ``device``; generators take their state as a CPU tensor.
    torch.set_rng_state(state["rng"].cpu())
    if device.type == "cuda" and "device_rng" in state:
        torch.cuda.set_rng_state(state["device_rng"].cpu(), device)


def _watch(progress: Progress, stop: StopRequest, description: str, where: str) -> Watch:
    def watch(module: nn.Module, total: int) -> Iterator[None]:
        return count_batches(module, total, description, progress, stop, where)

    return watch  # type: ignore[return-value]


def watch_test(progress: Progress, stop: StopRequest, label: str) -> Watch:
    """A :data:`Watch` for the test (``"stopped during the test"``)."""
    return _watch(progress, stop, f"{label} | test", "the test")


_ModelT = TypeVar("_ModelT")


def evaluate_best(
    folder: RunFolder,
    load: Callable[[Path], _ModelT],
    test: Callable[[_ModelT, Watch], dict[str, Any]],
    display: Display,
    stop: StopRequest,
) -> tuple[_ModelT, dict[str, Any]]:
    """The test, once, of the best weights of a run that :func:`fit` trained.

    Args:
        folder: the run folder; ``load`` reads its ``best.pt``.
        load: ``load(path)`` -> the model with the best weights.
        test: ``test(model, watch)`` -> the test metrics; run the evaluation inside
            ``watch(module, num_batches)``.
        display, stop: as for :func:`fit`.

    Returns:
        (the model, its test metrics).

    Raises:
        UserError: the best weights are missing or damaged (deleted, or damaged on disk).
        InterruptedRunError: a stop during the test; training is finished, and ``--resume``
            runs the test.
    """
    try:
        model = load(folder.best)
    except (CheckpointError, FileNotFoundError) as error:
        raise UserError(
            f"{error}: the run's best weights are lost; delete {folder.path} to train it again"
        ) from None
    try:
        return model, test(model, watch_test(display.progress, stop, display.label))
    except InterruptedRunError as error:
        raise InterruptedRunError(
            f"{error}; training is finished (checkpoint in {folder.last}); "
            "run again with --resume to test"
        ) from None
