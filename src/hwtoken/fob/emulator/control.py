"""Reach a running ``hwtoken fob emulate`` from another process: press its buttons, read
its screen, find its serial port.

Each virtual fob has a NAME (default ``fob``). While it runs, the state directory's
``fob-emulators/`` (mode 0700) holds ``NAME.lock`` (held by the emulating process),
``NAME.json`` (its pid, serial port and control socket) and ``NAME.sock``, a Unix socket
(mode 0600) that answers one JSON request per connection with one JSON line:
``{"op": "press", "button": "next"|"prev"|"long"}``, ``{"op": "screen"}``,
``{"op": "heap"}``; an answer holds ``"ok"``, and ``"error"`` when it is false.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from hwtoken import controlsocket, paths
from hwtoken.errors import DeviceError, HwtokenError, InvalidInput
from hwtoken.fileio import FileLock, atomic_write, is_locked
from hwtoken.fob.emulator.process import FobEmulator, Frame

log = logging.getLogger(__name__)

DEFAULT_NAME = "fob"
MAX_REQUEST = 1024
TIMEOUT = controlsocket.TIMEOUT


def runtime_dir() -> Path:
    return paths.state_dir() / "fob-emulators"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not paths.KEY_NAME.fullmatch(name):
        raise InvalidInput("a virtual fob's name is 1 to 64 ASCII letters, digits, - and _ "
                           "(not starting with -)")
    return name


def frame_doc(frame: Frame) -> dict[str, Any]:
    return {"ram": base64.b64encode(frame.screen.buffer).decode(), "on": frame.on,
            "contrast": frame.contrast, "n": frame.n}


def claim(name: str) -> FileLock:
    """The lock that makes this process the virtual fob ``name`` (DeviceBusy if taken)."""
    d = runtime_dir()
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = d / f"{check_name(name)}.sock"
    if len(os.fsencode(path)) > 107:
        raise InvalidInput(f"the control socket path {path} is too long for a Unix socket: "
                           "use a shorter --state-dir")
    return FileLock(d / f"{name}.lock", what=f"virtual fob {name!r}")


class ControlServer:
    """Serves the control socket of ``emulator`` (whose :func:`claim` the caller holds) and
    keeps its runtime file."""

    def __init__(self, emulator: FobEmulator, name: str, port: str) -> None:
        self.emulator = emulator
        self.name = check_name(name)
        d = runtime_dir()
        self.path = d / f"{name}.sock"
        self.doc_path = d / f"{name}.json"
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left by an emulator that died: we hold the lock now
        self._server = controlsocket.Server(
            self.path, self._answer, limit=MAX_REQUEST, name="hwtoken-fob-control",
            failure=b'{"ok": false, "error": "the request failed in the emulator"}',
            concurrent=True)  # a press takes a while: a screen request need not wait
        self.doc = {"name": name, "pid": os.getpid(), "port": port,
                    "control": str(self.path), "started": int(time.time())}
        atomic_write(self.doc_path, json.dumps(self.doc) + "\n")

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        if op == "press":
            return self.emulator.press(str(req.get("button", "next")))
        if op == "screen":
            return {**frame_doc(self.emulator.frame), "running": self.emulator.running}
        if op == "heap":
            return self.emulator.heap()
        raise InvalidInput("send op press, screen or heap")

    def _answer(self, data: bytes) -> bytes:
        try:
            req = json.loads(data)
            if not isinstance(req, dict):
                raise ValueError
            answer = {"ok": True, **self.handle(req)}
        except HwtokenError as exc:
            answer = {"ok": False, "error": str(exc)}
        except ValueError:
            answer = {"ok": False, "error": "not a JSON request"}
        return json.dumps(answer).encode()

    def close(self) -> None:
        self._server.close()
        with contextlib.suppress(FileNotFoundError):
            self.doc_path.unlink()


def running(name: str) -> dict[str, Any] | None:
    """The runtime document of the virtual fob ``name``, or None when none runs."""
    d = runtime_dir()
    check_name(name)
    if not is_locked(d / f"{name}.lock"):
        return None
    try:
        doc = json.loads((d / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def request(name: str, req: dict[str, Any], timeout: float = TIMEOUT) -> dict[str, Any]:
    """Send ``req`` to the virtual fob ``name``; its answer (errors raised as DeviceError)."""
    doc = running(name)
    if doc is None:
        how = "" if name == DEFAULT_NAME else f" --name {name}"
        raise DeviceError(f"no virtual fob named {name!r} is running: start one with "
                          f"`hwtoken fob emulate{how}`")
    try:
        data = controlsocket.ask(doc["control"], json.dumps(req).encode(), timeout)
    except OSError as exc:
        raise DeviceError(f"the virtual fob {name!r} does not answer "
                          f"({exc.strerror or exc})") from None
    try:
        answer = json.loads(data)
    except ValueError:
        raise DeviceError(f"the virtual fob {name!r} sent an unexpected answer") from None
    if not answer.get("ok"):
        raise DeviceError(str(answer.get("error")))
    return answer

