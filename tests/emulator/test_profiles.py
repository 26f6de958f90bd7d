"""The profile table's own helpers: ``--aaguid`` parsing, profile lookup by name and the
summary ``hwtoken emulate profiles --json`` prints, with the exact values and messages."""

from __future__ import annotations

import uuid

import pytest

from hwtoken.emulator.profiles import (
    AAGUID_YUBIKEY_5_NFC_57,
    PROFILES,
    get_profile,
    parse_aaguid,
)
from hwtoken.errors import InvalidInput

YK5 = uuid.UUID(AAGUID_YUBIKEY_5_NFC_57)


@pytest.mark.parametrize("given", [
    YK5, YK5.bytes, AAGUID_YUBIKEY_5_NFC_57, AAGUID_YUBIKEY_5_NFC_57.upper(), YK5.hex,
    "{" + AAGUID_YUBIKEY_5_NFC_57 + "}", "  " + AAGUID_YUBIKEY_5_NFC_57 + "\n",
])
def test_an_aaguid_in_any_usual_form(given):
    assert parse_aaguid(given) == YK5.bytes


@pytest.mark.parametrize("given", ["random", "RANDOM", " Random "])
def test_random_is_a_fresh_version_4_uuid(given):
    first, second = parse_aaguid(given), parse_aaguid(given)
    assert len(first) == 16 and first != second
    assert uuid.UUID(bytes=first).version == 4


@pytest.mark.parametrize("size", [0, 15, 17])
def test_aaguid_bytes_must_be_16(size):
    with pytest.raises(InvalidInput) as e:
        parse_aaguid(bytes(size))
    assert str(e.value) == f"an AAGUID is 16 bytes, not {size}"


@pytest.mark.parametrize("given", ["nan", "", "random-ish", "1" * 31, "1" * 33])
def test_text_that_is_no_uuid(given):
    with pytest.raises(InvalidInput) as e:
        parse_aaguid(given)
    assert str(e.value) == (f"{given!r} is not an AAGUID: give a UUID such as "
                            f"{AAGUID_YUBIKEY_5_NFC_57}, or 'random'")


def test_a_long_wrong_aaguid_is_quoted_in_60_characters():
    with pytest.raises(InvalidInput) as e:
        parse_aaguid("x" * 59 + "yz")
    assert str(e.value).startswith(repr("x" * 59 + "y") + " is not an AAGUID")


def test_profiles_by_name():
    assert list(PROFILES) == ["yubikey-5", "security-key", "u2f-only", "latest", "yubikey-bio"]
    for name, profile in PROFILES.items():
        assert get_profile(name) is profile and profile.name == name


@pytest.mark.parametrize("name", ["yubikey-99", "", None, ["latest"]])
def test_an_unknown_profile_names_the_choices(name):
    with pytest.raises(InvalidInput) as e:
        get_profile(name)
    assert str(e.value) == (f"unknown key profile {name!r}; choose one of yubikey-5, "
                            "security-key, u2f-only, latest, yubikey-bio")


def test_the_summary_of_a_yubikey_5():
    assert PROFILES["yubikey-5"].describe() == {
        "name": "yubikey-5",
        "model": "YubiKey 5 NFC, firmware 5.7",
        "summary": "FIDO2 (CTAP 2.1) + U2F, OTP slots, OATH, PIV, OpenPGP, YubiHSM Auth, "
                   "SCP03/SCP11, management",
        "firmware": "5.7.4",
        "aaguid": AAGUID_YUBIKEY_5_NFC_57,
        "applets": ["fido", "hsmauth", "management", "ndef", "oath", "openpgp", "otp", "piv",
                    "securitydomain"],
        "transports": ["nfc", "usb"],
        "usb": {"vendor_id": "1050", "product_id": "0407", "product": "YubiKey OTP+FIDO+CCID",
                "interfaces": ["otp", "fido", "ccid"]},
        "fido": {"versions": ["U2F_V2", "FIDO_2_0", "FIDO_2_1_PRE", "FIDO_2_1"],
                 "extensions": ["credBlob", "credProtect", "hmac-secret", "largeBlobKey",
                                "minPinLength"],
                 "algorithms": ["ES256", "EdDSA", "ES384"]},
    }


def test_the_summary_of_a_model_without_an_aaguid():
    u2f = PROFILES["u2f-only"].describe()
    assert u2f["aaguid"] == "00000000-0000-0000-0000-000000000000"
    assert (u2f["firmware"], u2f["transports"]) == ("4.1.8", ["usb"])
    assert u2f["fido"] == {"versions": ["U2F_V2"], "extensions": [], "algorithms": ["ES256"]}
