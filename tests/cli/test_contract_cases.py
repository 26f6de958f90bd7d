"""The cases a review found breaking the CLI contract, each run as a real process.

Every failure must be one ``error:`` line with exit 1 or 2 and no traceback; with
``--json`` also one JSON object ``{"error": ..., "code": N}`` on stdout.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hwtoken import paths
from hwtoken.emulator import VirtualKey

HWTOKEN = str(Path(sys.executable).with_name("hwtoken"))
SECRET = "JBSWY3DPEHPK3PXP"  # 80 bits: the shortest secret accepted without --allow-weak


def hwtoken(*args: str | bytes, input: bytes | str = b"", env: dict | None = None,
            unprivileged: bool = False) -> subprocess.CompletedProcess[bytes]:
    """Run the console script; ``unprivileged``: without root's power to read any file."""
    cmd: list[str | bytes] = [HWTOKEN, *args]
    if unprivileged and os.geteuid() == 0:
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *cmd]
    return subprocess.run(cmd, capture_output=True, timeout=120,
                          input=input.encode() if isinstance(input, str) else input,
                          env={**os.environ, "PCSCLITE_CSOCK_NAME": "/nonexistent",
                               **(env or {})})


def fails(proc: subprocess.CompletedProcess[bytes], code: int = 2, *, needle: str = "",
          as_json: bool = False) -> str:
    """Assert the contract for a failure; returns the error message."""
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == code, (proc.returncode, err, proc.stdout)
    assert "Traceback" not in err and "internal error" not in err, err
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, err
    message = errors[0][len("error: "):]
    if as_json:
        doc = json.loads(proc.stdout)
        assert doc["error"] == message and doc["code"] == code
    else:
        assert proc.stdout == b"", proc.stdout
    assert needle in message, message
    return message


@pytest.fixture
def key() -> str:
    VirtualKey.create(paths.virtual_key_path("k")).close()
    return "emu:k"


@pytest.fixture
def readonly_dir(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(stat.S_IRUSR | stat.S_IXUSR)
    yield d
    d.chmod(stat.S_IRWXU)


# -- numbers, times, state files ------------------------------------------------------------
@pytest.mark.parametrize("at", ["1e30", "nan", "inf", "-1"])
@pytest.mark.parametrize("command", [["otp", "code", "-"], ["otp", "verify", "-", "123456"]])
def test_times_that_cannot_be(command, at):
    fails(hwtoken(*command, "--at", at, input=SECRET), needle="'--at'")
    fails(hwtoken(*command, "--at", at, "--json", input=SECRET), needle="'--at'", as_json=True)


@pytest.mark.parametrize("doc", ['{"format":1,"entries":[]}', '{"entries":{"a":"x"}}', "[1]",
                                 '{"entries":{"a":true}}', "\xff"])
def test_verify_state_of_the_wrong_shape(tmp_path, doc):
    state = tmp_path / "state.json"
    state.write_bytes(doc.encode("latin-1"))
    fails(hwtoken("otp", "verify", "-", "123456", "--state", str(state), input=SECRET),
          needle="replay state file")


def test_library_refuses_impossible_times():
    from hwtoken.errors import InvalidInput
    from hwtoken.otp import TOTP, Verifier, decode_secret

    gen = TOTP(decode_secret(SECRET))
    for at in (float("nan"), float("inf"), -1.0, 2.0**64):
        with pytest.raises(InvalidInput):
            gen.at(at)
        with pytest.raises(InvalidInput):
            Verifier(gen).verify("123456", at)


# -- bytes that are not UTF-8 -----------------------------------------------------------------
def test_undecodable_stdin_for_oath_import(key):
    fails(hwtoken("yubikey", "oath", "import", "-", "-d", key, input=b"\xff\xfe\n"),
          needle="not UTF-8")


def test_undecodable_argument(key):
    fails(hwtoken("fido2", "-d", key, "register", "--rp", b"\xff.com", "--user", "u"),
          needle="not valid UTF-8")
    fails(hwtoken("emulate", "create", b"caf\xe9"), needle="not valid UTF-8")


def test_undecodable_pin_in_the_environment(key):
    set_pin = hwtoken("fido2", "-d", key, "pin", "set", env={"HWTOKEN_NEW_PIN": "123456"})
    assert set_pin.returncode == 0, set_pin.stderr
    env = {**os.environ, "HWTOKEN_PIN": os.fsdecode(b"\xff\xfe"),
           "PCSCLITE_CSOCK_NAME": "/nonexistent"}
    proc = subprocess.run([HWTOKEN, "fido2", "-d", key, "pin", "verify"], capture_output=True,
                          timeout=60, env={k: os.fsencode(v) for k, v in env.items()})
    fails(proc, needle="$HWTOKEN_PIN is not valid UTF-8")


# -- files that cannot be read or written -----------------------------------------------------
def test_one_unreadable_key_hides_no_other(key, tmp_path):
    VirtualKey.create(paths.virtual_key_path("other")).close()
    bad = paths.virtual_key_path("bad")
    VirtualKey.create(bad).close()
    bad.chmod(0)
    keys = paths.keys_dir()
    keys.chmod(0o777)
    proc = hwtoken("emulate", "list", "--json", unprivileged=True)
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["k"]["serial"] and rows["other"]["serial"]
    assert "cannot read virtual key state file" in rows["bad"]["error"]
    fails(hwtoken("emulate", "show", "bad", unprivileged=True), needle="cannot read")
    fails(hwtoken("fido2", "-d", "emu:bad", "info", unprivileged=True), needle="cannot read")
    fails(hwtoken("yubikey", "info", "-d", "emu:bad", unprivileged=True), needle="cannot read")


def test_read_only_directories(readonly_dir, tmp_path):
    fails(hwtoken("otp", "new", "--qr", str(readonly_dir / "x.png"), unprivileged=True),
          needle="Permission denied")
    fails(hwtoken("emulate", "--state-dir", str(readonly_dir), "create", "k",
                  unprivileged=True), needle="cannot create a virtual key")
    code = hwtoken("otp", "code", "-", "--at", "1000", input=SECRET).stdout.decode().strip()
    fails(hwtoken("otp", "verify", "-", code, "--at", "1000", "--state",
                  str(readonly_dir / "s.json"), input=SECRET, unprivileged=True),
          needle="cannot update replay state file")


def test_output_paths_never_create_directories(tmp_path):
    target = tmp_path / "typo" / "deeper" / "x.png"
    fails(hwtoken("otp", "new", "--qr", str(target)), needle="does not exist")
    fails(hwtoken("fob", "simulate", "--secret", "-", "--png", str(target), input=SECRET),
          needle="does not exist")
    fails(hwtoken("fido2", "-d", "emu:none", "register", "--rp", "x.org", "--user", "u",
                  "--out", str(target)), needle="no virtual key")
    fails(hwtoken("--state-dir", str(target), "emulate", "list"), needle="parent directory")
    assert not (tmp_path / "typo").exists()


# -- usage errors and JSON ----------------------------------------------------------------
def test_click_usage_errors_are_one_line_with_a_hint():
    msg = fails(hwtoken("otp", "code", "--bogus", "x"))
    assert msg == "No such option '--bogus' (see 'hwtoken otp code --help')"
    msg = fails(hwtoken("yubikey", "nosuch"))
    assert msg.startswith("No such command 'nosuch'") and "'hwtoken yubikey --help'" in msg
    fails(hwtoken("otp", "code"), needle="Missing argument")
    proc = hwtoken("yubikey")  # no command: the help, then one error line
    assert fails(proc) == "give a command (see 'hwtoken yubikey --help')"
    assert b"Commands:" in proc.stderr
    fails(hwtoken("otp", "code", "--json"), needle="Missing argument", as_json=True)


def test_json_errors_are_one_object_on_stdout(key):
    fails(hwtoken("emulate", "show", "nope", "--json"), needle="no virtual key", as_json=True)
    fails(hwtoken("yubikey", "chalresp", "calc", "1", "zz", "-d", key, "--json"),
          needle="hex", as_json=True)
    proc = hwtoken("otp", "verify", "-", "000000", "--at", "1", "--window", "0", "--json",
                   input="GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ")
    fails(proc, 1, needle="not valid", as_json=True)
    assert json.loads(proc.stdout)["valid"] is False  # the result, and the error


def test_every_check_failure_prints_its_error_line(tmp_path):
    proc = hwtoken("udev", "check", "--root", str(tmp_path))
    assert proc.returncode == 1 and proc.stderr.decode().startswith("error: ")
    assert b"not installed" in proc.stderr


# -- otpauth:// URIs ---------------------------------------------------------------------------
@pytest.mark.parametrize("uri, needle", [
    (f"otpauth://totp/A:b?secret={SECRET}&secret={SECRET}", "more than once"),
    (f"otpauth://totp/A:b?secret={SECRET}&issuer=B", "issuer parameter says 'B'"),
    (f"otpauth://totp/A%ZZ?secret={SECRET}", "malformed %-escape"),
    (f"otpauth://totp/A%ff?secret={SECRET}", "not valid UTF-8"),
    (f"otpauth://totp/A%0Ab?secret={SECRET}", "control character"),
    (f"otpauth://hotp/A?secret={SECRET}&counter=18446744073709551616", "counter must be"),
    (f"otpauth://totp/:?secret={SECRET}", "issuer (before ':') is empty"),
    (f"otpauth://totp/A:?secret={SECRET}", "account name is empty"),
    (f"otpauth://totp/?secret={SECRET}", "account name is empty"),
    (f"otpauth://totp/a?secret={SECRET}&issuer=", "issuer parameter is empty"),
    (f"otpauth://totp/a?secret={SECRET}&digits=%D9%A6", "whole number"),
    (f"otpauth://totp/a?secret={SECRET}&period=1_0", "whole number"),
    (f"otpauth://totp/A:b:c?secret={SECRET}", "contains ':'"),
    ("otpauth://totp/a?secret=AAAA", "only 16 bits"),
])
def test_strict_uris(uri, needle):
    fails(hwtoken("otp", "uri", "-", input=uri), needle=needle)


def test_uris_hwtoken_writes_read_back():
    proc = hwtoken("otp", "new", "--issuer", "ACME Corp", "--account", "alice@example.com",
                   "--json")
    uri = json.loads(proc.stdout)["uri"]
    doc = json.loads(hwtoken("otp", "uri", "-", "--json", input=uri).stdout)
    assert (doc["issuer"], doc["account"]) == ("ACME Corp", "alice@example.com")
    fails(hwtoken("otp", "new", "--issuer", "A:B"), needle="contains ':'")
    fails(hwtoken("otp", "new", "--account", ""), needle="account name is empty")


# -- weak secrets and empty challenges -----------------------------------------------------------
@pytest.mark.parametrize("args, stdin", [
    (["otp", "code", "-"], "AAAA"),
    (["otp", "verify", "-", "501315", "--at", "1700000000"], "AAAA"),  # (oathtool's code)
    (["yubikey", "hotp", "program", "1", "--secret", "-", "-d", "emu:k"], "AAAA"),
    (["yubikey", "chalresp", "program", "1", "--secret", "-", "-d", "emu:k"], "00"),
    (["yubikey", "oath", "add", "x", "--secret", "-", "-d", "emu:k"], "AA"),
    (["yubikey", "oath", "add", "x", "--uri", "-", "-d", "emu:k"],
     "otpauth://totp/x?secret=AAAA"),
    (["fob", "add", "x", "--secret", "-", "--port", "socket://127.0.0.1:9"], "AAAA"),
])
def test_weak_secrets_are_refused_unless_allowed(key, args, stdin):
    fails(hwtoken(*args, input=stdin), needle="--allow-weak")
    if args[0] == "fob":
        return  # no fob here: that the flag gets past the check is enough below
    proc = hwtoken(*args, "--allow-weak", input=stdin)
    assert (proc.returncode, proc.stderr) == (0, b""), proc.stderr


def test_fob_allow_weak_passes_the_check():
    proc = hwtoken("fob", "add", "x", "--secret", "-", "--allow-weak", "--port",
                   "socket://127.0.0.1:9", input="AAAA")
    fails(proc, needle="cannot open socket://127.0.0.1:9")


def test_empty_challenge_is_bad_input(key):
    assert hwtoken("yubikey", "chalresp", "program", "1", "--secret", "-", "-d", key,
                   input="11" * 20).returncode == 0
    fails(hwtoken("yubikey", "chalresp", "calc", "1", "", "-d", key), needle="empty")


# -- secrets on the command line -------------------------------------------------------------------
def test_a_secret_in_argv_works_with_a_warning_and_stdin_has_none():
    proc = hwtoken("otp", "code", SECRET, "--at", "59")
    assert proc.returncode == 0
    assert proc.stderr.decode().startswith("warning: a secret on the command line can be read")
    proc = hwtoken("otp", "code", "-", "--at", "59", input=SECRET)
    assert proc.returncode == 0 and proc.stderr == b""
    # from the environment it is not in argv either
    proc = hwtoken("yubikey", "delete", "1", "-d", "emu:none",
                   env={"HWTOKEN_ACCESS_CODE": "010203040506"})
    assert b"warning" not in proc.stderr


# -- virtual key names ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["my key", "k\u00e9y", "-dash", ".hidden", "a" * 65, "a/b",
                                  "emu:x"])
def test_virtual_key_names_are_what_the_message_says(name):
    fails(hwtoken("emulate", "create", "--", name), needle="letters, digits, - and _")


def test_a_library_log_record_is_one_warning_line():
    """logger.exception() deep in the emulator must not put a traceback (or a second
    error line) under a CLI command. (A process of its own: pytest configures logging.)"""
    script = """
import logging, click
from hwtoken.cli.common import HwtokenGroup

@click.group(cls=HwtokenGroup)
def grp():
    pass

@grp.command()
def boom():
    try:
        raise ValueError("inner detail")
    except ValueError:
        logging.getLogger("hwtoken.emulator.iso7816").exception("card: applet failed")
    raise click.UsageError("outer failure")

grp.main(["boom"], prog_name="grp")
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "warning: card: applet failed (ValueError: inner detail)",
        "error: outer failure (see 'grp boom --help')"]
