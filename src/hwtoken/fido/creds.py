"""Discoverable (resident) credentials on the key: list and delete (needs the PIN)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fido2.ctap import CtapDevice, CtapError
from fido2.ctap2 import Ctap2
from fido2.ctap2.credman import CredentialManagement
from fido2.ctap2.pin import ClientPin
from fido2.utils import websafe_decode, websafe_encode
from fido2.webauthn import PublicKeyCredentialDescriptor, PublicKeyCredentialType

from hwtoken.errors import CheckFailed, DeviceError, InvalidInput
from hwtoken.fido.errors import from_ctap
from hwtoken.fido.session import PinSource, ctap2, pin_token

_R = CredentialManagement.RESULT


@dataclass(frozen=True)
class ResidentCredential:
    """One discoverable credential as the key reports it."""

    rp_id: str
    credential_id: bytes
    user_id: bytes
    user_name: str | None
    display_name: str | None
    cred_protect: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"rp_id": self.rp_id, "credential_id": websafe_encode(self.credential_id),
                "user_id": websafe_encode(self.user_id), "user_name": self.user_name,
                "display_name": self.display_name, "cred_protect": self.cred_protect}


@dataclass(frozen=True)
class CredentialListing:
    credentials: list[ResidentCredential]
    existing: int
    remaining: int

    def to_dict(self) -> dict[str, Any]:
        return {"existing": self.existing, "remaining": self.remaining,
                "credentials": [c.to_dict() for c in self.credentials]}


def _credman(ctap: Ctap2, pin: PinSource | None) -> CredentialManagement:
    if not CredentialManagement.is_supported(ctap.info):
        raise DeviceError("this key does not support credential management")
    cp, token = pin_token(ctap, pin, ClientPin.PERMISSION.CREDENTIAL_MGMT,
                          what="credential management")
    return CredentialManagement(ctap, cp.protocol, token)


def list_credentials(device: CtapDevice, pin: PinSource | None) -> CredentialListing:
    """Every discoverable credential, grouped by RP, and the slots left."""
    return _enumerate(_credman(ctap2(device), pin))


def _enumerate(cm: CredentialManagement) -> CredentialListing:
    try:
        meta = cm.get_metadata()
        creds = []
        for rp in cm.enumerate_rps():
            rp_id = rp[_R.RP]["id"]
            for c in cm.enumerate_creds(rp[_R.RP_ID_HASH]):
                user = c.get(_R.USER, {})
                creds.append(ResidentCredential(
                    rp_id=rp_id, credential_id=c[_R.CREDENTIAL_ID]["id"],
                    user_id=user.get("id", b""), user_name=user.get("name"),
                    display_name=user.get("displayName"),
                    cred_protect=c.get(_R.CRED_PROTECT)))
    except CtapError as exc:
        raise from_ctap(exc, "credential management failed") from None
    return CredentialListing(creds, meta[_R.EXISTING_CRED_COUNT],
                             meta[_R.MAX_REMAINING_COUNT])


def parse_credential_id(text: str) -> bytes:
    """A credential ID given as base64url (as `creds list` prints it) or hex."""
    text = text.strip()
    try:
        if len(text) % 2 == 0 and all(c in "0123456789abcdefABCDEF" for c in text):
            return bytes.fromhex(text)
        raw = websafe_decode(text)
    except ValueError:
        raw = b""
    if not raw:
        raise InvalidInput(f"not a credential ID: {text!r} (give it as base64url or hex)")
    return raw


def delete_credential(device: CtapDevice, credential_id: bytes,
                      pin: PinSource | None) -> ResidentCredential:
    """Delete the discoverable credential ``credential_id``; returns what was deleted."""
    cm = _credman(ctap2(device), pin)
    listing = _enumerate(cm)
    match = [c for c in listing.credentials if c.credential_id == credential_id]
    if not match:
        raise CheckFailed("the key holds no discoverable credential with that ID "
                          "(see `hwtoken fido2 creds list`)")
    try:
        cm.delete_cred(PublicKeyCredentialDescriptor(
            type=PublicKeyCredentialType.PUBLIC_KEY, id=credential_id))
    except CtapError as exc:
        raise from_ctap(exc, "cannot delete the credential") from None
    return match[0]


__all__ = ["ResidentCredential", "CredentialListing", "list_credentials",
           "delete_credential", "parse_credential_id"]
