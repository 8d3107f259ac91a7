"""Optimisers as the recipes build them.

The adversary's Adam updates millions of parameters (its own embedding table holds most of
them) with small elementwise kernels: PyTorch's default single-tensor loop runs about ten
kernels per parameter tensor, the fused implementation one. On one CPU thread the fused step
takes about a sixth of the time at the shapes of ``benchmarks/bench_train.py``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

# Devices on which torch.optim.Adam has a fused implementation.
_FUSED_ADAM_DEVICES = ("cpu", "cuda", "xpu", "mps")


def adam(parameters: Iterable[nn.Parameter], lr: float) -> torch.optim.Adam:
    """:class:`torch.optim.Adam` with the fused step where the parameters' device has one.

    The same update as the default implementation up to floating-point rounding.

    Args:
        parameters: the parameters to optimise, all on one device.
        lr: learning rate.

    Returns:
        The optimiser.

    Example:
        >>> optimizer = adam(nn.Linear(2, 2).parameters(), lr=1e-3)
        >>> optimizer.defaults["fused"]
        True
    """
    parameters = list(parameters)
    if not parameters:
        raise ValueError("parameters is empty: nothing to optimise")
    devices = {p.device.type for p in parameters}
    fused = len(devices) == 1 and devices <= set(_FUSED_ADAM_DEVICES)
    fused = fused and all(p.is_floating_point() for p in parameters)
    return torch.optim.Adam(parameters, lr=lr, fused=fused or None)


__all__ = ["adam"]
