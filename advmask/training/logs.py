"""Training logs: running means without host syncs, CSV files, progress bars and lines."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch import Tensor, nn

from advmask.training.checkpoint import atomic_write
from advmask.training.distributed import all_gather_rows, rank_and_world_size, reduce_ratios
from advmask.training.signals import InterruptedRunError, StopRequest

__all__ = [
    "MeanWindow",
    "count_batches",
    "progress_bar",
    "progress_line",
    "ratio",
    "write_csv",
]


def ratio(total: Tensor, count: Tensor | float) -> Tensor:
    """(2,) ``[sum, count]`` of one statistic, left on its device (no host sync).

    Summed over steps by :class:`MeanWindow` and over ranks by
    :func:`advmask.training.distributed.reduce_ratios`, so a mean is exact whatever the batch
    sizes and the number of processes.
    """
    total = total.detach().float()
    return torch.stack([total, torch.as_tensor(count, dtype=total.dtype, device=total.device)])


class MeanWindow:
    """``[sum, count]`` pairs of each statistic since the last log row.

    Args:
        state: a :meth:`state_dict` to continue from (a resumed run), or None.
    """

    def __init__(self, state: Mapping[str, Tensor] | None = None) -> None:
        self.sums: dict[str, Tensor] = dict(state or {})

    def add(self, pairs: Mapping[str, Tensor]) -> None:
        """Add one step's :func:`ratio` pairs (on the device; nothing is read)."""
        for name, pair in pairs.items():
            self.sums[name] = self.sums[name] + pair if name in self.sums else pair

    def means(self) -> dict[str, float]:
        """The means since the last call, over all ranks (one all-reduce); then empty."""
        means = reduce_ratios(self.sums)
        self.sums = {}
        return means

    def state_dict(self) -> dict[str, Tensor]:
        """The open window of this rank."""
        return dict(self.sums)

    def rank_states(self) -> list[dict[str, Tensor]]:
        """Every rank's open window, in rank order (one all-gather under torchrun; call it on
        every rank at the same step): what a checkpoint keeps, so that a resumed run's next
        log row sums each rank's own steps, bit for bit as an uninterrupted run does."""
        names = list(self.sums)
        if not names:  # the same steps on every rank, so the same (no) names
            return [{} for _ in range(rank_and_world_size()[1])]
        local = torch.stack([self.sums[name].reshape(2) for name in names])
        rows = all_gather_rows(local).to(local.device)
        return [dict(zip(names, block, strict=True)) for block in rows.split(len(names))]

    @classmethod
    def restored(
        cls, states: Sequence[Mapping[str, Tensor]], rank: int, world_size: int
    ) -> MeanWindow:
        """This rank's window from :meth:`rank_states` of a checkpoint.

        Saved by another number of processes, the window's sums go to rank 0 and the other
        ranks start with zeros, so the next log row still counts every step once.
        """
        if len(states) == world_size:
            return cls(states[rank])
        total: dict[str, Tensor] = {}
        for state in states:
            for name, pair in state.items():
                total[name] = total[name] + pair if name in total else pair.clone()
        if rank != 0:
            total = {name: torch.zeros_like(pair) for name, pair in total.items()}
        return cls(total)


def write_csv(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """Rows as CSV, written atomically; the columns are the union of the rows' keys in order."""
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, lambda file: file.write(buffer.getvalue().encode()))


def progress_bar(console: Console) -> Progress:
    """A bar with elapsed time, ETA and a ``stats`` field; disabled when not on a terminal
    (redirected output gets :func:`progress_line` lines instead)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[stats]}"),
        console=console,
        disable=not console.is_terminal,
    )


def progress_line(progress: Progress, task: TaskID, summary: str) -> str:
    """A plain progress line (for a log file): where the bar is, its ETA and the stats."""
    state = progress.tasks[task]
    eta = state.time_remaining
    when = f"ETA {timedelta(seconds=round(eta))}" if eta is not None else "ETA -"
    return (
        f"{state.description} step {int(state.completed)}/{int(state.total or 0)} "
        f"({state.percentage:.0f}%) {summary} | {when}"
    )


@contextmanager
def count_batches(
    module: nn.Module,
    total: int,
    description: str,
    progress: Progress,
    stop: StopRequest,
    where: str,
) -> Iterator[None]:
    """Advance a bar each time ``module`` runs forward (once per batch of an evaluation), and
    honour a stop request between two batches: :class:`InterruptedRunError` ``"stopped during
    {where}"``."""
    task = progress.add_task(description, total=total, stats="")
    if not progress.console.is_terminal:
        progress.console.print(f"{description}: {total} batches")

    def after_batch(module: nn.Module, args: Any, output: Any) -> None:
        if stop.requested:
            raise InterruptedRunError(f"stopped during {where}")
        progress.advance(task)

    handle = module.register_forward_hook(after_batch)
    try:
        yield
    finally:
        handle.remove()
        progress.remove_task(task)
