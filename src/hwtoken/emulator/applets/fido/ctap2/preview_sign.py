"""previewSign: the signing extension Yubico prototypes (WebAuthn ``sign``, version 4), as
python-fido2 2.2.1 speaks it (``fido2.ctap2.extensions.PreviewSignExtension`` and its device
tests ``test_preview_sign.py`` / ``test_sign_extension_v4.py``).

A credential made with the extension gets a second key pair, a *signing key*, that signs
whatever the relying party asks later, not WebAuthn challenges.

makeCredential input ``{3: [alg, ...], 4: flags}``: the first algorithm of the list this key
has (the relying party's preference) is chosen, else UNSUPPORTED_ALGORITHM; ``flags`` is
0b000 (no requirement), 0b001 (user presence required to sign) or 0b101 (presence and user
verification), anything else INVALID_OPTION. The signed output ``{3: alg, 4: flags}`` goes
in the authenticator data; the unsigned output ``{7: attestation object}`` in the response's
unsignedExtensionOutputs (0x06): an attestation object ``{1: fmt, 2: authData, 3: attStmt}``
whose attested credential is the signing key (credential ID = its *key handle*, signature
counter 0), attested as the credential itself is (packed or none).

getAssertion input ``{2: key handle, 6: tbs, 7: additional args}``, only with an allow list
(INVALID_OPTION otherwise, and when the key handle or tbs is missing): the key handle must
belong to the credential used (INVALID_CREDENTIAL), a key made with flags 0b001 signs only
with ``up`` (UP_REQUIRED) and one made with 0b101 also only with user verification
(PUAT_REQUIRED). The output ``{6: signature}`` goes in the authenticator data.

Algorithms (COSE; the signing public key's ``alg`` is what a verifier uses):

======  =================  ============================================  =========
value   name               the key signs                                 public key
======  =================  ============================================  =========
-9      ESP256             ``tbs``, ECDSA P-256 with SHA-256             EC2, -9
-7      ES256              likewise                                      EC2, -7
-300    ESP256-split       the SHA-256 digest ``tbs`` (32 bytes)         EC2, -9
-70009  ESP256-split       likewise (a placeholder some prototypes use)  EC2, -9
-65539  ESP256-split-ARKG  the digest, with a key ARKG derives           ARKG seed
======  =================  ============================================  =========

ESP256-split-ARKG (draft-bradleylundberg-cfrg-arkg, draft-lundberg-cose-two-party-signing-
algs) publishes an ARKG-P256 public seed ``{1: -65537, 3: -65700, -1: pk_bl, -2: pk_kem,
-3: -9}`` (pk_bl an EC2 key with alg -7, pk_kem one with alg -25, as python-fido2 writes
them); the relying party derives public keys from it and sends, with each digest,
``COSE_Sign_Args`` ``{3: -65539, -1: kh, -2: ctx}``: without them MISSING_PARAMETER, with
another ``alg`` or a key handle that fails ARKG's MAC INVALID_CREDENTIAL.

Nothing is stored: a key handle is ``0x01 | alg code | flags | nonce (16) | tag (16)``, the
tag an HMAC under a key derived from the credential's own secret, and the signing key is
derived from that secret and the nonce. So a key handle only works with its credential.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from fido2 import cbor

from hwtoken.emulator.applets.fido import algorithms, arkg
from hwtoken.emulator.applets.fido.credentials import CredentialKey
from hwtoken.emulator.applets.fido.ctap2.cbor import decode as decode_cbor
from hwtoken.emulator.applets.fido.ctap2.errors import ERR, Ctap2Error
from hwtoken.emulator.applets.fido.ctap2.params import Params, check_type

NAME = "previewSign"

# authenticator extension inputs and outputs (CBOR map keys)
IN_KEY_HANDLE = 2
IN_ALGORITHMS = 3
IN_FLAGS = 4
IN_TBS = 6
IN_ARGS = 7
OUT_ALG = 3
OUT_FLAGS = 4
OUT_SIGNATURE = 6
OUT_ATTESTATION_OBJECT = 7

FLAG_UP = 0b001
FLAG_UV = 0b100
VALID_FLAGS = (0b000, FLAG_UP, FLAG_UP | FLAG_UV)

ESP256 = -9
ES256 = -7
ESP256_SPLIT = -300  # requested assignment, draft-lundberg-cose-two-party-signing-algs
ESP256_SPLIT_PROTOTYPE = -70009  # placeholder used by some prototypes
ESP256_SPLIT_ARKG = -65539  # placeholder, draft-bradleylundberg-cfrg-arkg
ARKG_P256 = -65700  # placeholder: the ARKG-P256 instance
KTY_ARKG_PUB = -65537  # placeholder: COSE key type "ARKG public seed"
ECDH_ES_HKDF_256 = -25  # the alg of an ARKG seed's KEM half (as python-fido2 writes it)

# COSE_Sign_Args labels
ARGS_ALG = 3
ARGS_KH = -1
ARGS_CTX = -2

KEY_HANDLE_VERSION = 1
NONCE_LEN = 16
TAG_LEN = 16
KEY_HANDLE_LEN = 3 + NONCE_LEN + TAG_LEN
PREHASH_LEN = 32


@dataclass(frozen=True)
class SignAlgorithm:
    """One previewSign algorithm."""

    cose: int
    code: int  #: its byte in the key handle
    prehashed: bool  #: ``tbs`` is already the SHA-256 digest
    arkg: bool = False  #: the key is an ARKG-P256 seed, signing keys derived per request


ALGORITHMS: dict[int, SignAlgorithm] = {a.cose: a for a in (
    SignAlgorithm(ESP256, 1, prehashed=False),
    SignAlgorithm(ES256, 2, prehashed=False),
    SignAlgorithm(ESP256_SPLIT, 3, prehashed=True),
    SignAlgorithm(ESP256_SPLIT_PROTOTYPE, 4, prehashed=True),
    SignAlgorithm(ESP256_SPLIT_ARKG, 5, prehashed=True, arkg=True),
)}
_BY_CODE = {a.code: a for a in ALGORITHMS.values()}

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_ECDSA_PREHASHED = ec.ECDSA(utils.Prehashed(hashes.SHA256()))


# -- keys ----------------------------------------------------------------------------------
def _kh_mac_key(cred: CredentialKey) -> bytes:
    return algorithms.derive(cred.seed, b"previewSign-key-handle")


@dataclass(frozen=True)
class SigningKey:
    """A signing key of one credential: what its key handle names."""

    algorithm: SignAlgorithm
    flags: int
    nonce: bytes

    @classmethod
    def generate(cls, algorithm: SignAlgorithm, flags: int) -> SigningKey:
        return cls(algorithm, flags, secrets.token_bytes(NONCE_LEN))

    def key_handle(self, cred: CredentialKey) -> bytes:
        header = bytes([KEY_HANDLE_VERSION, self.algorithm.code, self.flags]) + self.nonce
        tag = hmac.new(_kh_mac_key(cred), header, hashlib.sha256).digest()[:TAG_LEN]
        return header + tag

    @classmethod
    def open(cls, cred: CredentialKey, key_handle: bytes) -> SigningKey | None:
        """The signing key ``key_handle`` names, if ``cred`` made it (else None)."""
        if len(key_handle) != KEY_HANDLE_LEN or key_handle[0] != KEY_HANDLE_VERSION:
            return None
        header, tag = key_handle[:-TAG_LEN], key_handle[-TAG_LEN:]
        expected = hmac.new(_kh_mac_key(cred), header, hashlib.sha256).digest()[:TAG_LEN]
        algorithm = _BY_CODE.get(header[1])
        if not hmac.compare_digest(tag, expected) or algorithm is None:
            return None
        return cls(algorithm, header[2], bytes(header[3:]))

    def _seed(self, cred: CredentialKey) -> bytes:
        return algorithms.derive(cred.seed, b"previewSign-key" + self.nonce)

    def private_key(self, cred: CredentialKey) -> ec.EllipticCurvePrivateKey:
        """The P-256 key of an ESP256/ES256/ESP256-split key (not of an ARKG seed)."""
        key: ec.EllipticCurvePrivateKey = algorithms.get(algorithms.ES256).private_key(
            self._seed(cred))
        return key

    def arkg_seed(self, cred: CredentialKey) -> arkg.PrivateSeed:
        return _arkg_seed(self._seed(cred))

    def cose_public_key(self, cred: CredentialKey) -> dict[int, Any]:
        """The signing public key, or for ESP256-split-ARKG the ARKG public seed."""
        if self.algorithm.arkg:
            seed = self.arkg_seed(cred)
            return {1: KTY_ARKG_PUB, 3: ARKG_P256, -1: _ec2(seed.pk_bl, ES256),
                    -2: _ec2(seed.pk_kem, ECDH_ES_HKDF_256), -3: ESP256}
        point = self.private_key(cred).public_key().public_numbers()
        verify_alg = ES256 if self.algorithm.cose == ES256 else ESP256
        return {1: 2, 3: verify_alg, -1: 1, -2: point.x.to_bytes(32, "big"),
                -3: point.y.to_bytes(32, "big")}


@lru_cache(maxsize=64)
def _arkg_seed(seed: bytes) -> arkg.PrivateSeed:
    return arkg.PrivateSeed.derive(algorithms.derive(seed, b"arkg-bl"),
                                   algorithms.derive(seed, b"arkg-kem"))


def _ec2(point: bytes, alg: int) -> dict[int, Any]:
    """A P-256 SEC1 point as a COSE EC2 key (an ARKG seed's halves)."""
    return {1: 2, 3: alg, -1: 1, -2: point[1:33], -3: point[33:65]}


# -- makeCredential ------------------------------------------------------------------------
@dataclass(frozen=True)
class Registration:
    """A checked makeCredential input: the algorithm chosen and the flags."""

    algorithm: SignAlgorithm
    flags: int


def registration(value: Any) -> Registration:
    """Check a makeCredential ``previewSign`` input and choose the algorithm."""
    p = Params(value)
    requested = [check_type(a, int) for a in p.req(IN_ALGORITHMS, list)]
    flags = p.opt(IN_FLAGS, int)
    flags = 0 if flags is None else flags
    if flags not in VALID_FLAGS:
        raise Ctap2Error(ERR.INVALID_OPTION)
    for alg in requested:
        if alg in ALGORITHMS:
            return Registration(ALGORITHMS[alg], flags)
    raise Ctap2Error(ERR.UNSUPPORTED_ALGORITHM)


Attest = Callable[[bytes], tuple[str, dict[str, Any]]]


@dataclass(frozen=True)
class GeneratedKey:
    """A signing key made with a credential, and what makeCredential returns of it."""

    key: SigningKey
    key_handle: bytes
    public_key: dict[int, Any]

    @property
    def signed_output(self) -> dict[int, Any]:
        return {OUT_ALG: self.key.algorithm.cose, OUT_FLAGS: self.key.flags}

    def unsigned_output(self, rp_id_hash: bytes, flags: int, aaguid: bytes,
                        attest: Attest) -> dict[int, Any]:
        """``{7: attestation object}`` of the signing key; ``flags`` are the credential's
        authenticator-data flags (AT and ED included), ``attest(authData)`` gives its
        format and statement."""
        ext = cbor.encode({NAME: self.signed_output})
        auth_data = (rp_id_hash + bytes([flags]) + struct.pack(">I", 0) + aaguid
                     + struct.pack(">H", len(self.key_handle)) + self.key_handle
                     + cbor.encode(self.public_key) + ext)
        fmt, statement = attest(auth_data)
        return {OUT_ATTESTATION_OBJECT: cbor.encode({1: fmt, 2: auth_data, 3: statement})}


def generate(request: Registration, cred: CredentialKey) -> GeneratedKey:
    """A new signing key for the new credential ``cred``."""
    key = SigningKey.generate(request.algorithm, request.flags)
    return GeneratedKey(key, key.key_handle(cred), key.cose_public_key(cred))


# -- getAssertion --------------------------------------------------------------------------
@dataclass(frozen=True)
class SignRequest:
    """A checked getAssertion ``previewSign`` input."""

    key_handle: bytes
    tbs: bytes
    args: bytes | None


def sign_request(value: Any, allow_list: bool) -> SignRequest:
    """Check a getAssertion input (INVALID_OPTION without an allow list, key handle or tbs)."""
    p = Params(value)
    if not allow_list or IN_KEY_HANDLE not in p or IN_TBS not in p:
        raise Ctap2Error(ERR.INVALID_OPTION)
    return SignRequest(p.req(IN_KEY_HANDLE, bytes), p.req(IN_TBS, bytes),
                       p.opt(IN_ARGS, bytes))


def sign(request: SignRequest, cred: CredentialKey, up: bool, uv: bool) -> dict[int, Any]:
    """The output ``{6: signature}`` for ``request`` with ``cred``'s signing key."""
    key = SigningKey.open(cred, request.key_handle)
    if key is None:
        raise Ctap2Error(ERR.INVALID_CREDENTIAL)
    if key.flags & FLAG_UP and not up:
        raise Ctap2Error(ERR.UP_REQUIRED)
    if key.flags & FLAG_UV and not uv:
        raise Ctap2Error(ERR.PUAT_REQUIRED)
    algorithm = key.algorithm
    if algorithm.prehashed and len(request.tbs) != PREHASH_LEN:
        raise Ctap2Error(ERR.INVALID_OPTION)
    if algorithm.arkg:
        private = _arkg_private_key(key, cred, request.args)
    else:
        private = key.private_key(cred)
    mode = _ECDSA_PREHASHED if algorithm.prehashed else _ECDSA_SHA256
    return {OUT_SIGNATURE: private.sign(request.tbs, mode)}


def _arkg_private_key(key: SigningKey, cred: CredentialKey,
                      raw_args: bytes | None) -> ec.EllipticCurvePrivateKey:
    """The private key the COSE_Sign_Args ``{3: alg, -1: kh, -2: ctx}`` name."""
    if raw_args is None:
        raise Ctap2Error(ERR.MISSING_PARAMETER)
    args = Params(decode_cbor(raw_args))
    if args.raw(ARGS_ALG) != key.algorithm.cose:
        raise Ctap2Error(ERR.INVALID_CREDENTIAL)
    kh, ctx = args.req(ARGS_KH, bytes), args.req(ARGS_CTX, bytes)
    try:
        return key.arkg_seed(cred).derive_private_key(kh, ctx)
    except arkg.ArkgError:
        raise Ctap2Error(ERR.INVALID_CREDENTIAL) from None
