"""advmask: adversarial masking of autoregressive decoder inputs.

``1`` in every mask of this library means "drop the decoder input at this position".
"""

from advmask.budget import eligible_positions, num_to_drop
from advmask.outputs import MaskerOutput
from advmask.relaxations import RELAXATIONS, get_relaxation, register_relaxation
from advmask.reversal import GradientReversal, dann_schedule, grad_reverse
from advmask.selection import bottom_k, hard_bottom_k, straight_through

__version__ = "0.1.0.dev0"

__all__ = [
    "RELAXATIONS",
    "GradientReversal",
    "MaskerOutput",
    "bottom_k",
    "dann_schedule",
    "eligible_positions",
    "get_relaxation",
    "grad_reverse",
    "hard_bottom_k",
    "num_to_drop",
    "register_relaxation",
    "straight_through",
]
