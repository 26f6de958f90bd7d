# SSD1306 128x64 OLED over I2C: a framebuf.FrameBuffer you draw on, then show().
#
# A minimal driver (the same commands as micropython-lib's ssd1306.py) so the firmware
# has no dependency to install. Pixels are MONO_VLSB: each byte is a column of 8 pixels,
# which is the controller's own page layout, so show() sends the buffer as it is.

import framebuf

_INIT = (
    0xAE,        # display off
    0x20, 0x00,  # horizontal addressing
    0x40,        # start line 0
    0xA1,        # segment remap (column 127 is SEG0)
    0xA8, 63,    # multiplex ratio: 64 lines
    0xC8,        # COM scan from the bottom
    0xD3, 0x00,  # display offset 0
    0xDA, 0x12,  # COM pins: alternative, no remap
    0xD5, 0x80,  # clock divide ratio / oscillator
    0xD9, 0xF1,  # pre-charge
    0xDB, 0x30,  # VCOMH deselect level
    0x81, 0xFF,  # contrast
    0xA4,        # follow RAM
    0xA6,        # normal (not inverted)
    0x8D, 0x14,  # charge pump on (internal 7.5 V)
    0xAF,        # display on
)


class SSD1306(framebuf.FrameBuffer):
    """An SSD1306 on ``i2c`` at ``addr`` (0x3C on most modules, 0x3D on some)."""

    def __init__(self, i2c, addr=0x3C, width=128, height=64):
        self.i2c = i2c
        self.addr = addr
        self.width = width
        self.height = height
        self.pages = height // 8
        self.buffer = bytearray(self.pages * width)
        super().__init__(self.buffer, width, height, framebuf.MONO_VLSB)
        self._cmd = bytearray(2)
        self._data = [b"\x40", None]
        for c in _INIT:
            self.command(c)
        self.fill(0)
        self.show()

    def command(self, c):
        self._cmd[0] = 0x80  # Co=1, D/C#=0: one command byte follows
        self._cmd[1] = c
        self.i2c.writeto(self.addr, self._cmd)

    def show(self):
        for c in (0x21, 0, self.width - 1, 0x22, 0, self.pages - 1):
            self.command(c)
        self._data[1] = self.buffer
        self.i2c.writevto(self.addr, self._data)  # 0x40 (D/C#=1) then the pixels

    def contrast(self, level):
        """0..255; the fob dims by lowering it."""
        self.command(0x81)
        self.command(level)

    def power(self, on):
        self.command(0xAF if on else 0xAE)
