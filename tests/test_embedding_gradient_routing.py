"""Gradient routing of the full objective through a masked embedding (SPEC §6): the adversary
gets the reversed gradient, the VAE the plain one, and nothing leaks between them.
"""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from advmask.budget import num_to_drop
from advmask.embedding import MaskedEmbedding, mask_embeddings
from advmask.maskers import AdversarialMasker, UniformMasker
from advmask.regularizer import score_kl
from advmask.selection import bottom_k

from ._embedding_helpers import DIM, VOCAB, adversary, batch, setup


def decoder_loss(decoder, embedded, tokens, lengths):
    """Mean over rows of the summed next-token NLL at valid steps."""
    logits = decoder(embedded)[:, :-1]
    nll = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none")
    valid = torch.arange(nll.shape[1]) < (lengths - 1).unsqueeze(1)
    return torch.where(valid, nll, 0.0).sum(1).mean()


# --- gradient routing of the full objective -----------------------------------------------------


@pytest.mark.parametrize("fill", ["zero", "token"])
@pytest.mark.parametrize("scale", [1.0, 0.7])
def test_adversary_gets_the_reversed_gradient_and_the_vae_the_plain_one(fill, scale) -> None:
    # SPEC P6.3: grad_phi L_total = -alpha grad_phi L + grad_phi Omega (separate autograd.grad
    # calls, float64), and grad_theta L_total equals grad_theta L without any reversal.
    masker = adversary(grl_scale=scale).double()
    masked, decoder = setup(masker, fill=fill)
    tokens, lengths = batch([7, 5, 6, 3])
    phi = list(masker.parameters())
    theta = [masked.weight, *decoder.parameters()]

    torch.manual_seed(4)
    loss = decoder_loss(decoder, masked(tokens, lengths), tokens, lengths)
    total = loss + masked.regularizer
    grads_total = torch.autograd.grad(total, phi + theta, allow_unused=True)

    # The same objective written out by hand, without a reversal.
    torch.manual_seed(4)
    out = masked.last_output
    noise = torch.randn(tokens.shape, dtype=torch.float64)
    mean, std = masker.score_network(tokens, lengths)
    plain_mask = bottom_k(mean + std * noise, out.k, out.eligible, "euclidean")
    assert torch.equal(plain_mask, out.mask)
    embedded = mask_embeddings(masked.embed(tokens), plain_mask, masked.fill_vector())
    plain_loss = decoder_loss(decoder, embedded, tokens, lengths)
    grads_plain = torch.autograd.grad(plain_loss, phi + theta, allow_unused=True, retain_graph=True)
    grads_omega = torch.autograd.grad(
        score_kl(mean, std, out.eligible, 0.3), phi, allow_unused=True
    )

    def dense(grads, params):
        return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=True)]

    g_total = dense(grads_total, phi + theta)
    g_plain = dense(grads_plain, phi + theta)
    g_omega = dense(grads_omega, phi)
    for got, plain, omega in zip(g_total[: len(phi)], g_plain, g_omega, strict=False):
        torch.testing.assert_close(got, -scale * plain + omega, rtol=1e-10, atol=1e-13)
    assert any(float(g.abs().sum()) > 0 for g in g_plain[: len(phi)])
    for got, plain in zip(g_total[len(phi) :], g_plain[len(phi) :], strict=True):
        torch.testing.assert_close(got, plain, rtol=1e-12, atol=0)


class SharedEmbeddingScores(nn.Module):
    """A (wrong) score network that reads the VAE's embedding without detaching it."""

    def __init__(self, embedding: nn.Embedding) -> None:
        super().__init__()
        self.shared = [embedding]  # a list, so the VAE embedding is not registered twice
        self.head = nn.Linear(DIM, 1)

    def forward(self, tokens, lengths, *, embeddings=None):
        mean = self.head(self.shared[0](tokens)).squeeze(-1)
        return mean, torch.ones_like(mean)


def vae_gradients_with_and_without_masker(masked, decoder, tokens, lengths):
    torch.manual_seed(2)
    total = decoder_loss(decoder, masked(tokens, lengths), tokens, lengths) + masked.regularizer
    theta = [masked.weight, *decoder.parameters()]
    with_masker = torch.autograd.grad(total, theta)
    # L_VAE alone: the same drop mask as a constant.
    fixed = masked.last_output.mask.detach()
    embedded = mask_embeddings(masked.embed(tokens), fixed, masked.fill_vector())
    alone = torch.autograd.grad(decoder_loss(decoder, embedded, tokens, lengths), theta)
    return with_masker, alone


def test_leak_detector() -> None:
    # SPEC P6.6: every VAE parameter's gradient is that of L_VAE alone ...
    masked, decoder = setup(adversary().double())
    tokens, lengths = batch([7, 5, 6, 3])
    for got, expected in zip(
        *vae_gradients_with_and_without_masker(masked, decoder, tokens, lengths), strict=True
    ):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)
    # ... and the detector catches an adversary that shares the VAE's embedding.
    masked, decoder = setup()
    masked.masker = AdversarialMasker(
        VOCAB, 0.5, kl_weight=1.0, score_network=SharedEmbeddingScores(masked.embed)
    ).double()
    got, expected = vae_gradients_with_and_without_masker(masked, decoder, tokens, lengths)
    assert not torch.allclose(got[0], expected[0], rtol=1e-6, atol=0)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 4), st.integers(0, 7)), min_size=1, max_size=4),
    st.sampled_from([0.0, 0.15, 0.5, 0.7, 1.0]),
    st.booleans(),
)
def test_valid_inputs_drop_exactly_k_of_the_attended_positions(rows, rate, adversarial) -> None:
    # Left padding, then words, then right padding, per row: exactly round_half_up(rate * n)
    # of the n attended positions are dropped, never a padded one.
    width = 12
    steps = torch.arange(width)
    left = torch.tensor([pad for pad, _ in rows])
    words = torch.tensor([count for _, count in rows])
    attention_mask = ((steps >= left[:, None]) & (steps < (left + words)[:, None])).long()
    ids = torch.randint(2, VOCAB, attention_mask.shape, generator=torch.Generator().manual_seed(0))
    tokens = torch.where(attention_mask.bool(), ids, 0)
    masker = adversary(rate=rate) if adversarial else UniformMasker(rate)
    masked = MaskedEmbedding(nn.Embedding(VOCAB, DIM), masker)
    with masked.valid_inputs(attention_mask=attention_mask):
        masked(tokens)
    mask = masked.last_output.mask.detach()
    assert torch.equal(mask.sum(1).long(), num_to_drop(rate, words))
    assert torch.all(mask[attention_mask == 0] == 0)


def test_an_embedding_with_a_forward_of_its_own_is_refused() -> None:
    # The wrapper computes what nn.Embedding computes: it would silently drop a scaling.
    class ScaledEmbedding(nn.Embedding):
        def forward(self, tokens):
            return super().forward(tokens) * 2.0

    with pytest.raises(TypeError, match="ScaledEmbedding has its own forward"):
        MaskedEmbedding(ScaledEmbedding(VOCAB, DIM), None)

    class Renamed(nn.Embedding):  # a subclass that keeps nn.Embedding's forward is fine
        pass

    masked = MaskedEmbedding(Renamed(VOCAB, DIM), None)
    assert masked.weight.shape == (VOCAB, DIM)
