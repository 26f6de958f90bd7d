"""What the fob's OLED shows, rendered on the host by the firmware's own drawing code.

The firmware's ``screen.py`` (and the ``totp``/``accounts``/``font`` modules it uses) run
here in CPython, drawing on :class:`hwtoken.fob.framebuf.FrameBuffer`, a pure-Python copy
of MicroPython's framebuf. Why CPython and not the MicroPython interpreter: users get
screenshots without Node.js or a board, in milliseconds; the tests prove the result is
pixel-identical to MicroPython's real framebuf running the same code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from hwtoken.errors import InvalidInput
from hwtoken.fob import png
from hwtoken.fob.firmware import load_host_modules
from hwtoken.fob.framebuf import MONO_VLSB, FrameBuffer

WIDTH = 128
HEIGHT = 64
#: The latest time render() accepts: TOTP counters are 8 bytes (2**63 s is far beyond).
MAX_TIME = 2**63 - 1


@dataclass(frozen=True)
class FobAccount:
    """One account as the fob stores it (the secret in base32)."""

    name: str
    secret: str = field(repr=False)
    algorithm: str = "SHA1"
    digits: int = 6
    period: int = 30

    @classmethod
    def from_record(cls, record: dict) -> FobAccount:
        return cls(record["name"], record["secret"], record.get("algorithm", "SHA1"),
                   int(record.get("digits", 6)), int(record.get("period", 30)))


@dataclass(frozen=True)
class Screen:
    """A 128x64 1-bit screen in the SSD1306's MONO_VLSB layout (bit 0 = top row of a page)."""

    buffer: bytes
    width: int = WIDTH
    height: int = HEIGHT

    def pixel(self, x: int, y: int) -> int:
        return (self.buffer[(y >> 3) * self.width + x] >> (y & 7)) & 1

    def rows(self, on: int = 255, off: int = 0) -> list[bytes]:
        """Grey levels row by row (lit pixels ``on``)."""
        return [bytes(on if self.pixel(x, y) else off for x in range(self.width))
                for y in range(self.height)]

    def to_png(self, scale: int = 1, on: int = 255) -> bytes:
        """A PNG, each pixel ``scale`` x ``scale``: lit pixels white (grey level ``on``) on
        black, like the OLED."""
        if not 1 <= scale <= 32:
            raise InvalidInput("scale must be 1-32")
        rows = []
        for row in self.rows(on):
            wide = bytes(v for v in row for _ in range(scale))
            rows.extend([wide] * scale)
        return png.encode(rows)

    @classmethod
    def from_png(cls, data: bytes) -> Screen:
        """Read back a scale-1 PNG written by :meth:`to_png` (for comparisons)."""
        rows = png.decode(data)
        if len(rows) != HEIGHT or len(rows[0]) != WIDTH:
            raise InvalidInput(f"expected a {WIDTH}x{HEIGHT} PNG")
        buf = bytearray(WIDTH * HEIGHT // 8)
        for y, row in enumerate(rows):
            for x, v in enumerate(row):
                if v >= 128:
                    buf[(y >> 3) * WIDTH + x] |= 1 << (y & 7)
        return cls(bytes(buf))

    def to_ascii(self, frame: bool = True, wide: bool = False) -> str:
        """The screen as text with block characters: 2x2 pixels per character (66 columns
        with the frame), or with ``wide`` 1x2 pixels per character (130 columns)."""
        if wide:
            cw, chars = 1, _HALF
        else:
            cw, chars = 2, _QUADRANT
        lines = []
        for y in range(0, self.height, 2):
            line = ""
            for x in range(0, self.width, cw):
                bits = 0
                for dx in range(cw):
                    bits = (bits << 1) | self.pixel(x + dx, y)
                for dx in range(cw):
                    bits = (bits << 1) | self.pixel(x + dx, y + 1)
                line += chars[bits]
            lines.append(f"|{line}|" if frame else line)
        if frame:
            edge = "+" + "-" * (self.width // cw) + "+"
            lines = [edge, *lines, edge]
        return "\n".join(lines)


# index: top-row bits then bottom-row bits, left to right
_HALF = " \u2584\u2580\u2588"
_QUADRANT = (" \u2597\u2596\u2584\u259d\u2590\u259e\u259f"
             "\u2598\u259a\u258c\u2599\u2580\u259c\u259b\u2588")


def render(accounts: Sequence[FobAccount], at: float | None, *, index: int = 0,
           show_next: bool = False, utc_offset: int | None = None) -> Screen:
    """The screen the fob draws for ``accounts[index]`` at unix time ``at``.

    ``at=None`` renders the "no trusted time" screen; no accounts, the "no accounts" one.
    ``at`` must be a unix time from 0 to :data:`MAX_TIME` (:class:`InvalidInput` otherwise).
    ``utc_offset`` (minutes east of UTC) adds the time of day, as the setting show_clock.
    """
    if at is not None and not 0 <= at <= MAX_TIME:  # NaN compares False: refused too
        raise InvalidInput(f"the time must be a unix time from 0 to {MAX_TIME} (seconds "
                           "since 1970-01-01 UTC)")
    fw = load_host_modules()
    try:
        objs = [fw.accounts.Account(a.name, a.secret.upper(), a.algorithm, a.digits, a.period)
                for a in accounts]
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    buf = bytearray(WIDTH * HEIGHT // 8)
    fb = FrameBuffer(buf, WIDTH, HEIGHT, MONO_VLSB)
    fw.screen.draw(fb, objs, index, None if at is None else int(at), show_next, utc_offset)
    return Screen(bytes(buf))


def find_account(accounts: Sequence[FobAccount], name: str | None) -> int:
    """Index of the account ``name`` (0 when no name is given)."""
    if name is None:
        return 0
    for i, a in enumerate(accounts):
        if a.name == name:
            return i
    raise InvalidInput(f"no account named {name!r} (have: {', '.join(a.name for a in accounts)})")
