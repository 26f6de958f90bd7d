"""PIV rules a client library cannot check for us: the card compares the management-key
witness and answer itself, a failed authentication leaves management-only commands
refused (exact status words), PIN/PUK tries are given back after a right value (counters
read back exactly, and from disk), and attestation certificates take the F9 certificate's
validity. Each test names the bug it is there to catch."""

from __future__ import annotations

import datetime
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from yubikit.core import InvalidPinError
from yubikit.core.smartcard import ApduError
from yubikit.piv import DEFAULT_MANAGEMENT_KEY, KEY_TYPE, SLOT, PivSession

from hwtoken.emulator import tlv
from hwtoken.emulator.applets.piv import keys
from hwtoken.emulator.applets.piv.constants import MANAGEMENT_KEY_TYPE
from hwtoken.emulator.iso7816 import SW, CardOS
from hwtoken.emulator.key import VirtualKey
from hwtoken.emulator.transports.card_direct import DirectCardConnection

PIN, PUK = "123456", "12345678"
AES192 = MANAGEMENT_KEY_TYPE.AES192
GENERATE_9A = bytes([0, 0x47, 0, 0x9A]) + bytes([5]) + tlv.tlv(0xAC, tlv.tlv(0x80, b"\x11"))


@pytest.fixture
def key(tmp_path):
    k = VirtualKey.create(tmp_path / "k.key", serial=7700)
    yield k
    k.close()


@pytest.fixture
def card(key):
    c = CardOS(key, strict=True)
    c.power_on()
    assert c.transmit(bytes.fromhex("00a4040005a000000308"))[-2:] == b"\x90\x00"
    return c


def sw(resp: bytes) -> int:
    return int.from_bytes(resp[-2:], "big")


def auth(card: CardOS, body: bytes) -> bytes:
    """GENERAL AUTHENTICATE with the card management key (AES-192), template 7C."""
    data = tlv.tlv(0x7C, body)
    return card.transmit(bytes([0, 0x87, AES192, 0x9B, len(data)]) + data)


def witness_step(card: CardOS) -> bytes:
    """Mutual authentication, step 1: the card's encrypted witness."""
    resp = auth(card, tlv.tlv(0x80))
    assert sw(resp) == SW.OK
    return tlv.unpack(0x80, tlv.unpack(0x7C, resp[:-2]))


def mutual_authenticate(card: CardOS) -> None:
    witness = keys.decrypt_block(AES192, DEFAULT_MANAGEMENT_KEY, witness_step(card))
    resp = auth(card, tlv.tlv(0x80, witness) + tlv.tlv(0x81, bytes(16)))
    assert sw(resp) == SW.OK


def generate_sw(card: CardOS) -> int:
    return sw(card.transmit(GENERATE_9A))


def session(key) -> PivSession:
    return PivSession(DirectCardConnection(CardOS(key, strict=True)))


def stored_retries(key, name: str) -> int:
    """The retry counter as committed to the state file (not the applet's memory)."""
    path = key.path
    import json

    return int(json.loads(path.read_text())["piv"][name]["remaining"])


# -- management key: the card compares -------------------------------------------------------
def test_a_wrong_witness_is_refused_and_generate_stays_refused(card):
    """Bug: the card answers 9000 to any decrypted witness (never compares it)."""
    witness_step(card)
    resp = auth(card, tlv.tlv(0x80, os.urandom(16)) + tlv.tlv(0x81, bytes(16)))
    assert resp == SW.SECURITY_CONDITION_NOT_SATISFIED.to_bytes(2, "big")  # no response
    assert generate_sw(card) == SW.SECURITY_CONDITION_NOT_SATISFIED


def test_the_witness_of_another_step_one_does_not_count(card):
    """A witness decrypted from an earlier step 1 is stale once a new one was asked for."""
    old = keys.decrypt_block(AES192, DEFAULT_MANAGEMENT_KEY, witness_step(card))
    witness_step(card)
    resp = auth(card, tlv.tlv(0x80, old) + tlv.tlv(0x81, bytes(16)))
    assert sw(resp) == SW.SECURITY_CONDITION_NOT_SATISFIED
    assert generate_sw(card) == SW.SECURITY_CONDITION_NOT_SATISFIED


def test_a_wrong_key_through_yubikit_is_the_cards_refusal(key):
    """yubikit would also notice a wrong answer on its side (BadResponseError): the card
    must say no first, with 6982."""
    s = session(key)
    with pytest.raises(ApduError) as exc:
        s.authenticate(bytes(24))
    assert exc.value.sw == SW.SECURITY_CONDITION_NOT_SATISFIED
    with pytest.raises(ApduError) as exc:
        s.generate_key(SLOT.AUTHENTICATION, KEY_TYPE.ECCP256)
    assert exc.value.sw == SW.SECURITY_CONDITION_NOT_SATISFIED


def test_a_failed_authentication_drops_an_earlier_one(card):
    mutual_authenticate(card)
    assert generate_sw(card) == SW.OK
    witness_step(card)
    assert sw(auth(card, tlv.tlv(0x80, bytes(16)) + tlv.tlv(0x81, bytes(16)))) == \
        SW.SECURITY_CONDITION_NOT_SATISFIED
    assert generate_sw(card) == SW.SECURITY_CONDITION_NOT_SATISFIED


def test_external_authentication_with_a_wrong_answer_is_refused(card):
    resp = auth(card, tlv.tlv(0x81))
    challenge = tlv.unpack(0x81, tlv.unpack(0x7C, resp[:-2]))
    wrong = keys.encrypt_block(AES192, bytes(24), challenge)
    assert auth(card, tlv.tlv(0x82, wrong)) == b"\x69\x82"
    assert generate_sw(card) == SW.SECURITY_CONDITION_NOT_SATISFIED
    resp = auth(card, tlv.tlv(0x81))  # and the right answer works
    challenge = tlv.unpack(0x81, tlv.unpack(0x7C, resp[:-2]))
    right = keys.encrypt_block(AES192, DEFAULT_MANAGEMENT_KEY, challenge)
    assert auth(card, tlv.tlv(0x82, right)) == b"\x90\x00"
    assert generate_sw(card) == SW.OK


def test_management_only_commands_after_a_failed_authentication(key):
    """Every command that needs the management key answers exactly 6982 (with the PIN
    verified: SET PIN RETRIES needs both)."""
    s = session(key)
    s.verify_pin(PIN)
    with pytest.raises(ApduError):
        s.authenticate(bytes(24))
    calls = {
        "generate": lambda: s.generate_key(SLOT.AUTHENTICATION, KEY_TYPE.ECCP256),
        "put object": lambda: s.put_object(0x5FC102, b"x"),
        "import": lambda: s.put_key(SLOT.AUTHENTICATION, ec.generate_private_key(ec.SECP256R1())),
        "set key": lambda: s.set_management_key(MANAGEMENT_KEY_TYPE.AES128, bytes(16)),
        "move": lambda: s.move_key(SLOT.AUTHENTICATION, SLOT.RETIRED1),
        "delete": lambda: s.delete_key(SLOT.AUTHENTICATION),
        "pin retries": lambda: s.set_pin_attempts(5, 5),
    }
    seen = {}
    for name, call in calls.items():
        with pytest.raises(ApduError) as exc:
            call()
        seen[name] = exc.value.sw
    assert seen == dict.fromkeys(calls, SW.SECURITY_CONDITION_NOT_SATISFIED)


# -- PIN and PUK tries given back --------------------------------------------------------------
def test_a_right_puk_gives_its_try_back_every_time(key):
    """Bug: RESET RETRY COUNTER keeps the PUK try it counted: three right unblocks block it."""
    s = session(key)
    for i in range(4):
        s.unblock_pin(PUK, f"24681{i}")
        assert s.get_puk_metadata().attempts_remaining == 3
        assert stored_retries(key, "puk") == 3
        s.verify_pin(f"24681{i}")
        assert s.get_pin_metadata().attempts_remaining == 3


def test_a_right_puk_after_a_wrong_one_restores_the_counter(key):
    s = session(key)
    with pytest.raises(InvalidPinError) as exc:
        s.unblock_pin("87654321", "135790")
    assert exc.value.attempts_remaining == 2
    assert stored_retries(key, "puk") == 2
    s.unblock_pin(PUK, "135790")
    assert s.get_puk_metadata().attempts_remaining == 3
    assert stored_retries(key, "puk") == 3


def test_change_pin_gives_the_try_back_on_disk(key):
    """Bug: CHANGE REFERENCE saves the new PIN without the restored retry counter."""
    s = session(key)
    with pytest.raises(InvalidPinError):
        s.change_pin("999999", "abcdef")
    assert stored_retries(key, "pin") == 2
    s.change_pin(PIN, "abcdef")
    assert s.get_pin_metadata().attempts_remaining == 3
    assert stored_retries(key, "pin") == 3
    for _ in range(3):  # as often as there are tries: never blocks
        s.change_pin("abcdef", "fedcba")
        s.change_pin("fedcba", "abcdef")
    assert stored_retries(key, "pin") == 3
    s.verify_pin("abcdef")


def test_change_puk_gives_the_try_back_on_disk(key):
    s = session(key)
    for _ in range(3):
        s.change_puk(PUK, "87654321")
        s.change_puk("87654321", PUK)
    assert s.get_puk_metadata().attempts_remaining == 3
    assert stored_retries(key, "puk") == 3


def test_a_rejected_new_pin_still_gives_the_try_back(key):
    s = session(key)
    with pytest.raises(ApduError) as exc:  # 5 characters: too short
        s.protocol.send_apdu(0, 0x24, 0, 0x80, b"123456\xff\xff" + b"12345\xff\xff\xff")
    assert exc.value.sw == SW.INCORRECT_PARAMETERS
    assert s.get_pin_metadata().attempts_remaining == 3
    assert stored_retries(key, "pin") == 3


# -- attestation takes the F9 certificate's validity -----------------------------------------
def test_attestation_validity_is_the_f9_certificates(key):
    """Bug: notBefore "now" instead of the F9 certificate's."""
    s = session(key)
    s.authenticate(DEFAULT_MANAGEMENT_KEY)
    s.generate_key(SLOT.SIGNATURE, KEY_TYPE.ECCP256)
    f9 = s.get_certificate(SLOT.ATTESTATION)
    leaf = s.attest_key(SLOT.SIGNATURE)
    assert (leaf.not_valid_before_utc, leaf.not_valid_after_utc) == \
        (f9.not_valid_before_utc, f9.not_valid_after_utc)


def test_attestation_under_an_imported_f9_takes_its_dates(key):
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Org attestation")])
    start = datetime.datetime(2021, 3, 4, 5, 6, 7, tzinfo=datetime.UTC)
    end = datetime.datetime(2041, 3, 4, 5, 6, 7, tzinfo=datetime.UTC)
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
          .public_key(ca_key.public_key()).serial_number(3)
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    s = session(key)
    s.authenticate(DEFAULT_MANAGEMENT_KEY)
    s.put_key(SLOT.ATTESTATION, ca_key)
    s.put_certificate(SLOT.ATTESTATION, ca)
    s.generate_key(SLOT.KEY_MANAGEMENT, KEY_TYPE.ECCP256)
    leaf = s.attest_key(SLOT.KEY_MANAGEMENT)
    assert (leaf.not_valid_before_utc, leaf.not_valid_after_utc) == (start, end)
    assert leaf.issuer == name
