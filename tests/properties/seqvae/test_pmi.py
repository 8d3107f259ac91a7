"""Properties of next-word and sentence PMI and Spearman's correlation (advmask.seqvae.analysis).

Checked on generated sentences and samples; the closed-form toy, the brute-force loop over real
models, the bootstrap and the pooled summary are in tests/seqvae/test_pmi.py.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from advmask.seqvae.analysis import droppable_inputs, next_word_pmi, sentence_pmi, spearman
from advmask.seqvae.data import collate
from advmask.seqvae.vae import SequenceVAE

from .._helpers import VOCAB, real_model, scipy_spearman

torch.set_num_threads(1)


@functools.cache
def padding_model() -> SequenceVAE:
    return real_model("double-lstm", "learned")


@given(
    st.lists(st.lists(st.integers(3, VOCAB - 1), min_size=0, max_size=7), min_size=1, max_size=4),
    st.integers(0, 3),
)
def test_pmi_of_a_row_depends_on_that_row_only(sentences, extra_padding) -> None:
    """Batch composition and padding change nothing: each row equals that row decoded alone."""
    model = padding_model()
    batch = collate(sentences)
    tokens = torch.nn.functional.pad(batch.tokens, (0, extra_padding))
    z = torch.randn(len(sentences), 3, generator=torch.Generator().manual_seed(2)).double()
    pmi = next_word_pmi(model, tokens, batch.lengths, z)
    assert pmi.shape == tokens.shape
    assert torch.equal(~pmi.isnan(), droppable_inputs(tokens, batch.lengths))
    for b, words in enumerate(sentences):
        alone = collate([words])
        row = next_word_pmi(model, alone.tokens, alone.lengths, z[b : b + 1])[0]
        torch.testing.assert_close(
            pmi[b, : row.shape[0]], row, equal_nan=True, rtol=1e-9, atol=1e-9
        )


@given(
    st.lists(st.lists(st.integers(3, VOCAB - 1), min_size=1, max_size=7), min_size=1, max_size=4),
    st.integers(0, 3),
)
def test_sentence_pmi_of_a_row_depends_on_that_row_only(sentences, extra_padding) -> None:
    """The suffix sum stops at EOS: padding and the other rows change nothing, and at the last
    word, where only EOS follows, it is the next-word PMI."""
    model = padding_model()
    batch = collate(sentences)
    tokens = torch.nn.functional.pad(batch.tokens, (0, extra_padding))
    z = torch.randn(len(sentences), 3, generator=torch.Generator().manual_seed(2)).double()
    whole = sentence_pmi(model, tokens, batch.lengths, z)
    assert torch.equal(~whole.isnan(), droppable_inputs(tokens, batch.lengths))
    next_word = next_word_pmi(model, tokens, batch.lengths, z)
    for b, words in enumerate(sentences):
        alone = collate([words])
        row = sentence_pmi(model, alone.tokens, alone.lengths, z[b : b + 1])[0]
        torch.testing.assert_close(
            whole[b, : row.shape[0]], row, equal_nan=True, rtol=1e-9, atol=1e-9
        )
        last = len(words)
        torch.testing.assert_close(whole[b, last], next_word[b, last], rtol=1e-9, atol=1e-9)


VALUES = st.one_of(
    st.floats(-10, 10, allow_nan=False),  # mostly distinct
    st.sampled_from([0.0, 0.5, 1.0]),  # many ties
)


@given(st.lists(st.tuples(VALUES, VALUES), min_size=2, max_size=40))
def test_spearman_equals_scipy(pairs) -> None:
    x = torch.tensor([a for a, _ in pairs], dtype=torch.float64)
    y = torch.tensor([b for _, b in pairs], dtype=torch.float64)
    expected = scipy_spearman(x.numpy(), y.numpy())
    got = float(spearman(x, y))
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(expected, abs=1e-10)


@given(
    st.lists(st.tuples(VALUES, VALUES, st.integers(0, 3)), min_size=2, max_size=20),
)
def test_weighted_spearman_is_that_of_the_repeated_sample(triples) -> None:
    x = torch.tensor([a for a, _, _ in triples], dtype=torch.float64)
    y = torch.tensor([b for _, b, _ in triples], dtype=torch.float64)
    times = torch.tensor([w for _, _, w in triples])
    if times.sum() < 2:
        return
    expected = scipy_spearman(x.repeat_interleave(times).numpy(), y.repeat_interleave(times))
    got = float(spearman(x, y, times.double()))
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected, abs=1e-10)
    # A batch of weight rows is the rows one by one.
    rows = torch.stack([times, times.flip(0), torch.ones_like(times)]).double()
    batched = spearman(x, y, rows)
    one_by_one = torch.stack([spearman(x, y, row) for row in rows])
    torch.testing.assert_close(batched, one_by_one, equal_nan=True)
