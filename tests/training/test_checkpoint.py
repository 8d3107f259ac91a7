"""Atomic checkpoint and JSON files: never partial, round trips, safe loading."""

from __future__ import annotations

import json
import os
import pickle
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import IO

import pytest
import torch

from advmask.training.checkpoint import (
    CheckpointError,
    atomic_write,
    load_checkpoint,
    save_checkpoint,
    save_json,
)

OLD = b"previous complete content\n"


class WriterFailedError(RuntimeError):
    pass


def _half_then_raise(error: BaseException):
    def write(file: IO[bytes]) -> None:
        file.write(b"partial ")
        file.flush()  # the bytes reach the temporary file before the failure
        raise error

    return write


@pytest.fixture
def existing(tmp_path: Path) -> Path:
    path = tmp_path / "last.pt"
    path.write_bytes(OLD)
    return path


@pytest.mark.parametrize("error", [WriterFailedError("disk full"), KeyboardInterrupt()])
def test_failing_writer_keeps_old_file_and_leaves_no_temporary(
    existing: Path, error: BaseException
) -> None:
    with pytest.raises(type(error)):
        atomic_write(existing, _half_then_raise(error))
    assert existing.read_bytes() == OLD
    assert sorted(p.name for p in existing.parent.iterdir()) == ["last.pt"]


def test_failing_writer_creates_nothing_when_no_old_file(tmp_path: Path) -> None:
    with pytest.raises(WriterFailedError):
        atomic_write(tmp_path / "new.json", _half_then_raise(WriterFailedError()))
    assert list(tmp_path.iterdir()) == []


def test_failing_save_checkpoint_keeps_old(existing: Path) -> None:
    # torch.save fails half-way on an object it cannot pickle (a lambda) after writing a header.
    with pytest.raises(Exception, match=r"lambda|pickle|local object"):
        save_checkpoint({"weight": torch.ones(1000), "bad": lambda: None}, existing)
    assert existing.read_bytes() == OLD
    assert [p.name for p in existing.parent.iterdir()] == ["last.pt"]


def test_failing_rename_removes_temporary(existing: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise PermissionError("rename refused")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError, match="rename refused"):
        atomic_write(existing, lambda file: file.write(b"new content"))
    assert existing.read_bytes() == OLD
    assert [p.name for p in existing.parent.iterdir()] == ["last.pt"]


def test_killed_process_never_leaves_partial_target(existing: Path) -> None:
    # os._exit skips every cleanup handler, like SIGKILL: the target must still be the old file.
    script = textwrap.dedent(
        f"""
        import os
        from advmask.training.checkpoint import atomic_write

        def write(file):
            file.write(b"partial")
            file.flush()
            os._exit(3)

        atomic_write({str(existing)!r}, write)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert result.returncode == 3, result.stderr.decode()
    assert existing.read_bytes() == OLD
    leftovers = [p.name for p in existing.parent.iterdir() if p.name != "last.pt"]
    assert all(name.startswith(".last.pt.") for name in leftovers)


def test_atomic_write_replaces_and_creates_folders(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "file.bin"
    assert atomic_write(target, lambda file: file.write(b"one")) == target
    assert atomic_write(str(target), lambda file: file.write(b"two")) == target
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]


def test_file_mode_follows_umask(tmp_path: Path) -> None:
    # A checkpoint gets the permissions a plain open() would give, not tempfile's 0o600.
    previous = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "metrics.json", lambda file: file.write(b"{}"))
        reference = tmp_path / "reference"
        reference.write_bytes(b"")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(reference.stat().st_mode) == 0o644


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    state = {
        "step": 1234,
        "best_valid": 98.5,
        "label": "ptb/adversarial",
        "finished": False,
        "missing": None,
        "history": [{"epoch": 1, "loss": 3.5}],
        "shape": (2, 3),
        "model": {
            "weight": torch.randn(2, 3, generator=generator, dtype=torch.float64),
            "counts": torch.arange(5, dtype=torch.int32),
            "half": torch.randn(4, generator=generator).to(torch.bfloat16),
            "mask": torch.tensor([True, False]),
        },
        "rng": generator.get_state(),
    }
    path = save_checkpoint(state, tmp_path / "last.pt")
    loaded = load_checkpoint(path)
    assert loaded.keys() == state.keys()
    for key in ("step", "best_valid", "label", "finished", "missing", "history", "shape"):
        assert loaded[key] == state[key]
    for name, tensor in state["model"].items():
        assert loaded["model"][name].dtype == tensor.dtype
        assert torch.equal(loaded["model"][name], tensor)
    assert torch.equal(loaded["rng"], state["rng"])
    assert loaded["model"]["weight"].device == torch.device("cpu")


def test_checkpoint_overwrite_and_map_location(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"step": 1}, path)
    save_checkpoint({"step": 2, "w": torch.ones(2)}, path)
    loaded = load_checkpoint(path, map_location=torch.device("cpu"))
    assert loaded["step"] == 2 and loaded["w"].device.type == "cpu"


@pytest.mark.parametrize("kind", ["missing", "folder"])
def test_load_missing_names_path(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "run" / "last.pt"
    if kind == "folder":
        path.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no checkpoint at") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


class Opaque:
    """Not a tensor nor plain data: weights-only loading must refuse it."""


class Exploit:
    """Unpickling this would create a file if arbitrary code were executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_weights_only_refuses_arbitrary_objects(tmp_path: Path) -> None:
    path = tmp_path / "opaque.pt"
    torch.save({"step": 1, "object": Opaque()}, path)
    with pytest.raises(CheckpointError, match="objects other than tensors") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "weights_only=False" not in str(info.value)
    assert isinstance(info.value.__cause__, pickle.UnpicklingError)


def test_weights_only_does_not_execute_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"payload": Exploit(marker)}, path)
    with pytest.raises(CheckpointError, match="objects other than tensors"):
        load_checkpoint(path)
    assert not marker.exists()


def test_save_json(tmp_path: Path) -> None:
    data = {"model": "ptb/none", "seed": 0, "test": {"kl": 5.25, "nll_iw": None}}
    path = save_json(data, tmp_path / "out" / "metrics.json")
    text = path.read_text()
    assert text.endswith("}\n") and '\n  "seed": 0' in text  # indented, trailing newline
    assert json.loads(text) == data
    assert list(json.loads(text)) == ["model", "seed", "test"]  # key order kept
    save_json({"seed": 1}, path)
    assert json.loads(path.read_text()) == {"seed": 1}
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]


def test_save_json_unserialisable_keeps_old(tmp_path: Path) -> None:
    path = save_json({"seed": 0}, tmp_path / "metrics.json")
    with pytest.raises(TypeError):
        save_json({"weight": torch.ones(1)}, path)
    assert json.loads(path.read_text()) == {"seed": 0}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_checksum_is_stored_and_removed_on_load(tmp_path: Path) -> None:
    from advmask.training.checkpoint import CHECKSUM_KEY, checksum

    state = {"step": 2, "weight": torch.arange(6.0).reshape(2, 3)}
    path = save_checkpoint(state, tmp_path / "last.pt")
    raw = torch.load(path, weights_only=True)  # still a plain torch.save dictionary
    assert raw[CHECKSUM_KEY] == checksum(state)
    assert CHECKSUM_KEY not in load_checkpoint(path)
    with pytest.raises(ValueError, match="reserved key"):
        save_checkpoint(raw, tmp_path / "again.pt")


def test_checksum_sees_values_shapes_and_dtypes() -> None:
    from advmask.training.checkpoint import checksum

    base = checksum({"w": torch.zeros(4), "step": 1})
    assert checksum({"w": torch.zeros(4), "step": 1}) == base
    for other in (
        {"w": torch.zeros(4), "step": 2},
        {"w": torch.zeros(2, 2), "step": 1},
        {"w": torch.zeros(4, dtype=torch.float64), "step": 1},
        {"w": torch.tensor([0.0, 0.0, 0.0, 1e-45]), "step": 1},
        {"step": 1, "w": torch.zeros(4)},
    ):
        assert checksum(other) != base, other


def test_file_without_checksum_loads_unverified(tmp_path: Path, caplog) -> None:
    path = tmp_path / "old.pt"
    torch.save({"step": 5}, path)
    with caplog.at_level("WARNING", logger="advmask.training.checkpoint"):
        assert load_checkpoint(path) == {"step": 5}
    assert "no checksum" in caplog.text


def test_remove_stale_temporaries_only_removes_killed_saves(tmp_path: Path) -> None:
    from advmask.training.checkpoint import remove_stale_temporaries

    stale = [tmp_path / ".last.pt.0123456789ab.tmp", tmp_path / ".log.csv.abcdefabcdef.tmp"]
    kept = [tmp_path / "last.pt", tmp_path / "notes.tmp", tmp_path / ".last.pt.xyz.tmp"]
    for path in stale + kept:
        path.write_bytes(b"x")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in kept)
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    import socket

    from advmask.training.checkpoint import RunLock

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    (tmp_path / ".lock").write_text(f"{socket.gethostname()} {child.stdout.strip()}\n")
    with RunLock(tmp_path) as lock:
        # the token tells this lock from a later one
        host, pid, token = lock.path.read_text().split()
        assert [host, pid] == [socket.gethostname(), str(os.getpid())]
        assert len(token) >= 8
    assert not (tmp_path / ".lock").exists()
