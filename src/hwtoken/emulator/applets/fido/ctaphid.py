"""CTAPHID: the FIDO HID framing layer of the virtual key (CTAP 2.1 §11.2), pure logic.

:class:`CtapHidEngine` takes 64-byte OUT reports from a host with :meth:`CtapHidEngine.write`
and hands back 64-byte IN reports with :meth:`CtapHidEngine.read`. It allocates channels
(INIT on the broadcast channel), reassembles continuation packets, answers PING, WINK, LOCK
and CANCEL itself, and runs MSG (U2F APDUs) and CBOR (CTAP2) requests on a worker thread so
that the host can CANCEL them and receives KEEPALIVE reports (PROCESSING, or UPNEEDED while
the presence policy waits for a touch). No sockets or files: transports move the reports.

Any report, malformed or not, gets at most an ERROR answer; nothing here raises to the caller.
Used in process by :mod:`hwtoken.emulator.transports.fido_hid` and over USB/IP by
:mod:`hwtoken.emulator.usb` (one engine per connection / USB session).
"""

from __future__ import annotations

import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from typing import TYPE_CHECKING, Any, Protocol

from hwtoken.emulator.presence import ApproveAlways, DenyAlways

if TYPE_CHECKING:  # pragma: no cover
    from hwtoken.emulator.applets.fido.applet import FidoApplet
    from hwtoken.emulator.context import KeyContext

    class FidoKey(KeyContext, Protocol):
        """A key with a FIDO applet: what the CTAPHID interface carries requests to."""

        fido: FidoApplet

_INSTANT_POLICIES = (ApproveAlways, DenyAlways)
KEY_LOCK_WAIT = 5.0  # seconds a request waits for another transport's request to finish

REPORT_SIZE = 64
BROADCAST_CID = 0xFFFFFFFF
TYPE_INIT = 0x80
INIT_DATA = REPORT_SIZE - 7  # payload bytes in an initialisation packet
CONT_DATA = REPORT_SIZE - 5  # payload bytes in a continuation packet
MAX_MESSAGE = INIT_DATA + 128 * CONT_DATA  # 7609, the most 128 continuations can carry
CTAPHID_PROTOCOL_VERSION = 2
CTAP2_ERR_KEEPALIVE_CANCEL = 0x2D
MAX_CHANNELS = 256
MAX_QUEUED = 4096


class Cmd(IntEnum):
    """CTAPHID command codes (without the TYPE_INIT bit)."""

    PING = 0x01
    MSG = 0x03
    LOCK = 0x04
    INIT = 0x06
    WINK = 0x08
    CBOR = 0x10
    CANCEL = 0x11
    KEEPALIVE = 0x3B
    ERROR = 0x3F
    # YubiKey vendor commands (yubikit.management: CTAP_VENDOR_FIRST + n)
    YUBIKEY_DEVICE_CONFIG = 0x40
    READ_CONFIG = 0x42
    WRITE_CONFIG = 0x43


VENDOR_COMMANDS = (Cmd.YUBIKEY_DEVICE_CONFIG, Cmd.READ_CONFIG, Cmd.WRITE_CONFIG)


class HidError(IntEnum):
    """Payload byte of a CTAPHID_ERROR response."""

    INVALID_CMD = 0x01
    INVALID_PAR = 0x02
    INVALID_LEN = 0x03
    INVALID_SEQ = 0x04
    MSG_TIMEOUT = 0x05
    CHANNEL_BUSY = 0x06
    LOCK_REQUIRED = 0x0A
    INVALID_CHANNEL = 0x0B
    OTHER = 0x7F


class Capability(IntFlag):
    """Capability flags returned by INIT."""

    WINK = 0x01
    CBOR = 0x04
    NMSG = 0x08


class KeepaliveStatus(IntEnum):
    PROCESSING = 1
    UPNEEDED = 2


CAPABILITIES = Capability.WINK | Capability.CBOR


CAP_U2F, CAP_FIDO2 = 0x02, 0x200  # management capabilities (yubikit CAPABILITY)
SW_INS_NOT_SUPPORTED = b"\x6d\x00"


def enabled_over_usb(key: Any) -> int:
    """The management capabilities ``key`` has enabled over USB (all of its model's, for
    a key without a management applet)."""
    profile = getattr(key, "profile", None)
    if profile is None or not profile.has("management"):
        return CAP_U2F | CAP_FIDO2
    from hwtoken.emulator.applets.management import ManagementApplet

    return ManagementApplet(key).enabled("usb")


def capabilities(key: Any) -> Capability:
    """INIT capabilities of ``key``'s model: no CBOR for a CTAP1-only (``u2f-only``) key,
    nor while FIDO2 is disabled over USB (the host then speaks CTAP1 only)."""
    profile = getattr(key, "profile", None)
    if profile is not None and not profile.ctap2:
        return Capability.WINK
    if not enabled_over_usb(key) & CAP_FIDO2:
        return Capability.WINK
    return CAPABILITIES


def frames(cid: int, cmd: int, data: bytes) -> list[bytes]:
    """Split one message into 64-byte reports: an init packet and continuations."""
    out = [struct.pack(">IBH", cid, TYPE_INIT | cmd, len(data))
           + data[:INIT_DATA].ljust(INIT_DATA, b"\0")]
    rest = data[INIT_DATA:]
    seq = 0
    while rest:
        out.append(struct.pack(">IB", cid, seq) + rest[:CONT_DATA].ljust(CONT_DATA, b"\0"))
        rest = rest[CONT_DATA:]
        seq += 1
    return out




@dataclass
class _Rx:
    """A request being reassembled from continuation packets."""

    cid: int
    cmd: int
    total: int
    buf: bytearray
    seq: int = 0
    last: float = field(default_factory=time.monotonic)


@dataclass
class _Job:
    cid: int
    cmd: int
    data: bytes
    cancel: threading.Event = field(default_factory=threading.Event)
    abandoned: bool = False


class CtapHidEngine:
    """The CTAPHID state machine of one virtual key's FIDO interface.

    ``write(report)`` accepts one OUT report; ``read(timeout)`` returns the next IN report,
    or None when none is ready within ``timeout`` seconds (None: wait until one is).
    Both are thread-safe, so a transport may read and write from different threads.
    MSG and CBOR go to ``key.fido.u2f()`` / ``key.fido.ctap2()`` on a worker thread, so the
    host can CANCEL them and gets KEEPALIVEs; when the presence policy answers at once
    (``ApproveAlways``/``DenyAlways``) nothing can wait, and ``write`` runs them itself.
    """

    def __init__(self, key: FidoKey, *, msg_timeout: float = 1.0,
                 keepalive_interval: float = 0.1) -> None:
        self.key = key
        self.msg_timeout = msg_timeout
        self.keepalive_interval = keepalive_interval
        self._cond = threading.Condition()
        self._out: deque[bytes] = deque()
        self._channels: deque[int] = deque(maxlen=MAX_CHANNELS)
        self._next_cid = 1
        self._rx: _Rx | None = None
        self._job: _Job | None = None
        self._last_keepalive = 0.0
        self._lock_cid: int | None = None
        self._lock_until = 0.0
        self._jobs: deque[_Job] = deque()
        self._worker: threading.Thread | None = None
        self._inline: _Job | None = None
        self._closed = False
        self._caps = capabilities(key)
        self._token = object()  # names this connection in the channels given to the applet

    # -- public interface -----------------------------------------------------------------
    @property
    def answering(self) -> bool:
        """A request is being worked on, or IN reports wait for the host to take them."""
        with self._cond:
            return self._job is not None or self._inline is not None or bool(self._out)

    def write(self, report: bytes) -> None:
        """Process one OUT report from the host.

        Short reports are zero-padded (a USB short packet), a 65-byte one starting with 0
        loses that report ID (as written to hidraw), longer ones are truncated.
        """
        try:
            report = bytes(report)
        except (TypeError, ValueError):
            return
        if not report:
            return
        if len(report) == REPORT_SIZE + 1 and report[0] == 0:
            report = report[1:]  # hidraw-style write with report ID 0 in front
        report = report[:REPORT_SIZE].ljust(REPORT_SIZE, b"\0")
        with self._cond:
            if self._closed:
                return
            self._expire(time.monotonic())
            self._packet(report)
            job, self._inline = self._inline, None
            self._cond.notify_all()
        if job is not None:  # a policy that never waits: no worker needed (see _start)
            self._finish(job, *self._run(job))

    def read(self, timeout: float | None = None) -> bytes | None:
        """The next IN report, or None if nothing is ready within ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        with self._cond:
            while True:
                now = time.monotonic()
                self._expire(now)
                if self._out:
                    return self._out.popleft()
                if self._closed:
                    return None
                wait = 1.0
                if self._job is not None:
                    wait = self.keepalive_interval
                elif self._rx is not None:
                    wait = max(self._rx.last + self.msg_timeout - now, 0.001)
                if deadline is not None:
                    left = deadline - now
                    if left <= 0:
                        return None
                    wait = min(wait, left)
                self._cond.wait(wait)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until an IN report is ready (without taking it); False on timeout/close."""
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        with self._cond:
            while True:
                self._expire(time.monotonic())
                if self._out:
                    return True
                if self._closed:
                    return False
                wait = self.keepalive_interval if self._job is not None else 1.0
                if self._rx is not None:
                    wait = min(wait, max(self._rx.last + self.msg_timeout - time.monotonic(),
                                         0.001))
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    wait = min(wait, left)
                self._cond.wait(wait)

    def pending(self) -> int:
        """How many IN reports are queued."""
        with self._cond:
            return len(self._out)

    def close(self) -> None:
        """Cancel any running request and stop the worker."""
        with self._cond:
            self._closed = True
            if self._job is not None:
                self._job.cancel.set()
                self._job.abandoned = True
            self._jobs.clear()
            self._cond.notify_all()
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout=5)

    # -- output helpers (caller holds the lock) ---------------------------------------------
    def _send(self, cid: int, cmd: int, data: bytes = b"") -> None:
        if len(data) > MAX_MESSAGE:  # cannot be framed: an error, never a truncation
            cmd, data = Cmd.ERROR, bytes([HidError.OTHER])
        if len(self._out) > MAX_QUEUED:  # a host that never reads: drop the oldest
            for _ in range(len(self._out) - MAX_QUEUED):
                self._out.popleft()
        self._out.extend(frames(cid, cmd, data))

    def _error(self, cid: int, code: HidError) -> None:
        self._send(cid, Cmd.ERROR, bytes([code]))

    def _keepalive(self, cid: int, status: KeepaliveStatus) -> None:
        report = frames(cid, Cmd.KEEPALIVE, bytes([status]))[0]
        if self._out and self._out[-1] == report:
            return  # the host has not read the last one yet; one is enough
        self._out.append(report)
        self._last_keepalive = time.monotonic()

    def _expire(self, now: float) -> None:
        """Time out a stalled reassembly, send PROCESSING keepalives, end expired locks."""
        rx = self._rx
        if rx is not None and now - rx.last > self.msg_timeout:
            self._rx = None
            self._error(rx.cid, HidError.MSG_TIMEOUT)
        job = self._job
        if (job is not None and not job.abandoned and not self._out
                and now - self._last_keepalive >= self.keepalive_interval):
            self._keepalive(job.cid, KeepaliveStatus.PROCESSING)
        if self._lock_cid is not None and now >= self._lock_until:
            self._lock_cid = None

    # -- packet handling --------------------------------------------------------------------
    def _packet(self, report: bytes) -> None:
        cid = int.from_bytes(report[:4], "big")
        kind = report[4]
        if kind & TYPE_INIT:
            self._init_packet(cid, kind & 0x7F, report)
        else:
            self._cont_packet(cid, kind, report)

    def _known(self, cid: int) -> bool:
        return cid in self._channels

    def _init_packet(self, cid: int, cmd: int, report: bytes) -> None:
        length = int.from_bytes(report[5:7], "big")
        payload = report[7:]
        if cid == 0:
            self._error(cid, HidError.INVALID_CHANNEL)
            return
        if cmd == Cmd.INIT:
            self._init(cid, length, payload)
            return
        if cid == BROADCAST_CID or not self._known(cid):
            self._error(cid, HidError.INVALID_CHANNEL)
            return
        if cmd == Cmd.CANCEL:
            job = self._job
            if job is not None and job.cid == cid:
                job.cancel.set()
            return  # no answer of its own; the cancelled request answers
        if self._rx is not None:
            if self._rx.cid == cid:  # a new request in the middle of a message
                self._rx = None
                self._error(cid, HidError.INVALID_SEQ)
            else:
                self._error(cid, HidError.CHANNEL_BUSY)
            return
        if self._job is not None or self._locked_out(cid):
            self._error(cid, HidError.CHANNEL_BUSY)
            return
        if length > MAX_MESSAGE:
            self._error(cid, HidError.INVALID_LEN)
            return
        if length <= INIT_DATA:
            self._dispatch(cid, cmd, payload[:length])
        else:
            self._rx = _Rx(cid, cmd, length, bytearray(payload))

    def _cont_packet(self, cid: int, seq: int, report: bytes) -> None:
        rx = self._rx
        if rx is None or cid == BROADCAST_CID or cid == 0:
            return  # spurious continuation packets are ignored
        if cid != rx.cid:
            if self._known(cid):
                self._error(cid, HidError.CHANNEL_BUSY)
            return
        if seq != rx.seq:
            self._rx = None
            self._error(cid, HidError.INVALID_SEQ)
            return
        rx.buf += report[5:]
        rx.seq += 1
        rx.last = time.monotonic()
        if len(rx.buf) >= rx.total:
            self._rx = None
            self._dispatch(cid, rx.cmd, bytes(rx.buf[:rx.total]))

    def _locked_out(self, cid: int) -> bool:
        return (self._lock_cid is not None and self._lock_cid != cid
                and time.monotonic() < self._lock_until)

    def _init(self, cid: int, length: int, payload: bytes) -> None:
        if length != 8:
            self._error(cid, HidError.INVALID_LEN)
            return
        nonce = payload[:8]
        if cid == BROADCAST_CID:
            new_cid = self._allocate()
        elif self._known(cid):
            new_cid = cid  # resynchronise: abandon whatever this channel was doing
            if self._rx is not None and self._rx.cid == cid:
                self._rx = None
            if self._job is not None and self._job.cid == cid:
                self._job.cancel.set()
                self._job.abandoned = True
        else:
            self._error(cid, HidError.INVALID_CHANNEL)
            return
        major, minor, build = self.key.version
        body = nonce + struct.pack(">IBBBBB", new_cid, CTAPHID_PROTOCOL_VERSION,
                                   major & 0xFF, minor & 0xFF, build & 0xFF, self._caps)
        self._send(cid, Cmd.INIT, body)

    def _allocate(self) -> int:
        cid = self._next_cid
        self._next_cid = self._next_cid + 1 if self._next_cid < 0xFFFFFFFE else 1
        self._channels.append(cid)
        return cid

    def _dispatch(self, cid: int, cmd: int, data: bytes) -> None:
        if cmd == Cmd.PING:
            self._send(cid, Cmd.PING, data)
        elif cmd == Cmd.WINK:
            if data:
                self._error(cid, HidError.INVALID_LEN)
                return
            wink = getattr(self.key.fido, "wink", None)
            if wink is not None:
                wink()
            self._send(cid, Cmd.WINK)
        elif cmd == Cmd.LOCK:
            if len(data) != 1:
                self._error(cid, HidError.INVALID_LEN)
            elif data[0] > 10:
                self._error(cid, HidError.INVALID_PAR)
            else:
                if data[0] == 0:
                    self._lock_cid = None
                else:
                    self._lock_cid = cid
                    self._lock_until = time.monotonic() + data[0]
                self._send(cid, Cmd.LOCK)
        elif cmd == Cmd.CBOR and not self._caps & Capability.CBOR:
            self._error(cid, HidError.INVALID_CMD)
        elif cmd in (Cmd.MSG, Cmd.CBOR):
            if not data:
                self._error(cid, HidError.INVALID_LEN)
                return
            self._start(_Job(cid, cmd, data))
        elif cmd in VENDOR_COMMANDS:
            self._start(_Job(cid, cmd, data))
        else:  # includes KEEPALIVE/ERROR/CANCEL-with-payload from the host
            self._error(cid, HidError.INVALID_CMD)

    # -- worker -----------------------------------------------------------------------------
    def _start(self, job: _Job) -> None:
        self._job = job
        self._last_keepalive = time.monotonic()
        if type(self.key.presence) in _INSTANT_POLICIES:
            # Nothing in the request can wait (presence answers at once), so nothing can
            # be cancelled: write() runs it right after releasing the lock, saving two
            # thread switches per request. Other channels still see CHANNEL_BUSY meanwhile.
            self._inline = job
            return
        self._jobs.append(job)
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._work, daemon=True,
                                            name=f"hwtoken-ctaphid-{self.key.serial}")
            self._worker.start()

    def _work(self) -> None:
        idle_since = time.monotonic()
        while True:
            with self._cond:
                while not self._jobs:
                    if self._closed or time.monotonic() - idle_since > 2.0:
                        self._worker = None
                        return
                    self._cond.wait(0.5)
                job = self._jobs.popleft()
            self._finish(job, *self._run(job))
            idle_since = time.monotonic()

    def _finish(self, job: _Job, cmd: int, response: bytes) -> None:
        with self._cond:
            if self._job is job:
                self._job = None
            if not job.abandoned and not self._closed:
                self._send(job.cid, cmd, response)
            self._cond.notify_all()

    def _run(self, job: _Job) -> tuple[int, bytes]:
        """Run one MSG/CBOR request holding ``key.lock``, the lock every transport of the
        key (USB/IP, PC/SC) holds per request, so two never change or save the state at
        once; CHANNEL_BUSY if another transport keeps it longer than KEY_LOCK_WAIT."""
        key_lock = getattr(self.key, "lock", None)
        if key_lock is None:
            return self._run_applet(job)
        if not key_lock.acquire(timeout=KEY_LOCK_WAIT):
            return Cmd.ERROR, bytes([HidError.CHANNEL_BUSY])
        try:
            return self._run_applet(job)
        finally:
            key_lock.release()

    def _run_applet(self, job: _Job) -> tuple[int, bytes]:
        """Run one MSG/CBOR request: the response command and payload; never raises."""
        if job.cmd in VENDOR_COMMANDS:
            return self._run_vendor(job)

        def keepalive() -> None:
            with self._cond:
                if self._job is job and not job.cancel.is_set() and not job.abandoned:
                    self._keepalive(job.cid, KeepaliveStatus.UPNEEDED)
                    self._cond.notify_all()

        if job.cmd == Cmd.MSG and not enabled_over_usb(self.key) & CAP_U2F:
            return Cmd.MSG, SW_INS_NOT_SUPPORTED  # U2F disabled over USB: no CTAP1 here
        applet: Any = self.key.fido
        lock = getattr(applet, "lock", None)
        if lock is not None and not lock.acquire(timeout=0.05):
            # another connection or PC/SC is using the applet: the host retries
            return Cmd.ERROR, bytes([HidError.CHANNEL_BUSY])
        try:
            if job.cmd == Cmd.MSG:
                return Cmd.MSG, applet.u2f(job.data, cancel=job.cancel, keepalive=keepalive)
            response = applet.ctap2(job.data, cancel=job.cancel, keepalive=keepalive,
                                    channel=(self._token, job.cid))
            if job.cancel.is_set() and response[:1] != b"\0":
                response = bytes([CTAP2_ERR_KEEPALIVE_CANCEL])
            return Cmd.CBOR, response
        except Exception:
            if job.cmd == Cmd.MSG:
                return Cmd.MSG, b"\x6f\x00"  # SW_UNKNOWN: no precise diagnosis
            return Cmd.CBOR, bytes([HidError.OTHER])
        finally:
            if lock is not None:
                lock.release()

    def _run_vendor(self, job: _Job) -> tuple[int, bytes]:
        """A YubiKey's management commands over CTAPHID (what ``ykman`` uses over HID to
        learn the device info, e.g. for ``ykman fido info``): READ_CONFIG answers the
        management applet's device-info TLVs, WRITE_CONFIG and the legacy
        YUBIKEY_DEVICE_CONFIG (set mode) change them."""
        from hwtoken.emulator.applets.management import ManagementApplet
        from hwtoken.emulator.iso7816 import ApduError

        mgmt = ManagementApplet(self.key)
        try:
            if job.cmd == Cmd.READ_CONFIG:
                page = int.from_bytes(job.data[:1], "big") if job.data else 0
                if len(job.data) > 1 or page != 0:
                    return Cmd.ERROR, bytes([HidError.INVALID_PAR])
                return job.cmd, mgmt.device_info()
            if job.cmd == Cmd.WRITE_CONFIG:
                mgmt.write_config(job.data)
            else:
                mgmt.set_mode(job.data)
            return job.cmd, b""
        except ApduError:
            return Cmd.ERROR, bytes([HidError.INVALID_PAR])
        except Exception:
            return Cmd.ERROR, bytes([HidError.OTHER])
