"""Random draws of a shard of a global batch: the rows one process draws for them.

Under ``torchrun`` each rank computes the training step of its rows ``start:stop`` of a global
batch of ``total`` rows (:func:`~advmask.training.distributed.shard_batch`). For the ranks
to take the step one process takes on the whole batch, a row must get the noise it gets in
one process: :class:`ShardedRandomness` draws each per-row random tensor for the whole
global batch and keeps this rank's rows, so every rank's random number generator also
advances exactly as one process's does. In one process nothing is intercepted
(:meth:`~advmask.training.distributed.BatchShard.randomness` is then a no-op context).

The replacement is explicit: code that draws per-row noise is given its rows, a
:class:`~advmask.row_draws.RowDraws` (:meth:`~advmask.training.distributed.BatchShard.rows`),
and draws ``(total, ...)`` itself. The posterior sample ``z`` of
:meth:`~advmask.seqvae.vae.SequenceVAE.forward` is drawn so; its global-shaped draw is not
intercepted here. The other draws of the training step still are.

What it does not do (the known limits, see issue 37): it recognises a per-row draw by its
shape (the leading dimension is this shard's row count), and it covers the draws the training
step makes today (``randn``, ``rand``, their ``_like`` forms, ``normal_``, ``uniform_``,
``bernoulli_`` and ``F.dropout``); ``randint``, ``multinomial`` and random numbers drawn
inside fused kernels are not intercepted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

__all__ = ["ShardedRandomness"]


class ShardedRandomness(TorchFunctionMode):
    """Draw random tensors for the whole global batch and keep this shard's rows.

    While active, a call of ``torch.randn``, ``torch.rand``, ``torch.randn_like``,
    ``torch.rand_like``, ``Tensor.normal_``, ``Tensor.uniform_``, ``Tensor.bernoulli_`` (scalar
    ``p``) or ``torch.nn.functional.dropout`` whose result has ``stop - start`` rows in
    dimension 0 (the batch dimension of the (B, ...) layout) draws ``total`` rows instead and
    returns rows ``start:stop``. Every rank thus consumes its random number generator exactly
    as one process with the global batch does, and sequence ``n`` of the global batch gets the
    same noise whichever rank holds it. Dropout is computed as ``x * bernoulli(1 - p) / (1 -
    p)``, which on the CPU is what PyTorch computes itself.

    Draws with another leading dimension (for example ``(S, B, D)`` importance samples) and
    random numbers drawn inside C++ kernels (the dropout of ``nn.LSTM`` layers, attention
    dropout of fused attention) are not intercepted: they remain valid, but differ from one
    process's draws.

    Args:
        start: first global row of this rank's shard.
        stop: one past its last row.
        total: rows of the global batch.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> whole = torch.randn(4, 3)
        >>> _ = torch.manual_seed(0)
        >>> with ShardedRandomness(2, 4, 4):
        ...     rows = torch.randn(2, 3)
        >>> torch.equal(rows, whole[2:4])
        True
    """

    def __init__(self, start: int, stop: int, total: int) -> None:
        super().__init__()
        if not 0 <= start < stop <= total:
            raise ValueError(
                f"need 0 <= start < stop <= total, got start={start}, stop={stop}, total={total}"
            )
        self.start, self.stop, self.total = start, stop, total
        self._handlers: dict[Callable[..., Any], Callable[..., Any]] = {
            torch.randn: self._factory,
            torch.rand: self._factory,
            torch.randn_like: self._like,
            torch.rand_like: self._like,
            F.dropout: self._dropout,
            Tensor.normal_: self._in_place,
            Tensor.uniform_: self._in_place,
            Tensor.bernoulli_: self._in_place,
        }

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        handler = self._handlers.get(func)
        if handler is not None and self.total != self.stop - self.start:
            result = handler(func, args, kwargs)
            if result is not NotImplemented:
                return result
        return func(*args, **kwargs)

    def _rows(self, shape: tuple[int, ...]) -> bool:
        return len(shape) > 0 and shape[0] == self.stop - self.start

    def _factory(self, func: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        if "size" in kwargs:
            shape = tuple(kwargs.pop("size"))
        elif len(args) == 1 and isinstance(args[0], (tuple, list, torch.Size)):
            shape = tuple(args[0])
        elif args and all(isinstance(a, int) for a in args):
            shape = tuple(args)
        else:
            return NotImplemented
        if not self._rows(shape) or kwargs.get("out") is not None:
            return NotImplemented
        return func((self.total, *shape[1:]), **kwargs)[self.start : self.stop]

    def _like(self, func: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        like = args[0]
        if not self._rows(tuple(like.shape)) or kwargs.get("memory_format") is not None:
            return NotImplemented
        # The *_like functions draw in ``like``'s dtype/device unless told otherwise.
        options = {"dtype": like.dtype, "device": like.device, **kwargs}
        return func(like.new_empty((self.total, *like.shape[1:])), *args[1:], **options)[
            self.start : self.stop
        ]

    def _in_place(self, func: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        target = args[0]
        parameters = [*args[1:], *kwargs.values()]
        if not self._rows(tuple(target.shape)) or any(isinstance(p, Tensor) for p in parameters):
            return NotImplemented
        whole = target.new_empty((self.total, *target.shape[1:]))
        func(whole, *args[1:], **kwargs)
        with torch.no_grad():
            target.copy_(whole[self.start : self.stop])
        return target

    def _dropout(self, func: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        names = ("input", "p", "training", "inplace")
        options = {"p": 0.5, "training": True, "inplace": False, **kwargs}
        options.update(dict(zip(names, args, strict=False)))
        x, p, training, inplace = (options[name] for name in names)
        if not training or p == 0.0 or inplace or not self._rows(tuple(x.shape)):
            return NotImplemented
        if p == 1.0:
            return x * 0.0
        keep = x.new_empty((self.total, *x.shape[1:])).bernoulli_(1.0 - p).div_(1.0 - p)
        return x * keep[self.start : self.stop]
