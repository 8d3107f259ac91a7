"""Atomic checkpoint files.

A checkpoint is written to a temporary file in the same folder, flushed to disk and then renamed
over the target with :func:`os.replace`, which is atomic on POSIX and Windows: a run killed
mid-write leaves the previous checkpoint intact, never a truncated file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import torch


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(file)`` on a temporary file, then move it to ``path`` atomically.

    Args:
        path: destination; its folder is created if needed.
        write: function that writes the whole content to the binary file it is given.

    Returns:
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


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

    Raises:
        FileNotFoundError: naming ``path`` when it does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location=map_location, weights_only=True)


def save_json(data: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``data`` as indented JSON atomically."""
    text = json.dumps(data, indent=2, sort_keys=False) + "\n"
    return atomic_write(path, lambda file: file.write(text.encode()))
