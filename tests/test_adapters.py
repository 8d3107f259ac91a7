"""One adapter, four decoders: masking in training only, reversed gradients, padding kept.

Every test runs on the recipe's LSTM decoder, the Double-LSTM, the ``torch.nn`` causal
Transformer and a tiny randomly initialised Hugging Face GPT-2 (2 layers, width 32), each made
maskable by the same call, :func:`advmask.mask_input_embeddings`. Dropout is off in every
decoder, so that training and evaluation differ only by the masking.
"""

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from advmask import (
    AdversarialMasker,
    MaskedEmbedding,
    UniformMasker,
    mask_input_embeddings,
    unmask_input_embeddings,
)
from advmask.budget import num_to_drop
from advmask.seqvae.models import DoubleLSTMDecoder, LSTMDecoder, TransformerDecoder

PAD, BOS, EOS = 0, 1, 2
VOCAB, EMB, HID, LAT = 40, 16, 32, 4

# [BOS, words, EOS, PAD..]: 6, 3 and 1 words. The decoders read TOKENS[:, :-1].
WORDS = [[5, 6, 7, 8, 9, 10], [11, 12, 13], [14]]
TOKENS = nn.utils.rnn.pad_sequence(
    [torch.tensor([BOS, *w, EOS]) for w in WORDS], batch_first=True, padding_value=PAD
)
VALID_INPUTS = torch.tensor([1 + len(w) for w in WORDS])  # BOS + words (EOS is no input)


def expected_droppable(width: int) -> torch.Tensor:
    """(B, width) True at the word inputs: not BOS, not EOS, not padding."""
    steps = torch.arange(width)
    return (steps >= 1) & (steps < VALID_INPUTS[:, None])


# ---------------------------------------------------------------------------------------------
# The four decoders behind one interface: build with a seed, compute logits and a loss.


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], nn.Module]
    logits: Callable[[nn.Module], torch.Tensor]  # works masked (training) or not
    loss: Callable[[nn.Module], torch.Tensor]
    embedding_width: int  # positions the embedding sees per row


def advmask_case(cls: type[nn.Module]) -> Case:
    z = torch.randn(len(WORDS), LAT, generator=torch.Generator().manual_seed(3))
    inputs, targets = TOKENS[:, :-1], TOKENS[:, 1:]
    is_bos = torch.arange(inputs.shape[1]) == 0

    def build() -> nn.Module:
        options = {"num_heads": 2, "dropout": 0.0} if cls is TransformerDecoder else {}
        decoder = cls(VOCAB, EMB, HID, LAT, dropout_in=0.0, dropout_out=0.0, **options)
        # O(1) weights: the authors' U(-0.01, 0.01) makes the LSTMs almost blind to inputs.
        with torch.no_grad():
            for name, parameter in decoder.named_parameters():
                if "norm" not in name:
                    parameter.normal_(0.0, 0.3)
        return decoder

    def logits(decoder: nn.Module) -> torch.Tensor:
        if isinstance(decoder.embedding, MaskedEmbedding):
            # The caller embeds: lengths and the protected BOS are passed to the wrapper.
            embedded = decoder.embedding(inputs, VALID_INPUTS, protected=is_bos)
        else:
            embedded = decoder.embedding(inputs)
        return decoder(embedded, z)

    def loss(decoder: nn.Module) -> torch.Tensor:
        return nn.functional.cross_entropy(
            logits(decoder).transpose(1, 2), targets, ignore_index=PAD, reduction="sum"
        )

    return Case(cls.__name__, build, logits, loss, inputs.shape[1])


def gpt2_case() -> Case:
    transformers = pytest.importorskip("transformers")
    attention_mask = (TOKENS != PAD).long()
    labels = TOKENS.masked_fill(attention_mask == 0, -100)
    is_bos = torch.arange(TOKENS.shape[1]) == 0

    def build() -> nn.Module:
        config = transformers.GPT2Config(
            vocab_size=VOCAB,
            n_positions=16,
            n_embd=32,
            n_layer=2,
            n_head=2,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=BOS,
            eos_token_id=EOS,
            pad_token_id=PAD,
        )
        return transformers.GPT2LMHeadModel(config)

    def run(model: nn.Module) -> Any:
        embedding = model.get_input_embeddings()
        if not isinstance(embedding, MaskedEmbedding):
            return model(input_ids=TOKENS, attention_mask=attention_mask, labels=labels)
        # The model calls the wrapper with ids alone: tell it the valid inputs around the call.
        with embedding.valid_inputs(VALID_INPUTS, protected=is_bos, attention_mask=attention_mask):
            return model(input_ids=TOKENS, attention_mask=attention_mask, labels=labels)

    return Case(
        "GPT2LMHeadModel",
        build,
        lambda model: run(model).logits,
        lambda model: run(model).loss,
        TOKENS.shape[1],
    )


CASES = {
    "lstm": lambda: advmask_case(LSTMDecoder),
    "double-lstm": lambda: advmask_case(DoubleLSTMDecoder),
    "transformer": lambda: advmask_case(TransformerDecoder),
    "hf-gpt2": gpt2_case,
}


@pytest.fixture(params=sorted(CASES))
def case(request) -> Case:
    return CASES[request.param]()


def adversary(seed: int = 0, rate: float = 0.5) -> AdversarialMasker:
    torch.manual_seed(seed)
    return AdversarialMasker(VOCAB, rate=rate, embedding_dim=8, hidden_size=8)


def build(case: Case, masker: nn.Module | None, seed: int = 0) -> tuple[nn.Module, Any]:
    torch.manual_seed(seed)
    model = case.build()
    wrapper = None if masker is None else mask_input_embeddings(model, masker)
    return model, wrapper


# ---------------------------------------------------------------------------------------------
# Acceptance: masking changes the loss in training, not in eval; reversed adversary gradients


def test_masking_changes_the_loss_in_training_and_nothing_in_eval(case) -> None:
    plain, _ = build(case, None)
    model, wrapper = build(case, adversary())
    assert isinstance(wrapper, MaskedEmbedding)
    plain.train()
    model.train()
    loss = case.loss(model)
    assert wrapper.last_output is not None and int(wrapper.last_output.mask.sum()) > 0
    loss, plain_loss = float(loss.detach()), float(case.loss(plain).detach())
    assert abs(loss - plain_loss) > 1e-3  # float32 rounding of these sums is ~1e-5
    # Eval: the model's own switch reaches the wrapper, which returns the plain embedding.
    plain.eval()
    model.eval()
    with torch.no_grad():
        assert torch.equal(case.logits(model), case.logits(plain))  # bitwise
        assert torch.equal(case.loss(model), case.loss(plain))
    assert wrapper.last_output is None
    assert torch.equal(wrapper.regularizer, torch.zeros(()))


def test_the_adversary_receives_the_reversed_gradient_through_the_decoder(case) -> None:
    masker = adversary()
    model, wrapper = build(case, masker)
    model.train()
    adversary_params = list(masker.parameters())
    model_params = [p for p in model.parameters() if all(p is not q for q in adversary_params)]

    torch.manual_seed(7)  # the score noise: the same masks in both passes below
    loss = case.loss(model)
    regularizer = wrapper.regularizer
    reversed_grads = torch.autograd.grad(loss, adversary_params, retain_graph=True)
    joint_grads = torch.autograd.grad(loss + regularizer, adversary_params, retain_graph=True)
    regularizer_grads = torch.autograd.grad(regularizer, adversary_params, retain_graph=True)
    model_grads = torch.autograd.grad(loss, model_params, allow_unused=True)

    masker.reversal = nn.Identity()  # the same adversary without its gradient reversal
    torch.manual_seed(7)
    unreversed_loss = case.loss(model)
    assert torch.equal(unreversed_loss, loss)  # same forward pass
    plain_grads = torch.autograd.grad(unreversed_loss, adversary_params, retain_graph=True)
    unreversed_model_grads = torch.autograd.grad(unreversed_loss, model_params, allow_unused=True)

    assert sum(float(g.abs().sum()) for g in plain_grads) > 0  # the loss reaches the adversary
    for got, plain in zip(reversed_grads, plain_grads, strict=True):
        torch.testing.assert_close(got, -plain, rtol=1e-5, atol=1e-7)
    # The regulariser is outside the reversal; the model's own gradients are untouched by it.
    for joint, got, penalty in zip(joint_grads, reversed_grads, regularizer_grads, strict=True):
        torch.testing.assert_close(joint, got + penalty, rtol=1e-5, atol=1e-7)
    for got, want in zip(model_grads, unreversed_model_grads, strict=True):
        assert (got is None and want is None) or torch.equal(got, want)


def test_padding_and_the_start_token_are_never_dropped(case) -> None:
    model, wrapper = build(case, UniformMasker(rate=1.0))  # drops every droppable input
    model.train()
    case.loss(model)
    expected = expected_droppable(case.embedding_width)
    assert torch.equal(wrapper.last_output.mask.bool(), expected)
    # The adversary, at its largest rate, agrees.
    model, wrapper = build(case, adversary(rate=1.0))
    model.train()
    case.loss(model)
    assert torch.equal(wrapper.last_output.mask.detach().bool(), expected)


# ---------------------------------------------------------------------------------------------
# Hugging Face specifics


def tiny_gpt2(seed: int = 0) -> nn.Module:
    return build(gpt2_case(), None, seed)[0]


def test_hf_model_keeps_its_weight_tying_and_finds_the_embedding_itself() -> None:
    model = tiny_gpt2()
    original = model.get_input_embeddings()
    wrapper = mask_input_embeddings(model, adversary())
    assert model.get_input_embeddings() is wrapper and model.transformer.wte is wrapper
    assert wrapper.weight is original.weight
    assert model.lm_head.weight is wrapper.weight  # tied: one parameter, as before
    assert wrapper.pad_id == PAD  # from model.config.pad_token_id (GPT-2 has no padding_idx)
    names = {name for name, _ in model.named_parameters()}
    assert "transformer.wte.weight" in names  # the plain model's key
    assert any(name.startswith("transformer.wte.masker.") for name in names)


def test_hf_left_padding_is_kept_through_the_attention_mask() -> None:
    model = tiny_gpt2()
    wrapper = mask_input_embeddings(model, UniformMasker(rate=1.0))
    # Left padding, as for generation: padding first, then [BOS, words].
    input_ids = torch.tensor([[PAD, PAD, BOS, 5, 6], [BOS, 7, 8, 9, 10]])
    attention_mask = (input_ids != PAD).long()
    model.train()
    with wrapper.valid_inputs(attention_mask=attention_mask, protected=input_ids == BOS):
        model(input_ids=input_ids, attention_mask=attention_mask)
    assert wrapper.last_output.mask.tolist() == [[0, 0, 0, 1, 1], [0, 1, 1, 1, 1]]
    # Outside the block the context is gone: the padding id alone decides (BOS droppable).
    model(input_ids=input_ids, attention_mask=attention_mask)
    assert wrapper.last_output.mask.tolist() == [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]


def stock_gpt2() -> nn.Module:
    """A tiny GPT-2 whose config, like the stock ones, has no pad token."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=16, n_embd=32, n_layer=2, n_head=2,
        bos_token_id=BOS, eos_token_id=EOS,
    )  # fmt: skip
    assert config.pad_token_id is None
    return transformers.GPT2LMHeadModel(config)


def test_hf_model_without_a_pad_token_warns_once_that_padding_may_be_dropped() -> None:
    # GPT-2 batches are padded with some real token (often EOS); with no pad id known and no
    # positions given, the wrapper cannot tell padding from words and drops it like words.
    model = stock_gpt2().train()
    wrapper = mask_input_embeddings(model, UniformMasker(rate=1.0))
    assert wrapper.pad_id is None
    input_ids = torch.tensor([[BOS, 5, 6, EOS, EOS], [BOS, 7, 8, 9, 10]])
    attention_mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    with pytest.warns(UserWarning, match=r"GPT2LMHeadModel.*no pad_token_id.*valid_inputs") as got:
        model(input_ids=input_ids, attention_mask=attention_mask)
    assert len(got) == 1
    assert wrapper.last_output.mask[0, 3:].tolist() == [1, 1]  # the padding was dropped
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(input_ids=input_ids, attention_mask=attention_mask)  # once per wrapper
        # the explicit routes never warn: the attention mask protects the padding
        quiet_model = stock_gpt2().train()
        quiet = mask_input_embeddings(quiet_model, UniformMasker(rate=1.0))
        with quiet.valid_inputs(attention_mask=attention_mask):
            quiet_model(input_ids=input_ids, attention_mask=attention_mask)
        assert quiet.last_output.mask[0, 3:].tolist() == [0, 0]
        with quiet.valid_inputs():  # explicitly: no padding in this batch
            quiet_model(input_ids=input_ids[1:])
        explicit_model = stock_gpt2().train()
        mask_input_embeddings(explicit_model, UniformMasker(rate=1.0), pad_id=EOS)
        explicit_model(input_ids=input_ids, attention_mask=attention_mask)


def test_hf_inputs_embeds_route_uses_the_same_wrapper() -> None:
    model = tiny_gpt2()
    wrapper = mask_input_embeddings(model, UniformMasker(rate=1.0))
    model.train()
    lengths, is_bos = VALID_INPUTS, torch.arange(TOKENS.shape[1]) == 0
    inputs_embeds = wrapper(TOKENS, lengths, protected=is_bos)
    via_embeds = model(inputs_embeds=inputs_embeds, attention_mask=(TOKENS != PAD).long()).logits
    mask = wrapper.last_output.mask
    with wrapper.valid_inputs(lengths, protected=is_bos):
        via_ids = model(input_ids=TOKENS, attention_mask=(TOKENS != PAD).long()).logits
    assert torch.equal(wrapper.last_output.mask, mask)
    assert torch.equal(via_ids, via_embeds)


def test_unmask_restores_the_original_model_and_state_dict_keys() -> None:
    model = tiny_gpt2()
    keys = set(model.state_dict())
    original = model.get_input_embeddings()
    mask_input_embeddings(model, adversary())
    assert set(model.state_dict()) != keys
    assert unmask_input_embeddings(model) is original
    assert model.get_input_embeddings() is original and set(model.state_dict()) == keys
    assert model.lm_head.weight is original.weight
    with pytest.raises(ValueError, match=r"get_input_embeddings\(\).*is not masked"):
        unmask_input_embeddings(model)


# ---------------------------------------------------------------------------------------------
# Plain torch.nn models and errors


@given(
    lengths=st.lists(st.integers(0, 7), min_size=1, max_size=4),
    rate=st.sampled_from([0.0, 0.3, 0.5, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_padding_ids_are_never_dropped_when_the_model_gives_no_lengths(lengths, rate, seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Embedding(VOCAB, 4, padding_idx=PAD), nn.Linear(4, VOCAB))
    wrapper = mask_input_embeddings(
        model, AdversarialMasker(VOCAB, rate, 1.0, embedding_dim=4, hidden_size=4), attribute="0"
    )
    lengths = torch.tensor(lengths)
    positions = torch.arange(7)
    tokens = torch.where(
        positions < lengths[:, None], torch.randint(3, VOCAB, (len(lengths), 7)), PAD
    )
    model(tokens)  # nn.Sequential calls the wrapper with ids alone
    mask = wrapper.last_output.mask.detach()
    assert torch.all(mask[tokens == PAD] == 0)
    assert torch.equal(mask.sum(1).long(), num_to_drop(rate, lengths))


def test_advmask_decoders_are_found_by_their_embedding_attribute() -> None:
    decoder = LSTMDecoder(VOCAB, EMB, HID, LAT)
    original = decoder.embedding
    wrapper = mask_input_embeddings(decoder, None, fill="token", fill_id=3)
    assert decoder.embedding is wrapper and wrapper.weight is original.weight
    assert wrapper.pad_id == PAD and wrapper.fill == "token" and wrapper.fill_id == 3


class NoEmbedding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 2)


class HFNotImplemented(NoEmbedding):
    def get_input_embeddings(self) -> nn.Module:
        raise NotImplementedError

    def set_input_embeddings(self, value: nn.Module) -> None:
        raise NotImplementedError


@pytest.mark.parametrize(
    ("make", "kwargs", "error", "match"),
    [
        (NoEmbedding, {}, ValueError, "NoEmbedding.*no input embedding.*attribute="),
        (HFNotImplemented, {}, ValueError, "HFNotImplemented.*no input embedding"),
        (NoEmbedding, {"attribute": "linear"}, TypeError, "attribute='linear'.*got Linear"),
        (NoEmbedding, {"attribute": "wte"}, ValueError, "attribute='wte' does not name"),
        (NoEmbedding, {"attribute": "a.b"}, ValueError, "attribute='a.b' does not name"),
        (NoEmbedding, {"attribute": "a..b"}, ValueError, "dotted path.*'a..b'"),
        (NoEmbedding, {"attribute": 3}, TypeError, "attribute must be a str or None, got 3"),
        (lambda: "model", {}, TypeError, "model must be an nn.Module, got str"),
        (lambda: LSTMDecoder(VOCAB, EMB, HID, LAT), {"pad_id": 1.5}, TypeError, "pad_id.*1.5"),
        (
            lambda: LSTMDecoder(VOCAB, EMB, HID, LAT),
            {"fill": "token"},
            ValueError,
            "fill_id must be an id",
        ),
    ],
)
def test_errors_name_the_argument_and_the_value(make, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        mask_input_embeddings(make(), None, **kwargs)


def test_masking_twice_is_refused() -> None:
    decoder = LSTMDecoder(VOCAB, EMB, HID, LAT)
    mask_input_embeddings(decoder, None)
    with pytest.raises(ValueError, match=r"attribute='embedding'.*already masked"):
        mask_input_embeddings(decoder, None)
    unmask_input_embeddings(decoder)
    mask_input_embeddings(decoder, None)  # fine again


def test_valid_inputs_checks_its_arguments_and_restores_the_outer_context() -> None:
    wrapper = MaskedEmbedding(nn.Embedding(VOCAB, 4), UniformMasker(rate=1.0))
    tokens = torch.full((1, 4), 5)
    with (
        pytest.raises(TypeError, match=r"protected must be a bool tensor, got torch\.int64"),
        wrapper.valid_inputs(protected=torch.zeros(4, dtype=torch.int64)),
    ):
        pass
    with (
        pytest.raises(ValueError, match="lengths must have 1 dimensions"),
        wrapper.valid_inputs(torch.tensor([[2]])),
    ):
        pass
    with (
        wrapper.valid_inputs(attention_mask=torch.ones(2, 4, dtype=torch.long)),
        pytest.raises(
            ValueError,
            match=r"attention_mask must have one row per row of the token ids \(1\), got shape "
            r"\(2, 4\)",
        ),
    ):
        wrapper(tokens)
    with wrapper.valid_inputs(torch.tensor([3])):
        with wrapper.valid_inputs(torch.tensor([1])):
            wrapper(tokens)
            assert wrapper.last_output.mask.tolist() == [[1, 0, 0, 0]]
        wrapper(tokens)
        assert wrapper.last_output.mask.tolist() == [[1, 1, 1, 0]]
        wrapper(tokens, torch.tensor([2]))  # explicit lengths win over the block's
        assert wrapper.last_output.mask.tolist() == [[1, 1, 0, 0]]
    with pytest.warns(UserWarning, match="no pad id is known"):  # no padding_idx, no pad_id
        wrapper(tokens)
    assert wrapper.last_output.mask.tolist() == [[1, 1, 1, 1]]
