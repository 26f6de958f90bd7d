"""`hwtoken otp` and `hwtoken paperkey` through click's runner and as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from hwtoken.cli import cli

HWTOKEN = [str(Path(sys.executable).with_name("hwtoken"))]
SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"  # RFC 6238's SHA1 seed in base32


def run(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HWTOKEN, *args], capture_output=True, text=True, input=input,
                          timeout=60, env={**os.environ, "COLUMNS": "200"})


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input)


def test_code_rfc6238_and_hotp():
    r = invoke("otp", "code", SECRET, "--at", "59", "--digits", "8")
    assert r.exit_code == 0 and r.stdout.strip() == "94287082"
    r = invoke("otp", "code", SECRET.lower(), "--counter", "1")
    assert r.stdout.strip() == "287082"


def test_code_from_stdin_and_uri():
    r = invoke("otp", "code", "-", "--at", "1111111109", "--digits", "8", input=SECRET + "\n")
    assert r.output.strip() == "07081804"
    uri = f"otpauth://totp/x?secret={SECRET}&digits=8&algorithm=SHA1"
    r = invoke("otp", "code", uri, "--at", "1234567890", "--json")
    doc = json.loads(r.stdout)
    assert doc["code"] == "89005924" and doc["step"] == 1234567890 // 30


def test_new_json_round_trips_through_uri_and_code(tmp_path):
    r = invoke("otp", "new", "--json", "--digits", "8", "--algorithm", "SHA256",
               "--qr", str(tmp_path / "q.png"))
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["secret_bits"] == 160 and doc["uri"].startswith("otpauth://totp/")
    assert (tmp_path / "q.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "q.png").stat().st_mode & 0o777 == 0o600
    parsed = json.loads(invoke("otp", "uri", "-", "--json", input=doc["uri"]).stdout)
    assert parsed["digits"] == 8 and parsed["algorithm"] == "SHA256"
    a = invoke("otp", "code", doc["uri"], "--at", "1000").stdout
    b = invoke("otp", "code", doc["secret"], "--digits", "8", "--algorithm", "SHA256",
               "--at", "1000").stdout
    assert a == b


def test_new_human_draws_qr():
    r = invoke("otp", "new", "--issuer", "ACME", "--account", "bob")
    assert r.exit_code == 0 and "otpauth://totp/ACME:bob?" in r.output
    assert "█" in r.output or "▀" in r.output


def test_verify_exit_codes_and_replay_state(tmp_path):
    state = str(tmp_path / "seen.json")
    code = invoke("otp", "code", SECRET, "--at", "1000").stdout.strip()
    assert invoke("otp", "verify", SECRET, code, "--at", "1000", "--state", state).exit_code == 0
    r = invoke("otp", "verify", SECRET, code, "--at", "1000", "--state", state)
    assert r.exit_code == 1 and "already used" in r.output
    from hwtoken.otp import TOTP, decode_secret

    gen = TOTP(decode_secret(SECRET))
    zero_valid = "000000" in {gen.at(1000 + d) for d in (-30, 0, 30)}
    assert invoke("otp", "verify", SECRET, "000000", "--at", "1000").exit_code == (
        0 if zero_valid else 1)
    wrong = str((int(code) + 1) % 10**6).zfill(6)
    assert invoke("otp", "verify", SECRET, wrong, "--at", "1000", "--window", "0").exit_code == 1


def _verify_json(*args: str) -> tuple[int, dict]:
    r = invoke("otp", "verify", SECRET, *args, "--json")
    return r.exit_code, json.loads(r.stdout)


@pytest.mark.parametrize("code", ["12345", "1234567", "abcdef", "12 34 5x", "", "１２３４５６"])
def test_verify_json_malformed_code_is_a_failed_check(code):
    """A malformed code is a wrong code: exit 1 with valid false, like any other refusal."""
    status, doc = _verify_json(code, "--at", "1000")
    assert (status, doc["valid"], doc["step"]) == (1, False, None)
    assert doc["error"].startswith("code is not valid") and doc["code"] == 1


def test_verify_json_exit_codes_valid_wrong_replayed(tmp_path):
    state = str(tmp_path / "seen.json")
    code = invoke("otp", "code", SECRET, "--at", "1000").stdout.strip()
    wrong = str((int(code) + 1) % 10**6).zfill(6)

    status, doc = _verify_json(wrong, "--at", "1000", "--window", "0", "--state", state)
    assert (status, doc["valid"], doc["step"]) == (1, False, None)
    assert "already used" in doc["error"]  # with a state file the message names replays too

    status, doc = _verify_json(code, "--at", "1000", "--state", state)
    assert (status, doc) == (0, {"valid": True, "type": "totp", "step": 1000 // 30})

    status, doc = _verify_json(code, "--at", "1000", "--state", state)  # replayed
    assert (status, doc["valid"]) == (1, False)

    hotp = [invoke("otp", "code", SECRET, "--counter", str(c)).stdout.strip() for c in range(3)]
    hstate = str(tmp_path / "hotp.json")
    status, doc = _verify_json(hotp[2], "--hotp", "--state", hstate)
    assert (status, doc) == (0, {"valid": True, "type": "hotp", "counter": 2, "next_counter": 3})
    status, doc = _verify_json(hotp[2], "--hotp", "--state", hstate)  # replayed
    assert (status, doc["valid"], doc["counter"], doc["next_counter"]) == (1, False, None, None)
    status, doc = _verify_json("12a456", "--hotp", "--state", hstate)  # malformed
    assert (status, doc["valid"]) == (1, False)


def test_verify_json_exit_codes_as_a_real_process(tmp_path):
    state = str(tmp_path / "seen.json")
    code = run("otp", "code", SECRET, "--at", "7000").stdout.strip()
    first = run("otp", "verify", "-", code, "--at", "7000", "--state", state, "--json",
                input=SECRET)
    again = run("otp", "verify", "-", code, "--at", "7000", "--state", state, "--json",
                input=SECRET)
    malformed = run("otp", "verify", "-", "abcdef", "--at", "7000", "--json", input=SECRET)
    assert [first.returncode, again.returncode, malformed.returncode] == [0, 1, 1]
    assert [json.loads(p.stdout)["valid"] for p in (first, again, malformed)] == [
        True, False, False]


def test_replay_store_survives_process_restart(tmp_path):
    state = str(tmp_path / "seen.json")
    code = run("otp", "code", SECRET, "--at", "5000").stdout.strip()
    first = run("otp", "verify", "-", code, "--at", "5000", "--state", state, input=SECRET)
    assert first.returncode == 0, first.stderr
    again = run("otp", "verify", "-", code, "--at", "5010", "--state", state, input=SECRET)
    assert again.returncode == 1 and again.stderr.startswith("error:")
    assert SECRET not in Path(state).read_text()


def test_hotp_verify_resyncs_with_state(tmp_path):
    state = str(tmp_path / "hotp.json")
    codes = [invoke("otp", "code", SECRET, "--counter", str(c)).stdout.strip() for c in range(8)]
    assert invoke("otp", "verify", SECRET, codes[4], "--hotp", "--state", state).exit_code == 0
    assert invoke("otp", "verify", SECRET, codes[4], "--hotp", "--state", state).exit_code == 1
    assert invoke("otp", "verify", SECRET, codes[3], "--hotp", "--state", state).exit_code == 1
    r = invoke("otp", "verify", SECRET, codes[6], "--hotp", "--state", state, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["counter"] == 6


@pytest.mark.parametrize("uri,needle", [
    ("http://totp/x?secret=JBSWY3DPEHPK3PXP", "scheme"),
    ("otpauth://totp/x?secret=JBSWY3DPEHPK3PX!", "base32"),
    ("otpauth://hotp/x?secret=JBSWY3DPEHPK3PXP", "counter"),
    ("otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&digits=12", "digits"),
])
def test_uri_errors_exit_2_one_line_no_traceback(uri, needle):
    r = run("otp", "uri", "-", input=uri)
    assert r.returncode == 2
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error:")


def test_bad_secret_exit_2_and_not_echoed():
    r = run("otp", "code", "NOTBASE32!!SECRETBITS")
    assert r.returncode == 2 and "SECRETBITS" not in r.stderr and "Traceback" not in r.stderr


def test_usage_error_exit_2():
    assert run("otp", "code").returncode == 2
    assert run("otp", "code", SECRET, "--digits", "9").returncode == 2


def test_paperkey_new_and_check_via_stdin():
    r = run("paperkey", "new", "--json")
    assert r.returncode == 0
    doc = json.loads(r.stdout)
    assert set(doc) >= {"key", "hash"} and len(doc["key"]) == 64
    ok = run("otp", "paperkey", "check", doc["hash"], input=doc["grouped"].lower() + "\n")
    assert ok.returncode == 0, ok.stderr
    bad = run("paperkey", "check", doc["hash"], input="A" * 64)
    assert bad.returncode == 1
    malformed = run("paperkey", "check", "nonsense", input=doc["key"])
    assert malformed.returncode == 2


def test_paperkey_human_output_shows_key_once():
    r = invoke("paperkey", "new")
    assert r.exit_code == 0 and "shown once" in r.output and "$scrypt$" in r.output


def test_fast_commands_do_not_import_heavy_modules():
    code = ("import sys\nfrom hwtoken.cli import main\n"
            "sys.argv=['hwtoken','otp','code','" + SECRET + "']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "heavy=[m for m in sys.modules if m.split('.')[0] in "
            "('fido2','yubikit','usb','usbip','ykman','yubico','smartcard','segno')"
            " or m.startswith('hwtoken.emulator') or m.startswith('cryptography.hazmat')]\n"
            "print('HEAVY', heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60).stdout
    assert "HEAVY []" in out, out
    help_out = subprocess.run([sys.executable, "-X", "importtime", "-m", "hwtoken", "--help"],
                              capture_output=True, text=True, timeout=60)
    assert "fido2" not in help_out.stderr and "yubikit" not in help_out.stderr


@pytest.mark.parametrize("args", [
    [SECRET, "--at", "59", "--digits", "8"],
    [SECRET, "--counter", "3", "--algorithm", "sha256"],
    [SECRET, "--hotp"],
    [SECRET, "--at", "1000", "--json", "--period", "60"],
    [f"otpauth://hotp/a?secret={SECRET}&counter=7&digits=7"],
    ["NOT-BASE32-!!"],
    ["otpauth://hotp/a?secret=" + SECRET],
])
def test_fast_path_matches_click_path(args, capsys):
    """`hwtoken otp code` skips click for speed; its answers must be the click command's."""
    from hwtoken.cli.fastpath import otp_code

    rc = otp_code(list(args))
    fast = capsys.readouterr()
    slow = CliRunner().invoke(cli, ["otp", "code", *args])
    assert rc == slow.exit_code
    if rc == 0:
        if "--json" in args:
            a, b = json.loads(fast.out), json.loads(slow.stdout)
            assert a == b
        else:
            assert fast.out == slow.stdout
    else:  # the same one error line (after the same argv warning)
        assert [ln for ln in fast.err.splitlines() if ln.startswith("error:")] == \
            [ln for ln in slow.stderr.splitlines() if ln.startswith("error:")]
        assert fast.err.count("error:") == 1


def test_fast_path_defers_unusual_input_to_click():
    from hwtoken.cli.fastpath import otp_code

    assert otp_code(["--help"]) is None
    assert otp_code([SECRET, "--digits", "9"]) is None
    assert otp_code([SECRET, "--bogus"]) is None
    assert otp_code([]) is None
