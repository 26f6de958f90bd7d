"""FIDO credentials of the virtual key: key material wrapped into the credential ID.

A credential's secrets (a 32-byte seed from which its private key, its hmac-secret
CredRandoms and its largeBlobKey are derived, its algorithm, credProtect level, the
extensions it was made with and its credBlob; for RSA also its primes) are encrypted with
AES-256-GCM under a key derived from the device master secret, with the RP ID hash as
associated data. The credential ID *is* that ciphertext, so non-resident credentials (CTAP2
and U2F key handles alike) need no storage, and an ID presented for another RP, or by
another key, simply fails to open.

Credential ID layout (version 2; 63 bytes + RSA primes + credBlob)::

    0x02 | nonce (12) | AES-GCM(payload) + tag (16)      AAD = 0x02 | rpIdHash
    payload = flags (1) | alg code (1) | seed (32) | material (0 or 256) | credBlob (0..32)
    flags: bits 0-1 credProtect level (0 = not set), bit 2 resident, bit 3 made by U2F,
           bit 4 made with hmac-secret, bit 5 thirdPartyPayment

Version 1 IDs (made before hwtoken recorded hmac-secret) have the same payload with
flags in bits 0-3 only and no material; they still open, and since nobody can tell whether
one was made with hmac-secret, a CTAP2 one keeps answering it (a U2F key handle never does).
Algorithm codes and key derivation are in :mod:`hwtoken.emulator.applets.fido.algorithms`.

Resident credentials also keep a :class:`ResidentRecord` (RP, user, ...) in the key's
``fido`` store section; their IDs only work while that record exists.
"""

from __future__ import annotations

import hashlib
import secrets
import weakref
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fido2.cose import CoseKey

from hwtoken.emulator.applets.fido import algorithms
from hwtoken.emulator.applets.fido.algorithms import BY_CODE, MAX_MATERIAL, derive

VERSION = 2
LEGACY_VERSION = 1
NONCE_LEN = 12
TAG_LEN = 16
SEED_LEN = 32
MAX_CRED_BLOB = 32
ID_LEN = 1 + NONCE_LEN + 2 + SEED_LEN + TAG_LEN  # without material and credBlob: 63
MAX_ID_LEN = ID_LEN + MAX_MATERIAL + MAX_CRED_BLOB

ALG_ES256 = algorithms.ES256  # -7
ALG_EDDSA = algorithms.EDDSA  # -8
#: every COSE algorithm a credential can have here (a key's profile offers a subset)
SUPPORTED_ALGORITHMS = tuple(a for a in algorithms.ALGORITHMS if algorithms.available(a))

_FLAG_RESIDENT = 0x04
_FLAG_U2F = 0x08
_FLAG_HMAC_SECRET = 0x10
_FLAG_THIRD_PARTY_PAYMENT = 0x20
_FLAGS_V1 = 0x0F
_FLAGS_V2 = 0x3F


def rp_id_hash(rp_id: str) -> bytes:
    """SHA-256 of the RP ID (the U2F application parameter for U2F)."""
    return hashlib.sha256(rp_id.encode()).digest()


@lru_cache(maxsize=16)
def _aead(master_secret: bytes) -> AESGCM:
    return AESGCM(derive(master_secret, b"credential-wrap-v1"))


@dataclass(frozen=True)
class CredentialKey:
    """The secret part of one credential, as carried inside its credential ID."""

    seed: bytes
    alg: int = ALG_ES256
    cred_protect: int = 0
    resident: bool = False
    u2f: bool = False
    cred_blob: bytes = b""
    hmac_secret: bool = False  #: made with the hmac-secret extension
    third_party_payment: bool = False  #: made with thirdPartyPayment
    material: bytes = b""  #: private material besides the seed (RSA primes)

    @classmethod
    def generate(cls, alg: int = ALG_ES256, **kwargs: Any) -> CredentialKey:
        """A new credential with a fresh random seed (and fresh primes for RSA)."""
        if not algorithms.available(alg):
            raise ValueError(f"unsupported algorithm {alg}")
        return cls(secrets.token_bytes(SEED_LEN), alg,
                   material=algorithms.get(alg).new_material(), **kwargs)

    # -- key material ----------------------------------------------------------------
    @property
    def algorithm(self) -> algorithms.Algorithm:
        return algorithms.get(self.alg)

    def private_key(self) -> Any:
        return self.algorithm.private_key(self.seed, self.material)

    def cose_public_key(self) -> CoseKey:
        """The public key as a COSE_Key map (for attested credential data)."""
        return self.algorithm.cose_key(self.seed, self.material)

    def public_point(self) -> bytes:
        """The uncompressed P-256 point (65 bytes), as U2F REGISTER returns it."""
        pub = self.private_key().public_key()
        if self.alg != ALG_ES256 or not isinstance(pub, ec.EllipticCurvePublicKey):
            raise ValueError("only ES256 credentials have a P-256 point")
        return pub.public_bytes(serialization.Encoding.X962,
                                serialization.PublicFormat.UncompressedPoint)

    def sign(self, data: bytes) -> bytes:
        """Sign ``data`` as WebAuthn expects for the credential's algorithm."""
        return self.algorithm.sign(self.seed, self.material, data)

    def cred_random(self, uv: bool) -> bytes:
        """hmac-secret CredRandom (CTAP 2.1 keeps one for with-UV and one without)."""
        return derive(self.seed, b"hmac-secret-uv" if uv else b"hmac-secret")

    def large_blob_key(self) -> bytes:
        """The 32-byte largeBlobKey of this credential."""
        return derive(self.seed, b"large-blob-key")

    @property
    def protection(self) -> int:
        """Effective credProtect level (1 when none was set)."""
        return self.cred_protect or 1

    # -- wire format -------------------------------------------------------------------
    def payload(self) -> bytes:
        flags = ((self.cred_protect & 0x03) | (_FLAG_RESIDENT if self.resident else 0)
                 | (_FLAG_U2F if self.u2f else 0)
                 | (_FLAG_HMAC_SECRET if self.hmac_secret else 0)
                 | (_FLAG_THIRD_PARTY_PAYMENT if self.third_party_payment else 0))
        return (bytes([flags, self.algorithm.code]) + self.seed + self.material
                + self.cred_blob)

    @classmethod
    def from_payload(cls, payload: bytes, version: int = VERSION) -> CredentialKey | None:
        if len(payload) < 2 + SEED_LEN:
            return None
        flags, code = payload[0], payload[1]
        algo = BY_CODE.get(code)
        if algo is None or not algorithms.available(algo.cose):
            return None
        legacy = version == LEGACY_VERSION
        if flags & ~(_FLAGS_V1 if legacy else _FLAGS_V2) or (legacy and algo.code > 2):
            return None
        end = 2 + SEED_LEN + algo.material_len
        blob = payload[end:]
        if len(payload) < end or len(blob) > MAX_CRED_BLOB:
            return None
        u2f = bool(flags & _FLAG_U2F)
        return cls(
            seed=bytes(payload[2:2 + SEED_LEN]), alg=algo.cose, cred_protect=flags & 0x03,
            resident=bool(flags & _FLAG_RESIDENT), u2f=u2f, cred_blob=bytes(blob),
            hmac_secret=(not u2f) if legacy else bool(flags & _FLAG_HMAC_SECRET),
            third_party_payment=bool(flags & _FLAG_THIRD_PARTY_PAYMENT),
            material=bytes(payload[2 + SEED_LEN:end]),
        )


def wrap(master_secret: bytes, rp_id_hash: bytes, cred: CredentialKey) -> bytes:
    """The credential ID (or U2F key handle) carrying ``cred`` for ``rp_id_hash``."""
    if (len(cred.seed) != SEED_LEN or len(cred.cred_blob) > MAX_CRED_BLOB
            or len(cred.material) != cred.algorithm.material_len):
        raise ValueError("bad credential seed, material or credBlob")
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
    if len(cid) < ID_LEN or len(cid) > MAX_ID_LEN or cid[0] not in (VERSION, LEGACY_VERSION):
        return None
    nonce, sealed = cid[1:1 + NONCE_LEN], cid[1 + NONCE_LEN:]
    try:
        payload = _aead(bytes(master_secret)).decrypt(nonce, sealed, cid[:1] + rp_id_hash)
    except InvalidTag:
        return None
    return CredentialKey.from_payload(payload, cid[0])


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
    issued from memory; passing it reserves :data:`COUNTER_RESERVE` more, and only once
    that commit succeeded is the next value issued (a failed commit fails the command and
    issues nothing). A clean close (:meth:`record_exact`) stores the last value issued, so
    counting resumes right after it; after a crash it resumes above the reservation.
    Either way it never goes back.
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

    def next(self) -> int:
        """The next counter value (one commit every :data:`COUNTER_RESERVE` calls).

        Raises what the store's commit raises when a new reservation cannot be saved.
        """
        value = self._value + 1
        if value > self._reserved:
            reserved = value + COUNTER_RESERVE - 1
            self._key.store.section("fido")[COUNTER_FIELD] = reserved
            self._key.store.commit()  # on failure the store rolls the section back
            self._reserved = reserved
        self._value = value
        return value

    def record_exact(self) -> None:
        """Put the last value issued in the store (before a clean close commits it)."""
        self._key.store.section("fido")[COUNTER_FIELD] = self._value
        self._reserved = self._value


_counters: weakref.WeakKeyDictionary[Any, SignatureCounter] = weakref.WeakKeyDictionary()


def signature_counter(key: Any) -> SignatureCounter:
    """The one :class:`SignatureCounter` of ``key`` (shared by CTAP2 and U2F)."""
    counter = _counters.get(key)
    if counter is None:
        counter = _counters[key] = SignatureCounter(key)
    return counter


def record_signature_counter(key: Any) -> None:
    """Before a clean close: store ``key``'s exact counter (if it has one in use)."""
    counter = _counters.get(key)
    if counter is not None:
        counter.record_exact()


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
    return derive(key.master_secret, b"wrap-generation-" + str(generation).encode())
