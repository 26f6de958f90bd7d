"""A ``yubikey-bio`` key plugged in through umockdev, managed by the real programs people
use for a YubiKey Bio: ykman (yubikit over hidraw) and libfido2's fido2-token. The finger
that touches the sensor is the key's presence policy."""

from __future__ import annotations

import re

import pytest
from umockdev_helpers import run

from hwtoken.emulator import Finger, FingerCallback
from hwtoken.emulator.presence import NO_MATCH
from hwtoken.testing import enroll_finger

PIN = "135790"
pytestmark = pytest.mark.hwtoken_profile("yubikey-bio")


def test_ykman_sees_a_yubikey_bio_fido_edition(plugged_key):
    info = run(plugged_key, ["ykman", "info"]).stdout
    assert "Device type: YubiKey Bio - FIDO Edition" in info
    assert "Form factor: Bio (USB-A)" in info and "Firmware version: 5.5.6" in info
    assert "Enabled USB interfaces: FIDO" in info
    assert re.search(r"PIV\s+Not available", info) and re.search(r"FIDO2\s+Enabled", info)
    listed = run(plugged_key, ["ykman", "list"]).stdout
    assert listed.startswith(f"YubiKey Bio - FIDO Edition (5.5.6) [FIDO] Serial: "
                             f"{plugged_key.key.serial}")
    fido = run(plugged_key, ["ykman", "fido", "info"]).stdout
    assert "AAGUID:                       d8522d9f-575b-4866-88a9-ba99fa02f35b" in fido
    assert "Fingerprints:                 Not registered" in fido
    assert "Credential storage remaining: 25" in fido


def test_ykman_fingerprints_add_list_rename_delete(plugged_key):
    plugged_key.key.presence = Finger("left-thumb")
    run(plugged_key, ["ykman", "fido", "access", "change-pin", "--new-pin", PIN])
    added = run(plugged_key, ["ykman", "fido", "fingerprints", "add", "Thumb", "--pin", PIN])
    assert re.findall(r"(\d) more scans needed", added.stdout) == ["4", "3", "2", "1"]
    assert "Capture complete." in added.stdout
    [template] = re.findall(r"ID: ([0-9a-f]+) \(Thumb\)", run(
        plugged_key, ["ykman", "fido", "fingerprints", "list", "--pin", PIN]).stdout)
    assert "Fingerprints:                 Registered" in run(
        plugged_key, ["ykman", "fido", "info"]).stdout
    run(plugged_key, ["ykman", "fido", "fingerprints", "rename", template, "Left thumb",
                      "--pin", PIN])
    listed = run(plugged_key, ["ykman", "fido", "fingerprints", "list", "--pin", PIN]).stdout
    assert listed.strip() == f"ID: {template} (Left thumb)"
    # the thumb again (FP_EXISTS), then a finger that reads as nothing (NO_USER_ACTIVITY):
    # ykman asks to try again; then five good samples of another finger
    readings = iter(["left-thumb", NO_MATCH] + ["right-ring"] * 5)
    plugged_key.key.presence = FingerCallback(lambda reason: next(readings))
    added = run(plugged_key, ["ykman", "fido", "fingerprints", "add", "Ring", "--pin", PIN])
    assert added.stdout.count("Capture failed. Re-center your finger, and try again.") == 2
    assert re.findall(r"(\d) more scans needed", added.stdout) == ["4", "3", "2", "1"]
    listed = run(plugged_key, ["ykman", "fido", "fingerprints", "list", "--pin", PIN]).stdout
    assert "(Left thumb)" in listed and "(Ring)" in listed
    run(plugged_key, ["ykman", "fido", "fingerprints", "delete", template, "--force",
                      "--pin", PIN])
    listed = run(plugged_key, ["ykman", "fido", "fingerprints", "list", "--pin", PIN]).stdout
    assert "(Left thumb)" not in listed and "(Ring)" in listed


def test_fido2_token_info_enroll_list_and_delete(plugged_key):
    listed = run(plugged_key, ["fido2-token", "-L"]).stdout
    assert listed.strip() == (f"{plugged_key.hidraw}: vendor=0x1050, product=0x0402 "
                              "(Yubico YubiKey FIDO)")  # the FIDO interface alone
    info = run(plugged_key, ["fido2-token", "-I", plugged_key.hidraw]).stdout
    assert "aaguid: d8522d9f575b486688a9ba99fa02f35b" in info
    assert "uv retries: 3" in info and "platform uv attempt(s): 3" in info
    assert "uv modality: 0x2 (fingerprint check)" in info
    assert "sensor type: 1 (touch)" in info and "max samples: 5" in info
    options = re.search(r"^options: (.*)$", info, re.M).group(1).split(", ")
    assert "nouv" in options and "nobioEnroll" in options and "uvBioEnroll" in options

    enroll_finger(plugged_key.key, "right-index", pin=PIN, name="Index")
    listed = run(plugged_key, ["fido2-token", "-L", "-e", plugged_key.hidraw],
                 input=PIN + "\n").stdout
    [(template, name)] = re.findall(r"^\d+: (\S+) (.*)$", listed, re.M)
    assert name == "Index"
    options = re.search(r"^options: (.*)$", run(
        plugged_key, ["fido2-token", "-I", plugged_key.hidraw]).stdout, re.M).group(1)
    assert "uv" in options.split(", ") and "bioEnroll" in options.split(", ")
    run(plugged_key, ["fido2-token", "-D", "-e", "-i", template, plugged_key.hidraw],
        input=PIN + "\n")
    listed = run(plugged_key, ["fido2-token", "-L", "-e", plugged_key.hidraw],
                 input=PIN + "\n", check=False)
    assert "00:" not in listed.stdout


def test_fido2_token_enrolls_with_the_policy_finger(plugged_key):
    from fido2.ctap import CtapError
    from fido2.ctap2 import Ctap2
    from fido2.ctap2.pin import ClientPin

    from hwtoken.emulator import fido_device

    plugged_key.key.presence = Finger("right-middle")
    run(plugged_key, ["ykman", "fido", "access", "change-pin", "--new-pin", PIN])
    run(plugged_key, ["fido2-token", "-S", "-e", plugged_key.hidraw], input=PIN + "\n")
    ctap = Ctap2(fido_device(plugged_key.key))
    ClientPin(ctap).get_uv_token(ClientPin.PERMISSION.GET_ASSERTION, "example.com")
    plugged_key.key.presence = Finger("right-index")
    with pytest.raises(CtapError) as info:
        ClientPin(ctap).get_uv_token(ClientPin.PERMISSION.GET_ASSERTION, "example.com")
    assert info.value.code == CtapError.ERR.UV_INVALID
