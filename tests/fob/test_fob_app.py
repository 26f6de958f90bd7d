"""The fob's main loop on MicroPython: display driver, buttons, dimming, memory."""

from __future__ import annotations

import time

from hwtoken.fob.simulate import FobAccount, render

SECRET = "JBSWY3DPEHPK3PXP"

APP_SETUP = """
import json, gc, time, machine, accounts, app, clock, display, buttons, config
machine.BUS.clear()
oled_dev = machine.SSD1306()
machine.BUS[0x3C] = oled_dev
i2c = machine.I2C(0)
oled = display.SSD1306(i2c)
"""


def _pico_board(now: int) -> str:
    """Setup for app.run() on the stand-in board: an OLED and a DS3231 set to ``now``."""
    return f"""
import json, machine, accounts, config, clock, app
config.BOARD = "pico"
oled_dev = machine.SSD1306()
machine.BUS[0x3C] = oled_dev
machine.BUS[0x68] = machine.DS3231(unix_time={now})
with open("clock.json", "w") as f:     # hwtoken fob sync-time set it before
    f.write('{{"synced": {now}}}')
"""


def _screens_around(accts: list[FobAccount], now: int, index: int = 0) -> set[str]:
    """The screens (hex) the fob may show for ``accts[index]`` in the seconds after ``now``."""
    return {render(accts, t, index=index).buffer.hex() for t in range(now - 1, now + 10)}


def test_buttons_cycle_long_press_dim_and_off(mpy):
    now = 1700000000
    doc = mpy(APP_SETUP + f"""
for i in range(3):
    accounts.add("acct%d" % i, "{SECRET}")
class FixedClock:             # a clock that does not tick: no race with the second hand
    def now(self):
        return {now}
clk = FixedClock()
fob = app.Fob(oled, clk, accounts.load())
out = {{"contrast0": oled_dev.contrast, "on0": oled_dev.on}}
t = 1000
fob.idle_since = t
out["drawn"] = fob.tick(t)
out["redraw_same_second"] = fob.tick(t + 10)
out["ram_is_buffer"] = bytes(oled_dev.ram) == bytes(oled.buffer)
out["shown"] = []
for ev in ("short", "short", "long"):
    t += 100
    fob.button(ev, t)
    fob.tick(t)
    out["shown"].append([fob.index, fob.show_next, bytes(oled_dev.ram).hex()])
fob.button("short", t, "b")             # button B goes back
out["back"] = fob.index
t += 100
fob.tick(t + config.DIM_AFTER * 1000)
out["dim"] = [fob.level, oled_dev.contrast]
fob.button("short", t + config.DIM_AFTER * 1000 + 1)  # the first press only wakes
out["woken"] = [fob.level, oled_dev.contrast, fob.index]
fob.tick(t + config.DIM_AFTER * 1000 + config.SLEEP_AFTER * 1000 + 2)
out["off"] = [fob.level, oled_dev.on]
fob.button("long", t + 10 ** 6)
out["on_again"] = [fob.level, oled_dev.on, fob.show_next]
print(json.dumps(out))
""")
    assert doc["on0"] is True and doc["contrast0"] == 255
    assert doc["drawn"] is True and doc["redraw_same_second"] is False
    assert doc["ram_is_buffer"] is True  # the driver's I2C stream lands in the OLED's RAM
    names = ["acct0", "acct1", "acct2"]
    accts = [FobAccount(n, SECRET) for n in names]
    for (index, show_next, ram), exp in zip(doc["shown"], [(1, False), (2, False), (2, True)],
                                            strict=True):
        assert (index, show_next) == exp
        # what the simulated OLED's RAM holds is what the host renders for that moment
        assert ram == render(accts, now, index=index, show_next=show_next).buffer.hex()
    assert doc["back"] == 1
    assert doc["dim"] == ["dim", 8]
    assert doc["woken"] == ["bright", 255, 1]
    assert doc["off"] == ["off", False]
    assert doc["on_again"] == ["bright", True, False]


def test_button_debounce_short_and_long(mpy):
    doc = mpy("""
import json, buttons
level = [1]
b = buttons.Button(lambda: level[0], long_ms=700, debounce_ms=30)
events = []
def at(t, lv=None):
    if lv is not None:
        level[0] = lv
    e = b.poll(t)
    if e:
        events.append([t, e])
at(0)
at(10, 0); at(15, 1); at(20, 0); at(25, 1); at(40)     # bounce shorter than 30 ms: nothing
at(100, 0); at(120); at(131); at(300, 1); at(320); at(331)        # a short press
at(1000, 0); at(1031); at(1700); at(1731); at(1800); at(2500, 1); at(2600)  # a long press
print(json.dumps(events))
""")
    assert doc == [[331, "short"], [1731, "long"]]


def test_memory_with_twenty_accounts_and_a_screen(mpy):
    # Each "#--- exec" is a separate top-level execution, like commands at a board's REPL:
    # the WebAssembly port's gc.collect() frees only garbage of earlier executions (it scans
    # its stack conservatively), so the measurement happens in the next one.
    now = int(time.time())
    doc = mpy(APP_SETUP + f"""
for i in range(20):
    accounts.add("account-%02d" % i, "{SECRET}" * 2, ("SHA1", "SHA256", "SHA512")[i % 3])
clk = clock.detect(i2c, machine.RTC())
clk.set({now})
fob = app.Fob(oled, clk, accounts.load())
peak = 0
#--- exec
""" + "".join(f"""
fob.index = {i}
fob.tick({i})
#--- exec
gc.collect()
peak = max(peak, gc.mem_alloc())
#--- exec
""" for i in range(20)) + """
print(json.dumps({"peak": peak, "accounts": len(fob.accounts)}))
""")
    assert doc["accounts"] == 20
    print(f"gc.mem_alloc() after gc.collect(), 20 accounts, screen drawn: {doc['peak']} bytes")
    assert doc["peak"] <= 64 * 1024


def test_run_wires_pins_i2c_display_and_buttons(mpy):
    # app.run() as main.py starts it, on the stand-in board: an OLED and a DS3231 on the
    # bus, button A on GP14. The pin hook presses A briefly, then stops the loop the way
    # mpremote does (KeyboardInterrupt, i.e. Ctrl-C).
    now = int(time.time())
    doc = mpy(_pico_board(now) + f"""
for n in ("one", "two"):
    accounts.add(n, "{SECRET}")
reads = [0]
def on_read(pin, level):
    if pin != 14:
        return level
    reads[0] += 1
    if reads[0] >= 40:
        raise KeyboardInterrupt
    return 0 if 10 <= reads[0] < 20 else 1   # held for ~10 loops of 20 ms: a short press
machine.ON_READ = on_read
try:
    app.run()
    stopped = False
except KeyboardInterrupt:
    stopped = True
print(json.dumps([stopped, oled_dev.on, oled_dev.contrast, bytes(oled_dev.ram).hex()]))
""")
    stopped, on, contrast, ram = doc
    assert stopped and on and contrast == 255
    accts = [FobAccount("one", SECRET), FobAccount("two", SECRET)]
    assert ram in _screens_around(accts, now, index=1), \
        "after one short press the fob shows the second account"


def test_switched_off_it_stays_off_until_a_press_even_when_ticks_wrap(mpy):
    # time.ticks_ms() wraps (2**30 ms on 32-bit ports): after ~6 days switched off,
    # ticks_diff() turns negative. The display must stay off and nothing be redrawn.
    doc = mpy(APP_SETUP + f"""
accounts.add("a", "{SECRET}")
class TickingClock:                     # a second later at every reading
    t = 1700000000
    def now(self):
        TickingClock.t += 1
        return TickingClock.t
fob = app.Fob(oled, TickingClock(), accounts.load())
fob.idle_since = 0
fob.tick(0)
off_at = (config.SLEEP_AFTER + 1) * 1000
fob.tick(off_at)
frames = oled_dev.frames
later = [off_at]
for _ in range(7):                       # ~3 days apart, across the wrap
    later.append(time.ticks_add(later[-1], 2**28))
later = later[1:]
drawn = [fob.tick(t) for t in later]
print(json.dumps({{"level": fob.level, "on": oled_dev.on, "drawn": drawn,
                   "negative_seen": any(time.ticks_diff(t, 0) < 0 for t in later),
                   "frames_while_off": oled_dev.frames - frames}}))
""")
    assert doc["negative_seen"] is True  # the test really crosses the wrap
    assert doc["level"] == "off" and doc["on"] is False
    assert doc["drawn"] == [False] * 7 and doc["frames_while_off"] == 0


def test_run_keeps_going_when_the_oled_stops_answering(mpy):
    # A loose I2C wire: some writes to the OLED fail with OSError (EIO). The loop must
    # not die (a dead loop leaves a stale code on the screen); it redraws when the bus
    # answers again.
    now = int(time.time())
    doc = mpy(_pico_board(now) + f"""
accounts.add("one", "{SECRET}")
real_write = oled_dev.write
writes = [0]
def flaky_write(data):
    writes[0] += 1
    if 40 <= writes[0] < 60:     # after the init sequence: a burst of failures
        raise OSError(5)
    real_write(data)
oled_dev.write = flaky_write
loops = [0]
def on_read(pin, level):
    if pin == 14:
        loops[0] += 1
        if loops[0] >= 30:
            raise KeyboardInterrupt
    return level
machine.ON_READ = on_read
try:
    app.run()
except KeyboardInterrupt:
    pass
print(json.dumps([writes[0], bytes(oled_dev.ram).hex()]))
""")
    writes, ram = doc
    assert writes > 60  # the loop went on writing after the failures
    accts = [FobAccount("one", SECRET)]
    assert ram in _screens_around(accts, now)


def test_boot_shows_the_screen_before_trying_wifi_then_the_code(mpy):
    # On a Wi-Fi board without trusted time, run() tries NTP for up to ~10 s: the OLED
    # says "NO TRUSTED TIME" meanwhile (not a blank screen), then shows the code.
    from fob_support import NTP_1900, NTP_STUBS

    now = int(time.time())
    doc = mpy(NTP_STUBS + f"""
import machine, accounts, config, app
config.BOARD = "picow"
config.WIFI_SSID = "home"
oled_dev = machine.SSD1306()
machine.BUS[0x3C] = oled_dev
accounts.add("one", "{SECRET}")
Ntp.ntp_seconds = {now} + {NTP_1900}
seen = {{}}
real_connect = Net.WLAN.connect
def connect(self, ssid, password):
    seen["ram_at_connect"] = bytes(oled_dev.ram).hex()
    real_connect(self, ssid, password)
Net.WLAN.connect = connect
reads = [0]
def on_read(pin, level):                 # stop after a few turns of the main loop
    if pin == 14 and "ram_at_connect" in seen:
        reads[0] += 1
        if reads[0] > 3:
            raise KeyboardInterrupt
    return level
machine.ON_READ = on_read
try:
    app.run()
except KeyboardInterrupt:
    pass
print(json.dumps([seen["ram_at_connect"], bytes(oled_dev.ram).hex()]))
""")
    during, after = doc
    accts = [FobAccount("one", SECRET)]
    assert during == render(accts, None).buffer.hex()  # NO TRUSTED TIME, not blank
    assert after in _screens_around(accts, now)
