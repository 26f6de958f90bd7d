"""Shared plumbing over ``fido2.ctap2``: the CTAP2 session, PIN sources and PIN tokens."""

from __future__ import annotations

from collections.abc import Callable

from fido2.ctap import CtapDevice, CtapError
from fido2.ctap2 import Ctap2
from fido2.ctap2.pin import ClientPin

from hwtoken.errors import DeviceError, HwtokenError, InvalidInput
from hwtoken.fido.errors import from_ctap

PinSource = Callable[[], str | None]
"""Called when a PIN is needed (so no prompt appears when none is); None means "no PIN"."""


def ctap2(device: CtapDevice) -> Ctap2:
    """A CTAP2 session on ``device``; :class:`DeviceError` for a U2F-only key."""
    try:
        return Ctap2(device)
    except ValueError:
        raise DeviceError("this key speaks only U2F (CTAP1), not FIDO2") from None
    except CtapError as exc:
        raise from_ctap(exc, "getInfo failed") from None


def client_pin(ctap: Ctap2) -> ClientPin:
    """The clientPIN API; :class:`DeviceError` if the key has none."""
    if not ClientPin.is_supported(ctap.info):
        raise DeviceError("this key does not support a PIN")
    return ClientPin(ctap)


def pin_is_set(ctap: Ctap2) -> bool:
    return bool(ctap.info.options.get("clientPin"))


def require_pin_set(ctap: Ctap2) -> None:
    """:class:`InvalidInput` unless the key has a PIN."""
    if not pin_is_set(ctap):
        raise InvalidInput("the key has no PIN: set one first with `hwtoken fido2 pin set`")


def require_pin(source: PinSource | None, what: str) -> str:
    """Ask ``source`` for the PIN; :class:`InvalidInput` if it gives none."""
    pin = source() if source is not None else None
    if not pin:
        raise InvalidInput(f"{what} needs the key's PIN: set HWTOKEN_PIN or enter it when asked")
    return pin


def pin_token(ctap: Ctap2, source: PinSource | None, permissions: ClientPin.PERMISSION,
              rp_id: str | None = None, what: str = "this") -> tuple[ClientPin, bytes]:
    """A PIN/UV auth token with ``permissions`` (the PIN comes from ``source``)."""
    cp = client_pin(ctap)
    require_pin_set(ctap)
    pin = require_pin(source, what)
    try:
        return cp, cp.get_pin_token(pin, permissions, rp_id)
    except CtapError as exc:
        raise pin_error(cp, exc) from None


def pin_error(cp: ClientPin, exc: CtapError, context: str = "") -> HwtokenError:
    """The error for a failed PIN use, saying how many tries are left after a wrong PIN."""
    err = from_ctap(exc, context)
    if exc.code == CtapError.ERR.PIN_INVALID:
        try:
            left, _ = cp.get_pin_retries()
            err = type(err)(f"{err} ({left} {'try' if left == 1 else 'tries'} left)")
        except CtapError:
            pass
    return err


def check_pin(ctap: Ctap2, pin: str) -> None:
    """Verify ``pin`` by getting a token with it; :class:`CheckFailed` if wrong."""
    cp = client_pin(ctap)
    require_pin_set(ctap)
    try:
        # A token without permissions (legacy command) proves the PIN and nothing more.
        cp.get_pin_token(pin)
    except CtapError as exc:
        raise pin_error(cp, exc) from None


def validate_new_pin(ctap: Ctap2, pin: str) -> None:
    """Length checks the key would make, with a clearer message (counted in code points)."""
    minimum = ctap.info.min_pin_length or 4
    maximum = min(63, ctap.info.max_pin_length or 63)
    if len(pin) < minimum:
        raise InvalidInput(f"the new PIN is too short: the key needs at least {minimum} "
                           "characters")
    if len(pin.encode()) > maximum:
        raise InvalidInput(f"the new PIN is too long: at most {maximum} bytes")
