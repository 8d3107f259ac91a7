"""The evaluator on several processes: W ranks give one process's numbers and noise.

Two gloo ranks are started with ``torch.multiprocessing`` (about 10 s on 2 busy cores, most of
it importing torch twice) and evaluate a tiny model on global batches of 5, 3 and 1 rows: the
5 rows split 3 / 2, and the last batch leaves rank 1 no row at all. The same function run in
this process with ``distributed=False`` is the reference.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn

from advmask.seqvae import ModelSpec, SequenceVAE, build_sequence_vae, evaluate
from advmask.seqvae.data import Batch, collate
from advmask.seqvae.models import DoubleLSTMDecoder

SPEC = ModelSpec(vocab_size=24, embedding_dim=8, hidden_size=8, latent_dim=3)
BATCH_SIZES = (5, 3, 1)
IW_SAMPLES = 4
IW_CHUNK = 3  # two calls of the decoder per batch, 3 samples then 1


def _batches() -> list[Batch]:
    """Global batches of BATCH_SIZES rows; no two sequences alike (rows identify them)."""
    sequences = [[3 + (7 * i + j) % 21 for j in range(1 + i % 4)] for i in range(sum(BATCH_SIZES))]
    starts = [sum(BATCH_SIZES[:b]) for b in range(len(BATCH_SIZES))]
    return [
        collate(sequences[start : start + size])
        for start, size in zip(starts, BATCH_SIZES, strict=True)
    ]


class _StandardNormalPosterior(nn.Module):
    """``q(z|x) = N(0, I)`` for every sequence: then ``z = 0 + exp(0) * noise`` IS the noise."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    def forward(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        zeros = torch.zeros(tokens.shape[0], self.latent_dim)
        return zeros, zeros


class _NoiseRecorder(SequenceVAE):
    """A VAE that records, per sequence, the ``z`` its decoder is given (its weights are
    irrelevant: the noise does not depend on them).

    Attributes:
        elbo_noise: token row (as a tuple) -> (D,) noise of the ELBO's ``z``.
        iw_noise: token row -> list of (S_chunk, D) importance samples, in call order.
    """

    def __init__(self) -> None:
        decoder = DoubleLSTMDecoder(
            SPEC.vocab_size, SPEC.embedding_dim, SPEC.hidden_size, SPEC.latent_dim
        )
        super().__init__(_StandardNormalPosterior(SPEC.latent_dim), decoder)
        self.elbo_noise: dict[tuple[int, ...], Tensor] = {}
        self.iw_noise: dict[tuple[int, ...], list[Tensor]] = defaultdict(list)

    def reconstruction_nll(self, tokens, lengths, z, drop_mask=None):
        for row, noise in zip(tokens.tolist(), z, strict=True):
            self.elbo_noise[tuple(row)] = noise.clone()
        return super().reconstruction_nll(tokens, lengths, z, drop_mask)

    def log_likelihood(self, tokens, lengths, z, **options):
        for n, row in enumerate(tokens.tolist()):
            self.iw_noise[tuple(row)].append(z[:, n].clone())
        return super().log_likelihood(tokens, lengths, z, **options)


def _evaluations(state: dict[str, Tensor], distributed: bool) -> dict:
    """Everything compared: both MI estimators with IW, the generator after, the noise."""
    model = build_sequence_vae(SPEC)
    model.load_state_dict(state)
    batches = _batches()
    options = {"iw_samples": IW_SAMPLES, "iw_chunk": IW_CHUNK, "distributed": distributed}
    generator = torch.Generator().manual_seed(0)
    full = evaluate(model, batches, generator=generator, **options)
    batch = evaluate(
        model,
        batches,
        mi_estimator="batch",
        mi_batch_size=4,
        generator=torch.Generator().manual_seed(1),
        **options,
    )
    recorder = _NoiseRecorder()
    evaluate(recorder, batches, generator=torch.Generator().manual_seed(2), **options)
    return {
        "full": full,
        "batch": batch,
        "generator_after": generator.get_state(),
        "elbo_noise": recorder.elbo_noise,
        "iw_noise": {row: torch.cat(chunks) for row, chunks in recorder.iw_noise.items()},
    }


def _evaluate_on_rank(rank: int, world_size: int, init_file: str, out: str, state: dict) -> None:
    """Body of one spawned rank: join the gloo group, evaluate, save what it got."""
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        torch.save(_evaluations(state, distributed=True), Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def one_and_two_ranks(tmp_path_factory):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    out = tmp_path_factory.mktemp("evaluation")
    torch.manual_seed(0)
    state = build_sequence_vae(SPEC).state_dict()
    mp.spawn(
        _evaluate_on_rank,
        args=(2, str(out / "rendezvous"), str(out), state),
        nprocs=2,
        join=True,
    )
    ranks = [torch.load(out / f"rank{rank}.pt", weights_only=False) for rank in range(2)]
    return _evaluations(state, distributed=False), ranks


@pytest.mark.parametrize("estimator", ["full", "batch"])
def test_two_ranks_evaluate_as_one_process_when_the_rows_split_unevenly(
    one_and_two_ranks, estimator
) -> None:
    one, ranks = one_and_two_ranks
    # Sums, gathers and the MI's seed are shared: every rank returns the same result, bit for bit.
    assert ranks[0][estimator] == ranks[1][estimator]
    expected, got = dataclasses.asdict(one[estimator]), dataclasses.asdict(ranks[0][estimator])
    assert expected["iw_samples"] == IW_SAMPLES and expected["nll_iw"] is not None
    for key, value in expected.items():
        if key in ("iw_gap", "iw_gap_se"):
            # A difference of two ~20-nat float32 numbers: compare it absolutely.
            assert got[key] == pytest.approx(value, abs=1e-5), key
        elif isinstance(value, float):
            # float32 sums per rank, then over ranks, instead of per batch: ~1e-7 relative.
            assert got[key] == pytest.approx(value, rel=1e-6), key
        else:
            assert got[key] == value, key


def test_each_rank_decodes_its_rows_with_one_process_noise(one_and_two_ranks) -> None:
    one, ranks = one_and_two_ranks
    for kind in ("elbo_noise", "iw_noise"):
        rows = [set(rank[kind]) for rank in ranks]
        assert rows[0] and rows[1] and not rows[0] & rows[1], kind  # both work, none twice
        assert rows[0] | rows[1] == set(one[kind]), kind
        for rank in ranks:
            for row, noise in rank[kind].items():
                # Exact: the same draws, not the same distribution.
                assert torch.equal(noise, one[kind][row]), (kind, row)
    assert all(noise.shape == (IW_SAMPLES, SPEC.latent_dim) for noise in one["iw_noise"].values())


def test_the_generator_ends_where_one_process_leaves_it(one_and_two_ranks) -> None:
    one, ranks = one_and_two_ranks
    for rank in ranks:
        assert torch.equal(rank["generator_after"], one["generator_after"])


def test_a_wrong_estimator_is_refused_before_any_decoding() -> None:
    recorder = _NoiseRecorder()
    with pytest.raises(ValueError, match="'mean-field'"):
        evaluate(recorder, _batches(), iw_samples=2, mi_estimator="mean-field")
    assert not recorder.elbo_noise and not recorder.iw_noise
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate(recorder, [])
