"""The YKOATH applet's edges: status words, answer TLVs, limits and the access code.

Through yubikit's own ``OathSession`` where it can express the case, raw APDUs to the same
card where it cannot (missing fields, lengths yubikit never sends, the exact answer bytes).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct

import pyotp
import pytest
from yubikit.core.smartcard import ApduError
from yubikit.oath import HASH_ALGORITHM, OATH_TYPE, CredentialData, OathSession

from hwtoken.emulator.applets.management import parse_tlvs, tlv
from hwtoken.emulator.applets.oath import AID_OATH
from hwtoken.emulator.iso7816 import SW, Apdu, CardOS
from hwtoken.emulator.key import VirtualKey
from hwtoken.emulator.presence import AskCallback, DenyAlways
from hwtoken.emulator.transports.card_direct import DirectCardConnection
from hwtoken.otp import hotp_code

SECRET = b"12345678901234567890"  # RFC 4226's
CHALLENGE = struct.pack(">q", 1111111109 // 30)


@pytest.fixture
def key(tmp_path):
    k = VirtualKey.create(tmp_path / "k.key", serial=1234567)
    yield k
    k.close()


class Card:
    """One card OS of ``key`` with the OATH applet selected: yubikit and raw APDUs."""

    def __init__(self, key: VirtualKey) -> None:
        self.os = CardOS(key)
        self.session = OathSession(DirectCardConnection(self.os))

    def select(self) -> dict[int, bytes]:
        data, sw = self.send(0xA4, AID_OATH, p1=0x04)
        assert sw == SW.OK
        return dict(parse_tlvs(data))

    def send(self, ins: int, data: bytes = b"", p1: int = 0, p2: int = 0,
             cla: int = 0) -> tuple[bytes, int]:
        resp = self.os.transmit(Apdu(cla, ins, p1, p2, data).to_bytes())
        return resp[:-2], int.from_bytes(resp[-2:], "big")

    def names(self) -> list[bytes]:
        data, sw = self.send(0xA1)
        assert sw == SW.OK
        return [v[1:] for _, v in parse_tlvs(data)]


def put_data(name: bytes, keyval: bytes, extra: bytes = b"") -> bytes:
    return tlv(0x71, name) + tlv(0x73, keyval) + extra


def totp_key(secret: bytes = SECRET, digits: int = 6, algo: int = 0x01) -> bytes:
    return bytes([0x20 | algo, digits]) + secret


def sha1(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha1).digest()


def sw_of(exc: pytest.ExceptionInfo[ApduError]) -> int:
    return exc.value.sw


# -- PUT -----------------------------------------------------------------------------------
def test_malformed_command_data_answers_wrong_length(key):
    card = Card(key)
    assert card.send(0x01, b"\x71\x05ab")[1] == SW.WRONG_LENGTH  # length past the end
    assert card.send(0x01, put_data(b"a", totp_key()) + b"\x72")[1] == SW.WRONG_LENGTH
    assert card.names() == []


def test_put_needs_both_name_and_key(key):
    card = Card(key)
    assert card.send(0x01, tlv(0x73, totp_key()))[1] == SW.INCORRECT_PARAMETERS
    assert card.send(0x01, tlv(0x71, b"name"))[1] == SW.INCORRECT_PARAMETERS
    assert card.names() == []


def test_name_is_one_to_64_bytes(key):
    s = Card(key).session
    for bad in ("", "n" * 65):
        with pytest.raises(ApduError) as exc:
            s.put_credential(CredentialData(bad, OATH_TYPE.TOTP, HASH_ALGORITHM.SHA1, SECRET))
        assert sw_of(exc) == SW.INCORRECT_PARAMETERS
    s.put_credential(CredentialData("n" * 64, OATH_TYPE.TOTP, HASH_ALGORITHM.SHA1, SECRET))
    assert [c.name for c in s.list_credentials()] == ["n" * 64]


def test_key_field_is_type_digits_then_any_secret(key):
    """A key field needs its type and digits bytes; the secret itself may be empty (HMAC
    pads keys with zeros, so that is yubikit's 14 zero bytes) or a single byte."""
    card = Card(key)
    assert card.send(0x01, put_data(b"short", b"\x21"))[1] == SW.WRONG_LENGTH
    assert card.send(0x01, put_data(b"empty", totp_key(b"")))[1] == SW.OK
    assert card.send(0x01, put_data(b"one", totp_key(b"\x07")))[1] == SW.OK
    assert card.names() == [b"empty", b"one"]
    s = card.session
    assert s.calculate(b"empty", CHALLENGE) == sha1(b"\0" * 14, CHALLENGE)
    assert s.calculate(b"one", CHALLENGE) == sha1(b"\x07", CHALLENGE)


@pytest.mark.parametrize("keyval", [
    bytes([0x30 | 0x01, 6]) + SECRET,  # neither HOTP nor TOTP, a known hash
    bytes([0x00 | 0x01, 6]) + SECRET,
    totp_key(algo=0x04),  # TOTP with an unknown hash
    totp_key(algo=0x00),
    totp_key(digits=5),
    totp_key(digits=9),
    totp_key(b"s" * 129),  # longer than SHA-512's block: yubikit hashes those first
])
def test_put_refuses_what_no_yubikey_stores(key, keyval):
    card = Card(key)
    assert card.send(0x01, put_data(b"bad", keyval)) == (b"", SW.INCORRECT_PARAMETERS)
    assert card.names() == []


@pytest.mark.parametrize("digits", [6, 7, 8])
def test_put_takes_six_to_eight_digits(key, digits):
    card = Card(key)
    assert card.send(0x01, put_data(b"d", totp_key(digits=digits)))[1] == SW.OK
    code = card.session.calculate_code(card.session.list_credentials()[0], 1111111109)
    assert code.value == pyotp.TOTP(base64.b32encode(SECRET).decode(),
                                    digits=digits).at(1111111109)


def test_a_128_byte_sha512_secret_is_kept_whole(key):
    """yubikit sends SHA-512 keys up to the 128-byte block as they are."""
    secret = bytes(range(128))
    s = Card(key).session
    cred = s.put_credential(CredentialData("big", OATH_TYPE.TOTP, HASH_ALGORITHM.SHA512,
                                           secret, digits=8))
    expected = hmac.new(secret, CHALLENGE, hashlib.sha512).digest()
    assert s.calculate(cred.id, CHALLENGE) == expected


def test_imf_is_four_bytes_and_unsigned(key):
    card = Card(key)
    hotp = bytes([0x11, 6]) + SECRET
    for imf in (b"\0\0\1", b"\0\0\0\0\1"):
        assert card.send(0x01, put_data(b"h", hotp, tlv(0x7A, imf)))[1] == SW.WRONG_LENGTH
    assert card.names() == []
    s = card.session
    cred = s.put_credential(CredentialData("h", OATH_TYPE.HOTP, HASH_ALGORITHM.SHA1, SECRET,
                                           counter=2**32 - 1))
    assert s.calculate_code(cred).value == hotp_code(SECRET, 2**32 - 1)
    assert s.calculate_code(cred).value == hotp_code(SECRET, 2**32)


def test_commands_that_change_state_answer_no_data(key):
    card = Card(key)
    access = b"k" * 16
    for ins, data, p1, p2 in [
        (0x01, put_data(b"a", totp_key()), 0, 0),
        (0x05, tlv(0x71, b"a") + tlv(0x71, b"b"), 0, 0),
        (0x02, tlv(0x71, b"b"), 0, 0),
        (0x03, tlv(0x73, b"\x21" + access) + tlv(0x74, b"c" * 8)
         + tlv(0x75, sha1(access, b"c" * 8)), 0, 0),
        (0x03, tlv(0x73, b""), 0, 0),
        (0x04, b"", 0xDE, 0xAD),
    ]:
        assert card.send(ins, data, p1, p2) == (b"", SW.OK), hex(ins)


# -- DELETE, RENAME ------------------------------------------------------------------------
def test_delete_needs_an_existing_name(key):
    card = Card(key)
    card.session.put_credential(CredentialData("a", OATH_TYPE.TOTP, HASH_ALGORITHM.SHA1,
                                               SECRET))
    with pytest.raises(ApduError) as exc:
        card.session.delete_credential(b"b")
    assert sw_of(exc) == SW.DATA_INVALID
    assert card.send(0x02, b"") == (b"", SW.DATA_INVALID)  # no name at all
    assert card.send(0x02, tlv(0x71, b"")) == (b"", SW.DATA_INVALID)
    assert card.names() == [b"a"]


def test_rename_edges(key):
    s = Card(key).session
    a = s.put_credential(CredentialData("a", OATH_TYPE.TOTP, HASH_ALGORITHM.SHA1, SECRET))
    s.put_credential(CredentialData("b", OATH_TYPE.TOTP, HASH_ALGORITHM.SHA1, SECRET))
    with pytest.raises(ApduError) as exc:
        s.rename_credential(b"missing", "x")
    assert sw_of(exc) == SW.DATA_INVALID
    for bad in ("", "n" * 65, "b"):  # empty, too long, another credential's name
        with pytest.raises(ApduError) as exc:
            s.rename_credential(a.id, bad)
        assert sw_of(exc) == SW.INCORRECT_PARAMETERS, bad
    assert sorted(c.name for c in s.list_credentials()) == ["a", "b"]
    with pytest.raises(ApduError) as exc:  # to its own name: refused, as a YubiKey does
        s.rename_credential(a.id, "a")
    assert sw_of(exc) == SW.INCORRECT_PARAMETERS
    assert s.rename_credential(a.id, "x") == b"x"  # one byte
    assert s.rename_credential(b"x", "n" * 64) == b"n" * 64
    assert sorted(c.name for c in s.list_credentials()) == ["b", "n" * 64]
    assert s.calculate(b"n" * 64, CHALLENGE) == sha1(SECRET.ljust(14, b"\0"), CHALLENGE)


# -- CALCULATE -----------------------------------------------------------------------------
def test_calculate_full_response_is_the_whole_hmac(key):
    card = Card(key)
    s = card.session
    cred = s.put_credential(CredentialData("t", OATH_TYPE.TOTP, HASH_ALGORITHM.SHA256,
                                           SECRET, digits=8))
    digest = hmac.new(SECRET, CHALLENGE, hashlib.sha256).digest()
    assert s.calculate(cred.id, CHALLENGE) == digest
    data, sw = card.send(0xA2, tlv(0x71, b"t") + tlv(0x74, CHALLENGE))  # P2=00: full
    assert (data, sw) == (b"\x75\x21\x08" + digest, SW.OK)


def test_calculate_refuses_missing_fields_and_unknown_names(key):
    card = Card(key)
    s = card.session
    s.put_credential(CredentialData("t", OATH_TYPE.TOTP, HASH_ALGORITHM.SHA1, SECRET))
    hotp = s.put_credential(CredentialData("h", OATH_TYPE.HOTP, HASH_ALGORITHM.SHA1, SECRET))
    with pytest.raises(ApduError) as exc:
        s.calculate(b"missing", CHALLENGE)
    assert sw_of(exc) == SW.DATA_INVALID
    assert card.send(0xA2, tlv(0x74, CHALLENGE), p2=1) == (b"", SW.INCORRECT_PARAMETERS)
    assert card.send(0xA2, tlv(0x71, b"h"), p2=1) == (b"", SW.INCORRECT_PARAMETERS)
    # a TOTP code needs a time step; an HOTP one takes an empty challenge (as yubikit sends)
    assert card.send(0xA2, tlv(0x71, b"t") + tlv(0x74, b""), p2=1) == (
        b"", SW.INCORRECT_PARAMETERS)
    assert card.send(0xA4, b"", p2=1) == (b"", SW.INCORRECT_PARAMETERS)  # CALCULATE ALL
    # none of the refusals used up an HOTP counter value
    assert s.calculate_code(hotp).value == hotp_code(SECRET, 0)


def test_touch_is_asked_only_for_touch_credentials_and_named_oath(tmp_path):
    denied = VirtualKey.create(tmp_path / "deny.key", presence=DenyAlways())
    try:
        s = Card(denied).session
        cred = s.put_credential(CredentialData("plain", OATH_TYPE.TOTP, HASH_ALGORITHM.SHA1,
                                               SECRET))
        assert s.calculate(cred.id, CHALLENGE) == sha1(SECRET, CHALLENGE)
    finally:
        denied.close()
    asked: list[str] = []
    touched = VirtualKey.create(tmp_path / "ask.key",
                                presence=AskCallback(lambda reason: asked.append(reason) or True))
    try:
        s = Card(touched).session
        cred = s.put_credential(CredentialData("t", OATH_TYPE.TOTP, HASH_ALGORITHM.SHA1,
                                               SECRET), touch_required=True)
        assert s.calculate(cred.id, CHALLENGE) == sha1(SECRET, CHALLENGE)
        assert asked == ["oath"]  # the prompt says which application wants the touch
    finally:
        touched.close()


def test_proprietary_class_is_refused(key):
    card = Card(key)
    assert card.send(0xA1, cla=0x80) == (b"", SW.CLASS_NOT_SUPPORTED)


def test_account_names_for_python_callers(key):
    card = Card(key)
    card.send(0x01, put_data(b"Iss:al\xffce", totp_key()))
    card.session.put_credential(CredentialData("bob", OATH_TYPE.TOTP, HASH_ALGORITHM.SHA1,
                                               SECRET))
    assert key.oath.account_names() == ["Iss:al\ufffdce", "bob"]


# -- the access code -----------------------------------------------------------------------
def set_code(access: bytes, algo: int = 0x01, challenge: bytes = b"c" * 8,
             digest: str = "sha1") -> bytes:
    return (tlv(0x73, bytes([0x20 | algo]) + access) + tlv(0x74, challenge)
            + tlv(0x75, hmac.new(access, challenge, digest).digest()))


def test_set_code_refuses_incomplete_or_wrong_proofs(key):
    card = Card(key)
    access, chal = b"k" * 16, b"c" * 8
    good = set_code(access)
    for data in [
        tlv(0x74, chal) + tlv(0x75, sha1(access, chal)),  # no key
        tlv(0x73, b"\x21" + access) + tlv(0x74, chal),  # no response
        tlv(0x73, b"\x21" + access) + tlv(0x75, sha1(access, chal)),  # no challenge
        tlv(0x73, b"\x21" + access) + tlv(0x74, b"") + tlv(0x75, sha1(access, b"")),
        set_code(b""),  # an algorithm but no key, with the right proof for an empty key
        tlv(0x73, b"\x24" + access) + good[len(tlv(0x73, b"\x21" + access)):],  # hash 4
    ]:
        assert card.send(0x03, data) == (b"", SW.INCORRECT_PARAMETERS), data.hex()
    wrong = good[:-1] + bytes([good[-1] ^ 1])
    assert card.send(0x03, wrong) == (b"", SW.DATA_INVALID)
    assert 0x74 not in Card(key).select()  # still no password


def test_set_key_leaves_the_setting_session_unlocked(key):
    s = Card(key).session
    s.put_credential(CredentialData("a", OATH_TYPE.TOTP, HASH_ALGORITHM.SHA1, SECRET))
    s.set_key(s.derive_key("pw"))
    assert [c.name for c in s.list_credentials()] == ["a"]  # it just proved the key
    assert Card(key).session.locked


def test_select_answers_challenge_and_the_access_keys_algorithm(key):
    card = Card(key)
    access = b"k" * 16
    assert card.send(0x03, set_code(access))[1] == SW.OK
    answer = card.select()
    assert sorted(answer) == [0x71, 0x74, 0x79, 0x7B]
    assert len(answer[0x74]) == 8 and answer[0x7B] == b"\x01"
    assert card.select()[0x74] != answer[0x74]  # a fresh challenge every time


def test_sha256_access_key_is_announced_and_checked_with_sha256(key):
    """A key set with HMAC-SHA256 (YKOATH allows it; yubikit always uses SHA-1) says so in
    SELECT, and VALIDATE checks and answers with that algorithm."""
    card = Card(key)
    access = b"k" * 32
    assert card.send(0x03, set_code(access, algo=0x02, digest="sha256"))[1] == SW.OK
    answer = card.select()
    assert answer[0x7B] == b"\x02"
    assert card.send(0xA1)[1] == SW.SECURITY_CONDITION_NOT_SATISFIED
    host = b"h" * 8
    sha1_proof = tlv(0x75, sha1(access, answer[0x74])) + tlv(0x74, host)
    assert card.send(0xA3, sha1_proof)[1] == SW.INCORRECT_PARAMETERS
    answer = card.select()
    proof = hmac.new(access, answer[0x74], hashlib.sha256).digest()
    data, sw = card.send(0xA3, tlv(0x75, proof) + tlv(0x74, host))
    assert sw == SW.OK
    assert data == tlv(0x75, hmac.new(access, host, hashlib.sha256).digest())
    assert card.names() == []


def locked_card(key, access: bytes = b"k" * 16) -> tuple[Card, bytes]:
    """A card on ``key`` with access key ``access`` set and selected again: locked."""
    card = Card(key)
    if 0x74 not in card.select():
        card.send(0x01, put_data(b"a", totp_key()))
        assert card.send(0x03, set_code(access))[1] == SW.OK
    return card, card.select()[0x74]


def test_wrong_validate_keeps_the_applet_locked(key):
    card, _ = locked_card(key)
    s = card.session
    s._challenge = card.select()[0x74]  # yubikit's view of the challenge, as after SELECT
    with pytest.raises(ApduError) as exc:
        s.validate(b"w" * 16)
    assert sw_of(exc) == SW.INCORRECT_PARAMETERS
    assert card.send(0xA1) == (b"", SW.SECURITY_CONDITION_NOT_SATISFIED)


def test_validate_needs_response_and_host_challenge(key):
    access = b"k" * 16
    card, chal = locked_card(key, access)
    for data in (tlv(0x74, b"h" * 8), tlv(0x75, sha1(access, chal))):
        assert card.send(0xA3, data) == (b"", SW.INCORRECT_PARAMETERS)
    assert card.send(0xA1)[1] == SW.SECURITY_CONDITION_NOT_SATISFIED
    data, sw = card.send(0xA3, tlv(0x75, sha1(access, chal)) + tlv(0x74, b"h" * 8))
    assert (data, sw) == (tlv(0x75, sha1(access, b"h" * 8)), SW.OK)
    assert card.names() == [b"a"]


def no_fixed_response_unlocks(card: Card, access: bytes) -> None:
    """VALIDATE without a challenge from SELECT is refused, also with the answer to an
    empty challenge (a fixed value that, once seen, would unlock the key for ever)."""
    data = tlv(0x75, sha1(access, b"")) + tlv(0x74, b"h" * 8)
    assert card.send(0xA3, data) == (b"", SW.CONDITIONS_NOT_SATISFIED)


def test_a_challenge_is_answered_once(key):
    access = b"k" * 16
    card, chal = locked_card(key, access)
    proof = tlv(0x75, sha1(access, chal)) + tlv(0x74, b"h" * 8)
    assert card.send(0xA3, proof)[1] == SW.OK
    assert card.send(0xA3, proof) == (b"", SW.CONDITIONS_NOT_SATISFIED)  # no replay
    no_fixed_response_unlocks(card, access)
    assert card.names() == [b"a"]  # still unlocked by the first VALIDATE


def test_validate_without_a_password_is_refused(key):
    card = Card(key)
    assert card.send(0xA3, tlv(0x75, b"r" * 20) + tlv(0x74, b"h" * 8)) == (
        b"", SW.CONDITIONS_NOT_SATISFIED)


def test_password_set_after_select_or_reset_has_no_challenge_to_answer(key):
    access = b"k" * 16
    card = Card(key)  # selected without a password: no challenge was given
    assert card.send(0x03, set_code(access))[1] == SW.OK
    no_fixed_response_unlocks(card, access)
    assert card.send(0x04, p1=0xDE, p2=0xAD)[1] == SW.OK
    assert card.send(0x03, set_code(access))[1] == SW.OK
    no_fixed_response_unlocks(card, access)


def test_power_cycle_locks_and_forgets_the_challenge(key):
    access = b"k" * 16
    card, chal = locked_card(key, access)
    assert card.send(0xA3, tlv(0x75, sha1(access, chal)) + tlv(0x74, b"h" * 8))[1] == SW.OK
    assert card.names() == [b"a"]
    key.power_cycle()
    assert card.send(0xA1) == (b"", SW.SECURITY_CONDITION_NOT_SATISFIED)
    no_fixed_response_unlocks(card, access)
    card, _ = locked_card(key, access)
    key.power_cycle()  # a locked applet stays locked
    assert card.send(0xA1) == (b"", SW.SECURITY_CONDITION_NOT_SATISFIED)


def test_leaving_oath_on_one_interface_never_unlocks_another(key):
    """The key's one OATH applet answers every card interface (NFC and USB CCID); when
    one selects another applet, a locked session on the other stays locked."""
    access = b"k" * 16
    usb, _ = locked_card(key, access)
    nfc = Card(key)
    nfc.send(0xA4, bytes.fromhex("a000000527471117"), p1=0x04)  # management: leaves OATH
    assert usb.send(0xA1) == (b"", SW.SECURITY_CONDITION_NOT_SATISFIED)
    no_fixed_response_unlocks(usb, access)
    assert usb.send(0xA1) == (b"", SW.SECURITY_CONDITION_NOT_SATISFIED)
