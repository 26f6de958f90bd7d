"""The fob's clock on MicroPython: epochs of both ports, RTC sources, trusted time."""

from __future__ import annotations

import calendar
import json
import random
import time

from fob_support import NTP_1900, NTP_STUBS


def test_calendar_round_trips_against_cpython(mpy):
    rng = random.Random(2000)
    times = [0, 59, 946684799, 946684800, 951782400, 951868800, 2147483647, 2147483648,
             4102444800, 4107542400, 1735689600] + [rng.randrange(0, 2**34) for _ in range(200)]
    doc = mpy(f"""
import json, clock
out = []
for t in {json.dumps(times)}:
    c = clock.from_unix(t)
    out.append([list(c), clock.to_unix(*c[:6])])
print(json.dumps(out))
""")
    for t, (civil, back) in zip(times, doc, strict=True):
        g = time.gmtime(t)
        assert civil == [g.tm_year, g.tm_mon, g.tm_mday, g.tm_hour, g.tm_min, g.tm_sec,
                         g.tm_wday], t
        assert back == t


def test_epoch_conversion_for_2000_and_1970_ports(mpy):
    doc = mpy("""
import json, time, clock
now_port = time.time()
print(json.dumps({
    "port_epoch": clock.PORT_EPOCH_YEAR,
    "offset_2000": clock.epoch_offset(2000),
    "offset_1970": clock.epoch_offset(1970),
    # an rp2/esp32 (2000-epoch) time.time() of 757382400 is 2024-01-01 00:00 UTC
    "rp2_to_unix": clock.port_to_unix(757382400, 2000),
    "unix_to_rp2": clock.unix_to_port(1704067200, 2000),
    "unix_to_1970": clock.unix_to_port(1704067200, 1970),
    "this_port_now": clock.port_to_unix(now_port),
}))
""")
    assert doc["port_epoch"] == 1970  # the WebAssembly port counts from 1970
    assert doc["offset_2000"] == calendar.timegm((2000, 1, 1, 0, 0, 0)) == 946684800
    assert doc["offset_1970"] == 0
    assert doc["rp2_to_unix"] == 1704067200
    assert doc["unix_to_rp2"] == 757382400
    assert doc["unix_to_1970"] == 1704067200
    assert abs(doc["this_port_now"] - time.time()) < 60


CLOCK_SETUP = """
import json, machine, clock
i2c = machine.I2C(0)
rtc = machine.RTC()
"""


def test_chip_rtc_untrusted_until_synced_then_reports_drift(mpy, tmp_path):
    now = int(time.time())
    doc = mpy(CLOCK_SETUP + f"""
out = {{}}
clk = clock.detect(i2c, rtc)          # no DS3231 on the bus: the chip RTC, at 2021-01-01
out["source"] = clk.source.name
out["before"] = [clk.now(), clk.why_untrusted()]
out["first_drift"] = clk.set({now})
out["after"] = clk.now()
machine._RtcState.offset -= 7         # the chip clock runs 7 s slow
out["drift"] = clk.set({now} + 1)
out["synced_file"] = open("clock.json").read()
clk2 = clock.detect(i2c, rtc)         # a reboot keeps the RTC and reads the last sync
out["rebooted"] = clk2.now() is not None
machine.power_loss()                  # unplugged: the RTC is back at 2021
out["after_power_loss"] = [clock.detect(i2c, rtc).now(), clock.detect(i2c, rtc).why_untrusted()]
machine._RtcState.offset = {now} - 7200 - int(__import__("time").time())
out["before_last_sync"] = clock.detect(i2c, rtc).why_untrusted()
print(json.dumps(out))
""")
    assert doc["source"] == "rtc"
    assert doc["before"] == [None, "clock not set"]
    assert doc["first_drift"] is None
    assert abs(doc["after"] - now) <= 2
    assert -9 <= doc["drift"] <= -5
    assert json.loads(doc["synced_file"]) == {"synced": now + 1}
    assert doc["rebooted"] is True
    assert doc["after_power_loss"] == [None, "clock not set"]
    assert doc["before_last_sync"] == "clock not set"  # earlier than the last sync: reset


def test_ds3231_preferred_kept_across_power_loss_and_osf_untrusted(mpy):
    now = int(time.time())
    doc = mpy(CLOCK_SETUP + f"""
out = {{}}
machine.BUS[0x68] = machine.DS3231(unix_time=946684800, lost_power=True)
clk = clock.detect(i2c, rtc)
out["source"] = clk.source.name
out["lost"] = [clk.now(), clk.why_untrusted()]
out["drift"] = clk.set({now})
out["status_reg"] = machine.BUS[0x68].status
out["ds_now"] = clk.now()
out["chip_set_too"] = clock.ChipRTC(rtc).read()
machine.power_loss()                   # the chip RTC resets; the DS3231 keeps time
clk = clock.detect(i2c, rtc)
out["after_power_loss"] = clk.now()
out["chip_restored"] = clock.ChipRTC(rtc).read()
machine.BUS[0x68].offset += 42         # the module drifted 42 s fast
out["drift2"] = clk.set({now})
out["status"] = clk.status()
print(json.dumps(out))
""")
    assert doc["source"] == "ds3231"
    assert doc["lost"] == [None, "rtc lost power"]
    assert doc["drift"] is None
    assert doc["status_reg"] & 0x80 == 0  # oscillator-stop flag cleared by set()
    for key in ("ds_now", "chip_set_too", "after_power_loss", "chip_restored"):
        assert abs(doc[key] - now) <= 2, key
    assert 40 <= doc["drift2"] <= 44
    assert doc["status"]["source"] == "ds3231" and doc["status"]["trusted"] is True


def test_ds3231_bcd_registers_and_12_hour_mode(mpy):
    doc = mpy(CLOCK_SETUP + """
ds = machine.DS3231()
machine.BUS[0x68] = ds
d = clock.DS3231(i2c)
d.write(4102444799)                     # 2099-12-31 23:59:59
raw = ds.read(0, 7)
t = d.read()
# 12-hour mode, 11 PM: hour register 0x40 | 0x20 | 0x11
ds.offset = 0
i2c.writeto_mem(0x68, 0, bytes((0x30, 0x15, 0x40 | 0x20 | 0x11, 3, 0x24, 0x01, 0x24)))
print(json.dumps([raw.hex(), t, clock.from_unix(d.read())[:6]]))
""")
    assert doc[0] == "59592304311299"  # BCD; Thursday is weekday 4 (Monday = 1)
    assert doc[1] == 4102444799
    assert doc[2] == [2024, 1, 24, 23, 15, 30]


def test_a_2000_epoch_port_is_detected_and_converted(mpy):
    # An rp2/esp32 build whose time.gmtime(0) is 2000-01-01: clock.py must notice and
    # convert, so a TOTP code is not off by 30 years. Its time module is swapped in before
    # clock.py is imported (MicroPython's import looks in sys.modules first).
    doc = mpy("""
import sys, json
class Rp2Time:
    @staticmethod
    def gmtime(t=0):
        return (2000, 1, 1, 0, 0, 0, 5, 1)
sys.modules["time"] = Rp2Time
import clock
print(json.dumps([clock.PORT_EPOCH_YEAR, clock.port_to_unix(757382400),
                  clock.unix_to_port(1704067200), clock.port_to_unix(0)]))
""", stubs=False)
    assert doc == [2000, 1704067200, 757382400, 946684800]




def test_wifi_ntp_sets_the_clock_on_a_1970_port_and_survives_failures(mpy):
    now = int(time.time())
    doc = mpy(NTP_STUBS + f"""
import machine, clock, config, app
clk = clock.detect(machine.I2C(0), machine.RTC())
out = {{"before": clk.why_untrusted()}}
out["no_ssid"] = app._wifi_ntp(clk)          # config.py without Wi-Fi: nothing happens
config.WIFI_SSID, config.WIFI_PASSWORD, config.NTP_HOST = "home", "pw", "ntp.example"
Ntp.error = OSError(110)                      # the NTP server does not answer
out["timeout"] = [app._wifi_ntp(clk), clk.why_untrusted(), Net.log[-1]]
Ntp.error = None
Ntp.ntp_seconds = 100 + {NTP_1900}            # a broken server: 1970, refused
out["implausible"] = [app._wifi_ntp(clk), clk.why_untrusted()]
Net.connect_error = OSError("Wifi Internal Error")
out["radio_error"] = [app._wifi_ntp(clk), Net.log[-1]]
Net.connect_error = None
Ntp.ntp_seconds = {now} + {NTP_1900}
out["synced"] = app._wifi_ntp(clk)
out["host"] = Ntp.host
out["now"] = clk.now()
out["radio_left_off"] = Net.log[-1]
print(json.dumps(out))
""")
    assert doc["before"] == "clock not set" and doc["no_ssid"] is False
    assert doc["timeout"] == [False, "clock not set", "active False"]
    assert doc["implausible"] == [False, "clock not set"]
    assert doc["radio_error"] == [False, "active False"]
    assert doc["synced"] is True and doc["host"] == "ntp.example"
    assert abs(doc["now"] - now) <= 2
    assert doc["radio_left_off"] == "active False"


def test_ntp_on_a_2000_epoch_port_is_converted(mpy):
    # An rp2/esp32 build counting from 2000: ntptime.time() is 946684800 s smaller than
    # unix time; clock.ntp_sync must add it back or the fob would be 30 years off.
    now = int(time.time())
    doc = mpy(NTP_STUBS + f"""
import machine                     # the stand-in keeps the real time module
class Rp2Time:
    @staticmethod
    def gmtime(t=0):
        return (2000, 1, 1, 0, 0, 0, 5, 1)
sys.modules["time"] = Rp2Time
import clock
Ntp.ntp_seconds = {now} + {NTP_1900}
clk = clock.Clock(clock.ChipRTC(machine.RTC()))
out = {{"epoch": clock.PORT_EPOCH_YEAR, "port_seconds": Ntp.time()}}
out["drift"] = clock.ntp_sync(clk)
out["now"] = clk.now()
print(json.dumps(out))
""")
    assert doc["epoch"] == 2000
    assert doc["port_seconds"] == now - 946684800
    assert doc["drift"] is None  # the RTC was at 2021: not trusted before
    assert abs(doc["now"] - now) <= 2


def test_a_ds3231_that_stops_answering_is_no_trusted_time(mpy):
    # A loose wire: reads raise OSError. The fob must say it has no time, not crash and
    # not keep showing codes from a clock it cannot read.
    now = int(time.time())
    doc = mpy(CLOCK_SETUP + f"""
machine.BUS[0x68] = machine.DS3231(unix_time={now})
with open("clock.json", "w") as f:     # hwtoken fob sync-time set it before
    f.write('{{"synced": {now}}}')
clk = clock.detect(i2c, rtc)
out = {{"source": clk.source.name, "before": clk.now() is not None}}
ds = machine.BUS.pop(0x68)
out["gone"] = [clk.now(), clk.why_untrusted(), clk.status()]
machine.BUS[0x68] = ds
out["back"] = clk.now() is not None
print(json.dumps(out))
""")
    assert doc["source"] == "ds3231" and doc["before"] is True
    now_, why, status = doc["gone"]
    assert now_ is None and why == "rtc not answering"
    assert status["trusted"] is False and status["time"] is None
    assert status["reason"] == "rtc not answering"
    assert doc["back"] is True


def test_a_clock_set_by_something_else_is_not_trusted_until_synced(mpy):
    # An IDE (Thonny syncs the RTC on connect, in local time by choice) or another
    # project's DS3231 may hold a plausible but wrong time. Only a time set by
    # `hwtoken fob sync-time` or NTP (recorded in clock.json) is trusted.
    now = int(time.time())
    doc = mpy(CLOCK_SETUP + f"""
import time
local = time.gmtime({now} + 2 * 3600)   # UTC+2 written as if it were UTC
rtc.datetime((local[0], local[1], local[2], local[6], local[3], local[4], local[5], 0))
clk = clock.detect(i2c, rtc)
out = {{"chip": [clk.now(), clk.why_untrusted(), clk.status()["trusted"]]}}
machine.BUS[0x68] = machine.DS3231(unix_time={now})   # a module set elsewhere
out["ds3231"] = clock.detect(i2c, rtc).why_untrusted()
out["drift"] = clock.detect(i2c, rtc).set({now})
out["after_sync"] = clock.detect(i2c, rtc).now()
print(json.dumps(out))
""")
    assert doc["chip"] == [None, "never synced", False]
    assert doc["ds3231"] == "never synced"
    assert doc["drift"] is None  # a never-synced clock's error is not a drift
    assert abs(doc["after_sync"] - now) <= 2


def test_an_old_sync_is_not_trusted_forever(mpy):
    # A chip RTC drifts up to ~80 s a month: after 30 days without a sync the fob asks
    # for one instead of drifting into wrong codes. A DS3231 (+-2 ppm) is good for a year.
    now = int(time.time())
    day = 86400
    doc = mpy(CLOCK_SETUP + f"""
def synced(days_ago):
    with open("clock.json", "w") as f:
        f.write('{{"synced": %d}}' % ({now} - days_ago * {day}))
out = {{}}
clock.ChipRTC(rtc).write({now})
for d in (29, 31):
    synced(d)
    out["rtc_%d" % d] = clock.detect(i2c, rtc).why_untrusted()
machine.BUS[0x68] = machine.DS3231(unix_time={now})
for d in (31, 364, 366):
    synced(d)
    out["ds3231_%d" % d] = clock.detect(i2c, rtc).why_untrusted()
clk = clock.detect(i2c, rtc)
machine.BUS[0x68].offset -= 40         # it ran 40 s slow since that sync
out["drift_after_old_sync"] = clk.set({now})  # a running clock: its drift is reported
out["resynced"] = clk.why_untrusted()
print(json.dumps(out))
""")
    assert doc["rtc_29"] is None and doc["rtc_31"] == "last sync too old"
    assert doc["ds3231_31"] is None and doc["ds3231_364"] is None
    assert doc["ds3231_366"] == "last sync too old"
    assert -42 <= doc["drift_after_old_sync"] <= -38 and doc["resynced"] is None
