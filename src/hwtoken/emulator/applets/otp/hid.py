"""``OtpHidEngine``: the virtual key's OTP HID interface, minus the USB plumbing.

A USB transport hands it the interface's traffic:

- ``SET_REPORT(feature)`` -> :meth:`OtpHidEngine.set_feature` (8 bytes);
- ``GET_REPORT(feature)`` -> :meth:`OtpHidEngine.get_feature` (8 bytes back);
- the keyboard interrupt IN endpoint polls :meth:`OtpHidEngine.read_keyboard`.

Frames arrive as reports with ``SLOT_WRITE_FLAG | seq`` (seq 0..9; skipped all-zero reports
read as zeros). When report 9 lands the frame's CRC is checked and the command runs; a data
response is then read back as 7-byte chunks flagged ``RESP_PENDING_FLAG | seq``, followed by
a ``RESP_PENDING_FLAG`` report with sequence 0 that marks the end. A write with a sequence
above 9 (python-yubico's ``0x8f``, yubikit's ``0xff``) aborts a pending response or touch
wait. Otherwise a read returns the status report: ``00 major minor build pgmSeq touchLevel
(2, LE) flags``; while the key waits for a touch, flags are ``RESP_TIMEOUT_WAIT_FLAG |
seconds left``.
"""

from __future__ import annotations

import collections
import threading
import time
import weakref
from typing import TYPE_CHECKING, Protocol

from hwtoken.emulator.applets.otp import keyboard
from hwtoken.emulator.applets.otp.applet import CommandRejected, OtpApplet
from hwtoken.emulator.applets.otp.constants import (
    FEATURE_RPT_DATA_SIZE,
    FEATURE_RPT_SIZE,
    FRAME_REPORTS,
    FRAME_SIZE,
    RESP_PENDING_FLAG,
    RESP_TIMEOUT_WAIT_FLAG,
    SEQUENCE_MASK,
    SLOT_WRITE_FLAG,
)
from hwtoken.emulator.applets.otp.frames import Frame, FrameError, append_crc, response_reports

if TYPE_CHECKING:  # pragma: no cover
    from hwtoken.emulator.context import KeyContext

    class OtpKey(KeyContext, Protocol):
        """A key with OTP slots: what the OTP HID interface carries requests to."""

        otp: OtpApplet

#: Report descriptor of a YubiKey's OTP interface: boot keyboard with 8-byte feature reports.
REPORT_DESCRIPTOR = bytes.fromhex(
    "05010906a101"  # Usage Page (Generic Desktop), Usage (Keyboard), Collection (Application)
    "050719e029e715002501750195088102"  # 8 modifier bits (input)
    "950175088101"  # reserved byte (input)
    "95057501050819012905910295017503910195067508150025650507190029658100"  # LEDs + 6 keys
    "090375089508b102"  # feature report: 8 bytes (configuration)
    "c0"
)


# every live engine of an applet, so a simulated touch types on the interface(s) in use
_ENGINES: weakref.WeakKeyDictionary[OtpApplet, weakref.WeakSet[OtpHidEngine]] = (
    weakref.WeakKeyDictionary())
_ENGINES_LOCK = threading.Lock()


def press(key: OtpKey, slot: int) -> str:
    """Touch ``key``'s button for ``slot``: every OTP HID interface of the key types it.

    Returns the typed text (empty for an empty or challenge-response slot). This is what
    `hwtoken yubikey hotp touch` uses on a virtual key; the host then reads the text back
    from the keyboard endpoint like any USB keyboard.
    """
    reports = key.otp.touch_keys(slot)
    with _ENGINES_LOCK:
        engines = list(_ENGINES.get(key.otp, ()))
    for engine in engines:
        engine.queue_keys(reports)
    return keyboard.decode(reports)


class OtpHidEngine:
    """Feature-report state machine and keyboard queue of one key's OTP interface."""

    def __init__(self, key: OtpKey) -> None:
        self.key = key
        self.applet = key.otp
        self._lock = threading.Lock()
        self._rx = bytearray(FRAME_SIZE)
        self._rx_active = False
        self._chunks: list[bytes] = []
        self._chunk_index = 0
        self._pending = False
        self._worker: threading.Thread | None = None
        self._cancel = threading.Event()
        self._wait_deadline = 0.0
        self._unread = False  # a command finished and the host has not read its outcome
        self._keys: collections.deque[bytes] = collections.deque()
        self._keys_ready = threading.Condition(threading.Lock())
        with _ENGINES_LOCK:
            _ENGINES.setdefault(self.applet, weakref.WeakSet()).add(self)

    # -- feature reports ---------------------------------------------------------------------
    def set_feature(self, data: bytes) -> None:
        """Handle one 8-byte SET_REPORT(feature) from the host."""
        data = bytes(data)[:FEATURE_RPT_SIZE].ljust(FEATURE_RPT_SIZE, b"\0")
        flags = data[FEATURE_RPT_DATA_SIZE]
        if not flags & SLOT_WRITE_FLAG:
            return
        seq = flags & SEQUENCE_MASK
        with self._lock:
            if seq >= FRAME_REPORTS:  # dummy write: reset read mode / abort a touch wait
                self._abort()
                return
            if self._worker is not None:
                return  # busy; a real key ignores writes until done
            if seq == 0:
                self._rx = bytearray(FRAME_SIZE)
                self._rx_active = True
                self._clear_response()
            elif not self._rx_active:
                return
            start = seq * FEATURE_RPT_DATA_SIZE
            self._rx[start:start + FEATURE_RPT_DATA_SIZE] = data[:FEATURE_RPT_DATA_SIZE]
            if seq != FRAME_REPORTS - 1:
                return
            self._rx_active = False
            try:
                frame = Frame.parse(bytes(self._rx))
            except FrameError:
                return  # refused: no response, status (and programming sequence) unchanged
            if self.applet.needs_touch(frame.command):
                self._start_worker(frame)
                return
        self._run(frame, None)

    @property
    def answering(self) -> bool:
        """A command runs, or the host has not yet read how the last one ended."""
        with self._lock:
            return self._worker is not None or self._unread

    def get_feature(self) -> bytes:
        """Answer one GET_REPORT(feature): a response chunk or the status report."""
        with self._lock:
            if self._worker is not None:
                left = max(0, min(SEQUENCE_MASK, int(self._wait_deadline - time.monotonic())))
                return self._status_report(RESP_TIMEOUT_WAIT_FLAG | left)
            if self._pending:
                if self._chunk_index < len(self._chunks):
                    i = self._chunk_index
                    self._chunk_index += 1
                    return self._chunks[i] + bytes([RESP_PENDING_FLAG | i])
                self._unread = False
                return bytes(FEATURE_RPT_DATA_SIZE) + bytes([RESP_PENDING_FLAG])
            self._unread = False
            return self._status_report(0)

    def _status_report(self, flags: int) -> bytes:
        return b"\0" + self.applet.status() + bytes([flags])

    def _clear_response(self) -> None:
        self._chunks = []
        self._chunk_index = 0
        self._pending = False

    def _abort(self) -> None:
        self._clear_response()
        self._rx_active = False
        if self._worker is not None:
            self._cancel.set()

    def _run(self, frame: Frame, cancel: threading.Event | None) -> None:
        try:
            result = self.applet.command(frame.command, frame.payload, cancel)
        except CommandRejected:
            return
        finally:
            with self._lock:
                self._unread = True
        if self.applet.is_write(frame.command):
            return  # the status report carries the outcome
        with self._lock:
            if cancel is not None and cancel.is_set():
                return
            self._chunks = response_reports(append_crc(result))
            self._chunk_index = 0
            self._pending = True

    def _start_worker(self, frame: Frame) -> None:
        self._cancel = threading.Event()
        cancel = self._cancel
        self._wait_deadline = time.monotonic() + self.key.presence.timeout

        def work() -> None:
            try:
                self._run(frame, cancel)
            finally:
                with self._lock:
                    self._worker = None

        self._worker = threading.Thread(target=work, name="hwtoken-otp-touch", daemon=True)
        self._worker.start()

    # -- keyboard ----------------------------------------------------------------------------
    def touch(self, slot: int) -> str:
        """Touch the button for ``slot``: queue what it types here, return that text."""
        reports = self.applet.touch_keys(slot)
        self.queue_keys(reports)
        return keyboard.decode(reports)

    def queue_keys(self, reports: list[bytes]) -> None:
        """Queue keyboard reports for the interrupt IN endpoint."""
        with self._keys_ready:
            self._keys.extend(reports)
            self._keys_ready.notify_all()

    def read_keyboard(self, timeout: float | None = 0.0) -> bytes | None:
        """The next 8-byte keyboard input report, or None if none came within ``timeout``.

        ``None`` or 0 means: do not wait.
        """
        deadline = time.monotonic() + max(0.0, timeout or 0.0)
        with self._keys_ready:
            while not self._keys:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._keys_ready.wait(left)
            return self._keys.popleft()

    def reset(self) -> None:
        """USB bus reset / re-plug: drop partial frames, responses and queued keys."""
        with self._lock:
            self._abort()
        with self._keys_ready:
            self._keys.clear()

    def close(self) -> None:
        """The interface goes away: cancel a touch wait, stop typing here."""
        self.reset()
        with _ENGINES_LOCK:
            engines = _ENGINES.get(self.applet)
            if engines is not None:
                engines.discard(self)


__all__ = ["OtpHidEngine", "REPORT_DESCRIPTOR", "press"]
