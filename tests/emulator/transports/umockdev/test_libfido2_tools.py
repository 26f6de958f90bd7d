"""libfido2's own tools (Debian fido2-tools) against a virtual key plugged in via umockdev:
enumeration through libudev, hidraw ioctls, ppoll, and the whole CTAP2 exchange."""

from __future__ import annotations

import base64
import hashlib
import os

from umockdev_helpers import run


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_token_list_shows_the_yubikey(plugged_key):
    out = run(plugged_key, ["fido2-token", "-L"]).stdout
    assert f"{plugged_key.hidraw}: vendor=0x1050, product=0x0407" in out
    assert "Yubico YubiKey OTP+FIDO+CCID" in out


def test_token_info(plugged_key):
    out = run(plugged_key, ["fido2-token", "-I", plugged_key.hidraw]).stdout
    assert "FIDO_2_1" in out and "U2F_V2" in out
    assert f"aaguid: {plugged_key.key.aaguid.hex()}" in out
    major, minor, build = plugged_key.key.version
    assert f"fwversion: 0x{major:x}{minor:02x}{build:02x}" in out


def _make_credential(plugged, tmp_path, *, pin: str | None = None, rp: str = "example.com"):
    cred_in = tmp_path / "cred.in"
    cred_in.write_text("\n".join([
        _b64(hashlib.sha256(b"registration challenge").digest()), rp, "alice",
        _b64(os.urandom(16))]) + "\n")
    cred_out = tmp_path / "cred.out"
    run(plugged, ["fido2-cred", "-M", "-i", str(cred_in), "-o", str(cred_out),
                  plugged.hidraw, "es256"], input=f"{pin}\n" if pin else None)
    pubkey = tmp_path / "cred.pub"
    run(plugged, ["fido2-cred", "-V", "-i", str(cred_out), "-o", str(pubkey), "es256"])
    cred_id = cred_out.read_text().splitlines()[4]
    return cred_id, pubkey


def _assert(plugged, tmp_path, cred_id: str, pubkey, *, pin: str | None = None,
            rp: str = "example.com", check: bool = True):
    a_in = tmp_path / "assert.in"
    a_in.write_text("\n".join([_b64(hashlib.sha256(b"login challenge").digest()), rp,
                               cred_id]) + "\n")
    a_out = tmp_path / "assert.out"
    argv = ["fido2-assert", "-G", "-i", str(a_in), "-o", str(a_out)]
    if pin:
        argv.append("-v")
    proc = run(plugged, [*argv, plugged.hidraw, "es256"], input=f"{pin}\n" if pin else None,
               check=check)
    if proc.returncode:
        return proc
    flags = ["-v"] if pin else []
    return run(plugged, ["fido2-assert", "-V", *flags, "-i", str(a_out), str(pubkey), "es256"])


def test_make_credential_then_assertion_verified(plugged_key, tmp_path):
    cred_id, pubkey = _make_credential(plugged_key, tmp_path)
    verified = pubkey.read_text().splitlines()
    assert verified[0] == cred_id  # fido2-cred -V: the credential ID, then its public key
    assert verified[1] == "-----BEGIN PUBLIC KEY-----"
    _assert(plugged_key, tmp_path, cred_id, pubkey)


def test_pin_set_then_assertion_with_pin_and_wrong_pin_counted(plugged_key, tmp_path):
    run(plugged_key, ["fido2-token", "-S", plugged_key.hidraw], input="4321\n4321\n")
    info = run(plugged_key, ["fido2-token", "-I", plugged_key.hidraw]).stdout
    assert "clientPin" in info and "pin retries: 8" in info
    cred_id, pubkey = _make_credential(plugged_key, tmp_path, pin="4321")
    _assert(plugged_key, tmp_path, cred_id, pubkey, pin="4321")  # -v: user verified
    wrong = _assert(plugged_key, tmp_path, cred_id, pubkey, pin="0000", check=False)
    assert wrong.returncode != 0
    assert "FIDO_ERR_PIN_INVALID" in wrong.stderr
    info = run(plugged_key, ["fido2-token", "-I", plugged_key.hidraw]).stdout
    assert "pin retries: 7" in info
