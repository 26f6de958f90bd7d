"""The fob's settings: settings.json apart from the code, on the real MicroPython.

firmware/config.py (defaults, settings.json applied at import), the move of firmware 1.0's
settings out of config.py (hwtoken.fob.settings.migration_script), the app using them, and
the host's checks of `hwtoken fob config KEY=VALUE`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from fob_support import NTP_1900, NTP_STUBS

from hwtoken.errors import InvalidInput
from hwtoken.fob.settings import (
    SETTINGS,
    Changes,
    _choice,
    _gpio,
    _int_in,
    _seconds,
    migration_script,
    parse_assignments,
    shown,
    wifi_changes,
)
from hwtoken.fob.simulate import FobAccount, render

SECRET = "JBSWY3DPEHPK3PXP"
LEGACY = (Path(__file__).with_name("legacy") / "config_v1.py").read_text()


def test_settings_json_replaces_defaults_and_bad_entries_are_ignored(mpy):
    doc = mpy("""
import json, config
out = {"defaults": config.info()}
with open("settings.json", "w") as f:
    json.dump({"oled_addr": 61, "sda": 16, "button_b": None, "brightness": 120,
               "show_clock": True, "utc_offset": -330, "wifi_ssid": "home",
               "wifi_password": "correct horse", "board": "esp32",
               "dim_after": "15",          # a string where a number belongs: ignored
               "BRIGHTNESS": 3,            # not a key (keys are lower case): ignored
               "board_x": 1, "show_clock_": True}, f)
config.load()
out["loaded"] = config.info()
out["attrs"] = [config.OLED_ADDR, config.BRIGHTNESS, config.SHOW_CLOCK, config.UTC_OFFSET,
                config.WIFI_PASSWORD, config.DIM_AFTER]
with open("settings.json", "w") as f:
    f.write('{"oled_addr": 61')           # cut short: damaged
config.load()
out["damaged"] = [config.info()["damaged"], config.OLED_ADDR, config.info()["custom"]]
with open("settings.json", "w") as f:
    f.write('[1, 2]')                     # JSON, but not an object
config.load()
out["not_object"] = [config.damaged, config.BRIGHTNESS]
print(json.dumps(out))
""")
    d = doc["defaults"]
    assert (d["board"], d["oled_addr"], d["brightness"], d["sleep_after"]) == ("auto", 60, 255, 60)
    assert d["custom"] == [] and d["damaged"] is False and d["wifi_password"] is False
    assert d["detected_board"] == "pico" and d["sda"] == 4 and d["button_b"] == 15
    got = doc["loaded"]
    assert got["custom"] == ["board", "brightness", "button_b", "oled_addr", "sda",
                             "show_clock", "utc_offset", "wifi_password", "wifi_ssid"]
    assert got["ignored"] == ["BRIGHTNESS", "board_x", "dim_after", "show_clock_"]
    # esp32's pins, with sda and button_b from the file; the password only as "set"
    assert (got["detected_board"], got["sda"], got["scl"], got["button_a"], got["button_b"]) \
        == ("esp32", 16, 22, 0, None)
    assert got["wifi_password"] is True and "correct horse" not in json.dumps(got)
    assert doc["attrs"] == [61, 120, True, -330, "correct horse", 15]
    assert doc["damaged"] == [True, 0x3C, []]
    assert doc["not_object"] == [True, 255]


def test_save_merges_resets_refuses_and_writes_atomically(mpy):
    doc = mpy("""
import json, os, config
out = {}
out["first"] = config.save({"brightness": 100, "wifi_ssid": "home", "wifi_password": "pw12345678"})
out["second"] = config.save({"sleep_after": 0}, ("wifi_ssid", "wifi_password", "nosuch"))
out["file"] = json.load(open("settings.json"))
out["attrs"] = [config.BRIGHTNESS, config.SLEEP_AFTER, config.WIFI_SSID]
errors = []
for bad in ({"brightness": "high"}, {"nosuch": 1}, {"board": "arduino"}, {"sda": None},
            {"show_clock": 1}):
    try:
        config.save(bad)
    except ValueError as e:
        errors.append(str(e))
out["errors"] = errors
out["unchanged"] = json.load(open("settings.json"))
out["tmp_left"] = "settings.json.tmp" in os.listdir()
config.save({"wifi_password": "secret-password"})
size = os.stat("settings.json")[6]
config.reset()
out["after_reset"] = ["settings.json" in os.listdir(), config.WIFI_PASSWORD, config.BRIGHTNESS,
                      config.info()["custom"], size > 0]
print(json.dumps(out))
""")
    assert doc["first"] == ["brightness", "wifi_password", "wifi_ssid"]
    assert doc["second"] == ["brightness", "sleep_after"]
    assert doc["file"] == {"brightness": 100, "sleep_after": 0}
    assert doc["attrs"] == [100, 0, ""]
    assert doc["errors"] == ["bad setting: brightness", "bad setting: nosuch",
                             "bad setting: board", "bad setting: sda", "bad setting: show_clock"]
    assert doc["unchanged"] == doc["file"] and doc["tmp_left"] is False
    assert doc["after_reset"] == [False, "", 255, [], True]


def test_the_app_uses_the_settings(mpy):
    # An OLED at 0x3D, dimming and sleep times, brightness, and the clock in a time zone:
    # app.start() on the stand-in board, with settings.json as `hwtoken fob config` writes it.
    now = int(time.time())
    doc = mpy(f"""
import json, machine, accounts, config, app, time
oled_dev = machine.SSD1306()
machine.BUS[0x3D] = oled_dev           # the module answers at 0x3D only
machine.BUS[0x68] = machine.DS3231(unix_time={now})
with open("clock.json", "w") as f:
    f.write('{{"synced": {now}}}')
accounts.add("one", "{SECRET}")
config.save({{"oled_addr": 0x3D, "brightness": 200, "dim_brightness": 3, "dim_after": 2,
             "sleep_after": 5, "show_clock": True, "utc_offset": 90}})
fob = app.start()
out = {{"contrast": oled_dev.contrast, "on": oled_dev.on, "ram": bytes(oled_dev.ram).hex()}}
t = fob.idle_since
fob.step(t + 2000)
out["dimmed"] = [fob.level, oled_dev.contrast]
fob.step(t + 5000)
out["slept"] = [fob.level, oled_dev.on]
print(json.dumps(out))
""")
    assert doc["contrast"] == 200 and doc["on"] is True
    accts = [FobAccount("one", SECRET)]
    assert doc["ram"] in {render(accts, t, utc_offset=90).buffer.hex()
                          for t in range(now - 1, now + 10)}
    assert doc["ram"] not in {render(accts, t).buffer.hex() for t in range(now - 1, now + 10)}
    assert doc["dimmed"] == ["dim", 3]
    assert doc["slept"] == ["off", False]


def test_wifi_settings_reach_ntp(mpy):
    now = int(time.time())
    doc = mpy(NTP_STUBS + f"""
import machine, clock, config, app
config.save({{"board": "picow", "wifi_ssid": "home", "wifi_password": "pw-12345678",
             "ntp_host": "ntp.example"}})
Ntp.ntp_seconds = {now} + {NTP_1900}
clk = clock.detect(machine.I2C(0), machine.RTC())
print(json.dumps([app._wifi_ntp(clk), Ntp.host, Net.log[2], abs(clk.now() - {now}) <= 2]))
""")
    assert doc == [True, "ntp.example", "connect home", True]


def _migrate(mpy, config_py: str | None, settings_json: str | None = None) -> dict:
    setup = ""
    if config_py is not None:
        setup += f"open('config.py', 'w').write({config_py!r})\n"
    else:
        setup += "import os\nos.remove('config.py')\n"
    if settings_json is not None:
        setup += f"open('settings.json', 'w').write({settings_json!r})\n"
    return mpy(setup + migration_script() + """
#--- exec
import json
try:
    kept = json.load(open("settings.json"))
except OSError:
    kept = None
print(json.dumps({"kept": kept}))
""", stubs=False)


def test_settings_of_a_1_0_config_py_move_to_settings_json(mpy, tmp_path):
    edited = (LEGACY.replace('BOARD = "auto"', 'BOARD = "picow"')
              .replace("OLED_ADDR = 0x3C", "OLED_ADDR = 0x3D")
              .replace('WIFI_SSID = ""', 'WIFI_SSID = "home"')
              .replace('WIFI_PASSWORD = ""', 'WIFI_PASSWORD = "correct horse"')
              .replace("DIM_AFTER_S = 15", "DIM_AFTER_S = 30")
              .replace('"picow": {"i2c": 0, "sda": 4', '"picow": {"i2c": 1, "sda": 6')
              .replace("BRIGHT = 255", "BRIGHT = None"))  # the wrong type: not kept
    assert edited.count("\n") == LEGACY.count("\n") and edited != LEGACY
    out = mpy("open('config.py', 'w').write(" + repr(edited) + ")\n" + migration_script()
              + "#--- exec\nprint(open('settings.json').read())\n", stubs=False)
    assert out == {"board": "picow", "oled_addr": 0x3D, "wifi_ssid": "home",
                   "wifi_password": "correct horse", "dim_after": 30, "i2c_bus": 1, "sda": 6}
    # what deploy reports: the names only (the first JSON line the script printed)
    from fob_support import run_micropython

    printed = run_micropython("open('config.py', 'w').write(" + repr(edited) + ")\n"
                              + migration_script(), tmp_path, stubs=False)
    assert json.loads(printed.strip().splitlines()[-1]) == [
        "board", "dim_after", "i2c_bus", "oled_addr", "sda", "wifi_password", "wifi_ssid"]
    assert "correct horse" not in printed


def test_what_the_move_leaves_alone(mpy):
    # untouched 1.0 defaults: nothing to keep, no file
    assert _migrate(mpy, LEGACY) == {"kept": None}
    # a board that already has a settings.json: never rewritten
    assert _migrate(mpy, LEGACY.replace("OLED_ADDR = 0x3C", "OLED_ADDR = 0x3D"),
                    '{"brightness": 9}') == {"kept": {"brightness": 9}}
    # no config.py at all (freshly flashed): nothing
    assert _migrate(mpy, None) == {"kept": None}


def test_a_broken_config_py_is_reported_not_lost(mpy, tmp_path):
    from fob_support import run_micropython

    out = run_micropython("open('config.py', 'w').write('BOARD = \"pico\"\\nWIFI_SSID = (\\n')\n"
                          + migration_script(), tmp_path, stubs=False)
    doc = json.loads(out.strip().splitlines()[-1])
    assert doc == {"error": "SyntaxError: invalid syntax"}


# -- the host's checks of `hwtoken fob config KEY=VALUE` -----------------------------------
def test_assignments_parse_to_typed_values():
    ch = parse_assignments(["oled_addr=0x3D", "sda=16", "button_b=none", "brightness=128",
                            "dim_after=20s", "sleep_after=never", "show_clock=on",
                            "utc_offset=-05:30", "ntp_host=time.example.org", "board=esp32",
                            "i2c_freq=100000", "long_press_ms=900", "scl=", "i2c_bus=1"])
    assert ch.values == {"oled_addr": 0x3D, "sda": 16, "button_b": None, "brightness": 128,
                         "dim_after": 20, "sleep_after": 0, "show_clock": True,
                         "utc_offset": -330, "ntp_host": "time.example.org", "board": "esp32",
                         "i2c_freq": 100000, "long_press_ms": 900, "i2c_bus": 1}
    assert ch.reset == ("scl",)
    assert parse_assignments(["sda=3", "sda="]) == Changes({}, ("sda",))
    assert parse_assignments(["sda=", "sda=3"]) == Changes({"sda": 3}, ())
    for text, minutes in [("UTC", 0), ("+2", 120), ("+0530", 330), ("UTC+01:00", 60),
                          ("-12:00", -720), ("+14:00", 840)]:
        assert parse_assignments([f"utc_offset={text}"]).values["utc_offset"] == minutes


@pytest.mark.parametrize("item, message", [
    ("oled_addr=0x78", "oled_addr: an I2C address must be from 8 to 119, not '0x78'"),
    ("oled_addr=nan", "oled_addr: an I2C address must be a whole number from 8 to 119, "
                      "not 'nan'"),
    ("brightness=256", "brightness: brightness must be from 0 to 255, not '256'"),
    ("brightness=1e3", "brightness: brightness must be a whole number from 0 to 255, "
                       "not '1e3'"),
    ("sda=99999999999999999999999", "sda: a GPIO number must be from 0 to 48, "
                                    "not '99999999999999999999999'"),
    ("sda=none", "sda: a GPIO number must be a whole number from 0 to 48, not 'none'"),
    ("dim_after=0", "dim_after: the time in seconds must be from 1 to 86400, not '0'"),
    ("show_clock=maybe", "show_clock: must be on or off, not 'maybe'"),
    ("utc_offset=+15:00", "utc_offset: must be from -12:00 to +14:00, not '+15:00'"),
    ("utc_offset=+02:75", "utc_offset: must be an offset from UTC such as +02:00 or -05:30 "
                          "(or UTC), not '+02:75'"),
    ("board=arduino", "board: must be one of auto, pico, picow, esp32, not 'arduino'"),
    ("ntp_host=ntp example", "ntp_host: must be a host name such as pool.ntp.org, "
                             "not 'ntp example'"),
    ("brightness", "give settings as KEY=VALUE, not 'brightness'"),
    ("colour=red", "no fob setting 'colour' (settings: " + ", ".join(SETTINGS) + ")"),
    ("wifi_password=hunter22", "wifi_password is read from stdin, never from the command "
                               "line: use hwtoken fob config --wifi"),
    ("wifi_ssid=home", "wifi_ssid is read from stdin, never from the command line: use "
                       "hwtoken fob config --wifi"),
])
def test_bad_assignments_are_refused_with_what_to_do(item, message):
    with pytest.raises(InvalidInput) as exc:
        parse_assignments(["brightness=1", item])
    assert str(exc.value) == message


def test_wifi_from_stdin_and_its_checks():
    assert wifi_changes("home net", "correct horse") == Changes(
        {"wifi_ssid": "home net", "wifi_password": "correct horse"})
    assert wifi_changes("open-cafe", "") == Changes({"wifi_ssid": "open-cafe",
                                                     "wifi_password": ""})
    assert wifi_changes("", "ignored") == Changes({}, ("wifi_ssid", "wifi_password"))
    assert wifi_changes("x", "0123456789abcdef" * 4).values[
        "wifi_password"] == "0123456789abcdef" * 4
    for ssid, password, message in [
        ("x" * 33, "pw-123456", "the Wi-Fi network name (SSID) is at most 32 bytes"),
        ("é" * 17, "pw-123456", "the Wi-Fi network name (SSID) is at most 32 bytes"),
        ("a\tb", "pw-123456", "the Wi-Fi network name (SSID) holds a control character"),
        ("home", "short", "a WPA2 Wi-Fi password is 8 to 63 printable ASCII characters "
                          "(or 64 hex digits; empty for an open network)"),
        ("home", "p" * 64, "a WPA2 Wi-Fi password is 8 to 63 printable ASCII characters "
                           "(or 64 hex digits; empty for an open network)"),
    ]:
        with pytest.raises(InvalidInput) as exc:
            wifi_changes(ssid, password)
        assert str(exc.value) == message


def test_settings_are_shown_as_text_never_the_password():
    info = {"board": "auto", "oled_addr": 0x3D, "button_b": None, "show_clock": False,
            "utc_offset": -330, "wifi_ssid": "home", "wifi_password": True, "sleep_after": 0}
    assert shown(info) == {"board": "auto", "oled_addr": "0x3D", "button_b": "none",
                           "sleep_after": "0", "show_clock": "off", "utc_offset": "-05:30",
                           "wifi_ssid": "home", "wifi_password": "set"}
    assert shown({"wifi_password": False}) == {"wifi_password": "not set"}


def _parsed(key: str, text: str):
    return parse_assignments([f"{key}={text}"]).values[key]


def _refused(item: str) -> str:
    with pytest.raises(InvalidInput) as exc:
        parse_assignments([item])
    return str(exc.value)


def test_each_range_is_checked_at_both_ends():
    for key, low, high in [("oled_addr", 8, 119), ("i2c_bus", 0, 1), ("sda", 0, 48),
                           ("scl", 0, 48), ("button_a", 0, 48), ("button_b", 0, 48),
                           ("i2c_freq", 10_000, 1_000_000), ("brightness", 0, 255),
                           ("dim_brightness", 0, 255), ("dim_after", 1, 86400),
                           ("sleep_after", 0, 86400), ("long_press_ms", 200, 5000)]:
        assert _parsed(key, f" {low} ") == low and _parsed(key, str(high)) == high
        for bad in (low - 1, high + 1):
            message = _refused(f"{key}={bad}")
            assert message.startswith(f"{key}: ") and f"must be from {low} to {high}, " \
                f"not '{bad}'" in message, message
    assert _parsed("oled_addr", "0x3c") == 60 and _parsed("i2c_freq", "0o1000000") == 262144
    assert _refused("i2c_bus=2") == "i2c_bus: the I2C bus must be from 0 to 1, not '2'"
    assert _refused("i2c_freq=9999") == ("i2c_freq: the I2C clock must be from 10000 to "
                                         "1000000, not '9999'")
    assert _refused("long_press_ms=199") == ("long_press_ms: a long press must be from 200 "
                                             "to 5000, not '199'")
    assert _refused("sleep_after=86401") == ("sleep_after: the time in seconds must be from 0 "
                                             "to 86400, not '86401'")


def test_the_words_each_setting_takes():
    for text in ("none", " None ", "NONE"):
        assert _parsed("button_a", text) is None and _parsed("button_b", text) is None
    for key in ("sda", "scl"):
        assert _refused(f"{key}=none") == (f"{key}: a GPIO number must be a whole number "
                                           "from 0 to 48, not 'none'")
    for text, seconds in [("never", 0), (" Never ", 0), ("NEVER", 0), ("0s", 0), ("45s", 45),
                          (" 45 ", 45), ("86400s", 86400)]:
        assert _parsed("sleep_after", text) == seconds
    assert _parsed("dim_after", " 20s ") == 20
    assert _refused("dim_after=never") == ("dim_after: the time in seconds must be a whole "
                                           "number from 1 to 86400, not 'never'")
    assert _refused("sleep_after=10m") == ("sleep_after: the time in seconds must be a whole "
                                           "number from 0 to 86400, not '10m'")
    for board in ("auto", "pico", "picow", "esp32"):
        assert _parsed("board", board) == board
    assert _refused("board=Pico") == ("board: must be one of auto, pico, picow, esp32, "
                                      "not 'Pico'")
    assert _refused("board= pico") == ("board: must be one of auto, pico, picow, esp32, "
                                       "not ' pico'")
    for text, value in [("on", True), (" YES ", True), ("true", True), ("1", True),
                        ("Off", False), ("no", False), ("FALSE", False), ("0", False)]:
        assert _parsed("show_clock", text) is value
    assert _refused("show_clock=2") == "show_clock: must be on or off, not '2'"
    for host in ("pool.ntp.org", "ntp1", "time.example.org.", "a-b.c", "1.2.3.4",
                 "x" * 63 + ".org"):
        assert _parsed("ntp_host", host) == host
    for host in ("-a.org", "a-.org", "a..org", "x" * 64 + ".org", "", "a_b.org",
                 ".".join(["abc"] * 64)):
        assert _refused(f"ntp_host={host}" if host else "ntp_host= ") == (
            f"ntp_host: must be a host name such as pool.ntp.org, not {host or ' '!r}")


def test_utc_offsets():
    for text, minutes in [("UTC", 0), ("utc", 0), ("Z", 0), ("z", 0), ("0", 0),
                          ("+00:00", 0), ("-00:00", 0), (" +01:00 ", 60), ("+1", 60),
                          ("-1", -60), ("+10", 600), ("-0530", -330), ("+05:30", 330),
                          ("utc-03:00", -180), ("+02:59", 179), ("-12:00", -720),
                          ("+14:00", 840), ("-00:30", -30), ("+0000", 0), ("+123", 83)]:
        value = _parsed("utc_offset", text)
        # a whole number: settings.json holds it as one (the firmware ignores a float)
        assert value == minutes and type(value) is int, text
    for text in ("+02:60", "+2:5", "02:00", "+02:00:00", "UTC+", "UTC0", "1", "+ 1"):
        assert _refused(f"utc_offset={text}") == (
            "utc_offset: must be an offset from UTC such as +02:00 or -05:30 (or UTC), "
            f"not {text!r}"), text
    for text in ("-12:01", "+14:01", "-13", "+15", "+99:59"):
        assert _refused(f"utc_offset={text}") == (
            f"utc_offset: must be from -12:00 to +14:00, not {text!r}"), text


def test_the_wifi_checks_at_their_limits():
    for ssid in ("x" * 32, "é" * 16, " ", "a b~\x7f"):
        assert wifi_changes(ssid, "").values["wifi_ssid"] == ssid
    for ssid in ("\x1f", "a\x00", "\x01b"):
        with pytest.raises(InvalidInput) as exc:
            wifi_changes(ssid, "")
        assert str(exc.value) == "the Wi-Fi network name (SSID) holds a control character"
    for password in ("p" * 8, "p" * 63, " " * 8, "~" * 8, "ABCDEF0123456789" * 4, ""):
        assert wifi_changes("home", password).values["wifi_password"] == password
    for password in ("p" * 7, "p" * 64, "g" * 64, "p" * 7 + "\x7f", "p" * 7 + "\x1f",
                     "p" * 7 + "é", "0" * 65):
        with pytest.raises(InvalidInput) as exc:
            wifi_changes("home", password)
        assert str(exc.value).startswith("a WPA2 Wi-Fi password is 8 to 63"), password


def test_assignments_set_and_reset_in_order():
    assert parse_assignments([]) == Changes() and not Changes()
    assert Changes({"sda": 1}) and Changes({}, ("sda",))
    ch = parse_assignments([" sda =4", "scl=", "scl=5", "scl=", "sda=6"])
    assert ch == Changes({"sda": 6}, ("scl",))
    with pytest.raises(InvalidInput) as exc:
        parse_assignments(["brightness=="])
    assert str(exc.value) == ("brightness: brightness must be a whole number from 0 to 255, "
                              "not '='")


def test_changes_merge():
    first = Changes({"sda": 4, "scl": 5}, ("brightness", "board"))
    second = Changes({"brightness": 9}, ("sda", "board"))
    assert first.merged(second) == Changes({"scl": 5, "brightness": 9}, ("board", "sda"))
    assert second.merged(first) == Changes({"sda": 4, "scl": 5}, ("board", "brightness"))
    assert first.merged(Changes()) == first and Changes().merged(first) == first


def test_settings_shown_in_their_order():
    info = {"ntp_host": "pool.ntp.org", "oled_addr": 8, "sda": 4, "show_clock": True,
            "utc_offset": 0, "wifi_password": "", "dim_after": 15, "unknown": 1,
            "board": "pico"}
    out = shown(info)
    assert list(out) == ["board", "oled_addr", "sda", "dim_after", "show_clock", "utc_offset",
                         "wifi_password", "ntp_host"]
    assert out == {"board": "pico", "oled_addr": "0x08", "sda": "4", "dim_after": "15",
                   "show_clock": "on", "utc_offset": "+00:00", "wifi_password": "not set",
                   "ntp_host": "pool.ntp.org"}
    assert shown({"utc_offset": 840, "oled_addr": 0x3C})["utc_offset"] == "+14:00"
    assert shown({"utc_offset": -30, "oled_addr": 0x3C}) == {"oled_addr": "0x3C",
                                                            "utc_offset": "-00:30"}
    assert shown({"utc_offset": -750})["utc_offset"] == "-12:30"


def test_the_parsers_each_kind_of_setting_is_built_with():
    """The parsers SETTINGS holds, built afresh (the table's were built at import)."""
    def refused(parse, text):
        with pytest.raises(InvalidInput) as exc:
            parse(text)
        return str(exc.value)

    addr = _int_in(8, 119, "an I2C address")
    assert (addr(" 0x3c "), addr("8"), addr("119"), addr("0o10")) == (60, 8, 119, 8)
    assert refused(addr, "7") == "an I2C address must be from 8 to 119, not '7'"
    assert refused(addr, "120") == "an I2C address must be from 8 to 119, not '120'"
    assert refused(addr, "x1") == ("an I2C address must be a whole number from 8 to 119, "
                                   "not 'x1'")
    for optional in (False, True):
        pin = _gpio(optional)
        assert (pin("0"), pin(" 48 ")) == (0, 48)
        assert refused(pin, "49") == "a GPIO number must be from 0 to 48, not '49'"
        assert refused(pin, "-1") == "a GPIO number must be from 0 to 48, not '-1'"
    assert [_gpio(True)(t) for t in ("none", " NONE ", "None")] == [None, None, None]
    assert refused(_gpio(False), "none") == ("a GPIO number must be a whole number from 0 "
                                            "to 48, not 'none'")
    never = _seconds(0)
    assert [never(t) for t in ("never", " NEVER ", "0", "0s", " 86400s ", "45")] == [
        0, 0, 0, 0, 86400, 45]
    assert refused(never, "86401s") == ("the time in seconds must be from 0 to 86400, "
                                        "not '86401'")
    assert refused(never, "ss") == ("the time in seconds must be a whole number from 0 to "
                                    "86400, not 's'")
    dim = _seconds(1)
    assert (dim("1"), dim("15s"), dim(" 86400 ")) == (1, 15, 86400)
    assert refused(dim, "never") == ("the time in seconds must be a whole number from 1 to "
                                     "86400, not 'never'")
    assert refused(dim, "0s") == "the time in seconds must be from 1 to 86400, not '0'"
    board = _choice("auto", "pico")
    assert (board("auto"), board("pico")) == ("auto", "pico")
    assert refused(board, "Pico") == "must be one of auto, pico, not 'Pico'"
    assert refused(board, "") == "must be one of auto, pico, not ''"
