"""COSE signature algorithms of the virtual key's FIDO credentials, all with ``cryptography``.

Every credential has a 32-byte seed; its private key is derived from it, so the credential
ID (which carries the seed, sealed) is all the key ever needs to keep:

=========  ====  =====================================================================
COSE alg   code  private key
=========  ====  =====================================================================
ES256 -7   1     P-256 scalar from the seed; ECDSA with SHA-256 (DER signature)
EdDSA -8   2     Ed25519 from the seed
ES384 -35  3     P-384 scalar; ECDSA with SHA-384
ES512 -36  4     P-521 scalar; ECDSA with SHA-512
ES256K -47 5     secp256k1 scalar; ECDSA with SHA-256
RS256 -257 6     RSA-2048 (e = 65537); PKCS#1 v1.5 with SHA-256
PS256 -37  7     RSA-2048; PSS, MGF1-SHA-256, 32-byte salt (RFC 8230)
ML-DSA-44  8     FIPS 204 ML-DSA-44 from a 32-byte seed derived from the credential seed
ML-DSA-65  9     ML-DSA-65, likewise
ML-DSA-87  10    ML-DSA-87, likewise
=========  ====  =====================================================================

RSA keys cannot be derived from a seed with ``cryptography``, so an RSA credential also
carries its two primes (``material``, 256 bytes) inside its sealed credential ID. Public
keys are COSE_Keys as python-fido2 encodes them (``fido2.cose``); ML-DSA ones use the COSE
AKP key type ``{1: 7, 3: alg, -1: public key}``. ML-DSA needs ``cryptography`` >= 47 on an
OpenSSL that has it (:func:`available`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from fido2 import cose

ES256 = -7
EDDSA = -8
ES384 = -35
ES512 = -36
ES256K = -47
RS256 = -257
PS256 = -37
MLDSA44 = -48
MLDSA65 = -49
MLDSA87 = -50

RSA_BITS = 2048
RSA_EXPONENT = 65537
RSA_PRIME_LEN = RSA_BITS // 16  # bytes per prime

# Group orders (SEC 2 / FIPS 186-4): a derived scalar is reduced into [1, n-1].
_ORDERS = {
    "secp256r1": int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16),
    "secp384r1": int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF"
                     "581A0DB248B0A77AECEC196ACCC52973", 16),
    "secp521r1": int("01FF" + "FFFFFFFF" * 7 + "FFFFFFFA51868783BF2F966B7FCC0148F709A5D0"
                     "3BB5C9B8899C47AEBB6FB71E91386409", 16),
    "secp256k1": int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141", 16),
}


def derive(secret: bytes, label: bytes, length: int = 32) -> bytes:
    """``length`` bytes (up to 64) bound to ``secret`` and ``label`` (HMAC-SHA-512)."""
    out = hmac.new(secret, b"hwtoken-fido\x00" + label, hashlib.sha512).digest()
    return out[:length]


def _scalar(seed: bytes, label: bytes, curve: ec.EllipticCurve) -> ec.EllipticCurvePrivateKey:
    order = _ORDERS[curve.name]
    # 64 bytes per 512 bits of order (plus margin) make the reduction bias negligible
    raw = derive(seed, label, 64)
    if order.bit_length() > 384:
        raw += derive(seed, label + b"-2", 64)
    d = int.from_bytes(raw, "big") % (order - 1) + 1
    return ec.derive_private_key(d, curve)


@dataclass(frozen=True)
class Algorithm:
    """One COSE algorithm: how to make, carry, use and publish its keys."""

    cose: int
    code: int  #: its byte in the credential ID
    name: str
    material_len: int  #: private material carried in the credential ID besides the seed
    _load: Callable[[bytes, bytes], Any]
    _sign: Callable[[Any, bytes], bytes]
    _cose_cls: Callable[[], type[cose.CoseKey]]

    def new_material(self) -> bytes:
        """Fresh private material for a new credential (RSA primes; empty otherwise)."""
        if not self.material_len:
            return b""
        numbers = rsa.generate_private_key(RSA_EXPONENT, RSA_BITS).private_numbers()
        return (numbers.p.to_bytes(RSA_PRIME_LEN, "big")
                + numbers.q.to_bytes(RSA_PRIME_LEN, "big"))

    def private_key(self, seed: bytes, material: bytes = b"") -> Any:
        return _private_key(self.cose, seed, material)

    def sign(self, seed: bytes, material: bytes, data: bytes) -> bytes:
        """The signature over ``data`` in the form WebAuthn/COSE expects for this alg."""
        return self._sign(_private_key(self.cose, seed, material), data)

    def cose_key(self, seed: bytes, material: bytes = b"") -> cose.CoseKey:
        return _cose_key(self.cose, seed, material)


def _ecdsa(hash_alg: hashes.HashAlgorithm) -> Callable[[Any, bytes], bytes]:
    algorithm = ec.ECDSA(hash_alg)
    return lambda key, data: key.sign(data, algorithm)


def _ec(label: bytes, curve: ec.EllipticCurve) -> Callable[[bytes, bytes], Any]:
    return lambda seed, material: _scalar(seed, label, curve)


def _load_rsa(seed: bytes, material: bytes) -> rsa.RSAPrivateKey:
    if len(material) != 2 * RSA_PRIME_LEN:
        raise ValueError("RSA credential without its primes")
    p = int.from_bytes(material[:RSA_PRIME_LEN], "big")
    q = int.from_bytes(material[RSA_PRIME_LEN:], "big")
    d = pow(RSA_EXPONENT, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q),
        rsa.RSAPublicNumbers(RSA_EXPONENT, p * q))
    return numbers.private_key(unsafe_skip_rsa_key_validation=True)


_PKCS1 = padding.PKCS1v15()
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
_SHA256 = hashes.SHA256()


def _mldsa(variant: str) -> tuple[Callable[[bytes, bytes], Any], Callable[[], type]]:
    def load(seed: bytes, material: bytes) -> Any:
        from cryptography.hazmat.primitives.asymmetric import mldsa

        cls = getattr(mldsa, f"MLDSA{variant}PrivateKey")
        return cls.from_seed_bytes(derive(seed, b"ml-dsa-" + variant.encode()))

    return load, lambda: getattr(cose, f"MLDSA{variant}")


_ML44, _ML65, _ML87 = _mldsa("44"), _mldsa("65"), _mldsa("87")


def _plain_sign(key: Any, data: bytes) -> bytes:
    return key.sign(data)


ALGORITHMS: dict[int, Algorithm] = {a.cose: a for a in (
    Algorithm(ES256, 1, "ES256", 0, _ec(b"es256", ec.SECP256R1()),
              _ecdsa(hashes.SHA256()), lambda: cose.ES256),
    Algorithm(EDDSA, 2, "EdDSA", 0,
              lambda seed, m: ed25519.Ed25519PrivateKey.from_private_bytes(
                  derive(seed, b"ed25519")),
              _plain_sign, lambda: cose.EdDSA),
    Algorithm(ES384, 3, "ES384", 0, _ec(b"es384", ec.SECP384R1()),
              _ecdsa(hashes.SHA384()), lambda: cose.ES384),
    Algorithm(ES512, 4, "ES512", 0, _ec(b"es512", ec.SECP521R1()),
              _ecdsa(hashes.SHA512()), lambda: cose.ES512),
    Algorithm(ES256K, 5, "ES256K", 0, _ec(b"es256k", ec.SECP256K1()),
              _ecdsa(hashes.SHA256()), lambda: cose.ES256K),
    Algorithm(RS256, 6, "RS256", 2 * RSA_PRIME_LEN, _load_rsa,
              lambda key, data: key.sign(data, _PKCS1, _SHA256), lambda: cose.RS256),
    Algorithm(PS256, 7, "PS256", 2 * RSA_PRIME_LEN, _load_rsa,
              lambda key, data: key.sign(data, _PSS, _SHA256), lambda: cose.PS256),
    Algorithm(MLDSA44, 8, "ML-DSA-44", 0, _ML44[0], _plain_sign, _ML44[1]),
    Algorithm(MLDSA65, 9, "ML-DSA-65", 0, _ML65[0], _plain_sign, _ML65[1]),
    Algorithm(MLDSA87, 10, "ML-DSA-87", 0, _ML87[0], _plain_sign, _ML87[1]),
)}
BY_CODE: dict[int, Algorithm] = {a.code: a for a in ALGORITHMS.values()}
MAX_MATERIAL = max(a.material_len for a in ALGORITHMS.values())


@lru_cache(maxsize=1)
def _mldsa_available() -> bool:
    try:
        from cryptography.hazmat.primitives.asymmetric import mldsa

        mldsa.MLDSA44PrivateKey.generate()
    except Exception:  # older cryptography, or an OpenSSL without ML-DSA
        return False
    return hasattr(cose, "MLDSA44")


def available(alg: int) -> bool:
    """True if this installation can use COSE algorithm ``alg``."""
    if alg not in ALGORITHMS:
        return False
    if alg in (MLDSA44, MLDSA65, MLDSA87):
        return _mldsa_available()
    return True


def get(alg: int) -> Algorithm:
    """The :class:`Algorithm` for COSE id ``alg`` (ValueError if unknown)."""
    try:
        return ALGORITHMS[alg]
    except KeyError:
        raise ValueError(f"unsupported algorithm {alg}") from None


@lru_cache(maxsize=512)
def _private_key(alg: int, seed: bytes, material: bytes) -> Any:
    return ALGORITHMS[alg]._load(seed, material)


@lru_cache(maxsize=512)
def _cose_key(alg: int, seed: bytes, material: bytes) -> cose.CoseKey:
    a = ALGORITHMS[alg]
    return a._cose_cls().from_cryptography_key(_private_key(alg, seed, material).public_key())
