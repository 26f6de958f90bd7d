"""Factory reset: erases every credential and the PIN.

A key accepts reset only within about 10 seconds of being plugged in, and only with a
touch, so that malware cannot wipe a key that sits in its port. :func:`reset` therefore
asks for a re-plug first (a virtual key in this process is power-cycled instead).
"""

from __future__ import annotations

from collections.abc import Callable

from fido2.ctap import CtapError

from hwtoken.errors import DeviceError
from hwtoken.fido.device import FidoKey
from hwtoken.fido.errors import from_ctap
from hwtoken.fido.session import ctap2

REPLUG_TIMEOUT = 60.0


def reset(key: FidoKey, *, replug: bool = True,
          say: Callable[[str], None] = lambda _m: None) -> None:
    """Reset ``key``; with ``replug`` first re-plug it so the reset window is open."""
    if replug and key.can_replug:
        usb = key.entry.kind == "usb"
        if usb:
            say("Remove the key now, then insert it again (within 60 s)...")
        key.replug(REPLUG_TIMEOUT,
                   removed=lambda: say("Removed: insert it again...") if usb else None)
        if key.entry.kind == "usb":
            say("Touch the key to confirm the reset...")
    try:
        ctap2(key.device).reset()
    except CtapError as exc:
        if exc.code == CtapError.ERR.NOT_ALLOWED:
            hint = "unplug it, plug it in again and run this within 10 s"
            raise DeviceError(f"the key refused the reset: it only allows one within 10 s "
                              f"of power-up; {hint}") from None
        raise from_ctap(exc, "reset failed") from None
