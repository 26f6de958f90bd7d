"""``hwtoken.yubikey`` as a Python library, on virtual keys through python-yubico."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

import pyotp
import pytest

from hwtoken.emulator import VirtualKey
from hwtoken.errors import CheckFailed, DeviceError, InvalidInput
from hwtoken.yubikey import open_virtual_key, parse_access_code, parse_b32_secret
from hwtoken.yubikey.secrets import fit_hmac_key, parse_hex_secret


@pytest.fixture
def yk(tmp_path):
    with VirtualKey.create(tmp_path / "lib.key", serial=99) as vkey, \
            open_virtual_key(vkey, device="emu:lib") as key:
        yield key


def test_info_and_slots(yk):
    info = yk.info()
    assert info.serial == 99 and info.virtual and info.firmware == "5.7.4"
    yk.program_chalresp(1, b"s" * 20)
    yk.program_hotp(2, b"h" * 20)
    slots = yk.info().slots
    assert slots[1].kind == "challenge-response"
    assert slots[2].kind == "keyboard (types on touch)"


def test_overwrite_guard_and_force(yk):
    yk.program_chalresp(1, b"a" * 20)
    with pytest.raises(InvalidInput, match="already programmed"):
        yk.program_chalresp(1, b"b" * 20)
    yk.program_chalresp(1, b"b" * 20, force=True)
    assert yk.calculate(1, b"x") == hmac.new(b"b" * 20, b"x", hashlib.sha1).digest()


def test_hotp_initial_counter_and_short_secret(yk):
    secret = os.urandom(16)  # shorter than 20 bytes: zero padding keeps the HMAC
    yk.program_hotp(1, secret, digits=6, imf=48)
    ref = pyotp.HOTP(base64.b32encode(secret).decode())
    assert [yk.touch(1) for _ in range(3)] == [ref.at(c) + "\n" for c in (48, 49, 50)]
    with pytest.raises(InvalidInput, match="types on touch"):
        yk.calculate(1, b"x")


def test_hotp_without_enter(yk):
    secret = os.urandom(20)
    yk.program_hotp(2, secret, digits=8, append_cr=False)
    assert yk.touch(2) == pyotp.HOTP(base64.b32encode(secret).decode(), digits=8).at(0)


def test_access_code_change_and_removal(yk):
    a, b = parse_access_code("010203040506"), parse_access_code("0a0b0c0d0e0f")
    yk.program_chalresp(1, b"k" * 20, access_code=a)
    with pytest.raises(CheckFailed):
        yk.program_chalresp(1, b"k" * 20, access_code=b, force=True)
    yk.program_chalresp(1, b"k" * 20, access_code=b, current_access_code=a, force=True)
    with pytest.raises(CheckFailed):
        yk.delete(1, current_access_code=a)
    yk.program_chalresp(1, b"k" * 20, access_code=bytes(6), current_access_code=b, force=True)
    yk.delete(1)  # no longer protected
    assert not yk.is_programmed(1)


def test_touch_on_empty_and_chalresp_slots(yk):
    assert yk.touch(1) == ""
    yk.program_chalresp(1, b"k" * 20)
    assert yk.touch(1) == ""
    with pytest.raises(InvalidInput, match="not programmed"):
        yk.calculate(2, b"x")


def test_secret_parsing():
    assert parse_b32_secret("jbsw y3dp-ehpk3pxp") == base64.b32decode("JBSWY3DPEHPK3PXP").ljust(
        20, b"\0")
    assert fit_hmac_key(b"x" * 100) == hashlib.sha1(b"x" * 100).digest()
    for bad in (b"", b"y" * 30):
        with pytest.raises(InvalidInput):
            fit_hmac_key(bad)
    with pytest.raises(InvalidInput, match="not valid base32"):
        parse_b32_secret("not base32!")
    with pytest.raises(InvalidInput, match="the secret is empty"):
        parse_b32_secret(" -= ")
    with pytest.raises(InvalidInput):
        parse_hex_secret("xyz")
    with pytest.raises(InvalidInput):
        parse_access_code("0102")


def test_real_key_absent_is_a_clean_error():
    """Without a plugged-in key (or libusb) open_key says so, as a DeviceError."""
    from hwtoken.yubikey import open_key

    with pytest.raises(DeviceError), open_key("424242"):
        pass
