"""RowDraws: a block of rows draws exactly one process's draws for those rows, also in the
maskers and the relaxations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from advmask import AdversarialMasker, UniformMasker
from advmask.relaxations.perturbed import perturbed
from advmask.row_draws import RowDraws


def _draws(rows: RowDraws, x: torch.Tensor) -> list[torch.Tensor]:
    """One of each draw on the block ``x`` (B_r, 4, 3), global generator and a seeded one."""
    generator = torch.Generator().manual_seed(11)
    batch = x.shape[0]
    return [
        rows.randn_like(x[:, 0]),
        rows.randn((batch, 6), dtype=torch.float64),
        rows.rand((batch, 4)),
        rows.dropout(x, 0.3),
        rows.randn((batch, 2), generator=generator),
        rows.rand((batch, 2), generator=generator),
    ]


def _plain_draws(x: torch.Tensor) -> list[torch.Tensor]:
    """What one process draws today for the whole batch ``x`` (N, 4, 3)."""
    generator = torch.Generator().manual_seed(11)
    batch = x.shape[0]
    return [
        torch.randn_like(x[:, 0]),
        torch.randn((batch, 6), dtype=torch.float64),
        torch.rand((batch, 4)),
        F.dropout(x, 0.3, True),
        torch.randn((batch, 2), generator=generator),
        torch.rand((batch, 2), generator=generator),
    ]


def test_the_whole_batch_draws_exactly_the_plain_calls() -> None:
    x = torch.randn(5, 4, 3)
    torch.manual_seed(7)
    expected = _plain_draws(x)
    state = torch.get_rng_state()
    torch.manual_seed(7)
    got = _draws(RowDraws.whole(5), x)
    assert torch.equal(torch.get_rng_state(), state)
    for index, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert a.dtype == b.dtype and torch.equal(a, b), index


@pytest.mark.parametrize(("start", "stop"), [(0, 3), (3, 5), (1, 4), (4, 5)])
def test_a_block_draws_the_global_rows_and_leaves_the_generator_in_step(start, stop) -> None:
    x = torch.randn(5, 4, 3)
    torch.manual_seed(7)
    whole = _draws(RowDraws.whole(5), x)
    after_whole = torch.get_rng_state()
    torch.manual_seed(7)
    part = _draws(RowDraws(start, stop, 5), x[start:stop])
    assert torch.equal(torch.get_rng_state(), after_whole)
    for index, (got, expected) in enumerate(zip(part, whole, strict=True)):
        assert torch.equal(got, expected[start:stop]), index


def test_blocks_of_all_ranks_put_together_are_the_whole_draw() -> None:
    torch.manual_seed(2)
    whole = torch.randn(6, 3)
    blocks = []
    for start in range(0, 6, 2):
        torch.manual_seed(2)
        blocks.append(RowDraws(start, start + 2, 6).randn((2, 3)))
    assert torch.equal(torch.cat(blocks), whole)


def test_dropout_keeps_gradients_and_is_the_identity_outside_training() -> None:
    x = torch.randn(2, 5, requires_grad=True)
    rows = RowDraws(2, 4, 4)
    assert torch.equal(rows.dropout(x, 0.5, training=False), x)
    assert torch.equal(rows.dropout(x, 0.0), x)
    assert torch.equal(rows.dropout(x, 1.0), torch.zeros_like(x))
    rows.dropout(x, 0.5).sum().backward()
    assert set(x.grad.unique().tolist()) <= {0.0, 2.0}


@pytest.mark.parametrize("steps", [1, 4])
@pytest.mark.parametrize("blocks", [[(0, 2), (2, 5)], [(0, 1), (1, 4), (4, 5)]])
def test_dropout_of_a_batch_first_view_of_a_time_major_tensor(steps, blocks) -> None:
    # nn.LSTM(batch_first=True) returns such a view; F.dropout draws in its memory order.
    time_major = torch.randn(steps, 5, 3, dtype=torch.float64)
    torch.manual_seed(0)
    whole = F.dropout(time_major.transpose(0, 1), 0.3, True)
    parts = []
    for start, stop in blocks:
        torch.manual_seed(0)
        shard = time_major[:, start:stop].contiguous().transpose(0, 1)  # a rank's own output
        parts.append(RowDraws(start, stop, 5).dropout(shard, 0.3))
    assert torch.equal(torch.cat(parts), whole)


@pytest.mark.parametrize(
    ("start", "stop", "total"), [(0, 0, 3), (2, 1, 3), (-1, 2, 3), (0, 4, 3), (0, 1.0, 3)]
)
def test_bad_blocks_are_refused_with_their_values(start, stop, total) -> None:
    with pytest.raises(ValueError, match=f"start={start!r}, stop={stop!r}, total={total!r}"):
        RowDraws(start, stop, total)


def test_a_shape_with_another_row_count_is_refused_not_drawn() -> None:
    rows = RowDraws(0, 2, 4)
    state = torch.get_rng_state()
    with pytest.raises(ValueError, match=r"2 rows \(rows 0:2 of 4\).*got shape \(3, 5\)"):
        rows.randn((3, 5))
    with pytest.raises(ValueError, match="got shape"):
        rows.dropout(torch.ones(4, 5), 0.5)
    with pytest.raises(ValueError, match=r"got shape \(\)"):
        rows.rand(())
    assert torch.equal(torch.get_rng_state(), state)


# --------------------------------------------------------------------------------------------
# The core's per-row draws: the maskers' noise and the perturbed relaxation's
# --------------------------------------------------------------------------------------------
BLOCKS = [(0, 2), (2, 5)]  # two ranks' shards of a global batch of 5 rows
TOKENS = torch.randint(1, 20, (5, 7), generator=torch.Generator().manual_seed(4))
LENGTHS = torch.tensor([7, 3, 5, 6, 4])


def _masker_run(masker, start: int, stop: int, rows: RowDraws | None, seed: int = 5):
    """Mask (B_r, T) and the gradient (B_r, T, E) of a weighted mask sum w.r.t. the score
    network's inputs, for rows ``start:stop`` of TOKENS, told ``rows`` (or not: None)."""
    block = slice(start, stop)
    inputs = torch.randn(5, 7, 8, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    inputs = inputs[block].clone().requires_grad_()
    weights = torch.linspace(-1.0, 1.0, 7, dtype=torch.float64)
    torch.manual_seed(seed)
    draws = {} if rows is None else {"row_draws": rows}
    out = masker(TOKENS[block], LENGTHS[block], embeddings=inputs, **draws)
    if out.mask.requires_grad:  # the adversary's mask; the uniform ones carry no gradient
        (out.mask * weights).sum().backward()
    return out.mask.detach(), inputs.grad, torch.get_rng_state()


@pytest.mark.parametrize(
    "masker",
    [
        AdversarialMasker(20, rate=0.5, embedding_dim=8, hidden_size=8).double(),
        AdversarialMasker(
            20,
            rate=0.5,
            relaxation="perturbed",
            relaxation_options={"num_samples": 6, "sigma": 0.5},
            embedding_dim=8,
            hidden_size=8,
        ).double(),
        UniformMasker(0.5),
        UniformMasker(0.5, mode="bernoulli"),
    ],
    ids=["adversarial", "adversarial-perturbed", "uniform", "uniform-bernoulli"],
)
def test_shards_of_a_masker_call_are_the_whole_batch_call(masker) -> None:
    mask, grad, state = _masker_run(masker, 0, 5, None)
    parts = [_masker_run(masker, start, stop, RowDraws(start, stop, 5)) for start, stop in BLOCKS]
    assert torch.equal(torch.cat([p[0] for p in parts]), mask)
    if grad is not None:  # the adversary: its relaxation's gradient (perturbed: its noise)
        torch.testing.assert_close(torch.cat([p[1] for p in parts]), grad, rtol=1e-12, atol=0)
    assert all(torch.equal(p[2], state) for p in parts)  # the generator is where it would be
    # Without its rows, the second block gets the noise of rows 0:3: another mask.
    assert not torch.equal(_masker_run(masker, 2, 5, None)[0], mask[2:])


def test_the_perturbed_relaxation_draws_the_global_rows() -> None:
    scores = torch.randn(5, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    k = torch.tensor([1, 2, 3, 2, 1])
    eligible = torch.ones(5, 6, dtype=torch.bool)
    options = {"num_samples": 8, "sigma": 0.5}
    torch.manual_seed(3)
    whole = perturbed(scores, k, eligible, **options)
    for start, stop in BLOCKS:
        torch.manual_seed(3)
        rows = RowDraws(start, stop, 5)
        part = perturbed(scores[start:stop], k[start:stop], eligible[start:stop], row_draws=rows,
                         **options)  # fmt: skip
        assert torch.equal(part, whole[start:stop])
