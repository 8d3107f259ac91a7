"""Encoder and decoders (SPEC §11, §15.4): oracles, causality, padding and the z path."""

import math
from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from advmask.seqvae.factory import ModelSpec, build_sequence_vae
from advmask.seqvae.models import (
    DECODERS,
    DoubleLSTMDecoder,
    LSTMDecoder,
    LSTMEncoder,
    TransformerDecoder,
    double_lstm_reference,
)

F64 = torch.float64
VOCAB, EMB, HID, LAT = 23, 5, 7, 3
DECODER_CLASSES = [LSTMDecoder, DoubleLSTMDecoder]


def make_decoder(cls=DoubleLSTMDecoder, seed=0, scale=0.4, dropout=0.0, sizes=None, **options):
    """A float64 decoder in eval mode with O(1) weights.

    The authors' U(-0.01, 0.01) init keeps every gate near 0.5 and the net nearly linear, which
    would hide wiring bugs; weights of std ``scale`` exercise the nonlinearities.
    """
    torch.manual_seed(seed)
    decoder = cls(
        *(sizes or (VOCAB, EMB, HID, LAT)), dropout_in=dropout, dropout_out=dropout, **options
    )
    with torch.no_grad():
        for parameter in decoder.parameters():
            parameter.normal_(0.0, scale)
    return decoder.to(F64).eval()


def make_inputs(batch, steps, seed=1, emb=EMB, lat=LAT, grad=False):
    generator = torch.Generator().manual_seed(seed)
    embedded = torch.randn(batch, steps, emb, dtype=F64, generator=generator)
    z = torch.randn(batch, lat, dtype=F64, generator=generator)
    return embedded.requires_grad_(grad), z.requires_grad_(grad)


def make_tokens(lengths, width=None, seed=0):
    """[BOS, words, EOS, PAD..] rows; ``lengths`` count the non-padding tokens (>= 1)."""
    generator = torch.Generator().manual_seed(seed)
    width = width or max(lengths)
    tokens = torch.randint(1, VOCAB, (len(lengths), width), generator=generator)
    positions = torch.arange(width)
    lengths = torch.tensor(lengths)
    return torch.where(positions < lengths[:, None], tokens, 0), lengths


# ---------------------------------------------------------------------------------------------
# P11.5 shapes and the shared decoder interface


@pytest.mark.parametrize("name", sorted(DECODERS))
@pytest.mark.parametrize(("batch", "steps"), [(1, 1), (3, 6), (2, 0)])
def test_decoder_shapes_and_interface(name, batch, steps) -> None:
    # (HID = 7 is prime: the Transformer gets one head; tests/test_transformer_decoder.py)
    options = {"num_heads": 1} if DECODERS[name] is TransformerDecoder else {}
    decoder = make_decoder(DECODERS[name], **options)
    assert isinstance(decoder.embedding, nn.Embedding)
    assert decoder.embedding.padding_idx == 0
    embedded, z = make_inputs(batch, steps)
    logits = decoder(embedded, z)
    assert logits.shape == (batch, steps, VOCAB)
    assert logits.dtype == F64


def test_registry_names() -> None:
    assert dict(DECODERS) == {
        "lstm": LSTMDecoder,
        "double-lstm": DoubleLSTMDecoder,
        "transformer": TransformerDecoder,
    }


def test_encoder_shapes() -> None:
    torch.manual_seed(0)
    encoder = LSTMEncoder(VOCAB, EMB, HID, LAT)
    tokens, lengths = make_tokens([4, 2, 6])
    mean, logvar = encoder(tokens, lengths)
    assert mean.shape == logvar.shape == (3, LAT)


# ---------------------------------------------------------------------------------------------
# P11.2 the fast path equals the LSTMCell unroll (values and gradients)


@settings(max_examples=15)
@given(
    batch=st.integers(1, 4),
    steps=st.integers(1, 7),
    sizes=st.tuples(st.integers(2, 9), st.integers(1, 6), st.integers(1, 8), st.integers(1, 4)),
    seed=st.integers(0, 2**16),
)
def test_double_lstm_fast_path_equals_reference(batch, steps, sizes, seed) -> None:
    decoder = make_decoder(seed=seed, sizes=sizes)
    _, emb, _, lat = sizes
    embedded, z = make_inputs(batch, steps, seed=seed + 1, emb=emb, lat=lat, grad=True)
    fast = decoder(embedded, z)
    reference = double_lstm_reference(decoder, embedded, z)
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-12)
    cotangent = torch.randn_like(fast)
    wrt = [embedded, z, *(p for n, p in decoder.named_parameters() if n != "embedding.weight")]
    fast_grads = torch.autograd.grad(fast, wrt, cotangent)
    reference_grads = torch.autograd.grad(reference, wrt, cotangent)
    for got, expected in zip(fast_grads, reference_grads, strict=True):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-11)


def test_double_lstm_backward_passes_gradcheck() -> None:
    # The recurrence has a hand-written backward; finite differences are the second oracle.
    decoder = make_decoder(sizes=(4, 3, 4, 2))
    embedded, z = make_inputs(2, 4, emb=3, lat=2, grad=True)
    names = ("prior_cell.weight_hh", "word_cell.weight_hh", "word_cell.weight_ih")
    parameters = dict(decoder.named_parameters())

    def logits(embedded, z, *weights):
        overrides = dict(zip(names, weights, strict=True))
        return torch.func.functional_call(decoder, {**parameters, **overrides}, (embedded, z))

    inputs = (embedded, z, *(parameters[n].detach().clone().requires_grad_() for n in names))
    assert torch.autograd.gradcheck(logits, inputs)


def test_double_lstm_train_mode_matches_reference_under_the_same_seed() -> None:
    # Both apply dropout_in to (B, T, E) and then dropout_out to (B, T, H), in that order, so
    # the same seed draws the same masks: this pins where the two dropouts sit.
    decoder = make_decoder(dropout=0.3).train()
    embedded, z = make_inputs(3, 5)
    torch.manual_seed(7)
    fast = decoder(embedded, z)
    torch.manual_seed(7)
    reference = double_lstm_reference(decoder, embedded, z)
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-12)
    torch.manual_seed(8)
    assert not torch.allclose(decoder(embedded, z), fast)


def test_reference_rejects_other_decoders() -> None:
    embedded, z = make_inputs(2, 3)
    with pytest.raises(TypeError, match="LSTMDecoder"):
        double_lstm_reference(make_decoder(LSTMDecoder), embedded, z)


def test_lstm_decoder_equals_cell_unroll() -> None:
    # He et al.'s wiring: input [e_t; z] at every step, c_{-1} = W z, h_{-1} = tanh(c_{-1}).
    decoder = make_decoder(LSTMDecoder)
    embedded, z = make_inputs(3, 6)
    cell = nn.LSTMCell(EMB + LAT, HID).to(F64)
    lstm = decoder.lstm
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(lstm, f"{name}_l0"))
    c = decoder.latent_to_cell(z)
    h = torch.tanh(c)
    outputs = []
    for step in range(embedded.shape[1]):
        h, c = cell(torch.cat([embedded[:, step], z], -1), (h, c))
        outputs.append(h)
    expected = decoder.output(torch.stack(outputs, 1))
    torch.testing.assert_close(decoder(embedded, z), expected, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# P11.1 causality, P11.3 padding, P11.4 the z path


@pytest.mark.parametrize("cls", DECODER_CLASSES)
def test_causality_exact_zero_gradient_from_future_inputs(cls) -> None:
    decoder = make_decoder(cls)
    embedded, z = make_inputs(2, 6, grad=True)
    logits = decoder(embedded, z)
    for step in range(embedded.shape[1]):
        (grad,) = torch.autograd.grad(logits[:, step].sum(), embedded, retain_graph=True)
        per_step = grad.abs().sum(dim=(0, 2))
        assert torch.all(per_step[step + 1 :] == 0), (step, per_step)
        assert torch.all(per_step[: step + 1] > 0), (step, per_step)


@pytest.mark.parametrize("cls", DECODER_CLASSES)
def test_valid_logits_do_not_depend_on_padded_steps(cls) -> None:
    decoder = make_decoder(cls)
    embedded, z = make_inputs(3, 7)
    lengths = [7, 2, 4]
    # Garbage (not zeros) after each row's end, so a leak cannot hide behind zero inputs.
    logits = decoder(embedded, z)
    for row, length in enumerate(lengths):
        alone = decoder(embedded[row : row + 1, :length], z[row : row + 1])
        torch.testing.assert_close(logits[row, :length], alone[0], rtol=0, atol=1e-12)
    longer = torch.cat([embedded, 100 * torch.randn(3, 4, EMB, dtype=F64)], 1)
    torch.testing.assert_close(decoder(longer, z)[:, :7], logits, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cls", DECODER_CLASSES)
def test_with_every_input_dropped_the_logits_still_depend_on_z(cls) -> None:
    decoder = make_decoder(cls)
    embedded = torch.zeros(2, 5, EMB, dtype=F64)
    _, z = make_inputs(2, 5, seed=3)
    logits = decoder(embedded, z)
    assert torch.equal(decoder(embedded, z), logits)  # deterministic in eval mode
    other = decoder(embedded, z + 0.5)
    assert (other - logits).abs().amin(dim=-1).gt(0).all()  # every step, every row
    # ... and z reaches every step through the gradient too.
    z = z.clone().requires_grad_()
    for step in range(5):
        (grad,) = torch.autograd.grad(decoder(embedded, z)[:, step].sum(), z)
        assert grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------
# Gradients, training mode, autocast, compile


@pytest.mark.parametrize("cls", DECODER_CLASSES)
def test_gradients_reach_every_parameter(cls) -> None:
    torch.manual_seed(0)
    encoder = LSTMEncoder(VOCAB, EMB, HID, LAT)
    decoder = cls(VOCAB, EMB, HID, LAT).train()
    tokens, lengths = make_tokens([5, 3, 4])
    mean, logvar = encoder(tokens, lengths)
    z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
    logits = decoder(decoder.embedding(tokens), z)
    loss = nn.functional.cross_entropy(logits.flatten(0, 1), tokens.roll(-1, 1).flatten())
    loss.backward()
    for name, parameter in [*encoder.named_parameters(), *decoder.named_parameters()]:
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name
    # The padding row never learns.
    assert torch.equal(encoder.embedding.weight.grad[0], torch.zeros(EMB))


def test_bfloat16_autocast_runs_and_keeps_float32_gradients() -> None:
    # The custom recurrence must follow autocast's dtype. (LSTMDecoder is nn.LSTM, which on a
    # CPU without bf16 support fails inside oneDNN under autocast: not ours to test.)
    torch.manual_seed(0)
    decoder = DoubleLSTMDecoder(VOCAB, EMB, HID, LAT)
    embedded, z = torch.randn(2, 4, EMB), torch.randn(2, LAT)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = decoder(embedded, z)
    assert logits.dtype == torch.bfloat16
    logits.float().sum().backward()
    for name, parameter in decoder.named_parameters():
        if name != "embedding.weight":
            assert parameter.grad is not None and parameter.grad.dtype == torch.float32, name


def _compiled_matches_eager(backend: str) -> None:
    torch.manual_seed(0)
    decoder = DoubleLSTMDecoder(VOCAB, EMB, HID, LAT, dropout_in=0.0, dropout_out=0.0).eval()
    embedded = torch.randn(3, 5, EMB, requires_grad=True)
    z = torch.randn(3, LAT, requires_grad=True)
    compiled = torch.compile(decoder, backend=backend, fullgraph=True)
    out = compiled(embedded, z)
    expected = decoder(embedded, z)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    cotangent = torch.randn_like(out)
    wrt = [embedded, z, decoder.word_cell.weight_hh, decoder.prior_cell.weight_ih]
    for got, want in zip(
        torch.autograd.grad(out, wrt, cotangent),
        torch.autograd.grad(expected, wrt, cotangent),
        strict=True,
    ):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_double_lstm_traces_with_torch_compile_without_graph_breaks() -> None:
    torch._dynamo.reset()
    _compiled_matches_eager("aot_eager")  # Dynamo + AOTAutograd, no code generation (~5 s)


@pytest.mark.slow
def test_double_lstm_compiles_with_inductor() -> None:
    torch._dynamo.reset()
    _compiled_matches_eager("inductor")  # C++ code generation on CPU: ~40 s


# ---------------------------------------------------------------------------------------------
# Encoder


def test_encoder_ignores_padding_columns_and_tokens_beyond_each_length() -> None:
    torch.manual_seed(0)
    encoder = LSTMEncoder(VOCAB, EMB, HID, LAT).to(F64)
    tokens, lengths = make_tokens([6, 2, 4, 1])
    mean, logvar = encoder(tokens, lengths)
    padded = torch.cat([tokens, torch.zeros(4, 5, dtype=torch.int64)], 1)
    for got, want in zip(encoder(padded, lengths), (mean, logvar), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    # Non-padding garbage beyond each row's length changes nothing either.
    garbage = torch.where(tokens == 0, torch.randint(1, VOCAB, tokens.shape), tokens)
    for got, want in zip(encoder(garbage, lengths), (mean, logvar), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    # ... while a valid token does change the posterior of its row only.
    changed = tokens.clone()
    changed[1, 0] = (tokens[1, 0] % (VOCAB - 1)) + 1
    new_mean, _ = encoder(changed, lengths)
    assert not torch.allclose(new_mean[1], mean[1])
    torch.testing.assert_close(new_mean[[0, 2, 3]], mean[[0, 2, 3]], rtol=0, atol=1e-12)


@settings(max_examples=15)
@given(lengths=st.lists(st.integers(1, 8), min_size=1, max_size=5), seed=st.integers(0, 2**16))
def test_encoder_equals_per_row_lstm_on_the_valid_tokens(lengths, seed) -> None:
    # Oracle: each row alone, unpadded, through the same LSTM; this also checks that packing
    # with enforce_sorted=False returns the rows in the caller's order.
    torch.manual_seed(seed)
    encoder = LSTMEncoder(VOCAB, EMB, HID, LAT).to(F64)
    with torch.no_grad():
        for parameter in encoder.parameters():
            parameter.normal_(0.0, 0.4)
    tokens, lengths_t = make_tokens(lengths, seed=seed)
    mean, logvar = encoder(tokens, lengths_t)
    for row, length in enumerate(lengths):
        _, (hidden, _) = encoder.lstm(encoder.embedding(tokens[row : row + 1, :length]))
        expected_mean, expected_logvar = encoder.to_posterior(hidden[-1]).chunk(2, -1)
        torch.testing.assert_close(mean[row], expected_mean[0], rtol=0, atol=1e-12)
        torch.testing.assert_close(logvar[row], expected_logvar[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("cls", [LSTMEncoder, *DECODER_CLASSES])
def test_reset_parameters_uses_the_authors_uniform_ranges(cls) -> None:
    torch.manual_seed(0)
    module = cls(VOCAB, EMB, HID, LAT)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.fill_(5.0)
    module.reset_parameters()
    for name, parameter in module.named_parameters():
        bound = 0.1 if name == "embedding.weight" else 0.01
        assert parameter.abs().max() <= bound, name
        assert parameter.abs().max() > bound / 2, name  # really redrawn, not zeroed
    assert torch.equal(module.embedding.weight[0], torch.zeros(EMB))


@pytest.mark.parametrize("cls", [LSTMEncoder, *DECODER_CLASSES])
def test_pytorch_init_uses_the_layers_default_ranges(cls) -> None:
    torch.manual_seed(0)
    module = cls(VOCAB, EMB, HID, LAT, init="pytorch")
    recurrent = [m for m in module.modules() if isinstance(m, nn.LSTM | nn.LSTMCell)]
    assert recurrent
    lstm_bound = 1 / math.sqrt(HID)  # nn.LSTM's and nn.LSTMCell's U(-1/sqrt(H), 1/sqrt(H))
    for layer in recurrent:
        for name, parameter in layer.named_parameters():
            assert lstm_bound / 2 < parameter.abs().max() <= lstm_bound, name
    assert module.embedding.weight.std() > 0.5  # nn.Embedding's N(0, 1), not U(-0.1, 0.1)
    assert torch.equal(module.embedding.weight[0], torch.zeros(EMB))
    with pytest.raises(ValueError, match="init must be one of 'authors', 'pytorch', got 'x'"):
        cls(VOCAB, EMB, HID, LAT, init="x")


def test_reset_decoder_keeps_the_pytorch_init_of_a_wrapped_embedding() -> None:
    spec = ModelSpec(
        vocab_size=VOCAB, embedding_dim=EMB, hidden_size=HID, latent_dim=LAT,
        adversary_embedding_dim=4, adversary_hidden_size=4, dropout="adversarial", rate=0.3,
        decoder_init="pytorch",
    )  # fmt: skip
    model = build_sequence_vae(spec)
    masker = {k: v.detach().clone() for k, v in model.masker.named_parameters()}
    with torch.no_grad():
        model.decoder.embedding.weight.fill_(0.0)
    model.reset_decoder()
    embedding = model.decoder.embedding.weight
    assert embedding.std() > 0.5  # redrawn through the wrapper, from N(0, 1)
    assert torch.equal(embedding[0], torch.zeros(EMB))
    for name, value in model.masker.named_parameters():
        assert torch.equal(value, masker[name]), name
    with pytest.raises(ValueError, match="decoder_init applies to the LSTM decoders"):
        build_sequence_vae(replace(spec, decoder="transformer", hidden_size=8))


# ---------------------------------------------------------------------------------------------
# Validation at the public boundary


@pytest.mark.parametrize("cls", DECODER_CLASSES)
@pytest.mark.parametrize(
    ("embedded", "z", "error", "match"),
    [
        (torch.zeros(2, 3), torch.zeros(2, LAT), ValueError, r"embedded must have 3 dim.*\(2, 3\)"),
        (torch.zeros(2, 3, EMB), torch.zeros(LAT), ValueError, r"z must have 2 dim.*\(3,\)"),
        (torch.zeros(2, 3, EMB, dtype=torch.int64), torch.zeros(2, LAT), TypeError, "int64"),
        (torch.zeros(2, 3, EMB + 1), torch.zeros(2, LAT), ValueError, "embedding_dim=5"),
        (torch.zeros(2, 3, EMB), torch.zeros(2, LAT + 1), ValueError, "latent_dim=3"),
        (torch.zeros(2, 3, EMB), torch.zeros(4, LAT), ValueError, r"batch size.*\(4, 3\)"),
        ([[0.0]], torch.zeros(2, LAT), TypeError, "embedded must be a torch.Tensor, got list"),
    ],
)
def test_decoder_rejects_bad_inputs(cls, embedded, z, error, match) -> None:
    decoder = cls(VOCAB, EMB, HID, LAT)
    with pytest.raises(error, match=match):
        decoder(embedded, z)


@pytest.mark.parametrize(
    ("tokens", "lengths", "error", "match"),
    [
        (torch.ones(2, 4, dtype=torch.int64), torch.tensor([0, 2]), ValueError, r"\[1, T=4\].*0"),
        (torch.ones(2, 4, dtype=torch.int64), torch.tensor([5, 2]), ValueError, r"\[1, T=4\].*5"),
        (torch.ones(2, 4, dtype=torch.int64), torch.tensor([2]), ValueError, "one entry per row"),
        (torch.ones(2, 4), torch.tensor([2, 2]), TypeError, "tokens must have dtype"),
        (torch.ones(4, dtype=torch.int64), torch.tensor([2]), ValueError, "tokens must have 2"),
        (
            torch.ones(0, 4, dtype=torch.int64),
            torch.tensor([], dtype=torch.int64),
            ValueError,
            "at least one row",
        ),
    ],
)
def test_encoder_rejects_bad_inputs(tokens, lengths, error, match) -> None:
    encoder = LSTMEncoder(VOCAB, EMB, HID, LAT)
    with pytest.raises(error, match=match):
        encoder(tokens, lengths)


@pytest.mark.parametrize("cls", [LSTMEncoder, *DECODER_CLASSES])
@pytest.mark.parametrize(
    ("sizes", "error", "match"),
    [
        ((0, EMB, HID, LAT), ValueError, "vocab_size must be >= 1, got 0"),
        ((VOCAB, 2.5, HID, LAT), TypeError, "embedding_dim must be an int >= 1, got 2.5"),
        ((VOCAB, EMB, True, LAT), TypeError, "hidden_size must be an int >= 1, got True"),
        ((VOCAB, EMB, HID, -1), ValueError, "latent_dim must be >= 1, got -1"),
    ],
)
def test_constructors_reject_bad_sizes(cls, sizes, error, match) -> None:
    with pytest.raises(error, match=match):
        cls(*sizes)


@pytest.mark.parametrize("cls", DECODER_CLASSES)
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"dropout_in": 1.0}, ValueError, r"dropout_in must be in \[0, 1\), got 1.0"),
        ({"dropout_out": -0.1}, ValueError, "dropout_out must be in"),
        ({"dropout_in": "0.5"}, TypeError, "dropout_in"),
    ],
)
def test_decoders_reject_bad_dropout(cls, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        cls(VOCAB, EMB, HID, LAT, **kwargs)
