"""Code generation on MicroPython: RFC 6238 vectors through the pure-Python fallbacks."""

from __future__ import annotations

import hashlib
import json
import random

import pyotp

# RFC 6238 appendix B: (time, code) for SHA1, SHA256, SHA512, 8 digits.
RFC6238 = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]
SEEDS = {
    "SHA1": b"12345678901234567890",
    "SHA256": b"12345678901234567890123456789012",
    "SHA512": b"1234567890123456789012345678901234567890123456789012345678901234",
}


def test_rfc6238_vectors_through_the_fallback(mpy):
    doc = mpy(f"""
import json, sha, totp
seeds = {SEEDS!r}
out = []
for t in {[v[0] for v in RFC6238]!r}:
    row = []
    for alg in ("SHA1", "SHA256", "SHA512"):
        row.append(totp.totp(seeds[alg], t, 8, alg, 30, new=getattr(sha, alg.lower())))
    out.append(row)
print(json.dumps(out))
""")
    assert doc == [list(v[1:]) for v in RFC6238]


def test_port_backends_and_default_path(mpy):
    # The WebAssembly port's hashlib has sha256 only, like a plain Pico: sha1 and sha512
    # must come from the fallback, and the default path must give the same vectors.
    doc = mpy(f"""
import json, totp
seeds = {SEEDS!r}
print(json.dumps({{"backends": [totp.hash_backend(a) for a in ("sha1", "sha256", "sha512")],
                   "codes": [totp.totp(seeds[a], 59, 8, a)
                             for a in ("SHA1", "SHA256", "SHA512")]}}))
""")
    assert doc["backends"] == ["fallback", "hashlib", "fallback"]
    assert doc["codes"] == list(RFC6238[0][1:])


def test_fallback_digests_match_hashlib_at_block_boundaries(mpy):
    lengths = [0, 1, 55, 56, 63, 64, 65, 111, 112, 119, 127, 128, 129, 200, 1000]
    doc = mpy(f"""
import json, sha, binascii
out = {{}}
for name in ("sha1", "sha256", "sha512"):
    row = []
    for n in {lengths!r}:
        data = bytes((i * 7 + 3) & 255 for i in range(n))
        h = getattr(sha, name)()
        h.update(data[: n // 3])   # incremental updates too
        h.update(data[n // 3:])
        row.append(binascii.hexlify(h.digest()).decode())
    out[name] = row
print(json.dumps(out))
""")
    for name in ("sha1", "sha256", "sha512"):
        expected = [hashlib.new(name, bytes((i * 7 + 3) & 255 for i in range(n))).hexdigest()
                    for n in lengths]
        assert doc[name] == expected, name


def test_random_accounts_agree_with_pyotp(mpy):
    rng = random.Random(6238)
    cases = []
    for _ in range(40):
        secret = pyotp.random_base32(rng.choice([32, 40, 56, 64, 104]))
        alg = rng.choice(["SHA1", "SHA256", "SHA512"])
        digits = rng.choice([6, 7, 8])
        period = rng.choice([15, 30, 60, 90])
        t = rng.randrange(0, 2**33)
        cases.append((secret, alg, digits, period, t))
    doc = mpy(f"""
import json, totp
out = []
for secret, alg, digits, period, t in {json.dumps(cases)}:
    out.append(totp.totp(totp.b32decode(secret), t, digits, alg, period))
print(json.dumps(out))
""")
    digest = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}
    expected = [pyotp.TOTP(s, digits=d, digest=digest[a], interval=p).at(t)
                for s, a, d, p, t in cases]
    assert doc == expected


def test_base32_decoding_rejects_bad_characters(mpy):
    doc = mpy("""
import json, totp
ok = totp.b32decode("jbsw y3dp ehpk 3pxp====")
try:
    totp.b32decode("JBSWY3DP1HPK3PXP")
    bad = "accepted"
except ValueError as e:
    bad = str(e)
print(json.dumps([ok.hex(), bad]))
""")
    assert doc == ["48656c6c6f21deadbeef", "secret is not base32"]
