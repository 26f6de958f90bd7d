"""What each mode generates and how a key proves it holds it: one :class:`ModeDriver` per
mode, looked up with :func:`driver_for`.

The runner asks the driver for a key's :class:`~hwtoken.provision.model.Material` (step 1)
and to check the key's own answer (step 3); it knows no mode itself. A new mode adds a
:class:`~hwtoken.provision.model.Mode` member (with its application), a driver registered
here, and a programmer whose connection reaches that application.
"""

from __future__ import annotations

import hmac
import secrets
import time
from hashlib import sha1
from typing import Protocol

from hwtoken.otp import hotp_code
from hwtoken.provision import yubiotp
from hwtoken.provision.fido import FidoPinDriver
from hwtoken.provision.model import (
    HOTP_LOOK_AHEAD,
    OATH_PERIOD,
    SECRET_LENGTH,
    Material,
    Mode,
    Spec,
)
from hwtoken.provision.piv import PivDriver
from hwtoken.provision.protocol import KeyConnection, NotProgrammed

CHALLENGE_SIZE = 32


class ModeDriver(Protocol):
    """One mode's secret material and its check."""

    def material(self, spec: Spec, serial: int) -> Material:
        """Fresh material for key ``serial`` (random secrets, public parameters)."""

    def check(self, conn: KeyConnection, spec: Spec, material: Material,
              counter: int) -> int | None:
        """The counter a validation server should expect next (``counter`` unchanged for
        modes without one) if the key proved it holds ``material``; None if it answered
        something else or has nothing programmed there. May raise
        :class:`~hwtoken.provision.protocol.CannotCheck`."""


def _same(got: bytes | str, want: str) -> bool:
    if isinstance(got, bytes):
        got = got.decode("ascii", "replace")
    return hmac.compare_digest(got.strip().encode(), want.encode())


class HmacChallenge:
    """``chalresp``: the key answers a random challenge with HMAC-SHA1."""

    def material(self, spec: Spec, serial: int) -> Material:
        return Material(secrets.token_bytes(SECRET_LENGTH))

    def check(self, conn: KeyConnection, spec: Spec, material: Material,
              counter: int) -> int | None:
        challenge = secrets.token_bytes(CHALLENGE_SIZE)
        got = conn.calculate(spec, challenge)
        want = hmac.new(material.secret, challenge, sha1).digest()
        return counter if isinstance(got, bytes) and hmac.compare_digest(got, want) else None


class Totp:
    """``oath-totp``: the key's code now equals the code computed from the secret."""

    def material(self, spec: Spec, serial: int) -> Material:
        return Material(secrets.token_bytes(SECRET_LENGTH))

    def check(self, conn: KeyConnection, spec: Spec, material: Material,
              counter: int) -> int | None:
        now = int(time.time())
        got = conn.calculate(spec, now)
        return counter if _same(got, hotp_code(material.secret, now // OATH_PERIOD,
                                                spec.digits)) else None


class Hotp:
    """``hotp``/``oath-hotp``: one code from the key, matched against the counters
    ``counter`` .. ``counter + HOTP_LOOK_AHEAD`` (a crash may have come after earlier
    checks); the next counter is the one after the match."""

    def material(self, spec: Spec, serial: int) -> Material:
        return Material(secrets.token_bytes(SECRET_LENGTH))

    def check(self, conn: KeyConnection, spec: Spec, material: Material,
              counter: int) -> int | None:
        got = conn.calculate(spec, None)
        for c in range(counter, counter + HOTP_LOOK_AHEAD + 1):
            if _same(got, hotp_code(material.secret, c, spec.digits)):
                return c + 1
        return None


class YubicoOtp:
    """``yubiotp``: a public ID (from the serial, or random), a random private ID and AES
    key; the key types an OTP that must decrypt under the key, with the CRC, private ID
    and public ID it was programmed with."""

    def material(self, spec: Spec, serial: int) -> Material:
        public_id = (yubiotp.serial_public_id(serial) if spec.public_id == "serial"
                     else yubiotp.random_public_id())
        return Material(secrets.token_bytes(yubiotp.SECRET_SIZE), {"public_id": public_id})

    def check(self, conn: KeyConnection, spec: Spec, material: Material,
              counter: int) -> int | None:
        got = conn.calculate(spec, None)
        text = got.decode("ascii", "replace") if isinstance(got, bytes) else got
        return counter if yubiotp.matches(text, material.params.get("public_id", ""),
                                          material.secret) else None


DRIVERS: dict[Mode, ModeDriver] = {
    Mode.CHALRESP: HmacChallenge(),
    Mode.HOTP: Hotp(),
    Mode.OATH_HOTP: Hotp(),
    Mode.OATH_TOTP: Totp(),
    Mode.YUBIOTP: YubicoOtp(),
    Mode.PIV: PivDriver(),
    Mode.FIDO: FidoPinDriver(),
}


def driver_for(mode: Mode) -> ModeDriver:
    return DRIVERS[mode]


def check(conn: KeyConnection, spec: Spec, material: Material, counter: int) -> int | None:
    """Step 3 for any mode: see :meth:`ModeDriver.check` (a key with nothing there: None)."""
    try:
        return driver_for(spec.mode).check(conn, spec, material, counter)
    except NotProgrammed:
        return None
