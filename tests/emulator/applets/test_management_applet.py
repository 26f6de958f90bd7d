"""The management applet byte for byte: its TLV helpers, the device-info answer of each
profile, WRITE CONFIG and the legacy SET MODE with every refusal by its status word, the
migration of keys made before PIV, and yubikit's ManagementSession on top (in process)."""

from __future__ import annotations

import pytest
from yubikit.core import TRANSPORT
from yubikit.core.smartcard import ApduError as YkApduError
from yubikit.management import (
    CAPABILITY,
    FORM_FACTOR,
    USB_INTERFACE,
    DeviceConfig,
    ManagementSession,
    Mode,
)

from hwtoken.emulator.applets.management import (
    CHALRESP_TIMEOUT_DEFAULT,
    SUPPORTED,
    ManagementApplet,
    parse_tlvs,
    tlv,
)
from hwtoken.emulator.iso7816 import SW, ApduError, CardOS
from hwtoken.emulator.key import VirtualKey
from hwtoken.emulator.transports.card_direct import DirectCardConnection

SELECT = bytes.fromhex("00a4040008a000000527471117")
YK5 = 0x33B  # OTP U2F OPENPGP PIV OATH HSMAUTH FIDO2: what a yubikey-5 supports
LOCK = bytes(range(1, 17))


@pytest.fixture
def key(tmp_path):
    k = VirtualKey.create(tmp_path / "k.key", serial=31337)
    yield k
    k.close()


def make_key(tmp_path, profile):
    return VirtualKey.create(tmp_path / f"{profile}.key", serial=0x01020304, profile=profile)


def card(key) -> CardOS:
    c = CardOS(key, strict=True)
    assert c.transmit(SELECT) == b"5.7.4\x90\x00"  # SELECT answers the version as text
    return c


def sw(answer: bytes) -> int:
    return int.from_bytes(answer[-2:], "big")


def apdu(ins: int, data: bytes = b"", p1: int = 0) -> bytes:
    return bytes([0, ins, p1, 0, len(data)]) + data if data else bytes([0, ins, p1, 0])


def write(c: CardOS, body: bytes) -> int:
    """WRITE CONFIG with ``body`` behind its own length byte; the status word."""
    answer = c.transmit(apdu(0x1C, bytes([len(body)]) + body))
    assert len(answer) == 2  # no data, whatever the outcome
    return sw(answer)


def state(key) -> dict:
    return ManagementApplet(key).state


# -- TLVs -------------------------------------------------------------------------------------
@pytest.mark.parametrize("n, head", [(0, "00"), (0x7F, "7f"), (0x80, "8180"), (0xFF, "81ff"),
                                     (0x100, "820100"), (0xFFFF, "82ffff")])
def test_tlv_lengths_take_the_shortest_form(n, head):
    value = bytes(range(256)) * (n // 256) + bytes(range(n % 256))
    encoded = tlv(0x42, value)
    assert encoded == b"\x42" + bytes.fromhex(head) + value
    assert parse_tlvs(encoded + tlv(7, b"x")) == [(0x42, value), (7, b"x")]


def test_parse_tlvs_reads_bare_tags_as_one_value_byte():
    bare = frozenset({0x78})
    assert parse_tlvs(bytes.fromhex("78020202abcd"), bare_tags=bare) == [
        (0x78, b"\x02"), (0x02, b"\xab\xcd")]
    with pytest.raises(ApduError):  # without: 78 02 0202, then ab with length cd
        parse_tlvs(bytes.fromhex("78020202abcd"))
    with pytest.raises(ApduError):  # a bare tag still needs its value byte
        parse_tlvs(b"\x78", bare_tags=bare)
    # a bare tag after another TLV: both read from where they start
    assert parse_tlvs(bytes.fromhex("0101007805"), bare_tags=bare) == [(1, b"\x00"),
                                                                      (0x78, b"\x05")]
    assert parse_tlvs(b"") == []
    assert parse_tlvs(b"\x01\x00") == [(1, b"")]
    # a long-form length that is the last thing in the list (an empty value)
    assert parse_tlvs(bytes.fromhex("018100")) == [(1, b"")]
    assert parse_tlvs(bytes.fromhex("0101aa02820000")) == [(1, b"\xaa"), (2, b"")]


@pytest.mark.parametrize("data", [
    "01",  # a tag without its length
    "0103aabb",  # shorter than its length
    "0180",  # long form with no length bytes
    "0183000001aa",  # three length bytes
    "0181",  # long form cut short
    "018201",  # two length bytes cut short
    "018105aabbcc",  # long form, shorter than its length
    "010100ff",  # a good TLV, then a tag alone
])
def test_parse_tlvs_refuses_malformed_lists_with_the_given_status(data):
    for error in (SW.INCORRECT_PARAMETERS, SW.WRONG_LENGTH):
        with pytest.raises(ApduError) as e:
            parse_tlvs(bytes.fromhex(data), error=error)
        assert e.value.sw == error
    with pytest.raises(ApduError) as e:
        parse_tlvs(bytes.fromhex(data))
    assert e.value.sw == SW.INCORRECT_PARAMETERS


# -- READ CONFIG ------------------------------------------------------------------------------
def test_device_info_of_a_yubikey_5_byte_for_byte(key):
    expected = bytes.fromhex(
        "0102033b"  # USB supported
        "020400007a69"  # serial 31337
        "0302033b"  # USB enabled
        "040101"  # form factor: USB-A keychain
        "0503050704"  # firmware 5.7.4
        "06020000"  # auto-eject timeout
        "07010f"  # challenge-response timeout: 15 s
        "080100"  # device flags
        "0a0100"  # not locked
        "0d02033b"  # NFC supported
        "0e02033b")  # NFC enabled
    assert card(key).transmit(apdu(0x1D)) == bytes([len(expected)]) + expected + b"\x90\x00"


def test_the_largest_serial_is_reported_unsigned(tmp_path):
    with VirtualKey.create(tmp_path / "big.key", serial=2**32 - 1) as big:
        assert dict(parse_tlvs(ManagementApplet(big).device_info()[1:]))[0x02] == b"\xff" * 4
        assert ManagementSession(DirectCardConnection(CardOS(big))).read_device_info().serial \
            == 2**32 - 1


def test_device_info_follows_the_profile(tmp_path):
    with make_key(tmp_path, "security-key") as sky:
        body = ManagementApplet(sky).device_info()
        fields = dict(parse_tlvs(body[1:]))
        assert body[0] == len(body) - 1
        assert 0x02 not in fields  # a Security Key hides its serial
        assert fields[0x04] == b"\x41"  # USB-A keychain | the Security Key flag
        assert fields[0x01] == fields[0x03] == fields[0x0D] == fields[0x0E] == b"\x02\x02"
        assert fields[0x05] == b"\x05\x07\x01"
    with make_key(tmp_path, "yubikey-bio") as bio:
        fields = dict(parse_tlvs(ManagementApplet(bio).device_info()[1:]))
        assert 0x0D not in fields and 0x0E not in fields  # USB only: no NFC TLVs
        assert fields[0x02] == b"\x01\x02\x03\x04" and fields[0x04] == b"\x06"
        assert ManagementApplet(bio).enabled("nfc") == 0
        assert state(bio)["nfc_enabled"] == 0


def test_read_config_takes_only_page_0_and_unknown_instructions_are_refused(key):
    c = card(key)
    assert sw(c.transmit(apdu(0x1D, p1=1))) == SW.INCORRECT_PARAMETERS
    assert sw(c.transmit(apdu(0x02))) == SW.INVALID_INSTRUCTION
    assert c.transmit(apdu(0x01, b"echo me")) == b"echo me\x90\x00"  # ECHO


class BareKey:
    """A key context with no profile (a test double an applet may be handed)."""

    serial = 7
    version = (5, 4, 3)

    def __init__(self):
        self.sections: dict = {}
        self.commits = 0
        self.reboots = 0
        self.store = self

    def section(self, name):
        return self.sections.setdefault(name, {})

    def commit(self):
        self.commits += 1

    def request_reboot(self):
        self.reboots += 1


def test_without_a_profile_a_key_is_a_yubikey_5_nfc_keychain():
    bare = BareKey()
    mgmt = ManagementApplet(bare)
    assert (mgmt.supported, mgmt.nfc) == (SUPPORTED, True)
    fields = dict(parse_tlvs(mgmt.device_info()[1:]))
    assert fields[0x02] == b"\x00\x00\x00\x07" and fields[0x04] == b"\x01"
    assert fields[0x0D] == fields[0x0E] == SUPPORTED.to_bytes(2, "big")
    assert mgmt.enabled() == mgmt.enabled("nfc") == SUPPORTED  # NFC unless told


# -- WRITE CONFIG -----------------------------------------------------------------------------
def test_write_config_sets_each_field_and_commits(key):
    c = card(key)
    assert write(c, tlv(0x03, b"\x02\x02") + tlv(0x0E, b"\x01") + tlv(0x06, b"\x01\x2c")
                 + tlv(0x07, b"\x09") + tlv(0x08, b"\x80")) == SW.OK
    st = state(key)
    assert (st["usb_enabled"], st["nfc_enabled"], st["auto_eject_timeout"],
            st["chalresp_timeout"], st["device_flags"]) == (0x202, 0x001, 300, 9, 0x80)
    mgmt = ManagementApplet(key)
    assert (mgmt.enabled("usb"), mgmt.enabled("nfc"), mgmt.enabled()) == (0x202, 0x001, 0x001)
    key.close()
    with VirtualKey.load(key.path) as again:  # committed before the answer
        assert state(again)["auto_eject_timeout"] == 300


def test_write_config_keeps_only_supported_bits_and_one_usb_application(tmp_path):
    with make_key(tmp_path, "security-key") as sky:
        c = CardOS(sky, strict=True)
        c.transmit(SELECT)
        assert write(c, tlv(0x03, b"\xff\xff") + tlv(0x0E, b"\x01\x01")) == SW.OK
        assert (state(sky)["usb_enabled"], state(sky)["nfc_enabled"]) == (0x202, 0)
        # OTP alone is nothing a Security Key has: no USB application would be left
        assert write(c, tlv(0x03, b"\x00\x01")) == SW.INCORRECT_PARAMETERS
        assert write(c, tlv(0x03, b"\x00\x00")) == SW.INCORRECT_PARAMETERS
        assert state(sky)["usb_enabled"] == 0x202
        assert write(c, tlv(0x0E, b"\x00\x00")) == SW.OK  # NFC may be left with nothing
        assert state(sky)["nfc_enabled"] == 0


@pytest.mark.parametrize("body", [
    tlv(0x03, b""), tlv(0x03, b"\x00\x00\x01"), tlv(0x0E, b""), tlv(0x0E, b"\x01\x02\x03"),
    tlv(0x06, b"\x00\x00\x01"), tlv(0x07, b"\x01\x02"), tlv(0x07, b""),
    tlv(0x08, b"\x00\x80"), tlv(0x0A, bytes(15)), tlv(0x0A, bytes(17)),
    b"\x03\x05\x00",  # malformed TLV
])
def test_write_config_refuses_bad_fields_and_changes_nothing(key, body):
    c = card(key)
    before = dict(state(key))
    assert write(c, tlv(0x07, b"\x05") + body) == SW.INCORRECT_PARAMETERS
    assert state(key) == before


def test_write_config_takes_values_up_to_their_size(key):
    c = card(key)
    assert write(c, tlv(0x03, b"\x01") + tlv(0x06, b"\x05") + tlv(0x0E, b"\x02")) == SW.OK
    assert (state(key)["usb_enabled"], state(key)["auto_eject_timeout"],
            state(key)["nfc_enabled"]) == (0x01, 5, 0x02)


@pytest.mark.parametrize("data", [b"", b"\x05" + tlv(0x07, b"\x05"), b"\x02" + tlv(0x07, b"\x05")])
def test_write_config_needs_its_exact_length_byte(key, data):
    c = card(key)
    assert sw(c.transmit(apdu(0x1C, data))) == SW.WRONG_LENGTH
    assert state(key)["chalresp_timeout"] == CHALRESP_TIMEOUT_DEFAULT


def test_a_challenge_response_timeout_of_0_means_the_default(key):
    c = card(key)
    assert write(c, tlv(0x07, b"\x03")) == SW.OK
    assert write(c, tlv(0x07, b"\x00")) == SW.OK
    assert state(key)["chalresp_timeout"] == CHALRESP_TIMEOUT_DEFAULT == 15


def test_the_lock_code_guards_every_write(key):
    c = card(key)
    assert write(c, tlv(0x0A, LOCK)) == SW.OK
    assert ManagementApplet(key).locked and state(key)["lock_code"] == LOCK
    for unlock in (b"", tlv(0x0B, bytes(16)), tlv(0x0B, LOCK[:15]), tlv(0x0B, LOCK + b"\x11"),
                   tlv(0x0B, LOCK[:15] + b"\x00")):
        assert write(c, unlock + tlv(0x07, b"\x05")) == SW.SECURITY_CONDITION_NOT_SATISFIED
    assert state(key)["chalresp_timeout"] == 15
    assert sw(c.transmit(apdu(0x16, b"\x06"))) == SW.SECURITY_CONDITION_NOT_SATISFIED
    assert dict(parse_tlvs(ManagementApplet(key).device_info()[1:]))[0x0A] == b"\x01"
    # the right code: the write applies, and an all-zero new code removes the lock
    assert write(c, tlv(0x0B, LOCK) + tlv(0x07, b"\x05") + tlv(0x0A, bytes(16))) == SW.OK
    assert state(key)["chalresp_timeout"] == 5
    assert not ManagementApplet(key).locked and state(key)["lock_code"] == b""
    assert write(c, tlv(0x07, b"\x06")) == SW.OK


def test_the_reboot_flag_reboots_after_the_write():
    bare = BareKey()
    mgmt = ManagementApplet(bare)
    mgmt.write_config(b"\x03" + tlv(0x07, b"\x05"))
    assert (bare.commits, bare.reboots) == (1, 0)
    mgmt.write_config(b"\x05" + tlv(0x07, b"\x06") + tlv(0x0C, b""))
    assert (bare.commits, bare.reboots) == (2, 1)
    assert mgmt.state["chalresp_timeout"] == 6


def test_ykman_writes_and_reads_the_config(key):
    mgmt = ManagementSession(DirectCardConnection(CardOS(key)))
    mgmt.write_device_config(DeviceConfig({TRANSPORT.USB: CAPABILITY.FIDO2 | CAPABILITY.PIV},
                                          auto_eject_timeout=20, challenge_response_timeout=4,
                                          device_flags=None), new_lock_code=LOCK)
    info = mgmt.read_device_info()
    assert info.config.enabled_capabilities[TRANSPORT.USB] == CAPABILITY.FIDO2 | CAPABILITY.PIV
    assert info.config.enabled_capabilities[TRANSPORT.NFC] == YK5
    assert (info.config.auto_eject_timeout, info.config.challenge_response_timeout) == (20, 4)
    assert info.is_locked and info.serial == 31337
    assert info.form_factor == FORM_FACTOR.USB_A_KEYCHAIN
    with pytest.raises(YkApduError) as e:
        mgmt.write_device_config(DeviceConfig({}, None, 5, None))
    assert e.value.sw == SW.SECURITY_CONDITION_NOT_SATISFIED


# -- SET MODE (YubiKey 4) ---------------------------------------------------------------------
OTP, FIDO, CCID = 0x001, 0x202, 0x138  # the capabilities behind each USB interface


@pytest.mark.parametrize("code, usb", [(0, OTP), (1, CCID), (2, OTP | CCID), (3, FIDO),
                                       (4, OTP | FIDO), (5, FIDO | CCID),
                                       (6, OTP | FIDO | CCID)])
def test_set_mode_codes_pick_the_usb_interfaces(key, code, usb):
    c = card(key)
    assert c.transmit(apdu(0x16, bytes([code]))) == b"\x90\x00"
    st = state(key)
    assert st["usb_enabled"] == usb
    # one byte: the timeouts and flags stay as they were
    assert (st["chalresp_timeout"], st["auto_eject_timeout"], st["device_flags"]) == (15, 0, 0)


def test_set_mode_refuses_code_7_and_no_data(key):
    c = card(key)
    assert sw(c.transmit(apdu(0x16, b"\x07"))) == SW.INCORRECT_PARAMETERS
    assert sw(c.transmit(apdu(0x16, b"\x87\x00\x00\x00"))) == SW.INCORRECT_PARAMETERS
    assert sw(c.transmit(apdu(0x16))) == SW.WRONG_LENGTH
    assert state(key)["usb_enabled"] == YK5


def test_set_mode_sets_the_timeouts_and_the_eject_flag(key):
    c = card(key)
    assert c.transmit(apdu(0x16, b"\x01\x07")) == b"\x90\x00"  # two bytes: chal-resp too
    assert (state(key)["chalresp_timeout"], state(key)["auto_eject_timeout"]) == (7, 0)
    assert c.transmit(apdu(0x16, b"\x01\x00\x2c")) == b"\x90\x00"  # three: not auto-eject
    assert (state(key)["chalresp_timeout"], state(key)["auto_eject_timeout"]) == (15, 0)
    state(key)["device_flags"] = 0x40  # another flag (remote wakeup) stays as it is
    assert c.transmit(apdu(0x16, b"\x81\x05\x2c\x01")) == b"\x90\x00"  # eject, 300 s (LE)
    st = state(key)
    assert (st["usb_enabled"], st["chalresp_timeout"], st["auto_eject_timeout"],
            st["device_flags"]) == (CCID, 5, 300, 0xC0)
    assert c.transmit(apdu(0x16, b"\x01\x05\x00\x00")) == b"\x90\x00"
    assert state(key)["device_flags"] == 0x40


def test_set_mode_masks_what_the_model_lacks_and_commits(tmp_path):
    with make_key(tmp_path, "security-key") as sky:
        ManagementApplet(sky).set_mode(b"\x06")
        assert state(sky)["usb_enabled"] == FIDO
    with VirtualKey.load(sky.path) as again:
        assert state(again)["usb_enabled"] == FIDO


def test_ykman_set_mode(key):
    mgmt = ManagementSession(DirectCardConnection(CardOS(key)))
    mgmt.set_mode(Mode(USB_INTERFACE.FIDO | USB_INTERFACE.CCID))
    assert mgmt.read_device_info().config.enabled_capabilities[TRANSPORT.USB] == FIDO | CCID


# -- keys made before PIV ---------------------------------------------------------------------
def test_a_key_from_before_piv_gains_what_its_model_has_since(key):
    sec = key.store.section("management")
    sec.clear()
    sec.update({"usb_enabled": 0x202, "nfc_enabled": 0x001})  # OTP and OATH off over USB
    st = state(key)
    assert (st["usb_enabled"], st["nfc_enabled"], st["supported"]) == (0x31A, 0x119, YK5)
    assert state(key)["usb_enabled"] == 0x31A  # applying it again changes nothing


def test_a_key_from_before_piv_without_nfc_enabled_gets_everything_over_nfc(key):
    sec = key.store.section("management")
    sec.clear()
    sec["usb_enabled"] = 0x223
    assert (state(key)["usb_enabled"], state(key)["nfc_enabled"]) == (YK5, YK5)


def test_an_application_switched_off_after_piv_stays_off(key):
    sec = key.store.section("management")
    sec.clear()
    sec.update({"usb_enabled": 0x203, "nfc_enabled": 0x203, "supported": YK5})
    assert (state(key)["usb_enabled"], state(key)["nfc_enabled"]) == (0x203, 0x203)


def test_a_usb_only_model_gains_nothing_over_nfc(tmp_path):
    with make_key(tmp_path, "yubikey-bio") as bio:
        sec = bio.store.section("management")
        sec.clear()
        sec.update({"usb_enabled": 0x002, "supported": 0x002})  # U2F, before FIDO2
        st = state(bio)
        assert (st["usb_enabled"], st["supported"]) == (0x202, 0x202)
        assert sec["nfc_enabled"] == 0  # nothing gained over an NFC it lacks
