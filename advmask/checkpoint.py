"""Atomic checkpoint files.

A checkpoint is written to a temporary file in the same folder, flushed to disk and then renamed
over the target with :func:`os.replace`, which is atomic on POSIX and Windows: a run killed
mid-write leaves the previous checkpoint intact, never a truncated file.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import torch


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(file)`` on a temporary file, then move it to ``path`` atomically.

    If ``write`` (or anything up to the rename) raises, the temporary file is removed and
    ``path`` keeps its previous content. A process killed outright can leave a hidden
    ``.<name>.<random>.tmp`` beside ``path``, never a partial ``path``.

    Args:
        path: destination; its folder is created if needed.
        write: function that writes the whole content to the binary file it is given.

    Returns:
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = _create_temporary(path)
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def _create_temporary(path: Path) -> tuple[int, Path]:
    # Not tempfile.mkstemp: it creates mode 0o600, which the rename would carry over to the
    # checkpoint (unreadable by the group, unlike a file opened normally). Mode 0o666 lets the
    # process umask decide, as open() does; O_EXCL keeps the name our own.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(temporary, flags, 0o666), temporary
        except FileExistsError:
            continue


def _fsync_directory(folder: Path) -> None:
    # Makes the rename itself durable on POSIX; directories cannot be opened on Windows.
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` (tensors, numbers, strings and containers of them) atomically.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = save_checkpoint({"step": 3, "weight": torch.ones(2)}, folder / "last.pt")
        >>> load_checkpoint(folder / "last.pt")["step"]
        3
    """
    return atomic_write(path, lambda file: torch.save(dict(state), file))


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (tensors and plain data only).

    Only tensors and plain data are unpickled (``weights_only=True``): a file that holds other
    objects is refused rather than executed.

    Raises:
        FileNotFoundError: naming ``path`` when it does not exist.
        pickle.UnpicklingError: when the file holds objects other than tensors and plain data.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location=map_location, weights_only=True)


def save_json(data: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``data`` as indented JSON atomically."""
    text = json.dumps(data, indent=2, sort_keys=False) + "\n"
    return atomic_write(path, lambda file: file.write(text.encode()))
