"""What AdversarialMasker and UniformMasker return (SPEC §1, §2, §5, §7): exactly K per row,
the hard forward, the mean mask and eval, gradient routing, the uniform limits and the
Monte-Carlo drop probabilities.

What the maskers are given (arguments, score networks, relaxations) is in
tests/test_masker_arguments.py.
"""

import itertools
import math
from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from torch import nn

from advmask.budget import eligible_positions, num_to_drop
from advmask.maskers import AdversarialMasker, UniformMasker, drop_probabilities
from advmask.regularizer import score_kl
from advmask.reversal import dann_schedule
from advmask.selection import bottom_k, hard_bottom_k

from ._masker_helpers import VOCAB, ConstantScores, adversarial, random_tokens
from .properties.strategies import RATES, lengths_and_length


def deterministic(masker: nn.Module):
    """The masker's noise-free choice (``mean_mask``) with the call of ``forward``."""
    return lambda tokens, lengths, protected=None, generator=None: masker.mean_mask(
        tokens, lengths, protected=protected
    )


def maskers_for(rate: float) -> dict[str, Callable]:
    return {
        "adversarial": adversarial(rate),
        "adversarial-mean": deterministic(adversarial(rate)),
        "adversarial-mean-eval": deterministic(adversarial(rate).eval()),
        "exact": UniformMasker(rate),
        "exact-mean": deterministic(UniformMasker(rate)),
        "bernoulli-mean-eval": deterministic(UniformMasker(rate, mode="bernoulli").eval()),
    }


# --- exactly K, padding and protected positions never dropped ---------------------------------


@settings(max_examples=25)
@given(lengths_and_length(), RATES, st.booleans(), st.integers(0, 2**16))
def test_exactly_k_per_row_only_at_eligible_positions(lengths_length, rate, protect_bos, seed):
    lengths, width = lengths_length
    tokens = random_tokens(lengths, width, seed)
    protected = (torch.arange(width) == 0) if protect_bos else None
    eligible = eligible_positions(lengths, width, protected)
    k = num_to_drop(rate, eligible.sum(1))
    for name, masker in maskers_for(rate).items():
        out = masker(
            tokens, lengths, protected=protected, generator=torch.Generator().manual_seed(seed)
        )
        assert out.mask.shape == tokens.shape, name
        assert torch.equal(out.k, k), name
        assert torch.equal(out.mask.detach().sum(1).long(), k), name
        assert torch.all(out.mask.detach()[~eligible] == 0), name
        assert set(out.mask.detach().unique().tolist()) <= {0.0, 1.0}, name
        assert torch.equal(out.eligible, eligible), name
        assert bool(torch.isfinite(out.regularizer)) and float(out.regularizer.detach()) >= 0, name


@pytest.mark.parametrize(
    ("rate", "n", "k"),
    [(0.5, 1, 1), (0.29, 50, 15), (0.35, 90, 32), (0.5, 3, 2), (0.0, 9, 0), (1.0, 9, 9)],
)
def test_k_is_rounded_half_up(rate, n, k) -> None:
    for masker in (adversarial(rate), UniformMasker(rate)):
        out = masker(torch.ones(1, n + 2, dtype=torch.int64), torch.tensor([n]))
        assert out.k.tolist() == [k]
        assert out.mask.detach().sum().item() == k


def test_empty_rows_and_empty_batches() -> None:
    masker = adversarial(0.5, kl_weight=1.0)
    lengths = torch.tensor([0, 4, 0])
    out = masker(random_tokens(lengths, 4), lengths)
    assert out.k.tolist() == [0, 2, 0]
    assert torch.all(out.mask[[0, 2]] == 0)
    (out.mask.sum() + out.regularizer).backward()
    for parameter in masker.parameters():
        assert parameter.grad is None or bool(torch.isfinite(parameter.grad).all())
    for m in (masker, UniformMasker(0.5), UniformMasker(0.5, mode="bernoulli")):
        for shape in ((0, 5), (2, 0)):
            out = m(torch.zeros(shape, dtype=torch.int64), torch.zeros(shape[0], dtype=torch.int64))
            assert out.mask.shape == shape and out.k.shape == (shape[0],)
            assert float(out.regularizer.detach()) == 0.0


# --- forward is the hard mask; mean_mask is deterministic; eval is the identity -------------


def test_training_forward_is_hard_bottom_k_of_sampled_scores() -> None:
    masker = adversarial(0.4).double()
    lengths = torch.tensor([7, 3, 5])
    tokens = random_tokens(lengths, 7)
    noise = torch.randn(3, 7, dtype=torch.float64)
    out = masker(tokens, lengths, noise=noise)
    hard = hard_bottom_k(out.mean + out.std * noise, out.k, out.eligible)
    assert torch.equal(out.mask, hard)
    assert out.mask.requires_grad
    # The same noise through the generator gives the same mask; a different seed another one.
    seeded = [
        masker(tokens, lengths, generator=torch.Generator().manual_seed(s)).mask for s in (1, 1, 2)
    ]
    assert torch.equal(seeded[0], seeded[1])
    drawn = torch.randn(3, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert torch.equal(seeded[0], masker(tokens, lengths, noise=drawn).mask)


def test_regularizer_is_score_kl_of_the_outputs() -> None:
    masker = adversarial(0.4, kl_weight=2.5).double()
    lengths = torch.tensor([7, 0, 5])
    out = masker(random_tokens(lengths, 7), lengths, protected=torch.arange(7) == 0)
    expected = score_kl(out.mean, out.std, out.eligible, 2.5)
    torch.testing.assert_close(out.regularizer, expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: adversarial(0.4),
        lambda: UniformMasker(0.4),
        lambda: UniformMasker(0.4, mode="bernoulli"),
    ],
)
@pytest.mark.parametrize("training", [True, False])
def test_mean_mask_is_deterministic_and_draws_no_noise(make, training) -> None:
    masker = make().train(training)
    lengths = torch.tensor([7, 3, 5, 0])
    tokens = random_tokens(lengths, 7)
    state = torch.random.get_rng_state()
    first = masker.mean_mask(tokens, lengths)
    second = masker.mean_mask(tokens, lengths)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(first.mask, second.mask)
    assert not first.mask.requires_grad
    assert torch.equal(first.mask, hard_bottom_k(first.mean.detach(), first.k, first.eligible))
    assert torch.equal(first.k, num_to_drop(0.4, first.eligible.sum(1)))


@pytest.mark.parametrize(
    "make",
    [
        lambda: adversarial(0.4),
        lambda: UniformMasker(0.4),
        lambda: UniformMasker(0.4, mode="bernoulli"),
        lambda: UniformMasker(1.0),
    ],
)
def test_eval_is_the_identity_and_draws_no_noise(make) -> None:
    # As nn.Dropout: a masker in eval mode drops nothing, whoever calls it.
    masker = make().eval()
    lengths = torch.tensor([7, 3, 5, 0])
    tokens = random_tokens(lengths, 7)
    state = torch.random.get_rng_state()
    generator = torch.Generator().manual_seed(3)
    generator_state = generator.get_state()
    out = masker(tokens, lengths, generator=generator)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(generator.get_state(), generator_state)
    assert torch.equal(out.mask, torch.zeros(4, 7)) and not out.mask.requires_grad
    assert out.k.tolist() == [0, 0, 0, 0] and float(out.regularizer) == 0.0
    assert torch.equal(out.eligible, eligible_positions(lengths, 7))
    assert out.mean.shape == out.std.shape == (4, 7)


def test_uniform_mean_mask_drops_the_first_k_eligible_positions() -> None:
    for mode in ("exact", "bernoulli"):
        out = UniformMasker(0.5, mode=mode).mean_mask(
            torch.ones(2, 6, dtype=torch.int64),
            torch.tensor([5, 2]),
            protected=torch.arange(6) == 0,
        )
        assert out.mask.tolist() == [[0, 1, 1, 0, 0, 0], [0, 1, 0, 0, 0, 0]]


# --- gradient routing: reversal on the mask, regulariser outside it ---------------------------


@pytest.mark.parametrize("scale", [1.0, 0.5])
@pytest.mark.parametrize("relaxation", ["euclidean", "sst"])
def test_mask_gradient_is_reversed_and_regularizer_is_not(scale, relaxation) -> None:
    masker = adversarial(0.4, kl_weight=0.3, grl_scale=scale, relaxation=relaxation).double()
    params = list(masker.score_network.parameters())
    lengths = torch.tensor([7, 4, 6])
    tokens = random_tokens(lengths, 7)
    noise = torch.randn(3, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    weights = torch.randn(3, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out = masker(tokens, lengths, noise=noise)
    total = torch.autograd.grad(
        (out.mask * weights).sum() + out.regularizer, params, allow_unused=True
    )
    # The same computation written out without a reversal.
    mean, std = masker.score_network(tokens, lengths)
    plain_mask = bottom_k(mean + std * noise, out.k, out.eligible, relaxation)
    plain = torch.autograd.grad(
        (plain_mask * weights).sum(), params, allow_unused=True, retain_graph=True
    )
    reg = torch.autograd.grad(score_kl(mean, std, out.eligible, 0.3), params, allow_unused=True)
    nonzero = 0
    for g_total, g_plain, g_reg in zip(total, plain, reg, strict=True):
        g_plain = torch.zeros_like(g_total) if g_plain is None else g_plain
        g_reg = torch.zeros_like(g_total) if g_reg is None else g_reg
        torch.testing.assert_close(g_total, -scale * g_plain + g_reg, rtol=1e-10, atol=1e-12)
        nonzero += int(g_plain.abs().sum() > 0)
    assert nonzero > 0


def test_scheduled_reversal_advances_only_in_training() -> None:
    masker = adversarial(0.5, grl_scale=dann_schedule(10))
    lengths = torch.tensor([5])
    tokens = random_tokens(lengths, 5)
    for _ in range(3):
        masker(tokens, lengths)
    assert masker.reversal.step == 3
    masker.eval()(tokens, lengths)
    assert masker.reversal.step == 3
    restored = adversarial(0.5, grl_scale=dann_schedule(10))
    restored.load_state_dict(masker.state_dict())
    assert restored.reversal.step == 3


def test_custom_score_network_module() -> None:
    masker = AdversarialMasker(vocab_size=VOCAB, rate=0.5, score_network=ConstantScores(0.0, 1.0))
    out = masker(torch.ones(2, 4, dtype=torch.int64), torch.tensor([4, 2]))
    assert out.k.tolist() == [2, 1] and float(out.regularizer.detach()) == 0.0


# --- uniform limits (SPEC §7) ------------------------------------------------------------------

DRAWS = 20_000
SUBSET_N, SUBSET_K = 5, 2


def assert_uniform_k_subsets(mask: torch.Tensor) -> None:
    """Chi-square over the C(5, 2) = 10 subsets, marginals and pair marginals (4.5 SE).

    Each position is dropped with probability p = K/n; over DRAWS independent rows the
    estimate has standard error sqrt(p (1 - p) / DRAWS). Pairs: p2 = K(K-1)/(n(n-1)).
    """
    mask = mask.detach().bool()
    subsets = list(itertools.combinations(range(SUBSET_N), SUBSET_K))
    index = {s: i for i, s in enumerate(subsets)}
    codes = [index[tuple(torch.nonzero(row).flatten().tolist())] for row in mask]
    counts = torch.bincount(torch.tensor(codes), minlength=len(subsets)).double()
    assert stats.chisquare(counts.numpy()).pvalue > 1e-4
    p = SUBSET_K / SUBSET_N
    marginals = mask.double().mean(0)
    assert float((marginals - p).abs().max()) < 4.5 * math.sqrt(p * (1 - p) / DRAWS)
    p2 = SUBSET_K * (SUBSET_K - 1) / (SUBSET_N * (SUBSET_N - 1))
    pairs = (mask[:, :, None] & mask[:, None, :]).double().mean(0)
    off_diagonal = ~torch.eye(SUBSET_N, dtype=torch.bool)
    assert float((pairs[off_diagonal] - p2).abs().max()) < 4.5 * math.sqrt(p2 * (1 - p2) / DRAWS)


def test_uniform_exact_draws_a_uniform_k_subset() -> None:
    masker = UniformMasker(rate=0.4)
    tokens = torch.ones(DRAWS, SUBSET_N, dtype=torch.int64)
    out = masker(tokens, torch.full((DRAWS,), SUBSET_N), generator=torch.Generator().manual_seed(0))
    assert out.k.eq(SUBSET_K).all()
    assert_uniform_k_subsets(out.mask)


def test_adversary_at_the_prior_is_exactly_k_uniform() -> None:
    # SPEC §7: mean = 0, std = 1 (what kl_weight -> infinity forces) gives the same law as
    # UniformMasker(mode="exact"). A fixed-std network with a zero head is exactly there.
    masker = adversarial(0.4, std="fixed")
    with torch.no_grad():
        masker.score_network.head.weight.zero_()
    tokens = torch.randint(1, VOCAB, (DRAWS, SUBSET_N), generator=torch.Generator().manual_seed(5))
    out = masker(tokens, torch.full((DRAWS,), SUBSET_N), generator=torch.Generator().manual_seed(1))
    assert torch.all(out.mean == 0) and float(out.regularizer.detach()) == 0.0
    assert_uniform_k_subsets(out.mask)


def test_bernoulli_counts_are_binomial_and_protected_padding_never_dropped() -> None:
    rate, n, rows = 0.3, 9, DRAWS
    masker = UniformMasker(rate=rate, mode="bernoulli")
    lengths = torch.full((rows,), n + 1)  # BOS + n words
    lengths[::2] = 4  # every other row shorter: padding at the end
    tokens = torch.ones(rows, n + 3, dtype=torch.int64)
    out = masker(
        tokens,
        lengths,
        protected=torch.arange(n + 3) == 0,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.all(out.mask[:, 0] == 0)
    assert torch.all(out.mask[torch.arange(n + 3) >= lengths.unsqueeze(1)] == 0)
    assert torch.equal(out.k, out.mask.sum(1).long())
    counts = out.k[1::2].double()  # rows with n eligible words
    variance = n * rate * (1 - rate)
    # Standard errors over N rows: mean sqrt(var / N); sample variance sqrt((mu4 - var^2) / N)
    # with the binomial fourth central moment mu4 = var (1 + 3 (n - 2) rate (1 - rate)).
    fourth = variance * (1 + 3 * (n - 2) * rate * (1 - rate))
    size = counts.numel()
    assert abs(float(counts.mean()) - n * rate) < 4.5 * math.sqrt(variance / size)
    assert abs(float(counts.var()) - variance) < 4.5 * math.sqrt((fourth - variance**2) / size)
    # Per token, not one coin per time step shared by the batch (the authors' code).
    assert not torch.all(out.mask[1::2] == out.mask[1:2])


# --- Monte-Carlo drop probabilities -------------------------------------------------------------


def test_drop_probabilities() -> None:
    lengths = torch.tensor([5, 3, 0])
    eligible = eligible_positions(lengths, 5)
    k = num_to_drop(0.4, eligible.sum(1))
    samples = 4000
    probs = drop_probabilities(
        torch.zeros(3, 5), torch.ones(3, 5), k, eligible, samples, torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(probs.sum(1), k.float(), rtol=0, atol=1e-4)
    assert torch.all(probs[~eligible] == 0)
    # Uniform at the prior: K/n per eligible position, within 4.5 standard errors.
    for row in range(2):
        p = float(k[row]) / float(lengths[row])
        se = math.sqrt(p * (1 - p) / samples)
        assert float((probs[row, : lengths[row]] - p).abs().max()) < 4.5 * se
    # Well separated means: the smallest are (almost) always dropped.
    mean = torch.tensor([[5.0, -5.0, 5.0, -5.0, 5.0]])
    probs = drop_probabilities(
        mean, torch.ones(1, 5), torch.tensor([2]), torch.ones(1, 5, dtype=torch.bool), 500
    )
    assert probs[0, [1, 3]].min() > 0.99
