"""Serve a virtual key over USB/IP (and optionally PC/SC via vpcd) on this machine.

:class:`UsbipServer` exports the key's composite USB device (:mod:`hwtoken.emulator.usb`)
on a TCP port, speaking USB/IP through the ``usbip`` package's own protocol code: the
Linux ``usbip list -r`` / ``usbip attach`` tools, and this package's adapters
(:mod:`~hwtoken.emulator.transports.usbip_fido`,
:mod:`~hwtoken.emulator.transports.pyusb_backend`) all talk to it. It can also listen on a
Unix socket (:mod:`~hwtoken.emulator.transports.usbip_unix`), which hwtoken's own
commands use.

The key answers its owner only, like a key on the owner's desk: every connection is judged
before a byte of USB/IP is answered, the device list included
(:mod:`~hwtoken.emulator.transports.access`): the user serving it, root, and the users
given with ``allow_users`` get in; with ``allow_remote``, everyone who reaches the port.

Every IMPORT is its own session with its own device instance and CTAPHID engine, so
several clients (python-fido2, python-yubico via pyusb, the kernel's vhci) may be
attached at once, like several processes opening one key's hidraw node; the key's
applets serialise their own state. A client that disconnects mid-transfer or sends garbage
only ends its own session; the error is logged and the server keeps serving. The server
is bounded (:mod:`~hwtoken.emulator.transports.acceptor`,
:mod:`~hwtoken.emulator.transports.usbip_urbs`): at most ``max_sessions`` connections per
address at once, transfers no longer than their endpoint takes, idle sessions closed,
and running out of file descriptors only pauses accepting.

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
import shutil
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from usbip import protocol

from hwtoken.emulator.transports.acceptor import Acceptor
from hwtoken.emulator.transports.access import PeerPolicy
from hwtoken.emulator.transports.usbip_urbs import Ended, UrbLoop, recv_exact
from hwtoken.emulator.usb import YubiKeyUsb, out_transfer_limits
from hwtoken.errors import DeviceError, InvalidInput
from hwtoken.fileio import atomic_write, pid_alive, remove_dead_dirs

if TYPE_CHECKING:  # pragma: no cover
    from hwtoken.emulator.key import VirtualKey

log = logging.getLogger(__name__)

DEFAULT_PORT = 3240
DEFAULT_BUSID = "1-1"
HANDSHAKE_TIMEOUT = 10.0  # seconds a new connection may take to send its whole request
MAX_SESSIONS = 32  # connections served at once on one address
IDLE_TIMEOUT = 600.0  # seconds a session with nothing in flight is kept
SOCKET_NAME = "usbip.sock"
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
    """Export one virtual key as a USB/IP device on ``host:port`` (and on the Unix socket
    ``unix_path`` when given).

    ``port=0`` picks a free port (read :attr:`port` after :meth:`start`). Binding
    anything but a loopback address needs ``allow_remote=True``, because whoever reaches
    the port can use the key; a warning is logged when it is given. Without it, only the
    user running the server, root and ``allow_users`` (uids) are answered.

    An import while no other session is attached is the moment the key is plugged in, so
    by default it power-cycles the key (``power_cycle_on_import``): volatile state such as
    PIN tokens is dropped and the FIDO reset window (10 s after power-up) opens, as when a
    real key is re-inserted; the device it exports then has the interfaces its USB-enabled
    applications make. When the key reboots (``ykman config usb`` changed them), every
    attached host is disconnected once the key has answered, as a device that leaves the
    bus; the next import gets the new device.

    ``max_sessions`` connections per address are served at once; a session with no
    transfer in flight for ``idle_timeout`` seconds (None: never) is closed.
    """

    def __init__(self, key: VirtualKey, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *,
                 allow_remote: bool = False, allow_users: Iterable[int] = (),
                 busid: str = DEFAULT_BUSID, usb: YubiKeyUsb | None = None,
                 power_cycle_on_import: bool = True,
                 unix_path: str | os.PathLike[str] | None = None,
                 max_sessions: int = MAX_SESSIONS,
                 idle_timeout: float | None = IDLE_TIMEOUT) -> None:
        if not is_loopback(host) and not allow_remote:
            raise InvalidInput(
                f"refusing to serve the key on {host}: anyone who reaches that address could "
                "use it; bind 127.0.0.1 or pass --allow-remote")
        self.key = key
        self.host = host
        self.port = port
        self.busid = busid
        self.allow_remote = allow_remote
        self.policy = PeerPolicy(allow_users=allow_users, allow_remote=allow_remote)
        self.power_cycle_on_import = power_cycle_on_import
        self.unix_path = Path(unix_path) if unix_path is not None else None
        self.max_sessions = max_sessions
        self.idle_timeout = idle_timeout
        self.usb = usb if usb is not None else YubiKeyUsb(key)
        self.usb.busid = busid
        self.usb.device.set_busid(busid)
        self.out_limits = out_transfer_limits(self.usb.model)
        self.acceptors: list[Acceptor] = []
        self._socks: list[socket.socket] = []
        self._plug_lock = threading.Lock()
        self._stopping = False
        self._stop_listening: Any = None
        self.sessions = 0  # imports served so far (for tests and status)
        self.errors = 0  # connections that ended with an unexpected error

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> UsbipServer:
        """Bind, listen and start accepting in background threads."""
        if not is_loopback(self.host):
            log.warning("serving virtual key %s on %s:%s: anyone who can reach this address "
                        "can use the key", self.key.serial, self.host, self.port)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
            sock.listen(64)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise DeviceError(f"cannot serve on {self.host}:{self.port}: the port is in use "
                                  "(another usbipd or serve?); pick another with --usbip PORT"
                                  ) from None
            raise DeviceError(f"cannot serve on {self.host}:{self.port}: {exc.strerror}") from None
        self._socks.append(sock)
        self.port = sock.getsockname()[1]
        try:
            if self.unix_path is not None:
                self._socks.append(_listen_unix(self.unix_path))
        except BaseException:
            self._close_sockets()
            raise
        self.usb.start()
        self._stopping = False
        self._stop_listening = self.key.on_reboot(self._reboot_soon)
        for listening in self._socks:
            what = "USB/IP" if listening.family != socket.AF_UNIX else "USB/IP (Unix socket)"
            self.acceptors.append(Acceptor(
                listening, self._serve_one, name=f"hwtoken-usbip-{self.port}",
                admit=lambda conn, what=what: self.policy.admit(conn, what, log),
                max_connections=self.max_sessions, logger=log,
                conn_name="hwtoken-usbip-conn").start())
        log.info("serving virtual key %s over USB/IP on %s:%s busid %s%s", self.key.serial,
                 self.host, self.port, self.busid,
                 f" and {self.unix_path}" if self.unix_path is not None else "")
        return self

    def stop(self) -> None:
        """Stop accepting, drop every connection, stop the device (idempotent)."""
        self._stopping = True
        if self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None
        for acceptor in self.acceptors:
            acceptor.stop()
        self.acceptors = []
        self._close_sockets()
        self.usb.stop()

    def _close_sockets(self) -> None:
        for sock in self._socks:
            with contextlib.suppress(OSError):
                sock.close()
        self._socks = []
        if self.unix_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.unix_path.unlink()

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

    # -- reboots ----------------------------------------------------------------------------
    def _reboot_soon(self) -> None:
        threading.Thread(target=self._reboot, daemon=True, name="hwtoken-usbip-reboot").start()

    def _reboot(self) -> None:
        """Once the key has answered the request that asked for the reboot, disconnect
        every attached host: the key left the bus; an import after gets the new device."""
        self.usb.wait_answered()
        dropped = sum(acceptor.disconnect_all() for acceptor in self.acceptors)
        with self.key.lock:  # it powers up again: the device it is now
            self.key.power_cycle()
            self.usb.reconfigure()
        log.info("virtual key %s rebooted: %d USB/IP connection(s) dropped", self.key.serial,
                 dropped)

    # -- connections -------------------------------------------------------------------------
    def _serve_one(self, conn: socket.socket, addr: Any = None) -> None:
        """One admitted connection: its request (a device list or an import), then, for
        an import, its transfers until it leaves."""
        if addr is None:
            addr = _peer_name(conn)
        session = None
        try:
            if self._stopping:  # accepted just as stop() began
                return
            if conn.family != socket.AF_UNIX:
                with contextlib.suppress(OSError):
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            request = self._read_request(conn)
            if request is None:
                log.info("USB/IP client %s sent no valid request; closed", addr)
                return
            op = _OP_HEADER.unpack_from(request)[1]
            devs: list[Any] = [self.usb.device]
            if op == protocol.OP_REQ_IMPORT and not self._stopping:
                with self._plug_lock:
                    if self.power_cycle_on_import and self.usb.session_count == 0:
                        with self.key.lock:  # not in the middle of a PC/SC request
                            self.key.power_cycle()  # first host: the key is plugged in
                            self.usb.reconfigure()
                    session = self.usb.open_session()
                self.sessions += 1
                devs = [session.device]
                log.info("USB/IP client %s imports busid %s", addr, self.busid)
            elif op == protocol.OP_REQ_IMPORT:
                devs = []  # stopping: the library answers the IMPORT with an error status
            else:
                log.info("USB/IP client %s lists the exported devices", addr)
            dev = protocol.serve_handshake(_Replay(conn, request), devs)
            if dev is None:
                return
            why = UrbLoop(conn, dev, out_limits=self.out_limits,
                          idle_timeout=self.idle_timeout).run()
            log.info("USB/IP client %s %s", addr,
                     "detached" if why == "detached" else "closed: idle")
        except Ended as exc:
            log.warning("USB/IP client %s closed: %s", addr, exc)
        except OSError as exc:
            log.info("USB/IP client %s gone (%s)", addr, exc.strerror or exc)
        except Exception:
            self.errors += 1
            log.exception("USB/IP connection from %s failed; still serving", addr)
        finally:
            if session is not None:
                self.usb.close_session(session)
            with contextlib.suppress(OSError):
                conn.close()

    def _read_request(self, conn: socket.socket) -> bytes | None:
        """The client's whole operation request (DEVLIST or IMPORT), or None for garbage.

        Read here, within :data:`HANDSHAKE_TIMEOUT` seconds in all, so a client that sends
        half a request, junk or one byte at a time cannot hold a thread (or the device);
        the bytes are then replayed to the library's handshake.
        """
        conn.settimeout(HANDSHAKE_TIMEOUT)
        deadline = time.monotonic() + HANDSHAKE_TIMEOUT
        try:
            head = recv_exact(conn, _OP_HEADER.size, deadline)
            if head is None:
                return None
            _version, code, _status = _OP_HEADER.unpack(head)
            if code == protocol.OP_REQ_DEVLIST:
                return head
            if code != protocol.OP_REQ_IMPORT:
                return None
            busid = recv_exact(conn, _IMPORT_REQUEST_LEN - _OP_HEADER.size, deadline)
            return None if busid is None else head + busid
        except (OSError, Ended):
            return None


def _listen_unix(path: Path) -> socket.socket:
    """A listening Unix socket at ``path`` (mode 0600; a stale one is replaced)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with contextlib.suppress(FileNotFoundError):
        if path.is_socket():
            path.unlink()
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
        sock.listen(64)
    except OSError as exc:
        sock.close()
        raise DeviceError(f"cannot listen on {path}: {exc.strerror}") from None
    finally:
        os.umask(old)
    return sock


def _peer_name(conn: socket.socket) -> str:
    if conn.family == socket.AF_UNIX:
        return "on the Unix socket"
    try:
        host, port = conn.getpeername()[:2]
    except OSError:
        return "(gone)"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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


def runtime_base() -> str | None:
    """Where a serve's private runtime directory goes: ``$XDG_RUNTIME_DIR`` when it is
    this user's own private directory, else the system's temporary directory (None)."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if not base:
        return None
    try:
        st = os.stat(base)
    except OSError:
        return None
    if st.st_uid != os.geteuid() or st.st_mode & 0o077:
        return None
    return base


def make_runtime_dir() -> Path:
    """A new private (0700) directory for one serve's socket, with its ``owner.pid``; those
    left by serves that were killed are removed first."""
    base = runtime_base() or tempfile.gettempdir()
    remove_dead_dirs(base, "hwtoken-serve-*")
    path = Path(tempfile.mkdtemp(prefix="hwtoken-serve-", dir=base))
    (path / "owner.pid").write_text(f"{os.getpid()}\n")
    return path


class KeyService:
    """A key served until stopped: USB/IP, optional PC/SC (vpcd), and the runtime file.

    The caller opens (and so locks) the key; ``start()`` brings the transports up and
    writes ``NAME.serve.json``; ``stop()`` takes them down, removes the file and commits
    the key's state (the caller still closes the key). USB/IP is also served on a Unix
    socket in a private (0700) runtime directory, named in the runtime file: hwtoken's own
    commands connect there.
    """

    def __init__(self, key: VirtualKey, *, usbip: tuple[str, int] | None = ("127.0.0.1", 3240),
                 pcsc: tuple[str, int] | None = None, allow_remote: bool = False,
                 allow_users: Iterable[int] = (), local: bool = False, reads: str = "auto",
                 idle_timeout: float | None = IDLE_TIMEOUT) -> None:
        self.key = key
        self.usbip_addr = usbip
        self.pcsc_addr = pcsc
        self.allow_remote = allow_remote
        self.allow_users = tuple(allow_users)
        self.local = local
        self.reads = reads
        self.idle_timeout = idle_timeout
        self.runtime_dir: Path | None = None
        self.usbip: UsbipServer | None = None
        self.vpcd: Any = None
        self.testbed: Any = None
        self.control: Any = None
        self.runtime_file: Path | None = None

    def start(self) -> KeyService:
        try:
            if self.usbip_addr is not None:
                host, port = self.usbip_addr
                self.runtime_dir = make_runtime_dir()
                self.usbip = UsbipServer(self.key, host, port, allow_remote=self.allow_remote,
                                         allow_users=self.allow_users,
                                         unix_path=self.runtime_dir / SOCKET_NAME,
                                         idle_timeout=self.idle_timeout).start()
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
        # (a pcscd on this machine gets the card only if it is root's or ours)
        link = VpcdLink(self.key, host=host, port=port, lock=self.key.lock,
                        check_owner=is_loopback(host))
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
            policy = self.usbip.policy
            doc["usbip"] = {"host": host, "port": port, "busid": busid,
                            "socket": str(self.usbip.unix_path) if self.usbip.unix_path
                            else None,
                            "answers": "anyone" if policy.allow_remote
                            else sorted(policy.allowed)}
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
        if self.runtime_dir is not None:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
            self.runtime_dir = None
        with contextlib.suppress(Exception), self.key.lock:
            self.key.store.commit()

    def __enter__(self) -> KeyService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
