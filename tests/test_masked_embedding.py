"""Masked decoder embeddings (SPEC §6): ``mask_embeddings`` and the ``MaskedEmbedding`` wrapper.

The gradient routing of the full objective is in tests/test_embedding_gradient_routing.py.
"""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from advmask.checks import set_value_checks
from advmask.embedding import MaskedEmbedding, mask_embeddings
from advmask.maskers import UniformMasker

from ._embedding_helpers import DIM, UNK, VOCAB, adversary, batch, setup

# --- the pure function --------------------------------------------------------------------------


@given(st.integers(1, 4), st.integers(1, 6), st.integers(0, 2**16), st.booleans())
def test_two_product_form_is_exact_at_zero_and_one(batch_size, length, seed, with_fill) -> None:
    generator = torch.Generator().manual_seed(seed)
    # Large embeddings and a small fill: e + m (fill - e) would give 0 instead of fill.
    embedded = 1e8 * torch.randn(batch_size, length, DIM, generator=generator)
    fill = 0.1 * torch.randn(DIM, generator=generator) if with_fill else None
    mask = (torch.rand(batch_size, length, generator=generator) < 0.5).float()
    out = mask_embeddings(embedded, mask, fill)
    dropped = mask.bool()
    expected_fill = fill.expand_as(embedded) if with_fill else torch.zeros_like(embedded)
    assert torch.equal(out[dropped], expected_fill[dropped])
    assert torch.equal(out[~dropped], embedded[~dropped])


def test_gradients_match_spec() -> None:
    # SPEC P6.2: dL/dm_t = <g_t, fill - e_t>, dL/de_t = (1 - m_t) g_t, dL/dfill = sum_t m_t g_t.
    generator = torch.Generator().manual_seed(0)
    embedded = torch.randn(3, 4, DIM, dtype=torch.float64, generator=generator)
    mask = (torch.rand(3, 4, generator=generator) < 0.5).double()
    fill = torch.randn(DIM, dtype=torch.float64, generator=generator)
    g = torch.randn(3, 4, DIM, dtype=torch.float64, generator=generator)
    inputs = [t.clone().requires_grad_(True) for t in (embedded, mask, fill)]
    d_embedded, d_mask, d_fill = torch.autograd.grad(mask_embeddings(*inputs), inputs, g)
    torch.testing.assert_close(d_mask, (g * (fill - embedded)).sum(-1), rtol=1e-10, atol=0)
    torch.testing.assert_close(d_embedded, (1 - mask).unsqueeze(-1) * g, rtol=1e-10, atol=0)
    torch.testing.assert_close(d_fill, (mask.unsqueeze(-1) * g).sum((0, 1)), rtol=1e-10, atol=0)
    soft = torch.rand(3, 4, dtype=torch.float64, generator=generator).requires_grad_(True)
    assert torch.autograd.gradcheck(mask_embeddings, (inputs[0], soft, inputs[2]))
    zero_inputs = (inputs[0], soft)
    assert torch.autograd.gradcheck(lambda e, m: mask_embeddings(e, m, None), zero_inputs)


@pytest.mark.parametrize(
    ("args", "error", "words"),
    [
        ((torch.zeros(2, 3), torch.zeros(2, 3)), ValueError, ["embedded", "(2, 3)"]),
        ((torch.zeros(2, 3, 4), torch.zeros(2, 4)), ValueError, ["drop_mask", "(2, 4)"]),
        ((torch.zeros(2, 3, 4), torch.zeros(2, 3), torch.zeros(5)), ValueError, ["fill", "(5,)"]),
        (
            (torch.zeros(2, 3, 4), torch.zeros(2, 3, dtype=torch.bool)),
            TypeError,
            ["drop_mask", "bool"],
        ),
    ],
)
def test_mask_embeddings_bad_input(args, error, words) -> None:
    with pytest.raises(error) as info:
        mask_embeddings(*args)
    for word in words:
        assert word in str(info.value)


# --- the wrapper --------------------------------------------------------------------------------


def test_token_fill_equals_replacing_the_token_id() -> None:
    # SPEC P6.1, with the adversary's hard mask in training mode.
    masked, _ = setup(adversary(), fill="token")
    tokens, lengths = batch([6, 3, 5])
    out = masked(tokens, lengths)
    drop = masked.last_output.mask.detach().bool()
    assert drop.any()
    assert torch.equal(out, masked.embed(torch.where(drop, UNK, tokens)))


@pytest.mark.parametrize("fill", ["zero", "token", "learned"])
def test_rate_zero_reproduces_the_unmasked_model(fill) -> None:
    # SPEC P6.4
    for masker in (adversary(rate=0.0), UniformMasker(0.0)):
        masked, _ = setup(masker.double(), fill=fill)
        tokens, lengths = batch([6, 3, 5])
        assert torch.equal(masked(tokens, lengths), masked.embed(tokens))


@pytest.mark.parametrize("fill", ["zero", "token", "learned"])
def test_outputs_do_not_depend_on_the_dropped_token(fill) -> None:
    # SPEC P6.5: with the mask held fixed, the identity of a dropped token changes nothing
    # downstream (bitwise). The uniform masker's choice does not read the tokens.
    masked, decoder = setup(UniformMasker(0.5), fill=fill)
    tokens, lengths = batch([7, 4, 6])
    torch.manual_seed(3)
    logits = decoder(masked(tokens, lengths))
    drop = masked.last_output.mask.bool()
    replaced = torch.where(drop, (tokens + 5) % (VOCAB - 2) + 2, tokens)
    assert not torch.equal(replaced, tokens)
    torch.manual_seed(3)
    assert torch.equal(decoder(masked(replaced, lengths)), logits)


def test_eval_returns_the_embedding_untouched_and_does_not_call_the_masker() -> None:
    calls = []

    class Spy(UniformMasker):
        def forward(self, *args, **kwargs):
            calls.append(1)
            return super().forward(*args, **kwargs)

    masked, _ = setup(Spy(0.5), fill="learned")
    tokens, lengths = batch([6, 3])
    masked(tokens, lengths)
    assert masked.last_output is not None and calls == [1]
    masked.eval()
    assert torch.equal(masked(tokens, lengths), masked.embed(tokens))
    assert calls == [1] and masked.last_output is None
    assert float(masked.regularizer) == 0.0


def test_regularizer_property() -> None:
    masked, _ = setup(adversary(kl_weight=2.0))
    assert float(masked.regularizer.detach()) == 0.0  # before any call
    tokens, lengths = batch([6, 3])
    masked(tokens, lengths)
    assert masked.regularizer is masked.last_output.regularizer
    assert float(masked.regularizer.detach()) > 0


def test_lengths_inferred_from_padding() -> None:
    masked, _ = setup(UniformMasker(1.0))
    tokens = torch.tensor([[5, 0, 6, 7, 0, 0], [5, 6, 7, 8, 9, 10], [0, 0, 0, 0, 0, 0]])
    masked(tokens)
    out = masked.last_output
    # Trailing padding excluded from the lengths, inner padding protected: rate 1 drops
    # exactly the non-padding tokens.
    assert torch.equal(out.mask.bool(), tokens != 0)
    no_padding_id = MaskedEmbedding(nn.Embedding(VOCAB, DIM), UniformMasker(1.0))
    with pytest.warns(UserWarning, match="no pad id is known"):
        no_padding_id(tokens)
    assert torch.all(no_padding_id.last_output.mask == 1)


def test_passthroughs_and_weight_tying() -> None:
    masked, _ = setup(UniformMasker(0.5))
    assert masked.weight is masked.weight
    assert (masked.num_embeddings, masked.embedding_dim, masked.padding_idx) == (VOCAB, DIM, 0)
    head = nn.Linear(DIM, VOCAB, bias=False).double()
    head.weight = masked.weight  # tying through the wrapper
    assert head.weight is masked.weight


def test_learned_fill_gets_the_sum_of_dropped_gradients() -> None:
    masked, _ = setup(UniformMasker(0.5), fill="learned")
    tokens, lengths = batch([6, 3, 5])
    out = masked(tokens, lengths)
    g = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, masked.drop_vector, g)
    mask = masked.last_output.mask.double().unsqueeze(-1)
    torch.testing.assert_close(grad, (mask * g).sum((0, 1)), rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda: MaskedEmbedding(nn.Linear(2, 2), None), TypeError, ["embedding", "Linear"]),
        (lambda: MaskedEmbedding(nn.Embedding(4, 2), "uniform"), TypeError, ["masker", "str"]),
        (
            lambda: MaskedEmbedding(nn.Embedding(4, 2), None, fill="mask"),
            ValueError,
            ["fill", "'mask'"],
        ),
        (
            lambda: MaskedEmbedding(nn.Embedding(4, 2), None, fill="token"),
            ValueError,
            ["fill_id", "None"],
        ),
        (
            lambda: MaskedEmbedding(nn.Embedding(4, 2), None, fill="token", fill_id=4),
            ValueError,
            ["fill_id", "4"],
        ),
    ],
)
def test_wrapper_bad_arguments(call, error, words) -> None:
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize(
    ("bad_id", "position"), [(VOCAB, (1, 2)), (VOCAB + 40, (0, 0)), (-1, (1, 3))]
)
def test_out_of_vocabulary_ids_name_the_id_position_and_vocabulary(training, bad_id, position):
    # torch's own error is "IndexError: index out of range in self", naming nothing.
    masked = MaskedEmbedding(nn.Embedding(VOCAB, DIM), UniformMasker(rate=0.5)).train(training)
    tokens = torch.tensor([[2, 3, 4, 5], [6, 7, 8, 9]])
    tokens[position] = bad_id
    with pytest.raises(ValueError) as info:
        masked(tokens, torch.tensor([4, 4]))
    message = str(info.value)
    assert "\n" not in message
    assert f"[0, {VOCAB})" in message and f"got {bad_id} at position {position}" in message


def test_out_of_vocabulary_check_is_a_skippable_value_check() -> None:
    # Value checks are off under torch.compile, when switched off for the wrapper
    # (validate_args=False) and, by default, when switched off globally: then the embedding's
    # own error surfaces, and no host sync is spent on the check.
    masked = MaskedEmbedding(nn.Embedding(VOCAB, DIM), None, validate_args=False)
    with pytest.raises(IndexError):
        masked(torch.tensor([[2, VOCAB]]))
    set_value_checks(False)
    try:
        with pytest.raises(IndexError):
            MaskedEmbedding(nn.Embedding(VOCAB, DIM), None)(torch.tensor([[2, VOCAB]]))
        # An explicit validate_args=True decides for the wrapper, whatever the default.
        checked = MaskedEmbedding(nn.Embedding(VOCAB, DIM), None, validate_args=True)
        with pytest.raises(ValueError, match=f"got {VOCAB} at position"):
            checked(torch.tensor([[2, VOCAB]]))
    finally:
        set_value_checks(True)
    with pytest.raises(TypeError, match="validate_args must be a bool or None, got 1"):
        MaskedEmbedding(nn.Embedding(VOCAB, DIM), None, validate_args=1)


def test_unchecked_path_skips_only_the_id_check(monkeypatch) -> None:
    # A caller that checked the ids already (SequenceVAE, with its lengths, in one host read)
    # calls the unchecked path and must not pay a second sync; the masker is still called
    # and checks what it checks.
    import advmask.embedding

    checked = []
    monkeypatch.setattr(advmask.embedding, "check_ids", lambda *args: checked.append(args))
    masked, _ = setup(UniformMasker(rate=1.0))
    tokens, lengths = batch([4, 2])
    masked(tokens, lengths)
    assert len(checked) == 1
    out = masked._embed_and_mask(tokens, lengths, None)
    assert len(checked) == 1
    assert masked.last_output is not None and torch.all(out[masked.last_output.mask.bool()] == 0)
    with pytest.raises(ValueError, match=r"lengths must be in \[0, T=5\]"):
        masked._embed_and_mask(tokens, torch.tensor([6, 2]), None)


def test_the_removed_ids_checked_is_refused_naming_validate_args() -> None:
    masked, _ = setup(UniformMasker(rate=1.0))
    tokens, lengths = batch([4, 2])
    with pytest.raises(TypeError, match=r"ids_checked.*validate_args=False"):
        masked(tokens, lengths, ids_checked=True)


@pytest.mark.parametrize("fill", ["zero", "token", "learned"])
def test_drop_is_what_a_training_call_does_with_the_maskers_mask(fill) -> None:
    masked, _ = setup(UniformMasker(rate=0.5), fill=fill)
    if fill == "learned":
        with torch.no_grad():
            masked.drop_vector.normal_()
    tokens, lengths = batch([5, 3, 4])
    trained = masked.train()(tokens, lengths)
    mask = masked.last_output.mask
    assert torch.equal(masked.drop(masked.embed(tokens), mask), trained)
    # In eval mode too, and without calling the masker.
    masked.eval()
    assert torch.equal(masked.drop(masked.embed(tokens), mask), trained)
    assert masked.last_output is not None  # drop() leaves the last training output alone


def test_a_wrapper_copies_after_a_training_call_without_its_last_output() -> None:
    import copy
    import pickle

    masked, _ = setup(adversary(), fill="learned")
    tokens, lengths = batch([5, 3])
    masked.train()(tokens, lengths).sum().backward()
    assert masked.last_output.mask.grad_fn is not None
    for twin in (copy.deepcopy(masked), pickle.loads(pickle.dumps(masked))):
        assert twin.last_output is None and masked.last_output is not None
        assert torch.equal(twin.drop_vector, masked.drop_vector)
        assert twin.drop_vector is not masked.drop_vector


def test_a_state_dict_of_the_bare_embedding_loads_into_the_wrapper() -> None:
    # The wrapper keeps the plain model's keys ("wte.weight", a decoder's "embedding.weight"):
    # a checkpoint saved before the embedding was wrapped loads into the masked model, and
    # the masked model's loads into the plain one (only the masker's keys are extra).
    torch.manual_seed(0)
    source = nn.Sequential(nn.Embedding(VOCAB, DIM, padding_idx=0), nn.Linear(DIM, VOCAB))
    old = source.state_dict()
    assert "0.weight" in old
    target = nn.Sequential(nn.Embedding(VOCAB, DIM, padding_idx=0), nn.Linear(DIM, VOCAB))
    from advmask.adapters import mask_input_embeddings

    wrapper = mask_input_embeddings(target, UniformMasker(rate=0.5), fill="learned", attribute="0")
    missing, unexpected = target.load_state_dict(old, strict=False)
    assert unexpected == [] and missing == ["0.drop_vector"]
    assert torch.equal(wrapper.weight, source[0].weight)
    new = target.state_dict()
    assert list(new) == ["0.weight", "0.drop_vector", "1.weight", "1.bias"]
    plain = nn.Sequential(nn.Embedding(VOCAB, DIM, padding_idx=0), nn.Linear(DIM, VOCAB))
    missing, unexpected = plain.load_state_dict(new, strict=False)
    assert missing == [] and unexpected == ["0.drop_vector"]
    assert torch.equal(plain[0].weight, wrapper.weight)


def test_a_state_dict_of_the_earlier_wrapper_layout_loads() -> None:
    # Until the wrapper became an nn.Embedding it kept the embedding as a child:
    # "0.embedding.weight". Such checkpoints load; a current key given with them is not
    # overwritten by the renamed one (strict loading reports the old key as unexpected).
    from advmask.adapters import mask_input_embeddings

    torch.manual_seed(0)
    target = nn.Sequential(nn.Embedding(VOCAB, DIM, padding_idx=0), nn.Linear(DIM, VOCAB))
    wrapper = mask_input_embeddings(target, UniformMasker(rate=0.5), attribute="0")
    earlier = {
        ("0.embedding.weight" if k == "0.weight" else k): v.clone() * 2
        for k, v in target.state_dict().items()
    }
    target.load_state_dict(earlier)
    assert torch.equal(wrapper.weight, earlier["0.embedding.weight"])
    both = {**target.state_dict(), "0.embedding.weight": torch.zeros(VOCAB, DIM)}
    with pytest.raises(RuntimeError, match=r'Unexpected key\(s\) in state_dict: "0.embedding'):
        target.load_state_dict(both)
    assert torch.equal(wrapper.weight, earlier["0.embedding.weight"])
