"""`hwtoken yubikey ...` on virtual keys: CliRunner and the installed console script."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from hwtoken import paths
from hwtoken.cli import cli
from hwtoken.emulator import VirtualKey


@pytest.fixture
def emu():
    VirtualKey.create(paths.virtual_key_path("cli"), serial=5550001).close()
    return "emu:cli"


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, ["yubikey", *args], input=input)


def _oathtool(secret: bytes, counter: int, digits: int = 6) -> str:
    return subprocess.run(["oathtool", "--hotp", f"--digits={digits}", f"--counter={counter}",
                           secret.hex()], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_info_json(emu):
    r = run("info", "--json", "-d", emu)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["serial"] == 5550001 and doc["virtual"] is True
    assert doc["slots"]["1"]["programmed"] is False


def test_hotp_program_and_touch(emu):
    secret = os.urandom(20)
    b32 = base64.b32encode(secret).decode().rstrip("=")
    r = run("hotp", "program", "1", "--secret", "-", "--digits", "8", "-d", emu,
            input=b32 + "\n")
    assert r.exit_code == 0, r.output
    assert b32 not in r.output
    for counter in range(3):
        r = run("hotp", "touch", "1", "-d", emu)
        assert r.exit_code == 0, r.output
        assert r.output.strip() == _oathtool(secret, counter, 8)
    r = run("hotp", "touch", "1", "--json", "-d", emu)
    assert json.loads(r.stdout)["typed"] == _oathtool(secret, 3, 8) + "\n"


def test_overwrite_needs_force(emu):
    assert run("chalresp", "program", "2", "--secret", "00" * 20, "-d", emu).exit_code == 0
    r = run("chalresp", "program", "2", "--secret", "11" * 20, "-d", emu)
    assert r.exit_code == 2 and "--force" in r.output
    r = run("chalresp", "calc", "2", "6869", "-d", emu)
    assert r.output.strip() == hmac.new(b"\0" * 20, b"hi", hashlib.sha1).hexdigest()
    assert run("chalresp", "program", "2", "--secret", "11" * 20, "--force",
               "-d", emu).exit_code == 0
    r = run("chalresp", "calc", "2", "6869", "-d", emu)
    assert r.output.strip() == hmac.new(b"\x11" * 20, b"hi", hashlib.sha1).hexdigest()


def test_generate_secret_file(emu, tmp_path):
    f = tmp_path / "slot1.hex"
    r = run("chalresp", "program", "1", "--generate", "--secret-file", str(f), "--json",
            "-d", emu)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert "secret" not in doc
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    key = bytes.fromhex(f.read_text().strip())
    assert key.hex() not in r.output
    r = run("chalresp", "calc", "1", "00ff10", "--json", "-d", emu)
    expect = hmac.new(key, bytes.fromhex("00ff10"), hashlib.sha1).hexdigest()
    assert json.loads(r.stdout)["response"] == expect


def test_secret_file_never_overwritten_and_unwritable_is_clean(emu, tmp_path):
    """An existing --secret-file may be another slot's only copy of its secret: refused
    before the slot is touched. An unwritable one is a one-line error, slot unchanged."""
    f = tmp_path / "slot2.hex"
    assert run("chalresp", "program", "2", "--generate", "--secret-file", str(f),
               "-d", emu).exit_code == 0
    first = f.read_text()
    r = run("chalresp", "program", "1", "--generate", "--secret-file", str(f), "-d", emu)
    assert r.exit_code == 2 and "already exists" in r.output
    assert f.read_text() == first
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    r = run("chalresp", "program", "1", "--generate", "--secret-file",
            str(blocker / "k.hex"), "-d", emu)
    assert r.exit_code == 2 and r.output.startswith("error: cannot write")
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    info = json.loads(run("info", "--json", "-d", emu).stdout)
    assert info["slots"]["1"]["programmed"] is False  # nothing was programmed
    key = bytes.fromhex(first.strip())  # and slot 2 still answers with the file's key
    r = run("chalresp", "calc", "2", "01", "-d", emu)
    assert r.output.strip() == hmac.new(key, b"\x01", hashlib.sha1).hexdigest()


def test_generate_prints_once(emu):
    r = run("chalresp", "program", "1", "--generate", "--touch", "-d", emu)
    assert r.exit_code == 0
    secret = r.output.split("store it safely): ")[1].strip()
    r = run("chalresp", "calc", "1", "abcd", "-d", emu)
    assert r.output.strip() == hmac.new(bytes.fromhex(secret), b"\xab\xcd",
                                        hashlib.sha1).hexdigest()
    assert secret not in run("info", "-d", emu).output


def test_access_codes_from_the_environment(emu):
    """Access codes can stay out of argv: $HWTOKEN_ACCESS_CODE / $HWTOKEN_NEW_ACCESS_CODE."""
    acc, other = "0a0b0c0d0e0f", "a1a2a3a4a5a6"
    r = CliRunner().invoke(cli, ["yubikey", "chalresp", "program", "2", "--secret", "44" * 20,
                                 "-d", emu], env={"HWTOKEN_ACCESS_CODE": acc})
    assert r.exit_code == 0 and "protected by an access code" in r.output
    assert run("delete", "2", "--force", "-d", emu).exit_code == 1  # protected
    r = CliRunner().invoke(cli, ["yubikey", "delete", "2", "--force", "-d", emu],
                           env={"HWTOKEN_ACCESS_CODE": other})
    assert r.exit_code == 1  # wrong code from the environment: refused
    r = CliRunner().invoke(cli, ["yubikey", "chalresp", "program", "2", "--secret",
                                 "55" * 20, "--force", "-d", emu],
                           env={"HWTOKEN_ACCESS_CODE": acc, "HWTOKEN_NEW_ACCESS_CODE": other})
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["yubikey", "delete", "2", "--force", "-d", emu],
                           env={"HWTOKEN_ACCESS_CODE": other})
    assert r.exit_code == 0, r.output
    assert acc not in r.output and other not in r.output


def test_access_code_delete_swap(emu):
    acc = "0a0b0c0d0e0f"
    assert run("chalresp", "program", "1", "--secret", "22" * 20, "--access-code", acc,
               "-d", emu).exit_code == 0
    r = run("delete", "1", "--force", "-d", emu)
    assert r.exit_code == 1 and "access code" in r.output
    r = run("chalresp", "program", "1", "--secret", "33" * 20, "--force", "-d", emu)
    assert r.exit_code == 1
    r = run("swap", "-d", emu)
    assert r.exit_code == 2 and "pass --force" in r.output  # no terminal to confirm on
    r = run("swap", "--force", "-d", emu)
    assert r.exit_code == 1  # the access code protects slot 1
    r = run("chalresp", "calc", "1", "01", "-d", emu)
    assert r.output.strip() == hmac.new(b"\x22" * 20, b"\x01", hashlib.sha1).hexdigest()
    r = run("swap", "--force", "--access-code", acc, "-d", emu)
    assert r.exit_code == 0, r.output
    assert "slot 2: challenge-response" in r.output
    r = run("delete", "2", "--force", "--access-code", acc, "--json", "-d", emu)
    assert r.exit_code == 0 and json.loads(r.stdout)["deleted"] is True


def test_bad_input(emu):
    assert run("hotp", "program", "1", "--secret", "not base32!", "-d", emu).exit_code == 2
    r = run("chalresp", "program", "1", "--secret", "zz", "-d", emu)
    assert r.exit_code == 2 and "hex" in r.output
    r = run("chalresp", "program", "1", "--secret", "00" * 10, "--access-code", "12",
            "-d", emu)
    assert r.exit_code == 2 and "12 hex digits" in r.output
    assert run("chalresp", "calc", "1", "00", "-d", emu).exit_code == 2  # empty slot
    assert run("chalresp", "calc", "3", "00", "-d", emu).exit_code == 2
    r = run("info", "-d", "emu:nosuchkey")
    assert r.exit_code == 2 and r.output.startswith("error:") and "Traceback" not in r.output
    r = run("hotp", "touch", "1", "-d", "12345678")
    assert r.exit_code == 2 and r.output.startswith("error:")


def test_console_script(emu):
    exe = Path(sys.executable).with_name("hwtoken")
    env = {**os.environ, "HWTOKEN_STATE_DIR": str(paths.state_dir())}
    p = subprocess.run([str(exe), "yubikey", "chalresp", "program", "2", "--secret",
                        "44" * 20, "-d", emu], capture_output=True, text=True, env=env,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([str(exe), "yubikey", "chalresp", "calc", "2", "ff", "--device", emu],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.stdout.strip() == hmac.new(b"\x44" * 20, b"\xff", hashlib.sha1).hexdigest()
    p = subprocess.run([str(exe), "yubikey", "delete", "1", "-d", emu], capture_output=True,
                       text=True, env=env, timeout=60)
    assert p.returncode == 2 and p.stderr.startswith("error:")


def test_list_shows_virtual(emu):
    r = run("list", "--json")
    assert r.exit_code == 0, r.output
    assert any(k["device"] == emu and k["serial"] == 5550001 for k in json.loads(r.stdout))


def test_running_serve_is_used(emu):
    """With `hwtoken emulate serve` running, commands reach the key through its USB/IP."""
    import time

    from hwtoken.devices import running_serve

    exe = Path(sys.executable).with_name("hwtoken")
    env = {**os.environ, "HWTOKEN_STATE_DIR": str(paths.state_dir())}
    proc = subprocess.Popen([str(exe), "emulate", "serve", "cli", "--usbip", "127.0.0.1:0"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while running_serve("cli") is None:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.1)
        # a served virtual key counts as the one key present: no --device needed
        r = run("info", "--json")
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["device"] == emu
        assert run("chalresp", "program", "1", "--secret", "55" * 20, "-d", emu).exit_code == 0
        r = run("chalresp", "calc", "1", "0102", "-d", emu)
        assert r.output.strip() == hmac.new(b"\x55" * 20, b"\1\2", hashlib.sha1).hexdigest()
        r = run("hotp", "touch", "1", "-d", emu)
        assert r.exit_code == 2 and "cannot simulate a touch" in r.output
        assert "stop that serve and run this again" in r.output  # no way to do it there
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_change_and_remove_access_code(emu):
    a, b = "111111111111", "222222222222"
    assert run("chalresp", "program", "1", "--secret", "01" * 20, "--access-code", a,
               "-d", emu).exit_code == 0
    r = run("chalresp", "program", "1", "--secret", "02" * 20, "--force", "--access-code", a,
            "--new-access-code", b, "--json", "-d", emu)
    assert r.exit_code == 0 and json.loads(r.stdout)["access_code"] is True
    assert run("delete", "1", "--force", "--access-code", a, "-d", emu).exit_code == 1
    r = run("hotp", "program", "1", "--secret", "JBSWY3DPEHPK3PXP", "--force",
            "--access-code", b, "--new-access-code", "000000000000", "-d", emu)
    assert r.exit_code == 0 and "protected" not in r.output
    assert run("delete", "1", "--force", "-d", emu).exit_code == 0
