"""Accepting connections without being worn down: the accept loop every server here runs.

:class:`Acceptor` accepts on a listening socket in a thread of its own and hands each
connection to ``handle(conn)`` in a new thread, with three bounds:

* ``admit(conn)`` decides before anything is read or answered (who the peer is);
* at most ``max_connections`` are handled at once; while that many are, no more are
  accepted: new ones wait in the kernel's listen backlog (and are served in turn) until
  one ends, or the kernel refuses them when the backlog is full;
* running out of file descriptors (EMFILE, ENFILE) or kernel memory does not end the loop:
  it backs off (doubling from 50 ms to 1 s) and accepts again when connections close.
  Other accept errors (a peer that reset before accept) concern that one connection.

Each kind of trouble is logged as a warning at most once a minute (:data:`WARN_EVERY`), so a
flood does not become a flood of log lines.

The handler owns the connection (closes it) and sets its own time limits.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: accept() errors that mean "this process or the system is out of resources": wait, retry
RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
BACKOFF_FIRST, BACKOFF_MAX = 0.05, 1.0
WARN_EVERY = 60.0  # seconds between two warnings about the same kind of trouble


class Acceptor:
    """Accept on ``sock`` until :meth:`stop`; see the module docstring."""

    def __init__(self, sock: socket.socket, handle: Callable[[socket.socket], None], *,
                 name: str, admit: Callable[[socket.socket], bool] | None = None,
                 max_connections: int | None = None, logger: logging.Logger | None = None,
                 conn_name: str | None = None) -> None:
        self.sock = sock
        self.handle = handle
        self.name = name
        self.conn_name = conn_name or f"{name}-conn"  # the name of each connection's thread
        self.admit = admit
        self.max_connections = max_connections
        self.log = logger or log
        self.active = 0  #: connections being handled now
        self.accepted = 0  #: connections handed to the handler so far
        self.full = 0  #: times accepting paused because ``max_connections`` were busy
        self.starved = 0  #: episodes of running out of file descriptors (or memory)
        self._lock = threading.Condition()
        self._conns: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._warned: dict[str, float] = {}
        self._thread: threading.Thread | None = None

    def start(self) -> Acceptor:
        self._thread = threading.Thread(target=self._loop, daemon=True, name=self.name)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0, *, drain: float = 0.0) -> None:
        """Stop accepting (the listening socket is shut down, not closed) and end every
        connection being handled (shut down: each handler sees its peer gone), after
        letting them finish for up to ``drain`` seconds (a request being answered)."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + drain
        with self._lock:
            self._lock.notify_all()
            while self._conns and (left := deadline - time.monotonic()) > 0:
                self._lock.wait(left)
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def disconnect_all(self) -> int:
        """Shut down every connection being handled (each handler sees its peer gone) and
        go on accepting; how many there were (a device that left the bus and came back)."""
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        return len(conns)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _loop(self) -> None:
        retry = AcceptRetry(self.name, self._warn, self._stopping)
        while self._room():
            got = retry.accept(self.sock)
            if got is None:
                return
            self._take(got[0])

    def _warn(self, kind: str, msg: str, *args: object) -> None:
        """A warning, unless one of this ``kind`` was logged less than a minute ago."""
        now = time.monotonic()
        with self._lock:
            last = self._warned.get(kind)
            quiet = last is not None and now - last < WARN_EVERY
            if not quiet:
                self._warned[kind] = now
        if kind == "starved":
            self.starved += 1
        self.log.log(logging.DEBUG if quiet else logging.WARNING, msg, *args)

    def _room(self) -> bool:
        """Wait until fewer than ``max_connections`` are handled; False once stopping."""
        with self._lock:  # (a Condition over an RLock: _warn may take it again)
            if self.max_connections is not None and self.active >= self.max_connections:
                self.full += 1
                self._warn("full", "%s: %d connections at once; accepting more when one "
                           "ends", self.name, self.max_connections)
                while self.active >= self.max_connections and not self._stopping.is_set():
                    self._lock.wait()
        return not self._stopping.is_set()

    def _take(self, conn: socket.socket) -> None:
        with self._lock:
            self.active += 1
            self._conns.add(conn)
        try:
            if self.admit is not None and not self.admit(conn):
                self._done(conn)
                return
            threading.Thread(target=self._run, args=(conn,), daemon=True,
                             name=self.conn_name).start()
        except Exception:  # (no thread could be started: the system is out of them)
            self.log.exception("%s: cannot serve a connection", self.name)
            self._done(conn)
            return
        self.accepted += 1

    def _run(self, conn: socket.socket) -> None:
        try:
            if not self._stopping.is_set():
                self.handle(conn)
        except Exception:
            self.log.exception("%s: a connection failed; still serving", self.name)
        finally:
            self._done(conn)

    def _done(self, conn: socket.socket) -> None:
        _close(conn)
        with self._lock:
            if conn in self._conns:
                self._conns.discard(conn)
                self.active -= 1
                self._lock.notify_all()


class AcceptRetry:
    """``accept()`` that waits out a shortage of file descriptors or memory.

    ``warn(kind, msg, *args)`` is told (kind "starved") once per shortage; the wait doubles
    from :data:`BACKOFF_FIRST` to :data:`BACKOFF_MAX` and ends early when ``stopping`` is
    set.
    """

    def __init__(self, name: str, warn: Callable[..., None], stopping: threading.Event) -> None:
        self.name = name
        self.warn = warn
        self.stopping = stopping
        self.backoff = 0.0

    def accept(self, sock: socket.socket) -> tuple[socket.socket, object] | None:
        """The next connection, or None once the socket is shut down or closed."""
        while not self.stopping.is_set():
            try:
                conn, addr = sock.accept()
            except OSError as exc:
                if self.stopping.is_set() or exc.errno in (errno.EBADF, errno.EINVAL,
                                                           errno.ENOTSOCK):
                    return None
                if exc.errno in RESOURCE_ERRORS:
                    if not self.backoff:
                        self.warn("starved", "%s: cannot accept connections (%s); waiting "
                                  "for some to close, then accepting again", self.name,
                                  exc.strerror)
                    self.backoff = min(max(self.backoff * 2, BACKOFF_FIRST), BACKOFF_MAX)
                    self.stopping.wait(self.backoff)
                continue  # (ECONNABORTED, EPROTO...: that one connection is gone)
            self.backoff = 0.0
            return conn, addr
        return None


def _close(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.close()
