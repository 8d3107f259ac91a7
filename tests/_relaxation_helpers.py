"""Random problems, row iteration and oracles shared by the relaxation tests."""

import torch
from scipy.optimize import brentq
from scipy.special import expit

from advmask.relaxations import RELAXATIONS

F64 = torch.float64


def relax(name, scores, k, eligible, **options):
    return RELAXATIONS[name](scores, k, eligible, **options)


def random_problem(seed, batch=4, length=9, scale=1.0, dtype=F64):
    """Scores ~ N(0, scale^2), varied lengths >= 2 and a per-row k in [1, n - 1]."""
    generator = torch.Generator().manual_seed(seed)
    scores = scale * torch.randn(batch, length, generator=generator, dtype=dtype)
    lengths = torch.randint(2, length + 1, (batch,), generator=generator)
    lengths[0] = length
    eligible = torch.arange(length) < lengths[:, None]
    k = 1 + (torch.rand(batch, generator=generator) * (lengths - 1)).long()
    return scores, k, eligible


def rows(scores, k, eligible):
    """(compact eligible scores as floats, k as int) for each row."""
    for row in range(scores.shape[0]):
        yield scores[row][eligible[row]].tolist(), int(k[row])


def calibrated_sigmoid_oracle(values, k, temperature):
    """sigmoid((nu - x) / tau) with sum = k, nu from scipy's Brent root finder."""

    def excess(nu):
        return sum(expit((nu - x) / temperature) for x in values) - k

    low, high = min(values) - 40 * temperature, max(values) + 40 * temperature
    nu = brentq(excess, low, high, xtol=1e-15, maxiter=500)
    return [float(expit((nu - x) / temperature)) for x in values]


def expand(compact_rows, eligible):
    """Scatter per-row compact lists back into a (B, T) float64 tensor (0 off eligible)."""
    out = torch.zeros(eligible.shape, dtype=F64)
    for row, values in enumerate(compact_rows):
        out[row, eligible[row]] = torch.tensor(values, dtype=F64)
    return out
