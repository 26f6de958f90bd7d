"""python-yubico's public API, unmodified, against the virtual key over USB/IP + pyusb."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess

import pytest
import usb.core
import usb.util
import yubico
from yubico.yubikey_usb_hid import YubiKeyUSBHIDError

from hwtoken.emulator import VirtualKey
from hwtoken.emulator.applets.otp.hid import press
from hwtoken.emulator.applets.otp.keyboard import decode
from hwtoken.emulator.serve import served
from hwtoken.emulator.transports.pyusb_backend import UsbipBackend, use_backend


@pytest.fixture
def served_key(tmp_path):
    key = VirtualKey.create(tmp_path / "pyyubico.key", serial=31337)
    try:
        with served(key) as srv:
            host, port, busid = srv.address
            with UsbipBackend(host, port, busid=busid) as backend, use_backend(backend):
                yield key
    finally:
        key.close()


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha1).digest()


def test_find_status_serial(served_key):
    yk = yubico.find_yubikey()
    assert yk.version_num() == served_key.version
    assert yk.serial() == 31337
    st = yk.status()
    assert st.pgm_seq == 0 and st.valid_configs() == []


def test_chalresp_variable_and_fixed(served_key):
    yk = yubico.find_yubikey()
    for i in range(8):
        secret = os.urandom(20)
        variable = i % 2 == 0
        slot = 1 + i % 2
        cfg = yk.init_config()
        cfg.mode_challenge_response(secret, type="HMAC", variable=variable)
        cfg.extended_flag("SERIAL_API_VISIBLE", True)
        yk.write_config(cfg, slot=slot)
        assert yk.status().pgm_seq == i + 1
        lengths = (0, 1, 13, 40, 63) if variable else (64,)
        for n in lengths:
            chal = os.urandom(n)
            got = yk.challenge_response(chal, slot=slot, variable=variable)
            assert got == _hmac(secret, chal)
        if variable:  # python-yubico pads with 0xff when a challenge ends in 0x00
            chal = os.urandom(10) + b"\0"
            assert yk.challenge_response(chal, slot=slot) == _hmac(secret, chal)


def _oathtool(secret: bytes, counter: int, digits: int) -> str:
    return subprocess.run(["oathtool", "--hotp", f"--digits={digits}", f"--counter={counter}",
                           secret.hex()], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.parametrize("digits", [6, 8])
def test_hotp_typed_equals_oathtool(served_key, digits):
    yk = yubico.find_yubikey()
    secret = os.urandom(20)
    cfg = yk.init_config()
    cfg.mode_oath_hotp(secret, digits=digits)
    cfg.ticket_flag("APPEND_CR", True)
    yk.write_config(cfg, slot=1)
    assert 1 in yk.status().valid_configs()
    # what the key types: its keyboard reports, read over USB/IP like any USB keyboard
    kbd = usb.core.find(idVendor=0x1050)
    kbd.set_configuration(1)
    try:
        for counter in range(4):
            press(served_key, 1)
            reports = [bytes(kbd.read(0x81, 8, 5000)) for _ in range(2 * (digits + 1))]
            assert decode(reports) == _oathtool(secret, counter, digits) + "\n"
    finally:
        usb.util.dispose_resources(kbd)


def test_access_code_enforced(served_key):
    yk = yubico.find_yubikey()
    secret = os.urandom(20)
    cfg = yk.init_config()
    cfg.mode_challenge_response(secret, type="HMAC")
    cfg.access_key(b"h:a1a2a3a4a5a6")
    yk.write_config(cfg, slot=2)
    seq = yk.status().pgm_seq

    other = yk.init_config()
    other.mode_challenge_response(b"x" * 20, type="HMAC")
    with pytest.raises(YubiKeyUSBHIDError, match="programming failed"):
        yk.write_config(other, slot=2)  # no access code
    wrong = yk.init_config()
    wrong.mode_challenge_response(b"x" * 20, type="HMAC")
    wrong.unlock_key(b"h:000000000001")
    with pytest.raises(YubiKeyUSBHIDError, match="programming failed"):
        yk.write_config(wrong, slot=2)
    assert yk.status().pgm_seq == seq
    assert yk.challenge_response(b"still", slot=2) == _hmac(secret, b"still")

    right = yk.init_config()
    right.mode_challenge_response(b"y" * 20, type="HMAC")
    right.unlock_key(b"h:a1a2a3a4a5a6")
    yk.write_config(right, slot=2)
    assert yk.status().pgm_seq == seq + 1
    assert yk.challenge_response(b"new", slot=2) == _hmac(b"y" * 20, b"new")


def test_zap_and_swap(served_key):
    yk = yubico.find_yubikey()
    cfg = yk.init_config()
    cfg.mode_challenge_response(b"a" * 20, type="HMAC")
    yk.write_config(cfg, slot=1)
    yk.write_config(yk.init_config(swap=True), slot=1)
    assert yk.status().valid_configs() == [2]
    assert yk.challenge_response(b"m", slot=2) == _hmac(b"a" * 20, b"m")
    yk.write_config(yk.init_config(zap=True), slot=2)
    st = yk.status()
    assert st.valid_configs() == [] and st.pgm_seq == 0


def test_state_survives_restart(tmp_path):
    path = tmp_path / "restart.key"
    secret = os.urandom(20)
    key = VirtualKey.create(path)
    try:
        with served(key) as srv, UsbipBackend(*srv.address[:2]) as be, use_backend(be):
            yk = yubico.find_yubikey()
            cfg = yk.init_config()
            cfg.mode_challenge_response(secret, type="HMAC")
            yk.write_config(cfg, slot=1)
            del yk
    finally:
        key.close()
    key = VirtualKey.load(path)
    try:
        with served(key) as srv, UsbipBackend(*srv.address[:2]) as be, use_backend(be):
            yk = yubico.find_yubikey()
            assert yk.status().valid_configs() == [1]
            assert yk.challenge_response(b"after", slot=1) == _hmac(secret, b"after")
    finally:
        key.close()


def test_touch_required_waits_for_presence(tmp_path):
    """CHAL_BTN_TRIG: the key reports RESP_TIMEOUT_WAIT while the user is asked."""
    from hwtoken.emulator import ApproveAfterDelay

    key = VirtualKey.create(tmp_path / "touch.key", presence=ApproveAfterDelay(0.4))
    try:
        with served(key) as srv, UsbipBackend(*srv.address[:2]) as be, use_backend(be):
            yk = yubico.find_yubikey()
            secret = os.urandom(20)
            cfg = yk.init_config()
            cfg.mode_challenge_response(secret, type="HMAC", require_button=True)
            yk.write_config(cfg, slot=1)
            assert yk.challenge_response(b"tap", slot=1) == _hmac(secret, b"tap")
    finally:
        key.close()


def test_yubico_otp_challenge_response(served_key):
    """python-yubico's OTP-mode challenge-response: an AES ticket whose id is the challenge."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    yk = yubico.find_yubikey()
    aes = os.urandom(16)
    cfg = yk.init_config()
    cfg.mode_challenge_response(b"h:" + aes.hex().encode(), type="OTP")
    yk.write_config(cfg, slot=1)
    for _ in range(3):
        chal = os.urandom(6)
        resp = yk.challenge_response(chal, mode="OTP", slot=1)
        dec = Cipher(algorithms.AES(aes), modes.ECB()).decryptor()
        ticket = dec.update(resp) + dec.finalize()
        assert ticket[:6] == chal
        assert yubico.yubico_util.validate_crc16(ticket)


class _Tampered:
    """A python-yubico configuration sent as a frame with a broken CRC or a command no
    YubiKey knows (what a line error or a newer host would send)."""

    def __init__(self, cfg, *, crc_error: bool = False, command: int | None = None) -> None:
        self.cfg = cfg
        self.crc_error = crc_error
        self.command = command

    def version_required(self):
        return self.cfg.version_required()

    def to_frame(self, slot=1):
        frame = self.cfg.to_frame(slot=slot)
        if self.crc_error:
            frame.crc ^= 0x0101
        if self.command is not None:
            frame.command = self.command
        return frame


@pytest.mark.parametrize("how", ["crc", "unknown-command"])
def test_bad_frame_refused_and_slot_unchanged(served_key, how):
    """The key ignores the frame: the programming sequence does not move (python-yubico
    reports the failure), and the slot keeps its secret."""
    yk = yubico.find_yubikey()
    secret = os.urandom(20)
    cfg = yk.init_config()
    cfg.mode_challenge_response(secret, type="HMAC")
    yk.write_config(cfg, slot=2)
    seq = yk.status().pgm_seq

    other = yk.init_config()
    other.mode_challenge_response(b"z" * 20, type="HMAC")
    bad = (_Tampered(other, crc_error=True) if how == "crc"
           else _Tampered(other, command=0x55))
    with pytest.raises(YubiKeyUSBHIDError, match="programming failed"):
        yk.write_config(bad, slot=1)
    st = yk.status()
    assert st.pgm_seq == seq and st.valid_configs() == [2]
    assert yk.challenge_response(b"same", slot=2) == _hmac(secret, b"same")
    # and the intact frame is accepted
    yk.write_config(_Tampered(other), slot=1)
    assert yk.status().pgm_seq == seq + 1
    assert yk.challenge_response(b"new", slot=1) == _hmac(b"z" * 20, b"new")
