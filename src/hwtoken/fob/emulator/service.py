"""What ``hwtoken fob emulate`` runs: a :class:`FobEmulator` with its serial port (TCP on
127.0.0.1, or a pty) and its control socket, and the watchers of its screen."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hwtoken.fileio import atomic_write
from hwtoken.fob.emulator.control import ControlServer, claim
from hwtoken.fob.emulator.ports import PtyPort, TcpPort
from hwtoken.fob.emulator.process import FobEmulator, Frame


class Service:
    """The virtual fob ``name`` and its ports, from ``with Service(...) as svc:`` to the end
    of the block. ``pty`` (a symlink to create, or True for the bare pty) serves the REPL on
    a pseudo-terminal instead of ``tcp_port`` on 127.0.0.1."""

    def __init__(self, name: str, *, tcp_port: int = 0, pty: str | bool | None = None,
                 flash: str | os.PathLike[str] | None = None, oled_addr: int = 0x3C,
                 ds3231: bool = False) -> None:
        self.name = name
        self.tcp_port = tcp_port
        self.pty = pty
        if pty not in (None, True):
            PtyPort.check_link(pty)  # before anything starts
        self.emulator = FobEmulator(flash=flash, oled_addr=oled_addr, ds3231=ds3231)
        self.port: TcpPort | PtyPort | None = None
        self.control: ControlServer | None = None
        self._stack = contextlib.ExitStack()

    @property
    def port_name(self) -> str:
        assert self.port is not None
        return self.port.url if isinstance(self.port, TcpPort) else self.port.name

    def __enter__(self) -> Service:
        lock = claim(self.name)  # before anything starts: a second one stops here
        self._stack.callback(lock.release)
        try:
            self.emulator.start()
            self._stack.callback(self.emulator.stop)
            if self.pty is not None:
                self.port = PtyPort(self.emulator, None if self.pty is True else self.pty)
            else:
                self.port = TcpPort(self.emulator, self.tcp_port)
            self._stack.callback(self.port.close)
            self.control = ControlServer(self.emulator, self.name, self.port_name)
            self._stack.callback(self.control.close)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def describe(self) -> dict[str, Any]:
        emu = self.emulator
        doc: dict[str, Any] = {
            "name": self.name, "port": self.port_name,
            "micropython": emu.version, "oled_addr": f"0x{emu.oled_addr:02X}",
            "ds3231": emu.ds3231, "flash": str(emu.flash) if emu.flash else None,
            "control": str(self.control.path) if self.control else None,
            "pid": os.getpid()}
        if isinstance(self.port, PtyPort):
            doc["pty"] = self.port.path
        return doc


class FrameLog:
    """Hands each new picture of the screen to ``show`` and, with ``directory``, writes it
    as ``frame-000001.png``, ``frame-000002.png``... (``scale`` pixels per OLED pixel; a
    dimmed display is drawn grey, one switched off black)."""

    def __init__(self, show: Callable[[Frame, int], None] | None = None,
                 directory: str | os.PathLike[str] | None = None, scale: int = 4) -> None:
        self.show = show
        self.directory = Path(directory) if directory is not None else None
        self.scale = scale
        self.count = 0
        self._last: tuple[bytes, str] | None = None
        self._lock = threading.Lock()

    def __call__(self, frame: Frame) -> None:
        look = (frame.visible.buffer, frame.display)
        with self._lock:
            if look == self._last:  # a redraw of the same picture, or a contrast step
                return
            self._last = look
            self.count += 1
            n = self.count
            if self.directory is not None:
                level = {"off": 0, "dim": 96, "on": 255}[frame.display]
                atomic_write(self.directory / f"frame-{n:06d}.png",
                             frame.visible.to_png(self.scale, on=level), mode=0o600,
                             fsync=False)
            if self.show is not None:
                self.show(frame, n)
