"""TOTP verification with a window of ±1: hwtoken's Verifier vs pyotp vs the raw limit.

The raw limit is three ``hmac.digest`` calls (the HMACs a ±1 window needs, nothing else).
All three are measured in the same run, so the ratios hold on a noisy machine.
Goals: Verifier >= 3x pyotp, and >= 60% of the raw limit.
"""

from __future__ import annotations

import hmac
import struct
import sys
import timeit

import pyotp

from hwtoken.otp import TOTP, Verifier, decode_secret

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
AT = 1_700_000_000


def best_rate(fn, number: int, repeat: int = 7) -> float:
    """Calls per second, best of ``repeat`` runs (least disturbed by other load)."""
    times = timeit.repeat(fn, number=number, repeat=repeat)
    return number / min(times)


def main() -> int:
    key = decode_secret(SECRET)
    code = TOTP(key).at(AT)
    wrong = "000000" if code != "000000" else "111111"
    verifier = Verifier(TOTP(key), window=1)
    py = pyotp.TOTP(SECRET)
    step = AT // 30
    msgs = [struct.pack(">Q", step + i) for i in (-1, 0, 1)]
    digest = hmac.digest

    def raw() -> None:
        digest(key, msgs[0], "sha1")
        digest(key, msgs[1], "sha1")
        digest(key, msgs[2], "sha1")

    assert verifier.verify(code, AT) and not verifier.verify(wrong, AT)
    assert py.verify(code, for_time=AT, valid_window=1)

    n = 20000
    r_raw = best_rate(raw, n)
    r_ours = best_rate(lambda: verifier.verify(code, AT), n)
    r_ours_wrong = best_rate(lambda: verifier.verify(wrong, AT), n)
    r_py = best_rate(lambda: py.verify(code, for_time=AT, valid_window=1), n // 4)

    print(f"raw limit (3x hmac.digest): {r_raw:12,.0f} /s")
    print(f"hwtoken Verifier (valid):   {r_ours:12,.0f} /s")
    print(f"hwtoken Verifier (wrong):   {r_ours_wrong:12,.0f} /s")
    print(f"pyotp TOTP.verify(w=1):     {r_py:12,.0f} /s")
    vs_py = r_ours / r_py
    vs_raw = r_ours / r_raw
    print(f"ratio hwtoken/pyotp: {vs_py:.2f}x (goal >= 3.0)")
    print(f"ratio hwtoken/raw:   {vs_raw:.0%} (goal >= 60%)")
    ok = vs_py >= 3.0 and vs_raw >= 0.60
    print("goals met" if ok else "GOALS NOT MET")
    return 0 if ok or "--no-fail" in sys.argv else 1


if __name__ == "__main__":
    sys.exit(main())
