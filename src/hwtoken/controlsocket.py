"""One request line, one answer line, over a Unix socket only its user can open.

How a command in another shell reaches the process that holds a device: ``hwtoken
emulate plug/unplug`` the testbed of ``emulate run``, ``hwtoken fob emulate press/screen``
the virtual fob. The socket is created with mode 0600 (put it in a 0700 directory too).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

TIMEOUT = 30.0  # seconds a client may take to send its line, and waits for the answer


def listen(path: str | os.PathLike[str], backlog: int = 8) -> socket.socket:
    """A Unix socket bound at ``path`` (mode 0600), listening."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(Path(path)))
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old)
    sock.listen(backlog)
    return sock


def read_line(conn: socket.socket, limit: int) -> bytes:
    """What ``conn`` sends up to its first newline, at most about ``limit`` bytes."""
    data = b""
    while b"\n" not in data and len(data) < limit:
        chunk = conn.recv(limit)
        if not chunk:
            break
        data += chunk
    return data


def ask(path: str | os.PathLike[str], line: bytes, timeout: float = TIMEOUT) -> bytes:
    """Send ``line`` (a newline is added) to the socket at ``path``; the answer line.

    OSError when nothing listens there or it does not answer in ``timeout`` seconds.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(line + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


class Server:
    """Answers each connection's line with ``answer(line)`` (its answer line, without the
    newline) at ``path``, until :meth:`close`, which removes the socket.

    ``concurrent`` answers each connection in a thread of its own (for answers that take a
    while); ``failure`` is the answer when ``answer`` raises something unexpected.
    """

    def __init__(self, path: str | os.PathLike[str], answer: Callable[[bytes], bytes], *,
                 limit: int, name: str, failure: bytes, concurrent: bool = False) -> None:
        self.path = Path(path)
        self._answer_line = answer
        self._limit = limit
        self._failure = failure
        self._concurrent = concurrent
        self._sock = listen(self.path)
        self._thread = threading.Thread(target=self._serve, daemon=True, name=name)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            if self._concurrent:
                threading.Thread(target=self._answer, args=(conn,), daemon=True).start()
            else:
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(TIMEOUT)
            try:
                try:
                    answer = self._answer_line(read_line(conn, self._limit))
                except OSError:
                    raise
                except Exception:
                    log.exception("control request failed")
                    answer = self._failure
                conn.sendall(answer + b"\n")
            except OSError as exc:
                log.debug("control connection failed: %s", exc)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._sock.close()
        self._thread.join(5)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
