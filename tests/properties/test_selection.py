"""Properties of hard bottom-K selection (SPEC §2.3-2.4) on generated problems.

The examples (ties, empty rows, half precision, the straight-through combination, degenerate
rows, validation) are in tests/test_selection.py.
"""

import itertools

import torch
from hypothesis import given
from hypothesis import strategies as st

from advmask.hard_selection import hard_bottom_k

from .strategies import selection_problems


def brute_force_bottom_k(scores: torch.Tensor, k: int, eligible: torch.Tensor) -> torch.Tensor:
    """The K-subset of eligible positions with the smallest score sum (unique if distinct)."""
    positions = torch.nonzero(eligible).flatten().tolist()
    best = min(itertools.combinations(positions, k), key=lambda s: sum(float(scores[i]) for i in s))
    mask = torch.zeros_like(scores)
    mask[list(best)] = 1.0
    return mask


@given(selection_problems())
def test_exactly_k_and_only_eligible(problem) -> None:
    mask = hard_bottom_k(problem.scores, problem.k, problem.eligible)
    assert torch.equal(mask.sum(1).long(), problem.k)
    assert torch.all(mask[~problem.eligible] == 0)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}


@given(selection_problems(max_len=9))
def test_matches_brute_force(problem) -> None:
    mask = hard_bottom_k(problem.scores, problem.k, problem.eligible)
    for row in range(problem.scores.shape[0]):
        expected = brute_force_bottom_k(
            problem.scores[row], int(problem.k[row]), problem.eligible[row]
        )
        assert torch.equal(mask[row], expected)


@given(selection_problems())
def test_selected_scores_below_unselected(problem) -> None:
    mask = hard_bottom_k(problem.scores, problem.k, problem.eligible).bool()
    for row in range(problem.scores.shape[0]):
        chosen = problem.scores[row][mask[row]]
        rest = problem.scores[row][problem.eligible[row] & ~mask[row]]
        if chosen.numel() and rest.numel():
            assert chosen.max() < rest.min()


@given(selection_problems(), st.data())
def test_invariant_to_monotone_maps_and_off_eligible_values(problem, data) -> None:
    mask = hard_bottom_k(problem.scores, problem.k, problem.eligible)
    garbage = data.draw(st.sampled_from([float("nan"), float("inf"), -float("inf"), -1e9]))
    changed = torch.where(problem.eligible, torch.exp(problem.scores) * 3 - 2, garbage)
    assert torch.equal(hard_bottom_k(changed, problem.k, problem.eligible), mask)


@given(selection_problems(), st.randoms(use_true_random=False))
def test_permutation_equivariance(problem, rnd) -> None:
    perm = list(range(problem.scores.shape[1]))
    rnd.shuffle(perm)
    perm = torch.tensor(perm)
    mask = hard_bottom_k(problem.scores, problem.k, problem.eligible)
    permuted = hard_bottom_k(problem.scores[:, perm], problem.k, problem.eligible[:, perm])
    assert torch.equal(permuted, mask[:, perm])
