"""Small file-system primitives: atomic writes and inter-process locks.

Every state file trustroot writes goes through :func:`atomic_write` (temp file in the same
directory, fsync, ``os.replace``, fsync of the directory), so a crash leaves either the old or the
new file, never half of one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from trustroot.errors import UnreadableInputError

__all__ = ["atomic_write", "exclusive_lock", "fsync_dir", "read_bounded"]


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry change (a rename or a new file) to disk."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644, exclusive: bool = False) -> None:
    """Write ``data`` to ``path`` atomically with permissions ``mode``.

    With ``exclusive`` the write fails with :class:`FileExistsError` when ``path`` exists (checked
    with a hard link, so two racing writers cannot both win).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            os.link(tmp, path)  # raises FileExistsError if another writer got there first
            tmp.unlink()
        else:
            tmp.replace(path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (created if missing) for the block."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def read_bounded(path: Path, limit: int, *, what: str) -> bytes:
    """Read a whole file of at most ``limit`` bytes, naming ``what`` in any error."""
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError as exc:
        raise UnreadableInputError(f"{what} {path}: no such file") from exc
    except IsADirectoryError as exc:
        raise UnreadableInputError(f"{what} {path}: is a directory, expected a file") from exc
    except PermissionError as exc:
        raise UnreadableInputError(f"{what} {path}: permission denied") from exc
    except OSError as exc:
        raise UnreadableInputError(f"{what} {path}: cannot be read ({exc.strerror})") from exc
    if len(data) > limit:
        raise UnreadableInputError(f"{what} {path}: larger than the limit of {limit} bytes")
    return data
