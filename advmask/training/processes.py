"""Independent runs at once, each in its own process: a grid on a CPU machine.

Small models do not keep two CPU cores busy from one process, but two one-thread processes do:
on 2 cores a small grid of the demo ran 1.57x [1.51-1.64] as fast in two one-thread processes
as in one process with torch's two threads, which were only 1.14x as fast as one thread
(``benchmarks/bench_jobs.py``, median [min-max] of paired repeats). Each
process is started fresh (``spawn``): nothing of the parent's torch state, threads or locks is
copied into it, except the value-check switch (:func:`advmask.set_value_checks`), which each
process starts with as the parent has it.

The processes end with this one: each watches its parent and, once the parent is gone (killed
outright), stops itself with a SIGTERM, which a run honours as a stop that keeps its work
(:class:`~advmask.training.signals.StopRequest`). A Ctrl-C reaches every process of the
terminal: a process in the middle of a run stops that run in its own way; one still starting
(importing torch) ignores it, and takes no item after it.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from typing import Any

import torch

from advmask.checks import set_value_checks, value_checks_enabled
from advmask.training.signals import StopRequest

__all__ = ["map_in_processes"]


def map_in_processes(
    function: Callable[[Any], Any],
    items: Iterable[Any],
    jobs: int,
    *,
    threads: int = 1,
    on_result: Callable[[Any, Any], None] | None = None,
) -> list[Any]:
    """``[function(item) for item in items]``, ``jobs`` items at a time in separate processes.

    Args:
        function: a picklable callable (a module-level function, or a
            ``functools.partial`` of one); its return value must be picklable too.
        items: its arguments, picklable.
        jobs: processes at once; ``1`` calls ``function`` in this process, one item after
            the other.
        threads: torch CPU threads of each process (``torch.set_num_threads``). Each process
            also starts with this one's value-check switch (:func:`advmask.set_value_checks`).
        on_result: called in this process with each item and its result as soon as that item
            is done (in the order items finish), for example to print a line.

    Returns:
        The results in the order of ``items``.

    Raises:
        ValueError: ``jobs`` or ``threads`` below 1.
        Exception: the first exception that a call raised, as it was raised in its process
            (an :class:`~advmask.training.signals.InterruptedRunError` of a run stopped by
            Ctrl-C says what it kept). After it no item starts, and the items in progress end
            as they would alone.
        KeyboardInterrupt: a SIGINT or SIGTERM reached this process (Ctrl-C reaches every
            process of the terminal, and each run stops in its own way): no item starts after
            it, and those in progress end first; a second one raises at once.

    Example:
        >>> map_in_processes(abs, [-2, 3], jobs=1)
        [2, 3]
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    items = list(items)
    if jobs == 1 or len(items) < 2:
        results = []
        for item in items:
            results.append(function(item))
            if on_result is not None:
                on_result(item, results[-1])
        return results
    # Items are handed out one at a time as processes free up (not queued ahead), so that after
    # an error or a stop nothing new starts.
    waiting = list(enumerate(items))[::-1]
    running: dict[Future[Any], int] = {}
    done: dict[int, Any] = {}
    error: BaseException | None = None
    context = multiprocessing.get_context("spawn")
    stopping = context.Event()  # set on a stop: a process takes no item after it
    with StopRequest() as stop, ProcessPoolExecutor(
        min(jobs, len(items)), mp_context=context, initializer=_start_process,
        initargs=(threads, value_checks_enabled(), os.getpid(), stopping),
    ) as pool:  # fmt: skip
        while running or waiting:
            while waiting and len(running) < jobs and error is None and not stop.requested:
                index, item = waiting.pop()
                with _interrupts_held_back():  # submit starts the processes
                    running[pool.submit(_unless_stopping, function, item)] = index
            if not running:
                break
            # Not blocked for long: a stop must reach the processes that start items.
            finished, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
            if stop.requested:
                stopping.set()
            for future in finished:
                index = running.pop(future)
                if (raised := future.exception()) is not None:
                    if not isinstance(raised, _NotStartedError):
                        error = error or raised
                    continue
                done[index] = future.result()
                if on_result is not None:
                    on_result(items[index], done[index])
    if error is not None:
        raise error
    if stop.requested:  # a stop for this process alone: the runs in progress ended as usual
        raise KeyboardInterrupt
    return [done[index] for index in range(len(items))]


class _NotStartedError(Exception):
    """An item a process did not start because a stop came first."""


# In a process of the pool (set by _start_process): the parent's stop event and pid.
_stopping: Any = None
_parent: int | None = None


def _unless_stopping(function: Callable[[Any], Any], item: Any) -> Any:
    if _stopping is not None and _stopping.is_set():
        raise _NotStartedError
    try:
        return function(item)
    finally:
        if _parent is not None and os.getppid() != _parent:
            # The run ended after its parent (it stopped on _end_with's SIGTERM and kept its
            # work); no one reads the result, and the pool's queues would keep us waiting.
            os._exit(1)


@contextmanager
def _interrupts_held_back() -> Iterator[None]:
    """SIGINT blocked while processes are started: they start with it blocked (the mask is
    inherited), so that a Ctrl-C during their start-up is no traceback of theirs; this
    process gets its own Ctrl-C once it is unblocked."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _start_process(threads: int, value_checks: bool, parent: int, stopping: Any) -> None:
    """What a fresh process takes over from the one that started it, and how it ends."""
    global _stopping, _parent
    _stopping, _parent = stopping, parent
    torch.set_num_threads(threads)
    set_value_checks(value_checks)
    # Between runs a Ctrl-C is the parent's to act on (a run's StopRequest takes it over while
    # the run lasts); a Ctrl-C pending since the start-up is dropped here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    threading.Thread(target=_end_with, args=(parent,), daemon=True).start()


def _end_with(parent: int) -> None:
    """Stop this process (SIGTERM: a run checkpoints and ends) once ``parent`` is gone."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)
