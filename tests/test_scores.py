"""Score networks of the adversary (SPEC §1.2, P1.1, P1.5)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from advmask.scores import (
    SCORE_NETWORKS,
    GRUScoreNetwork,
    LSTMScoreNetwork,
    TransformerScoreNetwork,
    build_score_network,
)

VOCAB = 23

# Every architecture, including the packed bidirectional LSTM.
NETWORKS = {
    "lstm": lambda std: LSTMScoreNetwork(VOCAB, 6, 8, std=std),
    "lstm-bidirectional": lambda std: LSTMScoreNetwork(VOCAB, 6, 8, std=std, bidirectional=True),
    "gru": lambda std: GRUScoreNetwork(VOCAB, 6, 8, std=std),
    "gru-bidirectional": lambda std: GRUScoreNetwork(VOCAB, 6, 8, std=std, bidirectional=True),
    "transformer": lambda std: TransformerScoreNetwork(VOCAB, 6, 8, std=std, max_length=40),
}


def make(name: str, std: str = "softplus") -> nn.Module:
    torch.manual_seed(0)
    return NETWORKS[name](std).to(torch.float64)


def batch(lengths: list[int], width: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, VOCAB, (len(lengths), width), generator=generator)
    lengths_t = torch.tensor(lengths)
    tokens[torch.arange(width) >= lengths_t.unsqueeze(1)] = 0
    return tokens, lengths_t


@pytest.mark.parametrize("name", NETWORKS)
@pytest.mark.parametrize("std", ["softplus", "logvar", "fixed"])
def test_shapes_and_positive_std(name, std) -> None:
    net = make(name, std)
    tokens, lengths = batch([5, 0, 1, 7], 7)
    mean, scale = net(tokens, lengths)
    assert mean.shape == scale.shape == (4, 7)
    assert mean.dtype == torch.float64
    assert bool(torch.isfinite(mean).all()) and bool((scale > 0).all())
    if std == "fixed":
        assert torch.equal(scale, torch.ones_like(scale))


@pytest.mark.parametrize("name", NETWORKS)
@settings(max_examples=10)
@given(
    st.lists(st.integers(0, 9), min_size=1, max_size=4),
    st.integers(0, 6),
    st.integers(0, 2**16),
)
def test_scores_ignore_padding_length_and_padding_ids(name, lengths, extra, seed) -> None:
    # SPEC P1.5: extra padding columns and arbitrary ids at padding positions change nothing
    # at valid positions (not bitwise: matmul blocking depends on T).
    net = make(name)
    tokens, lengths_t = batch(lengths, max(lengths) + 1, seed)
    mean, std = net(tokens, lengths_t)
    generator = torch.Generator().manual_seed(seed + 1)
    width = tokens.shape[1] + extra
    noisy = torch.randint(0, VOCAB, (len(lengths), width), generator=generator)
    valid = torch.arange(width) < lengths_t.unsqueeze(1)
    noisy[:, : tokens.shape[1]] = torch.where(
        valid[:, : tokens.shape[1]], tokens, noisy[:, : tokens.shape[1]]
    )
    mean2, std2 = net(noisy, lengths_t)
    keep = valid[:, : tokens.shape[1]]
    torch.testing.assert_close(mean2[:, : tokens.shape[1]][keep], mean[keep], rtol=0, atol=1e-12)
    torch.testing.assert_close(std2[:, : tokens.shape[1]][keep], std[keep], rtol=0, atol=1e-12)
    # Each row alone, unpadded, gives the same scores as inside the batch.
    for row, length in enumerate(lengths):
        if length:
            alone = net(tokens[row : row + 1, :length], lengths_t[row : row + 1])[0]
            torch.testing.assert_close(alone[0], mean[row, :length], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_unidirectional_networks_are_causal(name) -> None:
    net = make(name)
    tokens, lengths = batch([8], 8)
    changed = tokens.clone()
    changed[0, 5] = (changed[0, 5] % (VOCAB - 1)) + 1
    before, after = net(tokens, lengths)[0], net(changed, lengths)[0]
    torch.testing.assert_close(after[0, :5], before[0, :5], rtol=0, atol=0)
    assert not torch.allclose(after[0, 5:], before[0, 5:])


@pytest.mark.parametrize("name", ["lstm-bidirectional", "transformer"])
def test_bidirectional_networks_see_the_future(name) -> None:
    net = make(name)
    tokens, lengths = batch([8], 8)
    changed = tokens.clone()
    changed[0, 5] = (changed[0, 5] % (VOCAB - 1)) + 1
    assert not torch.allclose(net(changed, lengths)[0][0, :5], net(tokens, lengths)[0][0, :5])


@pytest.mark.parametrize("name", NETWORKS)
def test_precomputed_embeddings_replace_the_own_embedding(name) -> None:
    net = make(name)
    tokens, lengths = batch([4, 6], 6)
    embedded = net.embedding(tokens).detach().requires_grad_(True)
    from_tokens = net(tokens, lengths)
    from_embeddings = net(None, lengths, embeddings=embedded)
    for a, b in zip(from_tokens, from_embeddings, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    (grad,) = torch.autograd.grad(from_embeddings[0].sum(), embedded)
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["lstm", "lstm-bidirectional", "transformer"])
def test_gradcheck_through_the_network(name) -> None:
    net = make(name)
    tokens, lengths = batch([3, 2], 3)
    embedded = net.embedding(tokens).detach().requires_grad_(True)

    def scores(e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return net(None, lengths, embeddings=e)

    assert torch.autograd.gradcheck(scores, (embedded,))


def test_owns_its_embedding_and_starts_at_unit_std() -> None:
    net = LSTMScoreNetwork(VOCAB, 6, 8, padding_idx=0)
    assert isinstance(net.embedding, nn.Embedding)
    assert net.embedding.padding_idx == 0
    assert LSTMScoreNetwork(VOCAB, 6, 8).embedding.padding_idx is None  # no padding id
    # The std channel starts at exactly 1 when the head's weights are zero.
    with torch.no_grad():
        net.head.weight.zero_()
    tokens, lengths = batch([3], 3)
    mean, std = net(tokens, lengths)
    assert torch.all(mean == 0)
    torch.testing.assert_close(std, torch.ones_like(std), rtol=0, atol=1e-6)


def test_registry_and_builder() -> None:
    assert set(SCORE_NETWORKS) == {"lstm", "gru", "transformer"}
    net = build_score_network("gru", VOCAB, embedding_dim=4, hidden_size=6, std="fixed")
    assert isinstance(net, GRUScoreNetwork)
    assert net.head.out_features == 1 and net.head.bias is None
    with pytest.raises(ValueError, match="'cnn'"):
        build_score_network("cnn", VOCAB)
    with pytest.raises(ValueError, match="'gru' takes no setting 'max_length'"):
        build_score_network("gru", VOCAB, max_length=600)
    # The Transformer's position table is sized by max_length (it refused 513 tokens at 512).
    net = build_score_network("transformer", VOCAB, embedding_dim=4, hidden_size=8, max_length=513)
    tokens, lengths = batch([513], 513)
    assert net(tokens, lengths)[0].shape == (1, 513)


def test_empty_batches() -> None:
    net = make("lstm")
    for shape in ((0, 5), (3, 0)):
        mean, std = net(
            torch.zeros(shape, dtype=torch.int64), torch.zeros(shape[0], dtype=torch.int64)
        )
        assert mean.shape == std.shape == shape


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda: LSTMScoreNetwork(0, 4, 4), ValueError, ["vocab_size", "0"]),
        (lambda: LSTMScoreNetwork(VOCAB, 4, 4, std="exp"), ValueError, ["std", "'exp'"]),
        (
            lambda: LSTMScoreNetwork(VOCAB, 4, 5, bidirectional=True),
            ValueError,
            ["hidden_size", "5"],
        ),
        (
            lambda: LSTMScoreNetwork(VOCAB, 4, 4, padding_idx=VOCAB),
            ValueError,
            ["padding_idx", "23"],
        ),
        (
            lambda: TransformerScoreNetwork(VOCAB, 4, 6, num_heads=4),
            ValueError,
            ["hidden_size", "6"],
        ),
        (
            lambda: make("lstm")(torch.zeros(2, 3), torch.tensor([1, 2])),
            TypeError,
            ["tokens", "float32"],
        ),
        (
            lambda: make("lstm")(
                torch.zeros(2, 3, dtype=torch.int64) + VOCAB, torch.tensor([1, 2])
            ),
            ValueError,
            ["tokens", "23"],
        ),
        (
            lambda: make("lstm")(torch.zeros(2, 3, dtype=torch.int64), torch.tensor([1, 4])),
            ValueError,
            ["lengths", "4"],
        ),
        (
            lambda: make("lstm")(None, torch.tensor([1]), embeddings=torch.zeros(1, 3, 5)),
            ValueError,
            ["embeddings", "(1, 3, 5)"],
        ),
        (
            lambda: make("transformer")(torch.ones(1, 41, dtype=torch.int64), torch.tensor([41])),
            ValueError,
            ["max_length", "41"],
        ),
    ],
)
def test_bad_input_names_argument_and_value(call, error, words) -> None:
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value)
