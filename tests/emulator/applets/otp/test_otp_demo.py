"""`make demo`'s OTP part: challenge-response and HOTP on a virtual key via python-yubico."""

from __future__ import annotations

from hwtoken.demos import otp_slots


def test_otp_demo_runs_and_checks_itself(tmp_path):
    lines: list[str] = []
    otp_slots.run(lines.append, tmp_path)  # raises if a response or a typed code is wrong
    text = "\n".join(lines)
    assert "hmac.new(secret, challenge, sha1) matches" in text
    assert "without the access code: refused by the key" in text
    assert "(= pyotp)" in text
