"""The OTP applet through yubikit's own OTP protocol code (YubiOtpSession over HID frames)."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess

import pytest
from yubikit.core.otp import CommandRejectedError
from yubikit.yubiotp import (
    HmacSha1SlotConfiguration,
    HotpSlotConfiguration,
    StaticPasswordSlotConfiguration,
    YubiOtpSession,
    YubiOtpSlotConfiguration,
)

from hwtoken.emulator import DenyAlways, VirtualKey
from hwtoken.emulator.otp.hid import OtpHidEngine
from hwtoken.emulator.otp.ticket import modhex


def test_status_and_serial(connection, vkey):
    s = YubiOtpSession(connection)
    assert tuple(s.version) == vkey.version
    assert s.get_serial() == 12345678
    state = s.get_config_state()
    assert not state.is_configured(1) and not state.is_configured(2)


def test_hmac_many_keys_and_challenges(connection):
    s = YubiOtpSession(connection)
    for i in range(40):
        key = os.urandom(20)
        slot = 1 + i % 2
        s.put_configuration(slot, HmacSha1SlotConfiguration(key))
        for n in (0, 1, 7, 32, 63):
            chal = os.urandom(n)
            assert s.calculate_hmac_sha1(slot, chal) == hmac.new(key, chal, hashlib.sha1).digest()
        chal = os.urandom(20) + b"\0"  # ends in the usual pad byte
        assert s.calculate_hmac_sha1(slot, chal) == hmac.new(key, chal, hashlib.sha1).digest()


def test_hmac_fixed_64(connection):
    s = YubiOtpSession(connection)
    key = os.urandom(20)
    s.put_configuration(2, HmacSha1SlotConfiguration(key).lt64(False))
    chal = os.urandom(64)
    assert s.calculate_hmac_sha1(2, chal) == hmac.new(key, chal, hashlib.sha1).digest()


def test_programming_sequence(connection, engine):
    s = YubiOtpSession(connection)
    seq = lambda: engine.get_feature()[4]  # noqa: E731
    assert seq() == 0
    s.put_configuration(1, HmacSha1SlotConfiguration(b"k" * 20))
    assert seq() == 1
    s.put_configuration(2, HmacSha1SlotConfiguration(b"k" * 20))
    assert seq() == 2
    s.delete_slot(2)
    assert seq() == 3
    s.delete_slot(1)  # both empty: the sequence restarts at 0 (yubikit accepts this)
    assert seq() == 0


def test_access_code_enforced(connection, engine):
    s = YubiOtpSession(connection)
    acc = bytes.fromhex("010203040506")
    key = os.urandom(20)
    s.put_configuration(1, HmacSha1SlotConfiguration(key), acc_code=acc)
    before = engine.get_feature()
    with pytest.raises(CommandRejectedError):
        s.put_configuration(1, HmacSha1SlotConfiguration(b"x" * 20))
    with pytest.raises(CommandRejectedError):
        s.put_configuration(1, HmacSha1SlotConfiguration(b"x" * 20), cur_acc_code=b"\1" * 6)
    with pytest.raises(CommandRejectedError):
        s.delete_slot(1)
    with pytest.raises(CommandRejectedError):
        s.swap_slots()
    assert engine.get_feature() == before  # slot and sequence unchanged
    assert s.calculate_hmac_sha1(1, b"abc") == hmac.new(key, b"abc", hashlib.sha1).digest()
    s.delete_slot(1, cur_acc_code=acc)
    assert not s.get_config_state().is_configured(1)


def test_swap(connection):
    s = YubiOtpSession(connection)
    k1, k2 = os.urandom(20), os.urandom(20)
    s.put_configuration(1, HmacSha1SlotConfiguration(k1))
    s.put_configuration(2, HmacSha1SlotConfiguration(k2))
    s.swap_slots()
    assert s.calculate_hmac_sha1(1, b"c") == hmac.new(k2, b"c", hashlib.sha1).digest()
    assert s.calculate_hmac_sha1(2, b"c") == hmac.new(k1, b"c", hashlib.sha1).digest()


def test_empty_slot_refuses_challenge(connection):
    s = YubiOtpSession(connection)
    with pytest.raises(CommandRejectedError):
        s.calculate_hmac_sha1(1, b"abc")


def test_touch_required_denied(tmp_path, connect):
    key = VirtualKey.create(tmp_path / "deny.key", presence=DenyAlways())
    try:
        s = YubiOtpSession(connect(OtpHidEngine(key)))
        s.put_configuration(1, HmacSha1SlotConfiguration(b"k" * 20).require_touch(True))
        assert s.get_config_state().is_configured(1)
        with pytest.raises(Exception, match="touch|No data"):
            s.calculate_hmac_sha1(1, b"abc")
    finally:
        key.close()


def _oathtool(secret: bytes, counter: int, digits: int) -> str:
    out = subprocess.run(["oathtool", "--hotp", f"--digits={digits}", "-c", str(counter),
                          secret.hex()], capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.parametrize("digits", [6, 8])
def test_hotp_touch_matches_oathtool(connection, engine, digits):
    s = YubiOtpSession(connection)
    secret = os.urandom(20)
    s.put_configuration(1, HotpSlotConfiguration(secret).digits8(digits == 8).imf(32))
    state = s.get_config_state()
    assert state.is_touch_triggered(1)
    for counter in range(32, 37):
        typed = engine.touch(1)
        assert typed == _oathtool(secret, counter, digits) + "\n"
    # the keyboard reports carry the same text
    from hwtoken.emulator.otp.keyboard import decode
    reports = []
    while (r := engine.read_keyboard(0)) is not None:
        reports.append(r)
    assert len(reports) == 5 * (digits + 1) * 2
    assert decode(reports).split("\n")[0] == _oathtool(secret, 32, digits)


def test_counter_survives_restart(tmp_path, connect):
    path = tmp_path / "persist.key"
    key = VirtualKey.create(path)
    secret = os.urandom(20)
    s = YubiOtpSession(connect(OtpHidEngine(key)))
    s.put_configuration(2, HotpSlotConfiguration(secret))
    assert key.otp.touch(2) == _oathtool(secret, 0, 6) + "\n"
    key.close()
    key = VirtualKey.load(path)
    try:
        assert key.otp.touch(2) == _oathtool(secret, 1, 6) + "\n"
        assert key.otp.status()[3] == 1
    finally:
        key.close()


def test_yubico_otp_decrypts(connection, engine, vkey):
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from yubikit.core.otp import modhex_decode

    from hwtoken.emulator.otp.frames import check_crc

    s = YubiOtpSession(connection)
    public, uid, aes = b"\x11" * 6, os.urandom(6), os.urandom(16)
    s.put_configuration(1, YubiOtpSlotConfiguration(public, uid, aes))
    seen = []
    for _ in range(3):
        text = engine.touch(1)
        assert text.endswith("\n") and text.startswith(modhex(public))
        dec = Cipher(algorithms.AES(aes), modes.ECB()).decryptor()
        plain = dec.update(modhex_decode(text[12:-1])) + dec.finalize()
        assert check_crc(plain) and plain[:6] == uid
        seen.append((int.from_bytes(plain[6:8], "little"), plain[11]))
    assert seen == [(1, 0), (1, 1), (1, 2)]
    vkey.power_cycle()
    engine.touch(1)
    dec = Cipher(algorithms.AES(aes), modes.ECB()).decryptor()
    assert dec.update(modhex_decode(engine.touch(1)[12:-1]))[6] == 2  # use counter moved


def test_static_password_scancodes(connection, engine):
    s = YubiOtpSession(connection)
    # yubikit's own scan codes for "aB1" (a=0x04, B=0x05|shift, 1=0x1e)
    s.put_configuration(2, StaticPasswordSlotConfiguration(bytes([0x04, 0x85, 0x1E])))
    assert engine.touch(2) == "aB1\n"


def test_wrong_frame_crc_refused(engine, vkey):
    from yubico.yubikey_frame import YubiKeyFrame

    reports = YubiKeyFrame(0x10).to_feature_reports()
    status = engine.get_feature()
    # corrupt the CRC (report 9 holds frame bytes 63..69; CRC low byte is byte 65)
    frame = [bytearray(r) for r in reports]
    frame[-1][2] ^= 0xFF
    for r in frame:
        engine.set_feature(bytes(r))
    assert engine.get_feature() == status  # no response pending, nothing changed
    for r in reports:  # the intact frame is answered: serial pending
        engine.set_feature(r)
    assert engine.get_feature()[7] == 0x40


def test_touch_wait_flag_then_response(tmp_path, connect):
    """While a touch is awaited the status shows RESP_TIMEOUT_WAIT; a dummy write aborts."""
    import time

    from yubico.yubikey_frame import YubiKeyFrame

    from hwtoken.emulator import ApproveAfterDelay

    key = VirtualKey.create(tmp_path / "wait.key", presence=ApproveAfterDelay(0.3))
    try:
        engine = OtpHidEngine(key)
        YubiOtpSession(connect(engine)).put_configuration(
            1, HmacSha1SlotConfiguration(b"k" * 20).require_touch(True))
        frame = YubiKeyFrame(0x30, b"abc".ljust(64, b"\xff"))
        for r in frame.to_feature_reports():
            engine.set_feature(r)
        assert engine.get_feature()[7] & 0x20  # waiting for the user
        deadline = time.monotonic() + 5
        while not engine.get_feature()[7] & 0x40:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        # aborted wait: a dummy write while waiting drops the request
        for r in frame.to_feature_reports():
            engine.set_feature(r)
        engine.set_feature(bytes(7) + b"\x8f")
        deadline = time.monotonic() + 5  # the touch wait ends; no response follows
        while engine.get_feature()[7] & 0x20:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert engine.get_feature()[7] == 0
    finally:
        key.close()


def test_update_changes_only_updatable_flags(connection, engine):
    from yubikit.yubiotp import UpdateConfiguration

    s = YubiOtpSession(connection)
    secret = os.urandom(20)
    s.put_configuration(1, HotpSlotConfiguration(secret))  # APPEND_CR on, ALLOW_UPDATE on
    first = engine.touch(1)
    assert first.endswith("\n")
    s.update_configuration(1, UpdateConfiguration().append_cr(False))
    second = engine.touch(1)
    assert second == _oathtool(secret, 1, 6)  # same secret and counter, no Enter any more
    # a slot programmed without ALLOW_UPDATE refuses updates
    s.put_configuration(2, HotpSlotConfiguration(secret).allow_update(False))
    with pytest.raises(CommandRejectedError):
        s.update_configuration(2, UpdateConfiguration().append_cr(False))


def test_numeric_keypad_codes(connection, engine):
    from hwtoken.emulator.otp.keyboard import decode

    s = YubiOtpSession(connection)
    secret = os.urandom(20)
    s.put_configuration(1, HotpSlotConfiguration(secret).use_numeric(True))
    typed = engine.touch(1)
    reports = [engine.read_keyboard(0) for _ in range(14)]
    assert all(r is not None for r in reports)
    codes = {r[2] for r in reports if r and r[2]}
    assert codes <= set(range(0x59, 0x63)) | {0x28}  # keypad digits, then Enter
    assert decode(reports) == typed == _oathtool(secret, 0, 6) + "\n"


def test_device_info_over_otp_is_the_management_applets(connection, vkey):
    """YK4_CAPABILITIES over the OTP interface answers what management says over CCID."""
    from yubikit.management import ManagementSession

    from hwtoken.emulator.transports.card_direct import DirectCardConnection

    over_otp = ManagementSession(connection).read_device_info()
    over_ccid = ManagementSession(DirectCardConnection(vkey)).read_device_info()
    assert over_otp.serial == 12345678
    assert over_otp == over_ccid
