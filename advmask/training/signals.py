"""Stopping a training run cleanly: Ctrl-C or SIGTERM becomes a request the loop honours."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

__all__ = ["InterruptedRunError", "StopRequest"]


class InterruptedRunError(Exception):
    """Raised by a training loop after a requested stop has been checkpointed."""


class StopRequest:
    """Turns the first SIGINT/SIGTERM into ``requested = True``, honoured at a step boundary.

    A second signal raises :class:`KeyboardInterrupt` at once. The previous handlers are
    restored on leaving the ``with`` block.

    Example:
        >>> import os, signal
        >>> with StopRequest() as stop:
        ...     os.kill(os.getpid(), signal.SIGINT)
        ...     stop.requested
        True
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = True
