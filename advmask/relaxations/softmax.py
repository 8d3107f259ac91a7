"""``"softmax"``: successive softmax (Plötz & Roth 2018; Xie & Ermon 2019).

``k`` rounds of softmax over ``w = -s``; after each round the log of the mass not yet taken is
added to ``w`` (before dividing by ``tau``, as in the ``ermongroup/subsets`` reference), and the
rounds' softmaxes are summed::

    w = -s;  a = 0;  soft = 0
    repeat k times:  w += log(max(1 - a, tiny));  a = softmax(w / tau);  soft += a

Each round sums to 1, so ``soft`` sums to ``k`` exactly. Unlike the other relaxations, ``soft``
is **not** a vector of marginals: entries can exceed 1 (``s = (0, 1)``, ``k = 2``, ``tau = 1``
gives ``(1.2311, 0.7689)``), and for ``k >= 2`` the Jacobian has no sign guarantee and is not
symmetric. Backward is autograd through the ``k`` rounds.
"""

from __future__ import annotations

import torch
from torch import Tensor

from advmask.checks import check_positive
from advmask.relaxations.registry import register_relaxation
from advmask.row_draws import RowDraws

# The reference clamps 1 - a at float32's smallest normal number, for every dtype.
TINY = torch.finfo(torch.float32).tiny


@register_relaxation("softmax")
def successive_softmax(
    scores: Tensor,
    k: Tensor,
    eligible: Tensor,
    *,
    generator: torch.Generator | None = None,
    row_draws: RowDraws | None = None,
    temperature: float = 0.1,
) -> Tensor:
    """Sum of ``k`` successive softmaxes of ``-scores / temperature`` over eligible positions.

    Rows with different ``k`` share the loop up to ``max(k)``; a row stops accumulating after
    its own ``k`` rounds. Cost O(T * max k) per row.

    Args:
        scores: (B, T) float32/float64 scores, finite.
        k: (B,) int64 number of rounds (= positions to select) per row, ``1 <= k[b] <= n_b - 1``.
        eligible: (B, T) bool, True where a position may be selected (``n_b >= 2`` per row).
        generator, row_draws: unused (deterministic relaxation).
        temperature: tau > 0; smaller is sharper.

    Returns:
        (B, T) non-negative soft mask in the dtype of ``scores`` (1 = drop), exactly 0 off
        ``eligible``; each row sums to ``k[b]`` up to rounding. Entries may exceed 1.

    Raises:
        ValueError: if ``temperature`` is not a finite float > 0.

    Example:
        >>> successive_softmax(torch.tensor([[0.0, 1.0]]), torch.tensor([2]),
        ...                    torch.ones(1, 2, dtype=torch.bool), temperature=1.0)
        tensor([[1.2311, 0.7689]])
    """
    temperature = check_positive(temperature, "temperature")
    # -inf is safe inside softmax here: every row has an eligible (finite) entry, so masked
    # entries get probability exactly 0 and gradient exactly 0.
    logits = torch.where(eligible, -scores, float("-inf"))
    taken = torch.zeros_like(scores)
    soft = torch.zeros_like(scores)
    # One host sync for the loop bound.
    for round_ in range(1, int(k.max()) + 1):
        logits = logits + torch.log(torch.clamp_min(1 - taken, TINY))
        taken = torch.softmax(logits / temperature, dim=1)
        soft = soft + torch.where((round_ <= k).unsqueeze(1), taken, 0.0)
    return torch.where(eligible, soft, torch.zeros_like(soft))
