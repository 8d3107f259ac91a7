"""advmask.training.processes: runs side by side, each in a process of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from advmask import set_value_checks, value_checks_enabled
from advmask.training.processes import map_in_processes
from advmask.training.signals import StopRequest

ROOT = Path(__file__).resolve().parents[2]


def where_and_how(item: int) -> tuple[int, int, int]:
    """The item, the process that computed it and that process's torch threads."""
    if item < 0:
        raise ValueError(f"item {item} is negative")
    return item, os.getpid(), torch.get_num_threads()


def checks_on(item: int) -> bool:
    """Whether value checks are on in the process that computes the item."""
    return value_checks_enabled()


def started(task: tuple[str, int]) -> int:
    """Leaves a file named after the item in the folder, then takes item/4 seconds."""
    folder, item = task
    (Path(folder) / str(item)).touch()
    if item < 0:
        raise ValueError(f"item {item} is negative")
    time.sleep(item / 4)
    return item


def test_results_in_the_order_of_the_items_from_other_processes_with_their_threads() -> None:
    finished = []
    results = map_in_processes(
        where_and_how, [3, 1, 2], jobs=2, threads=1, on_result=lambda i, r: finished.append(i)
    )
    assert [item for item, _, _ in results] == [3, 1, 2]
    processes = {pid for _, pid, _ in results}
    assert os.getpid() not in processes and len(processes) <= 2
    assert all(threads == 1 for _, _, threads in results)
    assert sorted(finished) == [1, 2, 3]  # once each, in the order they ended


@pytest.mark.parametrize("enabled", [False, True])
def test_each_process_starts_with_this_ones_value_check_switch(enabled: bool) -> None:
    set_value_checks(enabled)
    try:
        assert map_in_processes(checks_on, [0, 1], jobs=2) == [enabled, enabled]
    finally:
        set_value_checks(True)


def test_one_job_runs_here_one_item_after_the_other() -> None:
    finished = []
    results = map_in_processes(
        where_and_how, [2, 5], jobs=1, on_result=lambda i, r: finished.append(i)
    )
    assert [(item, pid) for item, pid, _ in results] == [(2, os.getpid()), (5, os.getpid())]
    assert finished == [2, 5]


def test_a_call_that_raises_raises_here_with_its_message() -> None:
    with pytest.raises(ValueError, match="item -1 is negative"):
        map_in_processes(where_and_how, [1, -1, 2], jobs=2)


@pytest.mark.parametrize(("jobs", "threads", "name"), [(0, 1, "jobs"), (2, 0, "threads")])
def test_bad_counts_name_the_argument(jobs: int, threads: int, name: str) -> None:
    with pytest.raises(ValueError, match=f"{name} must be at least 1, got 0"):
        map_in_processes(where_and_how, [1], jobs=jobs, threads=threads)


def test_after_an_error_nothing_starts_and_the_runs_in_progress_end(tmp_path: Path) -> None:
    tasks = [(str(tmp_path), item) for item in (4, -1, 2, 3)]
    with pytest.raises(ValueError, match="item -1 is negative"):
        map_in_processes(started, tasks, jobs=2)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["-1", "4"]


def test_a_stop_starts_nothing_more_and_raises_after_the_runs_in_progress(tmp_path: Path) -> None:
    finished = []

    def stop_after_the_first(task: tuple[str, int], result: int) -> None:
        finished.append(result)
        if len(finished) == 1:
            # Item 4 in progress first: on a loaded machine its process may still be starting,
            # and an item not yet started when the stop comes is (rightly) never started.
            assert _wait_for((tmp_path / "4").exists, 60)
            os.kill(os.getpid(), signal.SIGTERM)  # for this process alone, as `kill PID` sends

    tasks = [(str(tmp_path), item) for item in (1, 4, 2, 3)]
    with pytest.raises(KeyboardInterrupt):
        map_in_processes(started, tasks, jobs=2, on_result=stop_after_the_first)
    assert finished == [1, 4]  # the run in progress ended; 2 and 3 never started
    assert sorted(path.name for path in tmp_path.iterdir()) == ["1", "4"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are restored


def wait_for_a_stop(task: tuple[str, int]) -> int:
    """Leaves ``<pid>.started``, runs until a SIGINT/SIGTERM, then leaves ``<pid>.stopped``."""
    folder, item = task
    with StopRequest() as stop:
        (Path(folder) / f"{os.getpid()}.started").touch()
        deadline = time.monotonic() + 120
        while not stop.requested and time.monotonic() < deadline:
            time.sleep(0.05)
    (Path(folder) / f"{os.getpid()}.stopped").touch()
    return item


def _wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)
    return condition()


def test_processes_stop_their_runs_when_their_parent_is_killed(tmp_path: Path) -> None:
    script = (
        "from advmask.training.processes import map_in_processes\n"
        "from tests.training.test_processes import wait_for_a_stop\n"
        f"map_in_processes(wait_for_a_stop, [({str(tmp_path)!r}, 0), ({str(tmp_path)!r}, 1)],"
        " jobs=2)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env)
    try:
        assert _wait_for(lambda: len(list(tmp_path.glob("*.started"))) == 2, 120)
    finally:
        parent.kill()  # SIGKILL: nothing of the parent runs after it
        parent.wait()
    workers = [int(p.name.split(".")[0]) for p in tmp_path.glob("*.started")]
    # Each worker stopped its run as a SIGTERM stops it (a run checkpoints there) and ended.
    assert _wait_for(lambda: len(list(tmp_path.glob("*.stopped"))) == 2, 30)
    assert _wait_for(lambda: not any(_alive(pid) for pid in workers), 30)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose: its parent (init, a subreaper) has not reaped it yet.
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split(")")[-1].split()[0] == "Z")
