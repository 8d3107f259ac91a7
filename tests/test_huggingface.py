"""A Hugging Face model with advmask saves, reloads, resizes and trains like one without.

Tiny randomly initialised models built from their configs (no download): a GPT-2 (causal LM), a
T5 (encoder-decoder, one embedding shared by both sides) and a BERT (masked LM).
"""

from __future__ import annotations

import copy
import pickle
import warnings

import pytest
import torch
from torch import nn

from advmask import (
    AdversarialMasker,
    MaskedEmbedding,
    UniformMasker,
    mask_input_embeddings,
    unmask_input_embeddings,
)
from advmask.budget import num_to_drop
from advmask.reversal import dann_schedule

transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

VOCAB, PAD = 50, 0


@pytest.fixture(autouse=True)
def _quiet_transformers():
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # "some weights were not used" is expected
    yield
    transformers.logging.set_verbosity(verbosity)


def gpt2(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=32, n_embd=16, n_layer=1, n_head=2, pad_token_id=PAD
    )
    return transformers.GPT2LMHeadModel(config)


def adversary(rate: float = 0.5, **kwargs) -> AdversarialMasker:
    torch.manual_seed(1)
    return AdversarialMasker(VOCAB, rate, embedding_dim=8, hidden_size=8, **kwargs)


def batch(seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention_mask), (3, 9), right padding of 0, 3 and 6 positions."""
    lengths = torch.tensor([9, 6, 3])
    ids = torch.randint(1, VOCAB, (3, 9), generator=torch.Generator().manual_seed(seed))
    attention_mask = (torch.arange(9) < lengths[:, None]).long()
    return ids.masked_fill(attention_mask == 0, PAD), attention_mask


def train_step(model: nn.Module, wrapper: MaskedEmbedding, ids, attention_mask) -> torch.Tensor:
    model.train()
    with wrapper.valid_inputs(attention_mask=attention_mask):
        out = model(input_ids=ids, attention_mask=attention_mask, labels=ids)
    loss = out.loss + wrapper.regularizer
    loss.backward()
    return loss


# --- checkpoints: the plain model's keys, safetensors, strict round trips ----------------------


def test_save_pretrained_reloads_as_a_plain_model_with_the_same_eval_logits(tmp_path) -> None:
    model = gpt2()
    wrapper = mask_input_embeddings(model, adversary(grl_scale=dann_schedule(100)))
    ids, attention_mask = batch()
    train_step(model, wrapper, ids, attention_mask)
    model.save_pretrained(tmp_path)  # safetensors
    assert (tmp_path / "model.safetensors").is_file()
    plain, info = transformers.GPT2LMHeadModel.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == set() or info["missing_keys"] == []
    assert all(key.startswith("transformer.wte.masker.") for key in info["unexpected_keys"])
    assert info["unexpected_keys"]
    model.eval()
    plain.eval()
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=attention_mask).logits
        assert torch.equal(plain(input_ids=ids, attention_mask=attention_mask).logits, expected)
    assert plain.lm_head.weight is plain.transformer.wte.weight  # still tied


def test_the_state_dict_is_tensors_under_the_plain_keys() -> None:
    plain_keys = list(gpt2().state_dict())
    model = gpt2()
    mask_input_embeddings(model, adversary(grl_scale=dann_schedule(10)), fill="learned")
    state = model.state_dict()
    assert [key for key in state if ".masker." not in key and "drop_vector" not in key] == (
        plain_keys
    )
    assert all(isinstance(value, torch.Tensor) for value in state.values())
    safetensors_torch.save(
        {key: value.contiguous() for key, value in state.items() if key != "lm_head.weight"}
    )


def test_eval_mode_equals_the_unwrapped_model() -> None:
    plain, model = gpt2(), gpt2()
    wrapper = mask_input_embeddings(model, adversary())
    ids, attention_mask = batch()
    plain.eval()
    model.eval()
    with torch.no_grad(), wrapper.valid_inputs(attention_mask=attention_mask):
        got = model(input_ids=ids, attention_mask=attention_mask).logits
    assert torch.equal(got, plain(input_ids=ids, attention_mask=attention_mask).logits)
    assert wrapper.last_output is None and float(wrapper.regularizer) == 0.0


def test_a_strict_state_dict_round_trip_restores_the_adversary() -> None:
    model = gpt2()
    wrapper = mask_input_embeddings(model, adversary(grl_scale=dann_schedule(100)))
    ids, attention_mask = batch()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):
        optimizer.zero_grad()
        train_step(model, wrapper, ids, attention_mask)
        optimizer.step()
    state = model.state_dict()
    other = gpt2(seed=5)
    other_wrapper = mask_input_embeddings(other, adversary(grl_scale=dann_schedule(100)))
    assert other_wrapper.masker.reversal.step == 0
    other.load_state_dict(state, strict=True)
    assert other_wrapper.masker.reversal.step == 3
    for key, value in state.items():
        assert torch.equal(other.state_dict()[key], value), key
    # The same draws give the same masks: the adversary is restored, not just its weights.
    torch.manual_seed(7)
    train_step(model, wrapper, ids, attention_mask)
    torch.manual_seed(7)
    train_step(other, other_wrapper, ids, attention_mask)
    assert torch.equal(other_wrapper.last_output.mask, wrapper.last_output.mask)
    assert torch.equal(other_wrapper.regularizer, wrapper.regularizer)


def test_pickle_and_deepcopy_of_a_model_with_a_scheduled_adversary() -> None:
    model = gpt2()
    wrapper = mask_input_embeddings(model, adversary(grl_scale=dann_schedule(100)))
    train_step(model, wrapper, *batch())
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        twin_wrapper = twin.get_input_embeddings()
        assert isinstance(twin_wrapper, MaskedEmbedding) and twin_wrapper is not wrapper
        assert twin.lm_head.weight is twin_wrapper.weight
        assert twin_wrapper.masker.reversal.step == 1
        assert twin_wrapper.masker.reversal.scale == dann_schedule(100)
        for key, value in model.state_dict().items():
            assert torch.equal(twin.state_dict()[key], value), key
        # The copy's forward hook ends the copy's passes, not the original's.
        train_step(twin, twin_wrapper, *batch())
        assert len(twin_wrapper._pass_outputs) == 1 and twin_wrapper._pass_ended


# --- resizing ------------------------------------------------------------------------------------


def test_resize_token_embeddings_then_a_training_step_with_a_new_id() -> None:
    model = gpt2()
    wrapper = mask_input_embeddings(model, adversary())
    old_weight = wrapper.weight.detach().clone()
    resized = model.resize_token_embeddings(VOCAB + 4, mean_resizing=False)
    assert resized is wrapper and model.get_input_embeddings() is wrapper
    assert wrapper.num_embeddings == VOCAB + 4 and wrapper.weight.shape == (VOCAB + 4, 16)
    assert torch.equal(wrapper.weight[:VOCAB].detach(), old_weight)
    assert model.lm_head.weight is wrapper.weight
    score_embedding = wrapper.masker.score_network.embedding
    assert score_embedding.weight.shape[0] == VOCAB + 4
    assert wrapper.masker.score_network.vocab_size == VOCAB + 4
    ids, attention_mask = batch()
    ids[:, 1] = VOCAB + 3  # a new id, at an unpadded position of every row
    model.zero_grad()
    train_step(model, wrapper, ids, attention_mask)
    assert wrapper.weight.grad[VOCAB + 3].abs().sum() > 0
    assert score_embedding.weight.grad[VOCAB + 3].abs().sum() > 0
    # Shrinking works too (the adversary follows down).
    model.resize_token_embeddings(VOCAB - 10)
    assert wrapper.masker.score_network.embedding.weight.shape[0] == VOCAB - 10


def test_resize_with_a_uniform_masker() -> None:
    model = gpt2()
    wrapper = mask_input_embeddings(model, UniformMasker(0.5))
    model.resize_token_embeddings(VOCAB + 2)
    ids, attention_mask = batch()
    ids[0, 0] = VOCAB + 1
    train_step(model, wrapper, ids, attention_mask)


# --- which positions: exactly round(rate * valid), never padding --------------------------------


@pytest.mark.parametrize("rate", [0.15, 0.5, 1.0])
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_exactly_k_dropped_per_row_never_padding(rate, padding_side) -> None:
    model = gpt2()
    wrapper = mask_input_embeddings(model, adversary(rate=rate) if rate != 1.0 else None)
    if wrapper.masker is None:
        unmask_input_embeddings(model)
        wrapper = mask_input_embeddings(model, UniformMasker(rate))
    ids, attention_mask = batch()
    if padding_side == "left":
        ids, attention_mask = ids.flip(1), attention_mask.flip(1)
    train_step(model, wrapper, ids, attention_mask)
    mask = wrapper.last_output.mask.detach()
    valid = attention_mask.sum(1)
    assert torch.equal(mask.sum(1).long(), num_to_drop(rate, valid))
    assert torch.all(mask[attention_mask == 0] == 0)


# --- generation ----------------------------------------------------------------------------------


def test_generate_in_training_mode_refuses_to_mask_the_prompt() -> None:
    model = gpt2()
    wrapper = mask_input_embeddings(model, UniformMasker(1.0))
    prompt = torch.tensor([[5, 6, 7, 8]])
    model.train()
    with pytest.raises(RuntimeError, match=r"training mode but gradients are disabled.*eval\(\)"):
        model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=2)
    model.eval()
    plain = gpt2().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # transformers' generation-config notes
        got = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=3)
        expected = plain.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=3)
    assert torch.equal(got, expected) and wrapper.last_output is None


# --- encoder-decoder (T5) and encoder-only (BERT) ------------------------------------------------


def t5(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    config = transformers.T5Config(
        vocab_size=VOCAB,
        d_model=16,
        d_kv=4,
        d_ff=32,
        num_layers=1,
        num_heads=2,
        dropout_rate=0.0,
        pad_token_id=PAD,
        decoder_start_token_id=PAD,
    )
    return transformers.T5ForConditionalGeneration(config)


def test_t5_masks_the_decoder_inputs_by_default_and_keeps_its_keys(tmp_path) -> None:
    model = t5()
    keys = set(model.state_dict())
    wrapper = mask_input_embeddings(model, adversary())
    assert model.decoder.embed_tokens is wrapper
    assert not isinstance(model.encoder.embed_tokens, MaskedEmbedding)
    assert not isinstance(model.shared, MaskedEmbedding)
    assert wrapper.weight is model.shared.weight is model.encoder.embed_tokens.weight
    assert {key for key in model.state_dict() if ".masker." not in key} == keys
    shapes = []
    wrapper.register_forward_hook(lambda module, args, output: shapes.append(args[0].shape))
    ids, attention_mask = batch()
    labels = ids[:, :5].contiguous()
    model.train()
    # The encoder's attention mask does not describe the decoder's inputs: no shape error,
    # the decoder's padding is found by the pad id.
    with wrapper.valid_inputs(attention_mask=attention_mask):
        loss = model(input_ids=ids, attention_mask=attention_mask, labels=labels).loss
    assert shapes == [(3, 5)]
    (loss + wrapper.regularizer).backward()
    decoder_inputs = model._shift_right(labels)
    assert torch.all(wrapper.last_output.mask[decoder_inputs == PAD] == 0)
    model.save_pretrained(tmp_path)
    plain, info = transformers.T5ForConditionalGeneration.from_pretrained(
        tmp_path, output_loading_info=True
    )
    assert not info["missing_keys"]
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            plain.eval()(input_ids=ids, attention_mask=attention_mask, labels=labels).logits,
            model(input_ids=ids, attention_mask=attention_mask, labels=labels).logits,
            rtol=0,
            atol=0,
        )


def test_t5_with_both_sides_masked_sums_the_regularizer_of_one_pass() -> None:
    model = t5()
    wrapper = mask_input_embeddings(model, adversary(), attribute="shared")
    model.set_input_embeddings(wrapper)  # the encoder and the decoder read it too
    ids, attention_mask = batch()
    labels = ids[:, :5].contiguous()
    model.train()
    with wrapper.valid_inputs(attention_mask=attention_mask):
        model(input_ids=ids, attention_mask=attention_mask, labels=labels)
    encoder_call, decoder_call = wrapper._pass_outputs
    assert encoder_call.mask.shape == (3, 9) and decoder_call.mask.shape == (3, 5)
    torch.testing.assert_close(
        wrapper.regularizer, encoder_call.regularizer + decoder_call.regularizer
    )
    assert wrapper.last_output is decoder_call
    assert torch.all(encoder_call.mask[attention_mask == 0] == 0)
    # The next forward pass starts a new sum.
    with wrapper.valid_inputs(attention_mask=attention_mask):
        model(input_ids=ids, attention_mask=attention_mask, labels=labels)
    assert len(wrapper._pass_outputs) == 2


@pytest.mark.parametrize("attribute", [None, "encoder.embed_tokens", "shared"])
def test_t5_resize_keeps_the_chosen_side_masked_and_the_adversary_follows(attribute) -> None:
    # T5's set_input_embeddings, which resize_token_embeddings calls with the shared
    # embedding, puts that embedding on both sides: a wrapper on one side only must come back.
    model = t5()
    wrapper = mask_input_embeddings(model, adversary(), attribute=attribute)
    if attribute == "shared":
        model.set_input_embeddings(wrapper)
    masked_sides = [model.encoder.embed_tokens is wrapper, model.decoder.embed_tokens is wrapper]
    model.resize_token_embeddings(VOCAB + 3, mean_resizing=False)
    ids, attention_mask = batch()
    ids[:, 0] = VOCAB + 2  # a new id
    labels = ids[:, :5].contiguous()
    model.train()
    model(input_ids=ids, attention_mask=attention_mask, labels=labels)
    assert [model.encoder.embed_tokens is wrapper, model.decoder.embed_tokens is wrapper] == (
        masked_sides
    )
    assert wrapper.last_output is not None
    assert wrapper.num_embeddings == VOCAB + 3 == wrapper.weight.shape[0]
    assert wrapper.masker.score_network.vocab_size == VOCAB + 3
    assert wrapper.weight is model.shared.weight
    # The wrapper put back, unmasking still restores the plain model.
    original = unmask_input_embeddings(model, attribute=attribute)
    if attribute == "shared":
        model.set_input_embeddings(original)  # undo as it was done
    assert not any(isinstance(module, MaskedEmbedding) for module in model.modules())


def test_a_masked_lm_drops_inputs_to_the_mask_token() -> None:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=PAD,
    )
    model = transformers.BertForMaskedLM(config)
    mask_id = 4  # a tokenizer's mask_token_id
    wrapper = mask_input_embeddings(model, UniformMasker(0.5), fill="token", fill_id=mask_id)
    ids, attention_mask = batch()
    model.train()
    with wrapper.valid_inputs(attention_mask=attention_mask):
        embedded = model.bert.embeddings.word_embeddings(ids)
    dropped = wrapper.last_output.mask.bool()
    assert dropped.any()
    assert torch.equal(embedded, wrapper.embed(torch.where(dropped, mask_id, ids)))


def test_the_unk_id_name_still_works_with_a_deprecation_warning() -> None:
    with pytest.warns(DeprecationWarning, match="unk_id is deprecated; use fill_id"):
        wrapper = mask_input_embeddings(gpt2(), None, fill="token", unk_id=3)
    assert wrapper.fill_id == 3
    with pytest.warns(DeprecationWarning, match='fill="unk" is deprecated'):
        wrapper = MaskedEmbedding(nn.Embedding(5, 2), None, fill="unk", fill_id=1)
    assert wrapper.fill == "token"
    with pytest.warns(DeprecationWarning, match="use fill_id"):
        assert wrapper.unk_id == 1
