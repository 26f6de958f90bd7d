"""FIDO credentials of the virtual key: key material wrapped into the credential ID.

A credential's secrets (a 32-byte seed from which its private key, its hmac-secret
CredRandoms and its largeBlobKey are derived, its algorithm, credProtect level and
credBlob) are encrypted with AES-256-GCM under a key derived from the device master
secret, with the RP ID hash as associated data. The credential ID *is* that ciphertext,
so non-resident credentials (CTAP2 and U2F key handles alike) need no storage, and an ID
presented for another RP, or by another key, simply fails to open.

Credential ID layout (version 1, 63 bytes + credBlob)::

    0x01 | nonce (12) | AES-GCM(payload) + tag (16)      AAD = 0x01 | rpIdHash
    payload = flags (1) | alg (1) | seed (32) | credBlob (0..32)
    flags: bits 0-1 credProtect level (0 = not set), bit 2 resident, bit 3 made by U2F

Resident credentials also keep a :class:`ResidentRecord` (RP, user, ...) in the key's
``fido`` store section; their IDs only work while that record exists.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import weakref
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fido2.cose import ES256, CoseKey, EdDSA

VERSION = 1
NONCE_LEN = 12
TAG_LEN = 16
SEED_LEN = 32
MAX_CRED_BLOB = 32
ID_LEN = 1 + NONCE_LEN + 2 + SEED_LEN + TAG_LEN  # without credBlob: 63
MAX_ID_LEN = ID_LEN + MAX_CRED_BLOB

ALG_ES256 = ES256.ALGORITHM  # -7
ALG_EDDSA = EdDSA.ALGORITHM  # -8
SUPPORTED_ALGORITHMS = (ALG_ES256, ALG_EDDSA)
_ALG_CODES = {ALG_ES256: 1, ALG_EDDSA: 2}
_CODE_ALGS = {v: k for k, v in _ALG_CODES.items()}

_FLAG_RESIDENT = 0x04
_FLAG_U2F = 0x08

_P256_ORDER = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)


def rp_id_hash(rp_id: str) -> bytes:
    """SHA-256 of the RP ID (the U2F application parameter for U2F)."""
    return hashlib.sha256(rp_id.encode()).digest()


def _derive(secret: bytes, label: bytes, length: int = 32) -> bytes:
    out = hmac.new(secret, b"hwtoken-fido\x00" + label, hashlib.sha512).digest()
    return out[:length]


@lru_cache(maxsize=16)
def _aead(master_secret: bytes) -> AESGCM:
    return AESGCM(_derive(master_secret, b"credential-wrap-v1"))


@lru_cache(maxsize=512)
def _private_key(seed: bytes, alg: int) -> ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey:
    if alg == ALG_ES256:
        d = int.from_bytes(_derive(seed, b"es256", 64), "big") % (_P256_ORDER - 1) + 1
        return ec.derive_private_key(d, ec.SECP256R1())
    if alg == ALG_EDDSA:
        return ed25519.Ed25519PrivateKey.from_private_bytes(_derive(seed, b"ed25519"))
    raise ValueError(f"unsupported algorithm {alg}")


@lru_cache(maxsize=512)
def _cose_public_key(seed: bytes, alg: int) -> CoseKey:
    pub = _private_key(seed, alg).public_key()
    if alg == ALG_ES256:
        return ES256.from_cryptography_key(pub)
    return EdDSA.from_cryptography_key(pub)


@dataclass(frozen=True)
class CredentialKey:
    """The secret part of one credential, as carried inside its credential ID."""

    seed: bytes
    alg: int = ALG_ES256
    cred_protect: int = 0
    resident: bool = False
    u2f: bool = False
    cred_blob: bytes = b""

    @classmethod
    def generate(cls, alg: int = ALG_ES256, **kwargs: Any) -> CredentialKey:
        """A new credential with a fresh random seed."""
        if alg not in _ALG_CODES:
            raise ValueError(f"unsupported algorithm {alg}")
        return cls(secrets.token_bytes(SEED_LEN), alg, **kwargs)

    # -- key material ----------------------------------------------------------------
    def private_key(self) -> ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey:
        return _private_key(self.seed, self.alg)

    def cose_public_key(self) -> CoseKey:
        """The public key as a COSE_Key map (for attested credential data)."""
        return _cose_public_key(self.seed, self.alg)

    def public_point(self) -> bytes:
        """The uncompressed P-256 point (65 bytes), as U2F REGISTER returns it."""
        pub = self.private_key().public_key()
        if not isinstance(pub, ec.EllipticCurvePublicKey):
            raise ValueError("only ES256 credentials have a P-256 point")
        return pub.public_bytes(serialization.Encoding.X962,
                                serialization.PublicFormat.UncompressedPoint)

    def sign(self, data: bytes) -> bytes:
        """Sign ``data``: DER ECDSA/SHA-256 for ES256, raw Ed25519 for EdDSA."""
        priv = self.private_key()
        if isinstance(priv, ec.EllipticCurvePrivateKey):
            return priv.sign(data, ec.ECDSA(hashes.SHA256()))
        return priv.sign(data)

    def cred_random(self, uv: bool) -> bytes:
        """hmac-secret CredRandom (CTAP 2.1 keeps one for with-UV and one without)."""
        return _derive(self.seed, b"hmac-secret-uv" if uv else b"hmac-secret")

    def large_blob_key(self) -> bytes:
        """The 32-byte largeBlobKey of this credential."""
        return _derive(self.seed, b"large-blob-key")

    @property
    def protection(self) -> int:
        """Effective credProtect level (1 when none was set)."""
        return self.cred_protect or 1

    # -- wire format -------------------------------------------------------------------
    def payload(self) -> bytes:
        flags = (self.cred_protect & 0x03) | (_FLAG_RESIDENT if self.resident else 0) | (
            _FLAG_U2F if self.u2f else 0)
        return bytes([flags, _ALG_CODES[self.alg]]) + self.seed + self.cred_blob

    @classmethod
    def from_payload(cls, payload: bytes) -> CredentialKey | None:
        if len(payload) < 2 + SEED_LEN or len(payload) > 2 + SEED_LEN + MAX_CRED_BLOB:
            return None
        flags, code = payload[0], payload[1]
        alg = _CODE_ALGS.get(code)
        if alg is None or flags & ~0x0F:
            return None
        return cls(
            seed=bytes(payload[2:2 + SEED_LEN]), alg=alg, cred_protect=flags & 0x03,
            resident=bool(flags & _FLAG_RESIDENT), u2f=bool(flags & _FLAG_U2F),
            cred_blob=bytes(payload[2 + SEED_LEN:]),
        )


def wrap(master_secret: bytes, rp_id_hash: bytes, cred: CredentialKey) -> bytes:
    """The credential ID (or U2F key handle) carrying ``cred`` for ``rp_id_hash``."""
    if len(cred.seed) != SEED_LEN or len(cred.cred_blob) > MAX_CRED_BLOB:
        raise ValueError("bad credential seed or credBlob")
    header = bytes([VERSION])
    nonce = secrets.token_bytes(NONCE_LEN)
    sealed = _aead(bytes(master_secret)).encrypt(nonce, cred.payload(), header + rp_id_hash)
    return header + nonce + sealed


def unwrap(master_secret: bytes, rp_id_hash: bytes, credential_id: bytes) -> CredentialKey | None:
    """The credential in ``credential_id`` if this key made it for ``rp_id_hash``, else None.

    Never raises for malformed input: anything that is not ours is simply None.
    """
    if not isinstance(credential_id, (bytes, bytearray)):
        return None
    cid = bytes(credential_id)
    if len(cid) < ID_LEN or len(cid) > MAX_ID_LEN or cid[0] != VERSION:
        return None
    nonce, sealed = cid[1:1 + NONCE_LEN], cid[1 + NONCE_LEN:]
    try:
        payload = _aead(bytes(master_secret)).decrypt(nonce, sealed, cid[:1] + rp_id_hash)
    except InvalidTag:
        return None
    return CredentialKey.from_payload(payload)


@dataclass
class ResidentRecord:
    """A discoverable credential's stored record (its secrets stay in ``credential_id``)."""

    credential_id: bytes
    rp_id: str
    rp: dict[str, Any]
    user: dict[str, Any]
    created: int = 0
    large_blob_key: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rp_id_hash(self) -> bytes:
        return rp_id_hash(self.rp_id)

    @property
    def user_id(self) -> bytes:
        return bytes(self.user["id"])

    def to_store(self) -> dict[str, Any]:
        return {
            "id": self.credential_id, "rp_id": self.rp_id, "rp": dict(self.rp),
            "user": dict(self.user), "created": self.created,
            "large_blob_key": self.large_blob_key, "extra": dict(self.extra),
        }

    @classmethod
    def from_store(cls, d: dict[str, Any]) -> ResidentRecord:
        return cls(
            credential_id=bytes(d["id"]), rp_id=str(d["rp_id"]), rp=dict(d["rp"]),
            user=dict(d["user"]), created=int(d.get("created", 0)),
            large_blob_key=bool(d.get("large_blob_key", False)),
            extra=dict(d.get("extra", {})),
        )


COUNTER_FIELD = "counter"
COUNTER_RESERVE = 256


class SignatureCounter:
    """The key's one global, strictly increasing signature counter.

    Persisting every increment would cost an fsync per assertion, so the store holds a
    *reservation*: the highest value that may have been handed out. Values up to it are
    issued from memory; passing it reserves :data:`COUNTER_RESERVE` more (one commit).
    After a restart counting resumes above the reservation, so it never goes back.
    """

    def __init__(self, key: Any) -> None:
        self._key = key
        section = key.store.section("fido")
        self._reserved = int(section.get(COUNTER_FIELD, 0))
        self._value = self._reserved

    @property
    def value(self) -> int:
        """The last value issued (or the resume point after a load)."""
        return self._value

    def settle(self) -> None:
        """On a clean close: store the last value issued instead of the reservation, so
        the next load goes on from it (1, 2, 3...) rather than above the reservation
        (which only a crash should cost)."""
        if self._value < self._reserved:
            self._key.store.section("fido")[COUNTER_FIELD] = self._value
            self._reserved = self._value

    def next(self) -> int:
        """The next counter value (commits the store once every COUNTER_RESERVE calls)."""
        self._value += 1
        if self._value > self._reserved:
            self._reserved = self._value + COUNTER_RESERVE - 1
            self._key.store.section("fido")[COUNTER_FIELD] = self._reserved
            self._key.store.commit()
        return self._value


_counters: weakref.WeakKeyDictionary[Any, SignatureCounter] = weakref.WeakKeyDictionary()


def signature_counter(key: Any) -> SignatureCounter:
    """The one :class:`SignatureCounter` of ``key`` (shared by CTAP2 and U2F)."""
    counter = _counters.get(key)
    if counter is None:
        counter = _counters[key] = SignatureCounter(key)
    return counter


def settle_signature_counter(key: Any) -> None:
    """:meth:`SignatureCounter.settle` for ``key``, if its counter was used."""
    counter = _counters.get(key)
    if counter is not None:
        counter.settle()


def next_signature_counter(key: Any) -> int:
    """Shorthand: the next value of ``key``'s signature counter."""
    return signature_counter(key).next()


GENERATION_FIELD = "generation"


def wrapping_secret(key: Any) -> bytes:
    """The secret to pass to :func:`wrap`/:func:`unwrap` for ``key`` (CTAP2 and U2F).

    Derived from the device master secret and the FIDO reset generation, so an
    authenticatorReset invalidates every credential ID and U2F key handle made before.
    Until the first reset it is the master secret itself.
    """
    generation = int(key.store.section("fido").get(GENERATION_FIELD, 0))
    if generation == 0:
        return key.master_secret
    return _derive(key.master_secret, b"wrap-generation-" + str(generation).encode())
