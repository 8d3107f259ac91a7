"""One rule says which decoder inputs may be dropped (advmask.seqvae.decoder_inputs): the
training step, the saliency estimate and the PMI analysis all see the same positions."""

from __future__ import annotations

import pytest
import torch

from advmask.budget import eligible_positions
from advmask.seqvae.analysis import next_word_pmi, token_saliency
from advmask.seqvae.decoder_inputs import decoder_inputs, droppable_inputs
from advmask.seqvae.factory import ModelSpec, build_sequence_vae

# Rows of 3, 1 and 0 words: [BOS, words, EOS, PAD..].
TOKENS = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 2, 0, 0], [1, 2, 0, 0, 0]])
LENGTHS = torch.tensor([5, 3, 2])
WORDS = torch.tensor(
    [
        [False, True, True, True, False],
        [False, True, False, False, False],
        [False, False, False, False, False],
    ]
)


def test_the_droppable_inputs_are_the_words() -> None:
    assert torch.equal(droppable_inputs(TOKENS, LENGTHS), WORDS)
    inputs = decoder_inputs(TOKENS, LENGTHS)
    assert torch.equal(inputs.ids, TOKENS[:, :-1])
    assert inputs.lengths.tolist() == [4, 2, 1]  # BOS and the words
    # The core's rule on what decoder_inputs returns.
    expected = eligible_positions(inputs.lengths, 4, protected=inputs.protected)
    assert torch.equal(inputs.droppable(), expected)
    assert torch.equal(expected, WORDS[:, :-1])


@pytest.mark.parametrize("dropout", ["adversarial", "uniform"])
def test_training_saliency_and_pmi_read_the_same_rule(dropout) -> None:
    torch.manual_seed(0)
    spec = ModelSpec(
        vocab_size=9, embedding_dim=4, hidden_size=4, latent_dim=2, dropout=dropout, rate=0.5,
        adversary_embedding_dim=4, adversary_hidden_size=4,
    )  # fmt: skip
    model = build_sequence_vae(spec).train()
    model(TOKENS, LENGTHS)
    trained_on = model.input_embedding.last_output.eligible  # what the training step's masker saw
    assert torch.equal(trained_on, WORDS[:, :-1])
    saliency = token_saliency(model, TOKENS, LENGTHS, num_samples=4)
    assert torch.equal(saliency.eligible, WORDS)
    pmi = next_word_pmi(model.eval(), TOKENS, LENGTHS)
    assert torch.equal(~pmi.isnan(), WORDS)
