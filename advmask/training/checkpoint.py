"""Atomic, checksummed checkpoint files, and a lock per run folder.

A checkpoint is written to a temporary file in the same folder, flushed to disk and then renamed
over the target with :func:`os.replace`, which is atomic on POSIX and Windows: a run killed
mid-write leaves the previous checkpoint intact, never a truncated file. A process killed
*inside* a save leaves its temporary file behind; :func:`remove_stale_temporaries` deletes
those once the folder is locked.

Every checkpoint carries the SHA-256 of its content (each tensor's dtype, shape and bytes, and
every other value, in order), verified by :func:`load_checkpoint`: a file damaged on disk
(flipped bits, a copy cut short) is refused with an error naming it instead of resuming from
wrong weights. The digest sits in the same file, under the key :data:`CHECKSUM_KEY`, so the
file stays a plain ``torch.save`` dictionary.

:class:`RunLock` keeps a second process out of a folder another one is writing; the lock of a
process that died is taken over.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import pickle
import re
import secrets
import socket
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import torch

logger = logging.getLogger(__name__)

CHECKSUM_KEY = "_advmask_checksum"
"""Key of the SHA-256 hex digest in a checkpoint dictionary written by :func:`save_checkpoint`."""


class CheckpointError(ValueError):
    """A checkpoint file that cannot be trusted: empty, truncated, corrupt or not a checkpoint."""


class RunLockedError(RuntimeError):
    """The folder is locked by another live process."""


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

    Raises:
        OSError: of the folder or the write (a full disk, a read-only folder), naming ``path``
            when the error itself names no file.
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
    except OSError as error:
        temporary.unlink(missing_ok=True)
        if error.filename is None and error.errno is not None:  # a full disk fails a write()
            raise OSError(error.errno, error.strerror or str(error), str(path)) from error
        raise
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


def _update_digest(digest: Any, value: Any) -> None:
    # Type tags and lengths make the encoding unambiguous ([1, 2] and [[1], 2] differ).
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"T{tensor.dtype}{tuple(value.shape)}".encode())
        digest.update(memoryview(tensor.view(torch.uint8).numpy()))
    elif isinstance(value, Mapping):
        digest.update(f"D{len(value)}".encode())
        for key, item in value.items():
            _update_digest(digest, key)
            _update_digest(digest, item)
    elif isinstance(value, (list, tuple)):
        digest.update(f"{type(value).__name__[0]}{len(value)}".encode())
        for item in value:
            _update_digest(digest, item)
    else:
        text = repr(value).encode()
        digest.update(f"V{type(value).__name__}{len(text)}:".encode())
        digest.update(text)


def checksum(state: Mapping[str, Any]) -> str:
    """SHA-256 hex digest of a checkpoint's content (tensors by dtype, shape and bytes).

    The same on every device: tensors are hashed from their CPU bytes.

    Example:
        >>> checksum({"w": torch.ones(2)}) == checksum({"w": torch.ones(2)})
        True
        >>> checksum({"w": torch.ones(2)}) == checksum({"w": torch.ones(2, dtype=torch.float64)})
        False
    """
    digest = hashlib.sha256()
    _update_digest(digest, state)
    return digest.hexdigest()


def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` (tensors, numbers, strings and containers of them) atomically.

    The content's :func:`checksum` is stored with it under :data:`CHECKSUM_KEY`.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = save_checkpoint({"step": 3, "weight": torch.ones(2)}, folder / "last.pt")
        >>> load_checkpoint(folder / "last.pt")["step"]
        3
    """
    if CHECKSUM_KEY in state:
        raise ValueError(f"state must not hold the reserved key {CHECKSUM_KEY!r}")
    content = {**state, CHECKSUM_KEY: checksum(state)}

    def write(file: IO[bytes]) -> None:
        # Serialised in memory first: torch.save into a file that cannot be written raises
        # "RuntimeError: [enforce fail at inline_container.cc]", which hides the OSError.
        buffer = io.BytesIO()
        torch.save(content, buffer)
        file.write(buffer.getbuffer())

    return atomic_write(path, write)


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` and verify its checksum.

    Only tensors and plain data are unpickled (``weights_only=True``): a file that holds other
    objects is refused rather than executed. A file without a checksum (written by
    ``torch.save`` itself, or by advmask before checksums) loads unverified, with a logged
    warning.

    Returns:
        The saved dictionary, without the checksum entry.

    Raises:
        FileNotFoundError: naming ``path`` when it does not exist.
        CheckpointError: naming ``path`` when it is empty, truncated, corrupt (its content does
            not match its checksum), not a checkpoint, or holds objects other than tensors and
            plain data.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights_only" in str(error) or "Unsupported global" in str(error):
            raise CheckpointError(
                f"checkpoint {path} holds objects other than tensors and plain data; "
                "refusing to unpickle it"
            ) from error
        raise CheckpointError(f"checkpoint {path} is corrupt: {_first_line(error)}") from error
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as error:
        raise CheckpointError(
            f"checkpoint {path} is truncated or not a checkpoint "
            f"({type(error).__name__}: {_first_line(error)})"
        ) from error
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a dictionary")
    expected = state.pop(CHECKSUM_KEY, None)
    if expected is None:
        logger.warning("checkpoint %s has no checksum: loaded without verification", path)
    elif checksum(state) != expected:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: its content does not match its checksum "
            "(damaged on disk or in a copy)"
        )
    return state


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else "no message"


_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files that saves killed mid-write left in ``folder``.

    Only call it while no other process writes into ``folder`` (hold its :class:`RunLock`):
    a live writer's temporary file looks the same.

    Returns:
        The removed paths.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for candidate in folder.iterdir():
        if _TEMPORARY.match(candidate.name) and candidate.is_file():
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    except OSError as error:
        return error.errno != errno.ESRCH
    return True


class RunLock:
    """Exclusive use of a folder by one process, through a ``.lock`` file holding its pid.

    The lock is taken on entering and released on leaving the ``with`` block. A lock file whose
    process no longer runs on this machine (killed, crashed) is taken over; one held by a live
    process, or written on another machine, makes entering fail.

    Racing processes cannot both win: the lock file is written whole under a temporary name
    and linked to ``.lock`` (which fails if it exists), so no one reads it half-written; the
    check of a lock found there and the takeover of a dead one happen under an exclusive
    ``flock`` of the folder (where the system has ``fcntl``), so no process deletes a lock
    that another one has just taken. Leaving deletes the lock file only if it is still this
    one's (the same file).

    Args:
        folder: the folder to lock (created if needed).

    Raises:
        RunLockedError: on entering, naming the folder and the holder's pid and host.

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> with RunLock(folder) as lock:
        ...     lock.path.is_file()
        True
        >>> lock.path.is_file()
        False
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.path = self.folder / ".lock"
        self._inode: tuple[int, int] | None = None  # (device, inode) of our lock file
        self._content: str | None = None  # what we wrote in it: host, pid and a token of ours

    def _holder(self) -> str:
        # The token tells our file from a later one that reuses its inode (tmpfs does so at
        # once) and is written by the same process.
        return f"{socket.gethostname()} {os.getpid()} {secrets.token_hex(8)}\n"

    def _try_create(self) -> bool:
        """Link a complete lock file to ``.lock``; False if one is there."""
        # Not a name remove_stale_temporaries deletes: a holder cleaning its folder must not
        # take a contender's file from under it.
        temporary = self.folder / f".lock.{secrets.token_hex(6)}.new"
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        content = self._holder()
        try:
            with os.fdopen(handle, "w") as file:
                file.write(content)
                file.flush()
                os.fsync(file.fileno())
            try:
                os.link(temporary, self.path)
            except FileExistsError:
                return False
            status = os.stat(temporary)
            self._inode, self._content = (status.st_dev, status.st_ino), content
            return True
        finally:
            temporary.unlink(missing_ok=True)

    def _read_holder(self) -> tuple[str, int] | None:
        """(host, pid) of the lock file; None if it is gone; pid -1 if it is unreadable."""
        try:
            host, pid_text, *_ = self.path.read_text().split()  # older versions wrote no token
            return host, int(pid_text)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            # Written whole before it is linked: unreadable only if left by an older version
            # killed while writing it, which no live process is doing under the folder lock.
            return socket.gethostname(), -1

    def __enter__(self) -> RunLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        with _folder_lock(self.folder):
            while not self._try_create():
                holder = self._read_holder()
                if holder is None:  # released between our link and our read: try again
                    continue
                host, pid = holder
                if host != socket.gethostname() or (pid > 0 and _process_alive(pid)):
                    raise RunLockedError(
                        f"{self.folder} is in use by process {pid} on {host} (lock file "
                        f"{self.path}); wait for it to finish, or delete the lock file if that "
                        "process is gone"
                    )
                # Proved stale (its process is dead) under the folder lock: no contender can
                # have replaced it since it was read.
                logger.warning("taking over the lock of dead process %d in %s", pid, self.folder)
                self.path.unlink(missing_ok=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._inode is None:
            return
        with _folder_lock(self.folder):
            try:
                status = os.stat(self.path)
                ours = (status.st_dev, status.st_ino) == self._inode
                ours = ours and self.path.read_text() == self._content
            except FileNotFoundError:
                ours = False
            if ours:
                self.path.unlink(missing_ok=True)
        self._inode = self._content = None


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive ``flock`` of ``folder`` for a moment (nothing where there is no fcntl)."""
    try:
        import fcntl
    except ImportError:  # Windows: the link alone keeps two creators apart
        yield
        return
    handle = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # releases the flock


def save_json(data: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``data`` as indented JSON atomically."""
    text = json.dumps(data, indent=2, sort_keys=False) + "\n"
    return atomic_write(path, lambda file: file.write(text.encode()))


def read_json(path: str | os.PathLike[str]) -> Any:
    """The content of a JSON file.

    Raises:
        FileNotFoundError: naming ``path`` when it is missing.
        ValueError: naming ``path`` (and the line) when it is not valid JSON.
    """
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from error
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not valid JSON (not UTF-8 text)") from error
