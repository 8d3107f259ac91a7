"""Each fast path equals the slower, obviously correct computation it replaced.

The references here are the implementations before the speed work (the (B, V, T) loss, the
packed encoder, PyTorch's own Adam, per-sample decoding), kept as test oracles.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.utils.rnn import pack_padded_sequence

from advmask.seqvae.factory import ModelSpec, build_sequence_vae
from advmask.seqvae.models import DoubleLSTMDecoder, LSTMEncoder
from advmask.seqvae.vae import sequence_nll, token_cross_entropy
from advmask.training.optim import adam


def sequence_nll_reference(logits, targets, lengths):
    """The loss before: ``cross_entropy`` on the (B, V, T) view."""
    token_nll = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    steps = torch.arange(targets.shape[1])
    valid = steps.unsqueeze(0) < (lengths - 1).unsqueeze(1)
    return torch.where(valid, token_nll, torch.zeros_like(token_nll)).sum(1)


def packed_encoder_reference(encoder: LSTMEncoder, tokens, lengths):
    """The encoder before: the LSTM over the packed valid tokens only."""
    packed = pack_padded_sequence(
        encoder.embedding(tokens), lengths.cpu(), batch_first=True, enforce_sorted=False
    )
    _, (last_hidden, _) = encoder.lstm(packed)
    return encoder.to_posterior(last_hidden[-1]).chunk(2, dim=-1)


@st.composite
def padded_batches(draw, vocab: int = 30):
    batch = draw(st.integers(1, 6))
    length = draw(st.integers(2, 12))
    lengths = draw(st.lists(st.integers(2, length), min_size=batch, max_size=batch))
    seed = draw(st.integers(0, 2**16))
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(4, vocab, (batch, length), generator=generator)
    lengths = torch.tensor(lengths)
    tokens = torch.where(torch.arange(length) < lengths[:, None], tokens, 0)
    return tokens, lengths, seed


@settings(max_examples=30, deadline=None)
@given(padded_batches())
def test_flat_loss_equals_the_bvt_loss_in_value_and_gradient(batch) -> None:
    tokens, lengths, seed = batch
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(*tokens.shape, 30, generator=generator, requires_grad=True)
    fast = sequence_nll(logits, tokens, lengths)
    slow = sequence_nll_reference(logits, tokens, lengths)
    torch.testing.assert_close(fast, slow)
    weights = torch.randn(fast.shape, generator=generator)
    (grad_fast,) = torch.autograd.grad((fast * weights).sum(), logits)
    (grad_slow,) = torch.autograd.grad((slow * weights).sum(), logits)
    torch.testing.assert_close(grad_fast, grad_slow)
    # Padding positions get exactly zero gradient.
    padding = torch.arange(tokens.shape[1]) >= (lengths - 1)[:, None]
    assert grad_fast[padding].eq(0).all()


def test_token_cross_entropy_gradcheck_and_no_grad_path() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 11, dtype=torch.float64, generator=generator, requires_grad=True)
    targets = torch.randint(0, 11, (7,), generator=generator)
    assert torch.autograd.gradcheck(lambda x: token_cross_entropy(x, targets), (logits,))
    with torch.no_grad():
        torch.testing.assert_close(
            token_cross_entropy(logits, targets), F.cross_entropy(logits, targets, reduction="none")
        )


@settings(max_examples=25, deadline=None)
@given(padded_batches())
def test_padded_encoder_equals_packed_encoder(batch) -> None:
    tokens, lengths, seed = batch
    torch.manual_seed(seed)
    encoder = LSTMEncoder(30, 8, 12, 4, init="pytorch")
    mean, logvar = encoder(tokens, lengths)
    ref_mean, ref_logvar = packed_encoder_reference(encoder, tokens, lengths)
    torch.testing.assert_close(mean, ref_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logvar, ref_logvar, rtol=1e-5, atol=1e-6)
    weights = torch.randn(mean.shape)
    grads = torch.autograd.grad((mean * weights + logvar).sum(), list(encoder.parameters()))
    ref_grads = torch.autograd.grad(
        (ref_mean * weights + ref_logvar).sum(), list(encoder.parameters())
    )
    for grad, ref in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(grad, ref, rtol=1e-4, atol=1e-6)


def test_encoder_ignores_tokens_after_the_length() -> None:
    torch.manual_seed(0)
    encoder = LSTMEncoder(30, 8, 12, 4, init="pytorch")
    tokens = torch.randint(4, 30, (3, 9))
    lengths = torch.tensor([9, 4, 2])
    changed = tokens.clone()
    changed[1, 4:] = 7
    changed[2, 2:] = 5
    torch.testing.assert_close(encoder(tokens, lengths), encoder(changed, lengths))


def test_fused_adam_takes_the_default_adam_steps() -> None:
    torch.manual_seed(0)
    fast = [torch.nn.Parameter(torch.randn(50, 8)), torch.nn.Parameter(torch.randn(8))]
    slow = [torch.nn.Parameter(p.detach().clone()) for p in fast]
    fast_optimizer = adam(fast, lr=1e-2)
    slow_optimizer = torch.optim.Adam(slow, lr=1e-2)
    assert fast_optimizer.defaults["fused"]
    for _ in range(20):
        grads = [torch.randn_like(p) for p in fast]
        for params, optimizer in ((fast, fast_optimizer), (slow, slow_optimizer)):
            for p, g in zip(params, grads, strict=True):
                p.grad = g.clone()
            optimizer.step()
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_adam_rejects_an_empty_parameter_list() -> None:
    with pytest.raises(ValueError, match="parameters is empty"):
        adam([], lr=1e-3)


def tiny_vae(decoder: str, seed: int = 0):
    torch.manual_seed(seed)
    spec = ModelSpec(
        vocab_size=30,
        embedding_dim=8,
        hidden_size=12,
        latent_dim=3,
        decoder=decoder,
        dropout="none",
        adversary_embedding_dim=4,
        adversary_hidden_size=4,
    )
    return build_sequence_vae(spec).eval()


@pytest.mark.parametrize("decoder", ["double-lstm", "lstm", "transformer"])
@pytest.mark.parametrize("max_rows", [None, 1, 5])
def test_log_likelihood_equals_one_reconstruction_per_sample(decoder, max_rows) -> None:
    vae = tiny_vae(decoder)
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(4, 30, (4, 7), generator=generator)
    lengths = torch.tensor([7, 5, 3, 2])
    tokens = torch.where(torch.arange(7) < lengths[:, None], tokens, 0)
    z = torch.randn(3, 4, 3, generator=generator)
    with torch.no_grad():
        fast = vae.log_likelihood(tokens, lengths, z, max_rows=max_rows)
        slow = torch.stack([-vae.reconstruction_nll(tokens, lengths, z_s) for z_s in z])
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)


def test_log_likelihood_memory_budget_sets_the_chunk_size() -> None:
    vae = tiny_vae("double-lstm")
    generator = torch.Generator().manual_seed(2)
    tokens = torch.randint(4, 30, (3, 6), generator=generator)
    lengths = torch.tensor([6, 6, 4])
    z = torch.randn(5, 3, 3, generator=generator)
    calls = []
    original = vae.decoder.decode_projected

    def spy(projected, zz, rows=None):
        calls.append(zz.shape[0])
        return original(projected, zz, rows=rows)

    vae.decoder.decode_projected = spy
    # One row: 5 steps x 30 logits + 5 x 48 projected features, 4 bytes each = 1560 bytes.
    with torch.no_grad():
        small = vae.log_likelihood(tokens, lengths, z, memory_budget=2 * 1560)
        calls_small = list(calls)
        calls.clear()
        large = vae.log_likelihood(tokens, lengths, z)
    assert calls_small == [2] * 7 + [1]  # 15 rows, 2 at a time
    assert calls == [15]
    torch.testing.assert_close(small, large)


def test_double_lstm_projected_path_and_no_grad_path_equal_forward() -> None:
    torch.manual_seed(0)
    decoder = DoubleLSTMDecoder(20, 6, 10, 3).eval()
    embedded = torch.randn(4, 5, 6, requires_grad=True)
    z = torch.randn(4, 3, requires_grad=True)
    logits = decoder(embedded, z)
    projected = decoder.project_inputs(embedded)
    torch.testing.assert_close(decoder.decode_projected(projected, z), logits)
    with torch.no_grad():
        torch.testing.assert_close(decoder(embedded, z), logits.detach())
