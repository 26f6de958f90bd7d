"""What a station is told on its command line (provision/options.py), checked in-process:
the plan of modes and places, options only some modes read, access codes, codes typed by
hand, a new inventory's passphrase. Each refusal is InvalidInput (exit 2) with what to do."""

from __future__ import annotations

import pytest

from hwtoken.errors import InvalidInput
from hwtoken.provision.model import Mode, Spec
from hwtoken.provision.options import (
    MAX_SERIAL,
    MIN_PASSPHRASE,
    build_plan,
    check_mode_options,
    check_new_passphrase,
    parse_access_code,
    parse_mode,
    parse_typed_codes,
)

PIV_SLOTS_WORDS = "a PIV slot is 9a, 9c, 9d, 9e or 82..95"


def refused(call, *args, **kwargs) -> str:
    """The message of the InvalidInput ``call`` raises (exit code 2)."""
    with pytest.raises(InvalidInput) as info:
        call(*args, **kwargs)
    assert info.value.exit_code == 2
    return str(info.value)


# -- -m MODE[:PLACE] ---------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "mode", "place"), [
    ("hotp", Mode.HOTP, None),
    ("chalresp:1", Mode.CHALRESP, "1"),
    ("yubiotp:2", Mode.YUBIOTP, "2"),
    ("oath-totp:mail", Mode.OATH_TOTP, "mail"),
    ("oath-hotp:3", Mode.OATH_HOTP, "3"),  # an OATH name may be digits
    ("oath-totp:a:b", Mode.OATH_TOTP, "a:b"),  # split at the first ':' only
    ("piv", Mode.PIV, None),
    ("piv:9C", Mode.PIV, "9c"),
    ("piv:95", Mode.PIV, "95"),
    ("fido", Mode.FIDO, None),
    ("fido:pin", Mode.FIDO, "pin"),
])
def test_a_mode_and_its_place(value, mode, place):
    assert parse_mode(value) == (mode, place)


@pytest.mark.parametrize(("value", "message"), [
    ("totp", "--mode 'totp': use one of hotp, chalresp, yubiotp, oath-totp, oath-hotp, piv, "
             "fido"),
    ("totp:1", "--mode 'totp': use one of hotp, chalresp, yubiotp, oath-totp, oath-hotp, "
               "piv, fido"),
    ("hotp:", "--mode 'hotp:': give the slot or name after ':'"),
    ("oath-totp:", "--mode 'oath-totp:': give the slot or name after ':'"),
    ("hotp:3", "--mode 'hotp:3': an OTP slot is 1 or 2"),
    ("chalresp:0", "--mode 'chalresp:0': an OTP slot is 1 or 2"),
    ("yubiotp:mail", "--mode 'yubiotp:mail': an OTP slot is 1 or 2"),
    ("piv:9b", f"--mode 'piv:9b': {PIV_SLOTS_WORDS}"),
    ("piv:96", f"--mode 'piv:96': {PIV_SLOTS_WORDS}"),
    ("fido:PIN", "--mode 'fido:PIN': the fido mode has one place, its PIN (-m fido or "
                 "-m fido:pin)"),
    ("fido:2", "--mode 'fido:2': the fido mode has one place, its PIN (-m fido or "
               "-m fido:pin)"),
])
def test_a_mode_or_place_that_is_not_is_refused(value, message):
    assert refused(parse_mode, value) == message


# -- the plan ----------------------------------------------------------------------------------
def test_a_plan_without_modes_is_refused():
    assert refused(build_plan, []) == "give at least one --mode"


def test_each_mode_gets_its_default_place_and_the_shared_options():
    plan = build_plan(["hotp", "oath-totp", "piv", "fido"], name="mail")
    assert plan == [Spec(Mode.HOTP, slot=2, name="mail"),
                    Spec(Mode.OATH_TOTP, name="mail"),
                    Spec(Mode.PIV, name="9a"),
                    Spec(Mode.FIDO, name="pin")]
    assert [s.target for s in plan] == ["2", "mail", "9a", "pin"]


def test_the_default_name_is_hwtoken():
    assert build_plan(["oath-hotp"]) == [Spec(Mode.OATH_HOTP, name="hwtoken")]
    assert build_plan(["chalresp"])[0].name == "hwtoken"


def test_digits_touch_and_public_id_go_to_every_spec():
    plan = build_plan(["yubiotp:1", "oath-hotp"], digits=8, touch=True, public_id="random")
    assert plan == [Spec(Mode.YUBIOTP, slot=1, digits=8, touch=True, public_id="random"),
                    Spec(Mode.OATH_HOTP, digits=8, touch=True, public_id="random")]


def test_the_piv_and_fido_options_go_to_their_specs_only():
    plan = build_plan(["piv:9c", "fido"], pin_length=6, algorithm="RSA2048",
                      subject="CN=x {serial}", protect=True)
    assert plan[0] == Spec(Mode.PIV, name="9c", pin_length=6, algorithm="RSA2048",
                           subject="CN=x {serial}", protect=True)
    plan = build_plan(["fido", "oath-totp"], pin_length=10, min_pin_length=6, always_uv=True)
    assert plan == [Spec(Mode.FIDO, name="pin", pin_length=10, min_pin_length=6,
                         always_uv=True),
                    Spec(Mode.OATH_TOTP, name="hwtoken")]


@pytest.mark.parametrize(("modes", "slot", "expected"), [
    (["hotp"], 1, [Spec(Mode.HOTP, slot=1)]),
    (["hotp"], "1", [Spec(Mode.HOTP, slot=1)]),
    (["chalresp"], " 2 ", [Spec(Mode.CHALRESP, slot=2)]),
    (["hotp:2"], 1, [Spec(Mode.HOTP, slot=2)]),  # the place in the mode wins
    (["hotp"], None, [Spec(Mode.HOTP, slot=2)]),
    (["piv"], "9C", [Spec(Mode.PIV, name="9c")]),
    (["piv"], " 82 ", [Spec(Mode.PIV, name="82")]),
    (["piv:9d"], "9c", [Spec(Mode.PIV, name="9d")]),
    # --slot means nothing to an OATH credential or the FIDO2 PIN
    (["oath-totp"], 1, [Spec(Mode.OATH_TOTP, name="hwtoken")]),
    (["fido"], "1", [Spec(Mode.FIDO, name="pin")]),
])
def test_slot_gives_a_place_to_a_mode_given_without_one(modes, slot, expected):
    assert build_plan(modes, slot=slot) == expected


@pytest.mark.parametrize(("mode", "slot", "message"), [
    ("hotp", 3, "--slot 3: an OTP slot is 1 or 2 (give each mode its own place: -m hotp:2)"),
    ("yubiotp", "9a", "--slot 9a: an OTP slot is 1 or 2 (give each mode its own place: "
                      "-m yubiotp:2)"),
    ("piv", "1", f"--slot 1: {PIV_SLOTS_WORDS} (give each mode its own place: -m piv:9a)"),
    ("piv", 2, f"--slot 2: {PIV_SLOTS_WORDS} (give each mode its own place: -m piv:9a)"),
])
def test_a_slot_the_mode_cannot_use_is_refused(mode, slot, message):
    assert refused(build_plan, [mode], slot=slot) == message


def test_two_modes_for_one_place_are_refused():
    assert refused(build_plan, ["hotp", "chalresp:2"]) == (
        "two modes for slot 2 (hotp and chalresp): give each its own slot (-m MODE:SLOT) or "
        "OATH credential name (-m MODE:NAME)")
    assert refused(build_plan, ["oath-totp", "oath-hotp"], name="mail").startswith(
        "two modes for OATH credential 'mail' (oath-totp and oath-hotp)")
    assert [s.target for s in build_plan(["hotp", "chalresp:1"], slot=2)] == ["2", "1"]


def test_a_piv_subject_is_checked_with_the_plan():
    message = refused(build_plan, ["hotp", "piv"], subject="not a name")
    assert message.startswith("--subject 'not a name' is not an RFC 4514 name (CN=...,O=...): ")
    assert refused(build_plan, ["piv"], subject="") == "--subject is empty: give at least CN=..."
    # the subject a plan without piv never uses is not looked at
    assert build_plan(["fido"], pin_length=8) == [Spec(Mode.FIDO, name="pin")]


# -- options only some modes read --------------------------------------------------------------
#: option -> the modes that read it, written out (not read from options.MODE_OPTIONS)
ONLY_FOR = {
    "pin_length": ("piv", "fido"), "algorithm": ("piv",), "subject": ("piv",),
    "protect": ("piv",), "ca_cert": ("piv",), "ca_key": ("piv",), "ca_command": ("piv",),
    "ca_passphrase": ("piv",), "days": ("piv",), "attestation_roots": ("piv",),
    "min_pin_length": ("fido",), "always_uv": ("fido",),
}
PLANS = {"otp": [Spec(Mode.HOTP)], "oath": [Spec(Mode.OATH_TOTP)],
         "piv": [Spec(Mode.PIV, name="9a")], "fido": [Spec(Mode.FIDO, name="pin")]}


@pytest.mark.parametrize("option", sorted(ONLY_FOR))
def test_an_option_no_mode_of_the_plan_reads_is_refused(option):
    modes = ONLY_FOR[option]
    flag = "--" + option.replace("_", "-")
    for application, plan in PLANS.items():
        given = {option, "ca_cert"} if application == "piv" else {option}
        if application in modes:
            check_mode_options(plan, given)
        else:
            assert refused(check_mode_options, plan, given) == (
                f"{flag} is for -m {' and -m '.join(modes)}, which this run does not program")
    # a plan with one mode that reads it takes it
    check_mode_options([Spec(Mode.HOTP), *PLANS[modes[-1]]],
                       {option, "ca_command"} if modes[-1] == "piv" else {option})


def test_the_first_option_in_order_is_named_and_others_are_not_looked_at():
    assert refused(check_mode_options, PLANS["otp"], ["subject", "algorithm"]).startswith(
        "--algorithm is for -m piv,")
    check_mode_options(PLANS["otp"], ["digits", "slot", "touch", "name", "public_id"])
    check_mode_options(PLANS["oath"], [])


def test_a_piv_plan_needs_a_ca():
    message = ("-m piv needs the CA that signs each slot's certificate: --ca-cert with "
               "--ca-key, or --ca-command")
    assert refused(check_mode_options, PLANS["piv"], []) == message
    assert refused(check_mode_options, PLANS["piv"], ["ca_key", "ca_passphrase"]) == message
    assert refused(check_mode_options, [Spec(Mode.HOTP), *PLANS["piv"]], iter(["days"])) \
        == message
    check_mode_options(PLANS["piv"], ["ca_cert", "ca_key"])
    check_mode_options(PLANS["piv"], iter(["ca_command"]))
    check_mode_options(PLANS["fido"], [])


# -- access codes ------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "code"), [
    ("00112233aabb", bytes.fromhex("00112233aabb")),
    ("AABBCCDDEEFF", bytes.fromhex("aabbccddeeff")),
    (" 0011 2233 aabb\n", bytes.fromhex("00112233aabb")),
    ("000000000001", bytes.fromhex("000000000001")),
])
def test_an_access_code_is_12_hex_digits(value, code):
    assert parse_access_code(value) == code


@pytest.mark.parametrize("value", ["0011223344", "00112233aabbcc", "00112233aabg",
                                   "0x112233aabb", "", "00112233aab\u0665"])
def test_an_access_code_of_other_text_is_refused(value):
    assert refused(parse_access_code, value) == "--access-code must be 12 hex digits (6 bytes)"
    assert refused(parse_access_code, value, "--new-access-code") == \
        "--new-access-code must be 12 hex digits (6 bytes)"


def test_an_all_zero_access_code_is_refused():
    assert refused(parse_access_code, "000000000000") == \
        "--access-code: an all-zero access code means no code at all"
    assert refused(parse_access_code, "00 00 00 00 00 00", "--new-access-code") == \
        "--new-access-code: an all-zero access code means no code at all"


# -- codes typed by hand -----------------------------------------------------------------------
def test_typed_codes_by_serial():
    assert parse_typed_codes([]) == {}
    assert parse_typed_codes(["123=456789", "7= 12 ", "123=cccccbdefghi", " 8 =ABC",
                              f"{MAX_SERIAL}=1"]) == {
        123: ["456789", "cccccbdefghi"], 7: ["12"], 8: ["ABC"], MAX_SERIAL: ["1"]}
    assert MAX_SERIAL == 2**63 - 1


@pytest.mark.parametrize("value", ["123", "123456", "abc=123", "=123", "123=", "123=  ",
                                   "-1=123", "1.5=123", f"{2**63}=1"])
def test_a_code_not_given_as_serial_equals_code_is_refused(value):
    assert refused(parse_typed_codes, ["1=2", value]) == (
        f"--code {value!r}: give SERIAL=CODE, the code the key typed when touched")


@pytest.mark.parametrize("value", ["123=12-34", "123=12 34", "123=12=34", "123=\u0661\u0662",
                                   "123=caf\u00e9"])
def test_a_typed_code_is_digits_or_letters(value):
    assert refused(parse_typed_codes, [value]) == (
        f"--code {value!r}: a typed code is digits (HOTP) or modhex letters (Yubico OTP)")


# -- a new inventory's passphrase --------------------------------------------------------------
def test_a_new_inventory_needs_a_passphrase_of_12_characters():
    assert MIN_PASSPHRASE == 12
    assert refused(check_new_passphrase, "x" * 11, allow_weak=False) == (
        "the passphrase of a new inventory needs at least 12 characters (this one has 11): "
        "choose a longer one, use --key-file, or pass --allow-weak")
    assert refused(check_new_passphrase, "", allow_weak=False).endswith(
        "(this one has 0): choose a longer one, use --key-file, or pass --allow-weak")
    check_new_passphrase("x" * 12, allow_weak=False)
    check_new_passphrase("x" * 11, allow_weak=True)
    check_new_passphrase("", allow_weak=True)
