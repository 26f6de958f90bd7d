"""Step 3: does the key hold the secret? Ask the key, compute the expected value, compare."""

from __future__ import annotations

import hmac
import secrets
import time
from hashlib import sha1

from hwtoken.otp import hotp_code
from hwtoken.provision.model import HOTP_LOOK_AHEAD, OATH_PERIOD, Mode, Spec
from hwtoken.provision.protocol import KeyConnection, NotProgrammed

CHALLENGE_SIZE = 32


def check(conn: KeyConnection, spec: Spec, secret: bytes, counter: int) -> int | None:
    """The next HOTP counter (``counter`` unchanged for other modes) if the key proved it
    holds ``secret``; None if it answered something else or has nothing programmed.

    HOTP keys are asked for one code, matched against the counters ``counter`` ..
    ``counter + HOTP_LOOK_AHEAD`` (a crash may have happened after earlier checks).
    """
    try:
        if spec.mode is Mode.CHALRESP:
            challenge = secrets.token_bytes(CHALLENGE_SIZE)
            got = conn.calculate(spec, challenge)
            want = hmac.new(secret, challenge, sha1).digest()
            return counter if isinstance(got, bytes) and hmac.compare_digest(got, want) else None
        if spec.mode is Mode.OATH_TOTP:
            now = int(time.time())
            got = conn.calculate(spec, now)
            want_s = hotp_code(secret, now // OATH_PERIOD, spec.digits)
            return counter if _same(got, want_s) else None
        got = conn.calculate(spec, None)
        for c in range(counter, counter + HOTP_LOOK_AHEAD + 1):
            if _same(got, hotp_code(secret, c, spec.digits)):
                return c + 1
        return None
    except NotProgrammed:
        return None


def _same(got: bytes | str, want: str) -> bool:
    if isinstance(got, bytes):
        got = got.decode("ascii", "replace")
    return hmac.compare_digest(got.strip().encode(), want.encode())
