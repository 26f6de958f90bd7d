"""WebAuthn registration and assertion, end to end: ``Fido2Client`` on the key's side,
``Fido2Server`` on the relying party's, with origin ``https://RP_ID``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fido2 import cbor
from fido2.attestation import Attestation, AttestationType
from fido2.client import ClientError, DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.cose import CoseKey
from fido2.ctap import CtapDevice, CtapError
from fido2.ctap2.extensions import (
    CredPropsExtension,
    CredProtectExtension,
    HmacSecretExtension,
)
from fido2.ctap2.pin import ClientPin
from fido2.server import Fido2Server
from fido2.utils import websafe_encode
from fido2.webauthn import (
    AttestationConveyancePreference,
    AttestationObject,
    PublicKeyCredentialDescriptor,
    PublicKeyCredentialParameters,
    PublicKeyCredentialType,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from hwtoken.errors import CheckFailed, HwtokenError, InvalidInput
from hwtoken.fido import credfile
from hwtoken.fido.credfile import SavedCredential
from hwtoken.fido.errors import from_client, from_ctap
from hwtoken.fido.session import PinSource, client_pin, ctap2, pin_error

ALGORITHMS = {"es256": -7, "eddsa": -8}
UV_CHOICES = ("required", "preferred", "discouraged")
SALT_LEN = 32


class _Interaction(UserInteraction):
    """Asks ``pin`` for the PIN once, only if the client needs it; reports touches."""

    def __init__(self, pin: PinSource | None, on_touch: Callable[[], None] | None) -> None:
        self._pin_source = pin
        self._pin: str | None = None
        self._on_touch = on_touch

    def prompt_up(self) -> None:
        if self._on_touch is not None:
            self._on_touch()

    def request_pin(self, permissions: ClientPin.PERMISSION, rp_id: str | None) -> str | None:
        if self._pin is None and self._pin_source is not None:
            self._pin = self._pin_source()
        return self._pin


def _client(device: CtapDevice, rp_id: str, pin: PinSource | None,
            on_touch: Callable[[], None] | None) -> Fido2Client:
    extensions = [HmacSecretExtension(allow_hmac_secret=True), CredProtectExtension(),
                  CredPropsExtension()]
    return Fido2Client(device, DefaultClientDataCollector(f"https://{rp_id}"),
                       _Interaction(pin, on_touch), extensions)


def check_rp_id(rp_id: str) -> str:
    """An RP ID is a host name (``example.com``), not a URL."""
    rp_id = rp_id.strip().lower()
    if not rp_id or "/" in rp_id or ":" in rp_id or " " in rp_id:
        raise InvalidInput(f"invalid RP ID {rp_id!r}: give a domain name such as example.com")
    return rp_id


def _uv(choice: str, device: CtapDevice) -> UserVerificationRequirement:
    """``preferred`` on a key without PIN or built-in UV means "don't ask" (as browsers do)."""
    if choice not in UV_CHOICES:
        raise InvalidInput(f"--uv must be one of {', '.join(UV_CHOICES)}")
    uv = UserVerificationRequirement(choice)
    options = ctap2(device).info.options
    configured = options.get("clientPin") or options.get("uv")
    if uv == UserVerificationRequirement.PREFERRED and not configured:
        uv = UserVerificationRequirement.DISCOURAGED
    if uv == UserVerificationRequirement.REQUIRED and not configured:
        raise InvalidInput("--uv required needs user verification on the key: set a PIN "
                           "first with `hwtoken fido2 pin set`")
    return uv


def _no_credential(exc: Exception) -> bool:
    cause = exc.cause if isinstance(exc, ClientError) else exc
    return isinstance(cause, CtapError) and cause.code == CtapError.ERR.NO_CREDENTIALS


def _fail(exc: Exception, context: str, device: CtapDevice | None = None) -> HwtokenError:
    cause = exc.cause if isinstance(exc, ClientError) else exc
    if (device is not None and isinstance(cause, CtapError)
            and cause.code == CtapError.ERR.PIN_INVALID):
        return pin_error(client_pin(ctap2(device)), cause, context)
    if isinstance(exc, ClientError):
        return from_client(exc, context)
    if isinstance(exc, CtapError):
        return from_ctap(exc, context)
    return CheckFailed(f"{context}: {exc}")


@dataclass(frozen=True)
class Registration:
    """What :func:`register` returns: the credential to save and how it was attested."""

    credential: SavedCredential
    attestation_format: str
    attestation_type: str
    user_verified: bool

    def to_dict(self) -> dict[str, Any]:
        return {**self.credential.to_dict(), "attestation": {
            "format": self.attestation_format, "type": self.attestation_type,
            "verified": True}, "user_verified": self.user_verified}


def register(device: CtapDevice, rp_id: str, user_name: str, *, resident: bool = False,
             uv: str = "preferred", algorithm: str = "es256", pin: PinSource | None = None,
             on_touch: Callable[[], None] | None = None,
             display_name: str | None = None) -> Registration:
    """Create a credential for ``user_name`` at ``rp_id`` and verify it as an RP would.

    The attestation statement is checked (signature over the authenticator data and
    client data, certificate fields) by fido2's attestation verifiers through
    ``Fido2Server``; the trust path is reported, not checked against a metadata service.
    """
    rp_id = check_rp_id(rp_id)
    if not user_name:
        raise InvalidInput("--user must not be empty")
    if algorithm not in ALGORITHMS:
        raise InvalidInput(f"--algorithm must be one of {', '.join(ALGORITHMS)}")
    requirement = _uv(uv, device)
    info = ctap2(device).info
    attested: dict[str, Any] = {}

    def verify_attestation(obj: AttestationObject, client_data_hash: bytes) -> None:
        result = Attestation.for_type(obj.fmt)().verify(obj.att_stmt, obj.auth_data,
                                                         client_data_hash)
        attested["format"] = obj.fmt
        attested["type"] = AttestationType(result.attestation_type).name.lower()

    server = Fido2Server({"id": rp_id, "name": rp_id},
                         attestation=AttestationConveyancePreference.DIRECT,
                         verify_attestation=verify_attestation)
    server.allowed_algorithms = [PublicKeyCredentialParameters(
        type=PublicKeyCredentialType.PUBLIC_KEY, alg=ALGORITHMS[algorithm])]
    extensions = {"hmacCreateSecret": True} if "hmac-secret" in info.extensions else None
    user = {"id": os.urandom(16), "name": user_name, "displayName": display_name or user_name}
    options, state = server.register_begin(
        user,
        resident_key_requirement=(ResidentKeyRequirement.REQUIRED if resident
                                  else ResidentKeyRequirement.DISCOURAGED),
        user_verification=requirement, extensions=extensions)
    client = _client(device, rp_id, pin, on_touch)
    try:
        response = client.make_credential(options.public_key)
    except (ClientError, CtapError) as exc:
        raise _fail(exc, "registration failed", device) from None
    try:
        auth_data = server.register_complete(state, response)
    except Exception as exc:
        raise CheckFailed(f"registration rejected by the relying party check: {exc}") from None
    cred_data = auth_data.credential_data
    assert cred_data is not None  # register_complete guarantees it
    ext = response.client_extension_results
    credential = SavedCredential(
        rp_id=rp_id, rp_name=rp_id, user_name=user_name, user_id=user["id"],
        user_display_name=user["displayName"], credential_id=cred_data.credential_id,
        public_key=cbor.encode(dict(cred_data.public_key)), aaguid=str(cred_data.aaguid),
        sign_count=auth_data.counter, resident=resident, algorithm=algorithm,
        hmac_secret=bool(getattr(ext, "hmac_create_secret", False)))
    return Registration(credential, attested.get("format", "none"),
                        attested.get("type", "none"), auth_data.is_user_verified())


@dataclass(frozen=True)
class Assertion:
    """What :func:`authenticate` returns: the credential with its new counter, and more."""

    credential: SavedCredential
    previous_count: int
    user_verified: bool
    hmac_output: bytes | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"verified": True, "rp_id": self.credential.rp_id,
                "user": self.credential.user_name,
                "credential_id": websafe_encode(self.credential.credential_id),
                "sign_count": self.credential.sign_count,
                "previous_sign_count": self.previous_count,
                "user_verified": self.user_verified}


Lookup = Callable[[str, bytes], SavedCredential | None]


def _default_lookup(rp_id: str, credential_id: bytes) -> SavedCredential | None:
    found = credfile.find_saved(rp_id, credential_id)
    return found[1] if found else None


def authenticate(device: CtapDevice, rp_id: str, credential: SavedCredential | None = None,
                 *, uv: str = "preferred", pin: PinSource | None = None,
                 on_touch: Callable[[], None] | None = None, user_name: str | None = None,
                 hmac_salt: bytes | None = None,
                 lookup: Lookup = _default_lookup) -> Assertion:
    """Get an assertion for ``rp_id`` and verify it with ``Fido2Server``.

    With ``credential``, only that credential may answer; without, the key picks a
    discoverable credential, whose public key is found with ``lookup`` (by default among
    the files ``register`` saved). The sign counter must rise. Raises
    :class:`CheckFailed` when the key has no such credential or the signature, RP or
    counter do not check out.
    """
    rp_id = check_rp_id(rp_id)
    requirement = _uv(uv, device)
    if hmac_salt is not None and len(hmac_salt) != SALT_LEN:
        raise InvalidInput(f"the hmac-secret salt must be {SALT_LEN} bytes "
                           f"({2 * SALT_LEN} hex digits)")
    server = Fido2Server({"id": rp_id, "name": rp_id})
    allow = None
    if credential is not None:
        allow = [PublicKeyCredentialDescriptor(type=PublicKeyCredentialType.PUBLIC_KEY,
                                               id=credential.credential_id)]
    extensions = {"hmacGetSecret": {"salt1": hmac_salt}} if hmac_salt is not None else None
    options, state = server.authenticate_begin(allow, user_verification=requirement,
                                               extensions=extensions)
    client = _client(device, rp_id, pin, on_touch)
    try:
        selection = client.get_assertion(options.public_key)
    except (ClientError, CtapError) as exc:
        err = _fail(exc, "authentication failed", device)
        if credential is not None and _no_credential(exc):
            where = (f"registered for RP {credential.rp_id!r}, not {rp_id!r}"
                     if credential.rp_id != rp_id else "wrong or tampered credential ID?")
            err = CheckFailed(f"authentication failed: the key does not hold this credential "
                              f"for {rp_id} ({where})")
        raise err from None

    chosen = None
    for index, assertion in enumerate(selection.get_assertions()):
        cred_id = (assertion.credential or {}).get("id") or (
            credential.credential_id if credential else None)
        if credential is not None:
            saved: SavedCredential | None = credential
        else:
            saved = lookup(rp_id, cred_id) if cred_id else None
        if saved is None:
            continue
        if user_name is not None and saved.user_name != user_name:
            continue
        chosen = (index, saved)
        break
    if chosen is None:
        if credential is None:
            raise CheckFailed(f"the key answered with a discoverable credential for {rp_id} "
                              "whose public key was never saved here; pass --cred FILE")
        raise CheckFailed("the key answered with a different credential")
    index, saved = chosen
    response = selection.get_response(index)
    if credential is not None and response.raw_id != credential.credential_id:
        raise CheckFailed("the key answered with a different credential")
    try:
        server.authenticate_complete(state, [saved.attested], response)
    except Exception as exc:
        if saved.rp_id != rp_id:
            raise CheckFailed(f"authentication failed: the credential was registered for RP "
                              f"{saved.rp_id!r}, not {rp_id!r}") from None
        raise CheckFailed(f"authentication failed: {exc} (tampered credential file or a "
                          "different key?)") from None
    if saved.rp_id != rp_id:
        raise CheckFailed(f"authentication failed: the credential was registered for RP "
                          f"{saved.rp_id!r}, not {rp_id!r}")
    auth_data = response.response.authenticator_data
    new_count = auth_data.counter
    if (new_count or saved.sign_count) and new_count <= saved.sign_count:
        raise CheckFailed(f"sign counter did not rise (saved {saved.sign_count}, key sent "
                          f"{new_count}): the credential may have been cloned")
    output = None
    if hmac_salt is not None:
        got = getattr(response.client_extension_results, "hmac_get_secret", None)
        if got is None:
            raise CheckFailed("the key returned no hmac-secret output (was the credential "
                              "registered with hmac-secret?)")
        output = bytes(got.output1)
    return Assertion(saved.with_count(new_count), saved.sign_count,
                     auth_data.is_user_verified(), output)


def hmac_secret(device: CtapDevice, credential: SavedCredential, salt: bytes, *,
                pin: PinSource | None = None, uv: str = "discouraged",
                on_touch: Callable[[], None] | None = None) -> Assertion:
    """The hmac-secret output of ``credential`` for ``salt`` (32 bytes), with a verified
    assertion (so the counter is checked and advanced like :func:`authenticate`)."""
    return authenticate(device, credential.rp_id, credential, uv=uv, pin=pin,
                        on_touch=on_touch, hmac_salt=salt)


def cose_algorithm_name(public_key: bytes) -> str:
    """``es256``/``eddsa``/... for a CBOR COSE key."""
    alg = CoseKey.parse(cbor.decode(public_key)).ALGORITHM
    names = {v: k for k, v in ALGORITHMS.items()}
    return names.get(alg, str(alg))
