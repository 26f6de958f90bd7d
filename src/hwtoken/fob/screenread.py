"""Read a fob screen back as text: the account, its position, the code, the seconds left.

The inverse of ``firmware/screen.py``, for the virtual fob and its tests: a maker's script
or a test reads the code the (virtual) OLED shows, from its pixels alone. Text lines are
matched glyph by glyph against MicroPython's 8x8 font; the large code is decoded segment
by segment, then accepted only if drawing it again with ``firmware/font.py`` gives exactly
the pixels on the screen (so a damaged or unknown screen reads as nothing, never as a
wrong code).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any

from hwtoken.fob.firmware import load_host_modules
from hwtoken.fob.framebuf import _FONT, MONO_VLSB, FrameBuffer
from hwtoken.fob.simulate import HEIGHT, WIDTH, Screen

CHAR = 8


@dataclass(frozen=True)
class ScreenText:
    """What a fob screen says. ``kind``: ``code`` (an account's code), ``message`` (a title
    and lines, e.g. NO TRUSTED TIME), ``blank`` or ``unknown``."""

    kind: str
    account: str | None = None
    position: str | None = None       # "2/3" when the fob holds several accounts
    code: str | None = None
    seconds_left: int | None = None
    clock: str | None = None          # "HH:MM" with the setting show_clock
    next_code: str | None = None      # the long-press view
    title: str | None = None
    lines: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, [])}

    def summary(self) -> str:
        if self.kind == "code":
            parts = [repr(self.account)]
            if self.position:
                parts.append(self.position)
            parts.append(f"code {self.code}")
            if self.next_code:
                parts.append(f"next {self.next_code}")
            if self.seconds_left is not None:
                parts.append(f"{self.seconds_left} s left")
            if self.clock:
                parts.append(f"clock {self.clock}")
            return ", ".join(parts)
        if self.kind == "message":
            return " / ".join([self.title or "", *self.lines])
        return self.kind


@cache
def _glyphs() -> dict[bytes, str]:
    return {_FONT[i * 8:(i + 1) * 8]: chr(32 + i) for i in range(len(_FONT) // 8)}


def _cell(screen: Screen, x: int, y: int, invert: bool = False) -> str | None:
    """The character drawn with its top-left corner at x, y (None: not a glyph)."""
    if x < 0 or y < 0 or x + CHAR > screen.width or y + CHAR > screen.height:
        return None
    cols = bytes(sum((screen.pixel(x + cx, y + r) ^ invert) << r for r in range(CHAR))
                 for cx in range(CHAR))
    return _glyphs().get(cols)


def _text(screen: Screen, x: int, y: int, n: int, invert: bool = False) -> str | None:
    cells = [_cell(screen, x + i * CHAR, y, invert) for i in range(n)]
    return None if None in cells else "".join(cells)  # type: ignore[arg-type]


def _centred(screen: Screen, y: int, invert: bool = False) -> str | None:
    """A line drawn centred (x = (WIDTH - len * 8) // 2): try both alignments."""
    for x in (0, CHAR // 2):
        n = (WIDTH - x) // CHAR
        text = _text(screen, x, y, n, invert)
        if text is not None:
            return text.strip()
    return None


def _code(screen: Screen) -> str | None:
    fw = load_host_modules()
    font, layout = fw.font, fw.screen
    y, h = layout.CODE_Y, layout.CODE_H
    by_segments = {v: k for k, v in font.DIGITS.items() if k.isdigit()}
    band = [[screen.pixel(x, yy) for x in range(WIDTH)] for yy in range(y, y + h)]
    for n in (6, 7, 8):
        w, gap, group = font.LAYOUT[n]
        t = 3 if w >= 12 else 2
        x = (WIDTH - font.code_width(n)) // 2
        mid = y + (h - t) // 2
        digits = []
        for i in range(n):
            if i == n // 2:
                x += group
            # the centre of each segment (a..g), as font.draw_digit places them
            centres = ((x + w // 2, y + t // 2), (x + w - 1 - t // 2, (y + mid + t) // 2),
                       (x + w - 1 - t // 2, (mid + y + h) // 2), (x + w // 2, y + h - 1 - t // 2),
                       (x + t // 2, (mid + y + h) // 2), (x + t // 2, (y + mid + t) // 2),
                       (x + w // 2, mid + t // 2))
            seg = sum(screen.pixel(cx, cy) << bit for bit, (cx, cy) in enumerate(centres))
            if seg not in by_segments:
                break
            digits.append(by_segments[seg])
            x += w + gap
        if len(digits) != n:
            continue
        code = "".join(digits)
        check = FrameBuffer(bytearray(WIDTH * HEIGHT // 8), WIDTH, HEIGHT, MONO_VLSB)
        font.draw_code(check, code, y, h, WIDTH)
        drawn = Screen(bytes(check.buf))
        if all(drawn.pixel(x, yy) == band[yy - y][x] for yy in range(y, y + h)
               for x in range(WIDTH)):
            return code
    return None


_POSITION = re.compile(r"(.*?)\s+(\d+/\d+)")
_BAR = re.compile(r"(?:(\d\d:\d\d) )?(\d+)s")
_NEXT = re.compile(r"(?:nxt )?(\d{6,8}) (\d+)s")


def read_screen(screen: Screen) -> ScreenText:
    """What ``screen`` says, read from its pixels."""
    if not any(screen.buffer):
        return ScreenText("blank")
    layout = load_host_modules().screen
    if all(screen.pixel(x, y) for y in (0, 9) for x in range(WIDTH)):  # a message's title bar
        title = _centred(screen, 1, invert=True)
        lines = []
        for y in range(16, HEIGHT - CHAR + 1, 10):
            line = _text(screen, 0, y, WIDTH // CHAR)
            if line is None:
                return ScreenText("unknown")
            if line.strip():
                lines.append(line.rstrip())
        return ScreenText("message", title=title, lines=lines)
    header = _text(screen, 0, 0, WIDTH // CHAR)
    code = _code(screen)
    if header is None or code is None:
        return ScreenText("unknown")
    header = header.rstrip()
    m = _POSITION.fullmatch(header)
    account, position = (m[1], m[2]) if m else (header, None)
    bottom = _centred(screen, layout.BAR_Y)
    nxt = _NEXT.fullmatch(bottom) if bottom is not None else None
    if nxt:
        return ScreenText("code", account, position, code, int(nxt[2]), next_code=nxt[1])
    label = ""
    for x in range(WIDTH - CHAR, -1, -CHAR):  # right-aligned beside the bar
        ch = _cell(screen, x, layout.BAR_Y)
        if ch is None:
            break
        label = ch + label
    bar = _BAR.fullmatch(label.strip())
    if not bar:
        return ScreenText("code", account, position, code)
    return ScreenText("code", account, position, code, int(bar[2]), clock=bar[1])
