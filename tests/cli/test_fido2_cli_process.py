"""`hwtoken fido2` as real processes: exit codes without tracebacks, the PIN kept out of
argv (checked in `ps` and /proc while the command runs), and every command over USB/IP
against a key served by a real `hwtoken emulate serve` process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from fido2.utils import websafe_decode, websafe_encode

from hwtoken import devices, paths
from hwtoken.cli import cli
from hwtoken.emulator import VirtualKey

HWTOKEN = str(Path(sys.executable).with_name("hwtoken"))
PIN = "pin-6g7h8j"


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items()
            if k not in ("HWTOKEN_PIN", "HWTOKEN_NEW_PIN", "HWTOKEN_DEVICE")}
    return {**base, "HWTOKEN_STATE_DIR": str(paths.state_dir()), **extra}


def run(*args: str, input: str | None = "", **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HWTOKEN, "fido2", *args], capture_output=True, text=True,
                          input=input, timeout=60, env=env(**extra))


def make_key(name: str = "p") -> str:
    VirtualKey.create(paths.virtual_key_path(name)).close()
    return f"emu:{name}"


def assert_clean_error(r: subprocess.CompletedProcess[str], code: int) -> None:
    assert r.returncode == code, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")


def test_exit_codes_without_tracebacks(tmp_path):
    dev = make_key()
    r = run("-d", dev, "authenticate", "--rp", "example.com", "--cred",
            str(tmp_path / "missing.json"))
    assert_clean_error(r, 2)
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "hwtoken-fido2-credential/1", "rp": 3}')
    assert_clean_error(run("-d", dev, "authenticate", "--rp", "example.com", "--cred",
                           str(bad)), 2)
    bad.write_bytes(b"\xff\xfe\x00garbage")
    assert_clean_error(run("-d", dev, "secret", "--cred", str(bad), "--salt", "00" * 32), 2)

    cred = tmp_path / "c.json"
    r = run("-d", dev, "register", "--rp", "example.com", "--user", "alice", "--out",
            str(cred))
    assert r.returncode == 0, r.stderr
    assert_clean_error(run("-d", dev, "authenticate", "--rp", "example.org", "--cred",
                           str(cred)), 1)
    doc = json.loads(cred.read_text())
    cid = bytearray(websafe_decode(doc["credential_id"]))
    cid[0] ^= 0x80
    cred.write_text(json.dumps({**doc, "credential_id": websafe_encode(bytes(cid))}))
    assert_clean_error(run("-d", dev, "authenticate", "--rp", "example.com", "--cred",
                           str(cred)), 1)
    assert_clean_error(run("-d", "emu:nope", "info"), 2)
    assert_clean_error(run("-d", dev, "pin", "verify", HWTOKEN_PIN=PIN), 2)  # no PIN set


def _ps_lines() -> list[str]:
    out = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True,
                         timeout=10).stdout
    return out.splitlines()


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            children = []
        todo.extend(int(c) for c in children)
    return found


def test_pin_never_in_argv_or_ps(tmp_path):
    dev = make_key()
    r = run("-d", dev, "pin", "set", HWTOKEN_NEW_PIN=PIN)
    assert r.returncode == 0, r.stderr
    r = run("-d", dev, "register", "--rp", "example.com", "--user", "alice", "--resident",
            HWTOKEN_PIN=PIN)
    assert r.returncode == 0, r.stderr
    listing = json.loads(run("-d", dev, "creds", "list", "--json", HWTOKEN_PIN=PIN).stdout)
    cred_id = listing["credentials"][0]["credential_id"]

    # `creds delete` without --force asks at the terminal: look at it while it waits.
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen([HWTOKEN, "fido2", "-d", dev, "creds", "delete", cred_id],
                            stdin=slave, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env(HWTOKEN_PIN=PIN))
    os.close(slave)
    try:
        deadline = time.monotonic() + 30
        seen = False
        while time.monotonic() < deadline and not seen:
            seen = any(line.split(None, 1)[0] == str(proc.pid) and "creds delete" in line
                       for line in _ps_lines()[1:])
            time.sleep(0.05)
        assert seen, "the hwtoken process never showed up in ps"
        assert PIN.encode() in Path(f"/proc/{proc.pid}/environ").read_bytes()  # it has it
        for line in _ps_lines():
            assert PIN not in line
        for pid in _descendants(proc.pid):
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                assert PIN.encode() not in fh.read()
        os.write(master, b"y\n")
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err
    assert "Deleted alice" in out and PIN not in out + err


# -- over USB/IP, to a key served by another process --------------------------------------
@pytest.fixture
def served():
    name = "usb"
    make_key(name)
    proc = subprocess.Popen([HWTOKEN, "emulate", "serve", name, "--usbip", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env())
    try:
        deadline = time.monotonic() + 30
        doc = None
        while doc is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"serve did not start: {proc.communicate(timeout=5)}")
            doc = devices.running_serve(name)
            time.sleep(0.05)
        assert doc["usbip"]["host"] == "127.0.0.1"
        yield f"emu:{name}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def invoke(*args: str, input: str | None = None):
    r = CliRunner().invoke(cli, ["fido2", *args], input=input)
    return r


def test_every_command_over_usbip(served, tmp_path, monkeypatch, as_terminal):
    monkeypatch.delenv("HWTOKEN_PIN", raising=False)
    monkeypatch.delenv("HWTOKEN_NEW_PIN", raising=False)
    monkeypatch.setenv("HWTOKEN_DEVICE", served)

    listed = json.loads(invoke("list", "--json").stdout)["keys"]
    assert [k["status"] for k in listed if k["spec"] == served] == ["served"]
    info = json.loads(invoke("info", "--json").stdout)
    assert "FIDO_2_1" in info["versions"] and info["pin_set"] is False

    cred = tmp_path / "c.json"
    r = invoke("register", "--rp", "example.com", "--user", "alice", "--out", str(cred))
    assert r.exit_code == 0, r.output
    r = invoke("authenticate", "--rp", "example.com", "--cred", str(cred), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["sign_count"] == json.loads(cred.read_text())["sign_count"]
    salt = "ab" * 32
    s1 = invoke("secret", "--cred", str(cred), "--salt", salt).stdout
    s2 = invoke("secret", "--cred", str(cred), "--salt", salt).stdout
    assert s1 == s2 and len(s1.strip()) == 64
    r = invoke("authenticate", "--rp", "evil.example", "--cred", str(cred))
    assert r.exit_code == 1

    monkeypatch.setenv("HWTOKEN_NEW_PIN", PIN)
    assert invoke("pin", "set").exit_code == 0
    monkeypatch.setenv("HWTOKEN_PIN", "not-the-pin")
    r = invoke("pin", "verify")
    assert r.exit_code == 1 and "wrong PIN" in r.stderr
    assert json.loads(invoke("pin", "retries", "--json").stdout)["retries"] == 7
    monkeypatch.setenv("HWTOKEN_PIN", PIN)
    assert json.loads(invoke("pin", "verify", "--json").stdout)["retries"] == 8
    r = invoke("authenticate", "--rp", "example.com", "--cred", str(cred), "--uv", "required",
               "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["user_verified"] is True
    r = invoke("register", "--rp", "example.com", "--user", "bob", "--resident", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["user_verified"] is True
    r = invoke("authenticate", "--rp", "example.com", "--user", "bob", "--json")
    assert r.exit_code == 0, r.output
    listing = json.loads(invoke("creds", "list", "--json").stdout)
    assert [c["user_name"] for c in listing["credentials"]] == ["bob"]
    r = invoke("creds", "delete", listing["credentials"][0]["credential_id"], "--force")
    assert r.exit_code == 0, r.output
    assert json.loads(invoke("creds", "list", "--json").stdout)["existing"] == 0
    monkeypatch.setenv("HWTOKEN_NEW_PIN", "changed-pin")
    assert invoke("pin", "change").exit_code == 0
    assert invoke("pin", "verify").exit_code == 1  # the old PIN no longer works
    monkeypatch.setenv("HWTOKEN_PIN", "changed-pin")
    assert invoke("pin", "verify").exit_code == 0

    r = invoke("reset", input="y\n")  # re-imported over USB/IP = re-plugged
    assert r.exit_code == 0, r.output
    assert "power-cycled" in r.stderr
    assert json.loads(invoke("pin", "retries", "--json").stdout)["pin_set"] is False
    r = invoke("authenticate", "--rp", "example.com", "--cred", str(cred))
    assert r.exit_code == 1  # the reset wiped the key's master secret with its credentials
    r = invoke("register", "--rp", "example.com", "--user", "alice", "--out", str(cred))
    assert r.exit_code == 2 and "already exists" in r.stderr  # its public key is kept
    r = invoke("register", "--rp", "example.com", "--user", "alice", "--out", str(cred),
               "--force")
    assert r.exit_code == 0, r.output

    # the same through a separate process, as a user would type it
    r = run("authenticate", "--rp", "example.com", "--cred", str(cred), "--uv", "discouraged",
            "--json", HWTOKEN_DEVICE=served)
    assert r.returncode == 0, r.stderr


def test_the_documented_counter_rises_by_two_per_authenticate(tmp_path):
    """docs/fido2-cli.md: `sign counter 1 -> 3` (fido2's silent pre-flight assertion signs
    too), and the same again next time: a key loaded per command does not skip ahead."""
    dev = make_key()
    cred = str(tmp_path / "alice.json")
    assert run("-d", dev, "register", "--rp", "example.com", "--user", "alice", "--out",
               cred).returncode == 0
    first = run("-d", dev, "authenticate", "--rp", "example.com", "--cred", cred)
    assert "sign counter 1 -> 3," in first.stdout, first.stdout + first.stderr
    second = run("-d", dev, "authenticate", "--rp", "example.com", "--cred", cred)
    assert "sign counter 3 -> 5," in second.stdout
    doc = (Path(__file__).resolve().parents[2] / "docs" / "fido2-cli.md").read_text()
    assert "sign counter 1 -> 3, user verified: no" in doc
