# The fob's main loop: read the buttons, keep the screen current, dim when idle.
#
# Fob is the state machine and knows no hardware: start() wires it to the real pins,
# I2C bus and display, run() (what main.py calls) steps it forever, and tests and the
# host's emulator (`hwtoken fob emulate`) drive the same Fob.

import gc
import time

import accounts
import clock
import config
import screen

VERSION = "1.1"  # 1.1: settings in settings.json, apart from the code


class Fob:
    def __init__(self, display, clk, accts, cfg=config, buttons=()):
        self.display = display
        self.clock = clk
        self.accounts = accts
        self.cfg = cfg
        self.buttons = buttons  # ("a" or "b", buttons.Button) pairs that step() polls
        self.index = 0
        self.show_next = False
        self.level = "bright"   # "bright", "dim" or "off"
        self.idle_since = 0
        self._shown = None
        display.contrast(cfg.BRIGHTNESS)

    def step(self, now_ms=None):
        """One turn of the main loop: read the buttons, keep the screen current. An OLED
        that does not answer (OSError: a loose I2C wire) is redrawn when it answers again."""
        if now_ms is None:
            now_ms = time.ticks_ms()
        try:
            for which, b in self.buttons:
                event = b.poll(now_ms)
                if event:
                    self.button(event, now_ms, which)
            self.tick(now_ms)
        except OSError:
            self._shown = None

    def button(self, event, now_ms, which="a"):
        """A button event ("short"/"long") from button ``which`` ("a" or "b")."""
        self.idle_since = now_ms
        if self.level != "bright":  # the first press only wakes the display
            self._wake()
            return
        if event == "long":
            self.show_next = not self.show_next
        elif event == "short" and self.accounts:
            step = -1 if which == "b" else 1
            self.index = (self.index + step) % len(self.accounts)
            self.show_next = False
        self._shown = None

    def _wake(self):
        if self.level == "off":
            self.display.power(True)
        self.display.contrast(self.cfg.BRIGHTNESS)
        self.level = "bright"
        self._shown = None

    def tick(self, now_ms):
        """Dim or switch off when idle; redraw when what is shown changes. Returns True if drawn."""
        if self.level == "off":  # only a press wakes it (ticks wrap after ~6 days idle)
            return False
        cfg = self.cfg
        idle_s = time.ticks_diff(now_ms, self.idle_since) // 1000
        if cfg.SLEEP_AFTER and idle_s >= cfg.SLEEP_AFTER:
            self.display.power(False)
            self.level = "off"
            return False
        if idle_s >= cfg.DIM_AFTER and self.level == "bright":
            self.display.contrast(cfg.DIM_BRIGHTNESS)
            self.level = "dim"
        now = self.clock.now()
        key = (now, self.index, self.show_next, len(self.accounts))
        if key == self._shown:
            return False
        screen.draw(self.display, self.accounts, self.index, now, self.show_next,
                    cfg.UTC_OFFSET if cfg.SHOW_CLOCK else None)
        self.display.show()
        self._shown = key
        return True


def _wifi_ntp(clk):
    """Set the clock by NTP over Wi-Fi (Pico W, ESP32) when the settings name a network.

    Returns True if the clock was set. Any failure (no Wi-Fi chip, wrong password, no
    answer) leaves the clock as it was, and the screen then says the time is not trusted:
    the fob must keep running whatever the network does.
    """
    if not config.WIFI_SSID:
        return False
    try:
        import network
    except ImportError:  # a board without Wi-Fi (plain Pico)
        return False
    wlan = None
    try:
        wlan = network.WLAN(network.STA_IF)
        wlan.active(True)
        wlan.connect(config.WIFI_SSID, config.WIFI_PASSWORD)
        for _ in range(100):  # up to 10 s
            if wlan.isconnected():
                break
            time.sleep_ms(100)
        if not wlan.isconnected():
            return False
        clock.ntp_sync(clk, config.NTP_HOST)
        return True
    except Exception:  # OSError from the radio or the socket, ValueError from ntp_sync
        return False
    finally:
        if wlan is not None:
            try:
                wlan.active(False)
            except Exception:
                pass


def _i2c(pins):
    """The I2C bus of the OLED and the DS3231, on the pins config.py gives."""
    import machine

    return machine.I2C(pins["i2c_bus"], sda=machine.Pin(pins["sda"]), scl=machine.Pin(pins["scl"]),
                       freq=config.I2C_FREQ)


def start():
    """Set up the hardware config.py names, show the first screen and, without a trusted
    time, try NTP. Returns the Fob: call its step() every 20 ms or so."""
    import buttons
    import display
    import machine

    pins = config.pins()
    i2c = _i2c(pins)
    oled = display.SSD1306(i2c, config.OLED_ADDR)
    clk = clock.detect(i2c, machine.RTC())
    btns = []
    for which in ("a", "b"):
        pin = pins.get("button_" + which)
        if pin is not None:
            p = machine.Pin(pin, machine.Pin.IN, machine.Pin.PULL_UP)
            btns.append((which, buttons.Button(p.value, config.LONG_PRESS_MS)))
    try:
        accts = accounts.load()
    except ValueError:  # damaged file: show "no accounts" rather than crash at boot
        accts = []
    fob = Fob(oled, clk, accts, config, btns)
    fob.idle_since = time.ticks_ms()
    fob.step(fob.idle_since)  # the screen first: "NO TRUSTED TIME" while Wi-Fi connects
    if clk.now() is None:
        _wifi_ntp(clk)  # up to ~10 s; the next step shows the code if it worked
    gc.collect()
    return fob


def run():
    """Run the fob forever, as main.py does at boot (Ctrl-C over USB stops it)."""
    fob = start()
    while True:
        fob.step(time.ticks_ms())
        time.sleep_ms(20)


# -- called by the host (`hwtoken fob status / sync-time`) over the USB serial link ---------
def hardware_clock():
    """The Clock on this board's DS3231 or chip RTC, as run() would find it."""
    import machine

    return clock.detect(_i2c(config.pins()), machine.RTC())


def sync_time(unix_time):
    """Set the clock; returns the drift corrected in seconds (None if it was not set)."""
    return hardware_clock().set(unix_time)


def status():
    """Time, accounts and memory, without secrets."""
    st = hardware_clock().status()
    gc.collect()
    st.update({"accounts": len(accounts.summary()), "mem_free": gc.mem_free(),
               "mem_alloc": gc.mem_alloc(), "board": config.board(), "version": VERSION})
    return st
