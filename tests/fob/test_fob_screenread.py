"""Reading a fob screen back from its pixels (hwtoken.fob.screenread)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from hwtoken.fob.firmware import load_host_modules
from hwtoken.fob.framebuf import _FONT, MONO_VLSB, FrameBuffer
from hwtoken.fob.screenread import _cell, read_screen
from hwtoken.fob.simulate import FobAccount, Screen, render
from hwtoken.otp import TOTP

SECRET = "JBSWY3DPEHPK3PXP"


def test_every_kind_of_screen_reads_back():
    one = [FobAccount("github", SECRET)]
    r = read_screen(render(one, 1700000005))
    assert r.to_dict() == {"kind": "code", "account": "github", "code": "324550",
                           "seconds_left": 5}
    assert r.code == TOTP.from_secret(SECRET).at(1700000005)
    assert r.summary() == "'github', code 324550, 5 s left"
    two = [FobAccount("ACME:alice@example.com", SECRET, "SHA256", 8), FobAccount("b", SECRET)]
    r = read_screen(render(two, 1234567890, index=0))
    assert (r.account, r.position, r.code) == (
        "ACME:alice@~", "1/2", TOTP.from_secret(SECRET, digits=8, algorithm="SHA256")
        .at(1234567890))
    r = read_screen(render([FobAccount("mail", SECRET, "SHA512", 7, 60)], 2000000000,
                           show_next=True))
    totp = TOTP.from_secret(SECRET, digits=7, algorithm="SHA512", period=60)
    assert (r.code, r.next_code, r.seconds_left) == (totp.at(2000000000),
                                                     totp.at(2000000060), 40)
    # 1700000000 is 2023-11-14 22:13:20 UTC: 00:13 the next day at +02:00, 16:43 at -05:30
    assert read_screen(render(one, 1700000000, utc_offset=120)).clock == "00:13"
    r = read_screen(render(one, 1700000000, utc_offset=-330))
    assert (r.clock, r.seconds_left, r.summary()) == (
        "16:43", 10, "'github', code 324550, 10 s left, clock 16:43")
    assert read_screen(render(one, None)).to_dict() == {
        "kind": "message", "title": "NO TRUSTED TIME",
        "lines": ["Connect USB and", "run on the host:", "hwtoken fob", "    sync-time"]}
    assert read_screen(render([], 1700000000)).title == "NO ACCOUNTS"
    assert read_screen(Screen(bytes(1024))).kind == "blank"


def test_a_damaged_screen_reads_as_nothing_never_a_wrong_code():
    screen = render([FobAccount("github", SECRET)], 1700000005)
    buf = bytearray(screen.buffer)
    # one pixel of a digit's segment flipped: the digit no longer matches the font exactly
    for i in range(1024):
        if 2 * 128 <= i < 5 * 128 and buf[i]:
            buf[i] ^= buf[i] & -buf[i]
            break
    assert read_screen(Screen(bytes(buf))).kind == "unknown"
    noise = random.Random(7).randbytes(1024)
    assert read_screen(Screen(noise)).kind == "unknown"


@settings(max_examples=60)
@given(st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=40),
       st.integers(0, 2**34), st.sampled_from(["SHA1", "SHA256", "SHA512"]),
       st.sampled_from([6, 7, 8]), st.sampled_from([15, 30, 60, 86400]), st.integers(1, 20),
       st.booleans(), st.one_of(st.none(), st.integers(-720, 840)))
def test_fuzz_what_is_drawn_is_what_is_read(name, t, alg, digits, period, count, nxt, tz):
    accts = [FobAccount(name if i == 0 else f"x{i}", SECRET, alg, digits, period)
             for i in range(count)]
    r = read_screen(render(accts, t, show_next=nxt, utc_offset=tz))
    totp = TOTP.from_secret(SECRET, digits=digits, algorithm=alg, period=period)
    assert r.kind == "code" and r.code == totp.at(t)
    shown = name if len(name) <= (16 if count == 1 else 16 - len(f"1/{count}") - 1) else None
    if shown is not None and shown == shown.rstrip():
        assert r.account == shown
    assert r.position == (f"1/{count}" if count > 1 else None)
    assert r.seconds_left == period - t % period
    assert r.next_code == (totp.at(t + period) if nxt else None)
    if not nxt and tz is not None:
        minutes = (t // 60 + tz) % 1440
        assert r.clock == f"{minutes // 60:02d}:{minutes % 60:02d}"


def _drawn(draw) -> Screen:
    """A screen drawn by ``draw(fb, firmware)`` with the firmware's own screen code."""
    buf = bytearray(1024)
    draw(FrameBuffer(buf, 128, 64, MONO_VLSB), load_host_modules())
    return Screen(bytes(buf))


def test_messages_of_five_lines_and_titles_of_any_length():
    screen = _drawn(lambda fb, fw: fw.screen.draw_message(
        fb, "HELLO WORLD!", ["one", "  two", "", "four", "five is the last"]))
    assert read_screen(screen).to_dict() == {
        "kind": "message", "title": "HELLO WORLD!",
        "lines": ["one", "  two", "four", "five is the last"]}
    assert read_screen(screen).summary() == ("HELLO WORLD! / one /   two / four / five is "
                                             "the last")
    # a title that cannot be read (a pixel of its bar is off): the lines still are
    buf = bytearray(screen.buffer)
    buf[127] &= ~0x10  # the bar's row 4 at x 127, right of the title
    r = read_screen(Screen(bytes(buf)))
    assert (r.kind, r.title, r.summary()) == ("message", None, " / one /   two / four / five "
                                                                "is the last")
    r = read_screen(_drawn(lambda fb, fw: fw.screen.draw_message(fb, "ODD", [])))
    assert (r.kind, r.title, r.lines, r.summary()) == ("message", "ODD", [], "ODD")
    # a message whose line is not text: not read as a message with fewer lines
    buf = bytearray(screen.buffer)
    buf[2 * 128 + 3] ^= 0x5A  # page 2 holds the first line (y 16-23)
    assert read_screen(Screen(bytes(buf))).to_dict() == {"kind": "unknown"}
    assert read_screen(Screen(bytes(buf))).summary() == "unknown"


def test_the_next_code_view_reads_whole():
    two = [FobAccount("github", SECRET), FobAccount("mail", SECRET)]
    totp = TOTP.from_secret(SECRET)
    # "nxt 123456 20s": 14 characters, centred on a character boundary
    r = read_screen(render(two, 1700000020, index=1, show_next=True))
    assert r.to_dict() == {"kind": "code", "account": "mail", "position": "2/2",
                           "code": totp.at(1700000020), "next_code": totp.at(1700000050),
                           "seconds_left": 20}
    assert r.summary() == (f"'mail', 2/2, code {totp.at(1700000020)}, next "
                           f"{totp.at(1700000050)}, 20 s left")
    eight = TOTP.from_secret(SECRET, digits=8, period=86400)
    r = read_screen(render([FobAccount("day", SECRET, "SHA1", 8, 86400)], 1700000000,
                           show_next=True))  # too long for "nxt ": the code and seconds
    assert (r.kind, r.code, r.next_code, r.seconds_left) == (
        "code", eight.at(1700000000), eight.at(1700086400), 86400 - 1700000000 % 86400)


def test_a_code_without_a_bar_label_reads_without_seconds():
    two = [FobAccount("github", SECRET), FobAccount("b", SECRET)]
    buf = bytearray(render(two, 1700000005).buffer)
    for x in range(128):  # rows 54 to 63 (the bar and its label) cleared
        buf[6 * 128 + x] &= 0x3F
        buf[7 * 128 + x] = 0
    r = read_screen(Screen(bytes(buf)))
    assert r.to_dict() == {"kind": "code", "account": "github", "position": "1/2",
                           "code": "324550"}
    assert r.summary() == "'github', 1/2, code 324550"
    # a bottom line that is text all the way across is not a bar's label
    fb = FrameBuffer(buf, 128, 64, MONO_VLSB)
    fb.text("1" + " " * 12 + "15s", 0, 54, 1)
    r = read_screen(Screen(bytes(buf)))
    assert (r.kind, r.code, r.seconds_left) == ("code", "324550", None)


def _glyph_at(x: int, y: int, ch: str = "A") -> Screen:
    """A screen holding ``ch``'s pixels at x, y addressed as Screen.pixel does, so the
    bytes that wrap around the edges spell the glyph."""
    buf = bytearray(1024)
    cols = _FONT[(ord(ch) - 32) * 8:(ord(ch) - 31) * 8]
    for cx in range(8):
        for r in range(8):
            if cols[cx] >> r & 1:
                xx, yy = x + cx, y + r
                buf[(yy >> 3) * 128 + xx] |= 1 << (yy & 7)
    return Screen(bytes(buf))


def test_a_glyph_cut_by_the_edge_is_not_read():
    assert _cell(_glyph_at(120, 0), 120, 0) == "A"  # right at the edge: read
    assert _cell(_glyph_at(0, 56), 0, 56) == "A"
    for x, y in [(-1, 0), (0, -1), (121, 0), (121, 8)]:
        assert _cell(_glyph_at(x, y), x, y) is None, (x, y)
    assert _cell(Screen(bytes(1024)), 0, 57) is None
    assert _cell(Screen(bytes(1024)), 64, 60) is None
