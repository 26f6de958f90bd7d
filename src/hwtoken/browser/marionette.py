"""A small client for Firefox's Marionette protocol (what geckodriver itself speaks).

Firefox started with ``-marionette`` listens on 127.0.0.1 (``marionette.port``; with 0 it
picks a free port and writes it to ``MarionetteActivePort`` in the profile). The protocol
is JSON over TCP, each message framed as ``<decimal length>:<JSON>``:

* on connect the server sends ``{"applicationType": "gecko", "marionetteProtocol": 3}``;
* a command is ``[0, id, "WebDriver:Navigate", {params}]``;
* its response is ``[1, id, error, result]`` with ``error`` null or
  ``{"error": "no such element", "message": ..., "stacktrace": ...}``.

The command names are WebDriver's with a ``WebDriver:`` prefix (``NewSession``,
``Navigate``, ``FindElement``, ``ElementClick``, ``ExecuteScript`` ...) plus Marionette's
own (``Marionette:SetContext`` to run script in the browser's chrome, ``Marionette:Quit``).
This client needs nothing but the standard library, so Firefox can be driven where no
geckodriver is installed.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from typing import Any

PROTOCOL = 3
ELEMENT_KEY = "element-6066-11e4-a52e-4f735466cecf"  # WebDriver's web element identifier
MAX_FRAME = 64 * 1024 * 1024
COMMAND, RESPONSE = 0, 1

CONTEXT_CHROME = "chrome"  # privileged script in the browser window (Services, XPCOM)
CONTEXT_CONTENT = "content"  # script in the page


class MarionetteError(Exception):
    """Firefox answered a command with an error (``error`` is WebDriver's error code)."""

    def __init__(self, error: str, message: str, stacktrace: str = "") -> None:
        super().__init__(f"{error}: {message}")
        self.error = error
        self.message = message
        self.stacktrace = stacktrace


class MarionetteClient:
    """One connection to Marionette; :meth:`command` sends a command and waits for its answer.

    ``timeout`` bounds every socket operation, so a hung browser raises ``TimeoutError``
    instead of blocking a test forever. Commands are serialised (one at a time).
    """

    def __init__(self, port: int, host: str = "127.0.0.1", *, timeout: float = 60.0) -> None:
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._buf = b""
        self._lock = threading.Lock()
        self._next_id = 0
        try:
            hello = self._receive()
        except BaseException:
            self._sock.close()
            raise
        if not isinstance(hello, dict) or hello.get("marionetteProtocol") != PROTOCOL:
            self._sock.close()
            raise MarionetteError("unsupported protocol", f"unexpected greeting {hello!r}")
        self.application = str(hello.get("applicationType", ""))
        self.session_id: str | None = None
        self.capabilities: dict[str, Any] = {}

    # -- framing -----------------------------------------------------------------------------
    def _read_until(self, sep: bytes) -> bytes:
        while sep not in self._buf:
            if len(self._buf) > 32:
                raise MarionetteError("protocol error", "frame length too long")
            self._fill()
        head, _, self._buf = self._buf.partition(sep)
        return head

    def _fill(self) -> None:
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ConnectionError("Marionette closed the connection")
        self._buf += chunk

    def _receive(self) -> Any:
        length = self._read_until(b":")
        if not length.isdigit() or int(length) > MAX_FRAME:
            raise MarionetteError("protocol error", f"bad frame length {length[:32]!r}")
        size = int(length)
        while len(self._buf) < size:
            self._fill()
        data, self._buf = self._buf[:size], self._buf[size:]
        return json.loads(data)

    def _send(self, message: Any) -> None:
        data = json.dumps(message).encode()
        self._sock.sendall(str(len(data)).encode() + b":" + data)

    # -- commands ----------------------------------------------------------------------------
    def command(self, name: str, params: dict[str, Any] | None = None) -> Any:
        """Send ``name`` with ``params``; the result, or :class:`MarionetteError`."""
        with self._lock:
            self._next_id += 1
            msg_id = self._next_id
            self._send([COMMAND, msg_id, name, params or {}])
            while True:
                msg = self._receive()
                if isinstance(msg, list) and len(msg) == 4 and msg[0] == RESPONSE \
                        and msg[1] == msg_id:
                    break
            error, result = msg[2], msg[3]
        if error:
            raise MarionetteError(str(error.get("error", "unknown error")),
                                  str(error.get("message", "")), str(error.get("stacktrace", "")))
        return result

    def value(self, name: str, params: dict[str, Any] | None = None) -> Any:
        """:meth:`command` for commands whose result is ``{"value": ...}``."""
        result = self.command(name, params)
        return result.get("value") if isinstance(result, dict) else result

    def new_session(self, capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
        result = self.command("WebDriver:NewSession", {"capabilities": capabilities or {}})
        self.session_id = result.get("sessionId")
        self.capabilities = dict(result.get("capabilities", {}))
        return self.capabilities

    def set_timeouts(self, *, script: float | None = None, page_load: float | None = None,
                     implicit: float | None = None) -> None:
        """WebDriver timeouts, in seconds."""
        params = {k: int(v * 1000) for k, v in
                  (("script", script), ("pageLoad", page_load), ("implicit", implicit))
                  if v is not None}
        self.command("WebDriver:SetTimeouts", params)

    def navigate(self, url: str) -> None:
        self.command("WebDriver:Navigate", {"url": url})

    def find_element(self, selector: str, using: str = "css selector") -> str:
        """The element's WebDriver id (``no such element`` error when there is none)."""
        found = self.value("WebDriver:FindElement", {"using": using, "value": selector})
        return str(found[ELEMENT_KEY])

    def click(self, element: str) -> None:
        """A WebDriver click: a trusted event that gives the page user activation."""
        self.command("WebDriver:ElementClick", {"id": element})

    def clear(self, element: str) -> None:
        self.command("WebDriver:ElementClear", {"id": element})

    def send_keys(self, element: str, text: str) -> None:
        self.command("WebDriver:ElementSendKeys", {"id": element, "text": text})

    def element_text(self, element: str) -> str:
        return str(self.value("WebDriver:GetElementText", {"id": element}))

    def execute_script(self, script: str, args: list[Any] | None = None) -> Any:
        """Run ``script`` (a function body; ``arguments`` holds ``args``) and return its value."""
        return self.value("WebDriver:ExecuteScript", {"script": script, "args": args or []})

    def set_context(self, context: str) -> None:
        """:data:`CONTEXT_CHROME` (privileged browser script) or :data:`CONTEXT_CONTENT`."""
        self.command("Marionette:SetContext", {"value": context})

    def quit(self) -> None:
        """Ask Firefox to quit (the connection closes)."""
        with contextlib.suppress(ConnectionError, OSError):  # it quit before it answered
            self.command("Marionette:Quit", {"flags": ["eForceQuit"]})

    def set_socket_timeout(self, seconds: float) -> None:
        """Bound every later socket operation to ``seconds``."""
        self._sock.settimeout(seconds)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()


__all__ = ["MarionetteClient", "MarionetteError", "ELEMENT_KEY", "CONTEXT_CHROME",
           "CONTEXT_CONTENT"]
