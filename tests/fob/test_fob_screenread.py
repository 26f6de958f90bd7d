"""Reading a fob screen back from its pixels (hwtoken.fob.screenread)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from hwtoken.fob.screenread import read_screen
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
