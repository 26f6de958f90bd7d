"""Model profiles: each profile's getInfo, compared field by field with the table in
docs/ctap2.md, and what else a host sees of the model (CTAPHID capabilities, USB identity,
smart-card applets, management device info, the state file)."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from fido2.ctap import CtapError
from fido2.ctap1 import Ctap1
from fido2.ctap2 import Ctap2
from fido2.ctap2.pin import ClientPin
from fido2.hid import CAPABILITY, CTAPHID
from yubikit.management import CAPABILITY as YK_CAPABILITY
from yubikit.management import ManagementSession

from hwtoken.emulator import VirtualKey, fido_device
from hwtoken.emulator.applets.fido.algorithms import ALGORITHMS
from hwtoken.emulator.iso7816 import CardOS
from hwtoken.emulator.profiles import DEFAULT_PROFILE, PROFILES
from hwtoken.emulator.transports.card_direct import DirectCardConnection
from hwtoken.errors import InvalidInput

DOC = Path(__file__).resolve().parents[4] / "docs" / "ctap2.md"
PIN = "12345678"

INFO_FIELDS = {
    0x01: "versions", 0x02: "extensions", 0x03: "aaguid", 0x04: "options",
    0x05: "maxMsgSize", 0x06: "pinUvAuthProtocols", 0x07: "maxCredentialCountInList",
    0x08: "maxCredentialIdLength", 0x09: "transports", 0x0A: "algorithms",
    0x0B: "maxSerializedLargeBlobArray", 0x0C: "forcePINChange", 0x0D: "minPINLength",
    0x0E: "firmwareVersion", 0x0F: "maxCredBlobLength", 0x10: "maxRPIDsForSetMinPINLength",
    0x11: "preferredPlatformUvAttempts", 0x12: "uvModality",
    0x14: "remainingDiscoverableCredentials", 0x16: "attestationFormats",
    0x19: "encIdentifier", 0x1D: "maxPINLength", 0x1E: "encCredStoreState",
}


def render(key: int, value, profile: str = DEFAULT_PROFILE) -> str:
    """How the table in docs/ctap2.md writes getInfo member ``key`` of ``profile``."""
    if value is None:
        return "—"
    if key == 0x03:  # the model's published AAGUID (all zeros for none)
        return str(uuid.UUID(bytes=bytes(value)))
    if key == 0x04:
        return ", ".join(k if v else f"{k}=false" for k, v in value.items())
    if key == 0x0A:
        return ", ".join(ALGORITHMS[a["alg"]].name for a in value)
    if key == 0x0E:
        return f"0x{value:06X}"
    if key in (0x19, 0x1E):
        return f"{len(value)} bytes"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def live_info(profile: str, directory) -> dict | None:
    """getInfo of a new key of ``profile`` whose PIN is set (and, where offered, a
    persistent token issued); None for a key without CTAP2."""
    with VirtualKey.create(Path(directory) / f"{profile}.key", profile=profile) as key:
        device = fido_device(key)
        if not device.capabilities & CAPABILITY.CBOR:
            return None
        ctap = Ctap2(device)
        ClientPin(ctap).set_pin(PIN)
        if ctap.info.options.get("perCredMgmtRO"):
            ClientPin(ctap).get_pin_token(PIN, ClientPin.PERMISSION.PERSISTENT_CREDENTIAL_MGMT)
        return ctap.send_cbor(Ctap2.CMD.GET_INFO)


def documented() -> dict[str, dict[int, str]]:
    """The getInfo table of docs/ctap2.md: profile -> field -> cell."""
    lines = DOC.read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| getInfo field |"))
    header = [c.strip().strip("`") for c in lines[start].strip("|").split("|")][1:]
    table: dict[str, dict[int, str]] = {name: {} for name in header}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip().replace("`", "") for c in line.strip("|").split("|")]
        key = int(re.search(r"\(0x([0-9A-F]{2})\)", cells[0]).group(1), 16)
        for name, cell in zip(header, cells[1:], strict=True):
            table[name][key] = cell
    return table


def test_the_documented_table_covers_every_profile_and_field():
    table = documented()
    assert list(table) == list(PROFILES)
    for fields in table.values():
        assert set(fields) == set(INFO_FIELDS)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_get_info_matches_the_documented_table_field_by_field(profile, tmp_path):
    info = live_info(profile, tmp_path)
    expected = documented()[profile]
    assert info is None or set(info) <= set(INFO_FIELDS), "a getInfo member the table lacks"
    for key, name in INFO_FIELDS.items():
        value = None if info is None else info.get(key)
        assert render(key, value, profile) == expected[key], f"{profile}: {name} (0x{key:02X})"


def test_u2f_only_speaks_ctap1_and_no_cbor(tmp_path):
    with VirtualKey.create(tmp_path / "k.key", profile="u2f-only") as key:
        device = fido_device(key)
        assert not device.capabilities & CAPABILITY.CBOR
        assert Ctap1(device).get_version() == "U2F_V2"
        with pytest.raises(CtapError) as e:
            device.call(CTAPHID.CBOR, b"\x04")
        assert e.value.code == CtapError.ERR.INVALID_COMMAND
        assert key.fido.ctap2(b"\x04") == b"\x01"  # nor over any other transport
        assert CardOS(key).applets == []  # a USB-only key: no smart card at all


def test_the_profile_is_recorded_and_old_keys_load_as_yubikey5(tmp_path):
    path = tmp_path / "k.key"
    VirtualKey.create(path, profile="security-key").close()
    assert json.loads(path.read_text())["identity"]["profile"] == "security-key"
    with VirtualKey.load(path) as key:
        assert key.profile.name == "security-key"
        assert key.version == PROFILES["security-key"].firmware
    doc = json.loads(path.read_text())
    del doc["identity"]["profile"]  # a state file written before profiles existed
    path.write_text(json.dumps(doc))
    with VirtualKey.load(path) as key:
        assert key.profile.name == DEFAULT_PROFILE
        assert "FIDO_2_1" in Ctap2(fido_device(key)).get_info().versions
    doc["identity"]["profile"] = "yubikey-99"
    path.write_text(json.dumps(doc))
    with pytest.raises(InvalidInput, match="unknown key profile 'yubikey-99'"):
        VirtualKey.load(path)
    with pytest.raises(InvalidInput):
        VirtualKey.create(tmp_path / "other.key", profile="nope")


@pytest.mark.parametrize(("profile", "capabilities", "applets"), [
    ("yubikey-5", YK_CAPABILITY.OTP | YK_CAPABILITY.U2F | YK_CAPABILITY.PIV
     | YK_CAPABILITY.OPENPGP | YK_CAPABILITY.OATH | YK_CAPABILITY.HSMAUTH
     | YK_CAPABILITY.FIDO2,
     {"ManagementApplet", "OtpCardApplet", "OathApplet", "PivApplet", "OpenPgpApplet",
      "FidoCardApplet", "NdefApplet", "HsmAuthApplet", "SecurityDomainApplet"}),
    ("security-key", YK_CAPABILITY.U2F | YK_CAPABILITY.FIDO2,
     {"ManagementApplet", "FidoCardApplet"}),
])
def test_management_info_and_card_applets_follow_the_profile(tmp_path, profile,
                                                             capabilities, applets):
    from yubikit.core import TRANSPORT

    with VirtualKey.create(tmp_path / "k.key", profile=profile) as key:
        os_ = CardOS(key)
        assert {type(a).__name__ for a in os_.applets} == applets
        info = ManagementSession(DirectCardConnection(os_)).read_device_info()
        assert info.supported_capabilities[TRANSPORT.USB] == capabilities
        assert info.supported_capabilities[TRANSPORT.NFC] == capabilities
        assert info.config.enabled_capabilities[TRANSPORT.USB] == capabilities
        assert info.version == PROFILES[profile].firmware
        if profile == "security-key":  # no OATH applet to select
            from yubikit.core import ApplicationNotAvailableError
            from yubikit.oath import OathSession

            with pytest.raises(ApplicationNotAvailableError):
                OathSession(DirectCardConnection(os_))


def test_ykman_names_a_security_key_a_security_key_over_nfc_and_usb(tmp_path):
    """Device info carries the Security Key form-factor flag (0x40) and no serial: yubikit
    names the key from them over NFC, where it has no USB product ID to go by."""
    from yubikit.core import TRANSPORT, YUBIKEY
    from yubikit.management import FORM_FACTOR
    from yubikit.support import get_name, read_info

    with VirtualKey.create(tmp_path / "k.key", profile="security-key") as key:
        info = read_info(DirectCardConnection(CardOS(key), TRANSPORT.NFC))
        assert info.is_sky and info.serial is None
        assert info.form_factor is FORM_FACTOR.USB_A_KEYCHAIN
        assert get_name(info, None) == "Security Key NFC"
        assert get_name(info, YUBIKEY.SKY) == "Security Key NFC"  # over USB: PID 0x0120
    with VirtualKey.create(tmp_path / "y.key", profile="yubikey-5") as key:
        info = read_info(DirectCardConnection(CardOS(key), TRANSPORT.NFC))
        assert not info.is_sky and info.serial == key.serial
        assert get_name(info, None) == "YubiKey 5 NFC"


def test_security_key_usb_device_has_only_the_fido_interface(tmp_path):
    import usb.core
    import usb.util

    from hwtoken.emulator.serve import served
    from hwtoken.emulator.transports.pyusb_backend import UsbipBackend
    from hwtoken.emulator.usb import YubiKeyUsb

    with VirtualKey.create(tmp_path / "k.key", profile="security-key") as key:
        assert YubiKeyUsb(key).otp is None
        with served(key) as srv:
            backend = UsbipBackend(*srv.address[:2])
            try:
                dev = usb.core.find(idVendor=0x1050, backend=backend)
                assert (dev.idProduct, dev.product) == (0x0120, "Security Key NFC by Yubico")
                assert dev.bcdDevice == 0x0571
                cfg = dev[0]
                assert cfg.bNumInterfaces == 1
                assert cfg[(0, 0)].bInterfaceClass == 3  # HID: the FIDO interface
                usb.util.dispose_resources(dev)
            finally:
                backend.close()
