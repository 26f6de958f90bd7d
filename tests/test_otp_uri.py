"""hwtoken.otp's secrets and otpauth:// URIs: what is accepted and refused at each boundary,
the values parsed, the URI written, describe()'s fields and every message a user reads.

Cross-checked against pyotp (parse_uri, provisioning_uri) and Google's Key Uri Format
(https://github.com/google/google-authenticator/wiki/Key-Uri-Format).
"""

from __future__ import annotations

import base64
import hashlib
import re

import pyotp
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hwtoken import otp
from hwtoken.errors import InvalidInput

SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"  # RFC 6238's SHA1 seed, 160 bits
KEY = b"12345678901234567890"
WEAK = "JBSWY3DPEHPK3"  # 13 base32 characters: 8 bytes, 64 bits
WEAK_MESSAGE = ("the secret has only 64 bits; at least 80 are needed (RFC 4226 asks for 128, "
                "recommends 160): use a longer one, or accept it with --allow-weak "
                "(allow_weak=True)")


def refused(call, *args, **kw) -> str:
    """The message of the InvalidInput that ``call(*args, **kw)`` raises."""
    with pytest.raises(InvalidInput) as exc:
        call(*args, **kw)
    return str(exc.value)


def uri(query: str, label: str = "ACME:bob", kind: str = "totp") -> str:
    return f"otpauth://{kind}/{label}?{query}"


# -- secrets ---------------------------------------------------------------------------------
def test_decode_secret_accepts_dashes_spaces_case_and_padding():
    assert otp.decode_secret("GEZD-GNBV-GY3T-QOJQ GEZD-GNBV-GY3T-QOJQ") == KEY
    assert otp.decode_secret("gezdgnbvgy3tqojqgezdgnbvgy3tqojq") == KEY
    # 16 bytes: 26 characters and 6 "=" of padding, with or without it
    assert otp.decode_secret("GEZDGNBVGY3TQOJQGEZDGNBVGY") == KEY[:16]
    assert otp.decode_secret("GEZDGNBVGY3TQOJQGEZDGNBVGY======") == KEY[:16]


@pytest.mark.parametrize("text", ["AAAAAAAAAAAAAAAX", "JBSWY3DPEHPK3PXX", "XXXXXXXX",
                                  "AAAAAAAAAAAAAAAAAAAAAAAAAX======"])
def test_decode_secret_keeps_a_trailing_x(text):
    """Only "=" padding is stripped from the end, never a base32 digit such as X."""
    assert otp.decode_secret(text) == base64.b32decode(text + "=" * (-len(text) % 8))


@pytest.mark.parametrize("text,message", [
    ("JBSWY3DPEHPK3PX1", "secret is not valid base32: it contains 1 character(s) outside A-Z "
                         "and 2-7"),
    ("JBSW!3DP0HPK3PX1", "secret is not valid base32: it contains 3 character(s) outside A-Z "
                         "and 2-7"),
    ("JBSWY3DPE", "secret is not valid base32: a length of 9 characters cannot be decoded "
                  "(it may be truncated)"),
    (" - = ", "secret is empty: give a base32 secret such as JBSWY3DPEHPK3PXP"),
    # letters that str.upper() would turn into base32 ones ("ı" -> "I", "ß" -> "SS")
    ("JBSWY3DPEHPK3PXı", "secret is not valid base32: it contains 1 character(s) outside A-Z "
                         "and 2-7"),
    ("JBSWY3DPEHPK3PXPß", "secret is not valid base32: it contains 1 character(s) outside A-Z "
                          "and 2-7"),
])
def test_decode_secret_messages(text, message):
    assert refused(otp.decode_secret, text) == message


def test_decode_secret_refuses_bytes_with_a_message():
    assert refused(otp.decode_secret, SECRET.encode()) == "secret must be a base32 string"


@pytest.mark.parametrize("key,text", [
    (KEY, SECRET),
    (KEY[:16], "GEZDGNBVGY3TQOJQGEZDGNBVGY"),  # no "=" padding: what apps expect
    (base64.b32decode("JBSWY3DPEHPK3PXX"), "JBSWY3DPEHPK3PXX"),  # a trailing X is kept
    (b"\xff", "74"),
])
def test_encode_secret_has_no_padding(key, text):
    assert otp.encode_secret(key) == text
    assert otp.decode_secret(text) == key


@settings(max_examples=100)
@given(st.binary(min_size=1, max_size=64))
@example(base64.b32decode("AAAAAAAX"))
def test_encode_decode_round_trip(key):
    text = otp.encode_secret(key)
    assert "=" not in text
    assert text == base64.b32encode(key).decode().rstrip("=")
    assert otp.decode_secret(text) == key
    assert base64.b32decode(text + "=" * (-len(text) % 8)) == key


def test_new_secret_sizes_and_the_80_bit_floor():
    assert len(otp.new_secret()) == 20
    assert len(otp.new_secret(10)) == 10  # 80 bits: the smallest allowed
    assert len(otp.new_secret(32)) == 32
    assert otp.new_secret() != otp.new_secret()
    assert refused(otp.new_secret, 9) == ("secrets shorter than 80 bits are not allowed "
                                          "(RFC 4226)")


def test_check_strength_at_80_bits():
    assert otp.check_strength(bytes(10)) == bytes(10)
    assert refused(otp.check_strength, bytes(8)) == WEAK_MESSAGE
    assert refused(otp.check_strength, bytes(9)).startswith("the secret has only 72 bits;")
    assert otp.check_strength(bytes(9), allow_weak=True) == bytes(9)
    assert otp.check_strength(bytes(1), allow_weak=True) == bytes(1)
    assert otp.check_strength(bytes(20), allow_weak=True) == bytes(20)


# -- times -----------------------------------------------------------------------------------
TIME_MESSAGE = ("the time must be a unix time from 0 to 9223372036854775807 (seconds since "
                "1970-01-01 UTC)")


@pytest.mark.parametrize("at", [0, 0.5, 1_700_000_000, 1_700_000_000.25, 2**63 - 1])
def test_check_time_accepts(at):
    assert otp.check_time(at) == at


@pytest.mark.parametrize("at", [-1, -0.001, 2**63, float("nan"), float("inf"), -float("inf"),
                                True, False, "1700000000", None])
def test_check_time_refuses(at):
    assert refused(otp.check_time, at) == TIME_MESSAGE


# -- parse_uri: values -----------------------------------------------------------------------
def test_parse_uri_defaults():
    """Key Uri Format defaults: SHA1, 6 digits, 30 s; the label's prefix is the issuer."""
    assert otp.parse_uri(uri(f"secret={SECRET}")) == otp.OtpParams("totp", KEY, "ACME", "bob")
    p = otp.parse_uri(uri(f"secret={SECRET}"))
    assert (p.algorithm, p.digits, p.period, p.counter) == ("SHA1", 6, 30, 0)


def test_parse_uri_label_without_issuer():
    assert otp.parse_uri(uri(f"secret={SECRET}", label="bob")) == otp.OtpParams(
        "totp", KEY, "", "bob")
    # the issuer parameter alone names the issuer
    assert otp.parse_uri(uri(f"secret={SECRET}&issuer=ACME", label="bob")) == otp.OtpParams(
        "totp", KEY, "ACME", "bob")
    assert otp.parse_uri(uri(f"secret={SECRET}&issuer=ACME")).issuer == "ACME"


@pytest.mark.parametrize("label", ["ACME:%20bob", "ACME:%20%20bob", "ACME%20:bob", "ACME%3Abob",
                                   "ACME%3A%20bob"])
def test_parse_uri_label_separator_and_optional_spaces(label):
    """A literal or %-encoded colon separates issuer and account; spaces may precede the
    account (Key Uri Format)."""
    p = otp.parse_uri(uri(f"secret={SECRET}&issuer=ACME", label=label))
    assert (p.issuer, p.account) == ("ACME", "bob")


def test_parse_uri_hotp_counter_boundaries():
    for counter in (0, 1, 5, 2**64 - 1):
        p = otp.parse_uri(uri(f"secret={SECRET}&counter={counter}", kind="hotp"))
        assert (p.type, p.counter) == ("hotp", counter)
        assert pyotp.parse_uri(p.to_uri()).initial_count == counter
    assert refused(otp.parse_uri, uri(f"secret={SECRET}&counter={2**64}", kind="hotp")) == (
        "otpauth URI: counter must be from 0 to 18446744073709551615")
    assert refused(otp.parse_uri, uri(f"secret={SECRET}", kind="hotp")) == (
        "otpauth URI: hotp needs a counter parameter")


@pytest.mark.parametrize("period", [1, 2, 30, 86400])
def test_parse_uri_period_range(period):
    assert otp.parse_uri(uri(f"secret={SECRET}&period={period}")).period == period


@pytest.mark.parametrize("digits", [6, 7, 8])
def test_parse_uri_digits(digits):
    assert otp.parse_uri(uri(f"secret={SECRET}&digits={digits}")).digits == digits


@pytest.mark.parametrize("name,expected", [("SHA1", "SHA1"), ("sha256", "SHA256"),
                                           ("SHA-256", "SHA256"), ("sha-512", "SHA512")])
def test_parse_uri_algorithm_spellings(name, expected):
    assert otp.parse_uri(uri(f"secret={SECRET}&algorithm={name}")).algorithm == expected


def test_parse_uri_empty_fields_are_skipped():
    """"&&", a leading or trailing "&" are empty fields, not the end of the query."""
    p = otp.parse_uri(uri(f"&secret={SECRET}&&digits=8&&period=60&"))
    assert (p.secret, p.digits, p.period) == (KEY, 8, 60)


def test_parse_uri_plus_is_a_space_in_the_query():
    """Form encoding: "+" in a parameter is a space, as pyotp (parse_qsl) reads it too."""
    text = uri(f"secret={SECRET}&issuer=ACME+Co", label="ACME%20Co:bob")
    assert otp.parse_uri(text).issuer == "ACME Co"
    assert pyotp.parse_uri(text).issuer == "ACME Co"
    assert otp.parse_uri(uri(f"secret={SECRET}&issuer=A%2BB", label="A+B:bob")).issuer == "A+B"


def test_parse_uri_padded_secret():
    text = uri("secret=GEZDGNBVGY3TQOJQGEZDGNBVGY======")
    assert otp.parse_uri(text).secret == KEY[:16]
    assert pyotp.parse_uri(text).byte_secret() == KEY[:16]


def test_parse_uri_parameter_names_any_case():
    p = otp.parse_uri(uri(f"SECRET={SECRET}&Digits=7"))
    assert (p.secret, p.digits) == (KEY, 7)


def test_parse_uri_weak_secret_only_when_allowed():
    text = uri(f"secret={WEAK}")
    assert refused(otp.parse_uri, text) == WEAK_MESSAGE
    assert otp.parse_uri(text, allow_weak=True).secret == base64.b32decode(WEAK + "===")


# -- parse_uri: refusals, word for word ------------------------------------------------------
@pytest.mark.parametrize("text,message", [
    ("", "otpauth URI is empty"),
    ("  \t ", "otpauth URI is empty"),
    (None, "otpauth URI is empty"),
    (f"otpauth://totp/ACME:bob\n?secret={SECRET}",
     "otpauth URI contains a control character (a newline?)"),
    (f"otpauth://totp[/bob?secret={SECRET}", "not a valid URI"),
    (f"http://totp/bob?secret={SECRET}", "scheme must be otpauth://, not another one"),
    (f"totp/bob?secret={SECRET}", "scheme must be otpauth:// (the text has none)"),
    (f"otpauth://motp/bob?secret={SECRET}",
     "otpauth URI type (after otpauth://) must be totp or hotp"),
    (f"otpauth://totp/bob?secret={SECRET}#x", "otpauth URI has a #fragment"),
    ("otpauth://totp/bob?digits=6", "otpauth URI has no secret parameter"),
    ("otpauth://totp/bob?secret=", "otpauth URI has no secret parameter"),
    (f"otpauth://totp/b%ZZob?secret={SECRET}", "otpauth URI: the label has a malformed %-escape"),
    (f"otpauth://totp/b%FFob?secret={SECRET}",
     "otpauth URI: the label is not valid UTF-8 once %-decoded"),
    (f"otpauth://totp/b%0Aob?secret={SECRET}",
     "otpauth URI: the label contains a control character (a newline?)"),
    (f"otpauth://totp/:bob?secret={SECRET}",
     "otpauth URI: the label's issuer (before ':') is empty"),
    (f"otpauth://totp/%20:bob?secret={SECRET}",
     "otpauth URI: the label's issuer (before ':') is empty"),
    (f"otpauth://totp/ACME:bob:x?secret={SECRET}",
     "the account contains ':', which separates issuer and account in an otpauth:// label"),
    (f"otpauth://totp/bob?secret={SECRET}&issuer=A:B",
     "the issuer contains ':', which separates issuer and account in an otpauth:// label"),
    (f"otpauth://totp/ACME:bob?secret={SECRET}&issuer=",
     "otpauth URI: the issuer parameter is empty (leave it out)"),
    (f"otpauth://totp/ACME:bob?secret={SECRET}&issuer=Other",
     "otpauth URI: the label's issuer (before ':') differs from the issuer parameter"),
    (f"otpauth://totp/bob%20?secret={SECRET}", "the account starts or ends with a space"),
    (f"otpauth://totp/bob?secret={SECRET}&issuer=%20ACME",
     "the issuer starts or ends with a space"),
    (f"otpauth://totp/ACME:?secret={SECRET}", "the account name is empty"),
    (f"otpauth://totp/ACME:b\udcffob?secret={SECRET}", "the account is not valid UTF-8 text"),
    (f"otpauth://totp/?secret={SECRET}", "the account name is empty"),
    (f"otpauth://totp/bob?secret={SECRET}&foo+bar",
     "otpauth URI: query parameter 2 has no '=' and so no value"),
    (f"otpauth://totp/bob?secret{SECRET}", "otpauth URI: the secret parameter has no '=' and so "
                                           "no value"),
    (f"otpauth://totp/bob?issuer=ACME&secret%3D{SECRET}",
     "otpauth URI: the secret parameter has its '=' %-encoded (%3D); write it as '='"),
    (f"otpauth://totp/bob?secret=ok&{SECRET}",
     "otpauth URI: query parameter 2 has no '=' and so no value"),
    (f"otpauth://totp/bob?secret={SECRET}&secret={SECRET}",
     "otpauth URI: the secret parameter appears more than once"),
    (f"otpauth://totp/bob?Digits=6&secret={SECRET}&DIGITS=6",
     "otpauth URI: the digits parameter appears more than once"),
    (f"otpauth://totp/bob?se%ZZcret={SECRET}", "otpauth URI: the query has a malformed %-escape"),
    (f"otpauth://totp/bob?se%FFcret={SECRET}",
     "otpauth URI: the query is not valid UTF-8 once %-decoded"),
    ("otpauth://totp/bob?secret=GEZD%ZZ", "otpauth URI: the secret parameter has a malformed "
                                          "%-escape"),
    (f"otpauth://totp/bob?secret={SECRET}&issuer=%FF",
     "otpauth URI: the issuer parameter is not valid UTF-8 once %-decoded"),
    (f"otpauth://totp/bob?secret={SECRET}&issuer=A%0AB",
     "otpauth URI: the issuer parameter contains a control character"),
    (f"otpauth://totp/bob?secret={SECRET}&algorithm=MD5",
     "otpauth URI: the algorithm parameter is not one hwtoken knows: use SHA1, SHA256 or "
     "SHA512"),
])
def test_parse_uri_refusal_messages(text, message):
    assert refused(otp.parse_uri, text) == message


# -- parse_secret_or_uri ---------------------------------------------------------------------
def test_secret_alone_is_totp_with_defaults():
    assert otp.parse_secret_or_uri(SECRET) == otp.OtpParams("totp", KEY)
    assert otp.parse_secret_or_uri(SECRET, hotp=True) == otp.OtpParams("hotp", KEY)
    assert otp.parse_secret_or_uri(SECRET, counter=0) == otp.OtpParams("hotp", KEY)
    assert otp.parse_secret_or_uri(SECRET, counter=9) == otp.OtpParams("hotp", KEY, counter=9)


def test_secret_or_uri_weak_only_when_allowed():
    weak_key = base64.b32decode(WEAK + "===")
    assert refused(otp.parse_secret_or_uri, WEAK) == WEAK_MESSAGE
    assert otp.parse_secret_or_uri(WEAK, allow_weak=True).secret == weak_key
    text = uri(f"secret={WEAK}")
    assert refused(otp.parse_secret_or_uri, text) == WEAK_MESSAGE
    assert otp.parse_secret_or_uri(text, allow_weak=True).secret == weak_key


def test_secret_or_uri_options_override_the_uri():
    text = uri(f"secret={SECRET}&digits=8&algorithm=SHA256&period=60")
    assert otp.parse_secret_or_uri(text) == otp.OtpParams("totp", KEY, "ACME", "bob", "SHA256",
                                                          8, 60)
    p = otp.parse_secret_or_uri(text, digits=7, algorithm="sha-512", period=15)
    assert (p.digits, p.algorithm, p.period, p.issuer) == (7, "SHA512", 15, "ACME")
    p = otp.parse_secret_or_uri(text, counter=3)
    assert (p.type, p.counter, p.digits) == ("hotp", 3, 8)


@pytest.mark.parametrize("period", [1, 86400])
def test_secret_or_uri_period_range(period):
    assert otp.parse_secret_or_uri(SECRET, period=period).period == period


@pytest.mark.parametrize("period", [0, -30, 86401])
def test_secret_or_uri_period_refused(period):
    assert refused(otp.parse_secret_or_uri, SECRET, period=period) == (
        "period must be from 1 to 86400 seconds")


@pytest.mark.parametrize("counter", [0, 1, 2**64 - 1])
def test_secret_or_uri_counter_range(counter):
    p = otp.parse_secret_or_uri(SECRET, counter=counter)
    assert (p.type, p.counter) == ("hotp", counter)


@pytest.mark.parametrize("counter", [-1, 2**64])
def test_secret_or_uri_counter_refused(counter):
    assert refused(otp.parse_secret_or_uri, SECRET, counter=counter) == (
        "counter must be from 0 to 2^64-1")


@pytest.mark.parametrize("digits", [5, 9, 0])
def test_secret_or_uri_digits_refused(digits):
    assert refused(otp.parse_secret_or_uri, SECRET, digits=digits) == (
        f"digits must be 6, 7 or 8, not {digits}")


# -- check_label and to_uri ------------------------------------------------------------------
@pytest.mark.parametrize("issuer,account,message", [
    ("AC\nME", "bob", "the issuer contains a control character (a newline?)"),
    ("ACME", "bo\x7fb", "the account contains a control character (a newline?)"),
    ("A:B", "bob", "the issuer contains ':', which separates issuer and account in an "
                   "otpauth:// label"),
    ("ACME", "bob:x", "the account contains ':', which separates issuer and account in "
                      "an otpauth:// label"),
    (" ACME", "bob", "the issuer starts or ends with a space"),
    ("ACME", "bob ", "the account starts or ends with a space"),
    ("ACME", "", "the account name is empty"),
    ("", "", "the account name is empty"),
    # lone surrogates (os.fsdecode of bytes that are not UTF-8) cannot be %-encoded: before
    # this check to_uri raised UnicodeEncodeError instead of naming the problem
    ("AC\udcffME", "bob", "the issuer is not valid UTF-8 text"),
    ("ACME", "b\ud800ob", "the account is not valid UTF-8 text"),
])
def test_check_label_and_to_uri_refuse(issuer, account, message):
    assert refused(otp.check_label, issuer, account) == message
    assert refused(otp.OtpParams("totp", KEY, issuer, account).to_uri) == message


def test_check_label_accepts():
    otp.check_label("", "bob")
    otp.check_label("ACME Co", "john@example.com")


def test_to_uri_exact():
    assert otp.OtpParams("totp", KEY, "ACME Co", "john@example.com", "SHA256", 8, 60).to_uri() \
        == (f"otpauth://totp/ACME%20Co:john@example.com?secret={SECRET}&issuer=ACME%20Co"
            "&algorithm=SHA256&digits=8&period=60")
    assert otp.OtpParams("hotp", KEY, "", "bob", counter=7).to_uri() == (
        f"otpauth://hotp/bob?secret={SECRET}&algorithm=SHA1&digits=6&counter=7")
    assert otp.OtpParams("hotp", KEY, "ACME", "bob").to_uri() == (
        f"otpauth://hotp/ACME:bob?secret={SECRET}&issuer=ACME&algorithm=SHA1&digits=6"
        "&counter=0")


def test_to_uri_escapes_the_issuer_parameter_as_pyotp_does():
    """Every reserved character of the issuer is %-escaped in its parameter ("/" too), as
    pyotp's provisioning_uri writes it; the label keeps only "@" and ":" literal."""
    issuer = "R&D/EU+1 x?#%="
    ours = otp.OtpParams("totp", KEY, issuer, "bob@example.com").to_uri()
    theirs = pyotp.TOTP(SECRET, issuer=issuer, name="bob@example.com").provisioning_uri()

    def issuer_param(text: str) -> str:
        return re.search(r"[?&]issuer=([^&]*)", text).group(1)

    assert issuer_param(ours) == issuer_param(theirs) == "R%26D%2FEU%2B1%20x%3F%23%25%3D"
    assert ours.startswith("otpauth://totp/R%26D%2FEU%2B1%20x%3F%23%25%3D:bob@example.com?")
    assert otp.parse_uri(ours).issuer == pyotp.parse_uri(ours).issuer == issuer


# -- describe --------------------------------------------------------------------------------
def test_describe_totp_fields_in_order():
    p = otp.OtpParams("totp", KEY, "ACME", "bob", "SHA256", 8, 60, 5)
    assert list(p.describe().items()) == [
        ("type", "totp"), ("issuer", "ACME"), ("account", "bob"), ("algorithm", "SHA256"),
        ("digits", 8), ("period", 60), ("secret_bits", 160)]
    assert list(p.describe(show_secret=True).items())[-1] == ("secret", SECRET)


def test_describe_hotp_fields_in_order():
    p = otp.OtpParams("hotp", KEY[:10], "", "bob", counter=7, period=60)
    assert list(p.describe().items()) == [
        ("type", "hotp"), ("issuer", ""), ("account", "bob"), ("algorithm", "SHA1"),
        ("digits", 6), ("counter", 7), ("secret_bits", 80)]
    assert p.describe(show_secret=True)["secret"] == otp.encode_secret(KEY[:10])


# -- round trips, and pyotp reading what we write (and the reverse) -------------------------
_NAME_CHARS = st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters=":")
_names = st.text(_NAME_CHARS, max_size=20).filter(lambda s: s == s.strip())
_ALGS = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}


@st.composite
def otp_params(draw) -> otp.OtpParams:
    kind = draw(st.sampled_from(["totp", "hotp"]))
    return otp.OtpParams(
        kind, draw(st.binary(min_size=14, max_size=64)), draw(_names),  # pyotp: >= 112 bits
        draw(_names.filter(bool)), draw(st.sampled_from(sorted(_ALGS))),
        draw(st.sampled_from([6, 7, 8])),
        # pyotp takes periods up to 120 s; ours go to a day
        draw(st.integers(1, 120) | st.integers(1, 86400)) if kind == "totp" else 30,
        draw(st.integers(0, 2**64 - 1)) if kind == "hotp" else 0)


@settings(max_examples=100)
@given(otp_params())
@example(otp.OtpParams("hotp", KEY, "R&D/EU+1", "bob x@example.com", counter=0))
@example(otp.OtpParams("totp", KEY[:15], "", "a%20b+c/d", "SHA512", 7, 1))
def test_uri_round_trip_and_pyotp_reads_it(p):
    text = p.to_uri()
    assert otp.parse_uri(text) == p
    if p.period > 120:
        return  # more than pyotp takes
    theirs = pyotp.parse_uri(text)
    assert theirs.byte_secret() == p.secret
    assert (theirs.name, theirs.issuer) == (p.account, p.issuer or None)
    assert (theirs.digits, theirs.digest) == (p.digits, _ALGS[p.algorithm])
    if p.type == "totp":
        assert isinstance(theirs, pyotp.TOTP) and theirs.interval == p.period
    else:
        assert isinstance(theirs, pyotp.HOTP) and theirs.initial_count == p.counter


@settings(max_examples=100)
@given(otp_params())
def test_parse_uri_reads_pyotp_provisioning_uris(p):
    p = otp.OtpParams(p.type, p.secret, p.issuer, p.account, p.algorithm, p.digits,
                      min(p.period, 120), p.counter)  # pyotp takes periods up to 120 s
    kw = {"digits": p.digits, "digest": _ALGS[p.algorithm]}
    if p.type == "totp":
        gen = pyotp.TOTP(p.secret_b32, interval=p.period, **kw)
        text = gen.provisioning_uri(name=p.account, issuer_name=p.issuer or None)
    else:
        gen = pyotp.HOTP(p.secret_b32, initial_count=p.counter, **kw)
        text = gen.provisioning_uri(name=p.account, issuer_name=p.issuer or None,
                                    initial_count=p.counter)
    assert otp.parse_uri(text) == p


def test_a_plus_in_a_parameter_name_is_a_space_as_in_its_value():
    """'a+b' and 'a%20b' name the same parameter (form encoding), so both at once are one
    parameter given twice."""
    with pytest.raises(InvalidInput) as info:
        otp.parse_uri(f"otpauth://totp/bob?secret={SECRET}&a+b=1&a%20b=2")
    assert str(info.value) == "otpauth URI: the a b parameter appears more than once"


def test_an_unknown_algorithm_option_is_refused_with_what_to_use():
    for refuse in (lambda: otp.parse_secret_or_uri(SECRET, algorithm="MD5"),
                   lambda: otp.TOTP(b"x" * 20, algorithm="MD5")):
        with pytest.raises(InvalidInput) as info:
            refuse()
        assert str(info.value) == "unknown algorithm: use SHA1, SHA256 or SHA512"
