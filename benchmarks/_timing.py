"""Interleaved timing for noisy machines: every repeat runs every method once, shuffled.

Timing each method in its own block, one after the other, lets the machine's drift (another
job starting, the CPU clocking down) enter the ratios between methods. Here each repeat runs
every method once in a random order, so drift hits all of them alike, and ratios are formed
per repeat (paired) before they are summarised as median [min-max].
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Sequence

import torch


def interleaved(
    methods: dict[str, Callable[[], object]],
    repeats: int,
    *,
    calls_per_repeat: int = 1,
    warmup: int = 2,
    seed: int = 0,
    device: torch.device | None = None,
) -> dict[str, list[float]]:
    """Seconds per call of each method, one entry per repeat.

    Args:
        methods: name -> function to time (no arguments).
        repeats: number of repeats; each runs every method ``calls_per_repeat`` times.
        calls_per_repeat: calls averaged within one repeat (for very short methods).
        warmup: untimed calls of each method first.
        seed: seed of the shuffling.
        device: a CUDA device to synchronise before reading the clock.

    Returns:
        name -> list of ``repeats`` timings (seconds per call).
    """

    def synchronise() -> None:
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)

    for fn in methods.values():
        for _ in range(warmup):
            fn()
    synchronise()
    order = random.Random(seed)
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        names = list(methods)
        order.shuffle(names)
        for name in names:
            fn = methods[name]
            start = time.perf_counter()
            for _ in range(calls_per_repeat):
                fn()
            synchronise()
            times[name].append((time.perf_counter() - start) / calls_per_repeat)
    return times


def paired_ratios(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """Ratio per repeat of two methods timed in the same repeats."""
    return [a / b for a, b in zip(numerator, denominator, strict=True)]


def summary(values: Sequence[float], scale: float = 1.0, digits: int = 2) -> str:
    """``median [min-max]`` of ``values * scale``."""
    scaled = [v * scale for v in values]
    return (
        f"{statistics.median(scaled):.{digits}f} "
        f"[{min(scaled):.{digits}f}-{max(scaled):.{digits}f}]"
    )
