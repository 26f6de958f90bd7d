# MicroPython's `machine` module for the virtual fob (`hwtoken fob emulate`).
#
# This file runs ON the emulated board, MicroPython's WebAssembly port, which has no
# `machine`: the pins, the I2C bus with its SSD1306 and DS3231, and the chip RTC live in
# the emulator's JavaScript (board.mjs, module `fobboard`), so that they keep their state
# across soft resets and the host sees every frame the display receives. Buffers cross
# over by address (uctypes.addressof): a frame costs no copy on the Python heap, as with
# a board's C driver. Only what the fob firmware and mpremote use.

import binascii

import fobboard as _hw
from uctypes import addressof


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2

    def __init__(self, pin_id, mode=-1, pull=-1, value=None):
        self.id = pin_id
        _hw.pin_init(pin_id, mode, pull)
        if value is not None:
            _hw.pin_write(pin_id, value)

    def value(self, v=None):
        if v is None:
            return _hw.pin_read(self.id)
        _hw.pin_write(self.id, 1 if v else 0)

    __call__ = value

    def on(self):
        _hw.pin_write(self.id, 1)

    def off(self):
        _hw.pin_write(self.id, 0)


def _check(errno):
    if errno:
        raise OSError(errno)  # 19 (ENODEV): no device acknowledged the address


class I2C:
    def __init__(self, bus_id=0, scl=None, sda=None, freq=400000, timeout=50000):
        self.id = bus_id

    def scan(self):
        found = _hw.i2c_scan()
        return [int(a) for a in found.split(",")] if found else []

    def writeto(self, addr, buf, stop=True):
        _check(_hw.i2c_write(addr, addressof(buf), len(buf), True))
        return len(buf)

    def writevto(self, addr, vector, stop=True):
        last = len(vector) - 1
        for i, buf in enumerate(vector):
            _check(_hw.i2c_write(addr, addressof(buf), len(buf), i == last))
        return sum(len(buf) for buf in vector)

    def readfrom_mem(self, addr, memaddr, nbytes, addrsize=8):
        data = _hw.i2c_read_mem(addr, memaddr, nbytes)
        if data is None:
            raise OSError(19)
        return binascii.unhexlify(data)

    def readfrom_mem_into(self, addr, memaddr, buf, addrsize=8):
        buf[:] = self.readfrom_mem(addr, memaddr, len(buf))

    def writeto_mem(self, addr, memaddr, buf, addrsize=8):
        _check(_hw.i2c_write_mem(addr, memaddr, addressof(buf), len(buf)))


SoftI2C = I2C


class RTC:
    def datetime(self, dt=None):
        """(year, month, day, weekday, hours, minutes, seconds, subseconds), or set it."""
        if dt is None:
            return tuple(int(v) for v in _hw.rtc_get().split(","))
        _hw.rtc_set(dt[0], dt[1], dt[2], dt[4], dt[5], dt[6])


def unique_id():
    return binascii.unhexlify(_hw.unique_id())


def freq():
    return 125000000  # an RP2040's
