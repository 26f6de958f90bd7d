# The fob's settings: the defaults below, and the board's own choices in settings.json.
#
# `hwtoken fob deploy` replaces this file with every update but never settings.json, which
# `hwtoken fob config KEY=VALUE` writes. At import, each entry of settings.json replaces a
# default: its key is the name below in lower case ("oled_addr" -> OLED_ADDR), or one of
# PIN_KEYS, which replace that pin of the board's PINS. An entry of the wrong type or an
# unknown key is ignored, and a damaged file leaves every default: the fob must boot
# whatever the file says.

import jsonfile

PATH = "settings.json"

# Pins per board. I2C: the SSD1306 and the optional DS3231 (0x68) share the bus. Buttons
# connect a GPIO to GND (internal pull-ups are used); button_b is optional (None).
PINS = {
    # Raspberry Pi Pico / Pico W: I2C0 on GP4 (pin 6) / GP5 (pin 7), buttons GP14, GP15.
    "pico": {"i2c_bus": 0, "sda": 4, "scl": 5, "button_a": 14, "button_b": 15},
    "picow": {"i2c_bus": 0, "sda": 4, "scl": 5, "button_a": 14, "button_b": 15},
    # ESP32 DevKit: I2C on GPIO21/GPIO22; button A is the board's BOOT button (GPIO0).
    "esp32": {"i2c_bus": 0, "sda": 21, "scl": 22, "button_a": 0, "button_b": 4},
}
PIN_KEYS = ("i2c_bus", "sda", "scl", "button_a", "button_b")

# -- the settings and their defaults -------------------------------------------------------
BOARD = "auto"        # "pico", "picow", "esp32", or "auto": detected at boot
OLED_ADDR = 0x3C      # some OLED modules answer at 0x3D
I2C_FREQ = 400000
BRIGHTNESS = 255      # OLED contrast while in use, 0-255
DIM_BRIGHTNESS = 8    # contrast after DIM_AFTER seconds without a press
DIM_AFTER = 15
SLEEP_AFTER = 60      # display off after this many seconds; any press wakes it (0: never)
LONG_PRESS_MS = 700
SHOW_CLOCK = False    # show the time of day beside the seconds left
UTC_OFFSET = 0        # minutes east of UTC for that clock (codes always use UTC)
# Wi-Fi boards (Pico W, ESP32) set their clock by NTP at boot when WIFI_SSID is set.
WIFI_SSID = ""
WIFI_PASSWORD = ""
NTP_HOST = "pool.ntp.org"

_DEFAULTS = {k: v for k, v in globals().items()
             if k.isupper() and k not in ("PATH", "PINS", "PIN_KEYS")}
custom = {}   # the valid entries of settings.json
ignored = []  # its keys that were not: unknown, or a value of the wrong type
damaged = False  # settings.json is not a JSON object: every default applies


def valid(key, value):
    """Whether settings.json may hold ``value`` for ``key``."""
    if key in PIN_KEYS:
        return type(value) is int or (value is None and key.startswith("button"))
    if key == "board":
        return value == "auto" or value in PINS
    default = _DEFAULTS.get(key.upper(), valid)  # (valid: a sentinel no value has the type of)
    return key.islower() and type(value) is type(default)


def load(path=PATH):
    """Start from the defaults, then apply settings.json."""
    global damaged
    g = globals()
    g.update(_DEFAULTS)
    custom.clear()
    del ignored[:]
    try:
        doc = jsonfile.read(path)
    except OSError:
        doc = {}
    except ValueError:
        doc = None
    damaged = not isinstance(doc, dict)
    if damaged:
        return
    for key, value in doc.items():
        if not valid(key, value):
            ignored.append(key)
            continue
        custom[key] = value
        if key not in PIN_KEYS:
            g[key.upper()] = value


def save(changes, reset=(), path=PATH):
    """Set the entries of ``changes`` and remove those named in ``reset`` (back to their
    defaults) in settings.json; returns the keys it holds now. ValueError on a bad entry."""
    for key, value in changes.items():
        if not valid(key, value):
            raise ValueError("bad setting: %s" % key)
    doc = dict(custom)
    for key in reset:
        doc.pop(key, None)
    doc.update(changes)
    jsonfile.write(path, doc)
    load(path)
    return sorted(doc)


def reset(path=PATH):
    """Forget every setting (settings.json holds the Wi-Fi password: overwritten first)."""
    jsonfile.erase(path)
    load(path)


def info():
    """The settings in effect, for the host (the Wi-Fi password only as set or not)."""
    out = {k.lower(): globals()[k] for k in _DEFAULTS}
    out.update(pins())
    out["wifi_password"] = bool(WIFI_PASSWORD)
    out["detected_board"] = board()
    out["custom"] = sorted(custom)
    out["ignored"] = sorted(ignored)
    out["damaged"] = damaged
    return out


def board():
    """The board name: BOARD, or detected from the port when BOARD is "auto"."""
    if BOARD != "auto":
        return BOARD
    import sys

    if sys.platform == "esp32":
        return "esp32"
    try:
        import os

        if "Pico W" in os.uname().machine:
            return "picow"
    except (AttributeError, OSError):
        pass
    return "pico"


def pins():
    """The board's pins, with those set in settings.json."""
    p = dict(PINS[board()])
    for key in PIN_KEYS:
        if key in custom:
            p[key] = custom[key]
    return p


load()
