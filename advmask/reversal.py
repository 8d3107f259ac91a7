"""Gradient reversal (Ganin & Lempitsky, 2015).

Identity in the forward pass, ``-scale * grad`` in the backward pass. Placed on the drop mask,
it lets one loss train two players: the decoder minimises the loss, and everything upstream of
the reversal (the adversary's score network) receives the negated gradient and so maximises it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, autograd, nn

from advmask.checks import check_non_negative


class _GradReverse(autograd.Function):
    # ``scale`` is a Python float kept on ctx: no tensors are saved for backward.
    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, scale: float) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, float], output: Tensor) -> None:
        ctx.scale = inputs[1]

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None]:
        return grad_output * (-ctx.scale), None


def grad_reverse(x: Tensor, scale: float = 1.0) -> Tensor:
    """Identity forward; multiplies the incoming gradient by ``-scale`` backward.

    Args:
        x: tensor of any shape.
        scale: non-negative reversal strength ``alpha``; 0 blocks the gradient.

    Returns:
        A tensor equal to ``x`` (a view of it).

    Example:
        >>> x = torch.ones(3, requires_grad=True)
        >>> grad_reverse(x, scale=0.5).sum().backward()
        >>> x.grad
        tensor([-0.5000, -0.5000, -0.5000])
    """
    return _GradReverse.apply(x, check_non_negative(scale, "scale"))


@dataclass(frozen=True)
class DannSchedule:
    """The DANN ramp ``2 / (1 + exp(-gamma * p)) - 1`` with ``p = min(step / total_steps, 1)``.

    A small frozen object rather than a closure, so that a masker holding it can be pickled
    and deep-copied (a checkpoint of a whole model, ``copy.deepcopy`` for weight averaging).
    Build it with :func:`dann_schedule`, which validates the arguments.

    Attributes:
        total_steps: number of steps over which the ramp rises (> 0).
        gamma: steepness.
    """

    total_steps: int
    gamma: float = 10.0

    def __call__(self, step: int) -> float:
        """The reversal scale at the (0-based) ``step``."""
        progress = min(step / self.total_steps, 1.0)
        return 2.0 / (1.0 + math.exp(-self.gamma * progress)) - 1.0


def dann_schedule(total_steps: int, gamma: float = 10.0) -> DannSchedule:
    """The DANN ramp ``2 / (1 + exp(-gamma * p)) - 1`` with ``p = step / total_steps``.

    Rises from 0 at step 0 towards 1 at ``total_steps`` (0.9866 for ``gamma = 10``), and stays
    there afterwards.

    Args:
        total_steps: number of steps over which the ramp rises (> 0).
        gamma: steepness.

    Returns:
        A :class:`DannSchedule`: a picklable function of the (0-based) step returning the
        reversal scale.

    Example:
        >>> ramp = dann_schedule(100)
        >>> ramp(0), round(ramp(100), 4)
        (0.0, 0.9999)
    """
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps <= 0:
        raise ValueError(f"total_steps must be an int > 0, got {total_steps!r}")
    return DannSchedule(total_steps, float(gamma))


class GradientReversal(nn.Module):
    """Module form of :func:`grad_reverse`.

    Args:
        scale: a non-negative float, or a function of the step returning one (for example
            :func:`dann_schedule`). With a function, the step is the number of forward calls
            made in training mode so far; it is saved in the module's state dict.

    Example:
        >>> reversal = GradientReversal(scale=2.0)
        >>> x = torch.ones(2, requires_grad=True)
        >>> reversal(x).sum().backward()
        >>> x.grad
        tensor([-2., -2.])
    """

    def __init__(self, scale: float | Callable[[int], float] = 1.0) -> None:
        super().__init__()
        if not callable(scale):
            check_non_negative(scale, "scale")
        self.scale = scale
        self.step = 0

    def current_scale(self) -> float:
        """The scale the next forward call will use."""
        return float(self.scale(self.step)) if callable(self.scale) else float(self.scale)

    def forward(self, x: Tensor) -> Tensor:
        """Reverse the gradient of ``x``; advances the step counter in training mode."""
        out = grad_reverse(x, self.current_scale())
        if self.training:
            self.step += 1
        return out

    def get_extra_state(self) -> Tensor:
        # A tensor, not a dict: safetensors (and so ``save_pretrained``) holds tensors only.
        return torch.tensor(self.step, dtype=torch.int64)

    def set_extra_state(self, state: Tensor | dict[str, int]) -> None:
        # A dict ``{"step": n}`` is what checkpoints written before the tensor form hold.
        self.step = int(state["step"] if isinstance(state, dict) else state)

    def extra_repr(self) -> str:
        return f"scale={self.scale!r}"
