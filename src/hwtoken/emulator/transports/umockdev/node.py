"""What every emulated device node shares: its open files, and unplugging them all.

A node (``/dev/hidrawN``, ``/dev/bus/usb/BBB/DDD``) is the device side; each open of it
by a program is an :class:`~.preload.OpenFile` with a pty of its own, claimed from the
pool while the program still holds the fds it had before the open. Once the device is
unplugged every open file, present or future, fails with ENODEV.
"""

from __future__ import annotations

import threading
from typing import Any, Generic, TypeVar

from hwtoken.emulator.transports.umockdev.preload import Connection, OpenFile

OpenT = TypeVar("OpenT", bound="NodeOpen")


class NodeOpen(OpenFile):
    """An open file of a :class:`DeviceNode`."""

    def gone(self) -> None:
        """The device was unplugged under this open file."""


class DeviceNode(Generic[OpenT]):
    """The device side of one node: keeps its open files and unplugs them."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.unplugged = threading.Event()
        self._opens: set[OpenT] = set()
        self._lock = threading.Lock()

    def make_open(self, conn: Connection, pty: Any) -> OpenT:
        """The open file for ``conn`` using ``pty``; subclasses build theirs."""
        raise NotImplementedError

    def open(self, conn: Connection) -> OpenT:
        """A new open of the node (called when umockdev connects for it)."""
        from hwtoken.emulator.transports.umockdev.preload import pid_fds

        pty = self.pool.claim(pid_fds(conn.pid) if conn.pid else {})
        f = self.make_open(conn, pty)
        with self._lock:
            self._opens.add(f)
        if self.unplugged.is_set():
            f.gone()
        return f

    def forget(self, f: OpenT) -> None:
        """``f`` was closed: no longer one of the node's open files."""
        with self._lock:
            self._opens.discard(f)

    def unplug(self) -> None:
        """The device is gone: every open file fails with ENODEV from now on."""
        self.unplugged.set()
        with self._lock:
            opens = list(self._opens)
        for f in opens:
            f.gone()

    @property
    def open_count(self) -> int:
        with self._lock:
            return len(self._opens)
