"""ykman over HID (yubikit's Linux hidraw backend: FIDO and OTP interfaces) against a
virtual key plugged in via umockdev — no pcscd involved."""

from __future__ import annotations

import hashlib
import hmac
import os

from umockdev_helpers import run

PIN = "135790"


def test_ykman_info_and_list_show_a_yubikey_5_with_fido2(plugged_key):
    out = run(plugged_key, ["ykman", "info"]).stdout
    assert f"Serial number: {plugged_key.key.serial}" in out
    assert "Firmware version: 5.7.4" in out
    assert "FIDO2       \tEnabled" in out
    listed = run(plugged_key, ["ykman", "list"]).stdout
    assert f"Serial: {plugged_key.key.serial}" in listed


def test_ykman_fido_info_reads_config_over_ctaphid(plugged_key):
    # ykman asks the key's device info with the YubiKey vendor command READ_CONFIG (0xC2);
    # without it ykman falls back to a U2F-only key ("CTAP2: Not supported")
    out = run(plugged_key, ["ykman", "fido", "info"]).stdout
    assert "Not supported" not in out
    assert "PIN:" in out and "Not set" in out
    assert "AAGUID:" in out and plugged_key.key.aaguid.hex()[:8] in out.replace("-", "")


def test_ykman_fido_credentials_list_with_a_pin(plugged_key):
    from fido2.ctap2 import Ctap2
    from fido2.ctap2.pin import ClientPin

    from hwtoken.emulator import fido_device
    from hwtoken.testing import WebAuthnHelper

    with fido_device(plugged_key.key) as dev:  # a resident credential made in process
        ClientPin(Ctap2(dev)).set_pin(PIN)
        WebAuthnHelper(dev, "login.example", pin=PIN).register(
            {"id": b"u-1", "name": "erin"}, resident_key=True)
    out = run(plugged_key, ["ykman", "fido", "credentials", "list", "--pin", PIN]).stdout
    assert "login.example" in out and "erin" in out
    info = run(plugged_key, ["ykman", "fido", "info"]).stdout
    assert "PIN:" in info and "8 attempt(s) remaining" in info


def test_ykman_otp_info_chalresp_and_calculate_equal_hmac_sha1(plugged_key):
    assert "Slot 2: empty" in run(plugged_key, ["ykman", "otp", "info"]).stdout
    secret = os.urandom(20)
    run(plugged_key, ["ykman", "otp", "chalresp", "--force", "2", secret.hex()])
    assert "Slot 2: programmed" in run(plugged_key, ["ykman", "otp", "info"]).stdout
    challenge = os.urandom(32)
    out = run(plugged_key, ["ykman", "otp", "calculate", "2", challenge.hex()]).stdout
    assert out.strip() == hmac.new(secret, challenge, hashlib.sha1).hexdigest()


def _no_pcscd() -> dict[str, str]:
    """A host without pcscd: PC/SC clients find no daemon, only the USB nodes remain."""
    return {**os.environ, "PCSCLITE_CSOCK_NAME": "/nonexistent/pcscd.comm"}


def test_ykman_config_works_over_the_otp_interface_without_pcscd(plugged_key):
    # `ykman config` opens the smart card first; with no pcscd it takes the OTP interface,
    # where the key writes device info with SET DEVICE INFO (slot command 0x15)
    env = _no_pcscd()
    done = run(plugged_key, ["ykman", "config", "nfc", "--disable", "OATH", "-f"], env=env)
    assert "NFC application configuration updated" in done.stdout
    assert plugged_key.key.otp.state["pgm_seq"] == 1  # it came as an OTP slot command
    listed = run(plugged_key, ["ykman", "config", "nfc", "--list"], env=env).stdout
    assert "OATH" not in listed and "FIDO2" in listed
    run(plugged_key, ["ykman", "config", "usb", "--chalresp-timeout", "9", "-f"], env=env)
    from hwtoken.emulator.applets.management import CAP_OATH, ManagementApplet

    mgmt = ManagementApplet(plugged_key.key)
    assert not mgmt.enabled("nfc") & CAP_OATH
    assert mgmt.state["chalresp_timeout"] == 9
