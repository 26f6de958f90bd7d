"""The OpenPGP card's private-key operations, over ``cryptography`` keys.

* GENERATE makes a key for the slot's attributes; its public key goes back in ``7F49``
  (``81`` modulus and ``82`` exponent for RSA, ``86`` the point: ``04 | x | y`` on a
  Weierstrass curve, the 32 raw bytes for Ed25519 and X25519).
* Import (PUT DATA ``3FFF``) takes the private key template's parts: RSA ``e`` (65537),
  ``p`` and ``q``; an EC scalar (big-endian; X25519's is the reverse of its RFC 7748
  bytes, as OpenPGP stores it), optionally with its public key, which must match.
* PSO: COMPUTE DIGITAL SIGNATURE and INTERNAL AUTHENTICATE: RSA signs a DigestInfo with
  PKCS #1 v1.5 padding (at most 40 % of the modulus); ECDSA signs a hash of any length
  (truncated to the order, as ECDSA does) and answers ``r | s``; EdDSA signs the data.
* PSO: DECIPHER: RSA PKCS #1 v1.5 after the padding indicator ``00``; ECDH answers the
  shared x coordinate, X25519 the shared secret.
"""

from __future__ import annotations

import hmac
import os
from typing import TypeAlias

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature

from hwtoken.emulator import tlv
from hwtoken.emulator.applets.openpgp.algorithms import Attributes
from hwtoken.emulator.applets.openpgp.constants import (
    TAG_CIPHER,
    TAG_EC_POINT,
    TAG_IMPORT_EC_PUBLIC,
    TAG_IMPORT_PRIVATE,
    TAG_IMPORT_RSA_DP,
    TAG_IMPORT_RSA_DQ,
    TAG_IMPORT_RSA_E,
    TAG_IMPORT_RSA_N,
    TAG_IMPORT_RSA_Q,
    TAG_IMPORT_RSA_QINV,
    TAG_PUBLIC_KEY,
    TAG_RSA_EXPONENT,
    TAG_RSA_MODULUS,
)
from hwtoken.emulator.iso7816 import SW, ApduError

PrivateKey: TypeAlias = (rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
                         | ed25519.Ed25519PrivateKey | x25519.X25519PrivateKey)
PublicKey: TypeAlias = (rsa.RSAPublicKey | ec.EllipticCurvePublicKey
                        | ed25519.Ed25519PublicKey | x25519.X25519PublicKey)

RSA_EXPONENT = 65537
_RSA_PARTS = frozenset({TAG_IMPORT_RSA_E, TAG_IMPORT_PRIVATE, TAG_IMPORT_RSA_Q,
                        TAG_IMPORT_RSA_QINV, TAG_IMPORT_RSA_DP, TAG_IMPORT_RSA_DQ,
                        TAG_IMPORT_RSA_N})
_EC_PARTS = frozenset({TAG_IMPORT_PRIVATE, TAG_IMPORT_EC_PUBLIC})


def _bad() -> ApduError:
    return ApduError(SW.INCORRECT_PARAMETERS)


def _raw(key: ed25519.Ed25519PublicKey | x25519.X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# -- storing ----------------------------------------------------------------------------------
def to_der(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def from_der(der: bytes) -> PrivateKey:
    """A key this card stored (checked when it was made or imported: OpenSSL's RSA check,
    seconds for RSA-4096, is not repeated on every use)."""
    key = serialization.load_der_private_key(der, password=None,
                                             unsafe_skip_rsa_key_validation=True)
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey,
                            ed25519.Ed25519PrivateKey, x25519.X25519PrivateKey)):
        raise ValueError("not an OpenPGP card key type")
    return key


def matches(attributes: Attributes, key: PrivateKey) -> bool:
    """Whether ``key`` is of the type ``attributes`` name (an imported ATT key may not be)."""
    curve = attributes.curve
    if curve is None:
        return isinstance(key, rsa.RSAPrivateKey) and key.key_size == attributes.rsa_bits
    if curve.kind == "ed25519":
        return isinstance(key, ed25519.Ed25519PrivateKey)
    if curve.kind == "x25519":
        return isinstance(key, x25519.X25519PrivateKey)
    return isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == curve.name


# -- GENERATE ---------------------------------------------------------------------------------
def generate(attributes: Attributes) -> PrivateKey:
    """A new private key of the type ``attributes`` name."""
    curve = attributes.curve
    if curve is None:
        return rsa.generate_private_key(RSA_EXPONENT, attributes.rsa_bits)
    if curve.kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if curve.kind == "x25519":
        return x25519.X25519PrivateKey.generate()
    return ec.generate_private_key(curve.ec_curve())


def public_key_template(attributes: Attributes, public: PublicKey) -> bytes:
    """The ``7F49`` public key data object."""
    if isinstance(public, rsa.RSAPublicKey):
        nums = public.public_numbers()
        body = (tlv.tlv(TAG_RSA_MODULUS, nums.n.to_bytes(attributes.byte_len, "big"))
                + tlv.tlv(TAG_RSA_EXPONENT, nums.e.to_bytes(3, "big")))
    elif isinstance(public, ec.EllipticCurvePublicKey):
        body = tlv.tlv(TAG_EC_POINT, public.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint))
    else:
        body = tlv.tlv(TAG_EC_POINT, _raw(public))
    return tlv.tlv(TAG_PUBLIC_KEY, body)


# -- import -----------------------------------------------------------------------------------
def _number(fields: dict[int, bytes], tag: int, size: int) -> int:
    value = fields.get(tag)
    if value is None or not 0 < len(value) <= size:
        raise _bad()
    return int.from_bytes(value, "big")


def from_template(attributes: Attributes, fields: dict[int, bytes]) -> PrivateKey:
    """The private key a key import's template holds (``6A80`` if it is not one of the
    type ``attributes`` name)."""
    try:
        if attributes.is_rsa:
            return _rsa_from_template(attributes, fields)
        return _ec_from_template(attributes, fields)
    except ValueError:  # a scalar out of range, not invertible, ...
        raise _bad() from None


def _rsa_from_template(attributes: Attributes, fields: dict[int, bytes]) -> PrivateKey:
    if not set(fields) <= _RSA_PARTS:
        raise _bad()
    half = attributes.byte_len // 2
    if _number(fields, TAG_IMPORT_RSA_E, 4) != RSA_EXPONENT:
        raise _bad()
    p, q = _number(fields, TAG_IMPORT_PRIVATE, half), _number(fields, TAG_IMPORT_RSA_Q, half)
    if p < 3 or q < 3 or p == q or (p * q).bit_length() != attributes.rsa_bits:
        raise _bad()
    d = pow(RSA_EXPONENT, -1, (p - 1) * (q - 1))
    derived = {TAG_IMPORT_RSA_QINV: pow(q, -1, p), TAG_IMPORT_RSA_DP: d % (p - 1),
               TAG_IMPORT_RSA_DQ: d % (q - 1), TAG_IMPORT_RSA_N: p * q}
    for tag, value in derived.items():  # the CRT parts, when sent, must be these
        if tag in fields and int.from_bytes(fields[tag], "big") != value:
            raise _bad()
    nums = rsa.RSAPrivateNumbers(p, q, d, derived[TAG_IMPORT_RSA_DP],
                                 derived[TAG_IMPORT_RSA_DQ], derived[TAG_IMPORT_RSA_QINV],
                                 rsa.RSAPublicNumbers(RSA_EXPONENT, p * q))
    # OpenSSL's full check (primality of p and q) takes seconds for RSA-4096, longer than
    # a host waits for an answer; a round trip through the key finds composite factors
    key = nums.private_key(unsafe_skip_rsa_key_validation=True)
    probe = int.from_bytes(os.urandom(attributes.byte_len - 1), "big") | 2
    block = probe.to_bytes(attributes.byte_len, "big")
    if pow(int.from_bytes(_rsa_private(key, block), "big"), RSA_EXPONENT, p * q) != probe:
        raise _bad()
    return key


def _ec_from_template(attributes: Attributes, fields: dict[int, bytes]) -> PrivateKey:
    curve = attributes.curve
    assert curve is not None
    if not set(fields) <= _EC_PARTS:
        raise _bad()
    scalar = fields.get(TAG_IMPORT_PRIVATE, b"")
    if not 0 < len(scalar) <= curve.size:
        raise _bad()
    scalar = scalar.rjust(curve.size, b"\0")
    key: PrivateKey
    if curve.kind == "ed25519":
        key = ed25519.Ed25519PrivateKey.from_private_bytes(scalar)
    elif curve.kind == "x25519":
        key = x25519.X25519PrivateKey.from_private_bytes(scalar[::-1])
    else:
        key = ec.derive_private_key(int.from_bytes(scalar, "big"), curve.ec_curve())
    public = fields.get(TAG_IMPORT_EC_PUBLIC)
    if public is not None:
        ours = tlv.unpack(TAG_PUBLIC_KEY, public_key_template(attributes, key.public_key()))
        if not hmac.compare_digest(tlv.unpack(TAG_EC_POINT, ours), public):
            raise _bad()
    return key


# -- PSO: COMPUTE DIGITAL SIGNATURE, INTERNAL AUTHENTICATE ---------------------------------------
def _rsa_private(key: rsa.RSAPrivateKey, block: bytes) -> bytes:
    """Raw RSA with the private key (CRT) on a block of the modulus' length."""
    nums = key.private_numbers()
    c = int.from_bytes(block, "big")
    if c >= nums.public_numbers.n:
        raise _bad()
    m1, m2 = pow(c, nums.dmp1, nums.p), pow(c, nums.dmq1, nums.q)
    m = m2 + ((nums.iqmp * (m1 - m2)) % nums.p) * nums.q
    return m.to_bytes(len(block), "big")


def sign(attributes: Attributes, key: PrivateKey, data: bytes) -> bytes:
    """The signature of ``data`` (a DigestInfo, a hash, or for EdDSA the data itself)."""
    if isinstance(key, rsa.RSAPrivateKey):
        k = attributes.byte_len
        if not data or len(data) > k * 2 // 5:
            raise ApduError(SW.WRONG_LENGTH)
        block = b"\x00\x01" + b"\xff" * (k - 3 - len(data)) + b"\x00" + data
        return _rsa_private(key, block)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not data or len(data) > 1024:
            raise ApduError(SW.WRONG_LENGTH)
        # a hash of any length: OpenSSL truncates it to the order's bits, as ECDSA says
        der = key.sign(data, ec.ECDSA(Prehashed(hashes.SHAKE256(len(data)))))
        r, s = decode_dss_signature(der)
        size = attributes.byte_len
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    raise ApduError(SW.CONDITIONS_NOT_SATISFIED)  # X25519 cannot sign


# -- PSO: DECIPHER ----------------------------------------------------------------------------
def decipher(attributes: Attributes, key: PrivateKey, data: bytes) -> bytes:
    """The session key (RSA) or the shared secret (ECDH) ``data`` yields."""
    if isinstance(key, rsa.RSAPrivateKey):
        k = attributes.byte_len
        if len(data) != k + 1:
            raise ApduError(SW.WRONG_LENGTH)
        if data[0] != 0x00:  # the padding indicator
            raise _bad()
        block = _rsa_private(key, data[1:])
        # PKCS #1 v1.5 type 2: 00 02, at least 8 non-zero bytes, 00, the message
        end = block.find(b"\x00", 2)
        if block[:2] != b"\x00\x02" or end < 10:
            raise _bad()
        return block[end + 1:]
    peer = tlv.unpack(TAG_EC_POINT, tlv.unpack(TAG_PUBLIC_KEY, tlv.unpack(TAG_CIPHER, data)))
    try:
        if isinstance(key, x25519.X25519PrivateKey):
            if len(peer) != 32:
                raise _bad()
            return key.exchange(x25519.X25519PublicKey.from_public_bytes(peer))
        if isinstance(key, ec.EllipticCurvePrivateKey):
            size = attributes.byte_len
            if len(peer) != 1 + 2 * size or peer[0] != 0x04:
                raise _bad()
            point = ec.EllipticCurvePublicKey.from_encoded_point(key.curve, peer)
            return key.exchange(ec.ECDH(), point)
    except ValueError:  # not on the curve, a low-order point
        raise _bad() from None
    raise ApduError(SW.CONDITIONS_NOT_SATISFIED)  # Ed25519 cannot decrypt
