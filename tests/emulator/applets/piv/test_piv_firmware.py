"""The PIV applet answers as the firmware version its key was made with: 3DES as the
default management key before 5.7, no Ed25519/X25519/RSA-3072/4096 or MOVE KEY before
5.7, no AES management key before 5.4, no metadata before 5.3 -- what yubikit checks on
its side, refused by the card too (raw APDUs, which skip yubikit's checks)."""

from __future__ import annotations

import pytest
from ykman.piv import get_piv_info
from yubikit.core import NotSupportedError
from yubikit.piv import (
    DEFAULT_MANAGEMENT_KEY,
    KEY_TYPE,
    MANAGEMENT_KEY_TYPE,
    PIN_POLICY,
    SLOT,
    TOUCH_POLICY,
    PivSession,
)

from hwtoken.emulator import tlv
from hwtoken.emulator.applets.piv import constants as C
from hwtoken.emulator.applets.piv import firmware
from hwtoken.emulator.applets.piv.keys import encrypt_block
from hwtoken.emulator.iso7816 import SW, CardOS
from hwtoken.emulator.key import VirtualKey
from hwtoken.emulator.transports.card_direct import DirectCardConnection

SELECT_PIV = bytes.fromhex("00a4040005a000000308")


@pytest.fixture
def make_key(tmp_path):
    made = []

    def make(version):
        key = VirtualKey.create(tmp_path / f"{len(made)}.key", serial=5430000,
                                version=version)
        made.append(key)
        return key

    yield make
    for key in made:
        key.close()


class Card:
    """A PIV card of ``key`` authenticated with the default management key, for APDUs."""

    def __init__(self, key: VirtualKey, mgm_type: MANAGEMENT_KEY_TYPE) -> None:
        self.os = CardOS(key, strict=True)
        self.os.power_on()
        assert self.sw(self.os.transmit(SELECT_PIV)) == SW.OK
        challenge = self.send(0x87, mgm_type, 0x9B, tlv.tlv(0x7C, tlv.tlv(0x81, b"")))
        plain = tlv.unpack(0x81, tlv.unpack(0x7C, challenge))
        response = encrypt_block(firmware.MANAGEMENT_KEY_TYPE(mgm_type), DEFAULT_MANAGEMENT_KEY,
                                 plain)
        self.send(0x87, mgm_type, 0x9B, tlv.tlv(0x7C, tlv.tlv(0x82, response)))

    @staticmethod
    def sw(resp: bytes) -> int:
        return int.from_bytes(resp[-2:], "big")

    def status(self, ins: int, p1: int, p2: int, data: bytes = b"") -> int:
        head = bytes([0, ins, p1, p2])
        return self.sw(self.os.transmit(head + (bytes([len(data)]) + data if data else b"")))

    def send(self, ins: int, p1: int, p2: int, data: bytes = b"") -> bytes:
        resp = self.os.transmit(bytes([0, ins, p1, p2, len(data)]) + data)
        assert self.sw(resp) == SW.OK, hex(self.sw(resp))
        return resp[:-2]

    def generate(self, slot: int, key_type: KEY_TYPE, policies: bytes = b"") -> int:
        template = tlv.tlv(0xAC, tlv.tlv(0x80, bytes([key_type])) + policies)
        return self.status(0x47, 0x00, slot, template)


def test_a_5_4_key_has_a_3des_management_key_and_says_so(make_key):
    key = make_key((5, 4, 3))
    s = PivSession(DirectCardConnection(CardOS(key)))
    assert tuple(s.version) == (5, 4, 3)
    assert s.management_key_type is MANAGEMENT_KEY_TYPE.TDES
    s.authenticate(DEFAULT_MANAGEMENT_KEY)  # the same 24 bytes, as 3DES
    assert get_piv_info(s)[0]["Management key algorithm"] == "TDES"
    s.generate_key(SLOT.AUTHENTICATION, KEY_TYPE.ECCP256)
    with pytest.raises(NotSupportedError):  # yubikit's own check, from the version
        s.generate_key(SLOT.SIGNATURE, KEY_TYPE.ED25519)
    s.set_management_key(MANAGEMENT_KEY_TYPE.AES128, bytes(16))  # AES from 5.4
    assert PivSession(DirectCardConnection(CardOS(key))).management_key_type \
        is MANAGEMENT_KEY_TYPE.AES128


def test_a_5_7_key_defaults_to_aes192(make_key):
    s = PivSession(DirectCardConnection(CardOS(make_key((5, 7, 1)))))
    assert s.management_key_type is MANAGEMENT_KEY_TYPE.AES192


@pytest.mark.parametrize("key_type", [KEY_TYPE.ED25519, KEY_TYPE.X25519, KEY_TYPE.RSA3072,
                                      KEY_TYPE.RSA4096], ids=str)
def test_key_types_of_5_7_are_refused_before_it(make_key, key_type):
    card = Card(make_key((5, 4, 3)), MANAGEMENT_KEY_TYPE.TDES)
    assert card.generate(SLOT.AUTHENTICATION, key_type) == SW.INCORRECT_PARAMETERS
    part = 0x07 if key_type is KEY_TYPE.ED25519 else 0x08
    if key_type.name.startswith("RSA"):
        part, value = 0x01, bytes(range(64))  # refused before its size is looked at
    else:
        value = bytes(range(32))
    assert card.status(0xFE, key_type, SLOT.AUTHENTICATION, tlv.tlv(part, value)) \
        == SW.INCORRECT_PARAMETERS
    newer = Card(make_key((5, 7, 0)), MANAGEMENT_KEY_TYPE.AES192)
    if not key_type.name.startswith("RSA"):  # (RSA generation is slow; 5.7 makes them)
        assert newer.generate(SLOT.AUTHENTICATION, key_type) == SW.OK


def test_move_key_is_5_7_metadata_5_3_aes_5_4(make_key):
    card = Card(make_key((5, 4, 3)), MANAGEMENT_KEY_TYPE.TDES)
    assert card.generate(SLOT.AUTHENTICATION, KEY_TYPE.ECCP256) == SW.OK
    assert card.status(0xF6, SLOT.RETIRED1, SLOT.AUTHENTICATION) == SW.INVALID_INSTRUCTION
    assert card.status(0xF7, 0x00, SLOT.AUTHENTICATION) == SW.OK
    old = Card(make_key((5, 2, 7)), MANAGEMENT_KEY_TYPE.TDES)
    assert old.status(0xF7, 0x00, 0x80) == SW.INVALID_INSTRUCTION
    aes128 = bytes([MANAGEMENT_KEY_TYPE.AES128]) + tlv.tlv(0x9B, bytes(16))
    assert old.status(0xFF, 0xFF, 0xFF, aes128) == SW.INCORRECT_PARAMETERS
    assert old.status(0xF8, 0x00, 0x00) == SW.OK  # GET SERIAL: 5.0 on
    tdes = bytes([MANAGEMENT_KEY_TYPE.TDES]) + tlv.tlv(0x9B, bytes(range(24)))
    assert old.status(0xFF, 0xFF, 0xFF, tdes) == SW.OK


def test_policies_and_roca_on_yubikey_4(make_key):
    touch_cached = tlv.tlv(0xAB, bytes([TOUCH_POLICY.CACHED]))
    card = Card(make_key((4, 2, 6)), MANAGEMENT_KEY_TYPE.TDES)
    assert card.generate(SLOT.AUTHENTICATION, KEY_TYPE.ECCP256, touch_cached) \
        == SW.INCORRECT_PARAMETERS  # cached touch: 4.3
    assert card.generate(SLOT.AUTHENTICATION, KEY_TYPE.RSA2048) \
        == SW.INCORRECT_PARAMETERS  # 4.2.0-4.3.4: RSA keys are imported, not generated
    assert card.status(0xF9, SLOT.AUTHENTICATION, 0x00) == SW.INVALID_INSTRUCTION  # attest
    assert card.generate(SLOT.AUTHENTICATION, KEY_TYPE.ECCP384,
                         tlv.tlv(0xAA, bytes([PIN_POLICY.ALWAYS]))) == SW.OK


@pytest.mark.parametrize(("version", "key_type", "generate", "supported"), [
    ((5, 7, 0), KEY_TYPE.ED25519, True, True),
    ((5, 6, 9), KEY_TYPE.X25519, False, False),
    ((3, 9, 0), KEY_TYPE.ECCP384, False, False),
    ((4, 3, 4), KEY_TYPE.RSA1024, True, False),
    ((4, 3, 4), KEY_TYPE.RSA1024, False, True),
    ((4, 3, 5), KEY_TYPE.RSA2048, True, True),
])
def test_key_support_follows_yubikit(version, key_type, generate, supported):
    from yubikit.core import Version
    from yubikit.piv import _do_check_key_support

    try:
        _do_check_key_support(Version(*version), key_type, PIN_POLICY.DEFAULT,
                              TOUCH_POLICY.DEFAULT, generate)
        yubikit_says = True
    except NotSupportedError:
        yubikit_says = False
    assert yubikit_says == supported
    ours = firmware.KEY_TYPE(key_type.value)
    assert firmware.supports_key_type(version, ours, generate=generate) == supported


# -- each threshold, on both sides (the functions yubikit's checks are mirrored in) ---------
# (the applet's own enums: the functions compare members by identity)
@pytest.mark.parametrize(("version", "expected"), [((5, 2, 9), False), ((5, 3, 0), True)])
def test_metadata_from_5_3_exactly(version, expected):
    from hwtoken.emulator.applets.piv.constants import INS_GET_METADATA

    assert firmware.has_instruction(version, INS_GET_METADATA) is expected
    assert firmware.has_instruction(version, 0x20) is True  # VERIFY: no firmware lacks it


@pytest.mark.parametrize(("version", "generates"), [
    ((4, 1, 9), True), ((4, 2, 0), False), ((4, 3, 4), False), ((4, 3, 5), True)])
def test_rsa_generation_is_withdrawn_on_the_roca_firmware_only(version, generates):
    assert firmware.supports_key_type(version, C.KEY_TYPE.RSA2048, generate=True) is generates
    assert firmware.supports_key_type(version, C.KEY_TYPE.RSA2048, generate=False) is True
    assert firmware.supports_key_type(version, C.KEY_TYPE.ECCP256, generate=True) is True


def test_key_types_without_a_threshold_are_on_every_version():
    # RSA-2048 and P-256 have no entry: nothing, not even a version 0.0.0, is below it
    for key_type in (C.KEY_TYPE.RSA2048, C.KEY_TYPE.ECCP256):
        assert firmware.supports_key_type((0, 0, 0), key_type, generate=False) is True


@pytest.mark.parametrize(("version", "aes"), [((5, 3, 9), False), ((5, 4, 0), True)])
def test_aes_management_keys_from_5_4_exactly(version, aes):
    assert firmware.supports_management_key(version, C.MANAGEMENT_KEY_TYPE.AES128) is aes
    assert firmware.supports_management_key(version, C.MANAGEMENT_KEY_TYPE.TDES) is True


@pytest.mark.parametrize(("version", "pin", "touch", "taken"), [
    ((3, 9, 9), C.PIN_POLICY.DEFAULT, C.TOUCH_POLICY.DEFAULT, True),
    ((3, 9, 9), C.PIN_POLICY.ONCE, C.TOUCH_POLICY.DEFAULT, False),
    ((3, 9, 9), C.PIN_POLICY.DEFAULT, C.TOUCH_POLICY.ALWAYS, False),
    ((4, 0, 0), C.PIN_POLICY.ONCE, C.TOUCH_POLICY.ALWAYS, True),
    ((4, 2, 9), C.PIN_POLICY.DEFAULT, C.TOUCH_POLICY.CACHED, False),
    ((4, 3, 0), C.PIN_POLICY.DEFAULT, C.TOUCH_POLICY.CACHED, True),
])
def test_policies_from_4_0_and_cached_touch_from_4_3_exactly(version, pin, touch, taken):
    assert firmware.supports_policies(version, pin, touch) is taken
