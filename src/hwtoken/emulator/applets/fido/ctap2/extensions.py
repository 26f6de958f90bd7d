"""CTAP2 extensions: hmac-secret(-mc), credProtect, credBlob, minPinLength, largeBlobKey,
thirdPartyPayment. A key only honours the ones its profile lists (others are ignored, as
the specification says of unknown extensions)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any

from hwtoken.emulator.applets.fido.credentials import MAX_CRED_BLOB, CredentialKey
from hwtoken.emulator.applets.fido.ctap2.errors import ERR, Ctap2Error
from hwtoken.emulator.applets.fido.ctap2.params import Params, check_type
from hwtoken.emulator.applets.fido.ctap2.pin_protocols import PinProtocolV1

SUPPORTED = ["credBlob", "credProtect", "hmac-secret", "hmac-secret-mc", "largeBlobKey",
             "minPinLength", "thirdPartyPayment"]


@dataclass
class RegistrationExtensions:
    """What makeCredential's extensions ask for, and the authData outputs."""

    cred_protect: int = 0
    cred_blob: bytes = b""
    large_blob_key: bool = False
    hmac_secret: bool = False
    third_party_payment: bool = False
    outputs: dict[str, Any] = field(default_factory=dict)


def registration(ext: dict[Any, Any], rk: bool, rp_id: str, min_pin_length: int,
                 min_pin_rp_ids: list[str],
                 supported: tuple[str, ...] | list[str] = tuple(SUPPORTED),
                 ) -> RegistrationExtensions:
    """Parse makeCredential extension inputs (unknown or unsupported ones are ignored)."""
    ext = {k: v for k, v in ext.items() if k in supported}
    out = RegistrationExtensions()
    if "credProtect" in ext:
        level = check_type(ext["credProtect"], int)
        if level in (1, 2, 3):
            out.cred_protect = level
            out.outputs["credProtect"] = level
    if "hmac-secret" in ext and check_type(ext["hmac-secret"], bool):
        out.outputs["hmac-secret"] = True
        out.hmac_secret = True
    if "credBlob" in ext:
        blob = check_type(ext["credBlob"], bytes)
        stored = len(blob) <= MAX_CRED_BLOB
        if stored:
            out.cred_blob = blob
        out.outputs["credBlob"] = stored
    if "largeBlobKey" in ext:
        if check_type(ext["largeBlobKey"], bool) is not True or not rk:
            raise Ctap2Error(ERR.INVALID_OPTION)
        out.large_blob_key = True
    if "minPinLength" in ext and check_type(ext["minPinLength"], bool) \
            and rp_id in min_pin_rp_ids:
        out.outputs["minPinLength"] = min_pin_length
    if "thirdPartyPayment" in ext and check_type(ext["thirdPartyPayment"], bool):
        out.third_party_payment = True  # CTAP 2.2 §12.9: no registration output
    return out


@dataclass
class HmacSecretRequest:
    """A decoded hmac-secret getAssertion input: the salts and how to return outputs."""

    protocol: PinProtocolV1
    shared: bytes
    salts: list[bytes]

    def output(self, cred: CredentialKey, uv: bool) -> bytes:
        """The encrypted HMAC-SHA-256(CredRandom, salt) for each salt."""
        cred_random = cred.cred_random(uv)
        out = b"".join(hmac.new(cred_random, s, hashlib.sha256).digest() for s in self.salts)
        return self.protocol.encrypt(self.shared, out)


def hmac_secret_request(value: Any, protocols: dict[int, PinProtocolV1]) -> HmacSecretRequest:
    """Check an hmac-secret input map {1: keyAgreement, 2: saltEnc, 3: saltAuth, 4: proto}."""
    p = Params(value)
    key_agreement = p.req(1, dict)
    salt_enc = p.req(2, bytes)
    salt_auth = p.req(3, bytes)
    version = p.opt(4, int)
    proto = protocols.get(1 if version is None else version)
    if proto is None:
        raise Ctap2Error(ERR.INVALID_PARAMETER)
    shared = proto.shared_secret(key_agreement)
    if not proto.verify(shared, salt_enc, salt_auth):
        raise Ctap2Error(ERR.PIN_AUTH_INVALID)
    expected = (32, 64) if proto.VERSION == 1 else (48, 80)
    if len(salt_enc) not in expected:  # CTAP 2.1: salts not 32 or 64 bytes long
        raise Ctap2Error(ERR.INVALID_PARAMETER)
    salts = proto.decrypt(shared, salt_enc)
    return HmacSecretRequest(proto, shared, [salts[i:i + 32] for i in range(0, len(salts), 32)])
