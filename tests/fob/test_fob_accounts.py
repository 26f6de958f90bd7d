"""The accounts store on MicroPython: a JSON file on flash, written atomically."""

from __future__ import annotations

import hashlib
import json

import pyotp
from hypothesis import given, settings
from hypothesis import strategies as st


def test_twenty_accounts_of_every_kind_round_trip(mpy):
    specs = [(f"acct{i:02d}", pyotp.random_base32(32), ("SHA1", "SHA256", "SHA512")[i % 3],
              6 + i % 3, (30, 60, 15, 45)[i % 4]) for i in range(20)]
    doc = mpy(f"""
import json, accounts
for name, secret, alg, digits, period in {json.dumps(specs)}:
    n = accounts.add(name, secret, alg, digits, period)
loaded = accounts.load()
print(json.dumps({{"count": n, "summary": accounts.summary(),
                   "codes": [a.code(1700000000) for a in loaded],
                   "file_has": sorted(json.load(open("accounts.json"))[0])}}))
""")
    assert doc["count"] == 20
    assert doc["summary"] == [{"name": n, "algorithm": a, "digits": d, "period": p}
                              for n, _, a, d, p in specs]
    digest = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}
    assert doc["codes"] == [pyotp.TOTP(s, digits=d, digest=digest[a], interval=p).at(1700000000)
                            for _, s, a, d, p in specs]
    assert doc["file_has"] == ["algorithm", "digits", "name", "period", "secret"]


def test_replace_remove_wipe(mpy):
    doc = mpy("""
import json, os, accounts
out = {}
accounts.add("a", "JBSWY3DPEHPK3PXP")
accounts.add("b", "JBSWY3DPEHPK3PXP", "SHA256", 8, 60)
out["replaced_count"] = accounts.add("a", "GEZDGNBVGY3TQOJQ", "SHA1", 7, 30)
out["after_replace"] = accounts.summary()
out["removed"] = accounts.remove("a")
out["removed_again"] = accounts.remove("a")
out["left"] = [a["name"] for a in accounts.summary()]
out["no_tmp"] = "accounts.json.tmp" not in os.listdir()
accounts.wipe()
out["wiped"] = [accounts.summary(), "accounts.json" in os.listdir()]
accounts.wipe()  # wiping nothing is fine
print(json.dumps(out))
""")
    assert doc["replaced_count"] == 2
    assert doc["after_replace"] == [
        {"name": "b", "algorithm": "SHA256", "digits": 8, "period": 60},
        {"name": "a", "algorithm": "SHA1", "digits": 7, "period": 30},
    ]
    assert doc["removed"] is True and doc["removed_again"] is False
    assert doc["left"] == ["b"]
    assert doc["no_tmp"] is True
    assert doc["wiped"] == [[], False]


def test_validation_errors_never_echo_the_secret(mpy):
    doc = mpy("""
import json, accounts
out = []
for args in [("", "JBSWY3DPEHPK3PXP"), ("x" * 41, "JBSWY3DPEHPK3PXP"),
             ("caf\\u00e9", "JBSWY3DPEHPK3PXP"),
             ("n", "NOT*BASE32SECRET"), ("n", "JBSWY3DP"), ("n", "JBSWY3DPEHPK3PXP", "MD5"),
             ("n", "JBSWY3DPEHPK3PXP", "SHA1", 9), ("n", "JBSWY3DPEHPK3PXP", "SHA1", 6, 0)]:
    try:
        accounts.add(*args)
        out.append("accepted")
    except ValueError as e:
        out.append(str(e))
print(json.dumps([out, accounts.summary()]))
""")
    errors, left = doc
    assert errors == [
        "name must be 1-40 characters", "name must be 1-40 characters",
        "name must be printable ASCII", "secret is not base32", "secret must be at least 80 bits",
        "algorithm must be SHA1, SHA256 or SHA512", "digits must be 6, 7 or 8",
        "period must be 1-86400 seconds",
    ]
    assert left == []
    assert not any("JBSWY3DP" in e or "NOT*" in e for e in errors)


def test_damaged_file_is_reported_and_wipe_recovers(mpy):
    doc = mpy("""
import json, accounts
out = []
for content in ('[{"name": "a", "secret": "JBSW', '[{"name": "a"}]', '{"x": 1}'):
    with open("accounts.json", "w") as f:
        f.write(content)
    try:
        accounts.load()
        out.append("loaded")
    except ValueError as e:
        out.append(str(e))
accounts.wipe()
out.append(accounts.add("a", "JBSWY3DPEHPK3PXP"))
print(json.dumps(out))
""")
    assert doc == ["the accounts file is damaged: run hwtoken fob wipe"] * 3 + [1]


def test_wipe_also_removes_a_temporary_file_left_by_a_reset(mpy):
    # A reset between save()'s write and its rename leaves accounts.json.tmp, secrets
    # and all; `hwtoken fob wipe` must not leave it behind.
    doc = mpy("""
import json, os, accounts
accounts.add("a", "JBSWY3DPEHPK3PXP")
with open("accounts.json.tmp", "w") as f:
    json.dump([{"name": "b", "secret": "GEZDGNBVGY3TQOJQ"}], f)
accounts.wipe()
print(json.dumps(sorted(n for n in os.listdir() if n.startswith("accounts.json"))))
""")
    assert doc == []


def test_codes_are_cached_per_period_and_stay_correct(mpy):
    doc = mpy("""
import json, accounts, totp
a = accounts.Account("a", "JBSWY3DPEHPK3PXP", "SHA1", 6, 30)
calls = [0]
real = totp.hotp
def counting(*args):
    calls[0] += 1
    return real(*args)
totp.hotp = counting
codes = [a.code(t) for t in range(1700000000, 1700000090)]
nexts = [a.code(t, 1) for t in range(1700000000, 1700000090)]
print(json.dumps([codes[0], codes[30], codes[60], nexts[0], calls[0], len(set(codes))]))
""")
    from hwtoken.otp import TOTP

    t = TOTP.from_secret("JBSWY3DPEHPK3PXP")
    assert doc[:4] == [t.at(1700000000), t.at(1700000030), t.at(1700000060),
                       t.at(1700000030)]
    assert doc[5] == 4  # 1700000000 is 20 s into a period: 4 distinct codes in 90 s
    assert doc[4] <= 8  # a handful of HMACs, not one per second


def _host_accepts(name, secret, algorithm, digits, period):
    """What the fob should accept, written independently of accounts.validate."""
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
    cleaned = secret.upper().replace(" ", "").rstrip("=")
    body = [c for c in cleaned if c not in "=-"]
    return (0 < len(name) <= 40 and all(32 <= ord(c) <= 126 for c in name)
            and algorithm in ("SHA1", "SHA256", "SHA512") and digits in (6, 7, 8)
            and 1 <= period <= 86400 and all(c in alphabet for c in body)
            and len(body) * 5 // 8 >= 10)


@settings(max_examples=4)
@given(st.lists(st.tuples(
    st.text(min_size=0, max_size=45),
    st.one_of(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ234567abc =", max_size=40),
              st.text(max_size=20)),
    st.sampled_from(["SHA1", "SHA256", "SHA512", "MD5", "sha1"]),
    st.integers(4, 10), st.integers(-5, 100000)), min_size=30, max_size=30))
def test_fuzz_validation_on_micropython(tmp_path_factory, cases):
    from fob_support import run_json

    doc = run_json(f"""
import json, accounts
out = []
for case in {cases!r}:
    try:
        accounts.validate(*case)
        out.append(True)
    except ValueError:
        out.append(False)
print(json.dumps(out))
""", tmp_path_factory.mktemp("fuzz"))
    assert doc == [_host_accepts(*c) for c in cases]
