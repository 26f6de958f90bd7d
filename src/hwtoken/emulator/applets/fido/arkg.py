"""ARKG-P256, the delegating party's side (draft-bradleylundberg-cfrg-arkg, the instance
python-fido2 2.2.1's ``fido2.arkg`` and ``cose.ARKG_P256_PLACEHOLDER`` use).

Asynchronous Remote Key Generation lets someone holding only a *public seed* derive fresh
P-256 public keys, each with a key handle, and lets the holder of the *private seed* derive
the matching private key from that handle later. The virtual key is that holder: its
previewSign extension hands out an ARKG public seed and, when asked to sign, derives the
private key a relying party chose.

The instance (the draft's ARKG-P256):

* BL: elliptic-curve addition on P-256, ``hash_to_field`` with expand_message_xmd SHA-256
  and L = 48 (RFC 9380's P256_XMD:SHA-256_SSWU_RO_), DST_ext ``ARKG-P256``;
* KEM: ECDH on P-256 wrapped with an HMAC-SHA-256-128 tag (the draft's "HMAC to adapt a
  KEM without ciphertext integrity"), DST_ext ``ARKG-ECDH.ARKG-P256``.

A key handle is ``tag (16) || SEC1 uncompressed point (65)``. Only ``cryptography`` and the
standard library: point addition is never needed here (the private side adds scalars).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from functools import cached_property

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

#: the order of P-256's base point
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
CURVE = ec.SECP256R1()
L = 48  # hash_to_field bytes per element (ceil((256 + 128) / 8))
MAX_CTX = 64
TAG_LEN = 16
POINT_LEN = 65
KEY_HANDLE_LEN = TAG_LEN + POINT_LEN

DST_EXT = b"ARKG-P256"
KEM_DST_EXT = b"ARKG-ECDH." + DST_EXT  # the ECDH KEM's DST_aug


class ArkgError(ValueError):
    """A key handle that does not decapsulate, or arguments the algorithm refuses."""


def expand_message_xmd(msg: bytes, dst: bytes, length: int) -> bytes:
    """RFC 9380 §5.3.1 with SHA-256."""
    ell = -(-length // 32)
    if ell > 255 or length > 65535 or len(dst) > 255:
        raise ArkgError("expand_message_xmd: output or DST too long")
    dst_prime = dst + bytes([len(dst)])
    b0 = hashlib.sha256(bytes(64) + msg + struct.pack(">H", length) + b"\0"
                        + dst_prime).digest()
    out, prev = [], b""
    for i in range(1, ell + 1):
        mixed = bytes(a ^ b for a, b in zip(b0, prev, strict=True)) if prev else b0
        prev = hashlib.sha256(mixed + bytes([i]) + dst_prime).digest()
        out.append(prev)
    return b"".join(out)[:length]


def hash_to_scalar(msg: bytes, dst: bytes) -> int:
    """RFC 9380 ``hash_to_field(msg, 1)`` into GF(N) (m = 1, L = 48)."""
    return int.from_bytes(expand_message_xmd(msg, dst, L), "big") % N


def _hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF-Expand with SHA-256."""
    out, block = b"", b""
    counter = 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def _point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.X962,
                            serialization.PublicFormat.UncompressedPoint)


@dataclass(frozen=True)
class PrivateSeed:
    """An ARKG-P256 private seed (sk_bl, sk_kem), derived from two input keying materials."""

    sk_bl: int
    sk_kem: int

    @classmethod
    def derive(cls, ikm_bl: bytes, ikm_kem: bytes) -> PrivateSeed:
        """ARKG-Derive-Seed: BL-Derive-Key-Pair(ikm_bl) and KEM-Derive-Key-Pair(ikm_kem)."""
        sk_bl = hash_to_scalar(ikm_bl, b"ARKG-BL-EC-KG." + DST_EXT)
        sk_kem = hash_to_scalar(ikm_kem, b"ARKG-KEM-ECDH-KG." + KEM_DST_EXT)
        if sk_bl == 0 or sk_kem == 0:  # probability 2^-256; the draft leaves it undefined
            raise ArkgError("degenerate ARKG seed")
        return cls(sk_bl, sk_kem)

    @cached_property
    def _kem_key(self) -> ec.EllipticCurvePrivateKey:
        return ec.derive_private_key(self.sk_kem, CURVE)

    @property
    def pk_bl(self) -> bytes:
        """The blinding public key, SEC1 uncompressed."""
        return _point(ec.derive_private_key(self.sk_bl, CURVE).public_key())

    @property
    def pk_kem(self) -> bytes:
        """The KEM public key, SEC1 uncompressed."""
        return _point(self._kem_key.public_key())

    def _kem_decaps(self, kh: bytes, ctx: bytes) -> bytes:
        """The HMAC-wrapped ECDH KEM's Decaps: ``ikm_tau``, or ArkgError if the tag fails."""
        if len(kh) != KEY_HANDLE_LEN:
            raise ArkgError("ARKG key handle has the wrong length")
        tag, c_prime = kh[:TAG_LEN], kh[TAG_LEN:]
        try:
            ephemeral = ec.EllipticCurvePublicKey.from_encoded_point(CURVE, c_prime)
        except ValueError:
            raise ArkgError("ARKG key handle holds no P-256 point") from None
        k_prime = self._kem_key.exchange(ec.ECDH(), ephemeral)
        prk = hmac.new(bytes(32), k_prime, hashlib.sha256).digest()  # HKDF-Extract, no salt
        mk = _hkdf_expand(prk, b"ARKG-KEM-HMAC-mac." + KEM_DST_EXT + ctx, 32)
        expected = hmac.new(mk, c_prime, hashlib.sha256).digest()[:TAG_LEN]
        if not hmac.compare_digest(tag, expected):
            raise ArkgError("ARKG key handle fails its MAC")
        return _hkdf_expand(prk, b"ARKG-KEM-HMAC-shared." + KEM_DST_EXT + ctx, len(k_prime))

    def derive_private_key(self, kh: bytes, ctx: bytes) -> ec.EllipticCurvePrivateKey:
        """ARKG-Derive-Private-Key((sk_bl, sk_kem), kh, ctx) as a P-256 private key."""
        if len(ctx) > MAX_CTX:
            raise ArkgError("ARKG ctx longer than 64 bytes")
        ctx_prime = bytes([len(ctx)]) + ctx
        ikm_tau = self._kem_decaps(kh, b"ARKG-Derive-Key-KEM." + ctx_prime)
        tau = hash_to_scalar(ikm_tau, b"ARKG-BL-EC." + DST_EXT + b"ARKG-Derive-Key-BL."
                             + ctx_prime)
        sk = (self.sk_bl + tau) % N
        if sk == 0:
            raise ArkgError("ARKG derived a zero private key")
        return ec.derive_private_key(sk, CURVE)
