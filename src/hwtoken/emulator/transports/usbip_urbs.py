"""The device side of one USB/IP connection after its IMPORT, with bounds.

This is the URB loop of the ``usbip`` package's ``protocol.serve_connection`` (same wire
format: a 48-byte header per command, the OUT payload after it, ``RET_SUBMIT`` and
``RET_UNLINK`` answers from that package), read here so that no peer can make the server
hold more than the device can use:

* an OUT transfer may carry at most what its endpoint takes (``out_limits``: a whole
  CTAPHID message for the FIDO endpoint, a whole CCID message for bulk OUT, the 16-bit
  ``wLength`` for control transfers). A header announcing more ends the connection before a
  byte of the payload is read: before, a 2 GiB announcement was buffered whole;
* a URB must arrive whole within :data:`STALL_TIMEOUT` seconds of its first byte, and an
  answer must be taken by the peer within that time;
* at most :data:`MAX_PARKED` IN transfers may wait for data at once;
* a connection with no transfer in flight and none sent for ``idle_timeout`` seconds is
  closed (a host that has the device attached always keeps an IN transfer waiting, so an
  attached key is never idle).

Isochronous endpoints are not served (the key has none).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from typing import Any

from usbip import protocol
from usbip.core import OUT, Urb

#: CMD_SUBMIT/CMD_UNLINK header: command, seqnum, devid, direction, ep, flags, length,
#: start frame, number of packets, interval, setup
HEADER = struct.Struct(">IIIIIIiiii8s")
STALL_TIMEOUT = 10.0
MAX_PARKED = 64
DEFAULT_OUT_LIMIT = 64  # an endpoint not in ``out_limits``: one full-speed packet
_POLL = 1.0  # seconds between looks at the idle clock while nothing arrives


def _timeval(seconds: float) -> bytes:
    """A ``struct timeval`` for SO_RCVTIMEO / SO_SNDTIMEO."""
    whole = int(seconds)
    return struct.pack("@ll", whole, int((seconds - whole) * 1_000_000))


class Ended(Exception):
    """Why a connection was ended by this side (the text goes to the log)."""


def recv_exact(sock: socket.socket, n: int, deadline: float) -> bytes | None:
    """``n`` bytes, or None if the peer closed before the first one; :class:`Ended` if they
    do not all arrive before ``deadline`` (``time.monotonic()``) or the peer closes half way.

    ``sock`` must have a timeout, or a receive timeout of the kernel's (each wait for more
    bytes lasts at most that long).
    """
    buf = bytearray()
    while len(buf) < n:
        if time.monotonic() > deadline:
            raise Ended(f"{len(buf)} of {n} bytes arrived in time; too slow")
        try:
            chunk = sock.recv(min(n - len(buf), 65536))
        except (TimeoutError, BlockingIOError):
            continue
        if not chunk:
            if buf:
                raise Ended(f"closed after {len(buf)} of {n} bytes")
            return None
        buf += chunk
    return bytes(buf)


class UrbLoop:
    """Serve URBs from ``sock`` to ``dev`` (a ``usbip.USBDevice``) until the peer leaves."""

    def __init__(self, sock: socket.socket, dev: Any, *, out_limits: dict[int, int],
                 idle_timeout: float | None) -> None:
        self.sock = sock
        self.dev = dev
        self.out_limits = out_limits
        self.idle_timeout = idle_timeout
        self._lock = threading.Lock()  # one answer on the wire at a time; guards _parked
        self._parked: set[int] = set()
        dev.add_reset_hook(self._flushed)

    def _flushed(self) -> None:
        """A bus reset dropped every waiting IN transfer."""
        with self._lock:
            self._parked.clear()

    def respond(self, urb: Urb) -> None:
        """Answer ``urb`` (now, or later from the device's thread when data arrives)."""
        with self._lock:
            self._parked.discard(urb.seqnum)
            try:
                protocol.write_ret(self.sock, urb)
            except OSError:  # a peer that takes nothing: end the connection
                with contextlib.suppress(OSError):
                    self.sock.shutdown(socket.SHUT_RDWR)

    def run(self) -> str:
        """Serve until the peer leaves (returns why) or misbehaves (:class:`Ended`)."""
        # The kernel's own timeouts, one per direction, in blocking mode (one system call per
        # read): a read gives up after _POLL, to look at the idle clock, and an answer after
        # STALL_TIMEOUT, when the peer takes nothing.
        self.sock.settimeout(None)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(_POLL))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(STALL_TIMEOUT))
        reset = getattr(self.dev, "reset_io", None)
        if callable(reset):
            reset()  # a fresh connection: drop stale IN data and waiting transfers
        while True:
            first = self._first_bytes()
            if first is None:
                return "idle"
            if not first:
                return "detached"
            rest = recv_exact(self.sock, HEADER.size - len(first),
                              time.monotonic() + STALL_TIMEOUT) if len(first) < HEADER.size \
                else b""
            if rest is None:
                raise Ended(f"closed after {len(first)} of {HEADER.size} bytes")
            self._one(HEADER.unpack(first + rest))

    def _first_bytes(self) -> bytes | None:
        """The first bytes of the next header (b"" if the peer left); None after
        ``idle_timeout`` without any transfer in flight."""
        since = time.monotonic()
        while True:
            try:
                return self.sock.recv(HEADER.size)
            except (TimeoutError, BlockingIOError):
                pass
            with self._lock:
                waiting = bool(self._parked)
            now = time.monotonic()
            if waiting:
                since = now  # the host waits for the key: that is no idleness
            elif self.idle_timeout is not None and now - since >= self.idle_timeout:
                return None

    def _one(self, fields: tuple[Any, ...]) -> None:
        command, seqnum, devid, direction, ep, flags, length, _start, _npkts, interval, \
            setup = fields
        if command == protocol.CMD_UNLINK:
            cancel = getattr(self.dev, "cancel_urb", None)
            if cancel is not None:
                cancel(flags)  # (flags holds the seqnum to unlink)
            with self._lock:
                self._parked.discard(flags)
                protocol.write_ret_unlink(self.sock, Urb(command, seqnum, devid, direction, ep))
            return
        if length < 0:
            raise Ended(f"a transfer of {length} bytes")
        data = b""
        if direction == OUT and length > 0:
            limit = self.out_limits.get(ep, DEFAULT_OUT_LIMIT)
            if length > limit:
                raise Ended(f"an OUT transfer of {length} bytes to endpoint {ep}, which "
                            f"takes at most {limit}")
            body = recv_exact(self.sock, length, time.monotonic() + STALL_TIMEOUT)
            if body is None:
                raise Ended("closed before the transfer's data")
            data = body
        if self.dev.is_iso(ep, direction):
            raise Ended("an isochronous transfer (the key has no such endpoint)")
        with self._lock:
            self._parked.add(seqnum)
        urb = Urb(command, seqnum, devid, direction, ep, flags, length, interval, setup, data)
        if self.dev.handle_urb(urb, self.respond) is not None:
            self.respond(urb)  # answered at once; a parked one is answered by the device
            return
        with self._lock:
            if len(self._parked) > MAX_PARKED:
                raise Ended(f"more than {MAX_PARKED} IN transfers waiting at once")
