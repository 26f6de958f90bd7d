"""Management, OTP, FIDO and NDEF applets behind the card OS, driven by yubikit/fido2
in-process (no pcscd), plus hypothesis fuzzing of every applet's command handling."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from yubikit.core import TRANSPORT, ApplicationNotAvailableError
from yubikit.core.smartcard import ApduError
from yubikit.management import (
    CAPABILITY,
    FORM_FACTOR,
    USB_INTERFACE,
    DeviceConfig,
    ManagementSession,
    Mode,
)
from yubikit.oath import OathSession
from yubikit.support import get_name, read_info
from yubikit.yubiotp import SLOT, HmacSha1SlotConfiguration, YubiOtpSession

from hwtoken.emulator.applets.management import device_info_tlvs
from hwtoken.emulator.iso7816 import SW, CardOS
from hwtoken.emulator.key import VirtualKey
from hwtoken.emulator.transports.card_direct import DirectCardConnection

AIDS = {
    "management": "a000000527471117",
    "otp": "a0000005272001",
    "oath": "a0000005272101",
    "fido": "a0000006472f0001",
    "ndef": "d2760000850101",
    "piv": "a000000308000010000100",
}


@pytest.fixture
def key(tmp_path):
    k = VirtualKey.create(tmp_path / "k.key", serial=31337)
    yield k
    k.close()


def test_read_info_is_a_yubikey_5_nfc(key):
    info = read_info(DirectCardConnection(CardOS(key)))
    assert info.serial == 31337 and tuple(info.version) == (5, 7, 4)
    assert info.form_factor == FORM_FACTOR.USB_A_KEYCHAIN
    assert get_name(info, None) == "YubiKey 5 NFC"
    usb = info.supported_capabilities[TRANSPORT.USB]
    assert usb == (CAPABILITY.OTP | CAPABILITY.U2F | CAPABILITY.FIDO2 | CAPABILITY.OATH
                   | CAPABILITY.PIV | CAPABILITY.OPENPGP | CAPABILITY.HSMAUTH)
    assert info.config.enabled_capabilities[TRANSPORT.NFC] == usb
    assert not info.is_locked


def test_device_info_tlvs_match_the_otp_path(key):
    assert device_info_tlvs(key) == CardOS(key).applets[0].device_info()[1:]


def test_write_config_disables_oath_over_nfc_and_persists(key):
    conn = DirectCardConnection(CardOS(key))
    mgmt = ManagementSession(conn)
    mgmt.write_device_config(DeviceConfig({TRANSPORT.NFC: CAPABILITY.OTP | CAPABILITY.FIDO2}))
    info = mgmt.read_device_info()
    assert info.config.enabled_capabilities[TRANSPORT.NFC] == CAPABILITY.OTP | CAPABILITY.FIDO2
    with pytest.raises(ApplicationNotAvailableError):
        OathSession(DirectCardConnection(CardOS(key)))
    path = key.path
    key.close()
    again = VirtualKey.load(path)
    try:
        info = read_info(DirectCardConnection(CardOS(again)))
        assert CAPABILITY.OATH not in info.config.enabled_capabilities[TRANSPORT.NFC]
    finally:
        again.close()


def test_set_mode_writes_timeout_0_which_reads_back_as_15(key):
    """yubikit's set_mode on firmware 5 writes DeviceConfig(chalresp_timeout=0): a YubiKey
    takes 0 as its default, 15 seconds, and reports that."""
    mgmt = ManagementSession(DirectCardConnection(key))
    mgmt.set_mode(Mode(USB_INTERFACE.OTP | USB_INTERFACE.FIDO | USB_INTERFACE.CCID))
    info = mgmt.read_device_info()
    assert info.config.challenge_response_timeout == 15
    mgmt.write_device_config(DeviceConfig(challenge_response_timeout=0))
    assert mgmt.read_device_info().config.challenge_response_timeout == 15
    mgmt.write_device_config(DeviceConfig(challenge_response_timeout=3))
    assert mgmt.read_device_info().config.challenge_response_timeout == 3


def test_config_lock_code(key):
    mgmt = ManagementSession(DirectCardConnection(CardOS(key)))
    code = bytes(range(16))
    mgmt.write_device_config(new_lock_code=code)
    assert mgmt.read_device_info().is_locked
    with pytest.raises(ApduError) as exc:
        mgmt.write_device_config(DeviceConfig(challenge_response_timeout=5))
    assert exc.value.sw == SW.SECURITY_CONDITION_NOT_SATISFIED
    mgmt.write_device_config(DeviceConfig(challenge_response_timeout=5), cur_lock_code=code,
                             new_lock_code=b"\0" * 16)
    info = mgmt.read_device_info()
    assert not info.is_locked and info.config.challenge_response_timeout == 5


def test_otp_session_over_the_card(key):
    import hashlib
    import hmac

    otp = YubiOtpSession(DirectCardConnection(CardOS(key)))
    assert otp.get_serial() == 31337
    secret = b"\x11" * 20
    otp.put_configuration(SLOT.ONE, HmacSha1SlotConfiguration(secret))
    assert otp.calculate_hmac_sha1(SLOT.ONE, b"abc") == hmac.new(secret, b"abc",
                                                                 hashlib.sha1).digest()
    otp.delete_slot(SLOT.ONE)
    assert not otp.get_config_state().is_configured(SLOT.ONE)


def test_fido_select_and_ctap2_get_info(key):
    from fido2.ctap2 import Info

    card = CardOS(key)
    assert card.transmit(bytes.fromhex("00a4040008" + AIDS["fido"])) == b"U2F_V2\x90\x00"
    resp = card.transmit(bytes.fromhex("80100000010400"))
    data = resp[:-2]
    while resp[-2] == 0x61:
        resp = card.transmit(bytes.fromhex("00c0000000"))
        data += resp[:-2]
    assert resp[-2:] == b"\x90\x00" and data[0] == 0
    import fido2.cbor as cbor

    info = Info.from_dict(cbor.decode(data[1:]))
    assert "FIDO_2_0" in info.versions and bytes(info.aaguid) == key.aaguid


def test_u2f_version_over_iso(key):
    card = CardOS(key)
    card.transmit(bytes.fromhex("00a4040008" + AIDS["fido"]))
    assert card.transmit(bytes.fromhex("0003000000")) == b"U2F_V2\x90\x00"


def test_fido_select_says_fido_2_0_while_always_uv_disables_u2f(key):
    from fido2.ctap2 import ClientPin, Config, Ctap2

    from hwtoken.emulator import fido_device

    ctap = Ctap2(fido_device(key))
    client_pin = ClientPin(ctap)
    client_pin.set_pin("123456")
    token = client_pin.get_pin_token("123456", ClientPin.PERMISSION.AUTHENTICATOR_CFG)
    Config(ctap, client_pin.protocol, token).toggle_always_uv()
    card = CardOS(key)
    assert card.transmit(bytes.fromhex("00a4040008" + AIDS["fido"])) == b"FIDO_2_0\x90\x00"
    assert card.transmit(bytes.fromhex("0003000000"))[-2:] == b"\x6d\x00"
    Config(ctap, client_pin.protocol, token).toggle_always_uv()
    assert card.transmit(bytes.fromhex("00a4040008" + AIDS["fido"])) == b"U2F_V2\x90\x00"


def test_ndef_is_not_restricted(key):
    from ykman.util import is_nfc_restricted

    assert is_nfc_restricted(DirectCardConnection(CardOS(key))) is False


commands = st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255),
                              st.integers(0, 255), st.binary(max_size=64)), max_size=6)


@pytest.mark.parametrize("applet", sorted(AIDS))
@given(cmds=commands)
@settings(max_examples=60)
def test_applet_fuzz_always_answers(tmp_path_factory, applet, cmds):
    k = VirtualKey.create(tmp_path_factory.mktemp("fz") / "f.key")
    try:
        card = CardOS(k, strict=True)
        aid = bytes.fromhex(AIDS[applet])
        assert card.transmit(bytes([0, 0xA4, 4, 0, len(aid)]) + aid)[-2:] == b"\x90\x00"
        for cla, ins, p1, p2, data in cmds:
            if ins == 0xA4 and p1 == 0x04:
                continue
            raw = struct.pack(">BBBB", cla, ins, p1, p2)
            raw += bytes([len(data)]) + data if data else b""
            assert len(card.transmit(raw)) >= 2
    finally:
        k.close()
