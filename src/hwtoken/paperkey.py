"""One-time paper recovery keys: shown once, stored only as a salted slow hash.

A key is 64 symbols from a 32-symbol alphabet without look-alikes (no 0/O, 1/I), i.e.
320 random bits. What you store is :func:`hash_key`'s self-describing string::

    $scrypt$ln=15,r=8,p=1$<salt, base64>$<hash, base64>

:func:`check` accepts the key typed back with any case, spaces and dashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from hwtoken.errors import InvalidInput

ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # 32 symbols: no 0, 1, I, O
LENGTH = 64
GROUP = 4
SCRYPT_LN = 15  # n = 2**15: ~40 ms and 32 MiB per check
SCRYPT_R = 8
SCRYPT_P = 1
_MAX_LN = 20

__all__ = ["ALPHABET", "PaperKey", "new", "check", "hash_key", "normalise", "group"]


@dataclass(frozen=True)
class PaperKey:
    """A freshly made key and the hash to store. Show ``key`` once; keep only ``hash``."""

    key: str
    hash: str

    @property
    def grouped(self) -> str:
        return group(self.key)

    def __repr__(self) -> str:  # never leak the key through a repr or a log line
        return f"PaperKey(key=<hidden>, hash={self.hash!r})"


def group(key: str, size: int = GROUP) -> str:
    """``ABCD-EFGH-...`` for reading and writing down."""
    return "-".join(key[i:i + size] for i in range(0, len(key), size))


def normalise(text: str) -> str:
    """Drop spaces and dashes, upper-case; :class:`InvalidInput` for foreign symbols."""
    cleaned = "".join(ch for ch in text.upper() if ch not in " -\t\r\n")
    bad = {ch for ch in cleaned if ch not in ALPHABET}
    if bad:
        raise InvalidInput(f"paper key contains {len(bad)} symbol(s) that are not in its alphabet "
                           "(it never uses 0, 1, I or O)")
    if len(cleaned) != LENGTH:
        raise InvalidInput(f"paper key must have {LENGTH} symbols, got {len(cleaned)}")
    return cleaned


def _scrypt(key: str, salt: bytes, ln: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(key.encode(), salt=salt, n=2**ln, r=r, p=p,
                          maxmem=129 * r * p * 2**ln + 2**24, dklen=32)


def hash_key(key: str, *, ln: int = SCRYPT_LN) -> str:
    """The storable hash of ``key`` with a fresh 16-byte salt."""
    key = normalise(key)
    salt = secrets.token_bytes(16)
    digest = _scrypt(key, salt, ln, SCRYPT_R, SCRYPT_P)
    b64 = lambda b: base64.b64encode(b).decode().rstrip("=")  # noqa: E731
    return f"$scrypt$ln={ln},r={SCRYPT_R},p={SCRYPT_P}${b64(salt)}${b64(digest)}"


def new(*, ln: int = SCRYPT_LN) -> PaperKey:
    """A new random key and its hash."""
    key = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    return PaperKey(key, hash_key(key, ln=ln))


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def parse_hash(stored: str) -> tuple[int, int, int, bytes, bytes]:
    """(ln, r, p, salt, digest) of a stored hash; :class:`InvalidInput` if malformed."""
    parts = stored.strip().split("$")
    if len(parts) != 5 or parts[0] != "" or parts[1] != "scrypt":
        raise InvalidInput("not a paper key hash: expected $scrypt$ln=..,r=..,p=..$salt$hash")
    try:
        params = dict(kv.split("=", 1) for kv in parts[2].split(","))
        ln, r, p = int(params["ln"]), int(params["r"]), int(params["p"])
        salt, digest = _b64decode(parts[3]), _b64decode(parts[4])
    except (ValueError, KeyError):
        raise InvalidInput("paper key hash is malformed") from None
    if not (1 <= ln <= _MAX_LN and 1 <= r <= 32 and 1 <= p <= 16) or len(salt) < 8 or not digest:
        raise InvalidInput("paper key hash has out-of-range parameters")
    return ln, r, p, salt, digest


def check(key: str, stored: str) -> bool:
    """True if ``key`` (any case, spaces and dashes allowed) matches the stored hash."""
    ln, r, p, salt, digest = parse_hash(stored)
    try:
        cleaned = normalise(key)
    except InvalidInput:
        return False
    return hmac.compare_digest(_scrypt(cleaned, salt, ln, r, p), digest)
