"""Serve a virtual key over USB/IP (and optionally PC/SC via vpcd) on this machine.

:class:`UsbipServer` exports the key's composite USB device (:mod:`hwtoken.emulator.usb`)
on a TCP port, speaking USB/IP through the ``usbip`` package's own protocol code: the
Linux ``usbip list -r`` / ``usbip attach`` tools, and this package's adapters
(:mod:`~hwtoken.emulator.transports.usbip_fido`,
:mod:`~hwtoken.emulator.transports.pyusb_backend`) all talk to it.

Every IMPORT is its own session with its own device instance and CTAPHID engine, so
several clients (python-fido2, python-yubico via pyusb, the kernel's vhci) may be
attached at once, like several processes opening one key's hidraw node; the key's
applets serialise their own state. Device lists (``usbip list -r``) are answered at any
time. A client that disconnects mid-transfer or sends garbage only ends its own
session; the error is logged and the server keeps serving.

:class:`KeyService` is what ``hwtoken emulate serve`` runs: the key (locked), USB/IP,
optional vpcd, and the runtime file ``NAME.serve.json`` other commands read to find it.

For tests::

    with VirtualKey.create(path) as key, served(key) as srv:
        dev = open_usbip_fido(srv.host, srv.port, srv.busid)
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from usbip import protocol

from hwtoken.emulator.usb import YubiKeyUsb
from hwtoken.errors import DeviceError, InvalidInput
from hwtoken.fileio import atomic_write, pid_alive

if TYPE_CHECKING:  # pragma: no cover
    from hwtoken.emulator.key import VirtualKey

log = logging.getLogger(__name__)

DEFAULT_PORT = 3240
DEFAULT_BUSID = "1-1"
HANDSHAKE_TIMEOUT = 10.0  # seconds a new connection may take to send its request
_OP_HEADER = struct.Struct(">HHI")
_IMPORT_REQUEST_LEN = _OP_HEADER.size + 32


def is_loopback(host: str) -> bool:
    """True if ``host`` is a loopback address or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_endpoint(value: str | None, default_host: str = "127.0.0.1",
                   default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """Parse ``[HOST:]PORT`` (``PORT``, ``HOST:PORT``, ``HOST:``) into (host, port)."""
    if value is None or value == "":
        return default_host, default_port
    host, sep, port_s = value.rpartition(":")
    if not sep:
        host, port_s = "", value
    host = host.strip("[]") or default_host
    if port_s == "":
        return host, default_port
    try:
        port = int(port_s)
    except ValueError:
        raise InvalidInput(f"invalid port {port_s!r} in {value!r}: use [HOST:]PORT") from None
    if not 0 <= port <= 65535:
        raise InvalidInput(f"port {port} out of range 0-65535")
    return host, port


class UsbipServer:
    """Export one virtual key as a USB/IP device on ``host:port``.

    ``port=0`` picks a free port (read :attr:`port` after :meth:`start`). Binding
    anything but a loopback address needs ``allow_remote=True``, because whoever reaches
    the port can use the key; a warning is logged when it is given.

    An import while no other session is attached is the moment the key is plugged in, so
    by default it power-cycles the key (``power_cycle_on_import``): volatile state such as
    PIN tokens is dropped and the FIDO reset window (10 s after power-up) opens, as when a
    real key is re-inserted.
    """

    def __init__(self, key: VirtualKey, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *,
                 allow_remote: bool = False, busid: str = DEFAULT_BUSID,
                 usb: YubiKeyUsb | None = None, power_cycle_on_import: bool = True) -> None:
        if not is_loopback(host) and not allow_remote:
            raise InvalidInput(
                f"refusing to serve the key on {host}: anyone who reaches that address could "
                "use it; bind 127.0.0.1 or pass --allow-remote")
        self.key = key
        self.host = host
        self.port = port
        self.busid = busid
        self.allow_remote = allow_remote
        self.power_cycle_on_import = power_cycle_on_import
        self.usb = usb if usb is not None else YubiKeyUsb(key)
        self.usb.busid = busid
        self.usb.device.set_busid(busid)
        self._sock: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._plug_lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._stopping = threading.Event()
        self.sessions = 0  # imports served so far (for tests and status)
        self.errors = 0  # connections that ended with an unexpected error

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> UsbipServer:
        """Bind, listen and start accepting in a background thread."""
        if not is_loopback(self.host):
            log.warning("serving virtual key %s on %s:%s: anyone who can reach this address "
                        "can use the key", self.key.serial, self.host, self.port)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
            sock.listen(16)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise DeviceError(f"cannot serve on {self.host}:{self.port}: the port is in use "
                                  "(another usbipd or serve?); pick another with --usbip PORT"
                                  ) from None
            raise DeviceError(f"cannot serve on {self.host}:{self.port}: {exc.strerror}") from None
        self._sock = sock
        self.port = sock.getsockname()[1]
        self.usb.start()
        self._stopping.clear()
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True,
                                               name=f"hwtoken-usbip-{self.port}")
        self._accept_thread.start()
        log.info("serving virtual key %s over USB/IP on %s:%s busid %s",
                 self.key.serial, self.host, self.port, self.busid)
        return self

    def stop(self) -> None:
        """Stop accepting, drop every connection, stop the device (idempotent)."""
        self._stopping.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                self._sock.close()
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5)
            self._accept_thread = None
        self.usb.stop()
        self._sock = None

    def __enter__(self) -> UsbipServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int, str]:
        """(host, port, busid) for clients; a wildcard bind is reached via 127.0.0.1."""
        host = self.host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        return host, self.port, self.busid

    # -- connections -------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                conn, addr = self._sock.accept()
            except OSError:
                break
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            threading.Thread(target=self._serve_one, args=(conn, addr), daemon=True,
                             name="hwtoken-usbip-conn").start()

    def _serve_one(self, conn: socket.socket, addr: Any) -> None:
        with self._conns_lock:
            self._conns.add(conn)
        session = None
        try:
            if self._stopping.is_set():  # accepted just as stop() took its list of conns
                return
            request = self._read_request(conn)
            if request is None:
                log.info("USB/IP client %s sent no valid request; closed", addr)
                return
            op = _OP_HEADER.unpack_from(request)[1]
            devs: list[Any] = [self.usb.device]
            if op == protocol.OP_REQ_IMPORT and not self._stopping.is_set():
                with self._plug_lock:
                    if self.power_cycle_on_import and self.usb.session_count == 0:
                        with self.key.lock:  # not in the middle of a PC/SC request
                            self.key.power_cycle()  # first host: the key is plugged in
                    session = self.usb.open_session()
                self.sessions += 1
                devs = [session.device]
                log.info("USB/IP client %s imports busid %s", addr, self.busid)
            elif op == protocol.OP_REQ_IMPORT:
                devs = []  # stopping: the library answers the IMPORT with an error status
            else:
                log.info("USB/IP client %s lists the exported devices", addr)
            conn.settimeout(None)  # an attached host may stay idle for as long as it likes
            protocol.serve_connection(_Replay(conn, request), devs)
            if session is not None:
                log.info("USB/IP client %s detached", addr)
        except Exception:
            self.errors += 1
            log.exception("USB/IP connection from %s failed; still serving", addr)
        finally:
            if session is not None:
                self.usb.close_session(session)
            with contextlib.suppress(OSError):
                conn.close()
            with self._conns_lock:
                self._conns.discard(conn)

    def _read_request(self, conn: socket.socket) -> bytes | None:
        """The client's whole operation request (DEVLIST or IMPORT), or None for garbage.

        Read here, with a deadline, so a client that sends half a request or junk cannot
        hold a thread (or the device) forever; the bytes are then replayed to the
        library's handshake.
        """
        conn.settimeout(HANDSHAKE_TIMEOUT)
        try:
            head = _recv_exact(conn, _OP_HEADER.size)
            if head is None:
                return None
            _version, code, _status = _OP_HEADER.unpack(head)
            if code == protocol.OP_REQ_DEVLIST:
                return head
            if code != protocol.OP_REQ_IMPORT:
                return None
            busid = _recv_exact(conn, _IMPORT_REQUEST_LEN - _OP_HEADER.size)
            return None if busid is None else head + busid
        except OSError:
            return None


def _recv_exact(conn: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


class _Replay:
    """A socket whose first reads return ``prefix`` (the request already read)."""

    def __init__(self, sock: socket.socket, prefix: bytes) -> None:
        self._sock = sock
        self._prefix = prefix

    def recv(self, n: int, *flags: int) -> bytes:
        if self._prefix:
            out, self._prefix = self._prefix[:n], self._prefix[n:]
            return out
        return self._sock.recv(n, *flags)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


@contextlib.contextmanager
def served(key: VirtualKey, host: str = "127.0.0.1", port: int = 0,
           **kwargs: Any) -> Iterator[UsbipServer]:
    """Serve ``key`` in background threads (default: a free loopback port); stop on exit.

    Yields the running :class:`UsbipServer`: ``srv.host``, ``srv.port``, ``srv.busid``.
    """
    srv = UsbipServer(key, host, port, **kwargs)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


# ---- runtime file: how other commands find a running serve --------------------------------
def runtime_path(key_path: str | os.PathLike[str]) -> Path:
    """``NAME.serve.json`` next to the key's state file ``NAME.key``."""
    p = Path(key_path)
    return p.with_name(p.stem + ".serve.json")


def write_runtime(key_path: str | os.PathLike[str], doc: dict[str, Any]) -> Path:
    """Write the runtime file (0600, atomic)."""
    from hwtoken.paths import private_dir

    path = runtime_path(key_path)
    private_dir(path.parent)
    atomic_write(path, json.dumps(doc, indent=2) + "\n")
    return path


def remove_runtime(key_path: str | os.PathLike[str]) -> None:
    with contextlib.suppress(FileNotFoundError):
        runtime_path(key_path).unlink()


def read_runtime(key_path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The runtime document of a live serve of this key, or None.

    A file left by a serve that died (its pid is gone or the key's lock is free) counts
    as absent.
    """
    from hwtoken.emulator.key import lock_path
    from hwtoken.fileio import is_locked

    path = runtime_path(key_path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):  # absent, unreadable or damaged: no serve to talk to
        return None
    if not isinstance(doc, dict):
        return None
    pid = doc.get("pid")
    if not isinstance(pid, int) or not pid_alive(pid):
        return None
    try:
        if pid != os.getpid() and not is_locked(lock_path(key_path)):
            return None
    except OSError:
        return None
    return doc


class KeyService:
    """A key served until stopped: USB/IP, optional PC/SC (vpcd), and the runtime file.

    The caller opens (and so locks) the key; ``start()`` brings the transports up and
    writes ``NAME.serve.json``; ``stop()`` takes them down, removes the file and commits
    the key's state (the caller still closes the key).
    """

    def __init__(self, key: VirtualKey, *, usbip: tuple[str, int] | None = ("127.0.0.1", 3240),
                 pcsc: tuple[str, int] | None = None, allow_remote: bool = False,
                 local: bool = False, reads: str = "auto") -> None:
        self.key = key
        self.usbip_addr = usbip
        self.pcsc_addr = pcsc
        self.allow_remote = allow_remote
        self.local = local
        self.reads = reads
        self.usbip: UsbipServer | None = None
        self.vpcd: Any = None
        self.testbed: Any = None
        self.control: Any = None
        self.runtime_file: Path | None = None

    def start(self) -> KeyService:
        try:
            if self.usbip_addr is not None:
                host, port = self.usbip_addr
                self.usbip = UsbipServer(self.key, host, port,
                                         allow_remote=self.allow_remote).start()
            if self.pcsc_addr is not None:
                self.vpcd = self._start_vpcd(*self.pcsc_addr)
            if self.local:
                self._start_local()
            self.runtime_file = write_runtime(self.key.path, self.describe())
        except BaseException:
            self.stop()
            raise
        return self

    def _start_vpcd(self, host: str, port: int) -> Any:
        if not is_loopback(host) and not self.allow_remote:
            raise InvalidInput(f"refusing to connect the key to a remote vpcd at {host}; "
                               "pass --allow-remote")
        from hwtoken.emulator.transports.vpcd import VpcdLink

        # the same lock as USB/IP's requests: one request at a time changes the state
        link = VpcdLink(self.key, host=host, port=port, lock=self.key.lock)
        link.start()
        return link

    def _start_local(self) -> None:
        """Plug the key into a umockdev testbed (sharing the USB/IP device model), with a
        control socket for `hwtoken emulate plug/unplug`."""
        from hwtoken.emulator.transports.umockdev import Testbed
        from hwtoken.emulator.transports.umockdev.control import ControlServer

        self.testbed = Testbed(reads=self.reads)
        usb = self.usbip.usb if self.usbip is not None else None

        def plug_again(key: Any) -> Any:
            return self.testbed.plug(key, usb=usb)

        self.testbed.plug(self.key, usb=usb)
        self.control = ControlServer(self.testbed, {self.key.path.stem: self.key},
                                     on_change=lambda *_: self._rewrite_runtime(),
                                     plug=plug_again)

    def _rewrite_runtime(self) -> None:
        if self.runtime_file is not None:
            self.runtime_file = write_runtime(self.key.path, self.describe())

    def describe(self) -> dict[str, Any]:
        """The runtime document: pid, endpoints, serial."""
        doc: dict[str, Any] = {"pid": os.getpid(), "serial": self.key.serial,
                               "started": int(time.time()), "usbip": None, "pcsc": None,
                               "local": None}
        if self.testbed is not None:
            plugged = self.testbed.plugged
            p = plugged[0] if plugged else None
            doc["local"] = {
                "dir": str(self.testbed.root), "preload": str(self.testbed.preload),
                "control": str(self.control.path) if self.control is not None else None,
                "plugged": p is not None,
                "nodes": [*p.hidraw, p.usbfs] if p is not None else [],
                "fido_hidraw": p.fido_hidraw if p is not None else None,
                "otp_hidraw": p.otp_hidraw if p is not None else None}
        if self.usbip is not None:
            host, port, busid = self.usbip.address
            doc["usbip"] = {"host": host, "port": port, "busid": busid}
        if self.pcsc_addr is not None:
            doc["pcsc"] = {"host": self.pcsc_addr[0], "port": self.pcsc_addr[1]}
        return doc

    def stop(self) -> None:
        if self.runtime_file is not None:
            remove_runtime(self.key.path)
            self.runtime_file = None
        if self.vpcd is not None:
            with contextlib.suppress(Exception):
                self.vpcd.stop()
            self.vpcd = None
        if self.control is not None:
            self.control.close()
            self.control = None
        if self.testbed is not None:
            self.testbed.close()
            self.testbed = None
        if self.usbip is not None:
            self.usbip.stop()
            self.usbip = None
        with contextlib.suppress(Exception), self.key.lock:
            self.key.store.commit()

    def __enter__(self) -> KeyService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
