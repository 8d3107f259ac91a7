"""RunLock under contention (issue 36): processes racing on one folder, exactly one holder.

Each trial starts the contenders at one barrier; a winner holds the lock until every contender
has tried, so a second holder at any moment would be counted. Spawned processes (a fresh
interpreter each, as ``--jobs`` starts them) stay up for all the trials.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from advmask.training.checkpoint import RunLock, RunLockedError

CONTENDERS = 4
TRIALS = 25


def _contend(folder: str, start, tried) -> bool:
    """Try to take the lock once the others are ready; hold it until all have tried."""
    start.wait()
    try:
        lock = RunLock(folder).__enter__()
    except RunLockedError:
        tried.wait()
        return False
    tried.wait()
    lock.__exit__(None, None, None)
    return True


def _dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    return int(child.stdout)


@pytest.mark.parametrize("stale", [False, True], ids=["fresh folder", "stale lock"])
def test_exactly_one_of_racing_processes_holds_the_lock(tmp_path: Path, stale: bool) -> None:
    context = multiprocessing.get_context("spawn")
    dead = _dead_pid()
    with context.Manager() as manager, context.Pool(CONTENDERS) as pool:
        for trial in range(TRIALS):
            folder = tmp_path / f"trial{trial}"
            if stale:  # left by a process that was killed: taken over by exactly one
                folder.mkdir()
                (folder / ".lock").write_text(f"{socket.gethostname()} {dead}\n")
            start, tried = manager.Barrier(CONTENDERS), manager.Barrier(CONTENDERS)
            holders = pool.starmap(_contend, [(str(folder), start, tried)] * CONTENDERS)
            assert sum(holders) == 1, f"trial {trial}: {sum(holders)} holders"
            assert not (folder / ".lock").exists()  # the holder released it
            leftovers = [p.name for p in folder.iterdir()]
            assert leftovers == [], leftovers


def test_a_lock_is_never_seen_half_written(tmp_path: Path, monkeypatch) -> None:
    # The file appears under its name with its content, never empty: a contender reading it
    # between its creation and its write would take a live lock for a dead one.
    seen = []
    real_link = os.link

    def watching_link(source, target, *args, **kwargs):
        seen.append(Path(source).read_text())
        return real_link(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "link", watching_link)
    with RunLock(tmp_path) as lock:
        assert seen == [lock.path.read_text()] and seen[0].split()[1] == str(os.getpid())


def test_leaving_never_deletes_a_lock_that_is_not_ours(tmp_path: Path) -> None:
    first = RunLock(tmp_path).__enter__()
    first.path.unlink()  # a user deleted it, as the message of a refused process allows
    with RunLock(tmp_path) as second:
        first.__exit__(None, None, None)
        assert second.path.is_file()  # the second holder's lock survives the first leaving
    assert not second.path.exists()
