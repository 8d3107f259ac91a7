"""Every per-row draw of the VAE's training pass is a shard's rows of one process's draw.

Under torchrun a rank computes rows ``start:stop`` of a global batch of ``N`` rows with
``row_draws=RowDraws(start, stop, N)``. Here the blocks of two ranks are run one after the other
(each from the same seed) and put together must be the whole batch's pass: the posterior
sample ``z``, the masker's noise (adversarial, uniform, Bernoulli), the decoders' dropout and
the draws of the semi-amortised refinement. A draw that is not told its rows gives the second
block the noise of rows ``0:stop - start`` instead, and the comparison fails.
"""

from __future__ import annotations

from functools import partial

import pytest
import torch

from advmask import AdversarialMasker, UniformMasker
from advmask.row_draws import RowDraws
from advmask.seqvae.models import DoubleLSTMDecoder, LSTMDecoder, LSTMEncoder, TransformerDecoder
from advmask.seqvae.semi_amortized import refine_posterior
from advmask.seqvae.vae import SequenceVAE
from tests.seqvae.test_vae import VOCAB, batch

BLOCKS = [(0, 2), (2, 5)]
MASKERS = {
    "none": lambda: None,
    "adversarial": lambda: AdversarialMasker(VOCAB, rate=0.5, embedding_dim=8, hidden_size=8),
    "uniform": lambda: UniformMasker(0.5),
    "bernoulli": lambda: UniformMasker(0.5, mode="bernoulli"),
}
DECODERS = {
    "lstm": LSTMDecoder,
    "double-lstm": DoubleLSTMDecoder,
    # dropout=0: the blocks' own dropout is drawn inside PyTorch's layers, per shard
    "transformer": lambda *sizes, **options: TransformerDecoder(*sizes, dropout=0.0, **options),
}


def training_model(masker: str, decoder: str) -> SequenceVAE:
    torch.manual_seed(0)
    vae = SequenceVAE(
        LSTMEncoder(VOCAB, 8, 12, 3),
        DECODERS[decoder](VOCAB, 8, 12, 3, dropout_in=0.3, dropout_out=0.4),
        MASKERS[masker](),
    )
    return vae.to(torch.float64).train()


def run(vae: SequenceVAE, tokens, lengths, rows: RowDraws | None, **options):
    torch.manual_seed(3)
    draws = {} if rows is None else {"row_draws": rows}
    out = vae(tokens, lengths, **draws, **options)
    mask = None if out.masker is None else out.masker.mask.detach()
    return out.reconstruction.detach(), mask, torch.get_rng_state()


@pytest.mark.parametrize("decoder", list(DECODERS))
@pytest.mark.parametrize("masker", list(MASKERS))
def test_two_shards_put_together_are_the_whole_batch(masker, decoder) -> None:
    vae = training_model(masker, decoder)
    tokens, lengths = batch([4, 6, 5, 3, 6], seed=2)
    reconstruction, mask, state = run(vae, tokens, lengths, None)
    parts = [
        run(vae, tokens[start:stop], lengths[start:stop], RowDraws(start, stop, 5))
        for start, stop in BLOCKS
    ]
    # Per-row arithmetic on fewer rows may round otherwise; a wrong draw changes it by O(1).
    torch.testing.assert_close(
        torch.cat([p[0] for p in parts]), reconstruction, rtol=1e-10, atol=1e-10
    )
    if mask is not None:
        assert torch.equal(torch.cat([p[1] for p in parts]), mask)
    assert all(torch.equal(p[2], state) for p in parts)  # each rank's generator stays in step
    # The comparison can fail: the second block alone draws the noise of rows 0:3.
    alone = run(vae, tokens[2:], lengths[2:], None)[0]
    assert not torch.allclose(alone, reconstruction[2:], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("decoder", ["lstm", "double-lstm"])
def test_the_refinement_draws_the_rows_of_the_global_batch(decoder) -> None:
    # Each SVI step draws z and the decoder's dropout (double-lstm: in its reference loop).
    vae = training_model("none", decoder)
    refine = partial(refine_posterior, vae, steps=2, lr=0.3)
    tokens, lengths = batch([4, 6, 5, 3, 6], seed=2)
    reconstruction, _, state = run(vae, tokens, lengths, None, refine=refine)
    parts = [
        run(vae, tokens[start:stop], lengths[start:stop], RowDraws(start, stop, 5), refine=refine)
        for start, stop in BLOCKS
    ]
    torch.testing.assert_close(
        torch.cat([p[0] for p in parts]), reconstruction, rtol=1e-10, atol=1e-10
    )
    assert all(torch.equal(p[2], state) for p in parts)
