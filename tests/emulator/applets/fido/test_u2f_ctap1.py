"""U2F (CTAP1) through python-fido2's Ctap1 on fido_device(key), and the APDU parser."""

from __future__ import annotations

import hashlib
import os
import struct

import pytest
from cryptography import x509
from fido2.attestation import InvalidSignature
from fido2.ctap1 import ApduError, Ctap1, SignatureData
from fido2.hid import CTAPHID

from hwtoken.emulator import DenyAlways, VirtualKey, fido_device
from hwtoken.emulator.applets.fido import attestation
from hwtoken.emulator.applets.fido.u2f import ApduFormatError, U2fApplet, parse_apdu

APP = hashlib.sha256(b"https://example.com").digest()
OTHER_APP = hashlib.sha256(b"https://evil.example").digest()


def chal() -> bytes:
    return os.urandom(32)


@pytest.fixture
def ctap1(fido_device):
    return Ctap1(fido_device)


def test_version(ctap1):
    assert ctap1.get_version() == "U2F_V2"


def test_register_verifies_with_the_keys_attestation_certificate(ctap1, virtual_key):
    c = chal()
    reg = ctap1.register(c, APP)
    reg.verify(APP, c)  # signature by the certificate's key over the U2F register data
    assert reg.certificate == attestation.attestation_certificate(virtual_key)
    cert = x509.load_der_x509_certificate(reg.certificate)
    assert cert.public_key().public_numbers() == \
        attestation.attestation_key(virtual_key).public_key().public_numbers()
    assert len(reg.public_key) == 65 and reg.public_key[0] == 4
    with pytest.raises(InvalidSignature):
        reg.verify(APP, chal())


def test_authenticate_enforce_signs_with_presence_and_a_rising_counter(ctap1):
    reg = ctap1.register(chal(), APP)
    counters = []
    for _ in range(3):
        c = chal()
        sig = ctap1.authenticate(c, APP, reg.key_handle)
        sig.verify(APP, c, reg.public_key)
        assert sig.user_presence == 1
        counters.append(sig.counter)
    assert counters == sorted(counters) and len(set(counters)) == 3


def test_check_only_answers_6985_for_own_handle_and_6a80_for_others(ctap1):
    reg = ctap1.register(chal(), APP)
    with pytest.raises(ApduError) as e:
        ctap1.authenticate(chal(), APP, reg.key_handle, check_only=True)
    assert e.value.code == 0x6985
    with pytest.raises(ApduError) as e:
        ctap1.authenticate(chal(), OTHER_APP, reg.key_handle, check_only=True)
    assert e.value.code == 0x6A80


def test_dont_enforce_signs_without_presence(ctap1, virtual_key):
    reg = ctap1.register(chal(), APP)
    virtual_key.presence = DenyAlways()
    c = chal()
    data = c + APP + bytes([len(reg.key_handle)]) + reg.key_handle
    resp = ctap1.send_apdu(ins=Ctap1.INS.AUTHENTICATE, p1=0x08, data=data)
    sig = SignatureData(resp)
    assert sig.user_presence == 0
    sig.verify(APP, c, reg.public_key)


def test_no_presence_gives_6985(ctap1, virtual_key):
    reg = ctap1.register(chal(), APP)
    virtual_key.presence = DenyAlways()
    for call in (lambda: ctap1.register(chal(), APP),
                 lambda: ctap1.authenticate(chal(), APP, reg.key_handle)):
        with pytest.raises(ApduError) as e:
            call()
        assert e.value.code == 0x6985


def test_wrong_or_damaged_key_handle_is_6a80(ctap1, tmp_path):
    reg = ctap1.register(chal(), APP)
    damaged = bytearray(reg.key_handle)
    damaged[20] ^= 1
    for app, handle in ((OTHER_APP, reg.key_handle), (APP, bytes(damaged)),
                        (APP, os.urandom(64)), (APP, b"")):
        with pytest.raises(ApduError) as e:
            ctap1.authenticate(chal(), app, handle)
        assert e.value.code == 0x6A80
    # a handle from another key does not open either
    with VirtualKey.create(tmp_path / "other.key") as other:
        dev = fido_device(other)
        try:
            with pytest.raises(ApduError) as e:
                Ctap1(dev).authenticate(chal(), APP, reg.key_handle)
            assert e.value.code == 0x6A80
        finally:
            dev.close()


@pytest.mark.parametrize(
    ("cla", "ins", "p1", "data", "sw"),
    [
        (0x80, 0x03, 0, b"", 0x6E00),
        (0x00, 0x04, 0, b"", 0x6D00),
        (0x00, 0xC0, 0, b"", 0x6D00),
        (0x00, 0x01, 0, bytes(63), 0x6700),
        (0x00, 0x01, 0, bytes(65), 0x6700),
        (0x00, 0x02, 0x03, bytes(64), 0x6700),
        (0x00, 0x02, 0x03, bytes(64) + b"\x05abc", 0x6700),
        (0x00, 0x02, 0x09, bytes(64) + b"\x01a", 0x6A80),
        (0x00, 0x03, 0, b"x", 0x6700),
    ],
)
def test_status_words(ctap1, cla, ins, p1, data, sw):
    with pytest.raises(ApduError) as e:
        ctap1.send_apdu(cla=cla, ins=ins, p1=p1, data=data)
    assert e.value.code == sw


def test_short_apdu_encoding_over_msg(fido_device):
    reg_short = bytes([0, 1, 0, 0, 64]) + os.urandom(32) + APP + b"\x00"
    resp = fido_device.call(CTAPHID.MSG, reg_short)
    assert resp[-2:] == b"\x90\x00" and resp[0] == 0x05
    assert fido_device.call(CTAPHID.MSG, bytes.fromhex("00030000")) == b"U2F_V2\x90\x00"
    assert fido_device.call(CTAPHID.MSG, bytes.fromhex("0003000000")) == b"U2F_V2\x90\x00"
    # Lc says 64 but 10 bytes follow
    assert fido_device.call(CTAPHID.MSG, bytes([0, 1, 0, 0, 64]) + bytes(10)) == b"\x67\x00"
    assert fido_device.call(CTAPHID.MSG, b"\x00\x03") == b"\x67\x00"


def test_counter_is_shared_with_the_key_and_survives_reload(tmp_path):
    path = tmp_path / "k.key"
    key = VirtualKey.create(path)
    dev = fido_device(key)
    reg = Ctap1(dev).register(chal(), APP)
    first = Ctap1(dev).authenticate(chal(), APP, reg.key_handle).counter
    dev.close()
    key.close()
    key = VirtualKey.load(path)
    try:
        dev = fido_device(key)
        c = chal()
        sig = Ctap1(dev).authenticate(c, APP, reg.key_handle)
        sig.verify(APP, c, reg.public_key)
        assert sig.counter > first
        dev.close()
    finally:
        key.close()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("00030000", (b"", 0)),
        ("0003000000", (b"", 256)),
        ("000300000000ff", (b"", 255)),  # case 2 extended
        ("0001000002aabb", (b"\xaa\xbb", 0)),  # case 3 short
        ("0001000002aabb00", (b"\xaa\xbb", 256)),  # case 4 short
        ("00010000000002aabb", (b"\xaa\xbb", 0)),  # case 3 extended
        ("00010000000002aabb0000", (b"\xaa\xbb", 65536)),  # case 4 extended
        ("00030000000000" + "0000", (b"", 65536)),  # python-fido2's empty-data form
    ],
)
def test_parse_apdu_cases(raw, expected):
    apdu = parse_apdu(bytes.fromhex(raw))
    assert (apdu.data, apdu.le) == expected


@pytest.mark.parametrize("raw", ["", "000300", "0001000003aabb", "0001000000000003aabb",
                                 "00010000000002aa"])
def test_parse_apdu_rejects_inconsistent_lengths(raw):
    with pytest.raises(ApduFormatError):
        parse_apdu(bytes.fromhex(raw))


def test_applet_process_is_pure_bytes(virtual_key):
    applet = U2fApplet(virtual_key)
    assert applet.process(bytes.fromhex("00030000")) == b"U2F_V2\x90\x00"
    resp = applet.process(bytes([0, 1, 0, 0, 64]) + bytes(64))
    assert resp[-2:] == b"\x90\x00"
    handle_len = resp[66]
    handle = resp[67:67 + handle_len]
    data = bytes(32) + bytes(32) + bytes([handle_len]) + handle
    resp2 = applet.process(bytes([0, 2, 3, 0, len(data)]) + data)
    assert resp2[-2:] == b"\x90\x00"
    assert struct.unpack(">I", resp2[1:5])[0] >= 1
