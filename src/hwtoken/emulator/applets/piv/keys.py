"""The PIV applet's cryptography: slot keys (RSA 1024-4096, P-256, P-384, Ed25519, X25519)
and the card management key's block cipher (3DES or AES), through ``cryptography``.

Private keys are kept as PKCS#8 DER. Every function that reads host input raises
:class:`~hwtoken.emulator.iso7816.ApduError` (``6A80``) when the input does not fit the key.

RSA's heavy work -- checking an imported key, the private-key operation -- runs in the
emulator's worker process (:mod:`hwtoken.emulator.offload`): it holds Python's lock for
up to 0.3 s per call (RSA-4096), which would stop the thread that sends the host its CCID
time extensions meanwhile. A key read back from the key's own store was checked when it
came in and is not checked again.
"""

from __future__ import annotations

from typing import TypeAlias

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from hwtoken.emulator import offload, tlv
from hwtoken.emulator.applets.piv.constants import (
    KEY_TYPE,
    MANAGEMENT_KEY_TYPE,
    TAG_EC_POINT,
    TAG_EC_PRIVATE,
    TAG_ED25519_PRIVATE,
    TAG_RSA_DP,
    TAG_RSA_DQ,
    TAG_RSA_EXPONENT,
    TAG_RSA_MODULUS,
    TAG_RSA_P,
    TAG_RSA_Q,
    TAG_RSA_QINV,
    TAG_X25519_PRIVATE,
)
from hwtoken.emulator.iso7816 import SW, ApduError

PrivateKey: TypeAlias = (rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
                         | ed25519.Ed25519PrivateKey | x25519.X25519PrivateKey)
PublicKey: TypeAlias = (rsa.RSAPublicKey | ec.EllipticCurvePublicKey
                        | ed25519.Ed25519PublicKey | x25519.X25519PublicKey)

RSA_EXPONENT = 65537
_CURVES: dict[KEY_TYPE, ec.EllipticCurve] = {KEY_TYPE.ECCP256: ec.SECP256R1(),
                                              KEY_TYPE.ECCP384: ec.SECP384R1()}
_PREHASH: dict[KEY_TYPE, hashes.HashAlgorithm] = {KEY_TYPE.ECCP256: hashes.SHA256(),
                                                   KEY_TYPE.ECCP384: hashes.SHA384()}


def _bad() -> ApduError:
    return ApduError(SW.INCORRECT_PARAMETERS)


# -- slot keys -------------------------------------------------------------------------------
def generate(key_type: KEY_TYPE) -> PrivateKey:
    """A new private key of ``key_type``."""
    if key_type.is_rsa:
        return rsa.generate_private_key(RSA_EXPONENT, key_type.rsa_bits)
    if key_type in _CURVES:
        return ec.generate_private_key(_CURVES[key_type])
    if key_type is KEY_TYPE.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    return x25519.X25519PrivateKey.generate()


def key_type_of(key: PrivateKey | PublicKey) -> KEY_TYPE:
    """The PIV algorithm of a key (ValueError if a YubiKey has no such key type)."""
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return KEY_TYPE[f"RSA{key.key_size}"]
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        for kt, curve in _CURVES.items():
            if key.curve.name == curve.name:
                return kt
        raise ValueError(f"unsupported curve {key.curve.name}")
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return KEY_TYPE.ED25519
    return KEY_TYPE.X25519


def to_der(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def from_der(der: bytes) -> PrivateKey:
    """A key of the key's own store (checked when it was generated or imported)."""
    key = serialization.load_der_private_key(der, password=None,
                                             unsafe_skip_rsa_key_validation=True)
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey,
                            ed25519.Ed25519PrivateKey, x25519.X25519PrivateKey)):
        raise ValueError("not a PIV key type")
    return key


def public_key_data(key_type: KEY_TYPE, public: PublicKey) -> bytes:
    """The public key as PIV encodes it inside ``7F49`` (and in GET METADATA's ``04``)."""
    if isinstance(public, rsa.RSAPublicKey):
        nums = public.public_numbers()
        return (tlv.tlv(TAG_RSA_MODULUS, nums.n.to_bytes(key_type.byte_len, "big"))
                + tlv.tlv(TAG_RSA_EXPONENT, nums.e.to_bytes(3, "big")))
    if isinstance(public, ec.EllipticCurvePublicKey):
        point = public.public_bytes(serialization.Encoding.X962,
                                    serialization.PublicFormat.UncompressedPoint)
        return tlv.tlv(TAG_EC_POINT, point)
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return tlv.tlv(TAG_EC_POINT, raw)


def _fixed(fields: dict[int, bytes], tag: int, size: int) -> int:
    value = fields.get(tag)
    if value is None or not 0 < len(value) <= size:
        raise _bad()
    return int.from_bytes(value, "big")


def from_import(key_type: KEY_TYPE, fields: dict[int, bytes]) -> PrivateKey:
    """The private key of an IMPORT KEY command's TLVs (RSA as CRT parts, e = 65537)."""
    try:
        if key_type.is_rsa:
            half = key_type.byte_len // 2
            p, q = _fixed(fields, TAG_RSA_P, half), _fixed(fields, TAG_RSA_Q, half)
            dp, dq = _fixed(fields, TAG_RSA_DP, half), _fixed(fields, TAG_RSA_DQ, half)
            qinv = _fixed(fields, TAG_RSA_QINV, half)
            if p < 3 or q < 3 or (p * q).bit_length() != key_type.rsa_bits:
                raise _bad()
            d = pow(RSA_EXPONENT, -1, (p - 1) * (q - 1))
            if (d % (p - 1), d % (q - 1), pow(q, -1, p)) != (dp, dq, qinv):
                raise _bad()  # not e = 65537, or inconsistent parts
            return from_der(offload.run(checked_rsa_key, p, q, d, dp, dq, qinv))
        if key_type in _CURVES:
            scalar = fields.get(TAG_EC_PRIVATE)
            if scalar is None or len(scalar) != key_type.byte_len:
                raise _bad()
            return ec.derive_private_key(int.from_bytes(scalar, "big"), _CURVES[key_type])
        tag = TAG_ED25519_PRIVATE if key_type is KEY_TYPE.ED25519 else TAG_X25519_PRIVATE
        raw = fields.get(tag)
        if raw is None or len(raw) != 32:
            raise _bad()
        if key_type is KEY_TYPE.ED25519:
            return ed25519.Ed25519PrivateKey.from_private_bytes(raw)
        return x25519.X25519PrivateKey.from_private_bytes(raw)
    except ValueError:  # not invertible, scalar out of range, ...
        raise _bad() from None


def checked_rsa_key(p: int, q: int, d: int, dp: int, dq: int, qinv: int) -> bytes:
    """The PKCS#8 DER of the RSA key with these CRT parts (e = 65537), after OpenSSL's
    key check (primes, consistency); ValueError if it fails. Runs in the worker."""
    nums = rsa.RSAPrivateNumbers(p, q, d, dp, dq, qinv,
                                 rsa.RSAPublicNumbers(RSA_EXPONENT, p * q))
    return to_der(nums.private_key())


def rsa_private(c: int, p: int, q: int, dp: int, dq: int, qinv: int) -> int:
    """Raw RSA's private-key operation on ``c``, by the CRT: the same result as
    ``pow(c, d, n)``, four times faster. Runs in the worker."""
    m1, m2 = pow(c, dp, p), pow(c, dq, q)
    return m2 + ((qinv * (m1 - m2)) % p) * q


def sign(key_type: KEY_TYPE, key: PrivateKey, data: bytes) -> bytes:
    """GENERAL AUTHENTICATE with a challenge (``81``): the private-key operation.

    RSA: raw (textbook) RSA on a block of the modulus' length (the host padded it), which
    is also how PIV decrypts. ECDSA: ``data`` is the hash; a shorter one is the same
    number left-padded, a longer one is cut to its leftmost bytes (as ECDSA truncates to
    the order's length); the answer is a DER signature.
    Ed25519: ``data`` is the message. X25519 cannot sign.
    """
    if isinstance(key, rsa.RSAPrivateKey):
        if len(data) != key_type.byte_len:
            raise _bad()
        nums = key.private_numbers()
        c = int.from_bytes(data, "big")
        if c >= nums.public_numbers.n:
            raise _bad()
        m = offload.run(rsa_private, c, nums.p, nums.q, nums.dmp1, nums.dmq1, nums.iqmp)
        return m.to_bytes(key_type.byte_len, "big")
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not data:
            raise _bad()
        digest = data[:key_type.byte_len].rjust(key_type.byte_len, b"\0")
        return key.sign(digest, ec.ECDSA(Prehashed(_PREHASH[key_type])))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    raise _bad()


def agree(key_type: KEY_TYPE, key: PrivateKey, peer: bytes) -> bytes:
    """GENERAL AUTHENTICATE with an exponentiation (``85``): ECDH / X25519 shared secret."""
    try:
        if isinstance(key, ec.EllipticCurvePrivateKey):
            if len(peer) != 1 + 2 * key_type.byte_len or peer[0] != 0x04:
                raise _bad()
            point = ec.EllipticCurvePublicKey.from_encoded_point(_CURVES[key_type], peer)
            return key.exchange(ec.ECDH(), point)
        if isinstance(key, x25519.X25519PrivateKey):
            if len(peer) != 32:
                raise _bad()
            return key.exchange(x25519.X25519PublicKey.from_public_bytes(peer))
    except ValueError:  # not on the curve, a low-order point, ...
        raise _bad() from None
    raise _bad()


# -- the card management key -----------------------------------------------------------------
def _block_cipher(key_type: MANAGEMENT_KEY_TYPE, key: bytes) -> Cipher[modes.ECB]:
    if key_type is MANAGEMENT_KEY_TYPE.TDES:
        from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES

        algorithm: algorithms.AES | TripleDES = TripleDES(key)
    else:
        algorithm = algorithms.AES(key)
    return Cipher(algorithm, modes.ECB())  # noqa: S305 - one block, as PIV specifies


def encrypt_block(key_type: MANAGEMENT_KEY_TYPE, key: bytes, block: bytes) -> bytes:
    enc = _block_cipher(key_type, key).encryptor()
    return enc.update(block) + enc.finalize()


def decrypt_block(key_type: MANAGEMENT_KEY_TYPE, key: bytes, block: bytes) -> bytes:
    dec = _block_cipher(key_type, key).decryptor()
    return dec.update(block) + dec.finalize()
