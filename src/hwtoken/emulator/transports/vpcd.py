"""The virtual key as a smart card in pcscd, through the vsmartcard ``vpcd`` reader driver.

pcscd's vpcd driver (Debian ``vsmartcard-vpcd``) listens on TCP (127.0.0.1:35963 for the
reader "Virtual PCD 00 00", 35964 for "Virtual PCD 00 01"); a virtual card connects to it.
Framing: every message is a 2-byte big-endian length and that many bytes. A 1-byte message
is a control code (0 power off, 1 power on, 2 reset, 4 "send your ATR"); anything longer is
a command APDU, answered with the response APDU. This module only frames: the card logic is
:class:`hwtoken.emulator.iso7816.CardOS`.

Whoever listens on that port gets the card, so on this machine the link connects only when
the listening socket belongs to root (the system's pcscd) or to the user serving the key (a
pcscd of their own), as ``/proc/net/tcp`` tells (:mod:`.sockowner`); otherwise it says so
once and keeps waiting, card withheld.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import threading
import time
from typing import Any

from hwtoken.emulator.iso7816 import CardOS
from hwtoken.emulator.transports import sockowner

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 35963

CTRL_POWER_OFF = 0
CTRL_POWER_ON = 1
CTRL_RESET = 2
CTRL_GET_ATR = 4

_POLL = 0.25  # how often a blocked read looks at the stop flag

#: Linux only. pcscd's vpcd driver writes the 2-byte length and the body of a message in
#: two ``send()`` calls; Nagle on its side holds the body until the length is ACKed, and
#: our kernel delays that ACK (~40 ms): every APDU took ~48 ms. QUICKACK makes the ACK
#: immediate, but the kernel clears it again, so it is re-armed before every ``recv``
#: (measured: 48 ms -> 0.12 ms per APDU). TCP_NODELAY on our side changed nothing: each
#: answer already leaves in one ``sendall``.
_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)

#: pcscd polls a vpcd reader's presence (an ATR request) every 0.4 s and powers a card up
#: as soon as it sees it inserted. A card that is polled for this long without ever being
#: powered was not noticed as inserted: see :meth:`VpcdLink._stale_reader`.
STALE_AFTER = 1.5


def _quickack(sock: socket.socket) -> None:
    """ACK what arrives next at once instead of delaying it (see ``_TCP_QUICKACK``)."""
    if _TCP_QUICKACK is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)


class _Closed(Exception):
    """The peer closed the connection (or we are stopping)."""


class _Reinsert(Exception):
    """Drop the connection so that pcscd notices a removal, then connect again."""


def parse_hostport(spec: str | None, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``HOST:PORT``, ``HOST``, ``:PORT`` or None -> (host, port)."""
    from hwtoken.errors import InvalidInput

    if not spec:
        return DEFAULT_HOST, default_port
    host, sep, port = spec.rpartition(":")
    if not sep:
        return spec, default_port
    try:
        p = int(port)
    except ValueError:
        raise InvalidInput(f"invalid port in {spec!r}: use HOST:PORT") from None
    if not 0 < p < 65536:
        raise InvalidInput(f"port out of range in {spec!r}")
    return (host.strip("[]") or DEFAULT_HOST), p


class VpcdLink:
    """Connect ``key`` to pcscd's vpcd driver as a card; reconnect if pcscd restarts.

    ``start()`` runs the link in a daemon thread; ``stop()`` ends it. While pcscd is not
    listening the link retries with a backoff doubling from 0.1 s up to ``max_backoff``.
    ``lock`` serialises card commands with other transports of the same key (default: the
    key's ``lock``).

    A stale reader is repaired by re-inserting the card once: when the previous card in
    the reader died while a client held it (a process SIGKILLed in the middle of a ykman
    session), pcscd can keep reporting "no card" to clients while its vpcd driver has
    already accepted this card: its presence poll never saw the reader empty, so it never
    sees an insertion either. Such a card is polled but never powered up; after
    ``stale_after`` seconds of that (None: never) the link drops the connection (pcscd's
    next poll sees the card gone) and connects again (the poll after sees it inserted).

    With ``check_owner`` (the default; for a pcscd on this machine) the link connects only
    to a listening socket of root or of this process's user, and checks again once
    connected, before it answers anything; a refusal is logged once as a warning and kept
    in :attr:`refused` while the link waits for a pcscd it may use.
    """

    def __init__(self, key: Any, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                 card: CardOS | None = None, max_backoff: float = 2.0,
                 lock: Any = None, stale_after: float | None = STALE_AFTER,
                 check_owner: bool = True) -> None:
        self.key = key
        self.host = host
        self.port = port
        self.card = card if card is not None else CardOS(key)
        self.max_backoff = max_backoff
        if lock is None:  # the key's own: what its other transports hold per request
            lock = getattr(key, "lock", None) or threading.RLock()
        self.lock = lock
        self.apdus = 0
        self.connections = 0
        self.reinsertions = 0
        self.stale_after = stale_after
        self.check_owner = check_owner
        self.refused: str | None = None  #: why the card is withheld now (None: it is not)
        self.refusals = 0  #: times a listener was found that may not have the card
        self._powered = False  # pcscd powered (or reset, or used) the card
        self._atr_polls = 0
        self._since = 0.0
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """True while pcscd's vpcd driver holds a connection to us."""
        return self._connected.is_set()

    @property
    def powered(self) -> bool:
        """True once pcscd powered up (or reset, or used) this connection's card: pcscd
        has noticed it, so clients that connect now reach this card."""
        return self._connected.is_set() and self._powered

    def wait_connected(self, timeout: float = 5.0) -> bool:
        """Block until connected (True) or ``timeout`` seconds pass (False)."""
        return self._connected.wait(timeout)

    def start(self) -> VpcdLink:
        """Start the background thread (idempotent); returns self."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self.run, daemon=True,
                                            name=f"hwtoken-vpcd-{self.port}")
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Disconnect and end the thread (waits up to ``timeout`` seconds)."""
        self._stop.set()
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> VpcdLink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> None:
        """Connect, serve, and reconnect with a bounded backoff until stopped."""
        backoff = 0.1
        while not self._stop.is_set():
            sock = None
            try:
                if not self._withheld(connected=False):
                    sock = socket.create_connection((self.host, self.port), timeout=2.0)
                    if self._withheld(connected=True):  # who answered: before any byte
                        sock.close()
                        sock = None
            except OSError:
                sock = None
            if sock is None:
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            backoff = 0.1
            self._sock = sock
            self.connections += 1
            self._connected.set()
            logger.info("vpcd: card inserted at %s:%d", self.host, self.port)
            try:
                self._serve(sock)
            except _Reinsert:
                self.reinsertions += 1
                logger.info("vpcd: pcscd polls the card but never powers it up (stale "
                            "reader state); re-inserting it")
            except (_Closed, OSError) as exc:
                logger.info("vpcd: connection ended (%s)", exc)
            except Exception:  # a bug must not end the link for good: reconnect
                logger.exception("vpcd: error while serving; reconnecting")
            finally:
                self._connected.clear()
                self._sock = None
                with contextlib.suppress(OSError):
                    sock.close()
                with self.lock:
                    self.card.power_off()
            if not self._stop.is_set():
                self._stop.wait(0.1)

    def _withheld(self, *, connected: bool) -> bool:
        """True if the card must not go to who listens at host:port (see the class)."""
        if not self.check_owner:
            return False
        me = os.geteuid()
        where = f"{self.host}:{self.port}"
        try:
            uids = sockowner.listener_uids(self.host, self.port)
        except OSError as exc:
            why = (f"not inserting the card at {where}: cannot tell who listens there "
                   f"(/proc/net/tcp: {exc.strerror or exc})")
        else:
            others = sorted({uid for uid in uids if uid not in (0, me)})
            if not others and (uids or not connected):
                self.refused = None
                return False
            why = (f"not inserting the card at {where}: the socket listening there belongs "
                   f"to uid {others[0]}, not to root (the system's pcscd) or you (uid {me}); "
                   "waiting for a pcscd that does" if others else
                   f"not inserting the card at {where}: no listening socket found for the "
                   "connection")
        self.refusals += 1
        if why != self.refused:
            logger.warning("%s", why)
        self.refused = why
        return True

    def _stale_reader(self) -> bool:
        """True once per link if pcscd polls this card without ever powering it up."""
        return (self.stale_after is not None and self.reinsertions == 0
                and not self._powered and self._atr_polls >= 2
                and time.monotonic() - self._since >= self.stale_after)

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(_POLL)
        self._powered = False
        self._atr_polls = 0
        self._since = time.monotonic()
        while not self._stop.is_set():
            if self._stale_reader():
                raise _Reinsert
            head = self._recv_exact(sock, 2, idle_ok=True)
            if head is None:
                continue
            (length,) = struct.unpack(">H", head)
            msg = self._recv_exact(sock, length) if length else b""
            assert msg is not None
            reply = self.handle(msg)
            if reply is not None:
                sock.sendall(struct.pack(">H", len(reply)) + reply)

    def handle(self, msg: bytes) -> bytes | None:
        """One vpcd message -> the bytes to send back (None for power controls)."""
        with self.lock:
            if len(msg) == 1:
                code = msg[0]
                if code == CTRL_POWER_OFF:
                    self.card.power_off()
                elif code == CTRL_POWER_ON:
                    self._powered = True
                    self.card.power_on()
                elif code == CTRL_RESET:
                    self._powered = True
                    self.card.reset()
                elif code == CTRL_GET_ATR:
                    self._atr_polls += 1
                    return self.card.atr
                return None
            if not msg:
                return None
            self.apdus += 1
            self._powered = True
            return self.card.transmit(msg)

    def _recv_exact(self, sock: socket.socket, n: int, idle_ok: bool = False) -> bytes | None:
        """Read exactly ``n`` bytes; None if idle (nothing read yet) and ``idle_ok``."""
        buf = bytearray()
        while len(buf) < n:
            if self._stop.is_set():
                raise _Closed("stopping")
            _quickack(sock)
            try:
                chunk = sock.recv(n - len(buf))
            except TimeoutError:
                if idle_ok and not buf:
                    return None
                continue
            if not chunk:
                raise _Closed("peer closed")
            buf.extend(chunk)
        return bytes(buf)
