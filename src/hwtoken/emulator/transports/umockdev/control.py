"""Plug and unplug the keys of a running testbed from another process.

``hwtoken emulate run`` (and ``serve --local``) owns its keys and its :class:`~.testbed.
Testbed`; :class:`ControlServer` lets ``hwtoken emulate plug NAME`` and ``unplug NAME``
(:func:`send`), run in another shell, pull a key out or put it back while the programs
in the testbed run — the way an admin rehearses a provisioning station, or a test plays
the person at the USB port. The socket is ``<testbed>/control.sock`` (mode 0600, in the
testbed's own 0700 directory); one request per connection: a line ``plug NAME``,
``unplug NAME`` or ``touch NAME SLOT`` (press the key's button: it types its OTP slot's code
into its keyboard interface; the answer carries the text as a JSON string), answered by one
line, ``ok ...`` or ``error: ...``. Connections are served side by side, at most
:data:`MAX_CONNECTIONS` at once, each given :data:`READ_TIMEOUT` seconds for its line
(:class:`hwtoken.controlsocket.Server`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hwtoken import controlsocket
from hwtoken.errors import DeviceError, HwtokenError, InvalidInput

SOCKET_NAME = "control.sock"
MAX_REQUEST = 256
TIMEOUT = controlsocket.TIMEOUT
READ_TIMEOUT = 10.0  # seconds the server gives a client to send its whole line
MAX_CONNECTIONS = 8


class ControlServer:
    """Answers ``plug NAME`` / ``unplug NAME`` for the keys ``keys`` of ``testbed``.

    ``on_change(name, plugged)`` runs after each change (the CLI rewrites the key's
    runtime file there); ``plug(key)`` plugs a key in (default ``testbed.plug``).
    """

    def __init__(self, testbed: Any, keys: dict[str, Any],
                 on_change: Callable[[str, Any], None] | None = None,
                 plug: Callable[[Any], Any] | None = None) -> None:
        self.testbed = testbed
        self.keys = dict(keys)
        self.on_change = on_change
        self._plug = plug or testbed.plug
        testbed.on_replug.append(self._replugged)
        self.path = Path(testbed.root) / SOCKET_NAME
        self._lock = threading.Lock()
        self._server = controlsocket.Server(
            self.path, self._answer, limit=MAX_REQUEST, name="hwtoken-umockdev-control",
            failure=b"error: the request failed in the testbed (see its log)",
            concurrent=True, max_connections=MAX_CONNECTIONS, read_timeout=READ_TIMEOUT)

    def _replugged(self, key: Any, plugged: Any) -> None:
        """A key rebooted into another USB device: its nodes changed."""
        name = next((n for n, k in self.keys.items() if k is key), None)
        if name is not None and self.on_change is not None:
            self.on_change(name, plugged)

    def plugged(self, name: str) -> Any | None:
        key = self.keys[name]
        return next((p for p in self.testbed.plugged if p.key is key), None)

    def handle(self, line: str) -> str:
        """One request: ``plug NAME``, ``unplug NAME`` or ``touch NAME SLOT``; the answer."""
        verb, _, name = line.strip().partition(" ")
        name = name.strip()
        if verb == "touch":
            return self._touch(name)
        if verb not in ("plug", "unplug") or not name:
            return "error: send 'plug NAME', 'unplug NAME' or 'touch NAME SLOT'"
        if name not in self.keys:
            known = ", ".join(sorted(self.keys)) or "none"
            return f"error: virtual key {name!r} is not in this testbed (it has: {known})"
        with self._lock:
            current = self.plugged(name)
            try:
                if verb == "plug":
                    if current is not None:
                        return f"error: {name} is already plugged in ({current.usbfs})"
                    plugged = self._plug(self.keys[name])
                    detail = " ".join([*plugged.hidraw, plugged.usbfs])
                else:
                    if current is None:
                        return f"error: {name} is not plugged in"
                    self.testbed.unplug(current)
                    plugged, detail = None, "pulled out"
            except HwtokenError as exc:
                return f"error: {exc}"
            if self.on_change is not None:
                self.on_change(name, plugged)
        return f"ok {verb} {name}: {detail}"

    def _touch(self, args: str) -> str:
        import json

        from hwtoken.emulator.applets.otp.hid import press

        name, _, slot = args.partition(" ")
        if name not in self.keys or slot.strip() not in ("1", "2"):
            return "error: send 'touch NAME SLOT' for a key of this testbed, SLOT 1 or 2"
        key = self.keys[name]
        with key.lock:
            typed = press(key, int(slot))
        return f"ok touch {name} {json.dumps(typed)}"

    def _answer(self, data: bytes) -> bytes:
        try:
            line = data.decode("utf-8")
        except UnicodeDecodeError:
            return b"error: the request is not UTF-8 text"
        return self.handle(line).encode()

    def close(self) -> None:
        self._server.close()


def send(path: str | os.PathLike[str], verb: str, name: str) -> str:
    """Ask the testbed whose control socket is ``path`` to ``plug``/``unplug`` ``name`` (or
    ``touch`` with ``name`` = "NAME SLOT"); the ``ok ...`` answer, or
    :class:`InvalidInput`/:class:`DeviceError` with its error."""
    try:
        data = controlsocket.ask(path, f"{verb} {name}".encode(), TIMEOUT)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise DeviceError(f"the testbed holding {name!r} does not answer ({reason}); is "
                          "its `hwtoken emulate run` still running?") from None
    answer = data.decode("utf-8", "replace").strip()
    if answer.startswith("error: "):
        raise InvalidInput(answer[len("error: "):])
    if not answer.startswith("ok"):
        raise DeviceError(f"unexpected answer from the testbed: {answer!r}")
    return answer


def touch(path: str | os.PathLike[str], name: str, slot: int) -> str:
    """Press the button of ``name`` in the testbed at ``path``: what its slot types."""
    import json

    answer = send(path, "touch", f"{name} {slot}")
    return str(json.loads(answer.split(" ", 3)[3]))
