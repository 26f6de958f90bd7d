"""Turn fido2's exceptions into :mod:`hwtoken.errors` with a message that says what to do."""

from __future__ import annotations

from fido2.client import ClientError
from fido2.ctap import CtapError

from hwtoken.errors import CheckFailed, DeviceError, HwtokenError, InvalidInput

_ERR = CtapError.ERR

# CTAP status -> (exception class, message). Messages name the fix where there is one.
_CTAP_MESSAGES: dict[int, tuple[type[HwtokenError], str]] = {
    _ERR.PIN_INVALID: (CheckFailed, "wrong PIN"),
    _ERR.PIN_BLOCKED: (DeviceError, "the PIN is blocked (no retries left); only a reset "
                                    "(`hwtoken fido2 reset`) makes the key usable again"),
    _ERR.PIN_AUTH_BLOCKED: (DeviceError, "too many wrong PINs in a row: unplug the key and "
                                         "plug it in again, then retry"),
    _ERR.PIN_NOT_SET: (InvalidInput, "the key has no PIN: set one with `hwtoken fido2 pin set`"),
    _ERR.PUAT_REQUIRED: (InvalidInput, "the key requires a PIN: set HWTOKEN_PIN or enter it "
                                       "when asked"),
    _ERR.PIN_POLICY_VIOLATION: (InvalidInput, "the new PIN does not meet the key's policy "
                                              "(too short, too long or not allowed)"),
    _ERR.PIN_AUTH_INVALID: (CheckFailed, "the key rejected the PIN token; retry"),
    _ERR.PIN_TOKEN_EXPIRED: (CheckFailed, "the PIN token expired; retry"),
    _ERR.NO_CREDENTIALS: (CheckFailed, "the key has no matching credential"),
    _ERR.CREDENTIAL_EXCLUDED: (CheckFailed, "the key already holds a credential for this "
                                            "account"),
    _ERR.OPERATION_DENIED: (CheckFailed, "the user denied the request (no touch)"),
    _ERR.USER_ACTION_TIMEOUT: (CheckFailed, "timed out waiting for a touch"),
    _ERR.ACTION_TIMEOUT: (CheckFailed, "timed out waiting for a touch"),
    _ERR.KEEPALIVE_CANCEL: (CheckFailed, "the operation was cancelled"),
    _ERR.NOT_ALLOWED: (DeviceError, "the key refused the operation"),
    _ERR.UNSUPPORTED_ALGORITHM: (InvalidInput, "the key does not support this algorithm"),
    _ERR.UNSUPPORTED_OPTION: (InvalidInput, "the key does not support this option"),
    _ERR.UP_REQUIRED: (CheckFailed, "the key needs a touch for this"),
    _ERR.KEY_STORE_FULL: (DeviceError, "the key has no room for more discoverable "
                                       "credentials: delete some with `hwtoken fido2 creds "
                                       "delete`"),
    _ERR.CHANNEL_BUSY: (DeviceError, "the key is busy with another program; retry"),
}


def from_ctap(exc: CtapError, context: str = "") -> HwtokenError:
    """The :class:`HwtokenError` for a CTAP error status."""
    cls, message = _CTAP_MESSAGES.get(
        exc.code, (DeviceError, f"the key answered {_name(exc)}"))
    return cls(f"{context}: {message}" if context else message)


def from_client(exc: ClientError, context: str = "") -> HwtokenError:
    """The :class:`HwtokenError` for a ``fido2.client.ClientError``."""
    if isinstance(exc.cause, CtapError):
        return from_ctap(exc.cause, context)
    cause = f" ({exc.cause})" if exc.cause else ""
    if exc.code == ClientError.ERR.TIMEOUT:
        err: HwtokenError = CheckFailed("timed out waiting for the key" + cause)
    elif exc.code == ClientError.ERR.DEVICE_INELIGIBLE:
        err = CheckFailed("the key has no matching credential" + cause)
    elif exc.code in (ClientError.ERR.BAD_REQUEST, ClientError.ERR.CONFIGURATION_UNSUPPORTED):
        err = InvalidInput(f"the key cannot do this{cause}")
    else:
        err = DeviceError(f"the FIDO client failed{cause}")
    if context:
        err = type(err)(f"{context}: {err}")
    return err


def translate(exc: BaseException, context: str = "") -> HwtokenError | None:
    """Map any fido2 exception to a :class:`HwtokenError`; None if it is not one of them."""
    if isinstance(exc, HwtokenError):
        return exc
    if isinstance(exc, CtapError):
        return from_ctap(exc, context)
    if isinstance(exc, ClientError):
        return from_client(exc, context)
    return None


def _name(exc: CtapError) -> str:
    code = exc.code
    name = getattr(code, "name", None)
    return f"{name} (0x{int(code):02x})" if name else f"error 0x{int(code):02x}"
