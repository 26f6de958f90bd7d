"""The key's PIN: set, change, verify, and how many retries are left."""

from __future__ import annotations

from dataclasses import dataclass

from fido2.ctap import CtapDevice, CtapError

from hwtoken.errors import InvalidInput
from hwtoken.fido.errors import from_ctap
from hwtoken.fido.session import (
    check_pin,
    client_pin,
    ctap2,
    pin_error,
    pin_is_set,
    validate_new_pin,
)


@dataclass(frozen=True)
class PinStatus:
    """Whether a PIN is set, tries left, and whether a power cycle is needed first."""

    pin_set: bool
    retries: int | None
    power_cycle_required: bool = False

    def to_dict(self) -> dict[str, object]:
        return {"pin_set": self.pin_set, "retries": self.retries,
                "power_cycle_required": self.power_cycle_required}


def status(device: CtapDevice) -> PinStatus:
    """PIN state and retries (no PIN needed; retries are None while no PIN is set, since
    keys such as YubiKeys answer PIN_NOT_SET then)."""
    ctap = ctap2(device)
    cp = client_pin(ctap)
    if not pin_is_set(ctap):
        return PinStatus(False, None)
    try:
        retries, power_cycle = cp.get_pin_retries()
    except CtapError as exc:
        raise from_ctap(exc, "cannot read the PIN retries") from None
    return PinStatus(True, retries, bool(power_cycle))


def set_pin(device: CtapDevice, new_pin: str) -> None:
    """Set the first PIN; :class:`InvalidInput` if one is set already."""
    ctap = ctap2(device)
    cp = client_pin(ctap)
    if pin_is_set(ctap):
        raise InvalidInput("the key already has a PIN: use `hwtoken fido2 pin change`")
    validate_new_pin(ctap, new_pin)
    try:
        cp.set_pin(new_pin)
    except CtapError as exc:
        raise from_ctap(exc, "cannot set the PIN") from None


def change_pin(device: CtapDevice, old_pin: str, new_pin: str) -> None:
    """Change the PIN; :class:`hwtoken.errors.CheckFailed` if ``old_pin`` is wrong."""
    ctap = ctap2(device)
    if not pin_is_set(ctap):
        raise InvalidInput("the key has no PIN yet: use `hwtoken fido2 pin set`")
    validate_new_pin(ctap, new_pin)
    cp = client_pin(ctap)
    try:
        cp.change_pin(old_pin, new_pin)
    except CtapError as exc:
        raise pin_error(cp, exc) from None


def verify_pin(device: CtapDevice, pin: str) -> PinStatus:
    """Check ``pin``; :class:`hwtoken.errors.CheckFailed` (with tries left) if wrong."""
    ctap = ctap2(device)
    check_pin(ctap, pin)
    return status(device)
