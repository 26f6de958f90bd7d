"""Files that hold secrets: created 0600, written atomically, locked while in use."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path

from hwtoken.errors import DeviceBusy, InvalidInput

SECRET_MODE = 0o600


def require_parent(path: str | os.PathLike[str]) -> None:
    """:class:`InvalidInput` unless the directory ``path`` goes into exists.

    Output paths the user names never create directories: a typo must be an error, not
    a new directory tree.
    """
    parent = Path(path).parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise InvalidInput(f"cannot write {path}: the directory {parent} {what} (hwtoken "
                           "does not create directories for the files you name)")


def atomic_write(path: str | os.PathLike[str], data: bytes | str, *, mode: int = SECRET_MODE,
                 fsync: bool = True, make_parents: bool = False) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same dir, fsync, rename.

    The file is created with ``mode`` (0600 by default) before any byte is written, so a
    secret is never readable by others, not even for a moment. Readers see either the old
    content or the new one, never a mix. A missing directory is an :class:`InvalidInput`
    unless ``make_parents`` (for hwtoken's own state directory).
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode()
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    else:
        require_parent(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if fsync:
        fsync_dir(path.parent)


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """fsync a directory so a rename inside it is durable."""
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


class FileLock:
    """An exclusive advisory lock (``flock``) on ``path`` held until :meth:`release`.

    Non-blocking by default: if another process holds it, :class:`DeviceBusy` is raised
    with ``what`` in the message. The directory must exist unless ``make_parents``.
    """

    def __init__(self, path: str | os.PathLike[str], *, what: str = "file",
                 blocking: bool = False, make_parents: bool = False) -> None:
        self.path = Path(path)
        if make_parents:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        else:
            require_parent(self.path)
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, SECRET_MODE)
        flags = fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB)
        try:
            fcntl.flock(self._fd, flags)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise DeviceBusy(f"{what} is in use by another process (lock {self.path})") from None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:  # pragma: no cover - best effort
        with contextlib.suppress(Exception):
            self.release()


def is_locked(path: str | os.PathLike[str]) -> bool:
    """True if another process holds the lock at ``path``."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def pid_alive(pid: int) -> bool:
    """True if a process ``pid`` exists (one of another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
