"""``torch.compile``: the masker, the decoders and a whole masked step trace without a break.

``torch._dynamo.explain`` reports how many graphs Dynamo captured and why it broke between
them; one graph and zero breaks means the hot path compiles whole. Compiled results are
compared with eager ones (``aot_eager``: Dynamo and AOTAutograd without code generation, a few
seconds on a CPU; the Inductor variant is marked slow).

``nn.LSTM`` / ``nn.GRU`` (the LSTM decoder, the recurrent score networks) trace only with
Dynamo's ``allow_rnn`` option, experimental in PyTorch; without it Dynamo breaks the graph
around each RNN call (correct, but not whole). The Double-LSTM's hand-written
``autograd.Function`` traces without any option.
"""

from contextlib import nullcontext

import pytest
import torch
from torch import nn

from advmask import AdversarialMasker, mask_input_embeddings
from advmask.seqvae.models import DoubleLSTMDecoder, LSTMDecoder, TransformerDecoder

VOCAB, EMB, HID, LAT = 30, 8, 16, 4
TOKENS = torch.tensor([[1, 5, 6, 7, 8, 9, 2], [1, 10, 11, 2, 0, 0, 0], [1, 12, 2, 0, 0, 0, 0]])
LENGTHS = torch.tensor([7, 4, 3])
NEEDS_ALLOW_RNN = {"lstm", "gru", LSTMDecoder}


def dynamo_options(thing) -> object:
    if thing in NEEDS_ALLOW_RNN:
        return torch._dynamo.config.patch(allow_rnn=True)
    return nullcontext()


def assert_one_graph(function, *args, **kwargs) -> None:
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(function)(*args, **kwargs)
    # (An unsupported call can also end the graph without counting as a break: no reasons.)
    reasons = [reason.reason for reason in explanation.break_reasons]
    assert (explanation.graph_count, explanation.graph_break_count, reasons) == (1, 0, [])


def assert_same(compiled, eager, inputs) -> None:
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)
    cotangent = torch.randn_like(eager)
    for got, want in zip(
        torch.autograd.grad(compiled, inputs, cotangent, allow_unused=True),
        torch.autograd.grad(eager, inputs, cotangent, allow_unused=True),
        strict=True,
    ):
        assert (got is None) == (want is None)
        if got is not None:
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def make_masker(score_network: str) -> AdversarialMasker:
    torch.manual_seed(0)
    return AdversarialMasker(
        VOCAB, rate=0.4, embedding_dim=8, hidden_size=8, score_network=score_network
    )


@pytest.mark.parametrize("score_network", ["transformer", "lstm"])
def test_masker_forward_compiles_whole_and_matches_eager(score_network) -> None:
    masker = make_masker(score_network).train()
    noise = torch.randn(TOKENS.shape, generator=torch.Generator().manual_seed(1))
    is_bos = torch.arange(TOKENS.shape[1]) == 0
    with dynamo_options(score_network):
        assert_one_graph(masker, TOKENS, LENGTHS - 1, protected=is_bos, noise=noise)
        torch._dynamo.reset()
        compiled = torch.compile(masker, backend="aot_eager", fullgraph=True)
        got = compiled(TOKENS, LENGTHS - 1, protected=is_bos, noise=noise)
    want = masker(TOKENS, LENGTHS - 1, protected=is_bos, noise=noise)
    assert torch.equal(got.mask.detach(), want.mask.detach()) and torch.equal(got.k, want.k)
    torch.testing.assert_close(got.regularizer, want.regularizer)
    # The gradient the adversary gets through the mask (reversed) and the regulariser.
    params = list(masker.parameters())
    weights = torch.randn(TOKENS.shape, generator=torch.Generator().manual_seed(2))
    for compiled_grad, eager_grad in zip(
        torch.autograd.grad((got.mask * weights).sum() + got.regularizer, params),
        torch.autograd.grad((want.mask * weights).sum() + want.regularizer, params),
        strict=True,
    ):
        torch.testing.assert_close(compiled_grad, eager_grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [TransformerDecoder, LSTMDecoder, DoubleLSTMDecoder])
def test_decoder_forward_compiles_whole_and_matches_eager(cls) -> None:
    torch.manual_seed(0)
    options = {"num_heads": 2} if cls is TransformerDecoder else {}
    decoder = cls(VOCAB, EMB, HID, LAT, dropout_in=0.0, dropout_out=0.0, **options).eval()
    embedded = torch.randn(3, 6, EMB, requires_grad=True)
    z = torch.randn(3, LAT, requires_grad=True)
    with dynamo_options(cls):
        assert_one_graph(decoder, embedded, z)
        torch._dynamo.reset()
        compiled = torch.compile(decoder, backend="aot_eager", fullgraph=True)(embedded, z)
    inputs = [embedded, z, decoder.output.weight]
    assert_same(compiled, decoder(embedded, z), inputs)


def masked_step(decoder_cls, score_network: str):
    """A training step's loss: adversarially masked embedding, decoder, cross-entropy."""
    torch.manual_seed(0)
    options = {"num_heads": 2} if decoder_cls is TransformerDecoder else {}
    decoder = decoder_cls(VOCAB, EMB, HID, LAT, dropout_in=0.0, dropout_out=0.0, **options)
    masker = make_masker(score_network)
    wrapper = mask_input_embeddings(decoder, masker)
    decoder.train()
    z = torch.randn(3, LAT)
    inputs, targets = TOKENS[:, :-1], TOKENS[:, 1:]
    is_bos = torch.arange(inputs.shape[1]) == 0

    def loss() -> torch.Tensor:
        logits = decoder(decoder.embedding(inputs, LENGTHS - 1, protected=is_bos), z)
        nll = nn.functional.cross_entropy(logits.transpose(1, 2), targets, ignore_index=0)
        return nll + wrapper.regularizer

    return loss, list(decoder.parameters())


@pytest.mark.parametrize(
    ("decoder_cls", "score_network"),
    [(TransformerDecoder, "transformer"), (DoubleLSTMDecoder, "lstm")],
)
def test_a_whole_masked_training_step_compiles_without_breaks(decoder_cls, score_network):
    loss, params = masked_step(decoder_cls, score_network)
    with dynamo_options(score_network):
        assert_one_graph(loss)
        torch._dynamo.reset()
        compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
        torch.manual_seed(5)  # the score noise, drawn inside the graph from the global RNG
        got = compiled()
    torch.manual_seed(5)
    want = loss()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for compiled_grad, eager_grad in zip(
        torch.autograd.grad(got, params), torch.autograd.grad(want, params), strict=True
    ):
        torch.testing.assert_close(compiled_grad, eager_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_inductor_compiles_the_transformer_decoder_and_the_masker() -> None:
    # C++ code generation on a CPU: tens of seconds. Inductor draws its own random numbers, so
    # the masker is compared with pre-drawn noise.
    torch._dynamo.reset()
    masker = make_masker("transformer").train()
    noise = torch.randn(TOKENS.shape, generator=torch.Generator().manual_seed(1))
    got = torch.compile(masker, fullgraph=True)(TOKENS, LENGTHS, noise=noise)
    want = masker(TOKENS, LENGTHS, noise=noise)
    assert torch.equal(got.mask.detach(), want.mask.detach())
    torch.manual_seed(0)
    decoder = TransformerDecoder(VOCAB, EMB, HID, LAT, num_heads=2).eval()
    embedded = torch.randn(3, 6, EMB, requires_grad=True)
    z = torch.randn(3, LAT, requires_grad=True)
    compiled = torch.compile(decoder, fullgraph=True)(embedded, z)
    assert_same(compiled, decoder(embedded, z), [embedded, z, decoder.output.weight])
