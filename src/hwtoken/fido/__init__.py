"""Host-side FIDO2: find keys, register and authenticate, PIN, credentials, reset.

Built on python-fido2 (``Fido2Client``, ``Fido2Server``, ``Ctap2``, ``ClientPin``,
``CredentialManagement``); works the same on USB keys and on virtual keys (``emu:NAME``).

    from hwtoken.fido import open_key, register, authenticate
    with open_key("emu:test") as key:
        reg = register(key.device, "example.com", "alice")
        authenticate(key.device, "example.com", reg.credential)
"""

from __future__ import annotations

from hwtoken.fido.credfile import SavedCredential
from hwtoken.fido.credfile import load as load_credential
from hwtoken.fido.credfile import save as save_credential
from hwtoken.fido.creds import delete_credential, list_credentials
from hwtoken.fido.device import FidoKey, KeyEntry, list_keys, open_key
from hwtoken.fido.info import KeyInfo, key_info
from hwtoken.fido.pin import change_pin, set_pin, verify_pin
from hwtoken.fido.pin import status as pin_status
from hwtoken.fido.reset import reset
from hwtoken.fido.webauthn import Assertion, Registration, authenticate, hmac_secret, register

__all__ = [
    "Assertion", "FidoKey", "KeyEntry", "KeyInfo", "Registration", "SavedCredential",
    "authenticate", "change_pin", "delete_credential", "hmac_secret", "key_info",
    "list_credentials", "list_keys", "load_credential", "open_key", "pin_status", "register",
    "reset", "save_credential", "set_pin", "verify_pin",
]
