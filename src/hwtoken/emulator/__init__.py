"""The virtual key: a software YubiKey 5 (FIDO2/U2F, OTP slots, OATH, PIV, management).

Applets are pure protocol logic (bytes in, bytes out); transports carry their bytes.
Heavy parts are imported lazily: ``from hwtoken.emulator import VirtualKey`` is cheap.
"""

from __future__ import annotations

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
