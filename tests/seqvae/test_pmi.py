"""Next-word and sentence PMI (advmask.seqvae.analysis.pmi): closed-form toys, a brute-force
oracle, scipy.

The hypothesis property tests are in tests/properties/seqvae/test_pmi.py.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from advmask.embedding import mask_embeddings
from advmask.seqvae.analysis import (
    bootstrap_ci,
    droppable_inputs,
    next_word_pmi,
    sentence_pmi,
    spearman,
    summarize_pmi,
)
from advmask.seqvae.data import collate
from advmask.seqvae.data.vocab import UNK_ID
from advmask.seqvae.vae import SequenceVAE

from ..properties._helpers import VOCAB, real_model, scipy_spearman

torch.set_num_threads(1)


# --------------------------------------------------------------------------------------------
# (a) A toy whose PMI is known in closed form
# --------------------------------------------------------------------------------------------
class BigramDecoder(nn.Module):
    """``p(x_{t+1} | x_{<=t}, z) = P[x_t, x_{t+1}]``: the next token depends on the current
    input only. One-hot embeddings and ``logits_t = e_t @ log P``, so a zero (dropped) input
    gives logits 0, the uniform distribution, and a one-hot fill ``c`` gives row ``P[c]``."""

    def __init__(self, log_table: torch.Tensor) -> None:
        super().__init__()
        size = log_table.shape[0]
        self.embedding = nn.Embedding(size, size)
        self.latent_dim = 1
        with torch.no_grad():
            self.embedding.weight.copy_(torch.eye(size, dtype=log_table.dtype))
        self.register_buffer("log_table", log_table)

    def forward(self, embedded: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return embedded @ self.log_table


class ZeroEncoder(nn.Module):
    def forward(self, tokens, lengths):
        zeros = torch.zeros(tokens.shape[0], 1, dtype=torch.float64)
        return zeros, zeros


def bigram_model(fill: str) -> tuple[SequenceVAE, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    table = torch.rand(VOCAB, VOCAB, generator=generator, dtype=torch.float64) ** 4 + 1e-3
    log_table = (table / table.sum(1, keepdim=True)).log()
    model = SequenceVAE(ZeroEncoder(), BigramDecoder(log_table).double(), None, fill=fill)
    return model, log_table


SENTENCES = [[5, 6, 7, 8, 9], [10, 3], [4, 4, 11, 5, 6, 7, 8, 9, 10], [7]]


@pytest.mark.parametrize("fill", ["zero", "unk", "learned"])
def test_bigram_pmi_is_the_closed_form(fill) -> None:
    model, log_table = bigram_model(fill)
    if fill == "learned":
        with torch.no_grad():
            model.drop_vector.copy_(torch.eye(VOCAB, dtype=torch.float64)[6])
    # What the dropped input's prediction becomes: uniform (zero vector), row <unk>, row 6.
    dropped_row = {
        "zero": torch.full((VOCAB,), -math.log(VOCAB), dtype=torch.float64),
        "unk": log_table[UNK_ID],
        "learned": log_table[6],
    }[fill]
    batch = collate(SENTENCES)
    expected = torch.full(batch.tokens.shape, math.nan, dtype=torch.float64)
    for b, words in enumerate(SENTENCES):
        sequence = [1, *words, 2]  # BOS, words, EOS
        for i in range(1, len(words) + 1):  # the words w_1..w_L; w_L predicts EOS
            current, following = sequence[i], sequence[i + 1]
            expected[b, i] = log_table[current, following] - dropped_row[following]
    pmi = next_word_pmi(model, batch.tokens, batch.lengths)
    assert pmi.dtype == torch.float64
    torch.testing.assert_close(pmi, expected, equal_nan=True, rtol=0, atol=1e-12)
    # Chunking does not change the result.
    chunked = next_word_pmi(model, batch.tokens, batch.lengths, max_rows=2)
    torch.testing.assert_close(chunked, expected, equal_nan=True, rtol=0, atol=1e-12)


def test_droppable_inputs_are_the_words() -> None:
    batch = collate(SENTENCES)
    droppable = droppable_inputs(batch.tokens, batch.lengths)
    assert droppable.sum(1).tolist() == [len(s) for s in SENTENCES]
    for b, words in enumerate(SENTENCES):
        assert droppable[b].nonzero().flatten().tolist() == list(range(1, len(words) + 1))


# --------------------------------------------------------------------------------------------
# (b) The vectorised computation against a brute-force loop on real models
# --------------------------------------------------------------------------------------------


def brute_force_pmi(model, tokens, lengths, z) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop one input at a time, one sentence at a time, full forward over the padded row.

    Returns the next-word PMI and the sentence PMI (the suffix ``x_{i+1}..EOS`` summed by hand).
    """
    model.eval()
    decoder = model.decoder
    pmi = torch.full(tokens.shape, math.nan, dtype=torch.float64)
    whole = pmi.clone()
    with torch.no_grad():
        for b in range(tokens.shape[0]):
            embedded = decoder.embedding(tokens[b : b + 1, :-1])
            intact = torch.log_softmax(decoder(embedded, z[b : b + 1]), -1)[0]
            last = int(lengths[b]) - 2  # the step that predicts EOS
            for i in range(1, last + 1):
                drop_mask = torch.zeros(1, tokens.shape[1] - 1, dtype=torch.float64)
                drop_mask[0, i] = 1.0
                masked = mask_embeddings(embedded, drop_mask, model.fill_vector())
                dropped = torch.log_softmax(decoder(masked, z[b : b + 1]), -1)[0]
                gain = [
                    float(intact[t, tokens[b, t + 1]] - dropped[t, tokens[b, t + 1]])
                    for t in range(i, last + 1)
                ]
                pmi[b, i], whole[b, i] = gain[0], sum(gain)
    return pmi, whole


@pytest.mark.parametrize("fill", ["zero", "unk", "learned"])
@pytest.mark.parametrize("decoder", ["lstm", "double-lstm", "transformer"])
def test_vectorised_pmi_equals_the_brute_force_loop(decoder, fill) -> None:
    model = real_model(decoder, fill).train()  # train mode: dropout on, must be switched off
    batch = collate(SENTENCES)
    z = torch.randn(len(SENTENCES), 3, generator=torch.Generator().manual_seed(1)).double()
    expected, expected_whole = brute_force_pmi(model, batch.tokens, batch.lengths, z)
    model.train()
    for max_rows in (None, 1, 3):
        pmi = next_word_pmi(model, batch.tokens, batch.lengths, z, max_rows=max_rows)
        torch.testing.assert_close(pmi, expected, equal_nan=True, rtol=1e-9, atol=1e-9)
        whole = sentence_pmi(model, batch.tokens, batch.lengths, z, max_rows=max_rows)
        torch.testing.assert_close(whole, expected_whole, equal_nan=True, rtol=1e-9, atol=1e-9)
    assert model.training  # the mode is restored
    finite = expected[~expected.isnan()]
    # Far above the tolerance: a wrong target, position or sign cannot pass.
    assert finite.abs().max() > 0.05 and finite.std() > 0.01
    # The later words count: on a recurrent or attending decoder the suffix differs from the
    # next word by far more than the tolerance, except at the last word, where only EOS follows.
    beyond = (expected_whole - expected)[~expected.isnan()]
    assert beyond.abs().max() > 1e-3  # a million times the tolerance
    for b, words in enumerate(SENTENCES):
        last = len(words)
        torch.testing.assert_close(expected_whole[b, last], expected[b, last], rtol=0, atol=1e-12)


@pytest.mark.parametrize("fill", ["zero", "unk"])
def test_sentence_pmi_of_a_bigram_decoder_is_the_next_word_pmi(fill) -> None:
    # A dropped input changes only the next prediction of a bigram decoder, so the suffix sum
    # is that prediction alone: a sum that began one step late would lose it. (Steps before
    # the dropped one and padding cancel here; the brute-force and property tests cover them.)
    model, _ = bigram_model(fill)
    batch = collate(SENTENCES)
    whole = sentence_pmi(model, batch.tokens, batch.lengths)
    next_word = next_word_pmi(model, batch.tokens, batch.lengths)
    torch.testing.assert_close(whole, next_word, equal_nan=True, rtol=0, atol=1e-12)


def test_default_z_is_the_posterior_mean_and_z_matters() -> None:
    model = real_model("lstm", "zero").eval()
    batch = collate(SENTENCES)
    mean, _ = model.posterior(batch.tokens, batch.lengths)
    default = next_word_pmi(model, batch.tokens, batch.lengths)
    torch.testing.assert_close(
        default, next_word_pmi(model, batch.tokens, batch.lengths, mean), equal_nan=True
    )
    other = next_word_pmi(model, batch.tokens, batch.lengths, mean + 3.0)
    assert not torch.allclose(default.nan_to_num(), other.nan_to_num())


@pytest.mark.parametrize("pmi_function", [next_word_pmi, sentence_pmi])
def test_pmi_names_bad_inputs(pmi_function) -> None:
    model = real_model("lstm", "zero")
    batch = collate(SENTENCES)
    with pytest.raises(ValueError, match=r"z must have one row per sequence"):
        pmi_function(model, batch.tokens, batch.lengths, torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"max_rows must be an int >= 1 or None, got 0"):
        pmi_function(model, batch.tokens, batch.lengths, max_rows=0)


# --------------------------------------------------------------------------------------------
# (c) Spearman's correlation and its bootstrap interval
# --------------------------------------------------------------------------------------------


def test_spearman_with_ties_and_floats32() -> None:
    x = torch.tensor([1.0, 1.0, 2.0, 3.0, 3.0, 3.0, 0.0])
    y = torch.tensor([0.1, 0.3, 0.3, 0.2, 0.9, 0.9, 0.0])
    assert float(spearman(x, y)) == pytest.approx(scipy_spearman(x.numpy(), y.numpy()), abs=1e-12)
    assert float(spearman(x, -y)) == pytest.approx(-float(spearman(x, y)), abs=1e-12)


def grouped_data(num_groups: int, seed: int, per_group: int = 5):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(num_groups * per_group, generator=generator, dtype=torch.float64)
    y = x + 2 * torch.randn(x.shape, generator=generator, dtype=torch.float64)
    return x, y, torch.arange(num_groups).repeat_interleave(per_group)


def test_bootstrap_interval_contains_the_estimate_and_narrows_with_data() -> None:
    widths = []
    for num_groups in (20, 320):
        x, y, groups = grouped_data(num_groups, seed=0)
        low, high = bootstrap_ci(
            x, y, groups, num_resamples=400, generator=torch.Generator().manual_seed(0)
        )
        assert low <= float(spearman(x, y)) <= high
        widths.append(high - low)
    # The width shrinks like 1 / sqrt(groups): 16x the data, about a quarter of the width.
    assert widths[1] < 0.5 * widths[0]
    x, y, groups = grouped_data(100, seed=1)
    narrow = bootstrap_ci(x, y, groups, level=0.5, generator=torch.Generator().manual_seed(0))
    wide = bootstrap_ci(x, y, groups, level=0.95, generator=torch.Generator().manual_seed(0))
    assert wide[0] < narrow[0] < narrow[1] < wide[1]


def test_bootstrap_resamples_whole_groups() -> None:
    """Five identical copies of each point in one group carry no more information than the
    point: the group bootstrap gives about the width of one copy per group, while resampling
    positions would be about sqrt(5) times narrower."""
    x, y, _ = grouped_data(200, seed=2, per_group=1)
    single = bootstrap_ci(
        x, y, torch.arange(200), num_resamples=500, generator=torch.Generator().manual_seed(0)
    )
    copies = (x.repeat_interleave(5), y.repeat_interleave(5))
    grouped = bootstrap_ci(
        *copies,
        torch.arange(200).repeat_interleave(5),
        num_resamples=500,
        generator=torch.Generator().manual_seed(0),
    )
    by_position = bootstrap_ci(
        *copies, torch.arange(1000), num_resamples=500, generator=torch.Generator().manual_seed(0)
    )

    def width(interval):
        return interval[1] - interval[0]

    # Monte-Carlo error of a percentile width from 500 resamples is a few percent.
    assert width(grouped) == pytest.approx(width(single), rel=0.25)
    assert width(grouped) > 1.6 * width(by_position)


def test_bootstrap_is_seeded() -> None:
    x, y, groups = grouped_data(30, seed=3)
    first = bootstrap_ci(x, y, groups, generator=torch.Generator().manual_seed(5))
    again = bootstrap_ci(x, y, groups, generator=torch.Generator().manual_seed(5))
    assert first == again


# --------------------------------------------------------------------------------------------
# The pooled summary
# --------------------------------------------------------------------------------------------
def test_summary_weights_pmi_by_drop_probability() -> None:
    pmi = torch.tensor([1.0, 3.0, -1.0, 0.0], dtype=torch.float64)
    p = torch.tensor([0.5, 1.0, 0.0, 0.25], dtype=torch.float64)
    groups = torch.tensor([0, 0, 1, 2])
    summary = summarize_pmi(pmi, p, groups, num_resamples=50)
    assert summary.mean_pmi_dropped == pytest.approx((0.5 + 3.0) / 1.75)
    assert summary.mean_pmi_kept == pytest.approx((0.5 - 1.0 + 0.75 * 0.0) / 2.25)
    assert summary.mean_pmi_uniform == pytest.approx(0.75)
    assert (summary.num_positions, summary.num_sequences) == (4, 3)
    assert summary.spearman == pytest.approx(scipy_spearman(pmi.numpy(), p.numpy()))
    assert [(b.low, b.count) for b in summary.bins] == [(0.0, 1), (0.2, 1), (0.5, 1), (0.9, 1)]
    uniform = summarize_pmi(pmi, p, groups, correlate=False)
    assert uniform.spearman is None and uniform.spearman_ci is None
    assert uniform.mean_pmi_dropped == summary.mean_pmi_dropped
    none = summarize_pmi(pmi, None, groups)
    assert none.mean_pmi_dropped is None and none.bins == () and none.mean_pmi_uniform == 0.75


def test_summary_rejects_nan_pmi() -> None:
    with pytest.raises(ValueError, match="pmi must be finite"):
        summarize_pmi(torch.tensor([0.0, math.nan]), None, torch.tensor([0, 0]))


def test_pmi_under_bf16_autocast_is_float32_and_near_the_float32_pmi() -> None:
    model = real_model("double-lstm", "zero").float().eval()
    batch = collate(SENTENCES)
    z = torch.randn(len(SENTENCES), 3, generator=torch.Generator().manual_seed(1))
    expected = next_word_pmi(model, batch.tokens, batch.lengths, z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pmi = next_word_pmi(model, batch.tokens, batch.lengths, z)
    assert pmi.dtype == torch.float32
    finite = ~expected.isnan()
    assert torch.equal(finite, ~pmi.isnan())
    error = (pmi - expected)[finite].abs()
    # Two log-probabilities from bf16 logits (8 significant bits, |logit| < 4 here), each off
    # by a few roundoffs of their logits; the log-normalisers are float32.
    assert 0 < error.max() < 0.1
