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
    (f"otpauth://totp/A:b?secret={SECRET}&issuer=B", "differs from the issuer parameter"),
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


# -- batch provisioning: the options of issue 27 ------------------------------------------------
PROVISION_ENV = {"HWTOKEN_INVENTORY_PASSPHRASE": "correct horse battery staple"}


@pytest.fixture
def inventory(tmp_path) -> str:
    """An inventory with one done chalresp record and one pending HOTP record."""
    path = str(tmp_path / "inv.db")
    made = hwtoken("provision", "run", "-i", path, "-m", "chalresp", "--virtual", "1",
                   env=PROVISION_ENV)
    assert made.returncode == 0, made.stderr
    return path


@pytest.mark.parametrize(("args", "stdin", "needle"), [
    (["--access-code", "nothex123456"], b"", "--access-code must be 12 hex digits"),
    (["--access-code", "00" * 400], b"", "--access-code must be 12 hex digits"),
    (["--access-code", b"\xff\xfe"], b"", "not valid UTF-8"),
    (["--access-code", "-"], b"\xff\xfe\n", "not valid UTF-8"),
    (["--new-access-code", b"caf\xe9"], b"", "not valid UTF-8"),
    (["--new-access-code", "nan"], b"", "--new-access-code must be 12 hex digits"),
    (["-m", b"hotp:\xff"], b"", "not valid UTF-8"),
    (["-m", "hotp:99999999999999999999"], b"", "an OTP slot is 1 or 2"),
    (["--public-id", "cccccc"], b"", "'--public-id'"),
])
@pytest.mark.parametrize("as_json", [False, True])
def test_provision_run_refuses_bad_codes_and_modes(tmp_path, args, stdin, needle, as_json):
    inv = tmp_path / "new.db"
    argv = ["provision", "run", "-i", str(inv), "-m", "chalresp", "--virtual", "1", *args]
    fails(hwtoken(*argv, *(["--json"] if as_json else []), input=stdin, env=PROVISION_ENV),
          needle=needle, as_json=as_json)
    assert not inv.exists()


@pytest.mark.parametrize(("args", "needle"), [
    (["resume", "--code", "99999999999999999999999=123456"], "--code"),
    (["resume", "--code", b"1=\xff"], "not valid UTF-8"),
    (["resume", "--code", "1=12345\u0660"], "a typed code is digits"),
    (["resume", "--access-code", "12"], "--access-code must be 12 hex digits"),
    (["forget", "1" + "0" * 40, "-f"], "'SERIAL'"),
    (["forget", "nan", "-f"], "'SERIAL'"),
    (["forget", "-1", "-f"], "No such option '-1'"),
    (["forget", "1", "--app", b"otp:\xff", "-f"], "not valid UTF-8"),
    (["forget", "1", "--app", "u2f", "-f"], "--app 'u2f'"),
    (["list", "--state", "exported"], "'--state'"),
    (["export", "--format", "access-codes", "--for", "privacyidea", "-o", "x"],
     "access codes are for the admin"),
])
def test_provision_management_refuses_bad_input(inventory, tmp_path, args, needle):
    fails(hwtoken("provision", *args, "-i", inventory, env=PROVISION_ENV), needle=needle)
    fails(hwtoken("provision", *args, "-i", inventory, "--json", env=PROVISION_ENV),
          needle=needle, as_json=True)


def test_provision_paths_that_cannot_be(inventory, tmp_path, readonly_dir):
    fails(hwtoken("provision", "list", "-i", str(tmp_path / "nodir" / "x.db")),
          needle="no inventory at")
    fails(hwtoken("provision", "run", "-i", str(readonly_dir / "x.db"), "-m", "hotp",
                  "--virtual", "1", env=PROVISION_ENV, unprivileged=True),
          needle="cannot create the inventory")
    fails(hwtoken("provision", "export", "-i", inventory, "--format", "access-codes",
                  "-o", str(tmp_path / "nodir" / "codes.csv"), env=PROVISION_ENV),
          code=1, needle="no record in the inventory left an access code")
    fails(hwtoken("provision", "forget", "1", "-i", inventory, env=PROVISION_ENV),
          needle="the inventory has no record of key 1")


# -- emulate serve: who it answers, how long it keeps a session ------------------------------
@pytest.mark.parametrize(("args", "needle"), [
    (["--allow-user", "no-such-user-here"], "no such user"),
    (["--allow-user", "99999999999"], "a uid is below 4294967295"),
    (["--allow-user", b"\xff"], "not valid UTF-8"),
    (["--idle-timeout", "nan"], "'--idle-timeout'"),
    (["--idle-timeout", "-1"], "'--idle-timeout'"),
    (["--idle-timeout", "1e9"], "'--idle-timeout'"),
])
def test_serve_refuses_bad_access_options(key, args, needle):
    fails(hwtoken("emulate", "serve", key[len("emu:"):], "--usbip", "0", *args), needle=needle)
    fails(hwtoken("emulate", "serve", key[len("emu:"):], "--usbip", "0", *args, "--json"),
          needle=needle, as_json=True)


# -- emulate create --pin/--aaguid, show --attestation-root ---------------------------------
@pytest.mark.parametrize(("args", "stdin", "needle"), [
    (("--aaguid", "nan"), b"", "'nan' is not an AAGUID"),
    (("--aaguid", "1" * 200), b"", "is not an AAGUID"),
    (("--aaguid", b"\xff\xfe"), b"", "not valid UTF-8"),
    (("--pin", "-"), b"", "the new PIN is too short: the key needs at least 4 characters"),
    (("--pin", "-"), b"123\n", "the new PIN is too short"),
    (("--pin", "-"), b"1" * 64 + b"\n", "the new PIN is too long: at most 63 bytes"),
    (("--pin", "-"), b"\xff\xfe\xfd\xfc\n", "not valid UTF-8"),
    (("--pin", "-", "--profile", "u2f-only"), b"123456\n", "speaks only U2F"),
])
def test_emulate_create_refuses_bad_pins_and_aaguids(args, stdin, needle):
    fails(hwtoken("emulate", "create", "k2", *args, input=stdin), needle=needle)
    assert not paths.virtual_key_path("k2").exists()  # nothing half made
    assert not paths.virtual_key_path("k2").with_name("k2.key.lock").exists()


def test_emulate_create_with_a_pin_and_an_aaguid(tmp_path):
    proc = hwtoken("emulate", "create", "k2", "--pin", "-", "--aaguid",
                   "{00112233-4455-6677-8899-AABBCCDDEEFF}", "--json", input=b"246810\n")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["aaguid"] == "00112233-4455-6677-8899-aabbccddeeff" and doc["pin_set"] is True
    retries = hwtoken("fido2", "-d", "emu:k2", "pin", "verify", "--json",
                      env={"HWTOKEN_PIN": "246810"})
    assert retries.returncode == 0 and json.loads(retries.stdout)["retries"] == 8
    wrong = hwtoken("fido2", "-d", "emu:k2", "pin", "verify", env={"HWTOKEN_PIN": "000000"})
    fails(wrong, 1, needle="7 tries left")


def test_emulate_show_attestation_root_errors(key):
    fails(hwtoken("emulate", "show", "nope", "--attestation-root"), needle="no virtual key")
    fails(hwtoken("emulate", "show", "k", "--attestation-root", "--piv-attestation-root"),
          needle="choose one of --attestation-root, --piv-attestation-root, "
                 "--openpgp-attestation-root and --scp-ca")
    proc = hwtoken("emulate", "show", "k", "--attestation-root", "--json")
    assert json.loads(proc.stdout)["attestation_root"].startswith("-----BEGIN CERTIFICATE-----")


# -- PIV and FIDO2 provisioning: the options of issue 28 ------------------------------------
@pytest.fixture
def ca_files(tmp_path) -> tuple[str, str]:
    from hwtoken.provision.ca import rehearsal_ca

    cert, key = rehearsal_ca(tmp_path)
    (tmp_path / "notpem.txt").write_text("hello\n")
    return str(cert), str(key)


@pytest.mark.parametrize(("args", "needle"), [
    (["-m", "piv"], "-m piv needs the CA that signs each slot's certificate"),
    (["-m", "piv", "--ca-cert", "{cert}"], "--ca-cert and --ca-key go together"),
    (["-m", "piv", "--ca-cert", "{cert}", "--ca-key", "{cert}"], "cannot read the CA key"),
    (["-m", "piv", "--ca-cert", "{key}", "--ca-key", "{key}"], "holds no PEM certificate"),
    (["-m", "piv", "--ca-cert", "{dir}/none.pem", "--ca-key", "{key}"], "does not exist"),
    (["-m", "piv", "--ca-cert", "{cert}", "--ca-key", "{key}", "--ca-command", "x"],
     "give --ca-command, or --ca-cert with --ca-key: not both"),
    (["-m", "piv", "--ca-command", ""], "--ca-command is empty"),
    (["-m", "piv", "--ca-command", "no-such-signer --in -"],
     "--ca-command: no program 'no-such-signer'"),
    (["-m", "piv", "--ca-command", "'unbalanced"], "--ca-command cannot be split"),
    (["-m", "piv", "--ca-command", "true", "--ca-passphrase", "-"],
     "--ca-passphrase is the passphrase of --ca-key"),
    (["-m", "piv", "--ca-command", "true", "--subject", "CN={user}"],
     "--subject: unknown field {user}"),
    (["-m", "piv", "--ca-command", "true", "--subject", "not a name"],
     "is not an RFC 4514 name"),
    (["-m", "piv", "--ca-command", "true", "--subject", "CN={serial"], "is not a template"),
    (["-m", "piv", "--ca-command", "true", "--subject", b"CN=\xff"], "not valid UTF-8"),
    (["-m", "piv", "--ca-command", "true", "--pin-length", "5"],
     "--pin-length: a PIV PIN has 6 to 8 digits"),
    (["-m", "piv", "--ca-command", "true", "--pin-length", "1e99"], "'--pin-length'"),
    (["-m", "piv", "--ca-command", "true", "--algorithm", "RSA1024"], "'--algorithm'"),
    (["-m", "piv", "--ca-command", "true", "--slot", "9z"],
     "--slot 9z: a PIV slot is 9a, 9c, 9d, 9e or 82..95"),
    (["-m", "piv:9b", "--ca-command", "true"], "a PIV slot is 9a, 9c, 9d, 9e or 82..95"),
    (["-m", "piv", "--ca-command", "true", "--attestation-roots", "{dir}/notpem.txt"],
     "holds no PEM certificate"),
    (["-m", "piv", "--ca-command", "true", "--days", "nan"], "'--days'"),
    (["-m", "chalresp", "--slot", "3"], "--slot 3: an OTP slot is 1 or 2"),
    (["-m", "chalresp", "--protect"], "--protect is for -m piv"),
    (["-m", "chalresp", "--ca-command", "true"], "--ca-command is for -m piv"),
    (["-m", "fido", "--always-uv", "--min-pin-length", "3"], "'--min-pin-length'"),
    (["-m", "fido", "--pin-length", "64"], "'--pin-length'"),
    (["-m", "fido:other"], "the fido mode has one place, its PIN"),
    (["-m", "piv", "--ca-command", "true", "--min-pin-length", "6"],
     "--min-pin-length is for -m fido"),
])
@pytest.mark.parametrize("as_json", [False, True])
def test_provision_piv_and_fido_options_refused_before_any_key(tmp_path, ca_files, args,
                                                               needle, as_json):
    cert, key = ca_files
    fill = {"{cert}": cert, "{key}": key, "{dir}": str(tmp_path)}
    for pattern, value in fill.items():
        needle = needle.replace(pattern, value)
    argv = [a if isinstance(a, bytes) else fill.get(a, a).replace("{dir}", str(tmp_path))
            for a in args]
    inv = tmp_path / "new.db"
    fails(hwtoken("provision", "run", "-i", str(inv), "--virtual", "1", *argv,
                  *(["--json"] if as_json else []), env=PROVISION_ENV),
          needle=needle, as_json=as_json)
    assert not inv.exists()


@pytest.mark.parametrize(("args", "needle"), [
    (["export", "--format", "pin-mailer", "--for", "linotp", "-o", "x"],
     "--format pin-mailer is for the admin"),
    (["export", "--format", "certificates", "-o", "{dir}/c.csv"],
     "--out names the PEM bundle of --format certificates"),
    (["resume", "--ca-command", "true", "--ca-key", "{dir}/none"], "does not exist"),
    (["resume", "--ca-passphrase", "-", "--access-code", "-"],
     "only one secret can come from stdin"),
])
def test_provision_piv_management_refuses_bad_input(inventory, tmp_path, args, needle):
    argv = [a.replace("{dir}", str(tmp_path)) for a in args]
    fails(hwtoken("provision", *argv, "-i", inventory, env=PROVISION_ENV), needle=needle)
    fails(hwtoken("provision", *argv, "-i", inventory, "--json", env=PROVISION_ENV),
          needle=needle, as_json=True)
