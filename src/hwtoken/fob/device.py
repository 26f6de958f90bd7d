"""Talking to a fob over its USB serial port, through mpremote's transport.

:class:`Fob` enters MicroPython's raw REPL (interrupting the fob's main loop with Ctrl-C)
and calls the firmware's own functions (``accounts.add``, ``app.sync_time``...). Secrets
travel only inside that serial link: never on a subprocess's argv, never in a log or an
error message. Closing the connection soft-resets the board so the fob's display resumes.

``port`` is a serial device (``/dev/ttyACM0``) or any pyserial URL, e.g.
``socket://127.0.0.1:PORT`` (the tests' bridge to the MicroPython WebAssembly REPL).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from hwtoken.errors import DeviceError, InvalidInput
from hwtoken.fob.firmware import FIRMWARE_FILES, firmware_sources
from hwtoken.fob.settings import BOARDS, Changes
from hwtoken.fob.simulate import FobAccount

# USB vendor IDs of boards that run MicroPython: Raspberry Pi (RP2040 MicroPython CDC),
# Espressif native USB, and the USB-serial chips on ESP32 dev boards.
KNOWN_VIDS = {0x2E8A: "Raspberry Pi", 0x303A: "Espressif", 0x10C4: "Silicon Labs CP210x",
              0x1A86: "WCH CH340", 0x0403: "FTDI", 0xF055: "MicroPython"}
_MODULES = tuple(name[:-3] for name in FIRMWARE_FILES)


def find_port() -> str:
    """The fob's serial port: ``$HWTOKEN_FOB_PORT``, else the one MicroPython-board port."""
    env = os.environ.get("HWTOKEN_FOB_PORT")
    if env:
        return env
    from serial.tools import list_ports

    found = [p for p in list_ports.comports() if p.vid in KNOWN_VIDS]
    if not found:
        raise DeviceError("no fob found: plug it in over USB, or pass --port "
                          "(e.g. /dev/ttyACM0)")
    if len(found) > 1:
        names = ", ".join(p.device for p in found)
        raise DeviceError(f"several boards found ({names}): choose one with --port")
    return found[0].device


def _json_reply(out: bytes) -> Any:
    """The JSON document on the last line the fob printed."""
    try:
        return json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise DeviceError("the fob sent an unexpected reply") from None


@dataclass(frozen=True)
class Deployment:
    """What :meth:`Fob.deploy` did: each file ``written`` or ``unchanged``, and the
    settings: the keys the board's settings.json holds now (``kept``), those moved there
    from firmware 1.0's config.py (``moved``), whether they were ``reset``."""

    files: dict[str, str]
    kept: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)
    reset: bool = False
    board: str = "auto"
    ignored: list[str] = field(default_factory=list)

    @property
    def written(self) -> list[str]:
        return [n for n, what in self.files.items() if what == "written"]

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "board": self.board,
                "settings": {"kept": self.kept, "moved_from_config_py": self.moved,
                             "reset": self.reset, "ignored": self.ignored}}


def _error_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "unknown error"


class Fob:
    """A connection to a fob running the hwtoken firmware (or a bare MicroPython board)."""

    def __init__(self, port: str | None = None, *, timeout: float = 10.0) -> None:
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport

        self.port = port or find_port()
        try:
            self._t = SerialTransport(self.port, baudrate=115200, timeout=timeout)
        except (TransportError, OSError, ValueError) as exc:
            raise DeviceError(f"cannot open {self.port}: {exc}") from None
        try:
            self._t.enter_raw_repl(soft_reset=False)
        except (TransportError, OSError) as exc:
            self._t.close()
            raise DeviceError(f"no MicroPython REPL on {self.port} ({exc}); is it a MicroPython "
                              "board, and is no other program using the port?") from None

    # -- plumbing ----------------------------------------------------------------------
    def close(self, *, resume: bool = True) -> None:
        """Leave the raw REPL; with ``resume`` soft-reset so main.py (the fob) runs again."""
        t = getattr(self, "_t", None)
        if t is None:
            return
        self._t = None
        try:
            t.exit_raw_repl()
            if resume:
                t.serial.write(b"\x04")  # Ctrl-D in the friendly REPL: soft reset
                time.sleep(0.05)
        except OSError:
            pass
        finally:
            t.close()

    def __enter__(self) -> Fob:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _exec(self, code: str) -> bytes:
        """Run ``code`` on the fob; map MicroPython exceptions to hwtoken errors.

        Error messages carry only the exception's last line, never ``code`` (which may
        hold a secret).
        """
        from mpremote.transport import TransportError, TransportExecError

        if self._t is None:
            raise DeviceError("the fob connection is closed")
        try:
            return self._t.exec(code)
        except TransportExecError as exc:
            line = _error_line(exc.error_output)
            if line.startswith("ImportError"):
                raise DeviceError("the fob has no hwtoken firmware (or an old one): "
                                  "run `hwtoken fob deploy`") from None
            if line.startswith("ValueError: "):
                raise InvalidInput(line[len("ValueError: "):]) from None
            raise DeviceError(f"the fob reported: {line}") from None
        except (TransportError, OSError) as exc:
            raise DeviceError(f"lost the fob on {self.port}: {exc}") from None

    def call(self, expression: str, imports: str = "") -> Any:
        """Evaluate ``expression`` on the fob and return its JSON-decoded value."""
        return _json_reply(self._exec(f"import json{',' + imports if imports else ''}\n"
                                      f"print(json.dumps({expression}))"))

    # -- operations ----------------------------------------------------------------------
    def deploy(self, board: str | None = None, *, force: bool = False,
               reset_settings: bool = False) -> Deployment:
        """Copy the firmware to the board's flash, skipping files already there unchanged.

        Accounts, clock and settings are kept: the settings live in the board's
        settings.json, which no deploy writes. A board with firmware 1.0 (settings inside
        config.py) has them moved to settings.json first. ``reset_settings`` forgets them
        instead; ``board`` sets the setting ``board``.
        """
        if board is not None and board not in BOARDS:
            raise InvalidInput(f"board must be one of {', '.join(BOARDS)}")
        files = firmware_sources()
        from mpremote.transport import TransportError

        moved: list[str] = []
        if not reset_settings:
            moved = self._move_legacy_settings()
        remote = {} if force else self._remote_hashes(list(files))
        result: dict[str, str] = {}
        for name, data in files.items():
            if remote.get(name) == hashlib.sha256(data).hexdigest():
                result[name] = "unchanged"
                continue
            try:
                self._t.fs_writefile(name, data, chunk_size=4096)
            except (TransportError, OSError) as exc:
                raise DeviceError(f"writing {name} to the fob failed: {exc}") from None
            result[name] = "written"
        # forget any old firmware modules imported before (a soft reset does this too)
        self._exec(f"import sys\nfor m in {_MODULES!r}:\n    sys.modules.pop(m, None)")
        if reset_settings:
            self._exec("import config\nconfig.reset()")
        if board is not None:
            self.call(f"config.save({{'board': {board!r}}})", "config")
        info = self.settings()
        return Deployment(result, kept=info["custom"], moved=moved, reset=reset_settings,
                          board=info["board"], ignored=info.get("ignored", []))

    def _move_legacy_settings(self) -> list[str]:
        """Move firmware 1.0's settings from config.py to settings.json; the keys moved."""
        from hwtoken.fob.settings import migration_script

        moved = _json_reply(self._exec(migration_script()))
        if isinstance(moved, dict):
            raise InvalidInput(f"the fob's config.py cannot be read ({moved.get('error')}), so "
                               "its settings cannot be kept: fix it (mpremote edit config.py), "
                               "or deploy with --reset-settings to start over with the "
                               "defaults")
        return list(moved or [])

    # -- settings ----------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """The settings in effect on the fob (``config.info()``: the Wi-Fi password only
        as set or not), with ``custom``: the keys its settings.json holds."""
        return self._settings_call("")

    def configure(self, changes: Changes) -> dict[str, Any]:
        """Write ``changes`` to the fob's settings.json; returns :meth:`settings`.

        The fob applies them when it restarts (at :meth:`close`).
        """
        return self._settings_call(f"config.save({changes.values!r}, {changes.reset!r})\n")

    def _settings_call(self, code: str) -> dict[str, Any]:
        # firmware 1.0 has a config.py without settings: say "deploy", not AttributeError
        return _json_reply(self._exec(
            "import json, config\nif not hasattr(config, 'info'):\n"
            "    raise ImportError('firmware 1.0 keeps its settings in config.py')\n"
            f"{code}print(json.dumps(config.info()))"))

    def _remote_hashes(self, names: list[str]) -> dict[str, str | None]:
        """SHA-256 of each file on the board (None if missing or no hashlib.sha256)."""
        code = (f"import json, binascii\nout = {{}}\nfor n in {names!r}:\n"
                "    try:\n        import hashlib\n        h = hashlib.sha256()\n"
                "        with open(n, 'rb') as f:\n            h.update(f.read())\n"
                "        out[n] = binascii.hexlify(h.digest()).decode()\n"
                "    except Exception:\n        out[n] = None\n"
                "print(json.dumps(out))")
        try:
            return _json_reply(self._exec(code))
        except DeviceError:
            return {}

    def accounts(self) -> list[dict[str, Any]]:
        """The fob's accounts, without secrets."""
        return self.call("accounts.summary()", "accounts")

    def add(self, account: FobAccount) -> int:
        """Add (or replace) ``account``; returns how many accounts the fob now holds."""
        a = account
        return int(self.call(f"accounts.add({a.name!r}, {a.secret!r}, {a.algorithm!r}, "
                             f"{int(a.digits)}, {int(a.period)})", "accounts"))

    def remove(self, name: str) -> bool:
        """Remove the account ``name``; False if there was none."""
        return bool(self.call(f"accounts.remove({name!r})", "accounts"))

    def wipe(self) -> None:
        """Delete every account from the fob."""
        self._exec("import accounts\naccounts.wipe()")

    def export_accounts(self) -> list[FobAccount]:
        """The accounts WITH secrets (for simulate); they stay in this process's memory."""
        records = self.call("[a.record() for a in accounts.load()]", "accounts")
        return [FobAccount.from_record(r) for r in records]

    def sync_time(self, at: float | None = None) -> dict[str, Any]:
        """Set the fob's clock to ``at`` (default: now, UTC).

        Returns ``{"time": ..., "drift": seconds the fob was off (fob - host), or None if
        it had no trusted time, "source": "ds3231"|"rtc"}``.
        """
        before = self.call("app.hardware_clock().status()", "app")
        t = round(time.time() if at is None else at)
        drift = self.call(f"app.sync_time({t})", "app")
        return {"time": t, "drift": drift, "source": before.get("source"),
                "was_trusted": bool(before.get("trusted"))}

    def status(self) -> dict[str, Any]:
        """Time (and its offset from the host's), accounts, free memory, board, version."""
        st = self.call("app.status()", "app")
        st["host_time"] = round(time.time())
        if st.get("time") is not None:
            st["offset"] = st["time"] - st["host_time"]
        return st

    def files(self) -> list[str]:
        """Names of the files in the board's root directory."""
        return [entry.name for entry in self._t.fs_listdir("/")]
