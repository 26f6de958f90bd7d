"""The virtual fob's board process: MicroPython's WebAssembly port under Node.js.

:class:`FobEmulator` starts ``board/board.mjs`` (see its header for the JSON lines both
sides speak) and keeps what the host needs: the latest frame of the simulated OLED, whether
the fob's main loop runs, and the bytes its serial port sends, which it hands to whoever
serves that port (:mod:`hwtoken.fob.emulator.ports`). Every wait has a timeout.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import logging
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from hwtoken.errors import DeviceError, InvalidInput, SetupError
from hwtoken.fob.emulator import locate
from hwtoken.fob.simulate import Screen

log = logging.getLogger(__name__)

START_TIMEOUT = 30.0
REQUEST_TIMEOUT = 20.0
BUTTONS = {"next": ("a", False), "prev": ("b", False), "long": ("a", True)}
NODE_ERROR = re.compile(r"\w*Error\b[^:]*: ")  # "TypeError: ...", "Error [ERR_...]: ..."


@dataclass(frozen=True)
class Frame:
    """What the OLED shows: its RAM, whether it is on, its contrast; ``n`` counts updates."""

    screen: Screen
    on: bool
    contrast: int
    n: int

    @property
    def visible(self) -> Screen:
        """The screen as a person sees it: blank while the display is off."""
        return self.screen if self.on else Screen(bytes(len(self.screen.buffer)))

    @property
    def display(self) -> str:
        """``on``, ``dim`` (a contrast below 64: the fob dims to 8 by default) or ``off``."""
        return display_state(self.on, self.contrast)


def display_state(on: bool, contrast: int) -> str:
    return "off" if not on else "dim" if contrast < 64 else "on"


def _lines(stream: IO[bytes]) -> Iterator[bytes]:
    """The lines of ``stream`` until it ends or :meth:`FobEmulator.stop` closes it (from
    any thread: the reader's own too, in a callback)."""
    with contextlib.suppress(ValueError, OSError):
        yield from stream


class FobEmulator:
    """A virtual fob: ``firmware/`` running on MicroPython's WebAssembly port with a simulated
    SSD1306 at ``oled_addr``, two buttons, a chip RTC and (``ds3231``) a DS3231 module.

    ``flash`` is a directory that holds the board's flash between runs (files 0600); without
    it the flash lives in memory and starts empty, like a freshly flashed board. Use it as a
    context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, *, flash: str | os.PathLike[str] | None = None, oled_addr: int = 0x3C,
                 ds3231: bool = False) -> None:
        if not 0x08 <= oled_addr <= 0x77 or oled_addr == 0x68 and ds3231:
            raise InvalidInput("the OLED's I2C address must be from 0x08 to 0x77 (and not "
                               "0x68 with a DS3231)")
        self.flash = Path(flash) if flash is not None else None
        self.oled_addr = oled_addr
        self.ds3231 = ds3231
        self.on_output: Callable[[bytes], None] | None = None  # the serial port's bytes
        self.on_frame: Callable[[Frame], None] | None = None
        self.version = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._cond = threading.Condition()
        self._frame = Frame(Screen(bytes(1024)), False, 0, 0)
        self._running = False
        self._ready = False
        self._replies: dict[int, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._write_lock = threading.Lock()
        self._stderr: list[bytes] = []

    # -- life --------------------------------------------------------------------------
    def start(self, timeout: float = START_TIMEOUT) -> FobEmulator:
        """Start the board (power on) and wait until it has booted."""
        node, mp = locate.node(), locate.micropython()
        if self.flash is not None and not self.flash.is_dir():
            raise InvalidInput(f"the flash directory {self.flash} does not exist")
        cfg = {"micropython": str(mp), "machine": str(locate.BOARD_DIR / "machine.py"),
               "flash": str(self.flash.resolve()) if self.flash else None,
               "oled_addr": self.oled_addr, "ds3231": self.ds3231}
        self._proc = subprocess.Popen(
            [node, str(locate.BOARD_DIR / "board.mjs"), json.dumps(cfg)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True)  # Ctrl-C in the terminal goes to us, not to the board
        self._reader = threading.Thread(target=self._read, daemon=True,
                                        name="hwtoken-fob-emulator")
        self._reader.start()
        drain = threading.Thread(target=self._drain_stderr, daemon=True)
        drain.start()
        with self._cond:
            started = self._cond.wait_for(lambda: self._ready or not self.alive, timeout)
        if not started:  # (stopped without the lock: the reader thread needs it to end)
            self.stop()
            raise SetupError(f"the virtual fob did not start within {timeout:.0f} s")
        if not self._ready:
            drain.join(5)  # all it wrote on stderr, up to its end
            why = self.failure()
            self.stop()
            raise SetupError(f"the virtual fob's Node.js process failed: {why}")
        return self

    def failure(self) -> str:
        """Why the Node.js process ended: the last error line it wrote on stderr (an uncaught
        exception's ``Error: ...``, which Node.js follows with its stack and version), else
        its last line."""
        text = b"".join(self._stderr).decode("utf-8", "replace")
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        errors = [ln for ln in lines if NODE_ERROR.match(ln)]
        return (errors or lines)[-1][:300] if lines else "no message"

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the board (its flash saved to ``flash``), and the Node.js process with it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.poll() is None and proc.stdin is not None:
                with contextlib.suppress(OSError, ValueError), self._write_lock:
                    proc.stdin.write(b'{"op": "stop"}\n')
                    proc.stdin.close()
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout)
        finally:
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                with contextlib.suppress(OSError, ValueError):
                    if stream is not None:
                        stream.close()
            if self._reader is not None and self._reader is not threading.current_thread():
                self._reader.join(timeout)
            with self._cond:
                self._cond.notify_all()

    def __enter__(self) -> FobEmulator:
        return self.start() if self._proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what the board says ---------------------------------------------------------------
    def _read(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        for line in _lines(proc.stdout):
            try:
                msg = json.loads(line)
            except ValueError:
                log.debug("unexpected line from the board: %r", line[:200])
                continue
            ev = msg.get("ev")
            if ev == "repl":
                if self.on_output is not None:
                    self.on_output(base64.b64decode(msg["data"]))
                continue
            with self._cond:
                if ev == "frame":
                    self._frame = Frame(Screen(base64.b64decode(msg["ram"])), bool(msg["on"]),
                                        int(msg["contrast"]), int(msg["n"]))
                elif ev == "state":
                    self._running = bool(msg["running"])
                elif ev == "ready":
                    self._ready = True
                    self.version = str(msg.get("version", ""))
                elif "id" in msg:
                    self._replies[int(msg["id"])] = msg
                elif ev == "log":
                    log.warning("virtual fob: %s", msg.get("error"))
                self._cond.notify_all()
            if ev == "frame" and self.on_frame is not None:
                self.on_frame(self._frame)
        # its output has ended: it is exiting; once it has, waiters see it is not alive
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        with self._cond:
            self._cond.notify_all()

    def _drain_stderr(self) -> None:
        proc = self._proc
        if proc is None or proc.stderr is None:
            return
        with contextlib.suppress(ValueError, OSError):  # stop() closed it
            for chunk in iter(lambda: proc.stderr.read(4096), b""):  # type: ignore[union-attr]
                self._stderr.append(chunk)
                del self._stderr[:-16]

    @property
    def frame(self) -> Frame:
        """The latest frame the OLED received."""
        with self._cond:
            return self._frame

    @property
    def running(self) -> bool:
        """True while the fob's main loop runs (no host holds its REPL)."""
        with self._cond:
            return self._running

    def wait_running(self, timeout: float = 10.0) -> bool:
        """Wait until the fob's main loop runs (after a host closed its REPL)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._running or not self.alive, timeout) \
                and self._running

    # -- what the host does ----------------------------------------------------------------
    def _send(self, doc: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise DeviceError("the virtual fob is not running")
        with self._write_lock:
            proc.stdin.write(json.dumps(doc).encode() + b"\n")
            proc.stdin.flush()

    def write(self, data: bytes) -> None:
        """Bytes a host sends to the fob's serial port."""
        try:
            self._send({"op": "repl", "data": base64.b64encode(data).decode()})
        except (OSError, ValueError):
            raise DeviceError("the virtual fob stopped") from None

    def request(self, op: str, timeout: float = REQUEST_TIMEOUT, **args: Any) -> dict[str, Any]:
        """Ask the board something; its answer (DeviceError when it refuses)."""
        rid = next(self._ids)
        try:
            self._send({"op": op, "id": rid, **args})
        except (OSError, ValueError):
            raise DeviceError("the virtual fob stopped") from None
        with self._cond:
            if not self._cond.wait_for(lambda: rid in self._replies or not self.alive, timeout):
                raise DeviceError(f"the virtual fob did not answer {op!r} within {timeout:.0f} s")
            reply = self._replies.pop(rid, None)
        if reply is None:
            raise DeviceError("the virtual fob stopped")
        if not reply.get("ok"):
            raise DeviceError(str(reply.get("error")))
        return {k: v for k, v in reply.items() if k not in ("id", "ok")}

    def press(self, button: str = "next", wait: float = 5.0) -> dict[str, Any]:
        """Press a button as a person would: ``next`` (A), ``prev`` (B) or ``long`` (A held:
        the next code). Returns once the fob has handled it (and redrawn its screen). A fob
        whose main loop is not running (a host holds its REPL) is given ``wait`` seconds to
        start it again."""
        try:
            which, long = BUTTONS[button]
        except KeyError:
            raise InvalidInput(f"button must be one of {', '.join(BUTTONS)}") from None
        return self.request("press", button=which, long=long, wait_ms=int(wait * 1000),
                            timeout=REQUEST_TIMEOUT + wait)

    def heap(self) -> dict[str, Any]:
        """``gc.mem_alloc()``/``gc.mem_free()`` after ``gc.collect()`` between two turns of
        the main loop (``running``: whether it runs)."""
        return self.request("heap")

    def shift_rtc(self, seconds: int) -> None:
        """Make the chip RTC run ``seconds`` ahead (negative: behind), as drift would."""
        self.request("shift_rtc", seconds=int(seconds))

    def power_cycle(self) -> None:
        """Unplug and plug in again: the chip RTC restarts at 2021-01-01, the DS3231 keeps
        counting, the flash keeps its files."""
        with self._cond:
            self._running = False
        self.request("power")

    def wait_frame(self, test: Callable[[Frame], bool], timeout: float = 10.0) -> Frame:
        """The first frame (the current one included) for which ``test`` holds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not test(self._frame):
                left = deadline - time.monotonic()
                if left <= 0 or not self.alive:
                    raise DeviceError(f"the virtual fob's screen did not show what was "
                                      f"expected within {timeout:.0f} s")
                self._cond.wait(left)
            return self._frame
