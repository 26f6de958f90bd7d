"""One request line, one answer line, over a Unix socket only its user can open.

How a command in another shell reaches the process that holds a device: ``hwtoken
emulate plug/unplug`` the testbed of ``emulate run``, ``hwtoken fob emulate press/screen``
the virtual fob. The socket is created with mode 0600 (put it in a 0700 directory too).
Its accept loop is an :class:`~hwtoken.emulator.transports.acceptor.Acceptor`: a bounded
number of connections at once, each given a deadline for its whole line, and a shortage of
file descriptors waited out instead of ending the server.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

TIMEOUT = 30.0  # seconds a client waits for the answer
READ_TIMEOUT = 10.0  # seconds the server gives a client to send its whole line
MAX_CONNECTIONS = 8  # connections answered at once (more wait in the listen backlog)


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


def read_line(conn: socket.socket, limit: int, deadline: float | None = None) -> bytes:
    """What ``conn`` sends up to its first newline, at most about ``limit`` bytes.

    With ``deadline`` (a :func:`time.monotonic` value) the whole line must have come by
    then, else :class:`TimeoutError`: a client sending a byte now and then cannot hold the
    connection for ever.
    """
    data = b""
    while b"\n" not in data and len(data) < limit:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the request line did not come in time")
            conn.settimeout(left)
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

    ``concurrent`` answers up to ``max_connections`` connections side by side (for answers
    that take a while), else one at a time; each connection has ``read_timeout`` seconds
    to send its line. ``failure`` is the answer when ``answer`` raises something
    unexpected.
    """

    def __init__(self, path: str | os.PathLike[str], answer: Callable[[bytes], bytes], *,
                 limit: int, name: str, failure: bytes, concurrent: bool = False,
                 max_connections: int = MAX_CONNECTIONS,
                 read_timeout: float = READ_TIMEOUT) -> None:
        from hwtoken.emulator.transports.acceptor import Acceptor

        self.path = Path(path)
        self._answer_line = answer
        self._limit = limit
        self._failure = failure
        self._read_timeout = read_timeout
        self._sock = listen(self.path)
        self.acceptor = Acceptor(self._sock, self._answer, name=name, logger=log,
                                 max_connections=max_connections if concurrent else 1).start()

    def _answer(self, conn: socket.socket) -> None:
        try:
            try:
                line = read_line(conn, self._limit, time.monotonic() + self._read_timeout)
            except TimeoutError:
                return  # (the Acceptor closes the connection)
            conn.settimeout(TIMEOUT)
            try:
                answer = self._answer_line(line)
            except Exception:
                log.exception("control request failed")
                answer = self._failure
            conn.sendall(answer + b"\n")
        except OSError as exc:
            log.debug("control connection failed: %s", exc)

    def close(self) -> None:
        self.acceptor.stop(drain=5.0)  # a request being answered still gets its answer
        with contextlib.suppress(OSError):
            self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
