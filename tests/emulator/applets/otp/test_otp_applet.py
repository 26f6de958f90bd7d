"""The OTP applet through yubikit's own OTP protocol code (YubiOtpSession over HID frames)."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess

import pytest
from yubikit.core import TimeoutError as TouchTimeout
from yubikit.core.otp import CommandRejectedError
from yubikit.yubiotp import (
    HmacSha1SlotConfiguration,
    HotpSlotConfiguration,
    StaticPasswordSlotConfiguration,
    YubiOtpSession,
    YubiOtpSlotConfiguration,
)

from hwtoken.emulator import DenyAlways, VirtualKey
from hwtoken.emulator.applets.otp.hid import OtpHidEngine
from hwtoken.emulator.applets.otp.ticket import modhex

#: what yubikit raises when the key refuses a touch: it saw the key wait for the touch and
#: gave up, or saw the wait already over with no answer (the refusal is immediate)
REFUSED_TOUCH = (TouchTimeout, CommandRejectedError)
REFUSED_TOUCH_MESSAGE = "^(Timed out waiting for touch|No data)$"


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
        with pytest.raises(REFUSED_TOUCH, match=REFUSED_TOUCH_MESSAGE):
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
    from hwtoken.emulator.applets.otp.keyboard import decode
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

    from hwtoken.emulator.applets.otp.frames import check_crc

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
    from hwtoken.emulator.applets.otp.keyboard import decode

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


# -- what a client observes, slot by slot (each case found unchecked by mutation testing) -------
def _decrypted_ticket(ticket: bytes, aes: bytes) -> bytes:
    """A 16-byte Yubico OTP ticket decrypted with the slot's AES key; its CRC must hold."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    from hwtoken.emulator.applets.otp.frames import check_crc

    dec = Cipher(algorithms.AES(aes), modes.ECB()).decryptor()
    plain = dec.update(ticket) + dec.finalize()
    assert check_crc(plain)
    return plain


def _plain_ticket(text: str, aes: bytes) -> bytes:
    """The decrypted 16-byte ticket of a typed Yubico OTP (public id of 6 bytes)."""
    from yubikit.core.otp import modhex_decode

    return _decrypted_ticket(modhex_decode(text.strip()[12:]), aes)


def _counters(plain: bytes) -> tuple[int, int]:
    """(use counter, session counter) of a ticket."""
    return int.from_bytes(plain[6:8], "little"), plain[11]


def _protocol(connection):
    """yubikit's OTP protocol layer: the frames its sessions send, for commands they lack."""
    from yubikit.core.otp import OtpProtocol

    return OtpProtocol(connection)


def _pyyubico_config(**mode) -> bytes:
    """A 52-byte configuration built by python-yubico (modes yubikit cannot program)."""
    from yubico.yubikey_config import YubiKeyConfig

    cfg = YubiKeyConfig(ykver=(5, 7))
    cfg.mode_challenge_response(**mode)
    return cfg.to_string()


def test_status_reports_every_slot_and_the_led(connection):
    """touchLevel: valid bits of both slots, touch bits of keyboard slots, LED_INV only when
    a slot asks for it (yubikit's ConfigState reads exactly these bits)."""
    s = YubiOtpSession(connection)
    s.put_configuration(1, HotpSlotConfiguration(os.urandom(20)))
    s.put_configuration(2, HmacSha1SlotConfiguration(os.urandom(20)))
    state = s.get_config_state()
    assert state.is_configured(1) and state.is_configured(2)
    assert state.is_touch_triggered(1) and not state.is_touch_triggered(2)
    assert not state.is_led_inverted()
    s.put_configuration(2, HmacSha1SlotConfiguration(os.urandom(20)).invert_led(True))
    state = s.get_config_state()
    assert state.is_led_inverted()
    assert state.is_configured(1) and state.is_configured(2) and state.is_touch_triggered(1)


def test_describe_counts_writes_and_names_modes(vkey, connection):
    s = YubiOtpSession(connection)
    s.put_configuration(2, HotpSlotConfiguration(os.urandom(20)).digits8(True),
                        acc_code=b"\1" * 6)
    assert vkey.otp.describe() == {
        "pgm_seq": 1,
        "slots": {"1": None, "2": {"mode": "oath-hotp", "access_code": True, "digits": 8}}}


def test_serial_above_two_to_the_31(tmp_path, connect):
    """The serial is an unsigned 32-bit number (the key accepts up to 4294967295)."""
    key = VirtualKey.create(tmp_path / "big.key", serial=4_000_000_000)
    try:
        assert YubiOtpSession(connect(OtpHidEngine(key))).get_serial() == 4_000_000_000
    finally:
        key.close()


def test_deleting_an_empty_slot_is_accepted(connection):
    """A zero configuration for an empty slot is a write like any other: the sequence moves
    and the other slot is untouched."""
    s = YubiOtpSession(connection)
    key = os.urandom(20)
    s.put_configuration(1, HmacSha1SlotConfiguration(key))
    s.delete_slot(2)  # yubikit raises unless the programming sequence moved
    assert s.calculate_hmac_sha1(1, b"x") == hmac.new(key, b"x", hashlib.sha1).digest()


@pytest.mark.parametrize("command", [0x01, 0x04])  # CONFIG_1, UPDATE_1
def test_configuration_with_a_bad_crc_is_refused(connection, engine, command):
    """The 52-byte configuration carries its own CRC; a corrupt one changes nothing and the
    sequence stays (with a slot programmed, so that it is not 0 anyway)."""
    from yubikit.core.otp import CommandRejectedError as Rejected

    s = YubiOtpSession(connection)
    key = os.urandom(20)
    s.put_configuration(1, HmacSha1SlotConfiguration(key))
    before = engine.get_feature()
    bad = bytearray(HmacSha1SlotConfiguration(b"z" * 20).get_config())
    bad[20] ^= 1
    with pytest.raises(Rejected):
        _protocol(connection).send_and_receive(command, bytes(bad) + bytes(6))
    assert engine.get_feature() == before
    assert s.calculate_hmac_sha1(1, b"x") == hmac.new(key, b"x", hashlib.sha1).digest()


def test_swap_moves_a_slot_into_an_empty_one(connection):
    s = YubiOtpSession(connection)
    key = os.urandom(20)
    s.put_configuration(2, HmacSha1SlotConfiguration(key))
    s.swap_slots()
    state = s.get_config_state()
    assert state.is_configured(1) and not state.is_configured(2)
    assert s.calculate_hmac_sha1(1, b"x") == hmac.new(key, b"x", hashlib.sha1).digest()


# PROTECT_CFG2 (ykdef.h): "block update of config 2 unless config 2 is configured and has
# this bit set" -- set in slot 1, it freezes slot 2 until slot 2 opts in itself.
def test_protect_cfg2_in_slot_1_freezes_slot_2(connection, engine):
    from yubikit.yubiotp import UpdateConfiguration

    s = YubiOtpSession(connection)
    k2 = os.urandom(20)
    s.put_configuration(2, HmacSha1SlotConfiguration(k2))
    s.put_configuration(1, HmacSha1SlotConfiguration(os.urandom(20)).protect_slot2(True))
    before = engine.get_feature()
    for change in (lambda: s.put_configuration(2, HmacSha1SlotConfiguration(b"z" * 20)),
                   lambda: s.put_configuration(
                       2, HmacSha1SlotConfiguration(b"z" * 20).protect_slot2(True)),
                   lambda: s.update_configuration(2, UpdateConfiguration()),
                   lambda: s.delete_slot(2),
                   s.swap_slots):
        with pytest.raises(CommandRejectedError):
            change()
    assert engine.get_feature() == before
    assert s.calculate_hmac_sha1(2, b"x") == hmac.new(k2, b"x", hashlib.sha1).digest()
    # slot 1 itself stays writable, and once it drops the flag slot 2 is free again
    s.put_configuration(1, HmacSha1SlotConfiguration(os.urandom(20)))
    s.delete_slot(2)
    assert not s.get_config_state().is_configured(2)


def test_protect_cfg2_when_slot_2_is_empty(connection):
    s = YubiOtpSession(connection)
    s.put_configuration(1, HmacSha1SlotConfiguration(os.urandom(20)).protect_slot2(True))
    with pytest.raises(CommandRejectedError):
        s.put_configuration(2, HmacSha1SlotConfiguration(b"z" * 20).protect_slot2(True))
    assert not s.get_config_state().is_configured(2)


def test_protect_cfg2_in_both_slots_leaves_slot_2_writable(connection):
    s = YubiOtpSession(connection)
    s.put_configuration(2, HmacSha1SlotConfiguration(os.urandom(20)).protect_slot2(True))
    s.put_configuration(1, HmacSha1SlotConfiguration(os.urandom(20)).protect_slot2(True))
    k2 = os.urandom(20)
    s.put_configuration(2, HmacSha1SlotConfiguration(k2).protect_slot2(True))
    assert s.calculate_hmac_sha1(2, b"x") == hmac.new(k2, b"x", hashlib.sha1).digest()
    s.swap_slots()
    assert s.calculate_hmac_sha1(1, b"x") == hmac.new(k2, b"x", hashlib.sha1).digest()


def test_update_keeps_the_mode_and_changes_only_update_flags(tmp_path, connect):
    """UPDATE needs the access code; it changes the ticket flags of TKT_UPDATE_MASK, the two
    CFG_UPDATE_MASK bits (for challenge-response: LT64 and button trigger) and any EXT
    flag, never the mode or the secret. Each update replaces all of those bits, so LT64
    (PACING_10MS, 0x04) is given every time to keep variable-length challenges. A key that
    never gets a touch shows when the button trigger is on."""
    from yubikit.yubiotp import UpdateConfiguration

    key = VirtualKey.create(tmp_path / "upd.key", presence=DenyAlways())
    try:
        s = YubiOtpSession(connect(OtpHidEngine(key)))
        secret, acc = os.urandom(20), b"\7" * 6
        s.put_configuration(1, HmacSha1SlotConfiguration(secret), acc_code=acc)
        expect = hmac.new(secret, b"c", hashlib.sha1).digest()
        lt64 = UpdateConfiguration().pacing(pacing_10ms=True)
        for wrong in (None, b"\6" * 6):
            with pytest.raises(CommandRejectedError):
                s.update_configuration(1, lt64.invert_led(True),
                                       acc_code=acc, cur_acc_code=wrong)
        assert not s.get_config_state().is_led_inverted()

        s.update_configuration(1, lt64.invert_led(True), acc_code=acc, cur_acc_code=acc)
        assert s.get_config_state().is_led_inverted()
        assert s.calculate_hmac_sha1(1, b"c") == expect  # still HMAC, no touch asked

        s.update_configuration(1, UpdateConfiguration().pacing(True, True),
                               acc_code=acc, cur_acc_code=acc)  # 0x08: CHAL_BTN_TRIG
        assert not s.get_config_state().is_led_inverted()  # the update cleared LED_INV
        with pytest.raises(REFUSED_TOUCH, match=REFUSED_TOUCH_MESSAGE):
            s.calculate_hmac_sha1(1, b"c")

        s.update_configuration(1, lt64.invert_led(False).allow_update(False), acc_code=acc,
                               cur_acc_code=acc)
        assert s.calculate_hmac_sha1(1, b"c") == expect  # button trigger off again
        with pytest.raises(CommandRejectedError):  # ALLOW_UPDATE was updated away
            s.update_configuration(1, UpdateConfiguration(), acc_code=acc, cur_acc_code=acc)
    finally:
        key.close()


def test_update_of_slot_2(connection, engine):
    from yubikit.yubiotp import UpdateConfiguration

    s = YubiOtpSession(connection)
    secret = os.urandom(20)
    s.put_configuration(2, HotpSlotConfiguration(secret))
    s.update_configuration(2, UpdateConfiguration().append_cr(False))
    assert engine.touch(2) == _oathtool(secret, 0, 6)


def test_ndef_of_a_protected_slot_2(vkey):
    """NDEF_2 checks slot 2's access code (yubikit appends the current one)."""
    from yubikit.core import TRANSPORT

    from hwtoken.emulator.transports.card_direct import DirectCardConnection

    s = YubiOtpSession(DirectCardConnection(vkey, TRANSPORT.NFC))
    s.put_configuration(2, HmacSha1SlotConfiguration(os.urandom(20)), acc_code=b"\4" * 6)
    with pytest.raises(CommandRejectedError):
        s.set_ndef_configuration(2, "https://example.com/b", cur_acc_code=b"\5" * 6)
    s.set_ndef_configuration(2, "https://example.com/b", cur_acc_code=b"\4" * 6)


def test_scan_map_and_device_config_writes_are_accepted(connection, engine, vkey):
    """SCAN_MAP (yubikit's set_scan_map) and DEVICE_CONFIG (what yubikit's management sends
    over OTP to set the USB mode of a YubiKey before 5) move the programming sequence, and
    DEVICE_CONFIG sets the mode: its interfaces, and a challenge-response timeout of 0
    reads back as the default 15."""
    import struct

    from yubikit.core import TRANSPORT
    from yubikit.management import CAPABILITY, ManagementSession

    s = YubiOtpSession(connection)
    s.put_configuration(1, HmacSha1SlotConfiguration(os.urandom(20)))
    seq = engine.get_feature()[4]
    s.set_scan_map(bytes(range(4, 49)))
    assert engine.get_feature()[4] == seq + 1
    _protocol(connection).send_and_receive(0x11, struct.pack("<BBH", 4, 0, 0))  # OTP+FIDO
    assert engine.get_feature()[4] == seq + 2
    info = ManagementSession(connection).read_device_info()
    assert info.config.enabled_capabilities[TRANSPORT.USB] == (
        CAPABILITY.OTP | CAPABILITY.U2F | CAPABILITY.FIDO2)
    assert info.config.challenge_response_timeout == 15


def test_device_info_is_written_over_the_otp_interface(connection, engine, vkey):
    """SET DEVICE INFO (slot command 0x15): yubikit's ManagementSession over an OTP
    connection writes the device config as over CCID, on a key whose slots are empty too
    (the sequence moves 0 -> 1, the only answer yubikit takes as success)."""
    from yubikit.core import TRANSPORT
    from yubikit.core.otp import CommandRejectedError
    from yubikit.management import CAPABILITY, DeviceConfig, ManagementSession

    from hwtoken.emulator.transports.card_direct import DirectCardConnection

    assert engine.get_feature()[4] == 0
    mgmt = ManagementSession(connection)
    mgmt.write_device_config(DeviceConfig({TRANSPORT.NFC: CAPABILITY.OTP | CAPABILITY.FIDO2},
                                          challenge_response_timeout=7))
    assert engine.get_feature()[4] == 1
    over_ccid = ManagementSession(DirectCardConnection(vkey)).read_device_info()
    assert over_ccid.config.enabled_capabilities[TRANSPORT.NFC] == (
        CAPABILITY.OTP | CAPABILITY.FIDO2)
    assert over_ccid.config.challenge_response_timeout == 7
    lock = bytes(range(16))
    mgmt.write_device_config(new_lock_code=lock)
    with pytest.raises(CommandRejectedError):  # locked: refused, the sequence stays
        mgmt.write_device_config(DeviceConfig(challenge_response_timeout=9))
    assert engine.get_feature()[4] == 2
    mgmt.write_device_config(DeviceConfig(challenge_response_timeout=9), cur_lock_code=lock)
    assert mgmt.read_device_info().config.challenge_response_timeout == 9


def test_touching_a_challenge_response_or_empty_slot_types_nothing(connection, engine):
    s = YubiOtpSession(connection)
    s.put_configuration(1, HmacSha1SlotConfiguration(os.urandom(20)))
    assert engine.touch(1) == "" and engine.touch(2) == ""
    assert engine.read_keyboard(0) is None


def test_hotp_types_top_row_digits_unless_numeric_keypad(connection, engine):
    s = YubiOtpSession(connection)
    s.put_configuration(1, HotpSlotConfiguration(os.urandom(20)))
    engine.touch(1)
    codes = set()
    while (r := engine.read_keyboard(0)) is not None:
        codes.add(r[2])
    assert codes - {0} <= set(range(0x1E, 0x28)) | {0x28}  # 1..9, 0, then Enter


def test_static_password_without_enter(connection, engine):
    s = YubiOtpSession(connection)
    s.put_configuration(
        2, StaticPasswordSlotConfiguration(bytes([0x04, 0x85, 0x1E])).append_cr(False))
    assert engine.touch(2) == "aB1"


def test_static_ticket_types_the_same_ticket(connection, engine):
    """A static ticket: public id, then the AES ticket of the uid with zero counters, every
    time."""
    from yubikit.yubiotp import StaticTicketSlotConfiguration

    s = YubiOtpSession(connection)
    public, uid, aes = b"\x33" * 6, os.urandom(6), os.urandom(16)
    s.put_configuration(1, StaticTicketSlotConfiguration(public, uid, aes))
    first = engine.touch(1)
    assert first == engine.touch(1) and first.startswith(modhex(public))
    plain = _plain_ticket(first, aes)
    assert plain[:6] == uid and plain[6:14] == bytes(8)


def test_yubico_otp_session_counter_wraps_into_the_use_counter(vkey, connection, engine):
    """The session counter is one byte: after 0..255 the next OTP moves the use counter and
    the session starts again at 0, so no two OTPs ever share their counters."""
    s = YubiOtpSession(connection)
    aes = os.urandom(16)
    s.put_configuration(1, YubiOtpSlotConfiguration(b"\x11" * 6, os.urandom(6), aes))
    seen = [_counters(_plain_ticket(vkey.otp.touch(1), aes)) for _ in range(258)]
    assert seen == [(1, n) for n in range(256)] + [(2, 0), (2, 1)]


def test_yubico_otp_use_counter_stops_at_0x7fff(vkey, connection):
    """The use counter has 15 bits (0x8000 is the ticket's 'triggered by keyboard LED'
    flag): a worn key keeps typing 0x7fff. The wear is set in the key's state."""
    s = YubiOtpSession(connection)
    aes = os.urandom(16)
    s.put_configuration(1, YubiOtpSlotConfiguration(b"\x11" * 6, os.urandom(6), aes))
    vkey.store.section("otp")["slots"]["1"]["use_ctr"] = 0x7FFE
    seen = []
    for _ in range(2):
        vkey.power_cycle()
        seen.append(_counters(_plain_ticket(vkey.otp.touch(1), aes)))
    assert seen == [(0x7FFF, 0), (0x7FFF, 0)]


def test_reprogrammed_yubico_otp_slot_counts_from_the_start(vkey, connection):
    s = YubiOtpSession(connection)
    aes = os.urandom(16)
    cfg = YubiOtpSlotConfiguration(b"\x11" * 6, os.urandom(6), aes)
    s.put_configuration(1, cfg)
    for _ in range(3):
        vkey.otp.touch(1)
    s.put_configuration(1, cfg)
    assert _counters(_plain_ticket(vkey.otp.touch(1), aes)) == (1, 0)


def test_yubico_otp_timestamp_runs_at_8_hz(vkey, connection, monkeypatch):
    """The ticket's 24-bit timestamp counts 8 per second from a random start at power-up
    (the applet's clock is replaced, so no real time passes)."""
    import types

    import hwtoken.emulator.applets.otp.applet as applet_module

    s = YubiOtpSession(connection)
    aes = os.urandom(16)
    s.put_configuration(1, YubiOtpSlotConfiguration(b"\x11" * 6, os.urandom(6), aes))
    now = [1000.0]
    monkeypatch.setattr(applet_module, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    vkey.power_cycle()
    stamps = []
    for step in (0.0, 10.0, 0.5):
        now[0] += step
        stamps.append(int.from_bytes(_plain_ticket(vkey.otp.touch(1), aes)[8:11], "little"))
    assert [(b - a) % (1 << 24) for a, b in zip(stamps, stamps[1:])] == [80, 4]


def test_yubico_otp_challenge_response_in_either_slot(vkey, connection):
    """CHAL_OTP_2 answers from slot 2; a slot in another mode or an empty one refuses."""
    from yubikit.core.otp import CommandRejectedError as Rejected

    proto = _protocol(connection)
    aes = os.urandom(16)
    proto.send_and_receive(0x03, _pyyubico_config(secret=b"h:" + aes.hex().encode(),
                                                   type="OTP") + bytes(6))
    chal = os.urandom(6)
    resp = proto.send_and_receive(0x28, chal.ljust(64, b"\0"))[:16]
    ticket = _decrypted_ticket(resp, aes)  # its CRC checked
    assert ticket[:6] == chal
    with pytest.raises(Rejected):  # slot 1 is empty
        proto.send_and_receive(0x20, chal.ljust(64, b"\0"))
    YubiOtpSession(connection).put_configuration(1, HmacSha1SlotConfiguration(os.urandom(20)))
    with pytest.raises(Rejected):  # slot 1 does HMAC-SHA1, not Yubico OTP
        proto.send_and_receive(0x20, chal.ljust(64, b"\0"))


class _AskedAndCancelled(DenyAlways):
    """A user who never touches: records why the key asked, and whether the host's cancel
    reached the wait (bounded, so a lost cancel fails the test instead of hanging it)."""

    def __init__(self) -> None:
        import threading

        self.reasons: list[str] = []
        self.asked = threading.Event()
        self.cancelled: list[bool] = []

    def decide(self, reason, cancel, keepalive):
        self.reasons.append(reason)
        self.asked.set()
        self.cancelled.append(cancel.wait(5))
        return False


@pytest.mark.parametrize("mode,command", [("HMAC", 0x38), ("OTP", 0x28)])
def test_touch_wait_names_the_slot_and_ends_on_cancel(tmp_path, connect, mode, command):
    """A challenge to a button-triggered slot asks the user, saying which slot (what
    `--touch prompt` shows), and the host's cancel ends that wait at once."""
    import threading

    from hwtoken.emulator.applets.otp.applet import CommandRejected

    user = _AskedAndCancelled()
    key = VirtualKey.create(tmp_path / "ask.key", presence=user)
    try:
        secret = (b"h:" + os.urandom(16).hex().encode()) if mode == "OTP" else os.urandom(20)
        _protocol(connect(OtpHidEngine(key))).send_and_receive(
            0x03, _pyyubico_config(secret=secret, type=mode, require_button=True) + bytes(6))
        assert key.otp.needs_touch(command)
        cancel, outcome = threading.Event(), []

        def challenge() -> None:
            try:
                outcome.append(key.otp.command(command, b"abc", cancel))
            except CommandRejected:
                outcome.append("rejected")

        worker = threading.Thread(target=challenge)
        worker.start()
        assert user.asked.wait(5)
        cancel.set()
        worker.join(10)
        assert user.reasons == ["OTP slot 2 challenge-response"]
        assert user.cancelled == [True] and outcome == ["rejected"]
    finally:
        key.close()
