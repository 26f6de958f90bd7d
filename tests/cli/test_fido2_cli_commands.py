"""Every `hwtoken fido2` command through click's runner against in-process virtual keys."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner
from fido2.utils import websafe_decode, websafe_encode

from hwtoken import paths
from hwtoken.cli import cli
from hwtoken.emulator import VirtualKey

PIN = "246810"


def make_key(name: str = "k") -> str:
    VirtualKey.create(paths.virtual_key_path(name)).close()
    return f"emu:{name}"


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, ["fido2", *args], input=input)


def ok(*args: str, input: str | None = None):
    r = invoke(*args, input=input)
    assert r.exit_code == 0, (r.output, r.exception)
    return r


def as_json(*args: str, input: str | None = None):
    return json.loads(ok(*args, "--json", input=input).stdout)


@pytest.fixture
def key(monkeypatch) -> str:
    monkeypatch.delenv("HWTOKEN_PIN", raising=False)
    monkeypatch.delenv("HWTOKEN_NEW_PIN", raising=False)
    monkeypatch.delenv("HWTOKEN_DEVICE", raising=False)
    spec = make_key()
    monkeypatch.setenv("HWTOKEN_DEVICE", spec)
    return spec


def test_list_and_device_choice(monkeypatch):
    monkeypatch.delenv("HWTOKEN_DEVICE", raising=False)
    r = invoke("info")
    assert r.exit_code == 2 and "no FIDO key found" in r.stderr
    make_key("one")
    make_key("two")
    doc = as_json("list")
    assert {k["spec"] for k in doc["keys"]} == {"emu:one", "emu:two"}
    assert all(k["kind"] == "virtual" and k["serial"] for k in doc["keys"])
    # virtual keys that are only files do not count as plugged in ...
    r = invoke("info")
    assert r.exit_code == 2 and "no FIDO key found" in r.stderr and "emu:NAME" in r.stderr
    # ... served ones do (a runtime file of this live process stands for a serve over
    # USB/IP; a key that only a umockdev testbed holds is found there as a USB device)
    from hwtoken.emulator.serve import runtime_path, write_runtime

    for name in ("one", "two"):
        write_runtime(paths.virtual_key_path(name), {
            "pid": os.getpid(), "usbip": {"host": "127.0.0.1", "port": 3240, "busid": "1-1"},
            "pcsc": None})
    r = invoke("info")
    assert r.exit_code == 2
    assert r.stderr.strip() == ("error: 2 FIDO keys found; choose one with --device (or "
                                "$HWTOKEN_DEVICE): emu:one, emu:two")
    assert "Traceback" not in r.output
    for name in ("one", "two"):
        runtime_path(paths.virtual_key_path(name)).unlink()
    # --device before or after the subcommand, at the root, or from the environment
    assert as_json("--device", "emu:two", "info")["device"] == "emu:two"
    r = CliRunner().invoke(cli, ["-d", "emu:one", "fido2", "info", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["device"] == "emu:one"
    assert as_json("info", "--device", "emu:one")["device"] == "emu:one"
    monkeypatch.setenv("HWTOKEN_DEVICE", "emu:two")
    assert as_json("info")["device"] == "emu:two"
    assert as_json("--device", "emu:one", "info")["device"] == "emu:one"  # beats the env
    assert as_json("-d", "emu:one", "info", "-d", "emu:two")["device"] == "emu:two"
    r = invoke("info", "--device", "emu:nope")
    assert r.exit_code == 2 and "no virtual key named 'nope'" in r.stderr


def test_info(key):
    doc = as_json("info")
    assert {"FIDO_2_0", "FIDO_2_1", "U2F_V2"} <= set(doc["versions"])
    assert doc["pin_set"] is False and doc["pin_retries"] is None
    assert "hmac-secret" in doc["extensions"] and doc["aaguid"]
    human = ok("info").stdout
    assert "AAGUID:" in human and "PIN:" in human and "not set" in human


def test_register_authenticate_counter_and_file(key, tmp_path):
    out = tmp_path / "cred.json"
    reg = as_json("register", "--rp", "example.com", "--user", "alice", "--out", str(out))
    assert reg["attestation"]["format"] == "packed" and reg["file"] == str(out)
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    saved = json.loads(out.read_text())
    for field in ("credential_id", "public_key", "rp", "user", "aaguid", "sign_count"):
        assert field in saved
    assert saved["rp"]["id"] == "example.com" and saved["user"]["name"] == "alice"
    first = as_json("authenticate", "--rp", "example.com", "--cred", str(out))
    assert first["verified"] and first["sign_count"] > saved["sign_count"]
    assert json.loads(out.read_text())["sign_count"] == first["sign_count"]
    human = ok("authenticate", "--rp", "example.com", "--cred", str(out)).stdout
    assert f"{first['sign_count']} -> " in human and "signature valid" in human


def test_default_credential_location_and_eddsa(key):
    reg = as_json("register", "--rp", "example.com", "--user", "eve", "--algorithm", "eddsa")
    assert reg["algorithm"] == "eddsa"
    assert reg["file"].startswith(str(paths.state_dir()))
    r = as_json("authenticate", "--rp", "example.com", "--cred", reg["file"])
    assert r["verified"]


def test_missing_and_malformed_files_exit_2(key, tmp_path):
    r = invoke("authenticate", "--rp", "example.com", "--cred", str(tmp_path / "none.json"))
    assert r.exit_code == 2 and "does not exist" in r.stderr
    bad = tmp_path / "bad.json"
    for content in ("{broken", "[]", json.dumps({"format": "hwtoken-fido2-credential/1"})):
        bad.write_text(content)
        r = invoke("authenticate", "--rp", "example.com", "--cred", str(bad))
        assert r.exit_code == 2, r.output
        assert r.stderr.startswith("error:") and len(r.stderr.strip().splitlines()) == 1
        assert r.exception is None or isinstance(r.exception, SystemExit)


def test_tampered_and_wrong_rp_exit_1(key, tmp_path):
    out = tmp_path / "cred.json"
    ok("register", "--rp", "example.com", "--user", "alice", "--out", str(out))
    good = json.loads(out.read_text())

    r = invoke("authenticate", "--rp", "other.example", "--cred", str(out))
    assert r.exit_code == 1 and "example.com" in r.stderr

    cid = bytearray(websafe_decode(good["credential_id"]))
    cid[-1] ^= 0xFF
    out.write_text(json.dumps({**good, "credential_id": websafe_encode(bytes(cid))}))
    r = invoke("authenticate", "--rp", "example.com", "--cred", str(out))
    assert r.exit_code == 1 and "does not hold this credential" in r.stderr

    other = tmp_path / "other.json"
    ok("register", "--rp", "example.com", "--user", "bob", "--out", str(other))
    swapped = {**good, "public_key": json.loads(other.read_text())["public_key"]}
    out.write_text(json.dumps(swapped))
    r = invoke("authenticate", "--rp", "example.com", "--cred", str(out))
    assert r.exit_code == 1 and "signature" in r.stderr.lower()
    assert json.loads(out.read_text()) == swapped  # a failed check does not update the file

    out.write_text(json.dumps({**good, "sign_count": good["sign_count"] + 10_000}))
    r = invoke("authenticate", "--rp", "example.com", "--cred", str(out))
    assert r.exit_code == 1 and "counter" in r.stderr

    out.write_text(json.dumps(good))
    assert as_json("authenticate", "--rp", "example.com", "--cred", str(out))["verified"]


def test_pin_commands(key, monkeypatch):
    assert as_json("pin", "retries") == {"pin_set": False, "retries": None,
                                         "power_cycle_required": False}
    assert ok("pin", "retries").stdout.strip() == "PIN not set"
    r = invoke("pin", "verify", input="")
    assert r.exit_code == 2 and "no PIN" in r.stderr
    # new PIN from a prompt with confirmation
    r = invoke("pin", "set", input=f"{PIN}\n{PIN}\n")
    assert r.exit_code == 0 and "PIN set" in r.stdout and PIN not in r.output
    r = invoke("pin", "set", input="x\n")
    assert r.exit_code == 2 and "already has a PIN" in r.stderr
    monkeypatch.setenv("HWTOKEN_PIN", "wrong-one")
    r = invoke("pin", "verify")
    assert r.exit_code == 1 and "wrong PIN" in r.stderr and "7 tries left" in r.stderr
    monkeypatch.setenv("HWTOKEN_PIN", PIN)
    assert as_json("pin", "verify")["retries"] == 8
    monkeypatch.setenv("HWTOKEN_NEW_PIN", "13579-new")
    ok("pin", "change")
    r = invoke("pin", "verify")
    assert r.exit_code == 1
    monkeypatch.delenv("HWTOKEN_PIN")
    ok("pin", "verify", input="13579-new\n")  # hidden prompt


def test_register_authenticate_with_pin_and_resident_creds(key, monkeypatch, tmp_path):
    monkeypatch.setenv("HWTOKEN_NEW_PIN", PIN)
    ok("pin", "set")
    monkeypatch.delenv("HWTOKEN_NEW_PIN")
    r = invoke("register", "--rp", "example.com", "--user", "alice", input="")
    assert r.exit_code == 2 and "PIN" in r.stderr
    monkeypatch.setenv("HWTOKEN_PIN", PIN)
    reg = as_json("register", "--rp", "example.com", "--user", "alice", "--resident",
                  "--uv", "required")
    assert reg["user_verified"] and reg["resident"]
    ok("register", "--rp", "example.com", "--user", "bob", "--resident")
    ok("register", "--rp", "other.org", "--user", "carol", "--resident")
    # discoverable: no --cred; the public key comes from the saved file
    auth = as_json("authenticate", "--rp", "example.com", "--user", "alice")
    assert auth["user"] == "alice" and auth["user_verified"]
    listing = as_json("creds", "list")
    assert listing["existing"] == 3
    users = {(c["rp_id"], c["user_name"]) for c in listing["credentials"]}
    assert users == {("example.com", "alice"), ("example.com", "bob"), ("other.org", "carol")}
    carol = next(c for c in listing["credentials"] if c["user_name"] == "carol")
    r = invoke("creds", "delete", carol["credential_id"])
    assert r.exit_code == 2 and "pass --force" in r.stderr  # no terminal to ask on
    with monkeypatch.context() as m:
        m.setattr("hwtoken.cli.common.is_interactive", lambda: True)
        r = invoke("creds", "delete", carol["credential_id"], input="n\n")
    assert r.exit_code == 1 and r.stderr.strip().endswith("error: aborted: nothing was changed")
    ok("creds", "delete", carol["credential_id"], "--force")
    assert as_json("creds", "list")["existing"] == 2
    r = invoke("creds", "delete", carol["credential_id"], "--force")
    assert r.exit_code == 1 and "no discoverable credential" in r.stderr
    r = invoke("authenticate", "--rp", "other.org")
    assert r.exit_code == 1
    human = ok("creds", "list").stdout
    assert "alice" in human and "carol" not in human


def test_secret(key, tmp_path):
    out = tmp_path / "c.json"
    ok("register", "--rp", "example.com", "--user", "alice", "--out", str(out))
    salt = os.urandom(32).hex()
    one = ok("secret", "--cred", str(out), "--salt", salt).stdout.strip()
    two = as_json("secret", "--cred", str(out), "--salt", salt)["secret"]
    other = ok("secret", "--cred", str(out), "--salt", "00" * 32).stdout.strip()
    assert one == two and len(bytes.fromhex(one)) == 32 and other != one
    for bad in ("zz", "00" * 31):
        r = invoke("secret", "--cred", str(out), "--salt", bad)
        assert r.exit_code == 2 and "--salt" in r.stderr


def test_reset(key, monkeypatch, tmp_path, as_terminal):
    monkeypatch.setenv("HWTOKEN_NEW_PIN", PIN)
    ok("pin", "set")
    r = invoke("reset", input="n\n")
    assert r.exit_code == 1 and "10 seconds" in r.stderr
    assert as_json("pin", "retries")["pin_set"] is True
    r = invoke("reset", input="y\n")
    assert r.exit_code == 0 and "reset" in r.stdout
    assert as_json("pin", "retries")["pin_set"] is False
    assert as_json("reset", "--force") == {"reset": True, "device": key}


def test_bad_out_is_refused_before_the_key_is_touched(key, monkeypatch, tmp_path):
    monkeypatch.setenv("HWTOKEN_PIN", PIN)
    ok("pin", "set")
    out = tmp_path / "alice.json"
    ok("register", "--rp", "example.com", "--user", "alice", "--resident", "--out", str(out))
    before = out.read_text()
    a_file = tmp_path / "plain"
    a_file.write_text("x")
    for target in (out, a_file / "cred.json"):  # exists already / parent is not a directory
        r = invoke("register", "--rp", "example.com", "--user", "bob", "--resident",
                   "--out", str(target))
        assert r.exit_code == 2, r.output
        assert r.stderr.startswith("error:") and len(r.stderr.strip().splitlines()) == 1
        assert "Traceback" not in r.output
    assert "already exists" in invoke("register", "--rp", "example.com", "--user", "bob",
                                      "--out", str(out)).stderr
    assert out.read_text() == before  # the saved public key was not overwritten
    # and no orphaned discoverable credential was made on the key for bob
    assert [c["user_name"] for c in as_json("creds", "list")["credentials"]] == ["alice"]
    r = invoke("authenticate", "--rp", "example.com", "--cred", str(out))
    assert r.exit_code == 0, r.output
    reg = as_json("register", "--rp", "example.com", "--user", "bob", "--out", str(out),
                  "--force")  # overwriting is explicit
    assert json.loads(out.read_text())["credential_id"] == reg["credential_id"]


def test_save_failure_is_one_line_exit_1(key, tmp_path):
    from hwtoken.errors import CheckFailed
    from hwtoken.fido import credfile

    out = tmp_path / "alice.json"
    ok("register", "--rp", "example.com", "--user", "alice", "--out", str(out))
    cred = credfile.load(out)
    a_file = tmp_path / "plain"
    a_file.write_text("x")
    with pytest.raises(CheckFailed, match="could not save credential ") as e:
        credfile.save(cred, a_file / "cred.json")
    assert e.value.exit_code == 1 and "\n" not in str(e.value)
