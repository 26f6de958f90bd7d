"""The OpenPGP card's key operations (:mod:`hwtoken.emulator.applets.openpgp.keys`) on their
own: the public key template, the import template's checks, and the limits of signing and
deciphering, each answered with its exact status word."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from hwtoken.emulator import tlv
from hwtoken.emulator.applets.openpgp import keys
from hwtoken.emulator.applets.openpgp.algorithms import (
    ALGO_ECDH,
    ALGO_ECDSA,
    ALGO_EDDSA,
    ED25519,
    SECP256R1,
    SECP384R1,
    X25519,
    Attributes,
)
from hwtoken.emulator.iso7816 import SW, ApduError

RSA2048 = Attributes.rsa(2048)
P256 = Attributes.ecc(ALGO_ECDSA, SECP256R1)
P256_ECDH = Attributes.ecc(ALGO_ECDH, SECP256R1)
ED = Attributes.ecc(ALGO_EDDSA, ED25519)
CV = Attributes.ecc(ALGO_ECDH, X25519)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


def refused(sw: int, call, *args) -> None:
    with pytest.raises(ApduError) as e:
        call(*args)
    assert e.value.sw == sw


def _be(n: int, size: int | None = None) -> bytes:
    return n.to_bytes(size or (n.bit_length() + 7) // 8, "big")


def rsa_parts(key: rsa.RSAPrivateKey) -> dict[int, bytes]:
    nums = key.private_numbers()
    return {0x91: b"\x01\x00\x01", 0x92: _be(nums.p, 128), 0x93: _be(nums.q, 128)}


# -- storing -------------------------------------------------------------------------------------
def test_stored_keys_round_trip_and_other_types_are_refused(rsa_key):
    for key in (rsa_key, ec.generate_private_key(ec.SECP384R1()),
                ed25519.Ed25519PrivateKey.generate(), x25519.X25519PrivateKey.generate()):
        again = keys.from_der(keys.to_der(key))
        assert type(again) is type(key)
        assert keys.to_der(again) == keys.to_der(key)
    other = ed448.Ed448PrivateKey.generate()
    der = other.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    with pytest.raises(ValueError, match="^not an OpenPGP card key type$"):
        keys.from_der(der)


def test_stored_keys_are_not_checked_again(rsa_key):
    """OpenSSL's RSA check (seconds for RSA-4096) ran when the key was made or imported:
    loading a stored key does not repeat it (here it would refuse a wrong CRT part)."""
    nums = rsa_key.private_numbers()
    odd = rsa.RSAPrivateNumbers(nums.p, nums.q, nums.d, nums.dmp1 + 2, nums.dmq1, nums.iqmp,
                                nums.public_numbers)
    stored = keys.to_der(odd.private_key(unsafe_skip_rsa_key_validation=True))
    with pytest.raises(ValueError, match="^Invalid private key$"):  # what a check says
        serialization.load_der_private_key(stored, password=None)
    loaded = keys.from_der(stored)
    assert isinstance(loaded, rsa.RSAPrivateKey)
    assert loaded.private_numbers() == odd


def test_matches_names_the_key_type(rsa_key):
    p256, p384 = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP384R1())
    ed, cv = ed25519.Ed25519PrivateKey.generate(), x25519.X25519PrivateKey.generate()
    assert keys.matches(RSA2048, rsa_key)
    assert not keys.matches(Attributes.rsa(3072), rsa_key)
    assert not keys.matches(RSA2048, p256)
    assert keys.matches(P256, p256) and keys.matches(P256_ECDH, p256)
    assert not keys.matches(P256, p384)
    assert keys.matches(Attributes.ecc(ALGO_ECDSA, SECP384R1), p384)
    assert not keys.matches(P256, rsa_key)
    assert keys.matches(ED, ed) and not keys.matches(ED, cv) and not keys.matches(ED, p256)
    assert keys.matches(CV, cv) and not keys.matches(CV, ed) and not keys.matches(CV, p256)


def test_generated_keys_are_of_the_type_asked():
    key = keys.generate(RSA2048)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert key.public_key().public_numbers().e == 65537
    assert keys.generate(P256).curve.name == "secp256r1"
    assert isinstance(keys.generate(ED), ed25519.Ed25519PrivateKey)
    assert isinstance(keys.generate(CV), x25519.X25519PrivateKey)


# -- public key templates ------------------------------------------------------------------------
def test_public_key_templates(rsa_key):
    n = rsa_key.public_key().public_numbers().n
    assert keys.public_key_template(RSA2048, rsa_key.public_key()) == (
        bytes.fromhex("7f49 82 0109 81 82 0100") + _be(n, 256) + bytes.fromhex("82 03 010001"))
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key()
    point = p256.public_bytes(serialization.Encoding.X962,
                              serialization.PublicFormat.UncompressedPoint)
    assert keys.public_key_template(P256, p256) == bytes.fromhex("7f49 43 86 41") + point
    ed = ed25519.Ed25519PrivateKey.generate().public_key()
    raw = ed.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert keys.public_key_template(ED, ed) == bytes.fromhex("7f49 22 86 20") + raw
    # a 2048-bit modulus that happens to be shorter still takes 256 bytes
    small = rsa.RSAPublicNumbers(65537, (1 << 2040) + 1).public_key()
    template = keys.public_key_template(RSA2048, small)
    assert template[9:9 + 256] == _be((1 << 2040) + 1, 256)


# -- import --------------------------------------------------------------------------------------
def test_rsa_import_with_and_without_the_crt_parts(rsa_key):
    nums = rsa_key.private_numbers()
    full = {**rsa_parts(rsa_key), 0x94: _be(nums.iqmp), 0x95: _be(nums.dmp1),
            0x96: _be(nums.dmq1), 0x97: _be(nums.public_numbers.n)}
    for fields in (rsa_parts(rsa_key), full, {**rsa_parts(rsa_key), 0x91: b"\x00\x01\x00\x01"}):
        got = keys.from_template(RSA2048, fields).private_numbers()
        assert (got.p, got.q, got.dmp1, got.dmq1, got.iqmp, got.public_numbers) == (
            nums.p, nums.q, nums.dmp1, nums.dmq1, nums.iqmp, nums.public_numbers)
    for tag in (0x94, 0x95, 0x96, 0x97):  # a CRT part that is not the key's
        wrong = {**full, tag: _be(int.from_bytes(full[tag], "big") + 1)}
        refused(SW.INCORRECT_PARAMETERS, keys.from_template, RSA2048, wrong)


@pytest.mark.parametrize("change", [
    {0x91: b"\x03"},  # e must be 65537
    {0x91: b"\x00\x00\x01\x00\x01"},  # at most 4 bytes
    {0x91: b""}, {0x91: None}, {0x92: None}, {0x93: None},
    {0x92: b"\x00" + b"\xff" * 128},  # p longer than half the modulus
    {0x99: b"\x04"},  # not an RSA part
], ids=lambda change: "-".join(f"{k:02x}={'none' if v is None else v.hex()[:8]}"
                               for k, v in change.items()))
def test_rsa_import_refuses(rsa_key, change):
    fields = {**rsa_parts(rsa_key), **change}
    fields = {tag: value for tag, value in fields.items() if value is not None}
    refused(SW.INCORRECT_PARAMETERS, keys.from_template, RSA2048, fields)


def test_rsa_import_refuses_equal_factors_and_a_short_modulus(rsa_key):
    p = rsa_key.private_numbers().p
    refused(SW.INCORRECT_PARAMETERS, keys.from_template, RSA2048,
            {0x91: b"\x01\x00\x01", 0x92: _be(p), 0x93: _be(p)})
    while True:  # factors of 1024 bits or less whose product has 2047 bits
        short = rsa.generate_private_key(65537, 2047).private_numbers()
        if short.p.bit_length() <= 1024 and short.q.bit_length() <= 1024:
            break
    refused(SW.INCORRECT_PARAMETERS, keys.from_template, RSA2048,
            {0x91: b"\x01\x00\x01", 0x92: _be(short.p), 0x93: _be(short.q)})


def test_ec_import_scalar_lengths_and_parts():
    key = ec.generate_private_key(ec.SECP256R1())
    scalar = _be(key.private_numbers().private_value, 32)
    point = key.public_key().public_bytes(serialization.Encoding.X962,
                                          serialization.PublicFormat.UncompressedPoint)
    assert keys.from_template(P256, {0x92: scalar}).private_numbers() == key.private_numbers()
    assert keys.from_template(P256, {0x92: scalar, 0x99: point}).private_numbers() == \
        key.private_numbers()
    one = keys.from_template(P256, {0x92: b"\x01"})  # a short scalar: leading zeros left out
    assert one.private_numbers().private_value == 1
    for fields in ({0x92: b"\x00" + scalar}, {0x92: b""}, {}, {0x92: scalar, 0x91: b"\x01"},
                   {0x92: scalar, 0x99: point[:-1] + bytes([point[-1] ^ 1])},
                   {0x92: bytes(32)}):  # zero is no key
        refused(SW.INCORRECT_PARAMETERS, keys.from_template, P256, fields)


def test_25519_imports():
    cv = x25519.X25519PrivateKey.generate()
    raw = cv.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                           serialization.NoEncryption())
    imported = keys.from_template(CV, {0x92: raw[::-1]})  # OpenPGP's byte order
    assert imported.public_key().public_bytes_raw() == cv.public_key().public_bytes_raw()
    ed = ed25519.Ed25519PrivateKey.generate()
    imported = keys.from_template(ED, {0x92: ed.private_bytes_raw(),
                                       0x99: ed.public_key().public_bytes_raw()})
    assert imported.public_key().public_bytes_raw() == ed.public_key().public_bytes_raw()
    # no scalar is no key (32 zero bytes would make a valid Ed25519 or X25519 key)
    for fields in ({0x92: b""}, {}, {0x99: ed.public_key().public_bytes_raw()}):
        refused(SW.INCORRECT_PARAMETERS, keys.from_template, ED, fields)
        refused(SW.INCORRECT_PARAMETERS, keys.from_template, CV, fields)
    refused(SW.INCORRECT_PARAMETERS, keys.from_template, ED, {0x92: bytes(33)})


# -- signing ---------------------------------------------------------------------------------------
def test_rsa_signature_lengths(rsa_key):
    digest_info = bytes(102)  # 40 % of 256 bytes
    signature = keys.sign(RSA2048, rsa_key, digest_info)
    expected = b"\x00\x01" + b"\xff" * (256 - 3 - 102) + b"\x00" + digest_info
    nums = rsa_key.public_key().public_numbers()
    assert pow(int.from_bytes(signature, "big"), nums.e, nums.n) == int.from_bytes(expected, "big")
    refused(SW.WRONG_LENGTH, keys.sign, RSA2048, rsa_key, bytes(103))
    refused(SW.WRONG_LENGTH, keys.sign, RSA2048, rsa_key, b"")
    one = keys.sign(RSA2048, rsa_key, b"\x2a")
    assert rsa_key.public_key().recover_data_from_signature(one, padding.PKCS1v15(),
                                                            None) == b"\x2a"


def test_ecdsa_signature_lengths():
    key = ec.generate_private_key(ec.SECP384R1())
    attributes = Attributes.ecc(ALGO_ECDSA, SECP384R1)
    for data in (b"\x01", bytes(48), b"\x05" * 1024):
        signature = keys.sign(attributes, key, data)
        assert len(signature) == 96
        der = encode_dss_signature(int.from_bytes(signature[:48], "big"),
                                   int.from_bytes(signature[48:], "big"))
        digest = data[:48]  # ECDSA takes the hash's leftmost bits, as many as the order has
        key.public_key().verify(der, digest, ec.ECDSA(Prehashed(hashes.SHAKE256(len(digest)))))
    refused(SW.WRONG_LENGTH, keys.sign, attributes, key, b"\x05" * 1025)
    refused(SW.WRONG_LENGTH, keys.sign, attributes, key, b"")


def test_key_types_that_cannot_sign_or_decipher():
    cv, ed = x25519.X25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    refused(SW.CONDITIONS_NOT_SATISFIED, keys.sign, CV, cv, bytes(32))
    peer = tlv.tlv(0xA6, tlv.tlv(0x7F49, tlv.tlv(0x86, bytes(32))))
    refused(SW.CONDITIONS_NOT_SATISFIED, keys.decipher, ED, ed, peer)
    assert ed.public_key().verify(keys.sign(ED, ed, b"any length"), b"any length") is None


# -- deciphering -----------------------------------------------------------------------------------
def _rsa_encrypt_block(key: rsa.RSAPrivateKey, block: bytes) -> bytes:
    nums = key.public_key().public_numbers()
    return b"\x00" + pow(int.from_bytes(block, "big"), nums.e, nums.n).to_bytes(256, "big")


def test_rsa_decipher_padding(rsa_key):
    message = b"session key"
    eight = b"\x00\x02" + b"\x11" * 8 + b"\x00" + b"m" * (256 - 11)  # the least padding
    assert keys.decipher(RSA2048, rsa_key, _rsa_encrypt_block(rsa_key, eight)) == \
        b"m" * (256 - 11)
    seven = b"\x00\x02" + b"\x11" * 7 + b"\x00" + b"m" * (256 - 10)
    refused(SW.INCORRECT_PARAMETERS, keys.decipher, RSA2048, rsa_key,
            _rsa_encrypt_block(rsa_key, seven))
    zeros = b"\x00\x02" + b"\x11" * 8 + b"\x00" + b"\x00m\x00" * 81 + b"\x00\x00"
    assert keys.decipher(RSA2048, rsa_key, _rsa_encrypt_block(rsa_key, zeros)) == \
        b"\x00m\x00" * 81 + b"\x00\x00"  # zeros in the message are kept
    for padding_string in (b"\x00" + b"\x11" * 9, b"\x11" * 7 + b"\x00" + b"\x11" * 2):
        zero_inside = b"\x00\x02" + padding_string + b"\x00" + b"m" * (256 - 13)
        refused(SW.INCORRECT_PARAMETERS, keys.decipher, RSA2048, rsa_key,
                _rsa_encrypt_block(rsa_key, zero_inside))
    type1 = b"\x00\x01" + b"\xff" * 8 + b"\x00" + b"m" * (256 - 11)
    refused(SW.INCORRECT_PARAMETERS, keys.decipher, RSA2048, rsa_key,
            _rsa_encrypt_block(rsa_key, type1))
    cipher = b"\x00" + rsa_key.public_key().encrypt(message, padding.PKCS1v15())
    assert keys.decipher(RSA2048, rsa_key, cipher) == message
    refused(SW.WRONG_LENGTH, keys.decipher, RSA2048, rsa_key, cipher[:-1])
    refused(SW.WRONG_LENGTH, keys.decipher, RSA2048, rsa_key, cipher + b"\x00")
    refused(SW.INCORRECT_PARAMETERS, keys.decipher, RSA2048, rsa_key, b"\x02" + cipher[1:])
    n = rsa_key.public_key().public_numbers().n
    refused(SW.INCORRECT_PARAMETERS, keys.decipher, RSA2048, rsa_key,
            b"\x00" + n.to_bytes(256, "big"))  # not below the modulus


def _ecdh_input(point: bytes) -> bytes:
    return tlv.tlv(0xA6, tlv.tlv(0x7F49, tlv.tlv(0x86, point)))


def test_ecdh_peer_points():
    key = ec.generate_private_key(ec.SECP256R1())
    peer = ec.generate_private_key(ec.SECP256R1())
    point = peer.public_key().public_bytes(serialization.Encoding.X962,
                                           serialization.PublicFormat.UncompressedPoint)
    assert keys.decipher(P256_ECDH, key, _ecdh_input(point)) == \
        peer.exchange(ec.ECDH(), key.public_key())
    compressed = peer.public_key().public_bytes(serialization.Encoding.X962,
                                                serialization.PublicFormat.CompressedPoint)
    for bad in (b"", compressed, b"\x05" + point[1:], point[:-1], point + b"\x00",
                point[:-1] + bytes([point[-1] ^ 1])):  # not on the curve
        refused(SW.INCORRECT_PARAMETERS, keys.decipher, P256_ECDH, key, _ecdh_input(bad))
    cv = x25519.X25519PrivateKey.generate()
    other = x25519.X25519PrivateKey.generate()
    assert keys.decipher(CV, cv, _ecdh_input(other.public_key().public_bytes_raw())) == \
        other.exchange(cv.public_key())
    for bad in (bytes(31), bytes(33), bytes(32)):  # the last: a low-order point
        refused(SW.INCORRECT_PARAMETERS, keys.decipher, CV, cv, _ecdh_input(bad))
