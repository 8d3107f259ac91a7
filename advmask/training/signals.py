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

    A second signal raises :class:`KeyboardInterrupt` at once, except a SIGTERM after a
    SIGINT: that is a launcher passing the same Ctrl-C on (``torchrun`` workers get the
    terminal's SIGINT and then the agent's SIGTERM a millisecond later), so it is the same
    request. The previous handlers are restored on leaving the ``with`` block.

    Example:
        >>> import os, signal
        >>> with StopRequest() as stop:
        ...     os.kill(os.getpid(), signal.SIGINT)
        ...     stop.requested
        True
    """

    def __init__(self) -> None:
        self.requested = False
        self._received: list[int] = []
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        passed_on = self._received == [signal.SIGINT] and signum == signal.SIGTERM
        self._received.append(signum)
        if self.requested and not passed_on:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = True
