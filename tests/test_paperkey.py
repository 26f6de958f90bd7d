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
