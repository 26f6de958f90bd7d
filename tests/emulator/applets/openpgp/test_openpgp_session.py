"""The OpenPGP applet driven in-process by yubikit's own OpenPgpSession (no pcscd): every
command and key type, the PIN rules, touch policies, attestation, KDF, reset and
persistence."""

from __future__ import annotations

import struct

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, x25519
from cryptography.hazmat.primitives.serialization import Encoding
from ykman.openpgp import get_openpgp_info
from yubikit.core import InvalidPinError, NotSupportedError
from yubikit.core.smartcard import ApduError
from yubikit.openpgp import (
    DO,
    EXTENDED_CAPABILITY_FLAGS,
    KEY_REF,
    KEY_STATUS,
    OID,
    PIN_POLICY,
    PW,
    RSA_SIZE,
    UIF,
    EcAttributes,
    KdfIterSaltedS2k,
    KdfNone,
    OpenPgpSession,
    RsaAttributes,
)

from hwtoken.emulator.applets.openpgp import attestation as pgp_attestation
from hwtoken.emulator.iso7816 import SW, CardOS
from hwtoken.emulator.key import VirtualKey
from hwtoken.emulator.presence import AskCallback, DenyAlways
from hwtoken.emulator.transports.card_direct import DirectCardConnection

PIN, ADMIN = "123456", "12345678"
MESSAGE = b"hwtoken signs this"
WEIERSTRASS = [o for o in OID if "25519" not in o.name]


@pytest.fixture
def key(tmp_path):
    k = VirtualKey.create(tmp_path / "k.key", serial=20240521)
    yield k
    k.close()


def session(key) -> OpenPgpSession:
    return OpenPgpSession(DirectCardConnection(CardOS(key, strict=True)))


def admin(key) -> OpenPgpSession:
    s = session(key)
    s.verify_admin(ADMIN)
    return s


def reload(key) -> VirtualKey:
    path = key.path
    key.close()
    return VirtualKey.load(path)


def ec_curve(oid: OID) -> ec.EllipticCurve:
    return getattr(ec, oid.name)()


def raw(s: OpenPgpSession, cla: int, ins: int, p1: int, p2: int, data: bytes = b"",
        le: int = 0) -> int:
    """Send one APDU through the session's connection; its status word."""
    apdu = bytes([cla, ins, p1, p2]) + (bytes([len(data)]) + data if data else b"") \
        + (bytes([le]) if le else b"")
    return s.protocol.connection.send_and_receive(apdu)[1]


# -- identity and defaults ---------------------------------------------------------------------
def test_identity_and_defaults_of_firmware_5_7(key):
    s = session(key)
    assert tuple(s.version) == (5, 7, 4)
    assert s.aid.version == (3, 4) and s.aid.manufacturer == 6
    assert s.aid.serial == 20240521
    assert s.aid == bytes.fromhex("d2760001240103040006202405210000")
    info = get_openpgp_info(s)
    assert info["PIN tries remaining"] == 3 and info["Admin PIN tries remaining"] == 3
    assert info["Reset code tries remaining"] == 0
    assert info["Require PIN for signature"] is PIN_POLICY.ONCE
    assert info["KDF enabled"] is False
    assert not any(k.endswith("key") for k in info)  # no keys yet (the ATT key is not shown)
    caps = s.extended_capabilities
    assert caps.flags == (EXTENDED_CAPABILITY_FLAGS.KDF | EXTENDED_CAPABILITY_FLAGS.PRIVATE_USE
                          | EXTENDED_CAPABILITY_FLAGS.ALGORITHM_ATTRIBUTES_CHANGEABLE
                          | EXTENDED_CAPABILITY_FLAGS.PW_STATUS_CHANGEABLE
                          | EXTENDED_CAPABILITY_FLAGS.KEY_IMPORT
                          | EXTENDED_CAPABILITY_FLAGS.GET_CHALLENGE)
    assert (caps.challenge_max_length, caps.certificate_max_length,
            caps.special_do_max_length) == (3070, 2048, 255)
    data = s.get_application_related_data()
    assert data.historical == bytes.fromhex("00730000e0059000")
    assert data.extended_length_info.request_max_bytes == 3070
    assert data.general_feature_management == 0x20  # a button
    assert data.discretionary.key_information == {
        KEY_REF.SIG: KEY_STATUS.NONE, KEY_REF.DEC: KEY_STATUS.NONE,
        KEY_REF.AUT: KEY_STATUS.NONE, KEY_REF.ATT: KEY_STATUS.IMPORTED}
    for ref in (KEY_REF.SIG, KEY_REF.DEC, KEY_REF.AUT):
        assert s.get_algorithm_attributes(ref) == RsaAttributes.create(RSA_SIZE.RSA2048)
        assert s.get_uif(ref) is UIF.OFF
    assert s.get_algorithm_attributes(KEY_REF.ATT) == EcAttributes(0x13, OID.SECP256R1, 0)
    assert s.get_signature_counter() == 0
    assert isinstance(s.get_kdf(), KdfNone)


def test_algorithm_information_lists_what_firmware_5_7_accepts(key):
    info = session(key).get_algorithm_information()
    rsa_sizes = [RsaAttributes.create(size) for size in RSA_SIZE]
    ecdsa = [EcAttributes.create(KEY_REF.SIG, o) for o in WEIERSTRASS]
    ecdh = [EcAttributes.create(KEY_REF.DEC, o) for o in WEIERSTRASS]
    eddsa = EcAttributes.create(KEY_REF.SIG, OID.Ed25519)
    assert info[KEY_REF.SIG] == info[KEY_REF.AUT] == [*rsa_sizes, *ecdsa, eddsa]
    assert info[KEY_REF.DEC] == [*rsa_sizes, *ecdh, EcAttributes.create(KEY_REF.DEC, OID.X25519)]
    assert info[KEY_REF.ATT] == [*rsa_sizes, *ecdsa]


def test_unsupported_attributes_are_refused(key):
    s = admin(key)
    for ref, attributes in ((KEY_REF.SIG, EcAttributes.create(KEY_REF.DEC, OID.X25519)),
                            (KEY_REF.DEC, EcAttributes.create(KEY_REF.SIG, OID.Ed25519)),
                            (KEY_REF.SIG, RsaAttributes.create(1024))):
        with pytest.raises(ApduError) as e:
            s.put_data(ref.algorithm_attributes_do, attributes)
        assert e.value.sw == SW.INCORRECT_PARAMETERS


# -- PINs ----------------------------------------------------------------------------------------
def test_wrong_pins_count_down_block_and_the_reset_code_unblocks(key):
    s = session(key)
    for left in (2, 1, 0):
        with pytest.raises(InvalidPinError) as e:
            s.verify_pin("654321")
        assert e.value.attempts_remaining == left
    with pytest.raises(InvalidPinError) as e:  # blocked: the right PIN no longer helps
        s.verify_pin(PIN)
    assert e.value.attempts_remaining == 0
    assert raw(s, 0, 0x20, 0, 0x81, PIN.encode()) == SW.AUTH_METHOD_BLOCKED
    with pytest.raises(InvalidPinError):  # no resetting code is set
        s.reset_pin("111111", "87654321")
    s.verify_admin(ADMIN)
    s.set_reset_code("87654321")
    assert s.get_pin_status().attempts_reset == 3
    s = session(key)
    with pytest.raises(InvalidPinError) as e:
        s.reset_pin("111111", "00000000")
    assert e.value.attempts_remaining == 2
    s.reset_pin("111111", "87654321")
    assert s.get_pin_status().attempts_user == 3
    assert s.get_pin_status().attempts_reset == 3
    s.verify_pin("111111")


def test_admin_unblocks_the_pin_and_pins_change(key):
    s = session(key)
    for _ in range(3):
        with pytest.raises(InvalidPinError):
            s.verify_pin("000000")
    with pytest.raises(ApduError) as e:  # PW3 not verified
        s.reset_pin("222222")
    assert e.value.sw == SW.SECURITY_CONDITION_NOT_SATISFIED
    s.verify_admin(ADMIN)
    s.reset_pin("222222")
    s.change_pin("222222", "2222223")
    s.change_admin(ADMIN, "admin-pin")
    with pytest.raises(InvalidPinError) as e:
        s.change_pin("999999", "333333")
    assert e.value.attempts_remaining == 2
    s = session(key)
    s.verify_pin("2222223", extended=True)
    s.verify_admin("admin-pin")
    with pytest.raises(ApduError) as e:  # a new PIN too short
        s.protocol.send_apdu(0, 0x24, 0, 0x81, b"2222223" + b"12345")
    assert e.value.sw == SW.WRONG_LENGTH
    s.verify_pin("2222223")  # the failed change kept the PIN, and its tries
    assert s.get_pin_status().attempts_user == 3


def test_empty_verify_reports_and_ff_forgets(key):
    s = session(key)
    assert raw(s, 0, 0x20, 0, 0x81) == 0x63C3
    s.verify_pin(PIN)
    assert raw(s, 0, 0x20, 0, 0x81) == SW.OK
    assert raw(s, 0, 0x20, 0, 0x82) == 0x63C3  # mode 82 is verified on its own
    s.unverify_pin(PW.USER)
    assert raw(s, 0, 0x20, 0, 0x81) == 0x63C3
    with pytest.raises(InvalidPinError):
        s.verify_admin("wrong-admin")
    assert raw(s, 0, 0x20, 0, 0x83) == 0x63C2
    assert raw(s, 0, 0x20, 0, 0x84, b"123456") == SW.WRONG_PARAMETERS_P1P2


def test_set_pin_retries_needs_the_admin_pin(key):
    s = session(key)
    with pytest.raises(ApduError) as e:
        s.set_pin_attempts(5, 4, 6)
    assert e.value.sw == SW.SECURITY_CONDITION_NOT_SATISFIED
    s.verify_admin(ADMIN)
    s.set_pin_attempts(5, 4, 6)
    status = s.get_pin_status()
    assert (status.attempts_user, status.attempts_reset, status.attempts_admin) == (5, 0, 6)
    s.set_reset_code("87654321")
    assert s.get_pin_status().attempts_reset == 4
    with pytest.raises(ApduError) as e:
        s.set_pin_attempts(0, 3, 3)
    assert e.value.sw == SW.INCORRECT_PARAMETERS


def test_signature_pin_policy_always_needs_a_verify_per_signature(key):
    s = admin(key)
    s.generate_ec_key(KEY_REF.SIG, OID.SECP256R1)
    s.set_signature_pin_policy(PIN_POLICY.ALWAYS)
    assert get_openpgp_info(s)["Require PIN for signature"] is PIN_POLICY.ALWAYS
    s.verify_pin(PIN)
    s.sign(MESSAGE, hashes.SHA256())
    with pytest.raises(ApduError) as e:
        s.sign(MESSAGE, hashes.SHA256())
    assert e.value.sw == SW.SECURITY_CONDITION_NOT_SATISFIED
    s.verify_pin(PIN)
    s.sign(MESSAGE, hashes.SHA256())
    assert s.get_signature_counter() == 2


# -- keys: generate, import, use -------------------------------------------------------------------
@pytest.mark.parametrize("oid", WEIERSTRASS, ids=lambda o: o.name)
def test_generated_ecdsa_and_ecdh_keys_on_every_curve(key, oid):
    s = admin(key)
    pub = s.generate_ec_key(KEY_REF.SIG, oid)
    s.verify_pin(PIN)
    for algorithm in (hashes.SHA256(), hashes.SHA512(), hashes.SHA1()):
        pub.verify(s.sign(MESSAGE, algorithm), MESSAGE, ec.ECDSA(algorithm))
    assert s.get_public_key(KEY_REF.SIG) == pub
    pub = s.generate_ec_key(KEY_REF.DEC, oid)
    peer = ec.generate_private_key(ec_curve(oid))
    s.verify_pin(PIN, extended=True)
    assert s.decrypt(peer.public_key()) == peer.exchange(ec.ECDH(), pub)
    pub = s.generate_ec_key(KEY_REF.AUT, oid)
    pub.verify(s.authenticate(MESSAGE, hashes.SHA384()), MESSAGE, ec.ECDSA(hashes.SHA384()))


def test_generated_25519_keys(key):
    s = admin(key)
    sig = s.generate_ec_key(KEY_REF.SIG, OID.Ed25519)
    aut = s.generate_ec_key(KEY_REF.AUT, OID.Ed25519)
    dec = s.generate_ec_key(KEY_REF.DEC, OID.X25519)
    s.verify_pin(PIN)
    sig.verify(s.sign(MESSAGE, hashes.SHA256()), MESSAGE)
    s.verify_pin(PIN, extended=True)
    aut.verify(s.authenticate(MESSAGE, hashes.SHA256()), MESSAGE)
    peer = x25519.X25519PrivateKey.generate()
    assert s.decrypt(peer.public_key()) == peer.exchange(dec)


def test_generated_rsa_key_signs_decrypts_and_authenticates(key):
    s = admin(key)
    sig = s.generate_rsa_key(KEY_REF.SIG, RSA_SIZE.RSA2048)
    dec = s.generate_rsa_key(KEY_REF.DEC, RSA_SIZE.RSA2048)
    aut = s.generate_rsa_key(KEY_REF.AUT, RSA_SIZE.RSA2048)
    s.verify_pin(PIN)
    sig.verify(s.sign(MESSAGE, hashes.SHA256()), MESSAGE, padding.PKCS1v15(), hashes.SHA256())
    s.verify_pin(PIN, extended=True)
    cipher = dec.encrypt(b"session key", padding.PKCS1v15())
    assert s.decrypt(cipher) == b"session key"
    aut.verify(s.authenticate(MESSAGE, hashes.SHA512()), MESSAGE, padding.PKCS1v15(),
               hashes.SHA512())
    with pytest.raises(ApduError) as e:  # a DigestInfo longer than 40 % of the modulus
        s.protocol.send_apdu(0, 0x88, 0, 0, bytes(103))
    assert e.value.sw == SW.WRONG_LENGTH
    with pytest.raises(ApduError) as e:  # no padding indicator byte
        s.protocol.send_apdu(0, 0x2A, 0x80, 0x86, b"\x01" + cipher)
    assert e.value.sw == SW.INCORRECT_PARAMETERS
    with pytest.raises(ApduError) as e:  # not PKCS #1 v1.5 inside
        s.protocol.send_apdu(0, 0x2A, 0x80, 0x86, b"\0" + bytes(255) + b"\x01")
    assert e.value.sw == SW.INCORRECT_PARAMETERS


@pytest.mark.parametrize("bits", [2048, 3072, 4096])
def test_imported_rsa_keys(key, bits):
    priv = rsa.generate_private_key(65537, bits)
    s = admin(key)
    for ref in (KEY_REF.SIG, KEY_REF.DEC):
        s.put_key(ref, priv)
    assert s.get_algorithm_attributes(KEY_REF.SIG) == RsaAttributes.create(RSA_SIZE(bits))
    assert s.get_public_key(KEY_REF.DEC) == priv.public_key()
    s.verify_pin(PIN)
    sig = s.sign(MESSAGE, hashes.SHA384())
    priv.public_key().verify(sig, MESSAGE, padding.PKCS1v15(), hashes.SHA384())
    s.verify_pin(PIN, extended=True)
    assert s.decrypt(priv.public_key().encrypt(b"k" * 32, padding.PKCS1v15())) == b"k" * 32
    assert s.get_key_information()[KEY_REF.SIG] is KEY_STATUS.IMPORTED


@pytest.mark.parametrize("oid", WEIERSTRASS, ids=lambda o: o.name)
def test_imported_ec_keys(key, oid):
    priv = ec.generate_private_key(ec_curve(oid))
    s = admin(key)
    s.put_key(KEY_REF.AUT, priv)
    s.put_key(KEY_REF.DEC, priv)
    s.verify_pin(PIN, extended=True)
    sig = s.authenticate(MESSAGE, hashes.SHA256())
    priv.public_key().verify(sig, MESSAGE, ec.ECDSA(hashes.SHA256()))
    peer = ec.generate_private_key(ec_curve(oid))
    assert s.decrypt(peer.public_key()) == peer.exchange(ec.ECDH(), priv.public_key())


def test_imported_25519_keys(key):
    ed, x = ed25519.Ed25519PrivateKey.generate(), x25519.X25519PrivateKey.generate()
    s = admin(key)
    s.put_key(KEY_REF.SIG, ed)
    s.put_key(KEY_REF.DEC, x)
    assert s.get_public_key(KEY_REF.DEC) == x.public_key()
    s.verify_pin(PIN)
    ed.public_key().verify(s.sign(MESSAGE, hashes.SHA256()), MESSAGE)
    peer = x25519.X25519PrivateKey.generate()
    s.verify_pin(PIN, extended=True)
    assert s.decrypt(peer.public_key()) == peer.exchange(x.public_key())


def test_keys_need_the_admin_pin_and_the_user_pin(key):
    s = session(key)
    with pytest.raises(ApduError) as e:
        s.generate_ec_key(KEY_REF.SIG, OID.SECP256R1)
    assert e.value.sw == SW.SECURITY_CONDITION_NOT_SATISFIED
    with pytest.raises(ApduError) as e:
        s.put_key(KEY_REF.SIG, ec.generate_private_key(ec.SECP256R1()))
    assert e.value.sw == SW.SECURITY_CONDITION_NOT_SATISFIED
    s.verify_admin(ADMIN)
    s.generate_ec_key(KEY_REF.SIG, OID.SECP256R1)
    s.generate_ec_key(KEY_REF.DEC, OID.SECP256R1)
    with pytest.raises(ApduError) as e:
        s.sign(MESSAGE, hashes.SHA256())
    assert e.value.sw == SW.SECURITY_CONDITION_NOT_SATISFIED
    s.verify_pin(PIN, extended=True)  # mode 82 does not allow signatures
    with pytest.raises(ApduError) as e:
        s.sign(MESSAGE, hashes.SHA256())
    assert e.value.sw == SW.SECURITY_CONDITION_NOT_SATISFIED
    s.verify_pin(PIN)  # and mode 81 nothing else
    s.unverify_pin(PW.RESET)  # 82
    with pytest.raises(ApduError) as e:
        s.decrypt(ec.generate_private_key(ec.SECP256R1()).public_key())
    assert e.value.sw == SW.SECURITY_CONDITION_NOT_SATISFIED


def test_missing_key_and_changed_attributes_delete_it(key):
    s = admin(key)
    s.verify_pin(PIN)
    with pytest.raises(ApduError) as e:
        s.sign(MESSAGE, hashes.SHA256())
    assert e.value.sw == SW.REFERENCE_DATA_NOT_FOUND
    s.generate_ec_key(KEY_REF.SIG, OID.SECP384R1)
    s.set_fingerprint(KEY_REF.SIG, b"\x11" * 20)
    s.set_generation_time(KEY_REF.SIG, 1700000000)
    s.set_algorithm_attributes(KEY_REF.SIG, EcAttributes.create(KEY_REF.SIG, OID.SECP384R1))
    assert s.get_key_information()[KEY_REF.SIG] is KEY_STATUS.GENERATED  # same type: kept
    s.delete_key(KEY_REF.SIG)
    assert s.get_key_information()[KEY_REF.SIG] is KEY_STATUS.NONE
    assert s.get_fingerprints()[KEY_REF.SIG] == bytes(20)
    assert s.get_generation_times()[KEY_REF.SIG] == 0
    with pytest.raises(ApduError) as e:
        s.get_public_key(KEY_REF.SIG)
    assert e.value.sw == SW.REFERENCE_DATA_NOT_FOUND


def test_signature_counter_counts_and_restarts_with_a_new_key(key):
    s = admin(key)
    s.generate_ec_key(KEY_REF.SIG, OID.SECP256R1)
    s.verify_pin(PIN)
    for _ in range(3):
        s.sign(MESSAGE, hashes.SHA256())
    assert s.get_signature_counter() == 3
    s.generate_ec_key(KEY_REF.AUT, OID.SECP256R1)
    s.verify_pin(PIN, extended=True)
    s.authenticate(MESSAGE, hashes.SHA256())  # authentication does not count
    key = reload(key)
    s = admin(key)
    assert s.get_signature_counter() == 3
    s.put_key(KEY_REF.SIG, ec.generate_private_key(ec.SECP256R1()))
    assert s.get_signature_counter() == 0


# -- data objects ------------------------------------------------------------------------------
def test_cardholder_data_private_dos_and_fingerprints(key):
    s = admin(key)
    s.put_data(DO.NAME, b"Doe<<Jane")
    s.protocol.send_apdu(0, 0xDA, 0x5F, 0x2D, b"ende")  # yubikit's DO.LANGUAGE is 0xEF2D
    s.put_data(DO.SEX, b"2")
    s.put_data(DO.URL, b"https://example.com/jane.asc")
    s.put_data(DO.LOGIN_DATA, b"jane")
    cardholder = s.get_data(DO.CARDHOLDER_RELATED_DATA)
    assert cardholder == bytes.fromhex("6516") + b"\x5b\x09Doe<<Jane" + \
        b"\x5f\x2d\x04ende" + b"\x5f\x35\x012"
    assert s.get_data(DO.URL) == b"https://example.com/jane.asc"
    assert s.get_data(DO.LOGIN_DATA) == b"jane"
    with pytest.raises(ApduError) as e:
        s.put_data(DO.NAME, b"x" * 40)
    assert e.value.sw == SW.WRONG_LENGTH
    for ref, fp in ((KEY_REF.SIG, b"\x01" * 20), (KEY_REF.AUT, b"\x03" * 20)):
        s.set_fingerprint(ref, fp)
    s.set_generation_time(KEY_REF.DEC, 0x01020304)
    s.put_data(DO.CA_FINGERPRINT_2, b"\xca" * 20)
    data = s.get_application_related_data().discretionary
    assert data.fingerprints[KEY_REF.SIG] == b"\x01" * 20
    assert data.fingerprints[KEY_REF.AUT] == b"\x03" * 20
    assert data.generation_times[KEY_REF.DEC] == 0x01020304
    assert data.ca_fingerprints[KEY_REF.DEC] == b"\xca" * 20  # the second CA fingerprint
    with pytest.raises(ApduError) as e:
        s.put_data(DO.APPLICATION_RELATED_DATA, b"")
    assert e.value.sw == SW.REFERENCE_DATA_NOT_FOUND

    s.put_data(DO.PRIVATE_USE_4, b"four")
    # private use: 1 and 2 readable by all, 3 with PW1, 4 with PW3 (a new session is a
    # card reset: nothing is verified)
    fresh = session(key)
    with pytest.raises(ApduError) as e:
        fresh.put_data(DO.PRIVATE_USE_1, b"one")
    assert e.value.sw == SW.SECURITY_CONDITION_NOT_SATISFIED
    fresh.verify_pin(PIN, extended=True)
    fresh.put_data(DO.PRIVATE_USE_1, b"one")
    fresh.put_data(DO.PRIVATE_USE_3, b"three")
    with pytest.raises(ApduError):
        fresh.put_data(DO.PRIVATE_USE_2, b"two")
    other = session(key)
    assert other.get_data(DO.PRIVATE_USE_1) == b"one"
    for do, pin in ((DO.PRIVATE_USE_3, PW.RESET), (DO.PRIVATE_USE_4, PW.ADMIN)):
        with pytest.raises(ApduError) as e:
            other.get_data(do)
        assert e.value.sw == SW.SECURITY_CONDITION_NOT_SATISFIED
    other.verify_pin(PIN, extended=True)
    assert other.get_data(DO.PRIVATE_USE_3) == b"three"
    other.verify_admin(ADMIN)
    assert other.get_data(DO.PRIVATE_USE_4) == b"four"
    assert raw(other, 0, 0xCA, 0x00, 0x42) == SW.REFERENCE_DATA_NOT_FOUND


def _certificate(subject: str) -> x509.Certificate:
    import datetime

    priv = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name.from_rfc4514_string(subject)
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(priv.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(priv, hashes.SHA256()))


def test_certificates_of_each_key(key):
    s = admin(key)
    certs = {ref: _certificate(f"CN={ref.name}") for ref in (KEY_REF.SIG, KEY_REF.DEC,
                                                              KEY_REF.AUT)}
    for ref, cert in certs.items():
        s.put_certificate(ref, cert)
    for ref, cert in certs.items():
        assert s.get_certificate(ref) == cert
    # without SELECT DATA, 7F21 is the AUT certificate (what gpg reads); GET NEXT DATA
    # walks on to DEC and SIG
    assert s.get_data(DO.CARDHOLDER_CERTIFICATE) == certs[KEY_REF.AUT].public_bytes(
        Encoding.DER)
    assert s.protocol.send_apdu(0, 0xCC, 0x7F, 0x21) == certs[KEY_REF.DEC].public_bytes(
        Encoding.DER)
    # the form of SELECT DATA firmware up to 5.4.3 took (a length byte first)
    s.protocol.send_apdu(0, 0xA5, 2, 4, bytes.fromhex("06 60 04 5c 02 7f 21"))
    assert s.get_data(DO.CARDHOLDER_CERTIFICATE) == certs[KEY_REF.SIG].public_bytes(
        Encoding.DER)
    assert raw(s, 0, 0xA5, 3, 4, bytes.fromhex("60045c027f21")) == SW.WRONG_PARAMETERS_P1P2
    assert raw(s, 0, 0xA5, 0, 4, bytes.fromhex("60045c027f22")) == SW.INCORRECT_PARAMETERS
    s.delete_certificate(KEY_REF.DEC)
    with pytest.raises(ValueError, match="No certificate"):
        s.get_certificate(KEY_REF.DEC)
    assert s.get_certificate(KEY_REF.SIG) == certs[KEY_REF.SIG]


def test_get_challenge(key):
    s = session(key)
    for n in (1, 8, 255):
        assert len(s.get_challenge(n)) == n
    with pytest.raises(NotSupportedError):
        s.get_challenge(3071)
    assert s.get_challenge(32) != s.get_challenge(32)
    card = CardOS(key, strict=True)  # extended Le: up to 3070 bytes
    card.transmit(bytes.fromhex("00a4040006d27600012401"))
    assert len(card.transmit(bytes.fromhex("0084000000 0bfe"))) == 3070 + 2
    assert card.transmit(bytes.fromhex("0084000000 0bff")) == b"\x67\x00"
    assert len(card.transmit(bytes.fromhex("0084000000"))) == 256 + 2  # short Le 00: 256
    assert card.transmit(bytes.fromhex("00840000")) == b"\x67\x00"  # no Le at all


# -- touch -------------------------------------------------------------------------------------
def test_touch_policies_ask_the_presence_and_fixed_ones_stay(key):
    asked: list[str] = []
    key.presence = AskCallback(lambda reason: asked.append(reason) or True, timeout=5)
    s = admin(key)
    s.generate_ec_key(KEY_REF.SIG, OID.SECP256R1)
    s.generate_ec_key(KEY_REF.AUT, OID.Ed25519)
    s.set_uif(KEY_REF.SIG, UIF.ON)
    s.set_uif(KEY_REF.AUT, UIF.CACHED_FIXED)
    assert get_openpgp_info(s)["Signature key"]["Touch policy"] is UIF.ON
    s.verify_pin(PIN)
    s.sign(MESSAGE, hashes.SHA256())
    s.sign(MESSAGE, hashes.SHA256())
    assert asked == ["OpenPGP sign", "OpenPGP sign"]
    key.power_cycle()  # (a touch for any key is good for a cached one: forget it)
    s = session(key)
    s.verify_admin(ADMIN)
    s.verify_pin(PIN, extended=True)
    s.authenticate(MESSAGE, hashes.SHA256())
    s.authenticate(MESSAGE, hashes.SHA256())  # cached: one touch for both
    assert asked[2:] == ["OpenPGP authenticate"]
    with pytest.raises(ApduError) as e:  # fixed: the card refuses a change
        s.put_data(DO.UIF_AUT, bytes([UIF.OFF, 0x20]))
    assert e.value.sw == SW.CONDITIONS_NOT_SATISFIED
    key.presence = DenyAlways()
    s.verify_pin(PIN)
    with pytest.raises(ApduError) as e:
        s.sign(MESSAGE, hashes.SHA256())
    assert e.value.sw == SW.SECURITY_CONDITION_NOT_SATISFIED
    assert s.get_signature_counter() == 2  # a refused touch signs nothing
    s.set_uif(KEY_REF.SIG, UIF.OFF)
    s.sign(MESSAGE, hashes.SHA256())


# -- attestation ---------------------------------------------------------------------------------
def test_attestation_chains_to_the_keys_root(key):
    s = admin(key)
    s.put_data(DO.NAME, b"Doe<<Jane")
    pub = s.generate_ec_key(KEY_REF.SIG, OID.SECP384R1)
    s.set_fingerprint(KEY_REF.SIG, b"\x42" * 20)
    s.set_generation_time(KEY_REF.SIG, 1700000000)
    s.set_uif(KEY_REF.SIG, UIF.CACHED)
    with pytest.raises(ApduError) as e:  # needs PW1
        s.attest_key(KEY_REF.SIG)
    assert e.value.sw == SW.SECURITY_CONDITION_NOT_SATISFIED
    s.verify_pin(PIN)
    s.sign(MESSAGE, hashes.SHA256())
    leaf = s.attest_key(KEY_REF.SIG)
    assert leaf.public_key() == pub
    assert s.get_certificate(KEY_REF.SIG) == leaf  # it became the SIG certificate
    intermediate = s.get_certificate(KEY_REF.ATT)
    root = x509.load_der_x509_certificate(key.openpgp.attestation_root)
    root.public_key().verify(intermediate.signature, intermediate.tbs_certificate_bytes,
                             ec.ECDSA(intermediate.signature_hash_algorithm))
    intermediate.public_key().verify(leaf.signature, leaf.tbs_certificate_bytes,
                                     ec.ECDSA(leaf.signature_hash_algorithm))
    ext = {e.oid: e.value.value for e in leaf.extensions}
    assert ext[pgp_attestation.OID_CARDHOLDER_NAME] == b"\x0c\x09Doe<<Jane"
    assert ext[pgp_attestation.OID_SOURCE] == b"\x02\x01\x01"
    assert ext[pgp_attestation.OID_FIRMWARE] == bytes([5, 7, 4])
    assert ext[pgp_attestation.OID_FINGERPRINT] == b"\x42" * 20
    assert ext[pgp_attestation.OID_GENERATION_TIME] == struct.pack(">I", 1700000000)
    assert ext[pgp_attestation.OID_SIGNATURE_COUNTER] == b"\x02\x01\x01"
    assert ext[pgp_attestation.OID_SERIAL] == b"\x02\x04" + (20240521).to_bytes(4, "big")
    assert ext[pgp_attestation.OID_UIF] == bytes([UIF.CACHED])
    assert ext[pgp_attestation.OID_FORM_FACTOR] == b"\x01"
    assert leaf.subject.rfc4514_string() == "CN=YubiKey OPGP Attestation SIG"


def test_only_generated_keys_are_attested(key):
    s = admin(key)
    s.put_key(KEY_REF.DEC, ec.generate_private_key(ec.SECP256R1()))
    s.verify_pin(PIN)
    with pytest.raises(ApduError) as e:
        s.attest_key(KEY_REF.DEC)
    assert e.value.sw == SW.CONDITIONS_NOT_SATISFIED
    with pytest.raises(ApduError) as e:
        s.attest_key(KEY_REF.AUT)
    assert e.value.sw == SW.REFERENCE_DATA_NOT_FOUND
    pub = s.generate_ec_key(KEY_REF.DEC, OID.X25519)
    assert s.attest_key(KEY_REF.DEC).public_key() == pub
    # a replaced attestation key (here RSA) signs with its own algorithm
    att = rsa.generate_private_key(65537, 2048)
    s.put_key(KEY_REF.ATT, att)
    s.put_certificate(KEY_REF.ATT, _certificate("CN=own attestation CA"))
    leaf = s.attest_key(KEY_REF.DEC)
    assert leaf.signature_algorithm_oid == x509.SignatureAlgorithmOID.RSA_WITH_SHA256


# -- KDF, reset, persistence --------------------------------------------------------------------
def test_kdf_resets_the_pins_to_their_hashed_defaults(key):
    s = admin(key)
    s.change_pin(PIN, "654321")
    s.set_reset_code("87654321")
    s.set_kdf(KdfIterSaltedS2k.create())
    assert get_openpgp_info(s)["KDF enabled"] is True
    assert s.get_pin_status().attempts_reset == 0  # the resetting code is gone
    s.verify_admin(ADMIN)  # the defaults, hashed by yubikit with the card's salts
    s.verify_pin(PIN)
    with pytest.raises(ApduError) as e:  # the plain PIN no longer matches
        s.protocol.send_apdu(0, 0x20, 0, 0x81, PIN.encode())
    assert e.value.sw == SW.SECURITY_CONDITION_NOT_SATISFIED
    s.change_pin(PIN, "kdf-pin-1")
    key = reload(key)
    s = session(key)
    s.verify_pin("kdf-pin-1")
    s.verify_admin(ADMIN)
    s.set_kdf(KdfNone())
    s.verify_pin(PIN)
    with pytest.raises(ApduError) as e:
        s.put_data(DO.KDF, bytes.fromhex("810103"))  # iterated and salted, but no salts
    assert e.value.sw == SW.INCORRECT_PARAMETERS


def test_reset_keeps_only_the_attestation_key(key):
    s = admin(key)
    att_cert = s.get_certificate(KEY_REF.ATT)
    s.generate_ec_key(KEY_REF.SIG, OID.SECP256R1)
    s.put_data(DO.NAME, b"Someone")
    s.change_pin(PIN, "999999")
    s.set_pin_attempts(5, 5, 5)
    with pytest.raises(ApduError) as e:  # TERMINATE needs PW3 (or PW3 blocked)
        session(key).protocol.send_apdu(0, 0xE6, 0, 0)
    assert e.value.sw == SW.SECURITY_CONDITION_NOT_SATISFIED
    s.reset()
    info = s.get_application_related_data().discretionary
    assert info.key_information[KEY_REF.SIG] is KEY_STATUS.NONE
    assert info.key_information[KEY_REF.ATT] is KEY_STATUS.IMPORTED
    assert (info.pw_status.attempts_user, info.pw_status.attempts_admin) == (3, 3)
    assert s.get_certificate(KEY_REF.ATT) == att_cert
    assert s.get_data(DO.CARDHOLDER_RELATED_DATA) == bytes.fromhex("65095b005f2d005f350139")
    s.verify_pin(PIN)


def test_terminated_state_survives_and_activate_resets(key):
    s = admin(key)
    s.generate_ec_key(KEY_REF.AUT, OID.SECP256R1)
    s.protocol.send_apdu(0, 0xE6, 0, 0)  # TERMINATE with PW3 verified
    assert raw(s, 0, 0xCA, 0, 0x6E) == 0x6285
    key = reload(key)
    card = CardOS(key, strict=True)
    assert card.transmit(bytes.fromhex("00a4040006d27600012401"))[-2:] == b"\x62\x85"
    s = session(key)  # yubikit activates a terminated application itself
    assert s.get_key_information()[KEY_REF.AUT] is KEY_STATUS.NONE
    assert raw(s, 0, 0x44, 0, 0) == SW.OK  # ACTIVATE on a working card changes nothing
    s.verify_pin(PIN)


def test_state_survives_reloading(key):
    s = admin(key)
    pub = s.generate_ec_key(KEY_REF.AUT, OID.BrainpoolP256R1)
    s.set_uif(KEY_REF.AUT, UIF.OFF)
    s.set_reset_code("87654321")
    with pytest.raises(InvalidPinError):
        s.verify_pin("000000")
    key = reload(key)
    s = session(key)
    assert s.get_pin_status().attempts_user == 2
    assert s.get_pin_status().attempts_reset == 3
    assert s.get_public_key(KEY_REF.AUT) == pub
    s.verify_pin(PIN, extended=True)
    pub.verify(s.authenticate(MESSAGE, hashes.SHA256()), MESSAGE, ec.ECDSA(hashes.SHA256()))


def test_only_models_with_openpgp_answer(tmp_path):
    with VirtualKey.create(tmp_path / "sk.key", profile="security-key") as k:
        assert CardOS(k).transmit(bytes.fromhex("00a4040006d27600012401")) == b"\x6a\x82"
    with VirtualKey.create(tmp_path / "l.key", profile="latest") as k:
        assert tuple(session(k).version) == (5, 8, 0)
    with VirtualKey.create(tmp_path / "u.key", profile="yubikey-5") as k:  # over USB too
        card = CardOS(k, transport="usb")
        assert card.transmit(bytes.fromhex("00a4040006d27600012401")) == b"\x90\x00"


def test_attestation_parameters_pins_touch_and_the_att_certificate(key):
    asked: list[str] = []
    key.presence = AskCallback(lambda reason: asked.append(reason) or True, timeout=5)
    s = admin(key)
    pub = s.generate_ec_key(KEY_REF.DEC, OID.SECP256R1)
    assert raw(s, 0x80, 0xFB, 0x04, 0) == SW.WRONG_PARAMETERS_P1P2
    assert raw(s, 0x80, 0xFB, 0x02, 1) == SW.WRONG_PARAMETERS_P1P2
    assert raw(s, 0x80, 0xFB, 0x02, 0) == SW.SECURITY_CONDITION_NOT_SATISFIED
    s.verify_pin(PIN, extended=True)  # PW1 in mode 82 is enough too
    assert s.protocol.connection.send_and_receive(bytes.fromhex("80fb020000")) == (b"", SW.OK)
    leaf = s.get_certificate(KEY_REF.DEC)
    assert leaf.public_key() == pub
    assert leaf.subject.rfc4514_string() == "CN=YubiKey OPGP Attestation DEC"
    ext = {e.oid: e.value.value for e in leaf.extensions}
    assert ext[pgp_attestation.OID_CARDHOLDER_NAME] == b"\x0c\x00"  # no name set
    assert pgp_attestation.OID_SIGNATURE_COUNTER not in ext  # the SIG key's only
    assert ext[pgp_attestation.OID_FINGERPRINT] == bytes(20)
    assert asked == []
    s.set_uif(KEY_REF.ATT, UIF.ON)  # the ATT key's touch policy asks for attestations
    s.attest_key(KEY_REF.DEC)
    assert asked == ["OpenPGP attest"]
    key.presence = DenyAlways()
    assert raw(s, 0x80, 0xFB, 0x02, 0) == SW.SECURITY_CONDITION_NOT_SATISFIED
    s.set_uif(KEY_REF.ATT, UIF.OFF)
    s.put_data(DO.ATT_CERTIFICATE, b"\x30\x03\x02\x01\x01")  # not a certificate
    assert raw(s, 0x80, 0xFB, 0x02, 0) == SW.CONDITIONS_NOT_SATISFIED
    s.put_data(DO.ATT_CERTIFICATE, b"")
    assert raw(s, 0x80, 0xFB, 0x02, 0) == SW.REFERENCE_DATA_NOT_FOUND


def _attested(**change) -> pgp_attestation.Attested:
    fields = dict(slot="AUT", public_key=ed25519.Ed25519PrivateKey.generate().public_key(),
                  cardholder_name=b"", fingerprint=b"\x07" * 20, generated_at=0x01020304,
                  signature_counter=None, uif=UIF.OFF, serial=7, version=(5, 7, 4),
                  form_factor=3)
    fields.update(change)
    return pgp_attestation.Attested(**fields)


def test_attestation_certificate_fields():
    authority = pgp_attestation.new_authority(99)
    issuer = x509.load_der_x509_certificate(authority.cert)
    assert issuer.subject.rfc4514_string() == \
        "CN=hwtoken Virtual OpenPGP Attestation 99,O=hwtoken"
    root = x509.load_der_x509_certificate(authority.root_cert)
    assert root.subject.rfc4514_string() == "CN=hwtoken Virtual OpenPGP Root CA 99,O=hwtoken"
    what = _attested(cardholder_name=b"J\xffane", signature_counter=300, serial=2**31)
    leaf = x509.load_der_x509_certificate(pgp_attestation.attest(
        signer=authority.key, signer_cert=authority.cert, what=what))
    assert leaf.issuer == issuer.subject
    assert leaf.subject.rfc4514_string() == "CN=YubiKey OPGP Attestation AUT"
    assert (leaf.not_valid_before_utc, leaf.not_valid_after_utc) == (
        issuer.not_valid_before_utc, issuer.not_valid_after_utc)
    issuer.public_key().verify(leaf.signature, leaf.tbs_certificate_bytes,
                               ec.ECDSA(hashes.SHA256()))
    assert [(e.oid.dotted_string, e.critical, e.value.value) for e in leaf.extensions] == [
        ("1.3.6.1.4.1.41482.5.1", False, b"\x0c\x07J\xef\xbf\xbdane"),  # U+FFFD for 0xFF
        ("1.3.6.1.4.1.41482.5.2", False, b"\x02\x01\x01"),
        ("1.3.6.1.4.1.41482.5.3", False, b"\x05\x07\x04"),
        ("1.3.6.1.4.1.41482.5.4", False, b"\x07" * 20),
        ("1.3.6.1.4.1.41482.5.5", False, b"\x01\x02\x03\x04"),
        ("1.3.6.1.4.1.41482.5.6", False, b"\x02\x02\x01\x2c"),
        ("1.3.6.1.4.1.41482.5.7", False, b"\x02\x05\x00\x80\x00\x00\x00"),
        ("1.3.6.1.4.1.41482.5.8", False, b"\x00"),
        ("1.3.6.1.4.1.41482.5.9", False, b"\x03"),
    ]
    assert leaf.public_key() == what.public_key


@pytest.mark.parametrize(("size", "header"), [(127, b"\x0c\x7f"), (128, b"\x0c\x81\x80"),
                                              (255, b"\x0c\x81\xff"),
                                              (256, b"\x0c\x82\x01\x00")],
                         ids=["127", "128", "255", "256"])
def test_attested_cardholder_names_of_any_length(size, header):
    authority = pgp_attestation.new_authority(1)
    leaf = x509.load_der_x509_certificate(pgp_attestation.attest(
        signer=authority.key, signer_cert=authority.cert,
        what=_attested(cardholder_name=b"n" * size)))
    name = leaf.extensions.get_extension_for_oid(pgp_attestation.OID_CARDHOLDER_NAME)
    assert name.value.value == header + b"n" * size
