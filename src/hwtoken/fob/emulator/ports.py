"""The virtual fob's serial port, served to programs on this machine only.

:class:`TcpPort` listens on 127.0.0.1 (pyserial and mpremote reach it as
``socket://127.0.0.1:PORT``); :class:`PtyPort` is a pseudo-terminal owned by the user (mode
0600), a device path like a board's ``/dev/ttyACM0``, optionally reached through a symlink.
Either carries bytes, both ways, between one program at a time and the board; what the
board sends while no program listens is lost, as with a USB serial port nobody opened.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
import termios
import threading
import tty
from pathlib import Path

from hwtoken.errors import HwtokenError, InvalidInput
from hwtoken.fob.emulator.process import FobEmulator

log = logging.getLogger(__name__)

BUSY_WAIT = 2.0  # seconds a second program waits for the first to close the port


class TcpPort:
    """The board's serial port on ``127.0.0.1:port`` (0: a free port)."""

    def __init__(self, emulator: FobEmulator, port: int = 0) -> None:
        self.emulator = emulator
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind(("127.0.0.1", port))
        except OSError as exc:
            self._sock.close()
            raise InvalidInput(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None
        self._sock.listen(4)
        self.port = self._sock.getsockname()[1]
        self.url = f"socket://127.0.0.1:{self.port}"
        self._client: socket.socket | None = None
        self._lock = threading.Lock()
        self._free = threading.Condition(self._lock)
        self._closed = False
        emulator.on_output = self._output
        self._thread = threading.Thread(target=self._serve, daemon=True,
                                        name="hwtoken-fob-tcp")
        self._thread.start()

    def _output(self, data: bytes) -> None:
        with self._lock:
            client = self._client
        if client is not None:
            with contextlib.suppress(OSError):
                client.sendall(data)

    def _serve(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._free:
                # one program at a time, like a serial port; one that has just closed it
                # may not be noticed yet: give it a moment
                if self._free.wait_for(lambda: self._client is None, BUSY_WAIT):
                    self._client = conn
                else:
                    conn.close()
                    continue
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        try:
            while True:
                data = conn.recv(4096)
                if not data:
                    break
                self.emulator.write(data)
        except (OSError, HwtokenError) as exc:  # the client went, or the board stopped
            log.debug("serial client dropped: %s", exc)
        finally:
            with self._free:
                if self._client is conn:
                    self._client = None
                self._free.notify_all()
            conn.close()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            client.close()
        self._thread.join(5)


class PtyPort:
    """The board's serial port as a pseudo-terminal (``path``), with a symlink at ``link``."""

    def __init__(self, emulator: FobEmulator, link: str | os.PathLike[str] | None = None) -> None:
        self.emulator = emulator
        self.link = Path(link) if link is not None else None
        if self.link is not None:
            self.check_link(self.link)
        self._master, self._slave = os.openpty()
        os.fchmod(self._slave, 0o600)  # the user's alone (a terminal's default lets group tty in)
        tty.setraw(self._slave)  # bytes as they are: no echo, no line editing, no CR/LF mapping
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        if self.link is not None:
            os.symlink(self.path, self.link)
        self._stop_r, self._stop_w = os.pipe()
        emulator.on_output = self._output
        self._thread = threading.Thread(target=self._serve, daemon=True,
                                        name="hwtoken-fob-pty")
        self._thread.start()

    @staticmethod
    def check_link(link: str | os.PathLike[str]) -> None:
        """InvalidInput unless a symlink can be created at ``link`` (a new path)."""
        link = Path(link)
        if link.exists() or link.is_symlink():
            raise InvalidInput(f"{link} already exists: name a new path for the virtual fob's "
                               "serial port")
        if not link.parent.is_dir():
            raise InvalidInput(f"cannot create {link}: the directory {link.parent} does not "
                               "exist")

    @property
    def name(self) -> str:
        """What to give ``--port``: the symlink if there is one, else the pty itself."""
        return str(self.link) if self.link is not None else self.path

    def _output(self, data: bytes) -> None:
        for _ in range(2):
            try:
                os.write(self._master, data)
                return
            except BlockingIOError:  # nobody reads the port: drop what waits there
                with contextlib.suppress(OSError):
                    termios.tcflush(self._slave, termios.TCIFLUSH)
            except OSError:
                return

    def _serve(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self._master, self._stop_r], [], [])
            except OSError:
                return
            if self._stop_r in ready:
                return
            try:
                data = os.read(self._master, 4096)
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:
                    continue
                return
            if data:
                try:
                    self.emulator.write(data)
                except HwtokenError:  # the board stopped
                    return

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(5)
        if self.link is not None:
            with contextlib.suppress(OSError):
                if self.link.is_symlink() and os.readlink(self.link) == self.path:
                    self.link.unlink()
        for fd in (self._master, self._slave, self._stop_r, self._stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)
