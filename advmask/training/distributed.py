"""Training on several processes (``torchrun`` + DistributedDataParallel) with one result.

The contract: ``W`` ranks with ``B`` sequences each compute the same training step as one
process with ``W * B`` sequences. Four pieces make that hold:

* **Shards of one global batch.** Every rank builds the same global batches (same seed) and
  takes a contiguous block of rows of each (:func:`shard_batch`); the padding width stays the
  global batch's, so per-row tensors have the same shape on every rank.
* **Loss normalised by the global batch.** DDP *averages* gradients over ranks, so a rank's
  batch-mean loss is multiplied by :attr:`BatchShard.loss_scale` ``= W * B_r / N``: the average
  over ranks is then the mean over all ``N`` sequences, even when the shards differ in size.
  The adversary lives inside the model, so its (reversed) gradient is averaged the same way.
* **The same random draws.** A per-row random tensor is drawn for the global batch and
  sliced, so that sequence ``n`` gets the noise it gets in one process and the ranks' random
  number streams stay identical to each other and to one process's. Nothing is intercepted:
  the code that draws per-row noise is told its rows explicitly (a shard's ``start``,
  ``stop`` and ``total``; :class:`advmask.row_draws.RowDraws` in the sequence VAE's step).
* **Reduced metrics.** :func:`reduce_ratios` sums (numerator, denominator) pairs over ranks;
  :func:`all_gather_rows` concatenates per-sequence tensors in rank order.

Files are written by rank 0 only: decorate writers with lightning-utilities'
``rank_zero_only`` (``lightning_utilities.core.rank_zero``), whose ``rank`` is set here from
torchrun's environment at import (as Lightning Fabric does) and again by
:func:`init_distributed`. When the process was not started by ``torchrun`` every function here
is the single-process identity: nothing is initialised or communicated.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from typing import Generic, Protocol, TypeVar

import torch
import torch.distributed as dist
from lightning_utilities.core.rank_zero import rank_zero_only
from torch import Tensor

from advmask.checks import check_int

__all__ = [
    "BatchShard",
    "DistributedContext",
    "all_gather_rows",
    "any_rank",
    "barrier",
    "block_range",
    "check_device",
    "close_distributed",
    "init_distributed",
    "rank_and_world_size",
    "rank_zero_first",
    "reduce_ratios",
    "shard_batch",
    "sum_across_ranks",
]

# rank_zero_only raises until its rank is set; torchrun exports RANK before Python starts.
rank_zero_only.rank = getattr(rank_zero_only, "rank", None) or int(os.environ.get("RANK", 0))


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a (possibly one-process) job.

    Attributes:
        rank: global rank in ``[0, world_size)``.
        local_rank: rank on this machine (selects the CUDA device).
        world_size: number of processes, 1 without ``torchrun``.
        device: the device this rank trains on.
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_distributed(self) -> bool:
        """True when several processes share the work (a process group exists)."""
        return self.world_size > 1

    @property
    def is_rank_zero(self) -> bool:
        """True on the process that writes files and prints."""
        return self.rank == 0


def _launched_by_torchrun() -> bool:
    return all(name in os.environ for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def check_device(device: str) -> None:
    """Refuse a device this machine does not have, before anything runs on it.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.

    Raises:
        ValueError: naming ``device`` when it is not a device name, or names a device that is
            not available here (no CUDA, fewer CUDA devices, no MPS).

    Example:
        >>> check_device("cpu")
        >>> check_device("gpu")
        Traceback (most recent call last):
        ...
        ValueError: must be auto, cpu, cuda, cuda:N or mps, got 'gpu'
    """
    if device == "auto":
        return
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        chosen = None
    if chosen is None or chosen.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"must be auto, cpu, cuda, cuda:N or mps, got {device!r}")
    if chosen.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"CUDA is not available on this machine, got {device!r}")
        if chosen.index is not None and chosen.index >= count:
            raise ValueError(f"this machine has {count} CUDA device(s), got {device!r}")
    if chosen.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"MPS is not available on this machine, got {device!r}")


def init_distributed(device: str = "auto") -> DistributedContext:
    """Join torchrun's process group (if launched by it) and choose this rank's device.

    Without torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) nothing is
    initialised and the device is ``device`` itself (``"auto"``: CUDA if available). Under
    torchrun, ``"auto"`` and ``"cuda"`` mean ``cuda:LOCAL_RANK`` when CUDA is available; the
    backend is NCCL for CUDA devices and gloo for the CPU. Calling it again returns the
    existing group's context.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Returns:
        The :class:`DistributedContext`; ``rank_zero_only.rank`` is set to its rank.

    Example:
        >>> import os
        >>> "RANK" in os.environ or init_distributed("cpu") == DistributedContext()
        True
    """
    if not isinstance(device, str):
        raise TypeError(f"device must be a str such as 'cpu' or 'cuda:0', got {device!r}")
    if not _launched_by_torchrun():
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return DistributedContext(device=torch.device(device))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ["LOCAL_RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    chosen = torch.device(device)
    if chosen.type == "cuda":
        if chosen.index is None:
            # One GPU per process: the rank on this machine picks it.
            chosen = torch.device("cuda", local_rank)
        torch.cuda.set_device(chosen)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
    rank_zero_only.rank = rank
    return DistributedContext(
        rank=rank, local_rank=local_rank, world_size=world_size, device=chosen
    )


def close_distributed() -> None:
    """Leave the process group, if one was joined (call once at the end of the program)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _communication_device() -> torch.device:
    # NCCL moves CUDA tensors only; gloo moves CPU tensors.
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def rank_and_world_size() -> tuple[int, int]:
    """``(rank, world_size)`` in the initialised process group; ``(0, 1)`` without one.

    Example:
        >>> dist.is_initialized() or rank_and_world_size() == (0, 1)
        True
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if _active():
        dist.barrier()


@contextmanager
def rank_zero_first() -> Iterator[None]:
    """Run the block on rank 0 first, then on the others (for example to fill a cache).

    Rank 0 writes what the block creates (a generated corpus, a trained tokenizer); the other
    ranks run it after rank 0 has finished and find the files in place.
    """
    if not _active():
        yield
        return
    if dist.get_rank() != 0:
        dist.barrier()
    yield
    if dist.get_rank() == 0:
        dist.barrier()


def any_rank(flag: bool) -> bool:
    """True if ``flag`` is True on any rank (a collective: call it on every rank).

    Used so that all ranks stop at the same step when one of them received a signal.
    """
    if not _active():
        return bool(flag)
    value = torch.tensor([float(flag)], device=_communication_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def reduce_ratios(pairs: Mapping[str, Tensor]) -> dict[str, float]:
    """Global ratios from per-rank (numerator, denominator) pairs, in one all-reduce.

    Args:
        pairs: name -> (2,) float tensor ``[sum, count]`` of this rank (for example the summed
            loss of its sequences and their number).

    Returns:
        name -> ``sum over ranks of sum / sum over ranks of count``; a total count of 0
        counts as 1 (nothing to average: the sum itself, usually 0).

    Example:
        >>> reduce_ratios({"loss": torch.tensor([6.0, 3.0])})
        {'loss': 2.0}
    """
    if not pairs:
        return {}
    names = list(pairs)
    stacked = torch.stack([pairs[name].detach().double().reshape(2) for name in names])
    if _active():
        stacked = stacked.to(_communication_device())
        dist.all_reduce(stacked)
    stacked = stacked.cpu()
    return {
        name: float(total / count) if count != 0 else float(total)
        for name, (total, count) in zip(names, stacked.tolist(), strict=True)
    }


def sum_across_ranks(values: Mapping[str, float | Tensor]) -> dict[str, float]:
    """Sum each scalar over the ranks, in one float64 all-reduce.

    Example:
        >>> sum_across_ranks({"nll": 12.5, "sequences": 4})
        {'nll': 12.5, 'sequences': 4.0}
    """
    if not values:
        return {}
    names = list(values)
    stacked = torch.tensor([float(values[name]) for name in names], dtype=torch.float64)
    if _active():
        stacked = stacked.to(_communication_device())
        dist.all_reduce(stacked)
    return dict(zip(names, stacked.cpu().tolist(), strict=True))


def all_gather_rows(tensor: Tensor) -> Tensor:
    """Concatenate every rank's rows in rank order (row counts may differ between ranks).

    Args:
        tensor: (N_r, ...) this rank's rows; the trailing shape and dtype must agree.

    Returns:
        (sum_r N_r, ...) on ``tensor``'s device: rank 0's rows, then rank 1's, ...
    """
    if not _active():
        return tensor
    device = _communication_device()
    local = tensor.to(device)
    sizes = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([local.shape[0]], dtype=torch.int64, device=device))
    counts = [int(size.item()) for size in sizes]
    # all_gather needs equal shapes: pad every block to the largest, then cut the padding off.
    largest = max(counts)
    padded = local.new_zeros((largest, *local.shape[1:]))
    padded[: local.shape[0]] = local
    blocks = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(blocks, padded)
    return torch.cat([block[:count] for block, count in zip(blocks, counts, strict=True)]).to(
        tensor.device
    )


def block_range(count: int, rank: int, world_size: int) -> tuple[int, int]:
    """This rank's contiguous block ``[start, stop)`` of ``count`` items.

    Blocks are consecutive and their sizes differ by at most one (the first ``count %
    world_size`` blocks are one larger), the rule of :func:`advmask.seqvae.data.make_batches`.

    Example:
        >>> [block_range(5, r, 2) for r in range(2)]
        [(0, 3), (3, 5)]
    """
    count = check_int(count, "count", 0)
    world_size = check_int(world_size, "world_size", 1)
    rank = check_int(rank, "rank", 0)
    if rank >= world_size:
        raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
    size, extra = divmod(count, world_size)
    start = rank * size + min(rank, extra)
    return start, start + size + (1 if rank < extra else 0)


class Rows(Protocol):
    """A dataclass of per-row tensors (a batch) that knows how many rows it has."""

    @property
    def num_sequences(self) -> int: ...


RowsT = TypeVar("RowsT", bound=Rows)


@dataclass(frozen=True)
class BatchShard(Generic[RowsT]):
    """This rank's rows of a global batch.

    Attributes:
        batch: rows ``start:stop`` of the global batch, padded to the global batch's width
            ``T`` (not trimmed), so per-row random draws have the global shape's trailing
            dimensions.
        start: first global row of this shard.
        stop: one past the last global row.
        total: ``N``, rows of the global batch.
        world_size: ``W``, number of ranks sharing it.
    """

    batch: RowsT
    start: int
    stop: int
    total: int
    world_size: int

    @property
    def num_sequences(self) -> int:
        """``B_r = stop - start``."""
        return self.stop - self.start

    @property
    def loss_scale(self) -> float:
        """``W * B_r / N``: turns this shard's batch-mean loss into its share of the global
        mean under DDP's gradient averaging (1.0 in one process)."""
        return self.world_size * self.num_sequences / self.total


def shard_batch(batch: RowsT, rank: int, world_size: int) -> BatchShard[RowsT]:
    """Cut one global batch into ``world_size`` contiguous row blocks and keep block ``rank``.

    Args:
        batch: the global batch of ``N`` rows, the same on every rank: a dataclass whose tensor
            fields with ``N`` rows are sliced (others, such as ``None``, are kept).
        rank: this rank, in ``[0, world_size)``.
        world_size: number of ranks (>= 1); at most ``N``, so that no shard is empty.

    Returns:
        The :class:`BatchShard`; with ``world_size == 1`` it holds the whole batch.

    Example:
        >>> from advmask.seqvae.data import collate
        >>> shard = shard_batch(collate([[5], [6, 7], [8]]), rank=1, world_size=2)
        >>> shard.batch.tokens.tolist(), shard.batch.indices.tolist(), shard.loss_scale
        ([[1, 8, 2, 0]], [2], 0.6666666666666666)
    """
    total = batch.num_sequences
    start, stop = block_range(total, rank, world_size)
    if stop == start:
        raise ValueError(
            f"batch has {total} sequences, fewer than world_size={world_size}: rank {rank} "
            "would get none"
        )
    rows = {
        item.name: value[start:stop]
        for item in fields(batch)  # type: ignore[arg-type]
        if isinstance(value := getattr(batch, item.name), Tensor) and value.shape[:1] == (total,)
    }
    local = replace(batch, **rows)  # type: ignore[type-var]
    return BatchShard(local, start, stop, total, world_size)


def data_parallel(
    model: torch.nn.Module, context: DistributedContext, find_unused_parameters: bool = False
) -> torch.nn.Module:
    """``model`` wrapped in :class:`~torch.nn.parallel.DistributedDataParallel` under
    torchrun (gradients averaged over the ranks in the backward pass), else ``model`` itself.

    Args:
        model: on ``context.device``.
        context: from :func:`init_distributed`.
        find_unused_parameters: DDP's option, for parameters some steps do not use.
    """
    if not context.is_distributed:
        return model
    device = context.device
    return torch.nn.parallel.DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=find_unused_parameters,
    )
