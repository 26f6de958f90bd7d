"""The fob's settings, from the host's side: what each one means and accepts, and the move
from firmware 1.0's layout.

On the board the settings live in ``settings.json``, apart from the code: ``firmware/
config.py`` holds the defaults and applies the file at boot, and ``hwtoken fob deploy``
replaces the code but never that file. This module checks what ``hwtoken fob config
KEY=VALUE`` is given, before any byte goes to the board (the firmware checks types again
when it loads the file, so a hand-edited file cannot stop the fob from booting).

Firmware 1.0 kept the settings in ``config.py`` itself, which every deploy overwrote.
:func:`migration_script` is the MicroPython code deploy runs once on such a board: it reads
the old ``config.py``, keeps what differs from 1.0's defaults in ``settings.json`` and
names (never shows) what it kept. The Wi-Fi password stays on the board.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from hwtoken.errors import InvalidInput

BOARDS = ("pico", "picow", "esp32")
MAX_GPIO = 48  # the highest GPIO number of the boards MicroPython runs on (ESP32-S3: 48)


def _int_in(low: int, high: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip(), 0)
        except ValueError:
            raise InvalidInput(f"{what} must be a whole number from {low} to {high}, "
                               f"not {text!r}") from None
        if not low <= value <= high:
            raise InvalidInput(f"{what} must be from {low} to {high}, not {text!r}")
        return value
    return parse


def _gpio(optional: bool) -> Callable[[str], int | None]:
    number = _int_in(0, MAX_GPIO, "a GPIO number")

    def parse(text: str) -> int | None:
        if optional and text.strip().lower() == "none":
            return None
        return number(text)
    return parse


def _seconds(low: int) -> Callable[[str], int]:
    number = _int_in(low, 86400, "the time in seconds")

    def parse(text: str) -> int:
        if low == 0 and text.strip().lower() == "never":
            return 0
        return number(text.strip().removesuffix("s"))
    return parse


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise InvalidInput(f"must be one of {', '.join(choices)}, not {text!r}")
        return text
    return parse


_ON = {"on": True, "yes": True, "true": True, "1": True,
       "off": False, "no": False, "false": False, "0": False}


def _on_off(text: str) -> bool:
    try:
        return _ON[text.strip().lower()]
    except KeyError:
        raise InvalidInput(f"must be on or off, not {text!r}") from None


_OFFSET = re.compile(r"([+-])(\d{1,2})(?::?(\d{2}))?")


def _utc_offset(text: str) -> int:
    """``+02:00``, ``-0530``, ``+1``, ``UTC`` or ``Z`` -> minutes east of UTC."""
    t = text.strip().upper()
    if t in ("UTC", "Z", "0", "+00:00", "-00:00"):
        return 0
    m = _OFFSET.fullmatch(t.removeprefix("UTC"))
    if not m or int(m[3] or 0) >= 60:
        raise InvalidInput(f"must be an offset from UTC such as +02:00 or -05:30 (or UTC), "
                           f"not {text!r}")
    minutes = (int(m[2]) * 60 + int(m[3] or 0)) * (-1 if m[1] == "-" else 1)
    if not -12 * 60 <= minutes <= 14 * 60:
        raise InvalidInput(f"must be from -12:00 to +14:00, not {text!r}")
    return minutes


def show_utc_offset(minutes: int) -> str:
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


_HOST = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                   r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")


def _hostname(text: str) -> str:
    if not _HOST.fullmatch(text):
        raise InvalidInput(f"must be a host name such as pool.ntp.org, not {text!r}")
    return text


def _ssid(text: str) -> str:
    if len(text.encode()) > 32:
        raise InvalidInput("the Wi-Fi network name (SSID) is at most 32 bytes")
    if any(ord(c) < 32 for c in text):
        raise InvalidInput("the Wi-Fi network name (SSID) holds a control character")
    return text


def _wifi_password(text: str) -> str:
    if text and not (8 <= len(text) <= 63 and all(32 <= ord(c) <= 126 for c in text)) \
            and not re.fullmatch(r"[0-9A-Fa-f]{64}", text):
        raise InvalidInput("a WPA2 Wi-Fi password is 8 to 63 printable ASCII characters "
                           "(or 64 hex digits; empty for an open network)")
    return text


def _hex(value: Any) -> str:
    return f"0x{value:02X}"


def _plain(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


@dataclass(frozen=True)
class Setting:
    """One setting: its key (in settings.json and on the command line), what it means,
    how text becomes its value and how its value is shown."""

    key: str
    help: str
    parse: Callable[[str], Any] = field(repr=False)
    show: Callable[[Any], str] = field(default=_plain, repr=False)
    from_stdin: bool = False  # the Wi-Fi settings: read from stdin, never from argv


SETTINGS: dict[str, Setting] = {s.key: s for s in (
    Setting("board", "board type (pins and Wi-Fi): auto, pico, picow or esp32",
            _choice("auto", *BOARDS)),
    Setting("oled_addr", "I2C address of the OLED: 0x3C on most modules, 0x3D on some",
            _int_in(0x08, 0x77, "an I2C address"), _hex),
    Setting("i2c_bus", "I2C bus number of the OLED and the DS3231 (0 or 1)",
            _int_in(0, 1, "the I2C bus")),
    Setting("sda", "GPIO of the I2C data line (SDA)", _gpio(False)),
    Setting("scl", "GPIO of the I2C clock line (SCL)", _gpio(False)),
    Setting("button_a", "GPIO of button A (next account; hold: next code), or none",
            _gpio(True)),
    Setting("button_b", "GPIO of button B (previous account), or none", _gpio(True)),
    Setting("i2c_freq", "I2C clock in Hz (10000-1000000)",
            _int_in(10_000, 1_000_000, "the I2C clock")),
    Setting("brightness", "OLED contrast while in use (0-255)", _int_in(0, 255, "brightness")),
    Setting("dim_brightness", "OLED contrast once dimmed (0-255)",
            _int_in(0, 255, "brightness")),
    Setting("dim_after", "seconds without a press before the display dims", _seconds(1)),
    Setting("sleep_after", "seconds without a press before the display goes off "
            "(0 or never: stays on)", _seconds(0)),
    Setting("long_press_ms", "milliseconds a press lasts to count as long (200-5000)",
            _int_in(200, 5000, "a long press")),
    Setting("show_clock", "show the time of day beside the seconds left (on or off)",
            _on_off),
    Setting("utc_offset", "time zone of that clock, as an offset from UTC (+02:00); "
            "codes always use UTC", _utc_offset, show_utc_offset),
    Setting("wifi_ssid", "Wi-Fi network for NTP at boot (Pico W, ESP32); from stdin with "
            "--wifi", _ssid, from_stdin=True),
    Setting("wifi_password", "its password; from stdin with --wifi", _wifi_password,
            lambda v: "set" if v else "not set", from_stdin=True),
    Setting("ntp_host", "NTP server", _hostname),
)}


@dataclass(frozen=True)
class Changes:
    """What to write to settings.json: values to set, keys to return to their defaults."""

    values: dict[str, Any] = field(default_factory=dict)
    reset: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.values or self.reset)

    def merged(self, other: Changes) -> Changes:
        values = {k: v for k, v in self.values.items() if k not in other.reset}
        values.update(other.values)
        reset = tuple(k for k in (*self.reset, *other.reset) if k not in values)
        return Changes(values, tuple(dict.fromkeys(reset)))


def setting(key: str) -> Setting:
    try:
        return SETTINGS[key]
    except KeyError:
        raise InvalidInput(f"no fob setting {key!r} (settings: {', '.join(SETTINGS)})"
                           ) from None


def parse_assignments(items: Iterable[str]) -> Changes:
    """``KEY=VALUE`` items -> :class:`Changes`; ``KEY=`` returns KEY to its default.

    The Wi-Fi settings are refused here: they come from stdin (``--wifi``), so that the
    password is never in argv, where other users see it (``ps``).
    """
    values: dict[str, Any] = {}
    reset: list[str] = []
    for item in items:
        key, eq, text = item.partition("=")
        if not eq:
            raise InvalidInput(f"give settings as KEY=VALUE, not {item!r}")
        s = setting(key.strip())
        if s.from_stdin:
            raise InvalidInput(f"{s.key} is read from stdin, never from the command line: "
                               "use hwtoken fob config --wifi")
        if text == "":
            reset.append(s.key)
            values.pop(s.key, None)
            continue
        try:
            values[s.key] = s.parse(text)
        except InvalidInput as exc:
            raise InvalidInput(f"{s.key}: {exc}") from None
        if s.key in reset:
            reset.remove(s.key)
    return Changes(values, tuple(reset))


def wifi_changes(ssid: str, password: str) -> Changes:
    """The Wi-Fi network to join for NTP; an empty SSID forgets both (no Wi-Fi)."""
    if not ssid:
        return Changes({}, ("wifi_ssid", "wifi_password"))
    return Changes({"wifi_ssid": _ssid(ssid), "wifi_password": _wifi_password(password)})


def shown(info: dict[str, Any]) -> dict[str, str]:
    """The settings the fob reports (``config.info()``) as text, in SETTINGS order."""
    return {k: s.show(info[k]) for k, s in SETTINGS.items() if k in info}


# -- firmware 1.0: settings inside config.py -------------------------------------------------
#: config.py's names in firmware 1.0 -> (setting, 1.0's default)
LEGACY_V1 = {
    "BOARD": ("board", "auto"), "OLED_ADDR": ("oled_addr", 0x3C),
    "I2C_FREQ": ("i2c_freq", 400000), "BRIGHT": ("brightness", 255),
    "DIM": ("dim_brightness", 8), "DIM_AFTER_S": ("dim_after", 15),
    "OFF_AFTER_S": ("sleep_after", 60), "LONG_PRESS_MS": ("long_press_ms", 700),
    "WIFI_SSID": ("wifi_ssid", ""), "WIFI_PASSWORD": ("wifi_password", ""),
    "NTP_HOST": ("ntp_host", "pool.ntp.org"),
}
#: 1.0's PINS (its key "i2c" is the setting i2c_bus)
LEGACY_V1_PINS = {
    "pico": {"i2c": 0, "sda": 4, "scl": 5, "button_a": 14, "button_b": 15},
    "picow": {"i2c": 0, "sda": 4, "scl": 5, "button_a": 14, "button_b": 15},
    "esp32": {"i2c": 0, "sda": 21, "scl": 22, "button_a": 0, "button_b": 4},
}


def migration_script() -> str:
    """MicroPython code that moves a 1.0 board's settings from config.py to settings.json.

    It prints one JSON line: ``null`` when the board already has a settings.json (nothing
    to move), else the list of keys it kept (empty for a fresh board or untouched
    defaults), or ``{"error": ...}`` when the old config.py cannot be run. It must run
    before the new config.py replaces the old one.
    """
    return f"""\
import json, os
def _migrate():
    try:
        os.stat("settings.json")
        return None
    except OSError:
        pass
    try:
        with open("config.py") as f:
            src = f.read()
    except OSError:
        return []
    ns = {{}}
    try:
        exec(src, ns)
        board = ns.get("BOARD", "auto")
        if board == "auto" and "board" in ns:
            board = ns["board"]()
    except Exception as e:
        return {{"error": "%s: %s" % (type(e).__name__, e)}}
    kept = {{}}
    for name, (key, default) in {LEGACY_V1!r}.items():
        v = ns.get(name, default)
        if v != default and type(v) is type(default):
            kept[key] = v
    if kept.get("board") not in (None, "pico", "picow", "esp32"):
        del kept["board"]
    old = ns.get("PINS")
    old = old.get(board) if isinstance(old, dict) else None
    ref = {LEGACY_V1_PINS!r}.get(board)
    if isinstance(old, dict) and ref:
        for k, default in ref.items():
            v = old.get(k, default)
            if v != default and (type(v) is int or (v is None and k.startswith("button"))):
                kept["i2c_bus" if k == "i2c" else k] = v
    if kept:
        with open("settings.json.tmp", "w") as f:
            json.dump(kept, f)
        os.rename("settings.json.tmp", "settings.json")
    return sorted(kept)
print(json.dumps(_migrate()))
del _migrate
"""

