"""Paper recovery keys: alphabet, hashing, tolerant checking."""

from __future__ import annotations

import pytest

from hwtoken import paperkey
from hwtoken.errors import InvalidInput


def test_round_trip_and_wrong_key_refused():
    k = paperkey.new(ln=10)
    assert len(k.key) == 64 and set(k.key) <= set(paperkey.ALPHABET)
    assert not set("01IO") & set(paperkey.ALPHABET) and len(set(paperkey.ALPHABET)) == 32
    assert paperkey.check(k.key, k.hash)
    assert paperkey.check(k.grouped.lower().replace("-", " - "), k.hash)
    wrong = ("A" if k.key[0] != "A" else "B") + k.key[1:]
    assert not paperkey.check(wrong, k.hash)
    assert not paperkey.check("short", k.hash)
    assert k.key not in repr(k) and k.key not in k.hash


def test_hash_is_salted_and_self_describing():
    k = paperkey.new(ln=10)
    h2 = paperkey.hash_key(k.key, ln=10)
    assert h2 != k.hash and h2.startswith("$scrypt$ln=10,r=8,p=1$")
    assert paperkey.check(k.key, h2)


@pytest.mark.parametrize("bad", ["", "$scrypt$", "$bcrypt$ln=1,r=8,p=1$AAAA$AAAA",
                                 "$scrypt$ln=40,r=8,p=1$AAAAAAAAAAAA$AAAA",
                                 "$scrypt$ln=x$AA$AA"])
def test_malformed_hash(bad):
    with pytest.raises(InvalidInput):
        paperkey.check("A" * 64, bad)


# -- exact behaviour, pinned against an independent computation -------------------------------
KEY = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789" * 2
SALT = bytes(range(1, 17))


def _b64(b: bytes) -> str:
    import base64

    return base64.b64encode(b).decode().rstrip("=")


def _reference(key: str, salt: bytes, ln: int, r: int = 8, p: int = 1) -> str:
    """The stored form, computed here with hashlib.scrypt directly (32-byte output)."""
    import hashlib

    digest = hashlib.scrypt(key.encode(), salt=salt, n=2**ln, r=r, p=p, dklen=32,
                            maxmem=2**26)
    return f"$scrypt$ln={ln},r={r},p={p}${_b64(salt)}${_b64(digest)}"


@pytest.mark.parametrize("ln", [1, 4, 10])  # ln=1: the smallest cost still checks
def test_check_agrees_with_an_independent_scrypt(ln):
    stored = _reference(KEY, SALT, ln)
    assert paperkey.check(KEY, stored)
    assert paperkey.check(KEY.lower(), stored)
    assert not paperkey.check(KEY[::-1], stored)


def test_hash_key_is_exactly_the_reference_form(monkeypatch):
    monkeypatch.setattr(paperkey.secrets, "token_bytes", lambda n: SALT[:n])
    assert paperkey.hash_key(KEY, ln=4) == _reference(KEY, SALT, 4)
    assert paperkey.new(ln=4).hash.startswith("$scrypt$ln=4,r=8,p=1$" + _b64(SALT) + "$")


def test_hash_key_format_without_padding():
    import re

    stored = paperkey.hash_key(KEY, ln=4)
    assert re.fullmatch(r"\$scrypt\$ln=4,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}", stored)
    ln, r, p, salt, digest = paperkey.parse_hash(stored)
    assert (ln, r, p, len(salt), len(digest)) == (4, 8, 1, 16, 32)


def test_normalise_messages():
    with pytest.raises(InvalidInput) as e:
        paperkey.normalise("0" * 64)
    assert str(e.value) == ("paper key contains 1 symbol(s) that are not in its alphabet "
                            "(it never uses 0, 1, I or O)")
    with pytest.raises(InvalidInput) as e:
        paperkey.normalise("ABCD")
    assert str(e.value) == "paper key must have 64 symbols, got 4"


@pytest.mark.parametrize(("stored", "message"), [
    ("x$scrypt$ln=4,r=8,p=1$AAAAAAAAAAA$AAAA",
     "not a paper key hash: expected $scrypt$ln=..,r=..,p=..$salt$hash"),
    ("$scrypt$ln=4,r=8,p=1$AAAA!AAAAAAA$AAAA", "paper key hash is malformed"),  # not base64
    # symbols outside base64 are refused, not skipped (the rest alone would decode)
    ("$scrypt$ln=4,r=8,p=1$AAAAAAAA....AAAAAAAA$AAAA", "paper key hash is malformed"),
    ("$scrypt$ln=4,r=8$AAAAAAAAAAA$AAAA", "paper key hash is malformed"),
])
def test_parse_hash_messages(stored, message):
    with pytest.raises(InvalidInput) as e:
        paperkey.parse_hash(stored)
    assert str(e.value) == message


@pytest.mark.parametrize(("ln", "r", "p", "salt_len", "digest", "ok"), [
    (1, 1, 1, 8, b"d", True), (20, 32, 16, 8, b"d", True),  # every bound, inclusive
    (0, 8, 1, 16, b"d", False), (21, 8, 1, 16, b"d", False),
    (4, 0, 1, 16, b"d", False), (4, 33, 1, 16, b"d", False),
    (4, 8, 0, 16, b"d", False), (4, 8, 17, 16, b"d", False),
    (4, 8, 1, 7, b"d", False), (4, 8, 1, 16, b"", False),
])
def test_parse_hash_ranges(ln, r, p, salt_len, digest, ok):
    stored = f"$scrypt$ln={ln},r={r},p={p}${_b64(bytes(salt_len))}${_b64(digest)}"
    if ok:
        assert paperkey.parse_hash(stored) == (ln, r, p, bytes(salt_len), digest)
    else:
        with pytest.raises(InvalidInput) as e:
            paperkey.parse_hash(stored)
        assert str(e.value) == "paper key hash has out-of-range parameters"
