"""FIDO2 and U2F answer only where the management applet has them enabled: over USB
(CTAPHID) and over NFC (the card face) each by its own set, as ``ykman config usb`` /
``ykman config nfc`` leave them. (With both off over USB the FIDO interface is gone
altogether: test_usb_reenumeration.py.)"""

from __future__ import annotations

import pytest
from fido2.ctap import CtapError
from fido2.ctap1 import ApduError, Ctap1
from fido2.ctap2 import Ctap2
from fido2.hid import CAPABILITY, CTAPHID
from yubikit.core import TRANSPORT
from yubikit.management import CAPABILITY as APP
from yubikit.management import DeviceConfig, ManagementSession

from hwtoken.emulator import fido_device
from hwtoken.emulator.iso7816 import CardOS
from hwtoken.emulator.transports.card_direct import DirectCardConnection

SELECT_FIDO = bytes.fromhex("00a4040008a0000006472f0001")
U2F_VERSION = bytes.fromhex("0003000000")
GET_INFO_OVER_NFC = bytes.fromhex("80100000010400")
OTHERS = APP.OTP | APP.OATH | APP.PIV


def enable(key, transport: TRANSPORT, capabilities: APP) -> None:
    ManagementSession(DirectCardConnection(CardOS(key))).write_device_config(
        DeviceConfig({transport: capabilities}))


def test_fido2_disabled_over_usb_leaves_ctap1_only(virtual_key):
    enable(virtual_key, TRANSPORT.USB, OTHERS | APP.U2F)
    dev = fido_device(virtual_key)
    assert not dev.capabilities & CAPABILITY.CBOR  # so hosts do not try CTAP2
    with pytest.raises(CtapError) as exc:
        dev.call(CTAPHID.CBOR, b"\x04")  # getInfo
    assert exc.value.code == CtapError.ERR.INVALID_COMMAND
    assert Ctap1(dev).get_version() == "U2F_V2"


def test_u2f_disabled_over_usb_leaves_ctap2_only(virtual_key):
    enable(virtual_key, TRANSPORT.USB, OTHERS | APP.FIDO2)
    dev = fido_device(virtual_key)
    with pytest.raises(ApduError) as exc:
        Ctap1(dev).get_version()
    assert exc.value.code == 0x6D00
    assert "FIDO_2_0" in Ctap2(dev).get_info().versions


def test_nfc_has_its_own_enabled_set(virtual_key):
    enable(virtual_key, TRANSPORT.NFC, OTHERS | APP.U2F)  # FIDO2 off over NFC only
    card = CardOS(virtual_key)
    assert card.transmit(SELECT_FIDO) == b"U2F_V2\x90\x00"
    assert card.transmit(GET_INFO_OVER_NFC) == b"\x6d\x00"
    assert card.transmit(U2F_VERSION) == b"U2F_V2\x90\x00"
    assert Ctap2(fido_device(virtual_key)).get_info()  # USB keeps FIDO2
    enable(virtual_key, TRANSPORT.NFC, OTHERS | APP.FIDO2)  # U2F off over NFC
    assert card.transmit(SELECT_FIDO) == b"FIDO_2_0\x90\x00"
    assert card.transmit(U2F_VERSION) == b"\x6d\x00"
    info = card.transmit(GET_INFO_OVER_NFC)
    assert info[0] == 0x00 and info[-2] == 0x61  # CTAP2_OK, and more follows (GET RESPONSE)
