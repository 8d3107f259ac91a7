"""A run folder: its settings, its checkpoint, and whether it may be continued.

A run folder holds ``config.json`` (the settings, written when the run starts), ``last.pt``
(everything needed to continue: weights, optimisers, :class:`Progression`, random state) and,
when finished, ``metrics.json``. :meth:`RunFolder.start` decides, before anything is trained,
whether the folder is new, a run to continue (``--resume`` with the same settings), a finished
run to reuse, or a run with other settings (refused, naming each difference).
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from advmask.training.checkpoint import (
    CheckpointError,
    RunLock,
    RunLockedError,
    load_checkpoint,
    read_json,
    remove_stale_temporaries,
    save_checkpoint,
    save_json,
)
from advmask.training.cli import UserError
from advmask.training.distributed import barrier
from advmask.training.divergence import DivergedError

__all__ = ["Progression", "RunFolder", "record_differences"]


@dataclass
class Progression:
    """Where a run stands; saved in every checkpoint.

    Attributes:
        epoch: epochs finished.
        step: optimiser steps taken.
        step_in_epoch: steps taken in the current epoch (a resumed run skips them).
        best_valid: best validation loss so far (the early-stopping criterion).
        epochs_without_improvement: epochs since ``best_valid`` last improved.
        finished_training: the loop is done; only the test remains.
        awaiting_validation: True between an epoch's training and its validation, so that a
            run stopped while validating resumes with the validation, not another epoch.
        best_valid_result: validation metrics of the best epoch (reported, not re-run).
        history: log rows (training means and validation results), in order.
        score_history: rows of extra per-step statistics (e.g. the adversary's scores).
        train_seconds: wall-clock seconds spent in the training loop so far (validation not
            counted), over every process that continued the run; kept out of ``history``,
            whose rows a resumed run reproduces exactly.
    """

    epoch: int = 0
    step: int = 0
    step_in_epoch: int = 0
    best_valid: float = math.inf
    epochs_without_improvement: int = 0
    finished_training: bool = False
    awaiting_validation: bool = False
    best_valid_result: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    score_history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0

    def validated(self, loss: float, result: dict[str, Any], patience: int) -> bool:
        """Record an epoch's validation; True if it is the best so far (save its weights).

        ``finished_training`` is not set here: the caller adds its own budget conditions;
        ``epochs_without_improvement >= patience`` is the early stop.
        """
        self.awaiting_validation = False
        self.history.append({"step": self.step, "epoch": self.epoch, "split": "valid", **result})
        if loss < self.best_valid:
            self.best_valid, self.best_valid_result = loss, result
            self.epochs_without_improvement = 0
            return True
        self.epochs_without_improvement += 1
        return False


def record_differences(
    saved: Mapping[str, Any], now: Mapping[str, Any], ignore: Collection[str] = ()
) -> list[str]:
    """What differs between two run records, one readable item per setting.

    Top-level keys are settings (shown as ``--flag old (now new)``); a nested mapping (e.g. the
    model) is compared key by key (``model name old (now new)``). Keys in ``ignore`` and keys
    the saved record lacks (settings added since it was written, at either level) are
    skipped.

    Example:
        >>> record_differences({"lr": 1.0, "model": {"rate": 0.4}},
        ...                    {"lr": 5.0, "model": {"rate": 0.3}})
        ['--lr 1.0 (now 5.0)', 'model rate 0.4 (now 0.3)']
    """
    differences = []
    for name, value in now.items():
        if name in ignore or name not in saved:
            continue
        if isinstance(value, Mapping):
            old = saved.get(name) or {}
            differences += [
                f"{name} {key} {old.get(key)!r} (now {item!r})"
                for key, item in value.items()
                if key in old and old[key] != item
            ]
        elif saved[name] != value:
            differences.append(f"--{name.replace('_', '-')} {saved[name]!r} (now {value!r})")
    return differences


class RunFolder:
    """The files of one run (``config.json``, ``last.pt``, ``best.pt``, ``metrics.json``).

    Args:
        path: the folder.
        console: where notes (reused, resumed, cleaned) are printed.
    """

    def __init__(self, path: str | Path, console: Console) -> None:
        self.path = Path(path)
        self.console = console
        self.record_path = self.path / "config.json"
        self.last = self.path / "last.pt"
        self.best = self.path / "best.pt"
        self.metrics = self.path / "metrics.json"

    def start(
        self,
        record: Mapping[str, Any],
        resume: bool,
        may_change: Collection[str] = (),
        files: Mapping[str, Any] | None = None,
        rank_zero: bool = True,
    ) -> dict[str, Any] | None:
        """Check the folder before training; the finished run's metrics if there is one.

        Args:
            record: this run's settings as JSON-ready data (written by :meth:`create`); its
                ``"data"`` entry, if any,
                identifies the inputs (``{"fingerprint": str, ...}``) and is compared as a
                whole.
            resume: whether continuing (or reusing) a run found here is allowed.
            may_change: settings that may differ when a run is continued (where and how it
                runs, not what it computes).
            files: name -> JSON-ready content of files written beside the record (e.g. the
                vocabulary); a continued run must find the same content.
            rank_zero: this process writes files.

        Raises:
            UserError: the folder holds a run and ``resume`` is False, its settings or files
                differ (each difference named), or a file cannot be read.
        """
        files = dict(files or {})
        record = json.loads(json.dumps(record))  # tuples as lists, as read back from the file
        started = any(p.exists() for p in (self.metrics, self.last, self.record_path))
        if started and not resume:
            raise UserError(
                f"{self.path} already holds a run: pass --resume to continue or reuse "
                "it, or choose another --out"
            )
        if self.record_path.exists():
            try:
                differences = self._differences(record, may_change, files)
            except (OSError, ValueError) as error:
                raise UserError(f"cannot resume {self.path}: {error}") from error
            if differences:
                raise UserError(
                    f"{self.path} holds a run with other settings: {'; '.join(differences)}; "
                    "resume it with its own settings, or choose another --out"
                )
        elif started:
            self.console.print(
                f"[yellow]{self.path} has no config.json: its settings cannot be checked[/yellow]"
            )
        if self.metrics.exists():
            self.console.print(
                f"[dim]{self.path}: finished earlier with these settings, reusing it[/dim]"
            )
            try:
                return read_json(self.metrics)
            except ValueError as error:
                raise UserError(str(error)) from error
        if rank_zero:
            for stale in remove_stale_temporaries(self.path):
                self.console.print(f"[dim]removed {stale}, left by a save that was killed[/dim]")
        return None

    def begin(
        self,
        record: Mapping[str, Any],
        resume: bool,
        may_change: Collection[str] = (),
        files: Mapping[str, Any] | None = None,
        rank_zero: bool = True,
    ) -> dict[str, Any] | None:
        """:meth:`start`, then, for a run to train, :meth:`create` on rank 0 once every rank
        has looked at the folder (under torchrun the others must not find its files yet).

        Returns:
            The finished run's metrics, or None: train it (the folder is ready).
        """
        finished = self.start(record, resume, may_change, files, rank_zero)
        if finished is None:
            barrier()
            if rank_zero:
                self.create(record, files)
        return finished

    def create(self, record: Mapping[str, Any], files: Mapping[str, Any] | None = None) -> None:
        """Write a new run's ``config.json`` and side files (rank 0, after every rank has
        called :meth:`start`: under torchrun the others must not find them there); nothing
        for a run being continued."""
        if self.last.exists():
            return
        self.path.mkdir(parents=True, exist_ok=True)
        save_json(record, self.record_path)
        for name, content in (files or {}).items():
            save_json(content, self.path / name)

    def _differences(
        self, record: Mapping[str, Any], may_change: Collection[str], files: Mapping[str, Any]
    ) -> list[str]:
        saved = read_json(self.record_path)
        differences = record_differences(saved, record, {*may_change, "data"})
        old, new = saved.get("data") or {}, record.get("data") or {}
        if "fingerprint" in old and old != new:
            differences.append(
                f"the data (sequences {old.get('sequences')}, now {new.get('sequences')}; "
                f"fingerprint {str(old['fingerprint'])[:12]}, "
                f"now {str(new.get('fingerprint'))[:12]})"
            )
        for name, content in files.items():
            if (self.path / name).exists() and read_json(self.path / name) != content:
                differences.append(f"{name} (it differs from the one these settings build)")
        return differences

    @contextmanager
    def locked(self, rank_zero: bool = True) -> Iterator[None]:
        """Hold the folder's :class:`~advmask.training.checkpoint.RunLock` (rank 0 only) and
        turn what can go wrong in it into errors that say what was kept.

        Raises:
            UserError: the folder is locked by another process, a checkpoint in it cannot
                be trusted, or a file of it cannot be written (an ``OSError``: not a folder,
                read-only, full), naming the path and the cause and what was kept.
            DivergedError: re-raised naming the folder and the last good checkpoint.
        """
        try:
            with RunLock(self.path) if rank_zero else nullcontext():
                yield
        except RunLockedError as error:
            raise UserError(str(error)) from None
        except DivergedError as error:
            kept = f"the last good checkpoint is {self.last}" if self.last.exists() else None
            raise DivergedError(
                f"{error} in {self.path}; {kept or 'no checkpoint kept'}, no metrics.json"
            ) from None
        except CheckpointError as error:
            raise UserError(f"{error}; delete it to start the run again") from None
        except OSError as error:  # not a folder, read-only, full: what was written is kept
            kept = f"the last checkpoint {self.last} is kept" if self.last.exists() else None
            where = error.filename or self.path
            raise UserError(
                f"{where}: {error.strerror or error}; {kept or 'no checkpoint kept'}"
            ) from None

    def save(self, state: Mapping[str, Any]) -> None:
        """``last.pt``, atomically (see :func:`advmask.training.checkpoint.save_checkpoint`)."""
        save_checkpoint(state, self.last)

    def load(self, map_location: Any = "cpu") -> dict[str, Any] | None:
        """The state saved by :meth:`save`, or None for a run that has not saved one."""
        if not self.last.exists():
            return None
        return load_checkpoint(self.last, map_location=map_location)
