"""The chunked half-precision cross-entropy against the float32 loss of the same logits.

Tolerances: the logits are upcast exactly, so the forward pass differs from a float32
``cross_entropy`` of ``logits.float()`` only by float32 rounding (float32 assert_close
defaults). The gradient is the float32 gradient rounded once to the logits' dtype: bfloat16
keeps 8 significant bits, so round-to-nearest moves a value by at most ``2**-8`` of itself
(float16: 11 bits, ``2**-11``); ``atol`` covers the float32 rounding of ``p_y * g - g``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from advmask.seqvae.low_precision_loss import low_precision_cross_entropy
from advmask.seqvae.vae import sequence_nll

UNIT_ROUNDOFF = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}


def float32_reference(logits: torch.Tensor, targets: torch.Tensor, grad: torch.Tensor):
    """Loss and gradient of ``F.cross_entropy`` on the float32 upcast of ``logits``."""
    upcast = logits.detach().float().requires_grad_()
    loss = F.cross_entropy(upcast, targets, reduction="none")
    (grad_logits,) = torch.autograd.grad(loss, upcast, grad)
    return loss.detach(), grad_logits


def loss_and_grad(logits, targets, grad, chunk_bytes):
    logits = logits.detach().requires_grad_()
    loss = low_precision_cross_entropy(logits, targets, chunk_bytes=chunk_bytes)
    (grad_logits,) = torch.autograd.grad(loss, logits, grad)
    return loss.detach(), grad_logits


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 40),
    vocab=st.integers(1, 300),
    scale=st.sampled_from([0.1, 3.0, 30.0, 1000.0]),
    chunk_bytes=st.sampled_from([1, 64, 4096, 2**20]),
    dtype=st.sampled_from([torch.bfloat16, torch.float16]),
    seed=st.integers(0, 2**16),
)
def test_loss_and_gradient_equal_the_float32_loss_of_the_upcast_logits(
    rows, vocab, scale, chunk_bytes, dtype, seed
) -> None:
    if dtype == torch.float16:
        scale = min(scale, 30.0)  # float16 overflows at 65504
    generator = torch.Generator().manual_seed(seed)
    logits = (scale * torch.randn(rows, vocab, generator=generator)).to(dtype)
    targets = torch.randint(0, vocab, (rows,), generator=generator)
    grad = torch.randn(rows, generator=generator)
    loss, grad_logits = loss_and_grad(logits, targets, grad, chunk_bytes)
    reference_loss, reference_grad = float32_reference(logits, targets, grad)
    assert loss.dtype == torch.float32 and grad_logits.dtype == dtype
    torch.testing.assert_close(loss, reference_loss)
    torch.testing.assert_close(
        grad_logits.float(), reference_grad, rtol=UNIT_ROUNDOFF[dtype], atol=1e-6
    )


@settings(max_examples=20, deadline=None)
@given(rows=st.integers(1, 30), vocab=st.integers(1, 100), seed=st.integers(0, 2**16))
def test_chunking_does_not_change_a_bit(rows, vocab, seed) -> None:
    # Each row is reduced on its own: one row per chunk and all rows in one chunk agree.
    generator = torch.Generator().manual_seed(seed)
    logits = (5 * torch.randn(rows, vocab, generator=generator)).bfloat16()
    targets = torch.randint(0, vocab, (rows,), generator=generator)
    grad = torch.randn(rows, generator=generator)
    one_row = loss_and_grad(logits, targets, grad, chunk_bytes=1)
    all_rows = loss_and_grad(logits, targets, grad, chunk_bytes=2**30)
    assert torch.equal(one_row[0], all_rows[0]) and torch.equal(one_row[1], all_rows[1])


def test_float32_accumulation_beats_a_bfloat16_log_softmax() -> None:
    # The case the float32 accumulation exists for: 10,000 nearly equal logits. A bf16
    # log-softmax rounds log(10,000) = 9.21 to a multiple of 2**-5; float32 keeps it.
    logits = torch.zeros(4, 10_000, dtype=torch.bfloat16)
    targets = torch.zeros(4, dtype=torch.int64)
    exact = torch.full((4,), torch.log(torch.tensor(10_000.0, dtype=torch.float64)).item())
    loss = low_precision_cross_entropy(logits, targets)
    assert (loss.double() - exact).abs().max() < 1e-5
    bf16_loss = -F.log_softmax(logits, dim=1)[:, 0].double()
    assert (bf16_loss - exact).abs().max() > 1e-3


def test_no_grad_path_and_gradient_rows_without_incoming_gradient() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 17, generator=generator).bfloat16()
    targets = torch.randint(0, 17, (6,), generator=generator)
    with torch.no_grad():
        no_grad = low_precision_cross_entropy(logits, targets)
    torch.testing.assert_close(no_grad, F.cross_entropy(logits.float(), targets, reduction="none"))
    grad = torch.tensor([1.0, 0.0, 0.0, 2.0, 0.0, 0.0])
    _, grad_logits = loss_and_grad(logits, targets, grad, chunk_bytes=1)
    assert grad_logits[grad == 0].eq(0).all()


def test_sequence_nll_on_bfloat16_logits() -> None:
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(4, 50, (3, 7), generator=generator)
    lengths = torch.tensor([7, 4, 2])
    logits = (3 * torch.randn(3, 7, 50, generator=generator)).bfloat16().requires_grad_()
    nll = sequence_nll(logits, tokens, lengths)
    upcast = logits.detach().float().requires_grad_()
    reference = sequence_nll(upcast, tokens, lengths)
    assert nll.dtype == torch.float32
    torch.testing.assert_close(nll, reference.detach())
    (grad,) = torch.autograd.grad(nll.sum(), logits)
    (reference_grad,) = torch.autograd.grad(reference.sum(), upcast)
    assert grad.dtype == torch.bfloat16
    torch.testing.assert_close(grad.float(), reference_grad, rtol=2.0**-8, atol=1e-6)
    padding = torch.arange(7) >= (lengths - 1)[:, None]
    assert grad[padding].eq(0).all()
    # The twice-differentiable path (semi-amortised inference) agrees.
    twice = sequence_nll(logits, tokens, lengths, twice_differentiable=True)
    torch.testing.assert_close(twice, nll)


@pytest.mark.parametrize(
    ("logits", "targets", "chunk_bytes", "match"),
    [
        (torch.zeros(2, 3), torch.zeros(2, dtype=torch.int64), 1, "logits must be"),
        (torch.zeros(2, 3, 4).bfloat16(), torch.zeros(2, dtype=torch.int64), 1, "logits must"),
        (torch.zeros(2, 3).bfloat16(), torch.zeros(3, dtype=torch.int64), 1, "targets must"),
        (torch.zeros(2, 3).bfloat16(), torch.zeros(2, dtype=torch.int32), 1, "targets must"),
        (torch.zeros(2, 3).bfloat16(), torch.zeros(2, dtype=torch.int64), 0, "chunk_bytes"),
    ],
)
def test_bad_input_is_named(logits, targets, chunk_bytes, match) -> None:
    with pytest.raises(ValueError, match=match):
        low_precision_cross_entropy(logits, targets, chunk_bytes=chunk_bytes)
