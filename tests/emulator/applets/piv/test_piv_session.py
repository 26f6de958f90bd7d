"""The PIV applet driven in-process by yubikit's own PivSession (no pcscd): every key type
and command, PIN/PUK/management-key rules, policies, objects and persistence."""

from __future__ import annotations

import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, x25519
from ykman.piv import generate_ccc, generate_chuid, get_piv_info
from yubikit.core import InvalidPinError
from yubikit.core.smartcard import ApduError, BadResponseError
from yubikit.management import CAPABILITY
from yubikit.piv import (
    DEFAULT_MANAGEMENT_KEY,
    KEY_TYPE,
    MANAGEMENT_KEY_TYPE,
    OBJECT_ID,
    PIN_POLICY,
    SLOT,
    TOUCH_POLICY,
    Chuid,
    PivSession,
)
from yubikit.support import read_info

from hwtoken.emulator.iso7816 import SW, CardOS
from hwtoken.emulator.key import VirtualKey
from hwtoken.emulator.presence import AskCallback, DenyAlways
from hwtoken.emulator.transports.card_direct import DirectCardConnection

PIN, PUK = "123456", "12345678"
MESSAGE = b"hwtoken signs this"


@pytest.fixture
def key(tmp_path):
    k = VirtualKey.create(tmp_path / "k.key", serial=5550123)
    yield k
    k.close()


def session(key, card: CardOS | None = None) -> PivSession:
    return PivSession(DirectCardConnection(card or CardOS(key, strict=True)))


def admin(key) -> PivSession:
    s = session(key)
    s.authenticate(DEFAULT_MANAGEMENT_KEY)
    return s


def verify_signature(public, key_type: KEY_TYPE, sig: bytes, message: bytes = MESSAGE):
    if key_type is KEY_TYPE.ED25519:
        public.verify(sig, message)
    elif key_type.algorithm.value == "ec":
        public.verify(sig, message, ec.ECDSA(hashes.SHA256()))
    else:
        public.verify(sig, message, padding.PKCS1v15(), hashes.SHA256())


def reload(key) -> VirtualKey:
    path = key.path
    key.close()
    return VirtualKey.load(path)


# -- identity and defaults ---------------------------------------------------------------------
def test_defaults_of_firmware_5_7(key):
    s = session(key)
    assert tuple(s.version) == (5, 7, 4)
    assert s.get_serial() == 5550123
    assert s.management_key_type is MANAGEMENT_KEY_TYPE.AES192
    pin, puk = s.get_pin_metadata(), s.get_puk_metadata()
    assert (pin.default_value, pin.total_attempts, pin.attempts_remaining) == (True, 3, 3)
    assert (puk.default_value, puk.total_attempts, puk.attempts_remaining) == (True, 3, 3)
    mgm = s.get_management_key_metadata()
    assert mgm.default_value and mgm.touch_policy is TOUCH_POLICY.NEVER
    meta = s.get_slot_metadata(SLOT.ATTESTATION)  # the factory attestation key
    assert meta.key_type is KEY_TYPE.ECCP256 and not meta.generated
    with pytest.raises(ApduError) as exc:
        s.get_slot_metadata(SLOT.AUTHENTICATION)
    assert exc.value.sw == SW.REFERENCE_DATA_NOT_FOUND


def test_ykman_piv_info_and_management_capability(key):
    lines = get_piv_info(session(key))
    assert str(lines[0]["PIV version"]) == "5.7.4"
    assert lines[0]["PIN tries remaining"] == "3/3"
    assert lines[0]["Management key algorithm"] == "AES192"
    assert "WARNING: Using default PIN!" in lines
    info = read_info(DirectCardConnection(CardOS(key)))
    for transport in info.supported_capabilities:
        assert CAPABILITY.PIV in info.supported_capabilities[transport]
        assert CAPABILITY.PIV in info.config.enabled_capabilities[transport]


def test_select_by_prefixes_of_the_aid(key):
    card = CardOS(key, strict=True)
    for aid in ("a000000308", "a00000030800001000", "a000000308000010000100"):
        resp = card.transmit(bytes.fromhex(f"00a40400{len(aid) // 2:02x}{aid}"))
        assert resp == bytes.fromhex("61114f0600001000010079074f05a0000003089000")


# -- every key type ----------------------------------------------------------------------------
FAST_TYPES = [KEY_TYPE.ECCP256, KEY_TYPE.ECCP384, KEY_TYPE.ED25519, KEY_TYPE.RSA1024,
              KEY_TYPE.RSA2048, KEY_TYPE.RSA3072]


@pytest.mark.parametrize("key_type", FAST_TYPES, ids=str)
def test_generate_sign_metadata_attest(key, key_type):
    s = admin(key)
    public = s.generate_key(SLOT.AUTHENTICATION, key_type)
    meta = s.get_slot_metadata(SLOT.AUTHENTICATION)
    assert meta.key_type is key_type and meta.generated
    assert meta.pin_policy is PIN_POLICY.ONCE and meta.touch_policy is TOUCH_POLICY.NEVER
    assert meta.public_key.public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo) == \
        public.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(ApduError) as exc:
        s.sign(SLOT.AUTHENTICATION, key_type, MESSAGE, hashes.SHA256(), padding.PKCS1v15())
    assert exc.value.sw == SW.SECURITY_CONDITION_NOT_SATISFIED
    s.verify_pin(PIN)
    sig = s.sign(SLOT.AUTHENTICATION, key_type, MESSAGE, hashes.SHA256(), padding.PKCS1v15())
    verify_signature(public, key_type, sig)
    cert = s.attest_key(SLOT.AUTHENTICATION)
    assert cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) == \
        public.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def test_rsa4096_generate_and_sign(key):
    s = admin(key)
    public = s.generate_key(SLOT.RETIRED1, KEY_TYPE.RSA4096)
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 4096
    s.verify_pin(PIN)
    sig = s.sign(SLOT.RETIRED1, KEY_TYPE.RSA4096, MESSAGE, hashes.SHA256(), padding.PKCS1v15())
    verify_signature(public, KEY_TYPE.RSA4096, sig)


def _private_keys():
    return {
        KEY_TYPE.ECCP256: ec.generate_private_key(ec.SECP256R1()),
        KEY_TYPE.ECCP384: ec.generate_private_key(ec.SECP384R1()),
        KEY_TYPE.ED25519: ed25519.Ed25519PrivateKey.generate(),
        KEY_TYPE.X25519: x25519.X25519PrivateKey.generate(),
        KEY_TYPE.RSA1024: rsa.generate_private_key(65537, 1024),
        KEY_TYPE.RSA2048: rsa.generate_private_key(65537, 2048),
    }


def test_import_every_key_type_then_use_it(key):
    s = admin(key)
    s.verify_pin(PIN)
    for kt, private in _private_keys().items():
        assert s.put_key(SLOT.KEY_MANAGEMENT, private) is kt
        meta = s.get_slot_metadata(SLOT.KEY_MANAGEMENT)
        assert meta.key_type is kt and not meta.generated
        if kt is KEY_TYPE.X25519:
            peer = x25519.X25519PrivateKey.generate()
            assert s.calculate_secret(SLOT.KEY_MANAGEMENT, peer.public_key()) == \
                peer.exchange(private.public_key())
            continue
        sig = s.sign(SLOT.KEY_MANAGEMENT, kt, MESSAGE, hashes.SHA256(), padding.PKCS1v15())
        verify_signature(private.public_key(), kt, sig)
        with pytest.raises(ApduError) as exc:  # only keys born on the card are attested
            s.attest_key(SLOT.KEY_MANAGEMENT)
        assert exc.value.sw == SW.INCORRECT_PARAMETERS


def test_import_rsa_with_another_exponent_is_refused(key):
    s = admin(key)
    private = rsa.generate_private_key(3, 1024)
    nums = private.private_numbers()
    from yubikit.core import Tlv, int2bytes

    data = b"".join(Tlv(t, int2bytes(v, 64)) for t, v in enumerate(
        (nums.p, nums.q, nums.dmp1, nums.dmq1, nums.iqmp), start=1))
    with pytest.raises(ApduError) as exc:
        s.protocol.send_apdu(0, 0xFE, KEY_TYPE.RSA1024, SLOT.AUTHENTICATION, data)
    assert exc.value.sw == SW.INCORRECT_PARAMETERS


@pytest.mark.parametrize("curve,key_type", [(ec.SECP256R1(), KEY_TYPE.ECCP256),
                                            (ec.SECP384R1(), KEY_TYPE.ECCP384)],
                         ids=["ECCP256", "ECCP384"])
def test_ecdh(key, curve, key_type):
    s = admin(key)
    public = s.generate_key(SLOT.KEY_MANAGEMENT, key_type)
    s.verify_pin(PIN)
    peer = ec.generate_private_key(curve)
    assert s.calculate_secret(SLOT.KEY_MANAGEMENT, peer.public_key()) == \
        peer.exchange(ec.ECDH(), public)


def test_x25519_generated(key):
    s = admin(key)
    public = s.generate_key(SLOT.KEY_MANAGEMENT, KEY_TYPE.X25519)
    s.verify_pin(PIN)
    peer = x25519.X25519PrivateKey.generate()
    assert s.calculate_secret(SLOT.KEY_MANAGEMENT, peer.public_key()) == peer.exchange(public)
    with pytest.raises(ApduError):  # an X25519 key cannot sign
        s.sign(SLOT.KEY_MANAGEMENT, KEY_TYPE.X25519, MESSAGE, None)


@pytest.mark.parametrize("pad", [padding.PKCS1v15(),
                                 padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(),
                                              None)], ids=["pkcs1", "oaep"])
def test_rsa_decrypt(key, pad):
    s = admin(key)
    public = s.generate_key(SLOT.KEY_MANAGEMENT, KEY_TYPE.RSA2048)
    s.verify_pin(PIN)
    assert s.decrypt(SLOT.KEY_MANAGEMENT, public.encrypt(b"secret", pad), pad) == b"secret"


def test_rsa_key_checks_and_private_operations_run_off_the_card_thread(key, monkeypatch):
    """RSA's heavy work (OpenSSL's check of an imported key; the private-key operation)
    goes to the offload worker, where holding Python's lock cannot stop the thread that
    sends CCID time extensions; a key read back from the store is not checked again."""
    from hwtoken.emulator import offload

    ran = []

    def recording_run(fn, *args):
        ran.append(fn.__name__)
        return real_run(fn, *args)

    real_run = offload.run
    monkeypatch.setattr(offload, "run", recording_run)
    s = admin(key)
    private = rsa.generate_private_key(65537, 2048)
    s.put_key(SLOT.KEY_MANAGEMENT, private)
    assert ran == ["checked_rsa_key"]
    s.verify_pin(PIN)
    pad = padding.PKCS1v15()
    assert s.decrypt(SLOT.KEY_MANAGEMENT, private.public_key().encrypt(b"x", pad), pad) == b"x"
    assert ran == ["checked_rsa_key", "rsa_private"]
    with pytest.raises(ApduError) as exc:  # OpenSSL's check, in the worker: p is no prime
        s.protocol.send_apdu(0, 0xFE, KEY_TYPE.RSA2048, SLOT.AUTHENTICATION,
                             _crt_parts_with_a_composite_p())
    assert exc.value.sw == SW.INCORRECT_PARAMETERS
    assert ran[-1] == "checked_rsa_key"


def _crt_parts_with_a_composite_p() -> bytes:
    """IMPORT KEY data of an "RSA-2048 key" whose CRT parts agree with each other (so only
    a primality check refuses it): p is an RSA-1024 modulus, q a real 1024-bit prime."""
    from math import gcd

    from yubikit.core import Tlv, int2bytes

    for _ in range(50):
        p = rsa.generate_private_key(65537, 1024).private_numbers().public_numbers.n
        q = rsa.generate_private_key(65537, 2048).private_numbers().p
        phi = (p - 1) * (q - 1)
        if (p * q).bit_length() == 2048 and gcd(65537, phi) == 1:
            d = pow(65537, -1, phi)
            parts = (p, q, d % (p - 1), d % (q - 1), pow(q, -1, p))
            return b"".join(Tlv(t, int2bytes(v, 128)) for t, v in enumerate(parts, start=1))
    raise AssertionError("no composite-p key found in 50 tries")


def test_sign_with_wrong_algorithm_or_empty_slot(key):
    s = admin(key)
    s.generate_key(SLOT.AUTHENTICATION, KEY_TYPE.ECCP256)
    s.verify_pin(PIN)
    for slot, kt in ((SLOT.AUTHENTICATION, KEY_TYPE.ECCP384), (SLOT.RETIRED5, KEY_TYPE.ECCP256)):
        with pytest.raises(ApduError) as exc:
            s.sign(slot, kt, MESSAGE, hashes.SHA256())
        assert exc.value.sw == SW.INCORRECT_PARAMETERS


# -- PIN policies, touch policies, volatile state ----------------------------------------------
def test_signature_slot_needs_the_pin_before_every_use(key):
    s = admin(key)
    public = s.generate_key(SLOT.SIGNATURE, KEY_TYPE.ECCP256)
    assert s.get_slot_metadata(SLOT.SIGNATURE).pin_policy is PIN_POLICY.ALWAYS
    s.verify_pin(PIN)
    verify_signature(public, KEY_TYPE.ECCP256,
                     s.sign(SLOT.SIGNATURE, KEY_TYPE.ECCP256, MESSAGE, hashes.SHA256()))
    with pytest.raises(ApduError) as exc:
        s.sign(SLOT.SIGNATURE, KEY_TYPE.ECCP256, MESSAGE, hashes.SHA256())
    assert exc.value.sw == SW.SECURITY_CONDITION_NOT_SATISFIED
    s.verify_pin(PIN)
    s.sign(SLOT.SIGNATURE, KEY_TYPE.ECCP256, MESSAGE, hashes.SHA256())


def test_card_auth_slot_needs_no_pin_and_policies_are_kept(key):
    s = admin(key)
    s.generate_key(SLOT.CARD_AUTH, KEY_TYPE.ECCP256)
    s.sign(SLOT.CARD_AUTH, KEY_TYPE.ECCP256, MESSAGE, hashes.SHA256())  # no VERIFY
    s.generate_key(SLOT.RETIRED2, KEY_TYPE.ECCP256, PIN_POLICY.NEVER, TOUCH_POLICY.CACHED)
    meta = s.get_slot_metadata(SLOT.RETIRED2)
    assert (meta.pin_policy, meta.touch_policy) == (PIN_POLICY.NEVER, TOUCH_POLICY.CACHED)


class _SamePower(DirectCardConnection):
    """A second connection to a card that stays powered (no power-on: no reset)."""

    def __init__(self, card: CardOS) -> None:
        self.card = card
        self._transport = DirectCardConnection(CardOS()).transport


def test_pin_survives_reselect_but_not_another_applet_or_power_loss(key):
    card = CardOS(key, strict=True)
    s = PivSession(DirectCardConnection(card))
    s.authenticate(DEFAULT_MANAGEMENT_KEY)
    s.generate_key(SLOT.AUTHENTICATION, KEY_TYPE.ECCP256)
    s.verify_pin(PIN)
    s2 = PivSession(_SamePower(card))  # PIV selected again
    s2.sign(SLOT.AUTHENTICATION, KEY_TYPE.ECCP256, MESSAGE, hashes.SHA256())
    s2.generate_key(SLOT.RETIRED1, KEY_TYPE.ECCP256)  # still authenticated, too
    card.transmit(bytes.fromhex("00a4040007a0000005272101"))  # select OATH
    s3 = PivSession(_SamePower(card))
    with pytest.raises(ApduError):
        s3.sign(SLOT.AUTHENTICATION, KEY_TYPE.ECCP256, MESSAGE, hashes.SHA256())
    s3.verify_pin(PIN)
    key.power_cycle()
    with pytest.raises(ApduError):
        s3.sign(SLOT.AUTHENTICATION, KEY_TYPE.ECCP256, MESSAGE, hashes.SHA256())


def test_a_pin_always_key_needs_a_verify_after_a_power_loss(key):
    s = admin(key)
    s.generate_key(SLOT.SIGNATURE, KEY_TYPE.ECCP256)
    s.verify_pin(PIN)  # verified, the key not used yet ...
    key.power_cycle()  # ... and the power goes
    s = session(key)
    with pytest.raises(ApduError) as exc:
        s.sign(SLOT.SIGNATURE, KEY_TYPE.ECCP256, MESSAGE, hashes.SHA256())
    assert exc.value.sw == SW.SECURITY_CONDITION_NOT_SATISFIED
    s.verify_pin(PIN)
    s.sign(SLOT.SIGNATURE, KEY_TYPE.ECCP256, MESSAGE, hashes.SHA256())


def test_external_authentication_asks_for_the_touch_by_name(key):
    from yubikit.core import Tlv

    from hwtoken.emulator.applets.piv import keys

    mk = b"\x07" * 16
    admin(key).set_management_key(MANAGEMENT_KEY_TYPE.AES128, mk, require_touch=True)
    s = session(key)
    asked = _counting_presence(key)
    resp = s.protocol.send_apdu(0, 0x87, 0x08, 0x9B, bytes.fromhex("7c028100"))
    challenge = Tlv.unpack(0x81, Tlv.unpack(0x7C, resp))
    assert asked == []  # the challenge needs no touch, the answer to it does
    answer = keys.encrypt_block(MANAGEMENT_KEY_TYPE.AES128, mk, challenge)
    s.protocol.send_apdu(0, 0x87, 0x08, 0x9B, Tlv(0x7C, Tlv(0x82, answer)))
    assert asked == ["PIV management key"]
    s.generate_key(SLOT.AUTHENTICATION, KEY_TYPE.ECCP256)  # authenticated


def _counting_presence(key, answer=True):
    asked: list[str] = []

    def ask(reason: str) -> bool:
        asked.append(reason)
        return answer

    key.presence = AskCallback(ask, timeout=5)
    return asked


def test_touch_always_asks_every_time_and_cached_once(key):
    s = admin(key)
    s.generate_key(SLOT.RETIRED1, KEY_TYPE.ECCP256, PIN_POLICY.NEVER, TOUCH_POLICY.ALWAYS)
    s.generate_key(SLOT.RETIRED2, KEY_TYPE.ECCP256, PIN_POLICY.NEVER, TOUCH_POLICY.CACHED)
    asked = _counting_presence(key)
    for _ in range(3):
        s.sign(SLOT.RETIRED2, KEY_TYPE.ECCP256, MESSAGE, hashes.SHA256())
    assert asked == ["PIV key 83"]  # CACHED: one touch lasts 15 s
    for _ in range(2):
        s.sign(SLOT.RETIRED1, KEY_TYPE.ECCP256, MESSAGE, hashes.SHA256())
    assert asked == ["PIV key 83", "PIV key 82", "PIV key 82"]  # ALWAYS: every use


def test_touch_denied_refuses_the_signature(key):
    s = admin(key)
    s.generate_key(SLOT.RETIRED1, KEY_TYPE.ECCP256, PIN_POLICY.NEVER, TOUCH_POLICY.ALWAYS)
    key.presence = DenyAlways()
    with pytest.raises(ApduError) as exc:
        s.sign(SLOT.RETIRED1, KEY_TYPE.ECCP256, MESSAGE, hashes.SHA256())
    assert exc.value.sw == SW.SECURITY_CONDITION_NOT_SATISFIED


# -- PIN, PUK, retries, reset -----------------------------------------------------------------
def test_wrong_pin_counts_down_persists_and_blocks(key):
    s = session(key)
    with pytest.raises(InvalidPinError) as exc:
        s.verify_pin("654321")
    assert exc.value.attempts_remaining == 2
    key = reload(key)
    try:
        s = session(key)
        assert s.get_pin_attempts() == 2
        s.verify_pin(PIN)  # a right PIN restores the counter
        assert s.get_pin_metadata().attempts_remaining == 3
        for left in (2, 1, 0):
            with pytest.raises(InvalidPinError) as exc:
                s.verify_pin("000000")
            assert exc.value.attempts_remaining == left
        with pytest.raises(InvalidPinError) as exc:
            s.verify_pin(PIN)  # blocked: even the right PIN
        assert exc.value.attempts_remaining == 0
        s.unblock_pin(PUK, "246810")
        s.verify_pin("246810")
        assert s.get_pin_metadata().default_value is False
    finally:
        key.close()


def test_pin_try_is_committed_before_the_comparison(key):
    """Each try reaches the disk decremented first: a card pulled mid-VERIFY has spent it."""
    seen: list[int] = []
    commit = key.store.commit

    def recording_commit():
        commit()
        seen.append(json.loads(key.path.read_text())["piv"]["pin"]["remaining"])

    key.store.commit = recording_commit
    s = session(key)
    s.verify_pin(PIN)
    assert seen == [2, 3]
    seen.clear()
    with pytest.raises(InvalidPinError):
        s.verify_pin("999999")
    assert seen == [2]


def test_change_pin_and_puk(key):
    s = session(key)
    s.change_pin(PIN, "abcdef12")
    with pytest.raises(InvalidPinError):
        s.verify_pin(PIN)
    s.verify_pin("abcdef12")
    s.change_puk(PUK, "87654321")
    with pytest.raises(InvalidPinError) as exc:
        s.change_puk(PUK, "11111111")
    assert exc.value.attempts_remaining == 2
    assert s.get_puk_metadata().default_value is False
    with pytest.raises(ApduError) as exc2:  # a new PIN must have 6 to 8 characters
        s.protocol.send_apdu(0, 0x24, 0, 0x80, b"abcdef12" + b"12345\xff\xff\xff")
    assert exc2.value.sw == SW.INCORRECT_PARAMETERS
    s.verify_pin("abcdef12")  # unchanged, and the try was given back


def test_reset_needs_pin_and_puk_blocked_and_keeps_attestation(key):
    s = admin(key)
    s.generate_key(SLOT.AUTHENTICATION, KEY_TYPE.ECCP256)
    s.put_object(OBJECT_ID.CHUID, generate_chuid())
    s.set_management_key(MANAGEMENT_KEY_TYPE.AES256, b"\x42" * 32)
    f9_before = s.get_certificate(SLOT.ATTESTATION)
    with pytest.raises(ApduError) as exc:
        s.protocol.send_apdu(0, 0xFB, 0, 0)
    assert exc.value.sw == SW.CONDITIONS_NOT_SATISFIED
    s.reset()  # yubikit blocks PIN and PUK first
    assert s.management_key_type is MANAGEMENT_KEY_TYPE.AES192
    s.authenticate(DEFAULT_MANAGEMENT_KEY)
    s.verify_pin(PIN)
    assert s.get_puk_metadata().attempts_remaining == 3
    with pytest.raises(ApduError) as exc:
        s.get_slot_metadata(SLOT.AUTHENTICATION)
    assert exc.value.sw == SW.REFERENCE_DATA_NOT_FOUND
    with pytest.raises(ApduError):
        s.get_object(OBJECT_ID.CHUID)
    assert s.get_certificate(SLOT.ATTESTATION) == f9_before


def test_set_pin_attempts_needs_pin_and_management_key(key):
    s = session(key)
    with pytest.raises(ApduError):
        s.set_pin_attempts(5, 4)
    s.authenticate(DEFAULT_MANAGEMENT_KEY)
    with pytest.raises(ApduError):
        s.set_pin_attempts(5, 4)
    s.change_pin(PIN, "999999")
    s.verify_pin("999999")
    s.set_pin_attempts(5, 4)
    pin, puk = s.get_pin_metadata(), s.get_puk_metadata()
    assert (pin.total_attempts, pin.attempts_remaining, pin.default_value) == (5, 5, True)
    assert (puk.total_attempts, puk.attempts_remaining) == (4, 4)


# -- management key -----------------------------------------------------------------------------
@pytest.mark.parametrize("key_type", list(MANAGEMENT_KEY_TYPE), ids=lambda k: k.name)
def test_management_key_types(key, key_type):
    s = admin(key)
    new = bytes(range(1, key_type.key_len + 1))
    s.set_management_key(key_type, new)
    s2 = session(key)
    assert s2.management_key_type is key_type
    assert not s2.get_management_key_metadata().default_value
    with pytest.raises((ApduError, BadResponseError)):
        s2.authenticate(bytes(key_type.key_len))
    s2.authenticate(new)
    s2.generate_key(SLOT.AUTHENTICATION, KEY_TYPE.ECCP256)


def test_management_key_p1_must_match_the_stored_type(key):
    s = session(key)
    with pytest.raises(ApduError) as exc:  # what yubico-piv-tool 2.2 sends: 3DES
        s.protocol.send_apdu(0, 0x87, 0x03, 0x9B, bytes.fromhex("7c028000"))
    assert exc.value.sw == SW.INCORRECT_PARAMETERS


def test_external_authentication(key):
    from yubikit.core import Tlv

    from hwtoken.emulator.applets.piv import keys
    from hwtoken.emulator.applets.piv.constants import MANAGEMENT_KEY_TYPE as MK

    s = session(key)
    resp = s.protocol.send_apdu(0, 0x87, 0x0A, 0x9B, bytes.fromhex("7c028100"))
    challenge = Tlv.unpack(0x81, Tlv.unpack(0x7C, resp))
    answer = keys.encrypt_block(MK.AES192, DEFAULT_MANAGEMENT_KEY, challenge)
    s.protocol.send_apdu(0, 0x87, 0x0A, 0x9B, Tlv(0x7C, Tlv(0x82, answer)))
    s.generate_key(SLOT.AUTHENTICATION, KEY_TYPE.ECCP256)  # authenticated


def test_management_key_touch(key):
    s = admin(key)
    s.set_management_key(MANAGEMENT_KEY_TYPE.AES128, b"\x07" * 16, require_touch=True)
    s = session(key)
    assert s.get_management_key_metadata().touch_policy is TOUCH_POLICY.ALWAYS
    asked = _counting_presence(key)
    s.authenticate(b"\x07" * 16)
    assert asked == ["PIV management key"]
    key.presence = DenyAlways()
    with pytest.raises(ApduError):
        s.authenticate(b"\x07" * 16)


def test_commands_that_need_the_management_key(key):
    s = session(key)
    for call in (lambda: s.generate_key(SLOT.AUTHENTICATION, KEY_TYPE.ECCP256),
                 lambda: s.put_object(OBJECT_ID.CHUID, b"x"),
                 lambda: s.put_key(SLOT.AUTHENTICATION, ec.generate_private_key(ec.SECP256R1())),
                 lambda: s.set_management_key(MANAGEMENT_KEY_TYPE.AES128, bytes(16)),
                 lambda: s.move_key(SLOT.ATTESTATION, SLOT.RETIRED1),
                 lambda: s.delete_key(SLOT.AUTHENTICATION)):
        with pytest.raises(ApduError) as exc:
            call()
        assert exc.value.sw in (SW.SECURITY_CONDITION_NOT_SATISFIED, 0x6A86)


# -- objects and certificates -------------------------------------------------------------------
def _self_signed(private) -> x509.Certificate:
    import datetime

    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "hwtoken test")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(private.public_key()).serial_number(7)
            .not_valid_before(datetime.datetime(2024, 1, 1))
            .not_valid_after(datetime.datetime(2034, 1, 1))
            .sign(private, hashes.SHA256()))


@pytest.mark.parametrize("compress", [False, True])
def test_certificates_and_objects(key, compress):
    s = admin(key)
    private = rsa.generate_private_key(65537, 2048)
    cert = _self_signed(private)
    s.put_certificate(SLOT.SIGNATURE, cert, compress=compress)
    assert s.get_certificate(SLOT.SIGNATURE) == cert
    s.put_object(OBJECT_ID.CHUID, generate_chuid())
    assert Chuid.from_bytes(s.get_object(OBJECT_ID.CHUID)).fasc_n.agency_code == 9999
    ccc = generate_ccc()
    s.put_object(OBJECT_ID.CAPABILITY, ccc)
    assert s.get_object(OBJECT_ID.CAPABILITY) == ccc
    assert s.get_object(OBJECT_ID.DISCOVERY).startswith(bytes.fromhex("4f0ba000000308"))
    s.delete_certificate(SLOT.SIGNATURE)
    with pytest.raises(ApduError) as exc:
        s.get_certificate(SLOT.SIGNATURE)
    assert exc.value.sw == SW.FILE_NOT_FOUND
    with pytest.raises(ApduError) as exc:
        s.put_object(OBJECT_ID.DISCOVERY, b"\x4f\x00")
    assert exc.value.sw == SW.INCORRECT_PARAMETERS
    with pytest.raises(ApduError) as exc:
        s.put_object(OBJECT_ID.RETIRED1, bytes(3064))
    assert exc.value.sw == SW.NO_SPACE
    s.put_object(OBJECT_ID.RETIRED1, bytes(3063))  # the largest object fits
    assert len(s.get_object(OBJECT_ID.RETIRED1)) == 3063


def test_printed_information_needs_the_pin(key):
    s = admin(key)
    s.put_object(OBJECT_ID.PRINTED, b"\x88\x00")
    with pytest.raises(ApduError) as exc:
        s.get_object(OBJECT_ID.PRINTED)
    assert exc.value.sw == SW.SECURITY_CONDITION_NOT_SATISFIED
    s.verify_pin(PIN)
    assert s.get_object(OBJECT_ID.PRINTED) == b"\x88\x00"


def test_move_and_delete_keys(key):
    s = admin(key)
    public = s.generate_key(SLOT.AUTHENTICATION, KEY_TYPE.ECCP256)
    s.generate_key(SLOT.RETIRED3, KEY_TYPE.ECCP256)
    with pytest.raises(ApduError) as exc:  # the destination must be empty
        s.move_key(SLOT.AUTHENTICATION, SLOT.RETIRED3)
    assert exc.value.sw == SW.INCORRECT_PARAMETERS
    s.move_key(SLOT.AUTHENTICATION, SLOT.RETIRED4)
    assert s.get_slot_metadata(SLOT.RETIRED4).public_key.public_numbers() == \
        public.public_numbers()
    with pytest.raises(ApduError) as exc:
        s.get_slot_metadata(SLOT.AUTHENTICATION)
    assert exc.value.sw == SW.REFERENCE_DATA_NOT_FOUND
    s.delete_key(SLOT.RETIRED4)
    with pytest.raises(ApduError) as exc:
        s.delete_key(SLOT.RETIRED4)
    assert exc.value.sw == SW.REFERENCE_DATA_NOT_FOUND
    with pytest.raises(ApduError):
        s.move_key(SLOT.ATTESTATION, SLOT.RETIRED5)  # the attestation key stays put


def test_state_persists_across_reload(key):
    s = admin(key)
    public = s.generate_key(SLOT.AUTHENTICATION, KEY_TYPE.ED25519)
    s.set_management_key(MANAGEMENT_KEY_TYPE.TDES, DEFAULT_MANAGEMENT_KEY)
    key = reload(key)
    try:
        s = session(key)
        assert s.management_key_type is MANAGEMENT_KEY_TYPE.TDES
        s.verify_pin(PIN)
        public.verify(s.sign(SLOT.AUTHENTICATION, KEY_TYPE.ED25519, MESSAGE, None), MESSAGE)
    finally:
        key.close()


def test_ecdsa_takes_longer_and_shorter_digests_as_ecdsa_does(key):
    """P-256 with a SHA-384 digest (cut to 32 bytes) or a SHA-1 one (the same number)."""
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
    from yubikit.core import Tlv

    s = admin(key)
    public = s.generate_key(SLOT.AUTHENTICATION, KEY_TYPE.ECCP256)
    s.verify_pin(PIN)
    for algorithm in (hashes.SHA384(), hashes.SHA1()):
        h = hashes.Hash(algorithm)
        h.update(MESSAGE)
        digest = h.finalize()
        resp = s.protocol.send_apdu(0, 0x87, KEY_TYPE.ECCP256, SLOT.AUTHENTICATION,
                                    Tlv(0x7C, Tlv(0x82) + Tlv(0x81, digest)))
        sig = Tlv.unpack(0x82, Tlv.unpack(0x7C, resp))
        public.verify(sig, digest, ec.ECDSA(Prehashed(algorithm)))


@pytest.mark.parametrize("object_id", [0x5F0000, 0x5F0001, 0x5FABCD, 0x5FFFFF], ids=hex)
def test_every_object_id_from_5f0000_to_5fffff_is_stored(key, object_id):
    s = admin(key)
    s.put_object(object_id, b"\x01\x02" + object_id.to_bytes(3, "big"))
    assert s.get_object(object_id) == b"\x01\x02" + object_id.to_bytes(3, "big")


@pytest.mark.parametrize("object_id", [0x5EFFFF, 0x600000, 0x5FC1], ids=hex)
def test_object_ids_outside_5fxxxx_are_refused(key, object_id):
    s = admin(key)
    with pytest.raises(ApduError) as exc:
        s.put_object(object_id, b"\x01")
    assert exc.value.sw == SW.INCORRECT_PARAMETERS
    with pytest.raises(ApduError) as exc:
        s.get_object(object_id)
    assert exc.value.sw == SW.INCORRECT_PARAMETERS
