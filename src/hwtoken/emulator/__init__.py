"""The virtual key: a software YubiKey 5 (FIDO2/U2F, OTP slots, OATH, PIV, management).

Applets are pure protocol logic (bytes in, bytes out); transports carry their bytes.
Heavy parts are imported lazily: ``from hwtoken.emulator import VirtualKey`` is cheap.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hwtoken.emulator.key import VirtualKey
from hwtoken.emulator.presence import (
    ApproveAfterDelay,
    ApproveAlways,
    AskCallback,
    Decision,
    DenyAlways,
    Finger,
    FingerCallback,
    UserPresence,
)

if TYPE_CHECKING:  # pragma: no cover
    from fido2.hid import CtapHidDevice
    from fido2.hid.base import CtapHidConnection, HidDescriptor

__all__ = [
    "VirtualKey",
    "UserPresence",
    "Decision",
    "ApproveAlways",
    "DenyAlways",
    "ApproveAfterDelay",
    "AskCallback",
    "Finger",
    "FingerCallback",
    "hid_descriptor",
    "open_hid_connection",
    "fido_device",
    "register_with_fido2_hid",
    "unregister_from_fido2_hid",
    "registered_with_fido2_hid",
    "simulate_replug",
    "set_pin",
    "create_key",
    "attestation_root_pem",
]


def __getattr__(name: str) -> Any:
    """fido2.hid discovery helpers, imported on first use (they import fido2)."""
    if name in ("register_with_fido2_hid", "unregister_from_fido2_hid",
                "registered_with_fido2_hid", "simulate_replug"):
        from hwtoken.emulator.transports import fido_hid

        return getattr(fido_hid, name)
    raise AttributeError(f"module 'hwtoken.emulator' has no attribute {name!r}")


def hid_descriptor(key: VirtualKey) -> HidDescriptor:
    """A ``fido2.hid.base.HidDescriptor`` describing ``key``'s FIDO HID interface."""
    from hwtoken.emulator.transports.fido_hid import hid_descriptor as _f

    return _f(key)


def open_hid_connection(key: VirtualKey) -> CtapHidConnection:
    """A ``fido2.hid.base.CtapHidConnection`` carrying 64-byte reports into ``key``."""
    from hwtoken.emulator.transports.fido_hid import open_hid_connection as _f

    return _f(key)


def fido_device(key: VirtualKey, **kwargs: Any) -> CtapHidDevice:
    """A ``fido2.hid.CtapHidDevice`` on :func:`open_hid_connection` for ``key``."""
    from hwtoken.emulator.transports.fido_hid import fido_device as _f

    return _f(key, **kwargs)


def set_pin(key: VirtualKey, pin: str) -> None:
    """Give ``key`` its first FIDO2 PIN the way a client does (clientPIN setPIN through
    CTAPHID): :class:`hwtoken.errors.InvalidInput` if it is too short or too long, or the
    key has a PIN already; :class:`hwtoken.errors.DeviceError` for a U2F-only key."""
    from hwtoken.fido.pin import set_pin as set_first_pin

    device = fido_device(key)
    try:
        set_first_pin(device, pin)
    finally:
        device.close()


def create_key(path: str | os.PathLike[str], *, pin: str | None = None,
               **options: Any) -> VirtualKey:
    """:meth:`VirtualKey.create` (``options``: ``serial``, ``profile``, ``aaguid`` ...),
    then :func:`set_pin` when ``pin`` is given; a PIN the key refuses leaves no key."""
    from hwtoken.emulator.key import lock_path

    key = VirtualKey.create(path, **options)
    if pin is None:
        return key
    try:
        set_pin(key, pin)
    except BaseException:
        key.close()
        for made in (Path(path), lock_path(path)):
            made.unlink(missing_ok=True)
        raise
    return key


def attestation_root_pem(key: VirtualKey) -> str:
    """The PEM certificate ``key``'s FIDO attestations chain up to: what a relying party
    trusts (:class:`hwtoken.fido.trust.TrustedRoots`, or any verifier that takes a PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from hwtoken.emulator.applets.fido.attestation import attestation_root

    return x509.load_der_x509_certificate(attestation_root(key)).public_bytes(
        Encoding.PEM).decode()
