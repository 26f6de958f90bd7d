"""Host side: `hwtoken fob simulate`, the demo, and fuzzing of what parses outside bytes."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from hwtoken.cli import cli
from hwtoken.errors import InvalidInput
from hwtoken.fob import FobAccount, Screen, png, render
from hwtoken.fob.firmware import firmware_sources, load_host_modules
from hwtoken.otp import TOTP

SECRET = "JBSWY3DPEHPK3PXP"
HWTOKEN = Path(sys.executable).with_name("hwtoken")


def test_simulate_png_and_ascii(tmp_path):
    out_png = tmp_path / "screen.png"
    result = CliRunner().invoke(cli, ["fob", "simulate", "--secret", "-", "--name", "github",
                                      "--at", "1700000000", "--png", str(out_png), "--scale",
                                      "2", "--ascii"], input=SECRET + "\n")
    assert result.exit_code == 0, result.output
    rows = png.decode(out_png.read_bytes())
    assert (len(rows), len(rows[0])) == (128, 256)
    screen = render([FobAccount("github", SECRET)], 1700000000)
    assert result.output.strip() == screen.to_ascii().strip()
    assert SECRET not in result.output


def test_simulate_views_differ_and_match_library():
    def sim(*args):
        result = CliRunner().invoke(cli, ["fob", "simulate", "--uri",
                                          f"otpauth://totp/ACME:bob?secret={SECRET}&digits=8",
                                          "--at", "1234567890", *args])
        assert result.exit_code == 0, result.output
        return result.stdout.strip()

    normal, nxt, untrusted = sim(), sim("--next"), sim("--no-time")
    assert len({normal, nxt, untrusted}) == 3
    wide = sim("--ascii", "--wide")
    assert wide.splitlines()[0] == "+" + "-" * 128 + "+" and len(normal.splitlines()[0]) == 66
    acct = FobAccount("ACME:bob", SECRET, digits=8)
    assert nxt == render([acct], 1234567890, show_next=True).to_ascii().strip()
    assert untrusted == render([acct], None).to_ascii().strip()


def test_simulate_subprocess(tmp_path):
    out = tmp_path / "s.png"
    proc = subprocess.run([str(HWTOKEN), "fob", "simulate", "--secret", "-", "--at", "59",
                           "--png", str(out)], input=SECRET, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and out.read_bytes().startswith(b"\x89PNG")


def test_simulate_bad_input():
    r = CliRunner().invoke(cli, ["fob", "simulate", "--secret", "ab!", "--at", "0"])
    assert r.exit_code == 2 and r.stderr.splitlines()[-1].startswith("error:")
    r = CliRunner().invoke(cli, ["fob", "simulate", "--secret", SECRET, "--scale", "99"])
    assert r.exit_code == 2


@pytest.mark.parametrize("at", ["-5", "nan", "inf", "1e30"])
def test_simulate_refuses_times_it_cannot_show(at):
    r = CliRunner().invoke(cli, ["fob", "simulate", "--secret", "-", "--at", at],
                           input=SECRET + "\n")
    assert r.exit_code == 2, r.output
    assert r.output.startswith("error: Invalid value for '--at'") and r.exception is not None
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    with pytest.raises(InvalidInput):
        render([FobAccount("a", SECRET)], float(at))
    # the limits themselves render
    assert render([FobAccount("a", SECRET)], 0) != render([FobAccount("a", SECRET)], 2**63 - 1)


def test_simulate_unwritable_png_is_a_one_line_error(tmp_path):
    target = tmp_path / "missing-dir" / "s.png"
    r = CliRunner().invoke(cli, ["fob", "simulate", "--secret", "-", "--at", "59", "--png",
                                 str(target)], input=SECRET + "\n")
    assert r.exit_code == 2, r.output
    assert r.output.strip() == (f"error: cannot write {target}: the directory {target.parent} "
                                "does not exist (hwtoken does not create directories for the "
                                "files you name)")
    assert not target.parent.exists()


def test_the_host_loads_firmware_without_leaking_module_names():
    fw = load_host_modules()
    assert fw.totp.totp(b"12345678901234567890", 59, 8) == "94287082"
    for name in ("totp", "sha", "screen", "font", "accounts", "clock", "framebuf"):
        assert name not in sys.modules or not getattr(sys.modules[name], "__file__", "").endswith(
            f"firmware/{name}.py")


def test_deploy_sends_the_code_and_never_the_settings():
    files = firmware_sources()
    assert list(files)[-1] == "main.py" and "config.py" in files
    assert "settings.json" not in files  # the board's own settings are never overwritten


def test_demo_prints_the_screen_and_matching_codes(tmp_path):
    from hwtoken.demos import fob

    lines: list[str] = []
    fob.run(lines.append, tmp_path)
    text = "\n".join(lines)
    assert "match" in text and "MISMATCH" not in text
    assert (tmp_path / "fob.png").read_bytes().startswith(b"\x89PNG")


# -- fuzzing: parsers of bytes that come from outside ------------------------------------
@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_fuzz_png_decode_raises_only_invalid_input(data):
    for blob in (data, b"\x89PNG\r\n\x1a\n" + data):
        with contextlib.suppress(InvalidInput):
            png.decode(blob)


@settings(max_examples=100)
@given(st.lists(st.binary(min_size=8, max_size=8), min_size=64, max_size=64))
def test_fuzz_png_round_trip(rows):
    rows = [bytes(r) for r in rows]
    wide = [r * 16 for r in rows]
    assert png.decode(png.encode(wide)) == wide
    screen = Screen(bytes(b for r in rows for b in r) * 2)
    assert Screen.from_png(screen.to_png(1)) == screen


@settings(max_examples=200)
@given(st.binary(min_size=0, max_size=40))
def test_fuzz_firmware_base32_matches_stdlib(key):
    fw = load_host_modules()
    text = base64.b32encode(key).decode()
    assert fw.totp.b32decode(text) == key
    assert fw.totp.b32decode(text.lower().rstrip("=")) == key


@settings(max_examples=100)
@given(st.text(max_size=30))
def test_fuzz_firmware_base32_rejects_or_decodes(text):
    fw = load_host_modules()
    try:
        fw.totp.b32decode(text)
    except ValueError:
        assert any(c.upper() not in "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567 =-" for c in text)
    else:  # and what it accepts holds only base32 (a decoder accepting anything must fail)
        assert all(c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567 =-" for c in text.upper())


@settings(max_examples=60)
@given(st.binary(max_size=300), st.sampled_from(["sha1", "sha256", "sha512"]))
def test_fuzz_fallback_hashes_match_hashlib(data, name):
    fw = load_host_modules()
    assert getattr(fw.sha, name)(data).digest() == hashlib.new(name, data).digest()


@settings(max_examples=60)
@given(st.binary(min_size=10, max_size=80), st.integers(0, 2**40),
       st.sampled_from(["SHA1", "SHA256", "SHA512"]), st.sampled_from([6, 7, 8]),
       st.integers(1, 300))
def test_fuzz_firmware_totp_matches_hwtoken_otp(key, t, alg, digits, period):
    fw = load_host_modules()
    new = getattr(fw.sha, alg.lower())
    assert fw.totp.totp(key, t, digits, alg, period, new) == \
        TOTP(key, digits, alg, period).at(t)


def test_wipe_asks_on_stderr_and_declining_touches_nothing(as_terminal):
    # the prompt must not land in --json output; "n" aborts before the port is opened
    r = CliRunner().invoke(cli, ["fob", "wipe", "--json", "--port", "socket://127.0.0.1:9"],
                           input="n\n")
    assert r.exit_code == 1
    assert json.loads(r.stdout) == {"error": "aborted: nothing was changed", "code": 1}
    assert "Delete every account from the fob?" in r.stderr
    assert "cannot open" not in r.output


def test_wipe_without_a_terminal_needs_force():
    r = CliRunner().invoke(cli, ["fob", "wipe", "--port", "socket://127.0.0.1:9"])
    assert r.exit_code == 2 and "pass --force" in r.stderr and "cannot open" not in r.output


def test_png_decode_does_not_inflate_a_zlib_bomb():
    import struct
    import tracemalloc
    import zlib

    chunk = png._chunk
    bomb = zlib.compress(bytes(30_000_000), 9)  # ~30 KB that would inflate to 30 MB
    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 2, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", bomb) + chunk(b"IEND", b""))
    tracemalloc.start()
    try:
        rows = png.decode(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rows == [bytes(4), bytes(4)]
    assert peak < 3_000_000
