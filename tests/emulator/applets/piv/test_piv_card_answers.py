"""The PIV applet's exact answers to raw APDUs, in process: the bytes of SELECT, discovery,
metadata and the F9 certificate object, the status word of every refusal (P1/P2, lengths,
references, firmware gates), and what a command leaves behind (retry counters, policies,
objects). yubikit checks much of this on its side, so these go around it."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from yubikit.piv import DEFAULT_MANAGEMENT_KEY, PIN_POLICY, SLOT, PivSession

from hwtoken.emulator import tlv
from hwtoken.emulator.applets.piv import keys
from hwtoken.emulator.applets.piv.constants import MANAGEMENT_KEY_TYPE
from hwtoken.emulator.iso7816 import SW, CardOS
from hwtoken.emulator.key import VirtualKey
from hwtoken.emulator.presence import DenyAlways
from hwtoken.emulator.transports.card_direct import DirectCardConnection

SELECT_PIV = bytes.fromhex("00a4040005a000000308")
PIN = b"123456\xff\xff"
PUK = b"12345678"
P1P2 = 0x6A86  # SP 800-73-4's "incorrect P1 or P2"


@pytest.fixture
def make_key(tmp_path):
    made: list[VirtualKey] = []

    def make(version=None) -> VirtualKey:
        made.append(VirtualKey.create(tmp_path / f"{len(made)}.key", serial=1234567,
                                      version=version))
        return made[-1]

    yield make
    for k in made:
        k.close()


@pytest.fixture
def key(make_key):
    return make_key()


class Card:
    """Raw APDUs to the PIV applet of ``key`` (strict: an internal error fails the test)."""

    def __init__(self, key: VirtualKey) -> None:
        self.key = key
        self.os = CardOS(key, strict=True)
        self.os.power_on()
        self.select_answer = self.os.transmit(SELECT_PIV)

    def raw(self, ins: int, p1: int, p2: int, data: bytes = b"", cla: int = 0) -> bytes:
        head = bytes([cla, ins, p1, p2])
        if not data:
            resp = self.os.transmit(head)
        elif len(data) < 256:
            resp = self.os.transmit(head + bytes([len(data)]) + data)
        else:
            resp = self.os.transmit(head + b"\0" + len(data).to_bytes(2, "big") + data)
        body = b""
        while resp[-2] == 0x61:  # more to come: GET RESPONSE
            body += resp[:-2]
            resp = self.os.transmit(b"\x00\xc0\x00\x00\x00")
        return body + resp

    def sw(self, ins: int, p1: int, p2: int, data: bytes = b"", cla: int = 0) -> int:
        return int.from_bytes(self.raw(ins, p1, p2, data, cla)[-2:], "big")

    def ok(self, ins: int, p1: int, p2: int, data: bytes = b"") -> bytes:
        resp = self.raw(ins, p1, p2, data)
        assert resp[-2:] == b"\x90\x00", resp.hex()
        return resp[:-2]

    def authenticate(self) -> None:
        """External authentication with the default AES-192 management key."""
        answer = self.ok(0x87, 0x0A, 0x9B, tlv.tlv(0x7C, tlv.tlv(0x81)))
        challenge = tlv.unpack(0x81, tlv.unpack(0x7C, answer))
        assert len(challenge) == 16
        response = keys.encrypt_block(MANAGEMENT_KEY_TYPE.AES192, DEFAULT_MANAGEMENT_KEY,
                                      challenge)
        assert self.ok(0x87, 0x0A, 0x9B, tlv.tlv(0x7C, tlv.tlv(0x82, response))) == b""

    def verify(self, pin: bytes = PIN) -> int:
        return self.sw(0x20, 0x00, 0x80, pin)

    def generate(self, slot: int, algorithm: int = 0x11, extra: bytes = b"") -> int:
        return self.sw(0x47, 0x00, slot, tlv.tlv(0xAC, tlv.tlv(0x80, bytes([algorithm]))
                                                 + extra))

    def metadata(self, ref: int) -> dict[int, bytes]:
        return tlv.parse_dict(self.ok(0xF7, 0x00, ref))

    def get_data(self, object_id: bytes) -> bytes:
        return self.raw(0xCB, 0x3F, 0xFF, tlv.tlv(0x5C, object_id))

    def put_data(self, object_id: bytes, content: bytes) -> int:
        return self.sw(0xDB, 0x3F, 0xFF, tlv.tlv(0x5C, object_id) + tlv.tlv(0x53, content))


@pytest.fixture
def card(key) -> Card:
    return Card(key)


def ec_import_data(private: ec.EllipticCurvePrivateKey, extra: bytes = b"") -> bytes:
    return tlv.tlv(0x06, private.private_numbers().private_value.to_bytes(32, "big")) + extra


# -- identity -------------------------------------------------------------------------------
def test_select_discovery_version_and_serial_bytes(card):
    assert card.select_answer == bytes.fromhex(
        "61114f0600001000010079074f05a000000308" "9000")
    assert card.get_data(b"\x7e") == bytes.fromhex(  # its own tag, no 53 around it
        "7e124f0ba0000003080000100001005f2f024000" "9000")
    assert card.ok(0xFD, 0, 0) == bytes(card.key.version)
    assert card.ok(0xF8, 0, 0) == (1234567).to_bytes(4, "big")


def test_class_and_unknown_instructions(make_key):
    card = Card(make_key())
    assert card.sw(0xFD, 0, 0, cla=0x80) == SW.CLASS_NOT_SUPPORTED
    assert card.sw(0x99, 0, 0) == SW.INVALID_INSTRUCTION
    old = Card(make_key((5, 2, 7)))
    assert old.sw(0xF7, 0x00, 0x80) == SW.INVALID_INSTRUCTION  # metadata came with 5.3


def test_the_f9_certificate_object_is_cert_info_and_lrc(card):
    content = tlv.parse(tlv.unpack(0x53, card.get_data(bytes.fromhex("5fff01"))[:-2]))
    assert [tag for tag, _ in content] == [0x70, 0x71, 0xFE]
    assert content[1][1] == b"\0" and content[2][1] == b""


# -- PIN and PUK ----------------------------------------------------------------------------
def test_verify_p1_p2_and_forgetting_with_data(card):
    assert card.sw(0x20, 0xFF, 0x80, PIN) == SW.INCORRECT_PARAMETERS
    assert card.sw(0x20, 0x01, 0x80, PIN) == P1P2
    assert card.sw(0x20, 0x00, 0x81, PIN) == SW.REFERENCE_DATA_NOT_FOUND
    assert card.sw(0x20, 0x00, 0x80) == 0x63C3  # none of these spent a try


def test_pin_metadata_bytes_and_retries_above_15(card):
    assert card.ok(0xF7, 0x00, 0x80) == bytes.fromhex("0101ff" "050101" "06020303")
    assert card.ok(0xF7, 0x00, 0x81) == bytes.fromhex("0101ff" "050101" "06020303")
    assert card.sw(0xF7, 0x01, 0x80) == P1P2
    card.authenticate()
    assert card.verify() == SW.OK
    assert card.ok(0xFA, 20, 9) == b""
    assert card.metadata(0x80)[0x06] == bytes([20, 20])
    assert card.metadata(0x81)[0x06] == bytes([9, 9])
    assert card.ok(0x20, 0xFF, 0x80) == b""
    assert card.sw(0x20, 0x00, 0x80) == 0x63CF  # 20 left, shown as at most 15
    assert card.verify(b"000000\xff\xff") == 0x63CF  # 19 left
    assert card.metadata(0x80)[0x06] == bytes([20, 19])


def test_set_pin_retries_needs_both_counts(card):
    card.authenticate()
    assert card.verify() == SW.OK
    assert card.sw(0xFA, 0, 5) == SW.INCORRECT_PARAMETERS
    assert card.sw(0xFA, 5, 0) == SW.INCORRECT_PARAMETERS
    assert card.metadata(0x80)[0x06] == bytes([3, 3])


@pytest.mark.parametrize("new", [b"12345\xff\xff\xff", b"123\xff4567", b"\xff" * 8])
def test_a_new_pin_must_be_6_to_8_bytes_then_ff(card, new):
    assert card.sw(0x24, 0x00, 0x80, PIN + new) == SW.INCORRECT_PARAMETERS
    assert card.verify() == SW.OK  # the old PIN stays
    assert card.metadata(0x80)[0x06] == bytes([3, 3])


@pytest.mark.parametrize("new", [b"123457\xff\xff", b"12345678", b"1234XXXX"])
def test_new_pins_of_6_and_8_bytes_are_taken(card, new):
    assert card.ok(0x24, 0x00, 0x80, PIN + new) == b""
    assert card.verify() == 0x63C2
    assert card.verify(new) == SW.OK


def test_change_reference_and_reset_retry_refusals(card):
    for ins in (0x24, 0x2C):
        assert card.sw(ins, 0x01, 0x80, PIN + PIN) == P1P2
        assert card.sw(ins, 0x00, 0x82, PIN + PIN) == SW.REFERENCE_DATA_NOT_FOUND
        assert card.sw(ins, 0x00, 0x80, PIN) == SW.INCORRECT_PARAMETERS
    assert card.sw(0x2C, 0x00, 0x81, PUK + PIN) == SW.REFERENCE_DATA_NOT_FOUND
    assert card.metadata(0x80)[0x06] == bytes([3, 3])
    assert card.metadata(0x81)[0x06] == bytes([3, 3])


def test_a_wrong_pin_in_change_reference_drops_the_verified_pin(card):
    assert card.verify() == SW.OK
    assert card.sw(0x24, 0x00, 0x81, b"87654321" + b"11111111") == 0x63C2  # a wrong PUK
    assert card.sw(0x20, 0x00, 0x80) == SW.OK  # leaves the PIN verified
    assert card.sw(0x24, 0x00, 0x80, b"000000\xff\xff" + PIN) == 0x63C2  # a wrong PIN
    assert card.sw(0x20, 0x00, 0x80) == 0x63C2  # does not
    for _ in range(2):
        card.verify(b"000000\xff\xff")
    assert card.sw(0x24, 0x00, 0x80, PIN + b"654321\xff\xff") == SW.AUTH_METHOD_BLOCKED
    assert card.sw(0x2C, 0x00, 0x80, b"87654321" + PIN) == 0x63C1
    assert card.sw(0x2C, 0x00, 0x80, b"87654321" + PIN) == 0x63C0
    assert card.sw(0x2C, 0x00, 0x80, PUK + PIN) == SW.AUTH_METHOD_BLOCKED


def test_change_puk_with_a_wrong_puk_counts_only_the_puk(card):
    assert card.sw(0x24, 0x00, 0x81, b"87654321" + b"11111111") == 0x63C2
    assert card.metadata(0x81)[0x06] == bytes([3, 2])
    assert card.metadata(0x80)[0x06] == bytes([3, 3])
    assert card.ok(0x24, 0x00, 0x81, PUK + b"11111111") == b""
    assert card.metadata(0x81) == {0x01: b"\xff", 0x05: b"\x00", 0x06: bytes([3, 3])}


def test_unblock_sets_the_new_pin_with_every_try(card):
    for _ in range(3):
        card.verify(b"000000\xff\xff")
    assert card.verify() == SW.AUTH_METHOD_BLOCKED
    assert card.ok(0x2C, 0x00, 0x80, PUK + b"654321\xff\xff") == b""
    assert card.metadata(0x80)[0x06] == bytes([3, 3])
    assert card.verify(b"654321\xff\xff") == SW.OK


def test_unblock_with_a_bad_new_pin_keeps_the_blocked_pin(card):
    for _ in range(3):
        card.verify(b"000000\xff\xff")
    assert card.sw(0x2C, 0x00, 0x80, PUK + b"12\xff\xff\xff\xff\xff\xff") \
        == SW.INCORRECT_PARAMETERS
    assert card.metadata(0x81)[0x06] == bytes([3, 3])  # the right PUK's try is back
    assert card.verify() == SW.AUTH_METHOD_BLOCKED


# -- management key -----------------------------------------------------------------------
def test_management_metadata_and_set_management_key(card):
    assert card.ok(0xF7, 0x00, 0x9B) == bytes.fromhex("01010a" "02020101" "050101")
    card.authenticate()
    new = bytes(range(16))
    assert card.sw(0xFF, 0xFE, 0xFF, b"\x08" + tlv.tlv(0x9B, new)) == P1P2
    assert card.sw(0xFF, 0xFF, 0xFD, b"\x08" + tlv.tlv(0x9B, new)) == P1P2
    assert card.sw(0xFF, 0xFF, 0xFF, b"\x08\x9b") == SW.INCORRECT_PARAMETERS
    assert card.sw(0xFF, 0xFF, 0xFF, b"\x09" + tlv.tlv(0x9B, new)) == SW.INCORRECT_PARAMETERS
    assert card.sw(0xFF, 0xFF, 0xFF, b"\x08" + tlv.tlv(0x9B, new[:15])) \
        == SW.INCORRECT_PARAMETERS
    assert card.ok(0xF7, 0x00, 0x9B)[:3] == b"\x01\x01\x0a"  # nothing changed
    assert card.ok(0xFF, 0xFF, 0xFE, b"\x08" + tlv.tlv(0x9B, new)) == b""
    assert card.metadata(0x9B) == {0x01: b"\x08", 0x02: b"\x01\x02", 0x05: b"\x00"}
    assert card.ok(0xFF, 0xFF, 0xFF, b"\x08" + tlv.tlv(0x9B, new)) == b""
    assert card.metadata(0x9B)[0x02] == b"\x01\x01"


def test_aes_management_keys_need_5_4(make_key):
    card = Card(make_key((5, 3, 1)))
    s = PivSession(DirectCardConnection(card.os))
    s.authenticate(DEFAULT_MANAGEMENT_KEY)
    assert card.sw(0xFF, 0xFF, 0xFF, b"\x08" + tlv.tlv(0x9B, bytes(16))) \
        == SW.INCORRECT_PARAMETERS
    assert card.ok(0xFF, 0xFF, 0xFF, b"\x03" + tlv.tlv(0x9B, bytes(range(24)))) == b""


def test_management_authentication_refusals(card):
    auth = lambda body, p1=0x0A: card.sw(0x87, p1, 0x9B, tlv.tlv(0x7C, body))  # noqa: E731
    assert auth(tlv.tlv(0x81), p1=0x08) == SW.INCORRECT_PARAMETERS  # not the stored type
    assert auth(tlv.tlv(0x82, bytes(16))) == SW.CONDITIONS_NOT_SATISFIED  # no challenge
    assert auth(tlv.tlv(0x80, bytes(16)) + tlv.tlv(0x81, bytes(16))) \
        == SW.CONDITIONS_NOT_SATISFIED  # no witness
    card.ok(0x87, 0x0A, 0x9B, tlv.tlv(0x7C, tlv.tlv(0x80)))
    assert auth(tlv.tlv(0x80, bytes(15)) + tlv.tlv(0x81, bytes(16))) \
        == SW.INCORRECT_PARAMETERS
    card.ok(0x87, 0x0A, 0x9B, tlv.tlv(0x7C, tlv.tlv(0x80)))
    assert auth(tlv.tlv(0x80, bytes(16)) + tlv.tlv(0x81, bytes(17))) \
        == SW.INCORRECT_PARAMETERS
    card.ok(0x87, 0x0A, 0x9B, tlv.tlv(0x7C, tlv.tlv(0x81)))  # a challenge, then the
    assert auth(tlv.tlv(0x80, bytes(16)) + tlv.tlv(0x81, bytes(16))) \
        == SW.CONDITIONS_NOT_SATISFIED  # witness step is out of turn
    card.ok(0x87, 0x0A, 0x9B, tlv.tlv(0x7C, tlv.tlv(0x80)))  # and the other way round
    assert auth(tlv.tlv(0x82, bytes(16))) == SW.CONDITIONS_NOT_SATISFIED
    assert auth(tlv.tlv(0x80) + tlv.tlv(0x81)) == SW.INCORRECT_PARAMETERS
    assert auth(tlv.tlv(0x81, bytes(16))) == SW.INCORRECT_PARAMETERS
    assert auth(tlv.tlv(0x80, bytes(16))) == SW.INCORRECT_PARAMETERS  # a witness alone
    assert auth(tlv.tlv(0x82, bytes(16)) + tlv.tlv(0x80, bytes(16))) \
        == SW.INCORRECT_PARAMETERS  # an answer with a witness
    assert auth(b"") == SW.INCORRECT_PARAMETERS  # nothing
    assert card.generate(0x9A) == SW.SECURITY_CONDITION_NOT_SATISFIED


def test_a_management_key_without_touch_asks_none(make_key):
    card = Card(make_key())
    card.key.presence = DenyAlways()
    card.authenticate()  # external authentication: no touch asked, so none refused
    assert card.generate(0x9A) == SW.OK


def test_external_challenge_is_fresh_each_time(card):
    first = card.ok(0x87, 0x0A, 0x9B, tlv.tlv(0x7C, tlv.tlv(0x81)))
    second = card.ok(0x87, 0x0A, 0x9B, tlv.tlv(0x7C, tlv.tlv(0x81)))
    assert first[:4] == second[:4] == bytes.fromhex("7c128110")
    assert first != second
    card.authenticate()
    assert card.generate(0x9A) == SW.OK


# -- keys ----------------------------------------------------------------------------------
def test_generate_refusals(card):
    card.authenticate()
    assert card.sw(0x47, 0x01, 0x9A, tlv.tlv(0xAC, tlv.tlv(0x80, b"\x11"))) == P1P2
    assert card.generate(0xF9) == P1P2
    assert card.generate(0x9B) == P1P2
    assert card.generate(0x9A, 0x13) == SW.INCORRECT_PARAMETERS  # no such algorithm
    assert card.sw(0x47, 0x00, 0x9A, tlv.tlv(0xAC, tlv.tlv(0x80, b"\x11\x11"))) \
        == SW.INCORRECT_PARAMETERS
    assert card.sw(0x47, 0x00, 0x9A, tlv.tlv(0xAC, tlv.tlv(0xAA, b"\x01"))) \
        == SW.INCORRECT_PARAMETERS  # no algorithm at all
    for policy in (b"\xaa\x01\x04", b"\xaa\x01\x05", b"\xaa\x01\x09", b"\xaa\x00",
                   b"\xaa\x02\x01\x01", b"\xab\x01\x07", b"\xab\x02\x01\x01"):
        assert card.generate(0x9A, 0x11, policy) == SW.INCORRECT_PARAMETERS, policy.hex()
    assert card.sw(0xF7, 0x00, 0x9A) == SW.REFERENCE_DATA_NOT_FOUND  # nothing was made


def test_generate_answers_the_public_key(card):
    card.authenticate()
    answer = card.ok(0x47, 0x00, 0x9A, tlv.tlv(0xAC, tlv.tlv(0x80, b"\x11")))
    point = tlv.unpack(0x86, tlv.unpack(0x7F49, answer))
    assert len(point) == 65 and point[0] == 4
    meta = card.metadata(0x9A)
    assert meta[0x04] == tlv.tlv(0x86, point)
    assert meta[0x01] == b"\x11" and meta[0x03] == b"\x01"
    assert meta[0x02] == bytes([PIN_POLICY.ONCE, 1])


@pytest.mark.parametrize(("slot", "pin_policy"), [
    (0x9C, PIN_POLICY.ALWAYS), (0x9E, PIN_POLICY.NEVER), (0x82, PIN_POLICY.ONCE)])
def test_import_takes_the_slots_default_pin_policy(card, slot, pin_policy):
    card.authenticate()
    assert card.ok(0xFE, 0x11, slot, ec_import_data(ec.generate_private_key(ec.SECP256R1()))) \
        == b""
    meta = card.metadata(slot)
    assert meta[0x02] == bytes([pin_policy, 1])
    assert meta[0x03] == b"\x02"  # imported


def test_import_refusals(card):
    card.authenticate()
    private = ec.generate_private_key(ec.SECP256R1())
    assert card.sw(0xFE, 0x11, 0x9B, ec_import_data(private)) == P1P2
    assert card.sw(0xFE, 0x13, 0x9A, ec_import_data(private)) == SW.INCORRECT_PARAMETERS
    assert card.sw(0xFE, 0x11, 0x9A, ec_import_data(private, b"\xaa\x01\x04")) \
        == SW.INCORRECT_PARAMETERS
    assert card.sw(0xF7, 0x00, 0x9A) == SW.REFERENCE_DATA_NOT_FOUND


def test_key_types_and_policies_by_firmware(make_key):
    """5.4 imports no Ed25519; 4.2.6 (ROCA firmware) imports RSA but cannot generate it,
    and has no cached touch (4.3); 3.x has no policies at all."""
    card = Card(make_key((5, 4, 3)))
    s = PivSession(DirectCardConnection(card.os))
    s.authenticate(DEFAULT_MANAGEMENT_KEY)
    ed = bytes(32)
    assert card.sw(0xFE, 0xE0, 0x9A, tlv.tlv(0x07, ed)) == SW.INCORRECT_PARAMETERS
    assert card.generate(0x9A, 0xE0) == SW.INCORRECT_PARAMETERS
    roca = Card(make_key((4, 2, 6)))
    s = PivSession(DirectCardConnection(roca.os))
    s.authenticate(DEFAULT_MANAGEMENT_KEY)
    assert roca.generate(0x9A, 0x07) == SW.INCORRECT_PARAMETERS
    s.put_key(SLOT.AUTHENTICATION, rsa.generate_private_key(65537, 1024))  # 9000
    assert roca.generate(0x9C, 0x11, b"\xab\x01\x03") == SW.INCORRECT_PARAMETERS
    assert roca.generate(0x9C, 0x11, b"\xab\x01\x02") == SW.OK
    old = Card(make_key((3, 5, 0)))
    s = PivSession(DirectCardConnection(old.os))
    s.authenticate(DEFAULT_MANAGEMENT_KEY)
    assert old.generate(0x9A, 0x11, b"\xaa\x01\x01") == SW.INCORRECT_PARAMETERS
    assert old.generate(0x9A, 0x11) == SW.OK


def test_slot_authenticate_refusals(card):
    card.authenticate()
    assert card.generate(0x9E) == SW.OK  # card authentication: no PIN
    auth = lambda slot, body, p1=0x11: card.sw(0x87, p1, slot, tlv.tlv(0x7C, body))  # noqa: E731
    challenge = tlv.tlv(0x82) + tlv.tlv(0x81, bytes(32))
    assert auth(0x9E, challenge, p1=0x14) == SW.INCORRECT_PARAMETERS
    assert auth(0x9D, challenge) == SW.INCORRECT_PARAMETERS  # an empty slot
    assert auth(0x80, challenge) == SW.INCORRECT_PARAMETERS  # no such slot
    assert auth(0x9E, tlv.tlv(0x82, b"\x01") + tlv.tlv(0x81, bytes(32))) \
        == SW.INCORRECT_PARAMETERS
    assert auth(0x9E, tlv.tlv(0x81, bytes(32))) == SW.INCORRECT_PARAMETERS  # no 82
    assert auth(0x9E, tlv.tlv(0x82)) == SW.INCORRECT_PARAMETERS  # nothing to do
    peer = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        Encoding.X962, PublicFormat.UncompressedPoint)
    assert auth(0x9E, challenge + tlv.tlv(0x85, peer)) == SW.INCORRECT_PARAMETERS
    answer = card.ok(0x87, 0x11, 0x9E, tlv.tlv(0x7C, challenge))
    assert answer[:2] == b"\x7c" + bytes([len(answer) - 2]) and answer[2] == 0x82
    shared = card.ok(0x87, 0x11, 0x9E, tlv.tlv(0x7C, tlv.tlv(0x82) + tlv.tlv(0x85, peer)))
    assert len(tlv.unpack(0x82, tlv.unpack(0x7C, shared))) == 32


def test_move_and_delete_refusals(card):
    card.authenticate()
    assert card.generate(0x9A) == SW.OK
    assert card.generate(0x9C) == SW.OK
    assert card.sw(0xF6, 0x82, 0xF9) == P1P2
    assert card.sw(0xF6, 0xF9, 0x9A) == P1P2
    assert card.sw(0xF6, 0x9B, 0x9A) == P1P2
    assert card.sw(0xF6, 0x82, 0x9D) == SW.REFERENCE_DATA_NOT_FOUND
    assert card.sw(0xF6, 0x9A, 0x9A) == SW.INCORRECT_PARAMETERS
    assert card.sw(0xF6, 0x9C, 0x9A) == SW.INCORRECT_PARAMETERS
    public = card.metadata(0x9A)[0x04]
    assert card.ok(0xF6, 0x82, 0x9A) == b""
    assert card.metadata(0x82)[0x04] == public
    assert card.sw(0xF7, 0x00, 0x9A) == SW.REFERENCE_DATA_NOT_FOUND
    assert card.ok(0xF6, 0xFF, 0x82) == b""
    assert card.sw(0xF7, 0x00, 0x82) == SW.REFERENCE_DATA_NOT_FOUND
    assert sorted(card.key.store.section("piv")["keys"]) == ["9c", "f9"]  # deleted, not
    # moved to some slot "ff"
    assert card.metadata(0x9C)[0x01] == b"\x11"  # the other key stays


# -- attestation ------------------------------------------------------------------------------
def test_attest_refusals(card):
    card.authenticate()
    assert card.sw(0xF9, 0x9A, 0x00) == SW.REFERENCE_DATA_NOT_FOUND
    assert card.sw(0xF9, 0x9A, 0x01) == P1P2
    assert card.sw(0xF9, 0xF9, 0x00) == P1P2
    assert card.sw(0xF9, 0x9B, 0x00) == P1P2
    assert card.ok(0xFE, 0x11, 0x9C,
                   ec_import_data(ec.generate_private_key(ec.SECP256R1()))) == b""
    assert card.sw(0xF9, 0x9C, 0x00) == SW.INCORRECT_PARAMETERS  # imported, not generated
    assert card.generate(0x9A) == SW.OK
    assert card.ok(0xF9, 0x9A, 0x00)[:1] == b"\x30"  # a DER certificate
    assert card.put_data(bytes.fromhex("5fff01"), b"") == SW.OK  # F9 certificate deleted
    assert card.sw(0xF9, 0x9A, 0x00) == SW.REFERENCE_DATA_NOT_FOUND


def _f9_certificate(card: Card) -> bytes:
    content = tlv.unpack(0x53, card.get_data(bytes.fromhex("5fff01"))[:-2])
    return tlv.parse_dict(content)[0x70]


@pytest.mark.parametrize("layout", ["bare", "info-rfu", "garbage", "not-der"])
def test_attest_reads_the_f9_certificate_object_as_stored(card, layout):
    """A certificate object without 71/FE, with a 71 of more than one byte, that is not
    TLV at all, or whose certificate is no DER: the first two attest, the third is "no
    certificate" (6A88), the last one the card cannot sign with (6985)."""
    from cryptography import x509

    card.authenticate()
    assert card.generate(0x9A) == SW.OK
    cert = _f9_certificate(card)
    import gzip

    content = {"bare": tlv.tlv(0x70, cert),
               "info-rfu": tlv.tlv(0x70, gzip.compress(cert)) + tlv.tlv(0x71, b"\x01\x00"),
               "garbage": b"\x70\x85",
               "not-der": tlv.tlv(0x70, b"not a certificate")}[layout]
    assert card.put_data(bytes.fromhex("5fff01"), content) == SW.OK
    if layout in ("garbage", "not-der"):
        assert card.sw(0xF9, 0x9A, 0x00) == {"garbage": SW.REFERENCE_DATA_NOT_FOUND,
                                              "not-der": SW.CONDITIONS_NOT_SATISFIED}[layout]
        return
    attested = x509.load_der_x509_certificate(card.ok(0xF9, 0x9A, 0x00))
    assert attested.issuer == x509.load_der_x509_certificate(cert).subject


# -- data objects -----------------------------------------------------------------------------
def test_get_and_put_data_refusals(card):
    assert card.sw(0xCB, 0x3F, 0xFE, tlv.tlv(0x5C, b"\x7e")) == P1P2
    assert card.sw(0xCB, 0x3E, 0xFF, tlv.tlv(0x5C, b"\x7e")) == P1P2
    assert card.get_data(bytes.fromhex("5fc105"))[-2:] == b"\x6a\x82"
    assert card.get_data(b"")[-2:] == b"\x6a\x80"
    assert card.get_data(bytes.fromhex("5fc10501"))[-2:] == b"\x6a\x80"
    assert card.get_data(bytes.fromhex("0000007e"))[-2:] == b"\x6a\x80"  # 4 bytes, even so
    assert card.get_data(bytes.fromhex("5fc1"))[-2:] == b"\x6a\x80"
    assert card.get_data(bytes.fromhex("7f61"))[-2:] == b"\x6a\x82"  # a valid id, not stored
    assert card.put_data(bytes.fromhex("5fc109"), b"x") == SW.SECURITY_CONDITION_NOT_SATISFIED
    card.authenticate()
    assert card.sw(0xDB, 0x3F, 0xFE, tlv.tlv(0x5C, b"\x7e") + tlv.tlv(0x53, b"x")) == P1P2
    assert card.put_data(b"\x7e", b"x") == SW.INCORRECT_PARAMETERS
    assert card.sw(0xDB, 0x3F, 0xFF, tlv.tlv(0x53, b"x") + tlv.tlv(0x5C, bytes.fromhex(
        "5fc105"))) == SW.INCORRECT_PARAMETERS
    assert card.sw(0xDB, 0x3F, 0xFF, tlv.tlv(0x5C, bytes.fromhex("5fc105"))) \
        == SW.INCORRECT_PARAMETERS
    assert card.sw(0xDB, 0x3F, 0xFF, tlv.tlv(0x5C, bytes.fromhex("5fc105"))
                   + tlv.tlv(0x53, b"x") + tlv.tlv(0x53, b"y")) == SW.INCORRECT_PARAMETERS
    assert card.sw(0xDB, 0x3F, 0xFF, tlv.tlv(0x5C, bytes.fromhex("5fc105"))
                   + tlv.tlv(0x54, b"x")) == SW.INCORRECT_PARAMETERS  # 53 must hold it
    assert card.sw(0xDB, 0x3F, 0xFF, tlv.tlv(0x5D, bytes.fromhex("5fc105"))
                   + tlv.tlv(0x53, b"x")) == SW.INCORRECT_PARAMETERS  # 5C must name it
    assert card.get_data(bytes.fromhex("5fc105"))[-2:] == b"\x6a\x82"
    assert card.put_data(bytes.fromhex("5fc10d"), b"") == SW.OK  # deleting what is not there
    assert card.put_data(bytes.fromhex("5fc105"), bytes(3064)) == SW.NO_SPACE
    assert card.put_data(bytes.fromhex("5fc105"), bytes(3063)) == SW.OK
    assert card.put_data(bytes.fromhex("7f61"), b"\x01") == SW.OK
    assert card.get_data(bytes.fromhex("7f61")) == bytes.fromhex("5301019000")


def test_pin_protected_objects(card):
    card.authenticate()
    assert card.put_data(bytes.fromhex("5fc109"), b"printed") == SW.OK
    assert card.get_data(bytes.fromhex("5fc109"))[-2:] == b"\x69\x82"
    assert card.verify() == SW.OK
    assert card.get_data(bytes.fromhex("5fc109")) == tlv.tlv(0x53, b"printed") + b"\x90\x00"


# -- reset ------------------------------------------------------------------------------------
def test_reset_refusals_and_what_it_keeps(card):
    card.authenticate()
    assert card.generate(0x9A) == SW.OK
    assert card.put_data(bytes.fromhex("5fc105"), b"cert") == SW.OK
    assert card.sw(0xFB, 0x00, 0x00) == SW.CONDITIONS_NOT_SATISFIED
    for _ in range(3):
        card.verify(b"000000\xff\xff")
    assert card.sw(0xFB, 0x00, 0x00) == SW.CONDITIONS_NOT_SATISFIED  # the PUK still works
    for _ in range(3):
        card.sw(0x2C, 0x00, 0x80, b"00000000" + PIN)
    assert card.sw(0xFB, 0x01, 0x00) == P1P2
    assert card.sw(0xFB, 0x00, 0x01) == P1P2
    f9 = card.metadata(0xF9)
    f9_cert = card.get_data(bytes.fromhex("5fff01"))
    assert card.ok(0xFB, 0x00, 0x00) == b""
    assert card.metadata(0xF9) == f9
    assert card.get_data(bytes.fromhex("5fff01")) == f9_cert
    assert card.sw(0xF7, 0x00, 0x9A) == SW.REFERENCE_DATA_NOT_FOUND
    assert card.get_data(bytes.fromhex("5fc105"))[-2:] == b"\x6a\x82"
    assert card.metadata(0x80) == {0x01: b"\xff", 0x05: b"\x01", 0x06: b"\x03\x03"}
    assert card.metadata(0x81)[0x06] == b"\x03\x03"
    assert card.metadata(0x9B)[0x05] == b"\x01"
    assert card.generate(0x9A) == SW.SECURITY_CONDITION_NOT_SATISFIED  # authentication gone
    assert card.sw(0x20, 0x00, 0x80) == 0x63C3  # and no PIN verified


def test_reset_without_an_f9_key_or_certificate(card):
    card.authenticate()
    assert card.sw(0xF6, 0xFF, 0xF9) == P1P2  # F9 cannot be deleted by MOVE KEY
    assert card.put_data(bytes.fromhex("5fff01"), b"") == SW.OK
    card.key.store.section("piv")["keys"].pop("f9")
    for _ in range(3):
        card.verify(b"000000\xff\xff")
    for _ in range(3):
        card.sw(0x2C, 0x00, 0x80, b"00000000" + PIN)
    assert card.ok(0xFB, 0x00, 0x00) == b""
    section = card.key.store.section("piv")
    assert section["keys"] == {} and section["objects"] == {}  # no empty F9 entries
    assert card.sw(0xF7, 0x00, 0xF9) == SW.REFERENCE_DATA_NOT_FOUND
    assert card.get_data(bytes.fromhex("5fff01"))[-2:] == b"\x6a\x82"


def test_the_pin_forgotten_by_p1_ff_stops_pin_always_keys(card):
    card.authenticate()
    assert card.generate(0x9C) == SW.OK
    challenge = tlv.tlv(0x7C, tlv.tlv(0x82) + tlv.tlv(0x81, bytes(32)))
    assert card.verify() == SW.OK
    assert card.ok(0x20, 0xFF, 0x80) == b""
    assert card.sw(0x87, 0x11, 0x9C, challenge) == SW.SECURITY_CONDITION_NOT_SATISFIED
    assert card.verify(b"000000\xff\xff") == 0x63C2
    assert card.sw(0x87, 0x11, 0x9C, challenge) == SW.SECURITY_CONDITION_NOT_SATISFIED
    assert card.verify() == SW.OK
    assert card.sw(0x87, 0x11, 0x9C, challenge) == SW.OK
    assert card.sw(0x87, 0x11, 0x9C, challenge) == SW.SECURITY_CONDITION_NOT_SATISFIED
