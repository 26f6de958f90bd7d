# A host stand-in for MicroPython's `machine` module, for the fob's tests on the
# WebAssembly port (which has no machine module): pins, the chip RTC, and an I2C bus
# with a simulated SSD1306 (0x3C) and DS3231 (0x68). Only what the firmware uses.
#
# It does its own calendar arithmetic with time.gmtime/mktime, independent of the
# firmware's clock.py that it helps to test.

import time

# -- pins --------------------------------------------------------------------------------
LEVELS = {}  # pin id -> level; tests set LEVELS[14] = 0 to "press" a button
ON_READ = None  # tests may set a function(pin_id, level) -> level called on every read


class Pin:
    IN = 0
    OUT = 1
    PULL_UP = 1

    def __init__(self, pin_id, mode=None, pull=None):
        self.id = pin_id
        LEVELS.setdefault(pin_id, 1 if pull == Pin.PULL_UP else 0)

    def value(self, v=None):
        if v is None:
            if ON_READ is not None:
                LEVELS[self.id] = ON_READ(self.id, LEVELS[self.id])
            return LEVELS[self.id]
        LEVELS[self.id] = v


def _now():
    return time.time()  # 1970 epoch on the WebAssembly port


# -- chip RTC: starts at 2021-01-01 00:00 like an rp2 after power-up ---------------------
class _RtcState:
    offset = 1609459200 - int(time.time())


def power_loss():
    """Tests call this to simulate unplugging the board."""
    _RtcState.offset = 1609459200 - int(time.time())
    for dev in BUS.values():
        if hasattr(dev, "power_loss"):
            dev.power_loss()


class RTC:
    def datetime(self, dt=None):
        if dt is None:
            t = int(_now()) + _RtcState.offset
            y, mo, d, h, mi, s, wd, _ = time.gmtime(t)
            return (y, mo, d, wd, h, mi, s, 0)
        y, mo, d, wd, h, mi, s = dt[:7]
        t = time.mktime((y, mo, d, h, mi, s, 0, 0))
        _RtcState.offset = t - int(_now())


# -- I2C devices -------------------------------------------------------------------------
def _bcd(v):
    return ((v // 10) << 4) | (v % 10)


def _unbcd(v):
    return (v >> 4) * 10 + (v & 15)


class DS3231:
    """Time registers 0x00-0x06 (BCD), status 0x0F with the oscillator-stop flag."""

    def __init__(self, unix_time=None, lost_power=False):
        self.offset = 0 if unix_time is None else int(unix_time) - int(_now())
        self.status = 0x80 if lost_power else 0x00
        self.writes = 0
        self.frozen = None  # registers as written in 12-hour mode (kept verbatim)

    def power_loss(self):
        pass  # it has a battery: keeps counting

    def read(self, reg, n):
        y, mo, d, h, mi, s, wd, _ = time.gmtime(int(_now()) + self.offset)
        regs = bytearray(19)
        regs[0:7] = self.frozen or bytes((_bcd(s), _bcd(mi), _bcd(h), wd + 1, _bcd(d), _bcd(mo),
                                          _bcd(y - 2000)))
        regs[0x0F] = self.status
        return bytes(regs[reg:reg + n])

    def write(self, reg, data):
        self.writes += 1
        if reg == 0x00 and len(data) >= 7 and data[2] & 0x40:
            self.frozen = bytes(data[:7])
        elif reg == 0x00 and len(data) >= 7:
            self.frozen = None
            s, mi, h, _, d, mo, y = (_unbcd(b) for b in data[:7])
            t = time.mktime((2000 + y, mo, d, h, mi, s, 0, 0))
            self.offset = t - int(_now())
        elif reg == 0x0F:
            self.status = data[0]


class SSD1306:
    """Decodes the command/data stream into its 128x64 display RAM."""

    def __init__(self):
        self.ram = bytearray(1024)
        self.on = False
        self.contrast = None
        self.frames = 0
        self._args = []
        self._cols = (0, 127)
        self._pages = (0, 7)
        self._ptr = 0

    def power_loss(self):
        self.__init__()

    def _command(self, c):
        self._args.append(c)
        op = self._args[0]
        need = {0x21: 3, 0x22: 3, 0x81: 2, 0x20: 2, 0xA8: 2, 0xD3: 2, 0xDA: 2, 0xD5: 2,
                0xD9: 2, 0xDB: 2, 0x8D: 2}.get(op, 1)
        if len(self._args) < need:
            return
        a = self._args
        self._args = []
        if op == 0xAE:
            self.on = False
        elif op == 0xAF:
            self.on = True
        elif op == 0x81:
            self.contrast = a[1]
        elif op == 0x21:
            self._cols = (a[1], a[2])
            self._ptr = 0
        elif op == 0x22:
            self._pages = (a[1], a[2])
            self._ptr = 0

    def write(self, data):
        i = 0
        while i < len(data):
            control = data[i]
            if control == 0x80:      # one command byte follows, then another control byte
                self._command(data[i + 1])
                i += 2
            elif control == 0x00:    # the rest are command bytes
                for c in data[i + 1:]:
                    self._command(c)
                return
            elif control == 0x40:    # the rest are display data
                self._data(data[i + 1:])
                return
            else:
                raise OSError(5)

    def _data(self, data):
        c0, c1 = self._cols
        p0, p1 = self._pages
        width = c1 - c0 + 1
        for b in data:
            page = p0 + self._ptr // width
            col = c0 + self._ptr % width
            if page <= p1:
                self.ram[page * 128 + col] = b
            self._ptr += 1
        self.frames += 1


BUS = {}  # address -> device; tests fill it: BUS[0x3C] = SSD1306()


class I2C:
    def __init__(self, bus_id=0, scl=None, sda=None, freq=400000):
        self.id = bus_id

    def _dev(self, addr):
        dev = BUS.get(addr)
        if dev is None:
            raise OSError(19)  # ENODEV: nothing acknowledged the address
        return dev

    def scan(self):
        return sorted(BUS)

    def readfrom_mem(self, addr, reg, n):
        return self._dev(addr).read(reg, n)

    def writeto_mem(self, addr, reg, data):
        self._dev(addr).write(reg, bytes(data))

    def writeto(self, addr, data):
        self._dev(addr).write(bytes(data))

    def writevto(self, addr, vector):
        self._dev(addr).write(b"".join(bytes(v) for v in vector))


def unique_id():
    return b"\x00\x01\x02\x03\x04\x05\x06\x07"
