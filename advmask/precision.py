"""Float32 islands in a bf16 (autocast) forward pass.

Under ``--precision bf16`` the matrix products run in bfloat16 (8 significant bits), but a few
small layers produce values that must keep float32's 24 bits: the posterior's mean and
log-variance (from which ``z`` and the KL are computed) and the adversary's score head (whose
scores the exactly-K selection sorts: bfloat16 scores would tie where float32 ones do not, and
ties are broken by position). Those layers are tiny next to the recurrences and the output
projection, so running them in float32 costs nothing measurable.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["full_precision"]

HALF_DTYPES = (torch.bfloat16, torch.float16)


def full_precision(layer: nn.Module, inputs: Tensor) -> Tensor:
    """``layer(inputs)`` with autocast off and half-precision inputs upcast to float32.

    Without autocast and with float32/float64 inputs this is ``layer(inputs)``, bit for bit.

    Args:
        layer: a module whose parameters are float32 (the master weights) or float64.
        inputs: (..., F) float inputs of any dtype.

    Returns:
        ``layer``'s output in float32 (float64 for float64 inputs and parameters).
    """
    if inputs.dtype in HALF_DTYPES:
        inputs = inputs.float()
    with torch.autocast(inputs.device.type, enabled=False):
        return layer(inputs)
