"""Relaxations of "the K smallest scores", selected by name.

A relaxation is a function

.. code-block:: python

    relax(scores, k, eligible, *, generator=None, row_draws=None, **options) -> soft

with ``scores`` (B, T) float32/float64, ``k`` (B,) int64 and ``eligible`` (B, T) bool. It
returns a (B, T) soft mask in the dtype of ``scores`` that is differentiable in ``scores``,
exactly 0 off ``eligible``, and approximates the hard mask of the ``k[b]`` smallest eligible
scores (1 = drop). Callers (:func:`advmask.bottom_k`) guarantee a well-posed problem: every row
has ``n_b >= 2`` eligible positions, ``1 <= k[b] <= n_b - 1`` and finite scores everywhere.
``k = 0``, ``k = n`` and padding are handled once, outside the relaxations. A stochastic
relaxation draws its noise from ``generator``, per row through ``row_draws``
(:class:`~advmask.row_draws.RowDraws`) when one is given: under ``torchrun`` the masker passes
the rows of the global batch its ``B`` rows are, so that each row gets one process's noise. A
deterministic relaxation ignores both (it must still accept ``row_draws`` to run sharded).

The registry is defined in ``advmask.relaxations.registry`` and re-exported here; importing
this package registers the built-in relaxations. Register your own with
:func:`register_relaxation`.
"""

# The built-in modules register themselves on import. Each imports only the registry module,
# never this package, so importing them here at the top cannot meet a half-initialised package.
from advmask.relaxations import euclidean, lml, perturbed, sinkhorn, softmax, sst  # noqa: F401
from advmask.relaxations.registry import (
    RELAXATIONS,
    Relaxation,
    get_relaxation,
    parse_relaxation_options,
    register_relaxation,
)

__all__ = [
    "RELAXATIONS",
    "Relaxation",
    "get_relaxation",
    "parse_relaxation_options",
    "register_relaxation",
]
