"""A pure-Python stand-in for MicroPython's ``framebuf`` (MONO_VLSB only).

It lets CPython run the fob firmware's own drawing code (``firmware/screen.py``) for
``hwtoken fob simulate``. It follows MicroPython's C implementation (extmod/modframebuf.c)
pixel for pixel for the calls the firmware makes, including clipping; the tests compare
its output with MicroPython's real framebuf running the same code.
"""

from __future__ import annotations

MONO_VLSB = 0
MVLSB = MONO_VLSB

# MicroPython's 8x8 font (font_petme128_8x8, MIT licence), characters 32..127, eight
# column bytes each (bit 0 is the top row). Extracted from MicroPython's framebuf.
_FONT = bytes.fromhex(
    "00000000000000000000004f4f0000000007070000070700147f7f14147f7f14"
    "00242e6b6b3a1200006333180c66630000327f4d4d7772500000000406030100"
    "00001c3e63410000000041633e1c0000082a3e1c1c3e2a080008083e3e080800"
    "000080e0600000000008080808080800000000606000000000406030180c0602"
    "003e7f49457f3e000040447f7f40400000627351494f460000226349497f3600"
    "00181814167f7f1000276745457d3900003e7f49497b3200000303797d070300"
    "00367f49497f360000266f49497f3e000000002424000000000080e464000000"
    "00081c3663414100001414141414140000414163361c080000020351590f0600"
    "003e7f414d4f2e00007c7e0b0b7e7c00007f7f49497f3600003e7f4141632200"
    "007f7f41633e1c00007f7f4949414100007f7f0909010100003e7f41497b3a00"
    "007f7f08087f7f000000417f7f410000002060417f3f0100007f7f1c36634100"
    "007f7f4040404000007f7f060c067f7f007f7f0e1c7f7f00003e7f41417f3e00"
    "007f7f09090f0600001e3f21617f5e00007f7f19396f460000266f49497b3200"
    "0001017f7f010100003f7f40407f3f00001f3f60603f1f00007f7f3018307f7f"
    "0063771c1c77630000070f78780f0700006171594d47430000007f7f41410000"
    "0002060c18306040000041417f7f000000080c06060c0800c0c0c0c0c0c0c0c0"
    "000001030604000000207454547c7800007f7f44447c380000387c44446c2800"
    "00387c44447f7f0000387c54545c580000087e7f090302000098bca4a4fc7c00"
    "007f7f04047c78000000007d7d0000000040c08080fd7d00007f7f30386c4400"
    "0000417f7f400000007c7c1830187c7c007c7c04047c780000387c44447c3800"
    "00fcfc24243c180000183c2424fcfc00007c7c04040c080000485c5454742000"
    "04043f7f44642000003c7c40407c3c00001c3c60603c1c00001c7c3018307c1c"
    "00446c38386c4400009cbca0a0fc7c00004464745c4c44000008083e77414100"
    "000000ffff000000004141773e0808000002030103020301aa55aa55aa55aa55"
)


class FrameBuffer:
    """A 1-bit frame buffer over ``buf`` in MONO_VLSB layout (the SSD1306's own)."""

    def __init__(self, buf: bytearray, width: int, height: int, fmt: int = MONO_VLSB,
                 stride: int | None = None) -> None:
        if fmt != MONO_VLSB:
            raise ValueError("only MONO_VLSB is supported")
        self.buf = buf
        self.width = width
        self.height = height
        self.stride = stride or width
        if len(buf) < ((height + 7) // 8) * self.stride:
            raise ValueError("buffer too small")

    def _set(self, x: int, y: int, c: int) -> None:
        i = (y >> 3) * self.stride + x
        bit = 1 << (y & 7)
        if c:
            self.buf[i] |= bit
        else:
            self.buf[i] &= ~bit & 0xFF

    def pixel(self, x: int, y: int, c: int | None = None) -> int | None:
        if not (0 <= x < self.width and 0 <= y < self.height):
            return None
        if c is None:
            return (self.buf[(y >> 3) * self.stride + x] >> (y & 7)) & 1
        self._set(x, y, c)
        return None

    def fill(self, c: int) -> None:
        self.fill_rect(0, 0, self.width, self.height, c)

    def fill_rect(self, x: int, y: int, w: int, h: int, c: int) -> None:
        if (h < 1 or w < 1 or x + w <= 0 or y + h <= 0 or y >= self.height
                or x >= self.width):
            return
        xend = min(self.width, x + w)
        yend = min(self.height, y + h)
        x = max(x, 0)
        y = max(y, 0)
        for yy in range(y, yend):
            for xx in range(x, xend):
                self._set(xx, yy, c)

    def hline(self, x: int, y: int, w: int, c: int) -> None:
        self.fill_rect(x, y, w, 1, c)

    def vline(self, x: int, y: int, h: int, c: int) -> None:
        self.fill_rect(x, y, 1, h, c)

    def rect(self, x: int, y: int, w: int, h: int, c: int, fill: bool = False) -> None:
        if fill:
            self.fill_rect(x, y, w, h, c)
            return
        self.fill_rect(x, y, w, 1, c)
        self.fill_rect(x, y + h - 1, w, 1, c)
        self.fill_rect(x, y, 1, h, c)
        self.fill_rect(x + w - 1, y, 1, h, c)

    def text(self, s: str, x: int, y: int, c: int = 1) -> None:
        for ch in s.encode():
            if ch < 32 or ch > 127:
                ch = 127
            glyph = _FONT[(ch - 32) * 8:(ch - 32) * 8 + 8]
            for col in glyph:
                if 0 <= x < self.width:
                    yy = y
                    while col:
                        if col & 1 and 0 <= yy < self.height:
                            self._set(x, yy, c)
                        col >>= 1
                        yy += 1
                x += 1
