"""Files that hold secrets: created 0600, written atomically, locked while in use.

Lock files are opened without following a symbolic link and only when they belong to the
user running hwtoken (:func:`open_own_file`): a link or file planted by another user in a
shared directory is an error, never a file created where the planter chose. A lock
another process holds is waited for at most :data:`LOCK_TIMEOUT` seconds.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
import time
from pathlib import Path

from hwtoken.errors import DeviceBusy, InvalidInput

SECRET_MODE = 0o600
LOCK_TIMEOUT = 10.0  # seconds a blocking FileLock waits for another process by default
_LOCK_POLL = 0.02  # first pause between attempts at a held lock (doubling up to 0.25 s)


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


def open_own_file(path: str | os.PathLike[str], flags: int = os.O_RDWR | os.O_CREAT,
                  mode: int = SECRET_MODE, *, what: str = "file") -> int:
    """Open ``path`` (created ``mode`` if ``flags`` has O_CREAT) as a file descriptor.

    The last component is never followed if it is a symbolic link (``O_NOFOLLOW``), and
    the file must be a regular file owned by the effective user: :class:`InvalidInput`
    names the link or the owner otherwise, since another user may have planted it to make
    hwtoken create or lock a file of their choosing. Other errors are ``OSError``.
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InvalidInput(f"the {what} {path} is a symbolic link; hwtoken does not "
                               "follow links there (another user could have planted it): "
                               "put the file itself there") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidInput(f"the {what} {path} is not a regular file (hwtoken needs one there)")
        if st.st_uid != os.geteuid():
            raise InvalidInput(f"the {what} {path} belongs to uid {st.st_uid}, not to you "
                               f"(uid {os.geteuid()}); hwtoken uses only your own files there "
                               f"(another user could have planted it): run as uid "
                               f"{st.st_uid}, or check the file and chown it")
    except BaseException:
        os.close(fd)
        raise
    return fd


class FileLock:
    """An exclusive advisory lock (``flock``) on ``path`` held until :meth:`release`.

    The lock file is opened with :func:`open_own_file` (no symbolic link, ours). By
    default a lock another process holds is :class:`DeviceBusy` at once, with ``what`` in
    the message; with ``blocking`` it is waited for up to ``timeout`` seconds
    (:data:`LOCK_TIMEOUT` unless given), then :class:`DeviceBusy` says how long it waited.
    The directory must exist unless ``make_parents``.
    """

    def __init__(self, path: str | os.PathLike[str], *, what: str = "file",
                 blocking: bool = False, make_parents: bool = False,
                 timeout: float | None = None) -> None:
        self.path = Path(path)
        if make_parents:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        else:
            require_parent(self.path)
        self._fd: int | None = open_own_file(self.path, what=f"lock file of the {what}")
        wait = (LOCK_TIMEOUT if timeout is None else timeout) if blocking else 0.0
        try:
            _flock_within(self._fd, wait)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            if not blocking:
                raise DeviceBusy(f"{what} is in use by another process (lock {self.path})"
                                 ) from None
            raise DeviceBusy(f"{what} is locked by another process (lock {self.path}); gave "
                             f"up after waiting {wait:g} s: is a stuck process holding it?"
                             ) from None
        except BaseException:
            os.close(self._fd)
            self._fd = None
            raise

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


def _flock_within(fd: int, wait: float) -> None:
    """Take an exclusive flock on ``fd``, trying for ``wait`` seconds (0: once).

    BlockingIOError if it is still held by another process by then.
    """
    deadline = time.monotonic() + wait
    pause = _LOCK_POLL
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.25)


def is_locked(path: str | os.PathLike[str]) -> bool:
    """True if another process holds the lock at ``path`` (a symbolic link there is not a
    lock of ours: False)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return False
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def remove_dead_dirs(base: str | os.PathLike[str], pattern: str) -> int:
    """Remove the directories ``base/pattern`` whose ``owner.pid`` names a process that is
    gone (left by one that was killed); how many were removed. Others (a live owner, no
    readable ``owner.pid``, another user's) are left alone."""
    import shutil

    removed = 0
    with contextlib.suppress(OSError):
        for d in Path(base).glob(pattern):
            try:
                pid = int((d / "owner.pid").read_text().strip())
            except (OSError, ValueError):
                continue
            if pid_alive(pid):
                continue
            shutil.rmtree(d, ignore_errors=True)
            removed += 1
    return removed


def pid_alive(pid: int) -> bool:
    """True if a process ``pid`` exists (one of another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
