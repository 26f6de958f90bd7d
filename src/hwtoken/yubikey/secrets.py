"""Parsing and making the secrets an OTP slot holds (HMAC keys, access codes)."""

from __future__ import annotations

import hashlib
import secrets as _random

from hwtoken.errors import InvalidInput

HMAC_KEY_SIZE = 20
ACCESS_CODE_SIZE = 6


def fit_hmac_key(key: bytes) -> bytes:
    """A key as a slot stores it: 20 bytes (zero padding keeps the HMAC identical).

    Keys longer than the SHA-1 block (64 bytes) are hashed first, as HMAC itself does;
    keys of 21..64 bytes cannot be stored.
    """
    if len(key) > 64:
        key = hashlib.sha1(key).digest()  # noqa: S324 - what HMAC-SHA1 does with long keys
    if len(key) > HMAC_KEY_SIZE:
        raise InvalidInput(f"a slot holds HMAC keys of at most {HMAC_KEY_SIZE} bytes "
                           f"(or more than 64); this one has {len(key)}")
    if not key:
        raise InvalidInput("the secret is empty")
    return key.ljust(HMAC_KEY_SIZE, b"\0")


def parse_b32_secret(text: str, *, allow_weak: bool = False) -> bytes:
    """Decode a base32 secret (spaces, dashes, lower case and missing padding allowed) into
    a 20-byte slot key, with :func:`hwtoken.otp.decode_secret`. Under 80 bits it is
    refused unless ``allow_weak``."""
    from hwtoken.otp import check_strength, decode_secret

    try:
        raw = decode_secret(text)
    except InvalidInput as exc:
        if not str(exc).startswith("secret is empty"):
            raise InvalidInput("the secret is not valid base32 (letters A-Z and digits 2-7)"
                               ) from None
        raw = b""  # fit_hmac_key names the problem
    if raw:
        check_strength(raw, allow_weak=allow_weak)
    return fit_hmac_key(raw)


def parse_hex_secret(text: str, *, allow_weak: bool = False) -> bytes:
    """Decode a hex secret (spaces allowed) into a 20-byte slot key (under 80 bits it is
    refused unless ``allow_weak``)."""
    from hwtoken.otp import check_strength

    try:
        raw = bytes.fromhex("".join(text.split()))
    except ValueError:
        raise InvalidInput("the secret is not valid hex") from None
    if raw:
        check_strength(raw, allow_weak=allow_weak)
    return fit_hmac_key(raw)


def parse_access_code(text: str | None) -> bytes | None:
    """A 6-byte access code from 12 hex digits (None stays None)."""
    if text is None:
        return None
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raw = b""
    if len(raw) != ACCESS_CODE_SIZE:
        raise InvalidInput("an access code is 6 bytes: give 12 hex digits, e.g. 0102030a0b0c")
    return raw


def generate_secret() -> bytes:
    """A fresh random 20-byte HMAC-SHA1 key."""
    return _random.token_bytes(HMAC_KEY_SIZE)
