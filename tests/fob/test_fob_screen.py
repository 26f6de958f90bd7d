"""The fob's screen: drawn by the firmware on MicroPython's real framebuf, compared pixel by
pixel with golden PNGs, and with the host's simulation (CPython + framebuf stand-in)."""

from __future__ import annotations

import os

import pytest
from fob_support import GOLDEN

from hwtoken.fob.framebuf import FrameBuffer
from hwtoken.fob.simulate import FobAccount, Screen, render
from hwtoken.otp import TOTP

SECRET = "JBSWY3DPEHPK3PXP"
FILLER = [FobAccount(f"acct{i}", SECRET) for i in range(20)]

# name -> (accounts, unix time or None, index, show_next)
CASES = {
    "github_6digits": ([FobAccount("github", SECRET)], 1700000000, 0, False),
    "long_name_8digits_sha256": (
        [*FILLER[:2], FobAccount("ACME:alice@example.com", SECRET, "SHA256", 8), *FILLER[3:]],
        1234567890, 2, False),
    "next_code_7digits_60s": ([FobAccount("mail", SECRET, "SHA512", 7, 60), FILLER[1]],
                              2000000000, 0, True),
    "no_trusted_time": ([FobAccount("github", SECRET)], None, 0, False),
    "no_accounts": ([], 1700000000, 0, False),
}


def _micropython_screens(mpy) -> dict[str, bytes]:
    spec = {name: ([[a.name, a.secret, a.algorithm, a.digits, a.period] for a in accts], t, i, nxt)
            for name, (accts, t, i, nxt) in CASES.items()}
    doc = mpy(f"""
import json, framebuf, accounts, screen, binascii
out = {{}}
for name, (accts, t, index, nxt) in {spec!r}.items():
    buf = bytearray(1024)
    fb = framebuf.FrameBuffer(buf, 128, 64, framebuf.MONO_VLSB)
    screen.draw(fb, [accounts.Account(*a) for a in accts], index, t, nxt)
    out[name] = binascii.hexlify(buf).decode()
print(json.dumps(out))
""", stubs=False)
    return {name: bytes.fromhex(h) for name, h in doc.items()}


def test_screens_match_golden_pngs_and_the_host_simulation(mpy):
    screens = _micropython_screens(mpy)
    update = os.environ.get("HWTOKEN_UPDATE_GOLDEN") == "1"
    for name, (accts, t, index, nxt) in CASES.items():
        on_micropython = Screen(screens[name])
        path = GOLDEN / f"{name}.png"
        if update:
            path.write_bytes(on_micropython.to_png(1))
        golden = Screen.from_png(path.read_bytes())
        diff = [(x, y) for y in range(64) for x in range(128)
                if golden.pixel(x, y) != on_micropython.pixel(x, y)]
        assert not diff, f"{name}: {len(diff)} pixels differ from the golden PNG, e.g. {diff[:5]}"
        simulated = render(accts, t, index=index, show_next=nxt)
        assert simulated.buffer == on_micropython.buffer, f"{name}: simulation differs"
        assert sum(bin(b).count("1") for b in simulated.buffer) > 100  # something is drawn


def test_the_code_on_screen_is_the_code(mpy):
    # Read the digits back from the pixels by their seven segments: the screen really shows
    # the account's code (so a golden PNG of a wrong code could not pass unnoticed).
    from hwtoken.fob.firmware import load_host_modules

    fw = load_host_modules()
    screen = render([FobAccount("github", SECRET)], 1700000000)
    w, gap, group = fw.font.LAYOUT[6]
    x = (128 - fw.font.code_width(6)) // 2
    y, h, t = fw.screen.CODE_Y, fw.screen.CODE_H, 3
    mid = y + (h - t) // 2
    probes = {0x01: (w // 2, 1), 0x02: (w - 2, (mid - y) // 2), 0x04: (w - 2, mid - y + h // 4),
              0x08: (w // 2, h - 2), 0x10: (1, mid - y + h // 4), 0x20: (1, (mid - y) // 2),
              0x40: (w // 2, mid - y + 1)}
    reverse = {v: k for k, v in fw.font.DIGITS.items()}
    digits = ""
    for i in range(6):
        if i == 3:
            x += group
        bits = sum(seg for seg, (dx, dy) in probes.items() if screen.pixel(x + dx, y + dy))
        digits += reverse[bits]
        x += w + gap
    assert digits == TOTP.from_secret(SECRET).at(1700000000)


def test_framebuf_stand_in_clips_like_micropython(mpy):
    ops = [("fill_rect", -5, -5, 20, 20, 1), ("fill_rect", 120, 60, 20, 20, 1),
           ("rect", 10, 10, 30, 20, 1), ("hline", -3, 40, 200, 1), ("vline", 127, -10, 100, 1),
           ("text", "Hi~\u00e9", 100, 50, 1), ("text", "x", -4, -3, 1),
           ("fill_rect", 30, 5, 8, 8, 0),
           ("pixel", 3, 3, 0), ("rect", 50, 30, 1, 1, 1), ("rect", 60, 30, 0, 5, 1)]
    doc = mpy(f"""
import json, framebuf, binascii
buf = bytearray(1024)
fb = framebuf.FrameBuffer(buf, 128, 64, framebuf.MONO_VLSB)
for op in {ops!r}:
    getattr(fb, op[0])(*op[1:])
print(json.dumps(binascii.hexlify(buf).decode()))
""", stubs=False)
    buf = bytearray(1024)
    fb = FrameBuffer(buf, 128, 64)
    for op in ops:
        getattr(fb, op[0])(*op[1:])
    assert buf.hex() == doc


@pytest.mark.parametrize("scale", [1, 3])
def test_png_round_trip(scale):
    screen = render([FobAccount("github", SECRET)], 1700000000)
    data = screen.to_png(scale)
    from hwtoken.fob import png

    rows = png.decode(data)
    assert len(rows) == 64 * scale and len(rows[0]) == 128 * scale
    if scale == 1:
        assert Screen.from_png(data) == screen


def test_next_code_line_fits_with_8_digits_and_a_long_period():
    # "nxt 12345678 300s" is 17 characters: one more than 128 pixels hold. The line
    # drops its "nxt" rather than lose a digit off the edge.
    from hwtoken.fob.firmware import load_host_modules

    fw = load_host_modules()
    acct = FobAccount("ops", SECRET, "SHA1", 8, 300)
    t = 1700000000
    screen = render([acct], t, show_next=True)
    nxt = TOTP.from_secret(SECRET, digits=8, period=300).at(t + 300)
    line = f"{nxt} {300 - t % 300}s"
    assert len(line) <= 16
    buf = bytearray(1024)
    fb = FrameBuffer(buf, 128, 64)
    fb.text(line, (128 - len(line) * 8) // 2, fw.screen.BAR_Y, 1)
    expected = Screen(bytes(buf))
    rows = range(fw.screen.BAR_Y, fw.screen.BAR_Y + 8)
    assert [[screen.pixel(x, y) for x in range(128)] for y in rows] == \
        [[expected.pixel(x, y) for x in range(128)] for y in rows]
