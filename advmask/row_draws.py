"""Per-row random draws of a block of rows of a global batch, the same whoever draws them.

Under ``torchrun`` each rank computes the training step of its rows ``start:stop`` of a global
batch of ``total`` rows. For the ranks to take the step one process takes on the whole batch,
row ``n`` must get the noise it gets in one process. A :class:`RowDraws` is passed explicitly
to the code that draws per-row noise: it draws the ``(total, ...)`` tensor one process draws
and keeps rows ``start:stop``, so every rank's generator also advances exactly as one
process's does. In one process (``RowDraws.whole(B)``) it makes exactly the call the code made
without it, so the draws are bit-identical to plain ``torch.randn`` / ``F.dropout``.

Nothing is intercepted: a draw is per-row because the caller says so, never because its shape
happens to match. The maskers (their score noise), the ``"perturbed"`` relaxation, the sequence
VAE (``z``), its decoders (input and output dropout) and its semi-amortised refinement take a
``row_draws`` argument; None makes the plain draws of the batch they are given. Random numbers
drawn inside PyTorch's own layers and kernels (the dropout inside ``nn.TransformerEncoderLayer``
and fused attention, between the layers of a multi-layer ``nn.LSTM``) are not told the rows: a
shard draws them for its own rows, valid noise but not one process's. So is a block's dropout
mask on CUDA, where one process's ``F.dropout`` draws in a fused kernel
(:meth:`RowDraws.dropout`).
Draws whose outcome for one row depends on the other rows' inputs (``torch.multinomial`` over
rows of probabilities) cannot be reproduced from one shard and are not offered; the training
step makes none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["RowDraws"]


@dataclass(frozen=True)
class RowDraws:
    """Random tensors of rows ``start:stop`` of a global batch of ``total`` rows.

    Each method takes the shape of this block, ``(stop - start, ...)`` (dimension 0 is the
    batch dimension of the (B, ...) layout), draws ``(total, ...)`` with the given generator (or
    the global one) and returns rows ``start:stop``. When the block is the whole batch the
    method makes exactly the call it replaces (no extra rows, no slicing).

    Attributes:
        start: first global row of the block.
        stop: one past its last row.
        total: rows of the global batch.

    Raises:
        ValueError: unless ``0 <= start < stop <= total`` (ints).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> whole = torch.randn(4, 3)
        >>> _ = torch.manual_seed(0)
        >>> torch.equal(RowDraws(2, 4, 4).randn((2, 3)), whole[2:4])
        True
    """

    start: int
    stop: int
    total: int

    def __post_init__(self) -> None:
        values = (self.start, self.stop, self.total)
        if any(isinstance(v, bool) or not isinstance(v, int) for v in values) or not (
            0 <= self.start < self.stop <= self.total
        ):
            raise ValueError(
                f"need ints 0 <= start < stop <= total, got start={self.start!r}, "
                f"stop={self.stop!r}, total={self.total!r}"
            )

    @classmethod
    def whole(cls, rows: int) -> RowDraws:
        """The whole batch of ``rows`` rows: one process's draws."""
        return cls(0, rows, rows)

    @property
    def num_rows(self) -> int:
        """``stop - start``, the rows of this block."""
        return self.stop - self.start

    @property
    def is_whole(self) -> bool:
        """True when the block is the whole batch (the draws are the plain calls)."""
        return self.num_rows == self.total

    def randn(
        self,
        shape: Sequence[int],
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """Standard-normal ``shape`` (``(stop - start, ...)``), as ``torch.randn`` draws it.

        Returns:
            Tensor of ``shape``: rows ``start:stop`` of ``torch.randn((total, ...))``.
        """
        return self._rows_of(torch.randn, shape, generator=generator, device=device, dtype=dtype)

    def rand(
        self,
        shape: Sequence[int],
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """Uniform on ``[0, 1)`` of ``shape`` (``(stop - start, ...)``), as ``torch.rand``."""
        return self._rows_of(torch.rand, shape, generator=generator, device=device, dtype=dtype)

    def randn_like(self, like: Tensor) -> Tensor:
        """Standard normal in ``like``'s shape (``(stop - start, ...)``), dtype and device, as
        ``torch.randn_like(like)`` (the global generator)."""
        if self.is_whole:
            self._global(like.shape)  # the shape check
            return torch.randn_like(like)
        return self.randn(like.shape, device=like.device, dtype=like.dtype)

    def dropout(self, x: Tensor, p: float, training: bool = True) -> Tensor:
        """``F.dropout(x, p, training)`` with this block's rows of the global mask.

        Args:
            x: (stop - start, ...) float input.
            p: probability of zeroing an element, in ``[0, 1]``.
            training: False returns ``x`` unchanged, as ``F.dropout``.

        Returns:
            Tensor like ``x``: kept elements scaled by ``1 / (1 - p)``, dropped ones 0. The
            whole batch calls ``F.dropout`` itself; a block draws the global Bernoulli(1 - p)
            keep mask in the memory order of ``x``'s dimensions (a batch-first view of a
            time-major tensor: time-major), which on the CPU is what ``F.dropout`` draws. On
            CUDA ``F.dropout`` draws in a fused kernel: a block's mask is then a valid mask but
            not the one of one process.
        """
        self._global(x.shape)
        if self.is_whole or not training or p == 0.0:
            return F.dropout(x, p, training)
        if p == 1.0:
            return x * 0.0
        # F.dropout fills a tensor with x's strides in memory order: draw the global mask
        # with the dimensions in the same order, so that its rows are one process's.
        order = _memory_order(x)
        shape = [self.total if dim == 0 else x.shape[dim] for dim in order]
        keep = x.new_empty(shape).bernoulli_(1.0 - p).div_(1.0 - p)
        keep = keep.permute([order.index(dim) for dim in range(x.dim())])
        return x * keep[self._slice()]

    def _rows_of(
        self, draw: Callable[..., Tensor], shape: Sequence[int], **options: object
    ) -> Tensor:
        """Rows ``start:stop`` of ``draw((total, ...), **options)``."""
        return draw(self._global(shape), **options)[self._slice()]

    def _slice(self) -> slice:
        return slice(self.start, self.stop)

    def _global(self, shape: Sequence[int]) -> tuple[int, ...]:
        """The global shape of a block's ``shape``; refuses one with the wrong row count."""
        shape = tuple(shape)
        if len(shape) == 0 or shape[0] != self.num_rows:
            raise ValueError(
                f"shape must have {self.num_rows} rows (rows {self.start}:{self.stop} of "
                f"{self.total}) in dimension 0, got shape {shape}"
            )
        return (self.total, *shape[1:])


def _memory_order(x: Tensor) -> list[int]:
    """``x``'s dimensions from the outermost in memory to the innermost.

    Larger strides first; a size-1 dimension (its stride says nothing) sits just inside the
    dimension that shares its stride, where a contiguous tensor's size-1 dimension sits.
    """
    return sorted(range(x.dim()), key=lambda dim: (-x.stride(dim), x.shape[dim] == 1))
