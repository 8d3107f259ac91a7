"""Cross-entropy of half-precision logits, accumulated in float32, without a float32 copy.

Under ``--precision bf16`` the output layer returns (N, V) bfloat16 logits. Converting them to
float32 before the log-softmax (what autocast's ``cross_entropy`` does) writes and reads a
float32 (N, V) copy, twice the size of the logits, and the backward pass then reads a float32
(N, V) buffer of log-probabilities: at N = 1312, V = 10,000 that is 52 MB each, far outside any
cache. Here both passes walk the rows in chunks whose float32 working set (``chunk_bytes``)
stays in cache: the forward keeps only the (N,) float32 log-normalisers, the backward
recomputes each chunk's softmax from the bf16 logits and writes the gradient in bf16.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = [
    "ACCELERATOR_CHUNK_BYTES",
    "DEFAULT_CHUNK_BYTES",
    "LOW_PRECISION_DTYPES",
    "low_precision_cross_entropy",
]

DEFAULT_CHUNK_BYTES = 2**20
"""The size in bytes of one chunk's float32 working copy on a CPU, a share of a core's L2 cache
(1-2 MiB on the CPUs with bf16 units). Much smaller chunks cost more in per-call overhead than
they save."""

ACCELERATOR_CHUNK_BYTES = 64 * 2**20
"""The same on a GPU, where each chunk costs a few kernel launches and no cache is to be
kept: few, large chunks, bounded so that the float32 working copy stays small next to the
logits of a large vocabulary."""

LOW_PRECISION_DTYPES = (torch.bfloat16, torch.float16)
"""The logits' dtypes this module is for (and :func:`~advmask.seqvae.vae.sequence_nll` sends
here)."""


def low_precision_cross_entropy(
    logits: Tensor, targets: Tensor, *, chunk_bytes: int | None = None
) -> Tensor:
    """``-log softmax(logits)[target]`` per row, in float32, from bf16 or fp16 logits.

    Each row's log-normaliser ``logsumexp(logits[n])`` is accumulated in float32 from the
    exactly upcast half-precision values, so the result equals
    ``F.cross_entropy(logits.float(), targets, reduction="none")`` up to float32 rounding;
    the gradient ``(softmax(logits[n]) - onehot(targets[n])) * grad[n]`` is formed in float32
    chunk by chunk and rounded once to the logits' dtype.

    Args:
        logits: (N, V) bfloat16 or float16 unnormalised log-probabilities.
        targets: (N,) int64 class ids in ``[0, V)``.
        chunk_bytes: bytes of float32 working memory per chunk of rows (at least one row);
            None: :data:`DEFAULT_CHUNK_BYTES` on a CPU, :data:`ACCELERATOR_CHUNK_BYTES` on
            other devices.

    Returns:
        (N,) float32 nats; differentiable once in ``logits`` (gradient in ``logits.dtype``).

    Raises:
        ValueError: if ``logits`` is not a 2-D bfloat16/float16 tensor, ``targets`` is not
            (N,) int64 or ``chunk_bytes`` is not positive.
    """
    if logits.dim() != 2 or logits.dtype not in LOW_PRECISION_DTYPES:
        raise ValueError(
            f"logits must be (N, V) bfloat16 or float16, got {tuple(logits.shape)} {logits.dtype}"
        )
    if targets.shape != logits.shape[:1] or targets.dtype != torch.int64:
        raise ValueError(
            f"targets must be ({logits.shape[0]},) int64, got {tuple(targets.shape)} "
            f"{targets.dtype}"
        )
    if chunk_bytes is None:
        on_cpu = logits.device.type == "cpu"
        chunk_bytes = DEFAULT_CHUNK_BYTES if on_cpu else ACCELERATOR_CHUNK_BYTES
    if chunk_bytes <= 0:
        raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes}")
    rows = max(1, chunk_bytes // (4 * max(1, logits.shape[1])))
    if not (torch.is_grad_enabled() and logits.requires_grad):
        return _nll(logits, targets, _log_normalisers(logits, rows))
    return _LowPrecisionCrossEntropy.apply(logits, targets, rows)[0]


def _log_normalisers(logits: Tensor, rows: int) -> Tensor:
    """(N,) float32 ``logsumexp`` of each row of (N, V) half-precision ``logits``."""
    log_normalisers = logits.new_empty(logits.shape[0], dtype=torch.float32)
    for start in range(0, logits.shape[0], rows):
        chunk = logits[start : start + rows].float()  # (rows, V): stays in cache
        torch.logsumexp(chunk, dim=1, out=log_normalisers[start : start + rows])
    return log_normalisers


def _nll(logits: Tensor, targets: Tensor, log_normalisers: Tensor) -> Tensor:
    """(N,) float32 ``log_normaliser - logits[n, target]``."""
    return log_normalisers - logits.gather(1, targets.unsqueeze(1)).squeeze(1).float()


class _LowPrecisionCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(logits: Tensor, targets: Tensor, rows: int) -> tuple[Tensor, Tensor]:
        log_normalisers = _log_normalisers(logits, rows)
        return _nll(logits, targets, log_normalisers), log_normalisers

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Tensor, int], output: Any) -> None:
        logits, targets, rows = inputs
        _, log_normalisers = output
        ctx.mark_non_differentiable(log_normalisers)
        ctx.set_materialize_grads(False)
        ctx.rows = rows
        ctx.save_for_backward(logits, targets, log_normalisers)

    @staticmethod
    @once_differentiable
    def backward(
        ctx: Any, grad: Tensor | None, _grad_log_normalisers: Tensor | None
    ) -> tuple[Tensor | None, None, None]:
        if grad is None:  # grads are not materialised: nothing flowed into the loss
            return None, None, None
        logits, targets, log_normalisers = ctx.saved_tensors
        grad = grad.float()
        grad_logits = torch.empty_like(logits, memory_format=torch.contiguous_format)
        for start in range(0, logits.shape[0], ctx.rows):
            stop = start + ctx.rows
            row_grad = grad[start:stop].unsqueeze(1)
            # d(-log p_y)/d logits = softmax - onehot(y), scaled by the incoming gradient per
            # row; in float32 until the one rounding to the logits' dtype.
            chunk = logits[start:stop].float()
            chunk.sub_(log_normalisers[start:stop].unsqueeze(1)).exp_().mul_(row_grad)
            chunk.scatter_add_(1, targets[start:stop].unsqueeze(1), -row_grad)
            grad_logits[start:stop].copy_(chunk)
        return grad_logits, None, None
