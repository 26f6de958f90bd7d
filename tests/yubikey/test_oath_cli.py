"""`hwtoken yubikey oath` on a virtual key: through pcscd (vpcd) and in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyotp
import pytest
from click.testing import CliRunner

from hwtoken.cli import cli
from hwtoken.emulator.key import VirtualKey
from hwtoken.emulator.pcscd import shared_pcscd
from hwtoken.yubikey.oath import read_uri_file

HWTOKEN = str(Path(sys.executable).with_name("hwtoken"))
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


@pytest.fixture(scope="module")
def pcscd():
    return shared_pcscd()


@pytest.fixture
def emu(_isolated_state_dir):
    from hwtoken import paths

    key = VirtualKey.create(paths.virtual_key_path("ok"), serial=4242)
    key.close()
    return "emu:ok"


def run(*args, env=None, input=None):
    """The real console script, as a user runs it."""
    full = dict(os.environ)
    full.pop("HWTOKEN_OATH_PASSWORD", None)
    full.update(env or {})
    return subprocess.run([HWTOKEN, "yubikey", "oath", *args], env=full, input=input,
                          capture_output=True, text=True, timeout=60)


def vpcd_env(pcscd, **extra):
    return {**pcscd.env, "HWTOKEN_VPCD": f"127.0.0.1:{pcscd.port}", **extra}


@pytest.mark.system
def test_through_pcscd_codes_equal_pyotp(pcscd, emu):
    env = vpcd_env(pcscd)
    r = run("add", "Acme:alice", "--secret", "-", "--device", emu, env=env, input=SECRET)
    assert r.returncode == 0, r.stderr
    assert run("add", "ctr", "--hotp", "--secret", SECRET, "-d", emu, env=env).returncode == 0
    listed = json.loads(run("list", "--json", "-d", emu, env=env).stdout)
    assert [a["display"] for a in listed["accounts"]] == ["Acme:alice", "ctr"]
    for _ in range(3):
        before = pyotp.TOTP(SECRET).now()
        out = run("code", "Acme:alice", "-d", emu, env=env).stdout.strip()
        if before == pyotp.TOTP(SECRET).now():
            break
    assert out == before
    hotp = [run("code", "ctr", "-d", emu, env=env).stdout.strip() for _ in range(2)]
    assert hotp == [pyotp.HOTP(SECRET).at(0), pyotp.HOTP(SECRET).at(1)]


@pytest.mark.system
def test_through_pcscd_password_flow(pcscd, emu):
    env = vpcd_env(pcscd)
    assert run("add", "bob", "--secret", SECRET, "-d", emu, env=env).returncode == 0
    r = run("password", "set", "-d", emu, env={**env, "HWTOKEN_OATH_NEW_PASSWORD": "pw-1"})
    assert r.returncode == 0, r.stderr
    locked = run("list", "-d", emu, env=env)
    assert locked.returncode == 2 and "HWTOKEN_OATH_PASSWORD" in locked.stderr
    assert locked.stderr.startswith("error: ") and "Traceback" not in locked.stderr
    wrong = run("list", "-d", emu, env={**env, "HWTOKEN_OATH_PASSWORD": "nope"})
    assert wrong.returncode == 1 and "wrong OATH password" in wrong.stderr
    ok = run("list", "-d", emu, env={**env, "HWTOKEN_OATH_PASSWORD": "pw-1"})
    assert ok.returncode == 0 and ok.stdout.split() == ["bob"]
    assert "pw-1" not in ok.stdout + ok.stderr
    r = run("password", "clear", "-d", emu, env={**env, "HWTOKEN_OATH_PASSWORD": "pw-1"})
    assert r.returncode == 0, r.stderr
    assert run("list", "-d", emu, env=env).returncode == 0


def test_in_process_crud_and_json(emu):
    runner = CliRunner()

    def invoke(*args, **kw):
        return runner.invoke(cli, ["yubikey", "oath", *args, "--device", emu], **kw)

    r = invoke("add", "one", "--secret", SECRET, "--digits", "8", "--algorithm", "sha256")
    assert r.exit_code == 0, r.output
    assert invoke("add", "one", "--secret", SECRET).exit_code == 2  # exists, no --force
    r = invoke("code", "one", "--json")
    doc = json.loads(r.stdout)
    assert doc["codes"][0]["code"] == pyotp.TOTP(SECRET, digits=8, digest="sha256").at(
        doc["codes"][0]["valid_from"])
    r = invoke("rename", "one", "Corp:" + "t" * 60)  # the id would pass 64 bytes
    assert r.exit_code == 2 and "too long" in r.output
    assert invoke("rename", "one", "Corp:two").exit_code == 0
    names = [a["display"] for a in json.loads(invoke("list", "--json").stdout)["accounts"]]
    assert names == ["Corp:two"]
    r = invoke("delete", "Corp:two")  # no terminal to confirm on
    assert r.exit_code == 2 and "pass --force" in r.stderr
    assert invoke("delete", "Corp:two", "--force").exit_code == 0
    assert json.loads(invoke("list", "--json").stdout) == {"accounts": []}
    assert invoke("delete", "Corp:two", "--force").exit_code == 2


def test_import_checks_every_line_first(emu, tmp_path):
    good = f"otpauth://totp/Site:me?secret={SECRET}&issuer=Site\n"
    bad = tmp_path / "bad.txt"
    bad.write_text(good + "# comment\n\notpauth://totp/x?secret=!!!\n")
    runner = CliRunner()
    r = runner.invoke(cli, ["yubikey", "oath", "import", str(bad), "--device", emu])
    assert r.exit_code == 2 and "line 4" in r.output
    r = runner.invoke(cli, ["yubikey", "oath", "list", "--device", emu])
    assert r.output.strip() == ""
    ok = tmp_path / "ok.txt"
    ok.write_text(good + f"otpauth://hotp/h?secret={SECRET}&counter=5\n")
    r = runner.invoke(cli, ["yubikey", "oath", "import", str(ok), "--device", emu, "--json"])
    assert r.exit_code == 0, r.output
    assert [a["display"] for a in json.loads(r.stdout)["imported"]] == ["Site:me", "h"]
    r = runner.invoke(cli, ["yubikey", "oath", "code", "h", "--device", emu])
    assert r.output.strip() == pyotp.HOTP(SECRET).at(5)


def test_reset_needs_force_or_confirmation(emu):
    runner = CliRunner()
    runner.invoke(cli, ["yubikey", "oath", "add", "x", "--secret", SECRET, "-d", emu])
    r = runner.invoke(cli, ["yubikey", "oath", "reset", "-d", emu], input="n\n")
    assert r.exit_code != 0
    assert "x" in runner.invoke(cli, ["yubikey", "oath", "list", "-d", emu]).output
    r = runner.invoke(cli, ["yubikey", "oath", "reset", "--force", "-d", emu],
                      env={"HWTOKEN_OATH_PASSWORD": None})
    assert r.exit_code == 0
    assert runner.invoke(cli, ["yubikey", "oath", "list", "-d", emu]).output.strip() == ""


def test_bad_input_is_a_one_line_error(emu):
    runner = CliRunner()
    r = runner.invoke(cli, ["yubikey", "oath", "add", "x", "--secret", "-", "-d", emu],
                      input="not base32!\n")
    assert r.exit_code == 2 and r.output.startswith("error: ")
    r = runner.invoke(cli, ["yubikey", "oath", "add", "x", "-d", emu])
    assert r.exit_code == 2
    r = runner.invoke(cli, ["yubikey", "oath", "code", "nothing", "-d", emu])
    assert r.exit_code == 2 and "no OATH account" in r.output


def test_read_uri_file_parses_parameters():
    (d,) = read_uri_file(f"otpauth://totp/I:n?secret={SECRET}&digits=8&period=60"
                         "&algorithm=SHA512\n")
    assert (d.issuer, d.name, d.digits, d.period, d.hash_algorithm.name) == \
        ("I", "n", 8, 60, "SHA512")


def test_time_is_not_assumed(emu):
    """Codes are for the current time step (valid_to in the future)."""
    r = CliRunner().invoke(cli, ["yubikey", "oath", "add", "t", "--secret", SECRET, "-d", emu])
    assert r.exit_code == 0
    doc = json.loads(CliRunner().invoke(cli, ["yubikey", "oath", "code", "--json", "-d",
                                              emu]).output)
    assert doc["codes"][0]["valid_to"] > time.time() - 1


@pytest.mark.system
def test_running_serve_with_pcsc_is_used(pcscd, emu):
    """`hwtoken emulate serve NAME --pcsc` holds the key; oath commands go through pcscd."""
    from hwtoken.devices import running_serve

    serve = subprocess.Popen(
        [HWTOKEN, "emulate", "serve", "ok", "--no-usbip", "--pcsc-address",
         f"127.0.0.1:{pcscd.port}"],
        env={**os.environ, **pcscd.env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        deadline = time.monotonic() + 15
        while running_serve("ok") is None:
            assert serve.poll() is None, serve.stderr.read()
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.1)
        env = dict(pcscd.env)  # no HWTOKEN_VPCD: the runtime file says where the key is
        r = run("add", "served", "--secret", SECRET, "-d", emu, env=env)
        assert r.returncode == 0, r.stderr
        r = run("list", "-d", emu, env=env)
        assert r.stdout.split() == ["served"], r.stderr
    finally:
        serve.terminate()
        serve.wait(15)
    key = VirtualKey.load(Path(os.environ["HWTOKEN_STATE_DIR"]) / "keys" / "ok.key")
    try:
        assert key.oath.account_names() == ["served"]  # the serve process persisted it
    finally:
        key.close()


def test_delete_rename_code_need_the_exact_name_or_a_confirmation(emu, monkeypatch):
    """`oath delete a` once deleted Example:alice (a substring) without asking."""
    runner = CliRunner()

    def invoke(*args, input=None):
        return runner.invoke(cli, ["yubikey", "oath", *args, "-d", emu], input=input)

    def names():
        return [a["display"] for a in json.loads(invoke("list", "--json").stdout)["accounts"]]

    for name in ("Example:alice", "Other:bob"):
        assert invoke("add", name, "--secret", "-", input=SECRET).exit_code == 0
    # no terminal: a part of a name is refused, naming the account it matches
    for args in (["delete", "a"], ["rename", "a", "Example:alicia"], ["code", "bo"]):
        r = invoke(*args)
        assert r.exit_code == 2, (args, r.output)
        assert "only part of the account name" in r.stderr or "only part of that name" in \
            r.stderr
        assert "--force" in r.stderr
    # an exact name still needs a yes (or --force) to delete, but not to rename or show
    r = invoke("delete", "Other:bob")
    assert r.exit_code == 2 and "pass --force" in r.stderr
    assert names() == ["Example:alice", "Other:bob"]
    before = pyotp.TOTP(SECRET).now()
    r = invoke("code", "Other:bob")
    assert r.exit_code == 0 and r.stdout.strip() in (before, pyotp.TOTP(SECRET).now())
    # on a terminal the match is confirmed: no keeps everything, yes goes ahead
    with monkeypatch.context() as m:
        m.setattr("hwtoken.cli.common.is_interactive", lambda: True)
        r = invoke("delete", "a", input="n\n")
        assert r.exit_code == 1 and "Delete the account 'Example:alice'?" in r.stderr
        assert names() == ["Example:alice", "Other:bob"]
        r = invoke("rename", "ali", "Example:alicia", input="y\n")
        assert r.exit_code == 0 and "'ali' matches the account 'Example:alice'" in r.stderr
        assert names() == ["Example:alicia", "Other:bob"]
        r = invoke("delete", "a", input="y\n")
        assert r.exit_code == 0 and r.stdout.strip() == "deleted Example:alicia"
    r = invoke("delete", "Other:bob", "--force", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["deleted"]["display"] == "Other:bob"
    assert names() == []


def test_a_key_just_plugged_in_is_waited_for_over_pcsc(monkeypatch):
    """A key seen on USB reaches pcscd a moment later: opening it by serial with
    ``settle`` keeps looking; without, or past the deadline, it is a one-line error. (The
    real thing, pcscd adding a hot-plugged key's reader late, is
    tests/provision/test_provision_plugged_keys.py's oath-totp batch; this pins the loop.)"""
    from hwtoken.errors import DeviceError
    from hwtoken.yubikey import oath

    class Clock:  # the pauses move this clock, not the wall's: no timing in the test
        now = 1000.0

        def monotonic(self):
            return self.now

        def sleep(self, seconds):
            self.now += seconds

    clock = Clock()
    monkeypatch.setattr(oath, "time", clock)
    calls = []

    def absent_twice(serial):
        calls.append(serial)
        if len(calls) < 3:
            raise DeviceError(f"no YubiKey with serial {serial} found over PC/SC")
        return "conn"

    monkeypatch.setattr(oath, "_open_real", absent_twice)
    assert oath._open_settled(123, settle=5.0) == "conn" and calls == [123] * 3
    calls.clear()
    with pytest.raises(DeviceError, match="serial 123"):
        oath._open_settled(123, settle=0.0)
    assert calls == [123]
    calls.clear()
    monkeypatch.setattr(oath, "_open_real", lambda s: (_ for _ in ()).throw(
        DeviceError(f"no YubiKey with serial {s} found over PC/SC")))
    start = clock.now
    with pytest.raises(DeviceError, match="serial 123"):
        oath._open_settled(123, settle=0.3)
    assert clock.now - start >= 0.3  # it kept looking until the deadline
