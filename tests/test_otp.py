"""hwtoken.otp against RFC 4226/6238 vectors, oathtool and pyotp."""

from __future__ import annotations

import base64
import contextlib
import re
import secrets
import subprocess
import time

import pyotp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwtoken import otp
from hwtoken.errors import InvalidInput

RFC4226_KEY = b"12345678901234567890"
RFC4226_CODES = ["755224", "287082", "359152", "969429", "338314",
                 "254676", "287922", "162583", "399871", "520489"]

# RFC 6238 appendix B: seeds per algorithm, times, 8-digit codes.
RFC6238_SEEDS = {
    "SHA1": b"12345678901234567890",
    "SHA256": b"12345678901234567890123456789012",
    "SHA512": b"1234567890123456789012345678901234567890123456789012345678901234",
}
RFC6238 = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]


@pytest.mark.parametrize("counter,expected", list(enumerate(RFC4226_CODES)))
def test_rfc4226_vectors(counter, expected):
    assert otp.HOTP(RFC4226_KEY).at(counter) == expected


@pytest.mark.parametrize("row", RFC6238)
@pytest.mark.parametrize("index,algorithm", [(1, "SHA1"), (2, "SHA256"), (3, "SHA512")])
def test_rfc6238_vectors(row, index, algorithm):
    gen = otp.TOTP(RFC6238_SEEDS[algorithm], digits=8, algorithm=algorithm)
    assert gen.at(row[0]) == row[index]


@pytest.mark.parametrize("row", RFC6238)
def test_rfc6238_vectors_verify(row):
    for index, algorithm in ((1, "SHA1"), (2, "SHA256"), (3, "SHA512")):
        gen = otp.TOTP(RFC6238_SEEDS[algorithm], digits=8, algorithm=algorithm)
        v = otp.Verifier(gen, window=0)
        assert v.verify(row[index], row[0])
        assert not v.verify(str((int(row[index]) + 1) % 10**8).zfill(8), row[0])


def _oathtool(*args: str) -> str:
    return subprocess.run(["oathtool", *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.mark.system
def test_totp_matches_oathtool_on_random_secrets():
    for _ in range(12):
        key = secrets.token_bytes(secrets.choice([10, 20, 32, 64]))
        t = secrets.randbelow(4_000_000_000)
        digits = secrets.choice([6, 7, 8])
        alg = secrets.choice(["SHA1", "SHA256", "SHA512"])
        period = secrets.choice([30, 60, 15])
        ref = _oathtool("--totp=" + alg.lower(), "-d", str(digits), "-s", f"{period}s",
                        "-N", f"@{t}", key.hex())
        assert otp.TOTP(key, digits, alg, period).at(t) == ref


@pytest.mark.system
def test_hotp_matches_oathtool_on_random_secrets():
    for _ in range(8):
        key = secrets.token_bytes(20)
        counter = secrets.randbelow(2**40)
        digits = secrets.choice([6, 7, 8])
        ref = _oathtool("--hotp", "-d", str(digits), "-c", str(counter), key.hex())
        assert otp.HOTP(key, digits).at(counter) == ref


@settings(max_examples=200)
@given(key=st.binary(min_size=14, max_size=80), t=st.integers(0, 2**34),
       digits=st.sampled_from([6, 7, 8]), alg=st.sampled_from(["SHA1", "SHA256", "SHA512"]),
       period=st.integers(1, 120))
def test_totp_matches_pyotp(key, t, digits, alg, period):
    import hashlib

    b32 = base64.b32encode(key).decode()
    ref = pyotp.TOTP(b32, digits=digits, digest=getattr(hashlib, alg.lower()),
                     interval=period).at(t)
    assert otp.TOTP(key, digits, alg, period).at(t) == ref


@settings(max_examples=100)
@given(key=st.binary(min_size=14, max_size=40), counter=st.integers(0, 2**63))
def test_hotp_matches_pyotp(key, counter):
    assert otp.HOTP(key).at(counter) == pyotp.HOTP(base64.b32encode(key).decode()).at(counter)


@given(key=st.binary(min_size=1, max_size=64), lower=st.booleans(), spaced=st.booleans(),
       padded=st.booleans())
def test_base32_forms_decode(key, lower, spaced, padded):
    text = base64.b32encode(key).decode()
    if not padded:
        text = text.rstrip("=")
    if lower:
        text = text.lower()
    if spaced:
        text = " ".join(text[i:i + 4] for i in range(0, len(text), 4))
    assert otp.decode_secret(text) == key


_SECRET_ERRORS = re.compile(
    r"secret is empty: give a base32 secret such as JBSWY3DPEHPK3PXP"
    r"|secret is not valid base32: it contains \d+ character\(s\) outside A-Z and 2-7"
    r"|secret is not valid base32: a length of \d+ characters cannot be decoded "
    r"\(it may be truncated\)"
    r"|secret is not valid base32|secret is empty after decoding")


@given(st.text(max_size=40))
def test_base32_garbage_raises_only_invalid_input(text):
    """Any input decodes or raises InvalidInput with a fixed message that echoes nothing."""
    try:
        otp.decode_secret(text)
    except InvalidInput as exc:
        assert _SECRET_ERRORS.fullmatch(str(exc)), str(exc)


def test_base32_error_does_not_echo_secret():
    with pytest.raises(InvalidInput) as exc:
        otp.decode_secret("JBSWY3DPEHPK3PX!SECRETPART")
    assert "SECRETPART" not in str(exc.value)


def test_verifier_window_and_constant_time_path():
    gen = otp.TOTP(RFC4226_KEY)
    v = otp.Verifier(gen, window=1)
    t = 1_700_000_000
    assert v.verify(gen.at(t - 30), t)
    assert v.verify(gen.at(t + 30), t)
    assert not v.verify(gen.at(t - 60), t)
    assert not v.verify("12345", t)
    assert not v.verify("abcdef", t)
    assert not v.verify("١٢٣٤٥٦", t)  # non-ASCII digits are not digits here


class _Counting:
    """Counts ``Verifier._value`` (one HMAC per step) and ``hmac.compare_digest`` calls."""

    def __init__(self, monkeypatch):
        import hmac

        self.steps: list[int] = []
        self.compared: list[tuple[bytes, bytes]] = []
        value, compare = otp.Verifier._value, hmac.compare_digest

        def counting_value(verifier, step):
            self.steps.append(step)
            return value(verifier, step)

        def counting_compare(a, b):
            self.compared.append((a, b))
            return compare(a, b)

        monkeypatch.setattr(otp.Verifier, "_value", counting_value)
        monkeypatch.setattr(hmac, "compare_digest", counting_compare)

    def reset(self) -> None:
        self.steps.clear()
        self.compared.clear()


@pytest.mark.parametrize("offset", [-2, 0, 2, None])  # where the code matches (None: nowhere)
def test_totp_verifier_computes_every_step_and_compares_each_in_constant_time(
        monkeypatch, offset):
    """No early exit: the work (and so the time) does not tell which step matched, if any."""
    gen = otp.TOTP(RFC4226_KEY)
    t = 1_700_000_000
    step = t // 30
    code = gen.at(t + 30 * offset) if offset is not None else "000000"
    if offset is None:
        assert code not in {gen.at(t + 30 * d) for d in range(-2, 3)}
    counting = _Counting(monkeypatch)
    found = otp.Verifier(gen, window=2).match_totp(code, t)
    assert found == (None if offset is None else step + offset)
    assert counting.steps == [step + d for d in range(-2, 3)]
    assert len(counting.compared) == 5  # every step compared with compare_digest, never ==
    assert all(len(a) == len(b) == 4 for a, b in counting.compared)


@pytest.mark.parametrize("matched", [0, 5, 10, None])
def test_hotp_verifier_computes_every_counter_in_the_window(monkeypatch, matched):
    gen = otp.HOTP(RFC4226_KEY)
    codes = [gen.at(c) for c in range(11)]
    code = codes[matched] if matched is not None else "000000"
    assert matched is not None or code not in codes
    counting = _Counting(monkeypatch)
    assert otp.Verifier(gen, window=10).verify_hotp(code) == matched
    assert counting.steps == list(range(11))
    assert len(counting.compared) == 11
    # a malformed code costs the same work as a wrong one
    counting.reset()
    assert otp.Verifier(gen, window=10).verify_hotp("12a456") is None
    assert counting.steps == list(range(11)) and len(counting.compared) == 11


def test_totp_window_zero_and_steps_before_the_epoch(monkeypatch):
    gen = otp.TOTP(RFC4226_KEY)
    counting = _Counting(monkeypatch)
    assert otp.Verifier(gen, window=0).match_totp(gen.at(29), 29) == 0
    assert counting.steps == [0]
    counting.reset()
    # at t=0 the step before does not exist: it is skipped, not wrapped around
    assert otp.Verifier(gen, window=1).match_totp(gen.at(0), 0) == 0
    assert counting.steps == [0, 1]


def test_replay_refused_and_earlier_step_refused(tmp_path):
    store = otp.ReplayStore(tmp_path / "replay.json")
    gen = otp.TOTP(RFC4226_KEY)
    t = 1_700_000_000
    v = otp.Verifier(gen, store=store)
    assert v.verify(gen.at(t), t)
    assert not v.verify(gen.at(t), t)  # same code again
    assert not v.verify(gen.at(t - 30), t)  # an earlier step
    assert v.verify(gen.at(t + 30), t + 30)
    # a new Verifier (as after a restart) reads the same store
    assert not otp.Verifier(gen, store=otp.ReplayStore(tmp_path / "replay.json")).verify(
        gen.at(t + 30), t + 30)
    assert (tmp_path / "replay.json").stat().st_mode & 0o777 == 0o600
    assert base64.b32encode(RFC4226_KEY).decode() not in (tmp_path / "replay.json").read_text()


def test_hotp_lookahead_and_resync(tmp_path):
    store = otp.ReplayStore(tmp_path / "replay.json")
    gen = otp.HOTP(RFC4226_KEY)
    v = otp.Verifier(gen, window=5, store=store)
    assert v.verify_hotp(RFC4226_CODES[3]) == 3  # counter 0 expected, 3 within look-ahead
    assert v.counter == 4
    assert v.verify_hotp(RFC4226_CODES[3]) is None  # replay
    assert v.verify_hotp(RFC4226_CODES[2]) is None  # earlier
    assert v.verify_hotp(RFC4226_CODES[9]) == 9  # 9 <= 4 + 5
    assert otp.Verifier(gen, window=3).verify_hotp(RFC4226_CODES[9]) is None


URI = "otpauth://totp/ACME%20Co:john@example.com?secret=HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ" \
      "&issuer=ACME%20Co&algorithm=SHA256&digits=8&period=60"


def test_parse_uri_fields_and_round_trip():
    p = otp.parse_uri(URI)
    assert (p.type, p.issuer, p.account, p.algorithm, p.digits, p.period) == (
        "totp", "ACME Co", "john@example.com", "SHA256", 8, 60)
    again = otp.parse_uri(p.to_uri())
    assert again == p
    assert pyotp.parse_uri(p.to_uri()).now() == p.generator().now()


@pytest.mark.parametrize("uri,needle", [
    ("http://totp/x?secret=JBSWY3DPEHPK3PXP", "scheme"),
    ("otpauth://motp/x?secret=JBSWY3DPEHPK3PXP", "type"),
    ("otpauth://totp/x?secret=JBSWY3DPEHPK3PX1", "base32"),
    ("otpauth://totp/x?digits=6", "secret"),
    ("otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&digits=9", "digits"),
    ("otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&digits=five", "digits"),
    ("otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&algorithm=MD5", "algorithm"),
    ("otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&period=0", "period"),
    ("otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&period=-30", "period"),
    ("otpauth://hotp/x?secret=JBSWY3DPEHPK3PXP", "counter"),
])
def test_parse_uri_rejects(uri, needle):
    with pytest.raises(InvalidInput, match=needle):
        otp.parse_uri(uri)


@settings(max_examples=300)
@given(st.text(max_size=120))
def test_parse_uri_fuzz_only_invalid_input(text):
    with contextlib.suppress(InvalidInput):
        otp.parse_uri(text)


@settings(max_examples=200)
@given(st.builds(
    lambda kind, query: f"otpauth://{kind}/Issuer:acct?{query}",
    st.sampled_from(["totp", "hotp", "TOTP", "x"]),
    st.lists(st.tuples(st.sampled_from(["secret", "digits", "period", "counter", "algorithm",
                                        "issuer"]),
                       st.text(alphabet="AZ27=-0189abc%&", max_size=12)), max_size=6)
    .map(lambda kv: "&".join(f"{k}={v}" for k, v in kv)),
))
def test_parse_uri_structured_fuzz(uri):
    try:
        p = otp.parse_uri(uri)
    except InvalidInput:
        return
    assert p.digits in (6, 7, 8) and p.period > 0 and p.secret


def test_generators_never_show_the_key():
    key = b"do-not-print-this-key"
    uri = otp.TOTP(key).params(account="alice").to_uri()
    for gen in (otp.TOTP(key), otp.HOTP(key), otp.parse_uri(uri)):
        assert "do-not-print" not in repr(gen) and "do-not-print" not in str(gen)


# -- generators: defaults, bounds and the exact refusals a caller reads ----------------------
RFC4226_HEX = RFC4226_KEY.hex()


@pytest.mark.parametrize("counter,expected", list(enumerate(RFC4226_CODES)))
def test_hotp_code_defaults_are_rfc4226s_six_digits_and_sha1(counter, expected):
    """The OTP-slot ticket and the provisioning check call ``hotp_code(key, counter)``."""
    assert otp.hotp_code(RFC4226_KEY, counter) == expected
    assert otp.hotp_code(RFC4226_KEY, counter, 6, "SHA1") == expected


@pytest.mark.parametrize("row", RFC6238)
@pytest.mark.parametrize("index,algorithm", [(2, "SHA256"), (3, "SHA512")])
def test_hotp_generator_uses_its_algorithm(row, index, algorithm):
    """RFC 6238's codes are HOTP codes of the step: an HOTP over SHA-256/512 gives them too."""
    gen = otp.HOTP(RFC6238_SEEDS[algorithm], digits=8, algorithm=algorithm)
    assert gen.at(row[0] // 30) == row[index]


def test_hotp_counter_bounds_and_messages():
    gen = otp.HOTP(RFC4226_KEY)
    last = 2**64 - 1
    assert gen.at(last) == _oathtool("--hotp", "-c", str(last), RFC4226_HEX) == "094451"
    for bad in (-1, 2**64, 2**65):
        with pytest.raises(InvalidInput) as exc:
            gen.at(bad)
        assert str(exc.value) == "counter must be between 0 and 2^64-1"
    with pytest.raises(InvalidInput) as exc:
        otp.HOTP(RFC4226_KEY, counter=-1)
    assert str(exc.value) == "counter must not be negative"


def test_totp_period_bounds_and_message():
    assert otp.TOTP(RFC4226_KEY, period=otp.MAX_PERIOD).at(10**6) == _oathtool(
        "--totp", "-s", f"{otp.MAX_PERIOD}s", "-N", f"@{10**6}", RFC4226_HEX)
    assert otp.TOTP(RFC4226_KEY, period=1).at(5) == otp.HOTP(RFC4226_KEY).at(5)
    for bad in (0, -30, otp.MAX_PERIOD + 1):
        with pytest.raises(InvalidInput) as exc:
            otp.TOTP(RFC4226_KEY, period=bad)
        assert str(exc.value) == "period must be from 1 to 86400 seconds"


def test_totp_t0_counts_steps_from_the_epoch_it_is_given():
    gen = otp.TOTP(RFC4226_KEY, t0=100)
    # oathtool's --start-time is RFC 6238's T0
    assert gen.at(1000) == _oathtool("--totp", "-S", "@100", "-N", "@1000", RFC4226_HEX)
    assert gen.timecode(1000) == 30 and gen.remaining(1000) == 30
    assert gen.remaining(1001.5) == 28.5
    assert gen.timecode(99) == -1  # floor, not truncation towards zero
    assert gen.timecode(50) == -2
    with pytest.raises(InvalidInput) as exc:
        gen.at(99)
    assert str(exc.value) == "time is before the TOTP epoch"


def test_totp_timecode_and_remaining():
    gen = otp.TOTP(RFC4226_KEY)
    assert [gen.timecode(t) for t in (0, 29.9, 30, 59, 60)] == [0, 0, 1, 1, 2]
    # exact integer steps up to the last time a code is computed for (a float division is
    # 4 steps off there)
    assert gen.timecode(otp.MAX_TIME) == otp.MAX_TIME // 30 == 307445734561825860
    assert gen.at(otp.MAX_TIME) == otp.hotp_code(RFC4226_KEY, otp.MAX_TIME // 30)
    assert gen.remaining(1000.5) == 19.5 and gen.remaining(1020) == 30
    assert otp.TOTP(RFC4226_KEY, period=60).remaining(1000.25) == 19.75
    assert 0 < gen.remaining() <= 30  # now


def test_generator_normalises_the_algorithm_name():
    gen = otp.TOTP(RFC6238_SEEDS["SHA256"], digits=8, algorithm="sha-256")
    assert gen.algorithm == "SHA256" and gen.at(59) == "46119246"
    assert otp.HOTP(RFC4226_KEY, algorithm="sha1").algorithm == "SHA1"


def test_generator_refuses_an_empty_key():
    for cls in (otp.TOTP, otp.HOTP):
        with pytest.raises(InvalidInput) as exc:
            cls(b"")
        assert str(exc.value) == "secret is empty"


def test_from_secret_decodes_and_passes_the_options():
    b32 = base64.b32encode(RFC6238_SEEDS["SHA256"]).decode().lower()
    gen = otp.TOTP.from_secret(b32, digits=8, algorithm="SHA256")
    assert gen == otp.TOTP(RFC6238_SEEDS["SHA256"], 8, "SHA256")
    assert gen.at(1111111109) == "68084774"
    assert otp.HOTP.from_secret("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", counter=3).counter == 3


def test_params_of_a_generator_keep_every_field():
    hotp = otp.HOTP(RFC4226_KEY, 8, "SHA256", counter=5)
    assert hotp.params() == otp.OtpParams("hotp", RFC4226_KEY, "", "", "SHA256", 8, counter=5)
    assert hotp.params("ACME", "bob") == otp.OtpParams("hotp", RFC4226_KEY, "ACME", "bob",
                                                       "SHA256", 8, counter=5)
    totp = otp.TOTP(RFC4226_KEY, 7, "SHA512", period=60)
    assert totp.params() == otp.OtpParams("totp", RFC4226_KEY, "", "", "SHA512", 7, period=60)
    assert totp.params("ACME", "bob").to_uri() == (
        f"otpauth://totp/ACME:bob?secret={base64.b32encode(RFC4226_KEY).decode()}"
        "&issuer=ACME&algorithm=SHA512&digits=7&period=60")
    for gen in (hotp, totp):  # and back again
        assert gen.params("ACME", "bob").generator() == gen


def test_params_generator_keeps_the_hotp_counter():
    p = otp.OtpParams("hotp", RFC4226_KEY, digits=8, algorithm="SHA256", counter=7)
    assert p.generator() == otp.HOTP(RFC4226_KEY, 8, "SHA256", counter=7)
    assert p.generator().counter == 7
    p = otp.OtpParams("totp", RFC4226_KEY, digits=7, period=45)
    assert p.generator() == otp.TOTP(RFC4226_KEY, 7, "SHA1", period=45)


# -- code_report: what `hwtoken otp code --json` prints ---------------------------------------
def test_code_report_hotp_fields():
    p = otp.OtpParams("hotp", RFC4226_KEY, counter=7)
    assert otp.code_report(p) == {"type": "hotp", "code": RFC4226_CODES[7], "counter": 7}
    assert otp.code_report(p, 1000) == {"type": "hotp", "code": RFC4226_CODES[7], "counter": 7}


def test_code_report_totp_fields():
    p = otp.OtpParams("totp", RFC6238_SEEDS["SHA1"], digits=8)
    assert otp.code_report(p, 1111111109) == {
        "type": "totp", "code": "07081804", "time": 1111111109, "step": 37037036,
        "remaining": 1}
    # remaining rounded to milliseconds: 30 - 10.015625 is 19.984375
    assert otp.code_report(p, 1000.015625) == {
        "type": "totp", "code": otp.TOTP(RFC6238_SEEDS["SHA1"], 8).at(1000), "time": 1000.015625,
        "step": 33, "remaining": 19.984}


def test_code_report_totp_now():
    p = otp.OtpParams("totp", RFC4226_KEY)
    before = time.time()
    doc = otp.code_report(p)
    after = time.time()
    assert set(doc) == {"type", "code", "time", "step", "remaining"}
    assert before <= doc["time"] <= after
    assert doc["step"] == int(doc["time"]) // 30
    assert doc["code"] == otp.TOTP(RFC4226_KEY).at(doc["time"])
    assert doc["remaining"] == round(30 - doc["time"] % 30, 3)
