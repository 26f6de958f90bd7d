"""The OTP HID interface's state machine (OtpHidEngine), report by report, in process.

yubikit and python-yubico only ever send well-formed frames and read responses to the end;
these tests send what a host may also send (reports out of order, without the write flag,
a frame abandoned half way, a repeated last report, short reports) and read every report the
key answers, so that each rule of the feature-report protocol is pinned down: the status
report, the response chunks and their end marker, the touch-wait countdown, aborts, and the
keyboard queue's waiting.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time

import pytest
from yubico.yubikey_frame import YubiKeyFrame
from yubikit.core.otp import check_crc
from yubikit.yubiotp import (
    HmacSha1SlotConfiguration,
    StaticPasswordSlotConfiguration,
    YubiOtpSession,
)

from hwtoken.emulator import VirtualKey
from hwtoken.emulator.applets.otp.hid import OtpHidEngine, press
from hwtoken.emulator.presence import Decision, UserPresence

SERIAL = 0x10
CHAL_HMAC_1 = 0x30
HMAC_KEY = bytes(range(20))
WAIT = 5.0  # seconds any wait for an event of the engine may take before the test fails


def frame_reports(command: int, payload: bytes = b"") -> list[bytes]:
    """All ten feature reports of a frame (python-yubico's encoding, none skipped)."""
    raw = YubiKeyFrame(command, payload.ljust(64, b"\0")).to_string()
    return [raw[i * 7:(i + 1) * 7] + bytes([0x80 | i]) for i in range(10)]


def send(engine: OtpHidEngine, reports: list[bytes]) -> None:
    for report in reports:
        engine.set_feature(report)


def status(vkey: VirtualKey, flags: int = 0) -> bytes:
    """The status report: 00, firmware version, programming sequence, touch level, flags."""
    return b"\0" + vkey.otp.status() + bytes([flags])


def read_response(engine: OtpHidEngine) -> bytes:
    """Read response chunks up to the end marker (at most ten); their data, joined."""
    data = b""
    for i in range(10):
        report = engine.get_feature()
        if report == bytes(7) + b"\x40":
            return data
        assert report[7] == 0x40 | i, f"chunk {i} flagged {report[7]:#04x}"
        data += report[:7]
    pytest.fail("no end-of-response report after ten chunks")


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


class Held(UserPresence):
    """Nobody touches the key: each wait lasts until the host cancels it (or 10 s pass)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.asked = threading.Event()
        self.cancelled = threading.Event()

    def decide(self, reason, cancel, keepalive):
        self.asked.set()
        if cancel.wait(10):
            self.cancelled.set()
            return Decision.CANCELLED
        return Decision.TIMEOUT


@pytest.fixture
def hmac_engine(connection, engine):
    """An engine whose slot 1 answers HMAC-SHA1 challenges without a touch."""
    YubiOtpSession(connection).put_configuration(1, HmacSha1SlotConfiguration(HMAC_KEY))
    return engine


def touch_engine(tmp_path, connect, presence: UserPresence) -> tuple[VirtualKey, OtpHidEngine]:
    """A key whose slot 1 is an HMAC-SHA1 slot that needs a touch."""
    key = VirtualKey.create(tmp_path / "touch.key", presence=presence)
    engine = OtpHidEngine(key)
    YubiOtpSession(connect(engine)).put_configuration(
        1, HmacSha1SlotConfiguration(HMAC_KEY).require_touch(True))
    return key, engine


# -- status and responses ----------------------------------------------------------------------
def test_a_fresh_interface_answers_the_status_report(engine, vkey):
    assert engine.answering is False  # nothing asked: a reboot need not wait for it
    report = engine.get_feature()
    assert report == b"\0" + bytes(vkey.version) + bytes([0]) + b"\0\0" + b"\0"
    assert report == status(vkey)
    assert engine.answering is False


def test_a_response_is_read_chunk_by_chunk_then_the_end_marker(hmac_engine, vkey):
    send(hmac_engine, frame_reports(CHAL_HMAC_1, b"abc".ljust(64, b"\xff")))
    assert hmac_engine.answering  # the host has not read the answer yet
    data = read_response(hmac_engine)
    digest = hmac.new(HMAC_KEY, b"abc", hashlib.sha1).digest()
    assert len(data) == 28  # 20 bytes of HMAC and a CRC in four chunks, zero padded
    assert data[:20] == digest and check_crc(data[:22]) and data[22:] == bytes(6)
    assert hmac_engine.answering is False
    # the end marker stays until the host resets the read mode (ykcore's dummy write)
    assert hmac_engine.get_feature() == bytes(7) + b"\x40"
    hmac_engine.set_feature(bytes(7) + b"\x8f")
    assert hmac_engine.get_feature() == status(vkey)
    assert hmac_engine.answering is False


def test_the_serial_is_answered_in_one_chunk(engine, vkey):
    send(engine, frame_reports(SERIAL))
    data = read_response(engine)
    assert data[:4] == (12345678).to_bytes(4, "big") and check_crc(data[:6])


def test_a_new_frame_drops_an_unread_response(hmac_engine, vkey):
    send(hmac_engine, frame_reports(CHAL_HMAC_1, b"abc".ljust(64, b"\xff")))
    hmac_engine.get_feature()  # the first chunk only
    send(hmac_engine, frame_reports(SERIAL))
    assert read_response(hmac_engine)[:4] == (12345678).to_bytes(4, "big")


# -- what the key ignores ---------------------------------------------------------------------
def test_reports_without_the_write_flag_are_ignored(engine, vkey):
    send(engine, [r[:7] + bytes([r[7] & 0x7F]) for r in frame_reports(SERIAL)])
    assert engine.get_feature() == status(vkey)
    assert engine.answering is False


def test_reports_before_the_first_one_of_a_frame_are_ignored(engine, vkey):
    # the serial request's report 0 is all zeros, like the engine's empty buffer: only the
    # missing start of the frame can make the key ignore the other nine
    reports = frame_reports(SERIAL)
    assert reports[0] == bytes(7) + b"\x80"
    send(engine, reports[1:])
    assert engine.get_feature() == status(vkey)


def test_a_repeated_last_report_does_not_run_the_command_again(engine, vkey):
    reports = frame_reports(SERIAL)
    send(engine, reports)
    read_response(engine)
    engine.set_feature(reports[-1])  # a frame needs its first report again
    assert engine.get_feature() == bytes(7) + b"\x40"  # still the end of the one answer
    assert engine.answering is False


def test_a_frame_abandoned_half_way_is_dropped(engine, vkey):
    reports = frame_reports(SERIAL)
    send(engine, reports[:5])
    engine.set_feature(bytes(7) + b"\x8f")  # python-yubico's dummy write
    send(engine, reports[5:])
    assert engine.get_feature() == status(vkey)


@pytest.mark.parametrize("flags", [0x8A, 0x8F, 0xFF])  # sequence 10, python-yubico's, yubikit's
def test_any_sequence_above_nine_drops_a_pending_response(hmac_engine, vkey, flags):
    send(hmac_engine, frame_reports(CHAL_HMAC_1, b"abc".ljust(64, b"\xff")))
    hmac_engine.set_feature(bytes(7) + bytes([flags]))
    assert hmac_engine.get_feature() == status(vkey)


def test_a_short_report_is_zero_padded_and_so_carries_no_write_flag(hmac_engine, vkey):
    send(hmac_engine, frame_reports(CHAL_HMAC_1, b"abc".ljust(64, b"\xff")))
    hmac_engine.set_feature(bytes(6) + b"\x8f")  # seven bytes: the flags byte is missing
    hmac_engine.set_feature(b"")
    first = hmac_engine.get_feature()
    assert first[7] == 0x40  # the response is still there
    assert first[:7] == hmac.new(HMAC_KEY, b"abc", hashlib.sha1).digest()[:7]


def test_a_long_report_is_cut_to_eight_bytes(engine, vkey):
    send(engine, [r + b"\xff" for r in frame_reports(SERIAL)])
    assert read_response(engine)[:4] == (12345678).to_bytes(4, "big")


# -- waiting for a touch ----------------------------------------------------------------------
def test_the_touch_wait_counts_down_the_presence_timeout(tmp_path, connect):
    key, engine = touch_engine(tmp_path, connect, Held(timeout=7))
    try:
        send(engine, frame_reports(CHAL_HMAC_1, b"abc".ljust(64, b"\xff")))
        flags = engine.get_feature()[7]
        assert flags & 0xE0 == 0x20  # waiting, no response
        assert 4 <= flags & 0x1F <= 7  # seconds left of the presence's 7
    finally:
        engine.close()
        key.close()


def test_the_touch_wait_shows_zero_seconds_at_its_end(tmp_path, connect):
    key, engine = touch_engine(tmp_path, connect, Held(timeout=0.5))
    try:
        send(engine, frame_reports(CHAL_HMAC_1, b"abc".ljust(64, b"\xff")))
        assert engine.get_feature()[7] == 0x20  # under a second left: 0, never rounded up
    finally:
        engine.close()
        key.close()


def test_a_dummy_write_cancels_the_touch_wait(tmp_path, connect):
    presence = Held(timeout=10)
    key, engine = touch_engine(tmp_path, connect, presence)
    try:
        before = set(threading.enumerate())
        send(engine, frame_reports(CHAL_HMAC_1, b"abc".ljust(64, b"\xff")))
        assert presence.asked.wait(WAIT)
        waiting = set(threading.enumerate()) - before
        # the wait runs in a daemon thread: a host program that exits meanwhile is not held
        assert waiting and all(t.daemon for t in waiting)
        send(engine, frame_reports(SERIAL))  # busy: a real key ignores it
        engine.set_feature(bytes(7) + b"\xff")  # yubikit's abort
        assert presence.cancelled.wait(WAIT)  # the applet's wait saw the host's cancel
        wait_until(lambda: not engine.get_feature()[7] & 0x20, "the touch wait ends")
        assert engine.get_feature() == status(key)  # neither the HMAC nor the serial follows
    finally:
        engine.close()
        key.close()


def test_closing_the_interface_cancels_its_touch_wait(tmp_path, connect):
    presence = Held(timeout=10)
    key, engine = touch_engine(tmp_path, connect, presence)
    try:
        send(engine, frame_reports(CHAL_HMAC_1, b"abc".ljust(64, b"\xff")))
        assert presence.asked.wait(WAIT)
        engine.close()
        assert presence.cancelled.wait(WAIT)
    finally:
        key.close()


# -- the keyboard -----------------------------------------------------------------------------
def test_a_touch_types_on_every_open_interface_of_the_key(connection, vkey):
    YubiOtpSession(connection).put_configuration(
        2, StaticPasswordSlotConfiguration(bytes([0x04, 0x85, 0x1E])))
    first, second = OtpHidEngine(vkey), OtpHidEngine(vkey)
    assert press(vkey, 2) == "aB1\n"
    typed = [first.read_keyboard(0) for _ in range(8)]
    assert None not in typed and first.read_keyboard(0) is None
    assert [second.read_keyboard(0) for _ in range(8)] == typed
    second.close()
    assert press(vkey, 2) == "aB1\n"
    assert [first.read_keyboard(0) for _ in range(8)] == typed
    assert second.read_keyboard(0) is None  # a closed interface types nothing


def test_touching_a_key_that_never_had_an_interface(tmp_path):
    key = VirtualKey.create(tmp_path / "bare.key")
    try:
        assert press(key, 1) == ""  # an empty slot types nothing, and nothing fails
    finally:
        key.close()


def test_reading_the_keyboard_does_not_wait_by_default(engine):
    start = time.monotonic()
    assert engine.read_keyboard() is None
    assert engine.read_keyboard(0) is None
    assert engine.read_keyboard(None) is None
    assert time.monotonic() - start < 0.9


def test_reading_the_keyboard_waits_its_timeout_then_gives_up(engine):
    result: list[bytes | None] = []
    start = time.monotonic()
    reader = threading.Thread(target=lambda: result.append(engine.read_keyboard(0.3)),
                              daemon=True)
    reader.start()
    reader.join(WAIT)
    assert not reader.is_alive(), "read_keyboard(0.3) did not return"
    assert result == [None]
    assert time.monotonic() - start >= 0.3


def test_reading_the_keyboard_wakes_when_a_key_is_typed(engine):
    report = bytes([0, 0, 0x04, 0, 0, 0, 0, 0])
    timer = threading.Timer(0.1, engine.queue_keys, [[report]])
    timer.start()
    try:
        assert engine.read_keyboard(WAIT) == report
    finally:
        timer.cancel()
