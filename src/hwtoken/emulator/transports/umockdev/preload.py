"""umockdev's preload socket protocol: how a device node's ioctl/read/write reach us.

umockdev's ``libumockdev-preload.so`` (Debian package ``umockdev``) runs inside the
program under test. When that program opens a device node that exists in the testbed
(``$UMOCKDEV_DIR/dev/...``), the library connects a Unix stream socket to
``$UMOCKDEV_DIR/ioctl/<node path>`` (or ``ioctl/_default``); that connection stands for
the open file. Every ``ioctl()``, ``read()`` and ``write()`` on the file then becomes a
request on it, and the program waits (holding a per-file lock, with signals blocked) until
the server answers. This is the wire format of umockdev 0.17.16 to 0.19.x
(``src/libumockdev-preload.c`` ``remote_emulate``; ``src/umockdev-ioctl.vala`` is its
GObject server), spoken here directly so that no ``gi``/PyGObject is needed:

* every message is three native ``unsigned long`` (``cmd, arg1, arg2``);
* the client sends ``IOCTL(request, argp)``, ``READ(buf, count)`` or ``WRITE(buf, count)``;
* the server may then ask, any number of times, ``READ_MEM(addr, len)`` (the client sends
  ``len`` bytes of its memory), ``WRITE_MEM(addr, len)`` followed by ``len`` bytes (the
  client stores them), or ``RUN`` (the client performs the original call on the real file
  and answers ``RES(result, errno)``);
* and ends the call with ``DONE(result, errno)``. ``DONE(UNHANDLED)`` makes the client
  perform the original call itself, after it has released its lock.

Closing the connection while the client waits makes the client abort(), so a server
answers every request it has read, even while shutting down. Nothing here knows what a
device is: :class:`OpenFile` subclasses do (:mod:`.hidraw`, :mod:`.usbfs`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

# requests from the client and answers from the server (libumockdev-preload.c)
REQ_IOCTL = 1
REQ_RES = 2
RES_DONE = 3
RES_RUN = 4
RES_READ_MEM = 5
RES_WRITE_MEM = 6
REQ_READ = 7
REQ_WRITE = 8
RES_ABORT = 0xFF
#: A DONE result that makes the client run the original call on the real file.
UNHANDLED = -100

_MSG = struct.Struct("@LLL")
_ULONG_MASK = (1 << (8 * struct.calcsize("@L"))) - 1
#: Largest single memory transfer we accept from a request (a hidraw report is at most
#: 16 KiB, a usbfs buffer at most 16 MiB here); anything larger is answered EINVAL.
MAX_TRANSFER = 16 * 1024 * 1024


class ClientGone(Exception):
    """The program closed the file (or died) while a request was being answered."""


def _signed(value: int) -> int:
    """An ``unsigned long`` as the ``long`` the client meant."""
    bits = 8 * _MSG.size // 3
    return value - (1 << bits) if value >> (bits - 1) else value


class Connection:
    """One open file of the program under test: the socket its requests arrive on."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pid: int | None = None
        with contextlib.suppress(OSError):
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                    struct.calcsize("3i"))
            self.pid = struct.unpack("3i", creds)[0] or None

    # -- framing -------------------------------------------------------------------------------
    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except OSError as exc:
                raise ClientGone(str(exc)) from None
            if not chunk:
                raise ClientGone("connection closed")
            buf += chunk
        return bytes(buf)

    def _send(self, cmd: int, arg1: int, arg2: int, payload: bytes = b"") -> None:
        try:
            self.sock.sendall(_MSG.pack(cmd, arg1 & _ULONG_MASK, arg2 & _ULONG_MASK) + payload)
        except OSError as exc:
            raise ClientGone(str(exc)) from None

    def next_request(self) -> tuple[int, int, int]:
        """Wait for the client's next call: ``(cmd, arg1, arg2)``; ClientGone at close."""
        cmd, a1, a2 = _MSG.unpack(self._recv_exact(_MSG.size))
        return cmd, a1, a2

    # -- what the server may do while a call is pending ---------------------------------------
    def read_mem(self, addr: int, length: int) -> bytes:
        """``length`` bytes of the client's memory at ``addr``."""
        if length <= 0:
            return b""
        self._send(RES_READ_MEM, addr, length)
        return self._recv_exact(length)

    def read_mem_and_done(self, addr: int, length: int, result: int) -> bytes:
        """Ask for ``length`` bytes at ``addr`` and end the call with ``result`` in one go.

        The client answers READ_MEM and then finds DONE already waiting, so its call
        returns after one exchange instead of two; the server handles the bytes while the
        program goes on (its next call waits on this connection until then, so the order
        of its calls is kept). For calls whose result does not depend on the bytes.
        """
        self._send(RES_READ_MEM, addr, length, _MSG.pack(RES_DONE, result & _ULONG_MASK, 0))
        return self._recv_exact(length) if length > 0 else b""

    def write_mem(self, addr: int, data: bytes) -> None:
        """Store ``data`` in the client's memory at ``addr``."""
        if data:
            self._send(RES_WRITE_MEM, addr, len(data), bytes(data))

    def write_mems_and_done(self, writes: list[tuple[int, bytes]], result: int,
                            err: int = 0) -> None:
        """Several WRITE_MEMs and the DONE in one send."""
        out = b"".join(_MSG.pack(RES_WRITE_MEM, addr & _ULONG_MASK, len(data)) + bytes(data)
                       for addr, data in writes if data)
        try:
            self.sock.sendall(out + _MSG.pack(RES_DONE, result & _ULONG_MASK, err))
        except OSError as exc:
            raise ClientGone(str(exc)) from None

    def write_mem_and_done(self, addr: int, data: bytes, result: int, err: int = 0) -> None:
        """Store ``data`` at ``addr`` and end the call, in one send (one wake-up for the
        program instead of two)."""
        done = _MSG.pack(RES_DONE, result & _ULONG_MASK, err)
        if data:
            self._send(RES_WRITE_MEM, addr, len(data), bytes(data) + done)
        else:
            self._send(RES_DONE, result, err)

    def run(self) -> tuple[int, int]:
        """Let the client perform the original call on the real file: ``(result, errno)``."""
        self._send(RES_RUN, 0, 0)
        cmd, res, err = _MSG.unpack(self._recv_exact(_MSG.size))
        if cmd != REQ_RES:
            raise ClientGone(f"unexpected answer {cmd} to RUN")
        return _signed(res), err

    def done(self, result: int, err: int = 0) -> None:
        """End the pending call with ``result`` (and ``errno``)."""
        self._send(RES_DONE, result, err)

    def fail(self, err: int) -> None:
        """End the pending call with -1 and ``err``."""
        self.done(-1, err)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class OpenFile:
    """What a device node does for one open file. Subclasses override the calls they serve.

    Each method ends the call itself (``conn.done``/``conn.fail``); the defaults refuse like
    a driver without the operation would. :meth:`closed` runs once the program closed it.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def ioctl(self, request: int, arg: int) -> None:
        self.conn.fail(errno.ENOTTY)

    def read(self, addr: int, count: int) -> None:
        self.conn.fail(errno.EINVAL)

    def write(self, addr: int, count: int) -> None:
        self.conn.fail(errno.EINVAL)

    def closed(self) -> None:
        """The program closed the file (every copy of it) or exited."""


def serve_connection(conn: Connection, handler: OpenFile) -> None:
    """Answer one open file's calls until the program closes it."""
    try:
        while True:
            cmd, a1, a2 = conn.next_request()
            try:
                if cmd == REQ_IOCTL:
                    handler.ioctl(a1 & 0xFFFFFFFF, a2)
                elif cmd == REQ_READ:
                    handler.read(a1, _signed(a2))
                elif cmd == REQ_WRITE:
                    handler.write(a1, _signed(a2))
                else:
                    log.warning("umockdev client sent unknown request %d; closing it", cmd)
                    return
            except ClientGone:
                raise
            except Exception:
                # the program must get an answer, or umockdev's library aborts it
                log.exception("device emulation failed on request %d; answering EIO", cmd)
                conn.fail(errno.EIO)
    except ClientGone:
        pass
    finally:
        with contextlib.suppress(Exception):
            handler.closed()
        conn.close()


RETIRE_GRACE = 5.0  # seconds a removed node's socket still answers late connections


class NodeListener:
    """Listen on ``ioctl/<node>`` and serve every open of the node in its own thread.

    ``factory(conn)`` makes the :class:`OpenFile` for a new connection (it may inspect the
    client first, e.g. which file it opened); returning None answers every call with ENODEV.
    """

    def __init__(self, sock_path: Path, factory: Callable[[Connection], OpenFile | None],
                 name: str) -> None:
        self.sock_path = sock_path
        self.factory = factory
        self.name = name
        sock_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            sock_path.unlink()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(sock_path))
        self._inode = os.stat(sock_path).st_ino  # a node made again later binds a new one
        self._sock.listen(64)
        self._stop = threading.Event()
        self._retired = False
        self._threads: set[threading.Thread] = set()
        self._conns: set[Connection] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True,
                                        name=f"hwtoken-umockdev-{name}")
        self._thread.start()

    def _accept_loop(self) -> None:
        from hwtoken.emulator.transports.acceptor import AcceptRetry

        def warn(_kind: str, msg: str, *args: object) -> None:
            log.warning(msg, *args)

        # out of file descriptors: wait for some to close instead of ending the node
        retry = AcceptRetry(f"umockdev node {self.name}", warn, self._stop)
        while not self._stop.is_set():
            got = retry.accept(self._sock)
            if got is None:
                return
            sock = got[0]
            if self._stop.is_set():
                sock.close()
                return
            conn = Connection(sock)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True,
                                 name=f"hwtoken-umockdev-{self.name}-open")
            with self._lock:
                self._threads.add(t)
                self._conns.add(conn)
            t.start()

    def _serve(self, conn: Connection) -> None:
        try:
            handler: OpenFile | None = None
            try:
                handler = None if self._retired else self.factory(conn)
            except Exception:
                log.exception("cannot serve an open of %s", self.name)
            serve_connection(conn, handler if handler is not None else _Gone(conn))
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())
                self._conns.discard(conn)

    @property
    def open_count(self) -> int:
        """Connections (open files) being served now."""
        with self._lock:
            return len(self._conns)

    def retire(self, grace: float = RETIRE_GRACE,
               on_closed: Callable[[NodeListener], object] | None = None) -> None:
        """The node is gone: a late connection (a program that opened the node just before
        it went, and connects only now) is answered ENODEV for ``grace`` seconds, then the
        listener closes. Closing at once would make umockdev abort that program: it finds
        the socket's path but cannot connect, as no kernel would ever fail an open file."""
        self._retired = True

        def close_later() -> None:
            self.close()
            if on_closed is not None:
                on_closed(self)

        timer = threading.Timer(grace, close_later)
        timer.daemon = True
        timer.start()

    def close(self, timeout: float = 2.0) -> None:
        """Stop accepting and remove the socket. Open files keep being answered until the
        program closes them (answering nothing would make umockdev abort the program)."""
        self._stop.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            if os.stat(self.sock_path).st_ino == self._inode:  # not a newer node's socket
                self.sock_path.unlink()
        self._thread.join(timeout)

    def disconnect_all(self, timeout: float = 2.0) -> None:
        """Drop every open file (the program is gone or the testbed is torn down)."""
        with self._lock:
            conns = list(self._conns)
            threads = list(self._threads)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        for t in threads:
            t.join(timeout)


#: ioctls on the open file itself, not the device (FIOCLEX, FIONCLEX, FIONBIO, FIOASYNC):
#: the program's real file answers them, a device that went or not
FILE_IOCTLS = frozenset({0x5451, 0x5450, 0x5421, 0x5452})


class _Gone(OpenFile):
    """An open of a node whose device is gone: every device call fails with ENODEV."""

    def ioctl(self, request: int, arg: int) -> None:
        if request in FILE_IOCTLS:
            self.conn.done(UNHANDLED)  # as the open files of a plugged node answer them
            return
        self.conn.fail(errno.ENODEV)

    def read(self, addr: int, count: int) -> None:
        self.conn.fail(errno.ENODEV)

    def write(self, addr: int, count: int) -> None:
        self.conn.fail(errno.ENODEV)


def pid_fds(pid: int) -> dict[int, str]:
    """The open files of process ``pid`` as ``{fd: link target}`` (empty if unreadable)."""
    out: dict[int, str] = {}
    base = f"/proc/{pid}/fd"
    try:
        names = os.listdir(base)
    except OSError:
        return out
    for name in names:
        with contextlib.suppress(OSError, ValueError):
            out[int(name)] = os.readlink(f"{base}/{name}")
    return out
